"""The machinery every stage shares: one element in, one out or one dead letter, counted.

A stage's logic is a pure function; `StageFn` adapts it to Beam, routes any
exception to the ``dead_letters`` output as a `DeadLetter` (never a silent
drop), and keeps the ``<stage>.in``, ``<stage>.out`` and
``<stage>.dead_letter.<ErrorClass>`` counters. Counts are kept in plain
integers and committed to Beam metrics at the end of each bundle, which costs
far less than a metrics call per element.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import apache_beam as beam
import msgspec
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from schemas.dead_letter import dead_letter_from_error
from schemas.event import NormalizedEvent
from schemas.records import RawLine

__all__ = [
    "DEAD_LETTERS",
    "MAIN",
    "METRICS_NAMESPACE",
    "StageCounters",
    "StageFn",
    "event_origin",
    "origin_of",
    "stage_outputs",
]

METRICS_NAMESPACE = "otsec"
MAIN = "main"
DEAD_LETTERS = "dead_letters"

In = TypeVar("In")
Out = TypeVar("Out")


class StageCounters:
    """Per-bundle counts of one stage, committed to Beam metrics on `flush`."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.inputs = 0
        self.outputs = 0
        self.dead_letters: Counter[str] = Counter()
        self.extra: Counter[str] = Counter()
        self._in = Metrics.counter(METRICS_NAMESPACE, f"{stage}.in")
        self._out = Metrics.counter(METRICS_NAMESPACE, f"{stage}.out")

    def flush(self) -> None:
        if self.inputs:
            self._in.inc(self.inputs)
            self.inputs = 0
        if self.outputs:
            self._out.inc(self.outputs)
            self.outputs = 0
        for error_class, count in self.dead_letters.items():
            Metrics.counter(METRICS_NAMESPACE, f"{self.stage}.dead_letter.{error_class}").inc(count)
        self.dead_letters.clear()
        for name, count in self.extra.items():
            Metrics.counter(METRICS_NAMESPACE, f"{self.stage}.{name}").inc(count)
        self.extra.clear()


_encode_event = msgspec.json.Encoder().encode


def origin_of(element: Any) -> RawLine:
    """The raw line a record came from (a `RawLine` is its own origin; an event its JSON)."""
    if isinstance(element, RawLine):
        return element
    if isinstance(element, NormalizedEvent):
        return event_origin(element)
    return element.origin  # type: ignore[no-any-return]


def event_origin(event: NormalizedEvent) -> RawLine:
    """What a dead letter of stages 4-8 keeps: the event as JSON, at its source position.

    ``otsec dlq replay`` decodes it back into the event and stores it.
    """
    return RawLine(payload=_encode_event(event), source=event.source)


class StageFn(beam.DoFn, Generic[In, Out]):  # type: ignore[misc]
    """A DoFn around one pure function, with dead letters and counters.

    Args:
        stage: The stage name, for counters and dead letters.
        transform: The stage's pure function (module level, so it pickles); it may raise.
        origin: The raw line a dead letter should keep for an element.
    """

    def __init__(
        self,
        stage: str,
        transform: Callable[..., Out],
        origin: Callable[[In], RawLine] = origin_of,
    ) -> None:
        super().__init__()
        self.stage = stage
        self.transform = transform
        self.origin = origin

    def record_kind(self, element: In) -> str | None:
        return getattr(element, "kind", None) or getattr(element, "source_kind", None)

    def setup(self) -> None:
        self.counters = StageCounters(self.stage)

    # ``side_inputs`` stays unannotated: Beam reads process() annotations as type hints
    # and rejects ``*args: Any`` on a ParDo without side inputs.
    def process(self, element: In, *side_inputs) -> tuple[Any]:  # type: ignore[no-untyped-def]
        # A one-element tuple, not a generator: Beam iterates either, and this is
        # the hottest path of the pipeline. Side inputs, if any, follow the element.
        counters = self.counters
        counters.inputs += 1
        try:
            result = self.transform(element, *side_inputs)
        except Exception as error:  # every failure becomes a dead letter, never a drop
            letter = dead_letter_from_error(
                self.stage, error, self.origin(element), record_kind=self.record_kind(element)
            )
            counters.dead_letters[letter.error_class] += 1
            return (TaggedOutput(DEAD_LETTERS, letter),)
        counters.outputs += 1
        return (result,)

    def finish_bundle(self) -> None:
        self.counters.flush()


def stage_outputs(
    pcoll: beam.PCollection, label: str, fn: StageFn[Any, Any], *side_inputs: Any
) -> beam.pvalue.DoOutputsTuple:
    """Apply a stage DoFn; the result has ``.main`` and ``.dead_letters`` outputs."""
    return pcoll | label >> beam.ParDo(fn, *side_inputs).with_outputs(DEAD_LETTERS, main=MAIN)
