"""Side inputs that refresh while a streaming job runs: each impulse reads the newest value,
a failing read keeps the job going, and the output sits in the global window."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from cti.indicators import make_indicator
from cti.snapshot import indicators_to_table, write_snapshot
from transforms.side_inputs import Refreshing, _ReadCurrent, latest_inventory, latest_snapshot_ref


def _snapshot(directory: Path, address: str) -> str:
    table = indicators_to_table([make_indicator("ipv4", address, confidence=80, feed="t")])
    return write_snapshot(str(directory), table).version


def test_each_read_returns_the_newest_snapshot(tmp_path: Path) -> None:
    read = _ReadCurrent(latest_snapshot_ref, str(tmp_path))
    assert list(read.process(None)) == []  # no snapshot yet: nothing, the job waits
    first = _snapshot(tmp_path, "203.0.113.1")
    assert [ref.version for ref in read.process(None)] == [first]
    second = _snapshot(tmp_path, "203.0.113.2")
    assert [ref.version for ref in read.process(None)] == [second]


def test_a_failing_read_is_logged_and_skipped(tmp_path: Path, caplog) -> None:
    read = _ReadCurrent(latest_inventory, str(tmp_path / "missing.csv"))
    assert list(read.process(None)) == []
    assert "refreshing side input from" in caplog.text


def test_refreshing_fires_repeatedly_with_the_latest_value(tmp_path: Path) -> None:
    version = _snapshot(tmp_path, "203.0.113.9")
    with TestPipeline() as pipeline:
        refs = pipeline | Refreshing(latest_snapshot_ref, str(tmp_path), 0.2, stop_after_s=0.7)

        def check(found: list) -> None:
            assert len(found) >= 2 and {ref.version for ref in found} == {version}

        assert_that(refs | beam.Map(lambda ref: ref), check)


def test_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Refreshing(latest_snapshot_ref, str(tmp_path), 0)
