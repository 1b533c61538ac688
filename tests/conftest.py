"""Shared test helpers: fixture paths and a one-call run of stages 1-3 as pure functions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from schemas.dead_letter import DeadLetter
from schemas.event import NormalizedEvent
from schemas.records import RawLine, SourcePosition
from transforms.chain import process_line

FIXTURES = Path(__file__).parent / "fixtures"
ZEEK_TSV = FIXTURES / "zeek" / "tsv"

# Keep Beam off the network and quiet in every test process.
os.environ.setdefault("OTSEC_HOME", str(Path(__file__).parent.parent / ".otsec-test"))


def run_stages(line: RawLine) -> NormalizedEvent | DeadLetter:
    """Stages 1-3 as the pipeline runs them: an event, or the dead letter of the failing stage."""
    return process_line(line)


def raw_line(payload: bytes, context: tuple[bytes, ...] | None = None, line: int = 1) -> RawLine:
    return RawLine(payload=payload, source=SourcePosition(uri="test", line=line), context=context)


@pytest.fixture
def zeek_tsv() -> Path:
    return ZEEK_TSV
