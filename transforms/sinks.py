"""Stage 8 (files for now): normalized events written as JSON lines.

`WriteEventsJsonl` is the load stage until the ClickHouse sink replaces it; it
keeps the ``load.in``/``load.out`` counters the run summary reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import apache_beam as beam
import msgspec

from schemas.event import NormalizedEvent
from transforms._stage import StageCounters

__all__ = ["WriteEventsJsonl", "encode_event"]

_encoder = msgspec.json.Encoder()


def encode_event(event: NormalizedEvent) -> str:
    return _encoder.encode(event).decode()


class _EncodeEventFn(beam.DoFn):  # type: ignore[misc]
    def setup(self) -> None:
        self.counters = StageCounters("load")

    def process(self, event: NormalizedEvent) -> Iterator[str]:
        self.counters.inputs += 1
        line = _encoder.encode(event).decode()
        self.counters.outputs += 1
        yield line

    def finish_bundle(self) -> None:
        self.counters.flush()


class WriteEventsJsonl(beam.PTransform):  # type: ignore[misc]
    """Write events as ``<directory>/events-SSSSS-of-NNNNN.jsonl``."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self._prefix = os.path.join(directory, "events")

    def expand(self, events: beam.PCollection) -> beam.pvalue.PDone:
        return (
            events
            | "EncodeEvents" >> beam.ParDo(_EncodeEventFn())
            | "WriteEventFiles" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
        )
