"""Stage 1, Decode: raw bytes into a record of a known kind, the format told from the content.

Formats: Zeek TSV logs (the ``#fields``/``#types`` header in force defines the
columns), Zeek JSON logs (``_path`` or the fields of a known log), Suricata EVE
JSON (``event_type``) and the platform's JSON envelope (``schema``). Decode
undoes the format's own encoding (Zeek's unset and empty markers, set
separators, ``T``/``F`` booleans, ``\\xNN`` escapes) and leaves typing to Validate.
"""

from __future__ import annotations

import functools
from typing import Any

import apache_beam as beam
import msgspec

from schemas.errors import ValidationError
from schemas.raw import KIND_TYPES, PLATFORM_SCHEMA
from schemas.records import DecodedRecord, RawLine, SourceFormat
from transforms._stage import StageFn, stage_outputs

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "Decode",
    "ZeekHeader",
    "decode_line",
    "is_zeek_comment",
    "is_zeek_directive",
    "parse_zeek_header",
    "zeek_directive",
]

DEFAULT_MAX_RECORD_BYTES = 1 << 20

# The directives Decode needs; #open, #close and comments do not change how
# data lines read, so sources need not start a new header object for them.
_HEADER_DIRECTIVES = (
    b"#separator",
    b"#set_separator",
    b"#empty_field",
    b"#unset_field",
    b"#path",
    b"#fields",
    b"#types",
)

# Zeek JSON logs written without ``_path``: the fields that give each log away,
# most specific first.
_ZEEK_JSON_SIGNATURES: tuple[tuple[str, str], ...] = (
    ("modbus_detailed_link_id", "modbus_detailed"),
    ("request_values", "modbus_detailed"),
    ("trip_control_code", "dnp3_control"),
    ("block_type", "dnp3_control"),
    ("fc_request", "dnp3"),
    ("fc_reply", "dnp3"),
    ("rosctr_code", "s7comm"),
    ("rosctr_name", "s7comm"),
    ("opcode_name", "s7comm_plus"),
    ("enip_command_code", "enip"),
    ("cip_service_code", "cip"),
    ("vendor_id", "cip_identity"),
    ("device_type_id", "cip_identity"),
    ("bvlc_function", "bacnet"),
    ("pdu_service", "bacnet"),
    ("func", "modbus"),
    ("conn_state", "conn"),
    ("history", "conn"),
)


# Zeek lines that carry no record: directives that do not change how lines read,
# and "##" comments (test baselines start with one).
_OTHER_ZEEK_LINES = (b"#open", b"#close", b"##")


def zeek_directive(line: bytes) -> bytes | None:
    """The directive a Zeek header line sets (``b"#fields"``...), or None for other lines."""
    for directive in _HEADER_DIRECTIVES:
        if line.startswith(directive):
            rest = line[len(directive) : len(directive) + 1]
            # "#set_separator" must not be read as "#separator" and vice versa.
            if not rest.isalnum() and rest != b"_":
                return directive
    return None


def is_zeek_directive(line: bytes) -> bool:
    """Whether a line is a Zeek header directive that changes how data lines read."""
    return zeek_directive(line) is not None


def is_zeek_comment(line: bytes) -> bool:
    """Whether a ``#`` line carries no record: ``#open``, ``#close`` or a ``##`` comment.

    Any other line, even one starting with ``#`` in a JSON-lines file, is a record
    (and most likely a dead letter): nothing is skipped that Zeek did not write.
    """
    return line.startswith(_OTHER_ZEEK_LINES)


class ZeekHeader(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed Zeek TSV header: the separators, markers and columns of one log block."""

    path: str | None
    separator: str
    set_separator: str
    empty_field: str
    unset_field: str
    fields: tuple[str, ...]
    types: tuple[str, ...]
    bool_columns: frozenset[int]
    container_columns: frozenset[int]


def _unescape(value: str) -> str:
    """Undo Zeek's ``\\xNN`` escaping of separators and non-printable bytes."""
    if "\\x" not in value:
        return value
    raw = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i : i + 2] == b"\\x" and i + 4 <= len(raw):
            try:
                out.append(int(raw[i + 2 : i + 4], 16))
                i += 4
                continue
            except ValueError:
                pass
        out.append(raw[i])
        i += 1
    return out.decode("utf-8", "backslashreplace")


