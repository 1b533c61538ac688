"""The run summary: what came in, where every record ended, and whether the books balance."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

__all__ = ["STAGES", "RunSummary", "StageSummary", "summarize"]

# Stages in pipeline order: the file reader, then the eight stages.
STAGES = (
    "read",
    "decode",
    "validate",
    "normalize",
    "dedupe",
    "enrich",
    "correlate",
    "detect",
    "load",
)


class StageSummary(msgspec.Struct, kw_only=True):
    in_: int = msgspec.field(name="in", default=0)
    out: int = 0
    dead_letter: int = 0


class DeadLetterSummary(msgspec.Struct, kw_only=True):
    total: int = 0
    by_stage: dict[str, int] = msgspec.field(default_factory=dict)
    by_error_class: dict[str, int] = msgspec.field(default_factory=dict)


class RunSummary(msgspec.Struct, kw_only=True):
    """The summary of the architecture page; ``conservation_ok`` proves nothing was lost."""

    input_records: int
    stored_events: int
    duplicates_dropped: int
    dead_letters: DeadLetterSummary
    alerts: int
    stages: dict[str, StageSummary]
    conservation_ok: bool
    # Alerts PostgreSQL refused after retries: dead letters of stage "alerts" (not input
    # records, so outside the conservation equation), stored like the others for replay.
    alerts_dead_lettered: int = 0
    dead_letters_stored: int = 0
    dead_letters_in_fallback_files: int = 0
    files: int = 0
    header_lines: int = 0
    blank_lines: int = 0
    seconds: float = 0.0
    records_per_second: float = 0.0

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2)


def summarize(counters: Mapping[str, int], seconds: float = 0.0) -> RunSummary:
    """Build the summary from the ``otsec`` counters of a finished run.

    Args:
        counters: Counter name (``decode.in``, ``validate.dead_letter.ValidationError``...)
            to its committed value.
        seconds: Wall-clock duration of the run.
    """
    stages: dict[str, StageSummary] = {}
    by_stage: dict[str, int] = {}
    by_class: dict[str, int] = {}
    for stage in STAGES:
        dead = {
            name.rsplit(".", 1)[1]: value
            for name, value in counters.items()
            if name.startswith(f"{stage}.dead_letter.") and value
        }
        stages[stage] = StageSummary(
            in_=counters.get(f"{stage}.in", 0),
            out=counters.get(f"{stage}.out", 0),
            dead_letter=sum(dead.values()),
        )
        if dead:
            by_stage[stage] = sum(dead.values())
        for error_class, value in dead.items():
            by_class[error_class] = by_class.get(error_class, 0) + value
    input_records = stages["read"].in_
    stored = stages["load"].out
    duplicates = counters.get("dedupe.dropped", 0)
    total_dead = sum(by_stage.values())
    return RunSummary(
        input_records=input_records,
        stored_events=stored,
        duplicates_dropped=duplicates,
        dead_letters=DeadLetterSummary(
            total=total_dead, by_stage=by_stage, by_error_class=dict(sorted(by_class.items()))
        ),
        alerts=counters.get("detect.alerts", 0),
        stages=stages,
        conservation_ok=input_records == stored + duplicates + total_dead,
        alerts_dead_lettered=sum(
            value for name, value in counters.items() if name.startswith("alerts.dead_letter.")
        ),
        dead_letters_stored=counters.get("dead_letters.out", 0),
        dead_letters_in_fallback_files=counters.get("dead_letters.fallback", 0),
        files=counters.get("read.files", 0),
        header_lines=counters.get("read.header_lines", 0),
        blank_lines=counters.get("read.blank_lines", 0),
        seconds=round(seconds, 3),
        records_per_second=round(input_records / seconds, 1) if seconds > 0 else 0.0,
    )
