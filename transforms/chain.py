"""Stages 1-3 as one plain function: a raw line in, an event or a dead letter out.

The pipeline runs decode, validate and normalize as separate transforms; this is
the same three functions in a row, for the places that handle records one at a
time: the benchmark's plain-loop baseline, dead-letter replay and tests.
"""

from __future__ import annotations

from schemas.dead_letter import DeadLetter, dead_letter_from_error
from schemas.event import NormalizedEvent
from schemas.records import RawLine
from transforms.decode import DEFAULT_MAX_RECORD_BYTES, decode_line
from transforms.normalize import normalize_record
from transforms.validate import validate_record

__all__ = ["process_line"]


def process_line(
    line: RawLine, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, attempts: int = 1
) -> NormalizedEvent | DeadLetter:
    """Decode, validate and normalize ``line``; a failure is the dead letter of its stage."""
    stage = "decode"
    try:
        decoded = decode_line(line, max_record_bytes)
        stage = "validate"
        validated = validate_record(decoded)
        stage = "normalize"
        return normalize_record(validated)
    except Exception as error:  # every failure becomes a dead letter, as in the pipeline
        return dead_letter_from_error(stage, error, line, attempts=attempts)