@functools.lru_cache(maxsize=256)
def parse_zeek_header(lines: tuple[bytes, ...]) -> ZeekHeader:
    """Parse the directive lines in force for a block of a Zeek TSV log.

    Raises:
        ValidationError: No ``#fields`` line, or ``#types`` disagrees with it.
    """
    separator = "\t"
    directives: dict[str, str] = {}
    for raw in lines:
        text = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
        if text.startswith("#separator"):
            # "#separator \x09": the only directive split by a space.
            value = text[len("#separator") :].strip()
            separator = _unescape(value) if value else "\t"
            continue
        name, _, value = text.partition(separator)
        directives[name] = value
    if "#fields" not in directives:
        raise ValidationError(
            "Zeek TSV line has no #fields header before it (a log cut with zeek-cut "
            "or without its header cannot be decoded)",
            stage="decode",
        )
    fields = tuple(directives["#fields"].split(separator))
    types = tuple(directives["#types"].split(separator)) if "#types" in directives else ()
    if types and len(types) != len(fields):
        raise ValidationError(
            f"Zeek header names {len(fields)} #fields but {len(types)} #types",
            stage="decode",
        )
    return ZeekHeader(
        path=directives.get("#path") or None,
        separator=separator,
        set_separator=directives.get("#set_separator", ","),
        empty_field=directives.get("#empty_field", "(empty)"),
        unset_field=directives.get("#unset_field", "-"),
        fields=fields,
        types=types,
        bool_columns=frozenset(i for i, t in enumerate(types) if t == "bool"),
        container_columns=frozenset(
            i for i, t in enumerate(types) if t.startswith(("set[", "vector[", "table["))
        ),
    )


