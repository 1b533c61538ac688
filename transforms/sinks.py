"""File sinks: JSON lines written per bundle, and the event load stage on top of them.

`WriteJsonLines` writes each bundle to its own file, under a temporary name that
is renamed into place when the bundle finishes, so a retried bundle never leaves
half a file behind and nothing waits for a side input (Beam's ``WriteToText``
does, which makes the runner hold every element in memory first).
`WriteEventsJsonl` writes events as files: the load stage of a run without
stores (the benchmark's baseline), or an export beside ClickHouse (``--output``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any

import apache_beam as beam
import msgspec
from apache_beam.io.filesystems import FileSystems

from schemas.event import NormalizedEvent
from transforms._stage import StageCounters

__all__ = ["WriteEventsJsonl", "WriteJsonLines", "encode_event"]

_encoder = msgspec.json.Encoder()


def encode_event(event: NormalizedEvent) -> str:
    return _encoder.encode(event).decode()


def encode_json(record: Any) -> bytes:
    """Any msgspec-encodable record as compact JSON (module level, so DoFns can pickle it)."""
    return _encoder.encode(record)


class _WriteJsonLinesFn(beam.DoFn):  # type: ignore[misc]
    def __init__(
        self, directory: str, prefix: str, encode: Callable[[Any], bytes], stage: str | None
    ) -> None:
        self._directory = directory
        self._prefix = prefix
        self._encode = encode
        self._stage = stage

    def setup(self) -> None:
        FileSystems.mkdirs(self._directory) if not FileSystems.exists(self._directory) else None
        self.counters = StageCounters(self._stage) if self._stage else None

    def start_bundle(self) -> None:
        self._handle: IO[bytes] | None = None
        self._final = ""
        self._temporary = ""

    def _open(self) -> IO[bytes]:
        name = f"{self._prefix}-{uuid.uuid4().hex}.jsonl"
        self._final = FileSystems.join(self._directory, name)
        self._temporary = FileSystems.join(self._directory, f".{name}.tmp")
        handle: IO[bytes] = FileSystems.create(self._temporary)
        self._handle = handle
        return handle

    def process(self, element: Any) -> Iterator[str]:
        handle = self._handle or self._open()
        handle.write(self._encode(element) + b"\n")
        if self.counters is not None:
            self.counters.inputs += 1
            self.counters.outputs += 1
        return iter(())

    def finish_bundle(self) -> None:
        if self._handle is not None:
            self._handle.close()
            FileSystems.rename([self._temporary], [self._final])
            self._handle = None
        if self.counters is not None:
            self.counters.flush()


class WriteJsonLines(beam.PTransform):  # type: ignore[misc]
    """Write records as ``<directory>/<prefix>-<bundle id>.jsonl``, one JSON object a line.

    Args:
        directory: Where the files go (any filesystem Beam knows).
        prefix: File name prefix.
        encode: Record to JSON bytes (default: msgspec).
        stage: When set, count ``<stage>.in``/``<stage>.out`` for every line written.
    """

    def __init__(
        self,
        directory: str,
        prefix: str,
        encode: Callable[[Any], bytes] = encode_json,
        stage: str | None = None,
    ) -> None:
        super().__init__()
        self._fn = _WriteJsonLinesFn(directory, prefix, encode, stage)

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return records | "WriteJsonLines" >> beam.ParDo(self._fn)


class WriteEventsJsonl(beam.PTransform):  # type: ignore[misc]
    """Events as ``<directory>/events-*.jsonl``: the load stage without a store, or an export.

    Args:
        directory: Where the files go.
        stage: Counter prefix: ``load`` when the files are the store, ``export`` when
            they are a copy beside ClickHouse (so events are not counted as stored twice).
    """

    def __init__(self, directory: str, stage: str = "load") -> None:
        super().__init__()
        self._directory = directory
        self._stage = stage

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        return events | "WriteEventFiles" >> WriteJsonLines(
            self._directory, "events", stage=self._stage
        )
