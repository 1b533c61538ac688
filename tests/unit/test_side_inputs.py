"""Context that follows its source in streaming jobs: each worker re-reads the newest
snapshot or inventory once per interval, keeps the last value when a re-read fails, and
the stages use it without Beam side inputs."""

from __future__ import annotations

import pickle
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from cti.indicators import make_indicator
from cti.snapshot import indicators_to_table, write_snapshot
from schemas.event import NormalizedEvent
from tests.conftest import raw_line, run_stages
from transforms.assets import EnrichWithAssets
from transforms.correlate import CorrelateWithCti
from transforms.side_inputs import Polled, latest_inventory, latest_snapshot_ref


def _snapshot(directory: Path, address: str) -> str:
    table = indicators_to_table([make_indicator("ipv4", address, confidence=80, feed="t")])
    return write_snapshot(str(directory), table).version


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr("transforms.side_inputs.time.monotonic", fake)
    return fake


def test_the_newest_snapshot_is_read_once_per_interval(tmp_path: Path, clock: _Clock) -> None:
    polled = Polled(latest_snapshot_ref, str(tmp_path / "a"), 60)
    (tmp_path / "a").mkdir()
    assert polled.current() is None  # no snapshot yet: events go on without CTI
    first = _snapshot(tmp_path / "a", "203.0.113.1")
    clock.now += 59
    assert polled.current() is None  # not due yet
    clock.now += 1
    assert polled.current().version == first
    second = _snapshot(tmp_path / "a", "203.0.113.2")
    clock.now += 61
    assert polled.current().version == second


def test_a_failing_reread_keeps_the_last_value(tmp_path: Path, clock: _Clock, caplog) -> None:
    inventory = tmp_path / "assets.csv"
    inventory.write_text(
        "address,name,role,purdue_level,zone,criticality\n10.0.0.5,plc-1,plc,1,cell-1,5\n"
    )
    polled = Polled(latest_inventory, str(inventory), 30)
    first = polled.current()
    assert [a.name for a in first.assets] == ["plc-1"]
    inventory.unlink()
    clock.now += 31
    assert polled.current() is first
    assert "re-reading" in caplog.text and "keeping the last value" in caplog.text


def test_a_failing_first_read_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Polled(latest_inventory, str(tmp_path / "missing.csv"), 30).current()


def test_polled_pickles_and_shares_one_poller_per_source(tmp_path: Path) -> None:
    polled = Polled(latest_snapshot_ref, str(tmp_path), 5)
    assert pickle.loads(pickle.dumps(polled)) == polled


def test_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Polled(latest_snapshot_ref, str(tmp_path), 0)


def test_stages_use_polled_sources_in_a_pipeline(tmp_path: Path) -> None:
    _snapshot(tmp_path / "cti", "203.0.113.7")
    inventory = tmp_path / "assets.csv"
    inventory.write_text(
        "address,name,role,purdue_level,zone,criticality\n10.0.0.5,plc-1,plc,1,cell-1,5\n"
    )
    line = raw_line(
        b'{"timestamp":"2026-11-20T08:00:32.302768+0000","flow_id":1,"event_type":"flow",'
        b'"src_ip":"10.0.0.5","src_port":53428,"dest_ip":"203.0.113.7","dest_port":443,'
        b'"proto":"TCP","flow":{"pkts_toserver":6,"pkts_toclient":5,"bytes_toserver":432,'
        b'"bytes_toclient":375,"start":"2026-11-20T08:00:01.893299+0000",'
        b'"end":"2026-11-20T08:00:32.302768+0000","age":31,"state":"closed"}}'
    )
    event = run_stages(line)
    assert isinstance(event, NormalizedEvent), event
    with TestPipeline() as pipeline:
        enriched = (
            pipeline
            | beam.Create([event])
            | EnrichWithAssets(Polled(latest_inventory, str(inventory), 60))
        )
        correlated = enriched.main | CorrelateWithCti(
            Polled(latest_snapshot_ref, str(tmp_path / "cti"), 60)
        )
        found = correlated.main | beam.Map(
            lambda e: (e.src_asset.name if e.src_asset else None, [m.value for m in e.cti_matches])
        )
        assert_that(found, equal_to([("plc-1", ["203.0.113.7"])]))
