"""Side inputs that follow their source while a streaming job runs: the CTI snapshot and the
asset inventory.

Beam's "slowly updating global window side input" pattern: a `PeriodicImpulse`
fires every ``interval``; each firing reads the current value (the newest
snapshot reference in a directory; the inventory from its file or PostgreSQL);
the values are re-windowed into the global window with a trigger that fires on
every element and discards what fired before, so a singleton side view always
holds the latest value. A firing that finds the value unchanged emits it again
(cheap: a reference, or an inventory of a few thousand rows), and workers only
rebuild their index or table when the version changes (`cti.index.index_for`,
`transforms.assets.table_for`).

A batch run does not use these: its snapshot and inventory are fixed at start
(`beam_pipelines.event_pipeline.EventStages` takes plain values).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.utils.timestamp import MAX_TIMESTAMP

__all__ = ["Refreshing", "latest_inventory", "latest_snapshot_ref"]

_log = logging.getLogger("otsec.side_inputs")


def latest_snapshot_ref(directory: str) -> Any:
    """The newest `SnapshotRef` in ``directory``, or None while there is none."""
    from cti.snapshot import latest_snapshot

    return latest_snapshot(directory)


def latest_inventory(source: str) -> Any:
    """The inventory from a CSV/JSON file path or a ``postgresql://`` DSN (``assets`` table)."""
    from transforms.assets import load_inventory, read_assets

    if source.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(source) as connection:
            return read_assets(connection)
    return load_inventory(source)


class _ReadCurrent(beam.DoFn):  # type: ignore[misc]
    """Each impulse: the current value; a failing read keeps the previous one in force."""

    def __init__(self, read: Callable[[str], Any], source: str) -> None:
        self._read = read
        self._source = source

    def process(self, _: Any) -> Iterator[Any]:
        try:
            value = self._read(self._source)
        except Exception as error:  # the job goes on with the value it has
            _log.warning("refreshing side input from %s failed: %s", self._source, error)
            return
        if value is not None:
            yield value


class Refreshing(beam.PTransform):  # type: ignore[misc]
    """A global-window PCollection that re-reads ``read(source)`` every ``interval_s``.

    Args:
        read: `latest_snapshot_ref` or `latest_inventory` (module level, so it pickles).
        source: The snapshot directory, the inventory file or a PostgreSQL DSN.
        interval_s: Seconds between reads.
        stop_after_s: Stop firing after this long (tests); None: run as long as the job.
    """

    def __init__(
        self,
        read: Callable[[str], Any],
        source: str,
        interval_s: float,
        stop_after_s: float | None = None,
    ) -> None:
        super().__init__()
        if interval_s <= 0:
            raise ValueError(f"the refresh interval must be positive, got {interval_s}")
        self._read = read
        self._source = source
        self._interval = interval_s
        self._stop_after = stop_after_s

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        start = time.time()
        stop = start + self._stop_after if self._stop_after is not None else None
        impulses = pbegin | "Every" >> PeriodicImpulse(
            start_timestamp=start,
            stop_timestamp=stop if stop is not None else MAX_TIMESTAMP.micros / 1e6,
            fire_interval=self._interval,
        )
        return (
            impulses
            | "ReadCurrent" >> beam.ParDo(_ReadCurrent(self._read, self._source))
            | "LatestOnly"
            >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        )
