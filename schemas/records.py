"""Records that travel between the first stages: a raw line, a decoded record, a validated one.

They carry their `SourcePosition` and the original bytes, so that any stage can
turn a failure into a dead letter that keeps the payload byte for byte.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

__all__ = ["DecodedRecord", "RawLine", "SourceFormat", "SourcePosition", "ValidatedRecord"]


class SourceFormat(StrEnum):
    """The wire format a record arrived in."""

    ZEEK_TSV = "zeek_tsv"
    ZEEK_JSON = "zeek_json"
    SURICATA_EVE = "suricata_eve"
    PLATFORM_JSON = "platform_json"


class SourcePosition(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Where a record came from: a file and line, or a stream, shard and sequence number."""

    uri: str
    line: int | None = None
    offset: int | None = None
    shard: str | None = None
    sequence: str | None = None

    def __str__(self) -> str:
        if self.sequence is not None:
            return f"{self.uri}#{self.shard}@{self.sequence}"
        if self.line is not None:
            return f"{self.uri}:{self.line}"
        return self.uri


class RawLine(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One record's bytes as a source read them, before anything is known about them.

    ``context`` holds the Zeek TSV directive lines (``#separator`` ... ``#types``)
    in force where the line was read; the same tuple object is shared by every
    line under one header, and Decode parses each distinct header once.
    """

    payload: bytes
    source: SourcePosition
    context: tuple[bytes, ...] | None = None


class DecodedRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A record whose format and kind are known, with its fields still untyped."""

    kind: str
    source_format: SourceFormat
    fields: dict[str, Any]
    origin: RawLine


class ValidatedRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A record that conforms to the typed definition of its kind (`schemas.raw`)."""

    kind: str
    source_format: SourceFormat
    record: Any
    origin: RawLine
