"""``otsec dlq replay``: re-drive dead letters after a fix, and account for each one.

A dead letter of stages 1-3 keeps the original bytes (and the Zeek header a TSV
line needs), so it is decoded again from the start; one of stages 4-8 keeps the
event as it was when it failed, which goes straight back to ClickHouse (the
enrichment, correlation and detection it missed are not run again: replay has no
inventory, snapshot or alert state). What
lands is marked ``replayed_at``; what fails again is stored as a dead letter
with ``attempts + 1``. Replay uses the same stage functions and the same
ClickHouse writer as the pipeline; it runs in this process, since dead letters
are few and each needs its own verdict.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from schemas.dead_letter import DeadLetter, dead_letter_from_error
from schemas.event import NormalizedEvent
from schemas.records import RawLine
from transforms._retry import RetryPolicy
from transforms.chain import process_line
from transforms.clickhouse import ClickHouseConfig, EventWriter, load_dead_letter
from transforms.dead_letters import read_dead_letters
from transforms.postgres import DEAD_LETTER_COLUMNS, store_dead_letters

__all__ = ["ReplayFilter", "ReplayReport", "load_pending", "replay"]

_event_decoder = msgspec.json.Decoder(NormalizedEvent)
_STAGES_FROM_DECODE = ("decode", "validate", "normalize")
_EVENT_STAGES = ("dedupe", "enrich", "correlate", "detect", "load")  # payload: the event JSON


@dataclasses.dataclass(frozen=True)
class ReplayFilter:
    stage: str | None = None
    error_class: str | None = None
    limit: int | None = None


@dataclasses.dataclass
class ReplayReport:
    selected: int = 0
    stored: int = 0
    failed_again: Counter[str] = dataclasses.field(default_factory=Counter)
    not_replayable: int = 0

    def describe(self) -> str:
        lines = [
            f"dead letters selected   {self.selected:>10,}",
            f"events stored           {self.stored:>10,}",
            f"failed again            {sum(self.failed_again.values()):>10,}",
        ]
        lines += [f"  {cls}: {count:,}" for cls, count in sorted(self.failed_again.items())]
        if self.not_replayable:
            lines.append(
                f"not replayable          {self.not_replayable:>10,}  "
                "(unreadable files: run otsec run on them again)"
            )
        return "\n".join(lines)


def load_pending(connection: Any, selection: ReplayFilter) -> list[DeadLetter]:
    """Dead letters in PostgreSQL not yet replayed, oldest first."""
    clauses = ["replayed_at IS NULL"]
    params: list[Any] = []
    if selection.stage:
        clauses.append("stage = %s")
        params.append(selection.stage)
    if selection.error_class:
        clauses.append("error_class = %s")
        params.append(selection.error_class)
    sql = (
        f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM dead_letters "
        f"WHERE {' AND '.join(clauses)} ORDER BY failed_at, id"
    )
    if selection.limit:
        sql += f" LIMIT {int(selection.limit)}"
    letters = []
    for row in connection.execute(sql, params).fetchall():
        values = dict(zip(DEAD_LETTER_COLUMNS, row, strict=True))
        values["payload"] = bytes(values["payload"])
        letters.append(msgspec.convert(values, DeadLetter, strict=False))
    return letters


def load_from_files(paths: Sequence[str], selection: ReplayFilter) -> list[DeadLetter]:
    letters = [
        letter
        for letter in read_dead_letters(list(paths))
        if (not selection.stage or letter.stage == selection.stage)
        and (not selection.error_class or letter.error_class == selection.error_class)
    ]
    return letters[: selection.limit] if selection.limit else letters


def _origin(letter: DeadLetter) -> RawLine:
    context = None
    if letter.context:
        context = tuple(
            line.encode("utf-8", "surrogateescape") for line in letter.context.split("\n")
        )
    return RawLine(payload=letter.payload, source=letter.source, context=context)


def _redrive(letter: DeadLetter) -> NormalizedEvent | DeadLetter:
    """Run a stage 1-3 dead letter from decode again: an event, or its new dead letter."""
    return process_line(_origin(letter), attempts=letter.attempts + 1)


def replay(
    letters: Iterable[DeadLetter],
    clickhouse: ClickHouseConfig,
    connection: Any,
    policy: RetryPolicy | None = None,
) -> ReplayReport:
    """Re-drive ``letters``; store new dead letters and mark the rest replayed in PostgreSQL."""
    report = ReplayReport()
    events: list[tuple[DeadLetter, NormalizedEvent]] = []
    again: list[DeadLetter] = []
    done: list[str] = []
    for letter in letters:
        report.selected += 1
        if letter.stage in _EVENT_STAGES:
            try:
                events.append((letter, _event_decoder.decode(letter.payload)))
            except msgspec.DecodeError as error:
                again.append(
                    dead_letter_from_error(
                        letter.stage, error, _origin(letter), attempts=letter.attempts + 1
                    )
                )
                done.append(letter.id)
        elif letter.stage in _STAGES_FROM_DECODE:
            result = _redrive(letter)
            if isinstance(result, DeadLetter):
                again.append(result)
                done.append(letter.id)
            else:
                events.append((letter, result))
        else:
            report.not_replayable += 1
    writer = EventWriter(clickhouse, policy or RetryPolicy(attempts=clickhouse.attempts))
    try:
        by_id = {event.event_id: letter for letter, event in events}
        failed = writer.write([event for _, event in events]) if events else []
    finally:
        writer.close()
    failed_ids = set()
    for event, failure in failed:
        failed_ids.add(event.event_id)
        letter = by_id[event.event_id]
        again.append(
            msgspec.structs.replace(load_dead_letter(event, failure), attempts=letter.attempts + 1)
        )
        done.append(letter.id)
    for letter, event in events:
        if event.event_id not in failed_ids:
            report.stored += 1
            done.append(letter.id)
    for letter in again:
        report.failed_again[letter.error_class] += 1
    if again:
        store_dead_letters(connection, again)
    again_ids = {letter.id for letter in again}
    finished = [letter_id for letter_id in done if letter_id not in again_ids]
    if finished:
        connection.execute(
            "UPDATE dead_letters SET replayed_at = now() WHERE id = ANY(%s)", (finished,)
        )
    return report


def fallback_files(data_dir: str) -> list[str]:
    directory = os.path.join(data_dir, "dead_letters-fallback")
    if not os.path.isdir(directory):
        return []
    return sorted(
        os.path.join(directory, name) for name in os.listdir(directory) if name.endswith(".jsonl")
    )
