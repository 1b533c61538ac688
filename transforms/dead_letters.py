"""The dead-letter sink: every stage's failures, in one place, as JSON lines.

Each line is a `DeadLetter` encoded with msgspec (the payload as base64, so
any bytes survive). PostgreSQL is the primary store (`transforms.postgres`);
these files are the ``--dead-letter-dir`` export and the fallback when
PostgreSQL is down, and `read_dead_letters` reads both back for replay.
"""

from __future__ import annotations

import apache_beam as beam
import msgspec

from schemas.dead_letter import DeadLetter
from transforms.sinks import WriteJsonLines

__all__ = ["WriteDeadLetters", "encode_dead_letter", "read_dead_letters"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DeadLetter)


def encode_dead_letter(letter: DeadLetter) -> str:
    return _encoder.encode(letter).decode()


def read_dead_letters(paths: list[str]) -> list[DeadLetter]:
    """Read dead letters back from JSON-lines files (for replay, tests and reports)."""
    letters: list[DeadLetter] = []
    for path in paths:
        with open(path, "rb") as handle:
            letters.extend(_decoder.decode(line) for line in handle if line.strip())
    return letters


class WriteDeadLetters(beam.PTransform):  # type: ignore[misc]
    """Write dead letters as ``<directory>/dead_letters-*.jsonl``."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self._directory = directory

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        return letters | "WriteDeadLetterFiles" >> WriteJsonLines(self._directory, "dead_letters")
