"""Shared test helpers: fixture paths and a one-call run of stages 1-3 as pure functions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from schemas.dead_letter import DeadLetter, dead_letter_from_error
from schemas.event import NormalizedEvent
from schemas.records import RawLine, SourcePosition
from transforms.decode import decode_line
from transforms.normalize import normalize_record
from transforms.validate import validate_record

FIXTURES = Path(__file__).parent / "fixtures"
ZEEK_TSV = FIXTURES / "zeek" / "tsv"

# Keep Beam off the network and quiet in every test process.
os.environ.setdefault("OTSEC_HOME", str(Path(__file__).parent.parent / ".otsec-test"))


def run_stages(line: RawLine) -> NormalizedEvent | DeadLetter:
    """Stages 1-3 as the pipeline runs them: an event, or the dead letter of the failing stage."""
    stage = "decode"
    try:
        decoded = decode_line(line)
        stage = "validate"
        validated = validate_record(decoded)
        stage = "normalize"
        return normalize_record(validated)
    except Exception as error:
        return dead_letter_from_error(stage, error, line)


def raw_line(payload: bytes, context: tuple[bytes, ...] | None = None, line: int = 1) -> RawLine:
    return RawLine(payload=payload, source=SourcePosition(uri="test", line=line), context=context)


@pytest.fixture
def zeek_tsv() -> Path:
    return ZEEK_TSV