def _utf8(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationError(
            f"record is not valid UTF-8 (byte {error.start}: "
            f"{payload[error.start : error.start + 1]!r})",
            stage="decode",
        ) from None


def _decode_zeek_tsv(payload: bytes, header: ZeekHeader) -> dict[str, Any]:
    text = _utf8(payload)
    values = text.split(header.separator)
    fields = header.fields
    if len(values) != len(fields):
        raise ValidationError(
            f"Zeek {header.path or 'log'} line has {len(values)} columns but its #fields "
            f"header names {len(fields)}",
            stage="decode",
        )
    # Most values need no translation: build the record in C, then fix the few that do.
    record: dict[str, Any] = dict(zip(fields, values, strict=True))
    unset, empty = header.unset_field, header.empty_field
    if "\\x" in text:
        for name, value in record.items():
            if "\\x" in value:
                record[name] = _unescape(value)
    if unset in values:
        for i, value in enumerate(values):
            if value == unset:
                record[fields[i]] = None
    if empty in values:
        for i, value in enumerate(values):
            if value == empty:
                record[fields[i]] = [] if i in header.container_columns else ""
    for i in header.container_columns:
        value = values[i]
        if value != unset and value != empty:
            record[fields[i]] = [_unescape(v) for v in value.split(header.set_separator)]
    for i in header.bool_columns:
        # Zeek writes T/F; anything else stays a string for Validate to reject.
        value = values[i]
        if value == "T":
            record[fields[i]] = True
        elif value == "F":
            record[fields[i]] = False
    return record


def _zeek_json_kind(record: dict[str, Any]) -> str | None:
    path = record.get("_path")
    if isinstance(path, str) and path:
        return path
    for marker, log in _ZEEK_JSON_SIGNATURES:
        if marker in record:
            return log
    return None


def _flatten_id(record: dict[str, Any]) -> dict[str, Any]:
    # Some shippers nest Zeek's conn id ({"id": {"orig_h": ...}}); Zeek itself writes it flat.
    ident = record.get("id")
    if isinstance(ident, dict):
        record = {k: v for k, v in record.items() if k != "id"}
        for key, value in ident.items():
            record[f"id.{key}"] = value
    return record


def _decode_json(payload: bytes) -> tuple[str, SourceFormat, dict[str, Any]]:
    try:
        record = msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        if not payload.isascii():
            _utf8(payload)  # a clearer message when the bytes are not even UTF-8
        raise ValidationError(f"malformed JSON: {error}", stage="decode") from None
    if not isinstance(record, dict):
        raise ValidationError(
            f"JSON record must be an object, got {type(record).__name__}", stage="decode"
        )
    if "schema" in record:
        if record["schema"] != PLATFORM_SCHEMA:
            raise ValidationError(
                f"unknown platform envelope schema {record['schema']!r} "
                f"(supported: {PLATFORM_SCHEMA})",
                stage="decode",
                field="schema",
            )
        return "platform.v1", SourceFormat.PLATFORM_JSON, record
    if "event_type" in record:
        return f"suricata.{record['event_type']}", SourceFormat.SURICATA_EVE, record
    if "ts" in record or "_path" in record:
        record = _flatten_id(record)
        log = _zeek_json_kind(record)
        if log is None:
            raise ValidationError(
                "Zeek JSON record without _path and without the fields of a supported log",
                stage="decode",
                field="_path",
            )
        return f"zeek.{log}", SourceFormat.ZEEK_JSON, record
    raise ValidationError(
        "unknown record kind: JSON object has no schema, event_type, _path or ts field",
        stage="decode",
    )


def decode_line(line: RawLine, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> DecodedRecord:
    """Decode one raw line into a record of a known kind with untyped fields.

    Raises:
        ValidationError: Oversized, not UTF-8, malformed, of an unknown kind, or
            a Zeek TSV line that disagrees with (or lacks) its header.
    """
    payload = line.payload
    if len(payload) > max_record_bytes:
        raise ValidationError(
            f"record is {len(payload)} bytes, over the {max_record_bytes}-byte limit",
            stage="decode",
        )
    if payload[:1] == b"{" or payload.lstrip()[:1] == b"{":
        kind, source_format, fields = _decode_json(payload)
    elif line.context is not None:
        header = parse_zeek_header(line.context)
        if header.path is None:
            raise ValidationError("Zeek TSV header has no #path", stage="decode", field="#path")
        fields = _decode_zeek_tsv(payload, header)
        kind, source_format = f"zeek.{header.path}", SourceFormat.ZEEK_TSV
    else:
        if payload.lstrip()[:1] in (b"[", b'"') or payload.strip().isdigit():
            raise ValidationError("JSON record must be an object", stage="decode")
        _utf8(payload)
        raise ValidationError(
            "neither a JSON object nor a Zeek TSV line under a #fields header",
            stage="decode",
        )
    if kind not in KIND_TYPES:
        family = kind.split(".", 1)[0]
        supported = ", ".join(
            k.split(".", 1)[1] for k in sorted(KIND_TYPES) if k.startswith(family)
        )
        hint = ""
        if family in ("suricata", "zeek"):
            # Sensors write many logs; say how to send only the ones otsec reads.
            hint = (
                "; limit the sensor's eve-log types to these"
                if family == "suricata"
                else "; give otsec only these logs"
            )
        raise ValidationError(
            f"unknown record kind {kind!r} (supported {family} kinds: {supported}{hint})",
            stage="decode",
        )
    return DecodedRecord(kind=kind, source_format=source_format, fields=fields, origin=line)


class Decode(beam.PTransform):  # type: ignore[misc]
    """Stage 1: `RawLine` -> `DecodedRecord`, with a ``dead_letters`` output.

    Args:
        max_record_bytes: Larger records become ``ValidationError`` dead letters
            before any parsing is attempted.
    """

    def __init__(self, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        super().__init__()
        self._max_record_bytes = max_record_bytes

    def expand(self, lines: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        decode = functools.partial(decode_line, max_record_bytes=self._max_record_bytes)
        return stage_outputs(lines, "DecodeRecords", StageFn("decode", decode))
