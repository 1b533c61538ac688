"""Context that follows its source while a streaming job runs: the CTI snapshot and the
asset inventory.

A batch run fixes both at start (`beam_pipelines.event_pipeline.EventStages`
takes plain values and passes them as singleton side inputs). A streaming job
passes a `Polled` instead: a small picklable description (how to read, from
where, how often) that each worker process resolves itself. The first element a
worker processes reads the current value; after ``interval_s`` the next element
reads it again, so a snapshot that ``otsec cti refresh`` writes, or an inventory
imported into PostgreSQL, reaches the running job within one interval, with no
restart. Workers only rebuild their index or table when the version changes
(`cti.index.index_for`, `transforms.assets.table_for`).

Why not Beam's "slowly updating side input" (``PeriodicImpulse`` re-windowed into
the global window): on Beam 2.62's portable Flink runner the side input's
buffered state cannot be checkpointed (the first checkpoint of a stage with such
a side input fails with ``ClassCastException: [B cannot be cast to
WindowedValue`` and the job restarts from scratch, over and over; seen here), and
a polling ``PeriodicImpulse`` grows every checkpoint (Beam issue 27648). A
worker-side poll keeps no state in checkpoints at all.

A read that fails keeps the value in force and is logged (the next element tries
again after the interval); a worker whose very first read fails raises, and the
stage turns the event into a dead letter rather than enrich it with nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Polled", "latest_inventory", "latest_snapshot_ref"]

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

        with psycopg.connect(source, connect_timeout=10) as connection:
            inventory = read_assets(connection)
        return inventory if inventory.assets else None
    return load_inventory(source)


@dataclasses.dataclass(frozen=True)
class Polled:
    """``read(source)``, re-read by each worker process at most every ``interval_s``.

    Args:
        read: `latest_snapshot_ref` or `latest_inventory` (module level, so it pickles).
        source: The snapshot directory, the inventory file or a PostgreSQL DSN.
        interval_s: Seconds between reads.

    Raises:
        ValueError: On a non-positive interval.
    """

    read: Callable[[str], Any]
    source: str
    interval_s: float

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError(f"the refresh interval must be positive, got {self.interval_s}")

    def current(self) -> Any:
        """The value as of the last read (reading first if it is due)."""
        return _poller(self).get()


class _Poller:
    def __init__(self, polled: Polled) -> None:
        self._polled = polled
        self._lock = threading.Lock()
        self._value: Any = None
        self._read_at: float | None = None

    def get(self) -> Any:
        read_at = self._read_at
        if read_at is not None and time.monotonic() - read_at < self._polled.interval_s:
            return self._value
        with self._lock:
            if self._read_at is not None and self._read_at != read_at:
                return self._value  # another thread read it meanwhile
            polled = self._polled
            try:
                value = polled.read(polled.source)
            except Exception as error:
                if self._read_at is None:
                    raise  # nothing to fall back on: the event becomes a dead letter
                _log.warning(
                    "re-reading %s failed, keeping the last value: %s", polled.source, error
                )
                self._read_at = time.monotonic()
                return self._value
            self._value = value
            self._read_at = time.monotonic()
            return value


_pollers: dict[Polled, _Poller] = {}
_pollers_lock = threading.Lock()


def _poller(polled: Polled) -> _Poller:
    """The worker process's one poller per `Polled` (shared by every DoFn instance)."""
    poller = _pollers.get(polled)
    if poller is None:
        with _pollers_lock:
            poller = _pollers.setdefault(polled, _Poller(polled))
    return poller
