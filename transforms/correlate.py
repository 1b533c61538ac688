"""Stage 6, CorrelateWithCti: which of an event's observables threat intelligence knows.

The side input is a `cti.snapshot.SnapshotRef` (a path and a version), never the
indicators themselves: each worker process builds one `cti.index.IndicatorIndex`
per snapshot version (`cti.index.index_for`) and every DoFn instance shares it.
A batch run reads one fixed snapshot; the streaming job feeds new references
as the refresh job publishes snapshots, and workers switch index on the next
element that sees the new version.

Checked on every event: ``src.ip`` and ``dst.ip`` (exact address and the most
specific covering CIDR), and the ``details`` keys that carry other observables
(`DETAIL_OBSERVABLES`: DNS queries and TLS server names as domains, URLs,
file hashes, JA3 fingerprints, CVE ids). Each hit becomes a `CtiMatch` on
``cti_matches``. Revoked and expired indicators never reach the index.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import msgspec

from schemas.event import CtiMatch, NormalizedEvent
from transforms._stage import StageFn, stage_outputs
from transforms.side_inputs import Polled

__all__ = ["DETAIL_OBSERVABLES", "CorrelateWithCti", "correlate_event"]

# details key -> indicator type its value is looked up as.
DETAIL_OBSERVABLES: dict[str, str] = {
    "query": "domain",
    "server_name": "domain",
    "host": "domain",
    "domain": "domain",
    "url": "url",
    "md5": "md5",
    "sha1": "sha1",
    "sha256": "sha256",
    "ja3": "ja3",
    "cve": "cve",
}


def correlate_event(event: NormalizedEvent, index: Any) -> NormalizedEvent:
    """``event`` with a `CtiMatch` for every indicator in ``index`` that one of its fields hits."""
    matches: list[CtiMatch] = []
    for field, address in (("src.ip", event.src.ip), ("dst.ip", event.dst.ip)):
        for row in index.lookup_ip(address):
            matches.append(index.match(row, field))
    details = event.details
    if details:
        for key, kind in DETAIL_OBSERVABLES.items():
            value = details.get(key)
            if not value:
                continue
            if kind == "domain":
                rows = index.lookup_domain(value)
            else:
                rows = index.lookup_value(kind, value)
            for row in rows:
                matches.append(index.match(row, f"details.{key}"))
    if not matches:
        return event
    return msgspec.structs.replace(event, cti_matches=tuple(matches))


def correlate_with(event: NormalizedEvent, snapshot: Any) -> NormalizedEvent:
    """The stage's function: `correlate_event` against the worker's index for ``snapshot``."""
    if snapshot is None:
        return event
    from cti.index import index_for

    return correlate_event(event, index_for(snapshot))


def correlate_polled(event: NormalizedEvent, snapshot: Polled) -> NormalizedEvent:
    """`correlate_with` the snapshot a streaming worker last found (`Polled`)."""
    return correlate_with(event, snapshot.current())


class CorrelateWithCti(beam.PTransform):  # type: ignore[misc]
    """Stage 6: events gain ``cti_matches``; outputs ``main`` and ``dead_letters``.

    Args:
        snapshots: A PCollection with at most one `SnapshotRef` per window (the side
            input; empty means no threat intelligence, and events pass unchanged), or a
            `Polled` snapshot directory that streaming workers re-read.
    """

    def __init__(self, snapshots: beam.PCollection | Polled) -> None:
        super().__init__()
        self._snapshots = snapshots

    def expand(self, events: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        if isinstance(self._snapshots, Polled):
            return stage_outputs(
                events, "CorrelateEvents", StageFn("correlate", correlate_polled), self._snapshots
            )
        return stage_outputs(
            events,
            "CorrelateEvents",
            StageFn("correlate", correlate_with),
            beam.pvalue.AsSingleton(self._snapshots, default_value=None),
        )
