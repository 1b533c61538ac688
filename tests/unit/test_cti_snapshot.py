"""CTI snapshots: round trip, atomic publication, pruning, versions, and files that are not."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cti.snapshot as snapshot_module
from cti.indicators import Indicator, IndicatorType, Source, make_indicator
from cti.snapshot import (
    SNAPSHOT_SCHEMA,
    SnapshotRef,
    indicators_to_table,
    latest_snapshot,
    read_snapshot,
    snapshot_version,
    write_snapshot,
)
from schemas.errors import NotFoundError, ValidationError

NOW = datetime(2026, 1, 20, 8, 0, 0, 123456, tzinfo=UTC)


def _indicators() -> list[Indicator]:
    return [
        Indicator(
            type=IndicatorType.CIDR,
            value="10.1.0.0/16",
            confidence=90,
            tlp="amber",
            valid_from=datetime(2026, 1, 1, tzinfo=UTC),
            valid_until=datetime(2026, 2, 1, 12, 30, 0, 5, tzinfo=UTC),
            sources=(Source(feed="feodo", reference="https://feodo/1"), Source(feed="misp")),
            tags=("botnet", "c2"),
            techniques=("T0885",),
        ),
        make_indicator("domain", "Evil.Example.", confidence=40, feed="urlhaus", revoked=True),
        make_indicator("sha256", "AB" * 32, confidence=100, feed="misp", reference="event 7"),
    ]


def _table() -> pa.Table:
    return indicators_to_table(_indicators())


def test_a_snapshot_round_trips(tmp_path: Path) -> None:
    table = _table()
    ref = write_snapshot(str(tmp_path), table, now=NOW)
    assert ref == SnapshotRef(
        path=str(tmp_path / "snapshot-20260120T080000123456Z.parquet"),
        version="20260120T080000123456Z",
        indicators=3,
    )
    read = read_snapshot(ref)
    assert read.schema.remove_metadata() == SNAPSHOT_SCHEMA
    assert read.equals(table)
    assert read.slice(0, 1).to_pylist()[0] == {
        "type": "cidr",
        "value": "10.1.0.0/16",
        "confidence": 90,
        "tlp": "amber",
        "valid_from": datetime(2026, 1, 1, tzinfo=UTC),
        "valid_until": datetime(2026, 2, 1, 12, 30, 0, 5, tzinfo=UTC),
        "revoked": False,
        "sources": ["feodo", "misp"],
        "references": ["https://feodo/1", None],
        "tags": ["botnet", "c2"],
        "techniques": ["T0885"],
    }
    assert read.column("value").to_pylist()[1:] == ["evil.example", "ab" * 32]
    metadata = pq.read_metadata(ref.path).metadata
    assert metadata[b"otsec.snapshot.version"] == ref.version.encode()
    assert metadata[b"otsec.snapshot.indicators"] == b"3"
    assert metadata[b"otsec.snapshot.created_at"] == NOW.isoformat().encode()
    assert read_snapshot(ref.path).equals(table)
    assert read_snapshot(ref, columns=["type", "value"]).column_names == ["type", "value"]


def test_an_empty_snapshot_is_a_snapshot(tmp_path: Path) -> None:
    ref = write_snapshot(str(tmp_path), indicators_to_table([]), now=NOW)
    assert ref.indicators == 0
    assert read_snapshot(ref).num_rows == 0


def test_versions_sort_as_time_and_never_repeat(tmp_path: Path) -> None:
    times = [
        NOW + timedelta(days=400),
        NOW,
        NOW + timedelta(microseconds=1),
        NOW + timedelta(hours=1),
    ]
    refs = [write_snapshot(str(tmp_path), _table(), now=when) for when in times]
    assert sorted(ref.version for ref in refs) == [snapshot_version(when) for when in sorted(times)]
    again = write_snapshot(str(tmp_path), _table(), now=NOW)  # this version and the next are taken
    assert again.version == snapshot_version(NOW + timedelta(microseconds=2))
    latest = latest_snapshot(str(tmp_path))
    assert latest is not None and latest.version == snapshot_version(NOW + timedelta(days=400))
    eastern = datetime(2026, 1, 20, 3, 0, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert snapshot_version(eastern) == "20260120T030000000000Z"


def test_only_the_newest_versions_are_kept(tmp_path: Path) -> None:
    refs = [
        write_snapshot(str(tmp_path), _table(), keep=3, now=NOW + timedelta(minutes=i))
        for i in range(7)
    ]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(r.path) for r in refs[-3:])
    write_snapshot(str(tmp_path), _table(), now=NOW + timedelta(minutes=10))  # default keep=5
    assert len(os.listdir(tmp_path)) == 4
    with pytest.raises(ValueError):
        write_snapshot(str(tmp_path), _table(), keep=0)


def test_a_write_publishes_the_whole_file_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_snapshot(str(tmp_path), _table(), now=NOW)
    real_replace = os.replace
    seen: list[tuple[str, str]] = []

    def checking_replace(source: str, target: str) -> None:
        # Until the rename, the new version is invisible and readers still get the old one.
        assert not os.path.exists(target)
        assert os.path.dirname(source) == str(tmp_path)
        assert latest_snapshot(str(tmp_path)) == first
        seen.append((source, target))
        real_replace(source, target)

    monkeypatch.setattr(snapshot_module.os, "replace", checking_replace)
    second = write_snapshot(str(tmp_path), _table(), now=NOW + timedelta(hours=1))
    assert seen and seen[0][1] == second.path
    assert latest_snapshot(str(tmp_path)) == second

    def failing_write(table: pa.Table, sink: object, **kwargs: object) -> None:
        sink.write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(snapshot_module.pq, "write_table", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot(str(tmp_path), _table(), now=NOW + timedelta(hours=2))
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(ref.path) for ref in (first, second)
    )  # no temporary file left behind, nothing new published
    assert latest_snapshot(str(tmp_path)) == second


def test_latest_snapshot_ignores_files_in_progress_and_others(tmp_path: Path) -> None:
    assert latest_snapshot(str(tmp_path)) is None
    assert latest_snapshot(str(tmp_path / "not-yet")) is None
    ref = write_snapshot(str(tmp_path), _table(), now=NOW)
    for name in (
        ".snapshot-abc.tmp",  # a write in progress
        "snapshot-20991231T000000000000Z.parquet.tmp",
        "snapshot-latest.parquet",
        "notes.txt",
    ):
        (tmp_path / name).write_bytes(b"partial")
    assert latest_snapshot(str(tmp_path)) == ref
    assert latest_snapshot(ref.path) == ref


def test_a_file_that_is_not_a_snapshot_is_a_validation_error(tmp_path: Path) -> None:
    text = tmp_path / "snapshot-20260101T000000000000Z.parquet"
    text.write_text("type,value\nipv4,10.0.0.1\n")
    with pytest.raises(ValidationError, match=str(text)):
        read_snapshot(str(text))
    with pytest.raises(ValidationError):
        latest_snapshot(str(tmp_path))

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"type": ["ipv4"], "value": ["10.0.0.1"]}), other)
    with pytest.raises(ValidationError, match="missing column"):
        read_snapshot(str(other))

    wrong_type = _table().set_column(1, "value", pa.array([1, 2, 3]))
    pq.write_table(wrong_type, tmp_path / "wrong.parquet")
    with pytest.raises(ValidationError, match=str(tmp_path / "wrong.parquet")):
        read_snapshot(str(tmp_path / "wrong.parquet"))

    unknown_kind = _table().set_column(0, "type", pa.array(["ipv4", "email", "md5"]))
    pq.write_table(unknown_kind, tmp_path / "kind.parquet")
    with pytest.raises(ValidationError, match="'email'"):
        read_snapshot(str(tmp_path / "kind.parquet"))

    with pytest.raises(ValidationError, match="missing column"):
        write_snapshot(str(tmp_path / "out"), pa.table({"type": ["ipv4"]}))
    with pytest.raises(ValidationError, match="confidence 200"):
        write_snapshot(
            str(tmp_path / "out"),
            _table().set_column(2, "confidence", pa.array([200, 1, 1], pa.uint8())),
        )


def test_a_reference_must_name_the_version_in_the_file(tmp_path: Path) -> None:
    ref = write_snapshot(str(tmp_path), _table(), now=NOW)
    with pytest.raises(ValidationError, match="holds version"):
        read_snapshot(SnapshotRef(path=ref.path, version="20990101T000000000000Z", indicators=3))


def test_a_missing_snapshot_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_snapshot(str(tmp_path / "snapshot-20260101T000000000000Z.parquet"))


def test_a_table_with_extra_or_reordered_columns_is_conformed(tmp_path: Path) -> None:
    table = _table()
    shuffled = table.select(list(reversed(table.column_names))).append_column(
        "extra", pa.array([1, 2, 3])
    )
    ref = write_snapshot(str(tmp_path), shuffled, now=NOW)
    assert read_snapshot(ref).equals(table)
