"""Stage 4, Deduplicate: one event per ``event_id``, whatever the source redelivered.

Kinesis delivers at least once and sensors re-send after reconnecting; Normalize
derives ``event_id`` from the record's identity, so a redelivery carries the same
id. This stage keeps the first event of each id and drops (and counts) the rest.

Events are keyed by ``event_id``.
- Batch (``ttl_seconds=None``): exact over the whole input. Events are grouped by
  id and the copy with the lowest source position (file name, then line) is
  kept, so the result does not depend on bundle order. A plain GroupByKey, not a
  combiner: combiner lifting would keep every distinct event decoded in memory
  before the shuffle (a million events took 8 GB). Events cross the shuffle as
  msgpack (`transforms.coders`). A stateful DoFn would do the same, but Beam's
  in-process runner drops the metrics of other steps fused with a stateful DoFn
  in batch, and the run summary is built from those metrics.
- Streaming: a stateful DoFn; a value state remembers that the id was seen and an
  event-time timer clears it ``ttl_seconds`` (default 600) after the element's
  timestamp, the Kinesis arrival time, so memory stays bounded by the ids of the
  last ten minutes of the stream (the source's watermark follows arrival times and
  advances on idle shards, so timers fire on a quiet stream too). A redelivery
  later than that passes; ClickHouse's ReplacingMergeTree still keeps one row per
  ``event_id``. Not a processing-time timer: Beam's Python SDK holds the output
  watermark at the element's timestamp until such a timer fires, which held every
  window downstream (the threshold rules) back by the whole TTL (seen on Flink).

Counters: ``dedupe.in``, ``dedupe.out``, ``dedupe.dropped`` (in the run summary as
``duplicates_dropped``) and ``dedupe.dead_letter.<Class>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.timestamp import Duration

from schemas.dead_letter import dead_letter_from_error
from schemas.event import NormalizedEvent
from transforms import coders  # noqa: F401  (registers the msgpack coders)
from transforms._stage import DEAD_LETTERS, MAIN, StageCounters, event_origin

__all__ = ["DEFAULT_TTL_SECONDS", "Deduplicate"]

DEFAULT_TTL_SECONDS = 600.0


_SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
_EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)
_SEEN_STATE = beam.DoFn.StateParam(_SEEN)
_EXPIRY_TIMER = beam.DoFn.TimerParam(_EXPIRY)


class _DedupeFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, ttl_seconds: float | None) -> None:
        super().__init__()
        self._ttl = ttl_seconds

    def setup(self) -> None:
        self.counters = StageCounters("dedupe")

    def process(
        self,
        element: tuple[str, NormalizedEvent],
        timestamp: Any = beam.DoFn.TimestampParam,
        seen: Any = _SEEN_STATE,
        expiry: Any = _EXPIRY_TIMER,
    ) -> Iterator[Any]:
        counters = self.counters
        counters.inputs += 1
        _, event = element
        try:
            if seen.read():
                counters.extra["dropped"] += 1
                return
            seen.write(True)
            if self._ttl is not None:
                expiry.set(timestamp + Duration(seconds=self._ttl))
        except Exception as error:  # a state failure must not lose the event
            letter = dead_letter_from_error(
                "dedupe", error, event_origin(event), record_kind=event.source_kind
            )
            counters.dead_letters[letter.error_class] += 1
            yield TaggedOutput(DEAD_LETTERS, letter)
            return
        counters.outputs += 1
        yield event

    @on_timer(_EXPIRY)
    def expire(self, seen: Any = _SEEN_STATE) -> None:
        seen.clear()

    def finish_bundle(self) -> None:
        self.counters.flush()


def _keyed(event: NormalizedEvent) -> tuple[str, NormalizedEvent]:
    return event.event_id, event


def _position(event: NormalizedEvent) -> tuple[str, int, str]:
    source = event.source
    return (source.uri, source.line or 0, source.sequence or "")


class _FirstCopyFn(beam.DoFn):  # type: ignore[misc]
    """Per id: the copy with the lowest source position; the others are counted as dropped."""

    def setup(self) -> None:
        self.counters = StageCounters("dedupe")

    def process(self, element: tuple[str, Iterable[NormalizedEvent]]) -> Iterator[Any]:
        _, copies = element
        kept: NormalizedEvent | None = None
        count = 0
        for event in copies:
            count += 1
            if kept is None or _position(event) < _position(kept):
                kept = event
        counters = self.counters
        counters.inputs += count
        counters.outputs += 1
        if count > 1:
            counters.extra["dropped"] += count - 1
        yield kept

    def finish_bundle(self) -> None:
        self.counters.flush()


class Deduplicate(beam.PTransform):  # type: ignore[misc]
    """Stage 4: drop events whose ``event_id`` was already seen; outputs ``main``, ``dead_letters``.

    Args:
        ttl_seconds: How long an id is remembered in streaming jobs; ``None`` (batch)
            remembers every id for the whole run.
    """

    def __init__(self, ttl_seconds: float | None = None) -> None:
        super().__init__()
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError(f"the deduplication TTL must be positive, got {ttl_seconds}")
        self._ttl = ttl_seconds

    def expand(self, events: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        keyed = events | "KeyByEventId" >> beam.Map(_keyed).with_output_types(
            tuple[str, NormalizedEvent]
        )
        if self._ttl is None:
            return (
                keyed
                | "GroupById" >> beam.GroupByKey()
                | "FirstCopy" >> beam.ParDo(_FirstCopyFn()).with_outputs(DEAD_LETTERS, main=MAIN)
            )
        return keyed | "DropRepeats" >> beam.ParDo(_DedupeFn(self._ttl)).with_outputs(
            DEAD_LETTERS, main=MAIN
        )
