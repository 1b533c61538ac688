"""Stage 2, Validate: each decoded record against the typed definition of its kind.

Types, required fields and ranges come from `schemas.raw` (checked by
`msgspec.convert`); on top of that every address must be an IP address and
protocol function codes must be in range. Each violation is a
``ValidationError`` that names the field.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from typing import Any

import apache_beam as beam
import msgspec

from schemas import raw
from schemas.errors import ValidationError
from schemas.records import DecodedRecord, ValidatedRecord
from transforms._stage import StageFn, stage_outputs

__all__ = ["Validate", "canonical_ip", "validate_record"]

_FIELD_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")
_MODBUS_FUNC = re.compile(r"^(?:[A-Z][A-Z0-9_]*|unknown-(?P<code>\d{1,5}))$")


@functools.lru_cache(maxsize=65536)
def canonical_ip(text: str) -> str:
    """The canonical text form of an IP address (IPv6 compressed, IPv4-mapped as IPv4).

    Raises:
        ValueError: ``text`` is not an IPv4 or IPv6 address.
    """
    address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:10.0.0.1 is 10.0.0.1 on the wire; one form, so assets and CTI match it.
        return str(address.ipv4_mapped)
    return address.compressed


def _msgspec_error(
    error: msgspec.ValidationError, kind: str, fields: dict[str, Any]
) -> ValidationError:
    message = str(error)
    field = None
    if match := _FIELD_AT.search(message):
        field = match.group("path").replace("`", "") or None
        message = message[: match.start()]
    elif match := _MISSING.search(message):
        field = match.group("name")
    if field in ("ts", "timestamp", "observed_at"):
        message = "not an epoch time in 1970-2100 nor an RFC 3339 date-time with a time zone"
    if field is not None and field in fields:
        # Say what was there: the operator fixing the sensor needs the value.
        message = f"{message} (got {str(fields[field])[:80]!r})"
    return ValidationError(f"{kind}: {message}", stage="validate", field=field)


def _check_ip(kind: str, name: str, value: str) -> None:
    try:
        canonical_ip(value)
    except ValueError:
        raise ValidationError(
            f"{kind}: {value[:80]!r} is not an IP address", stage="validate", field=name
        ) from None


def _zeek_addresses(record: Any) -> tuple[tuple[str, str | None], ...]:
    if isinstance(record, raw._ZeekDirectional):
        return (
            ("id.orig_h", record.orig_h),
            ("id.resp_h", record.resp_h),
            ("source_h", record.source_h),
            ("destination_h", record.destination_h),
        )
    return (("id.orig_h", record.orig_h), ("id.resp_h", record.resp_h))


def _suricata_addresses(record: Any) -> tuple[tuple[str, str | None], ...]:
    return (("src_ip", record.src_ip), ("dest_ip", record.dest_ip))


def _platform_addresses(record: Any) -> tuple[tuple[str, str | None], ...]:
    return (("src.ip", record.src.ip), ("dst.ip", record.dst.ip))


def _check_modbus_func(kind: str, record: Any) -> None:
    match = _MODBUS_FUNC.match(record.func)
    if match is None or (match.group("code") and int(match.group("code")) > 255):
        raise ValidationError(
            f"{kind}: Modbus function {record.func[:40]!r} is neither a function name "
            "nor unknown-N with N in 0..255",
            stage="validate",
            field="func",
        )


def _check_platform_ics(kind: str, record: Any) -> None:
    ics = record.ics
    if ics is None or ics.function_code is None:
        return
    # Modbus, DNP3 and BACnet carry one-byte codes; S7comm+ uses 16-bit codes.
    limit = 0xFFFF if ics.protocol in ("s7comm_plus", "opcua") else 0xFF
    if ics.function_code > limit:
        raise ValidationError(
            f"{kind}: {ics.protocol} function code {ics.function_code} is out of range 0..{limit}",
            stage="validate",
            field="ics.function_code",
        )


def _no_check(kind: str, record: Any) -> None:
    del kind, record


_ADDRESSES: dict[str, Callable[[Any], tuple[tuple[str, str | None], ...]]] = {
    kind: (
        _zeek_addresses
        if kind.startswith("zeek.")
        else _suricata_addresses
        if kind.startswith("suricata.")
        else _platform_addresses
    )
    for kind in raw.KIND_TYPES
}
_EXTRA_CHECKS: dict[str, Callable[[str, Any], None]] = {
    kind: _no_check for kind in raw.KIND_TYPES
} | {
    "zeek.modbus": _check_modbus_func,
    "zeek.modbus_detailed": _check_modbus_func,
    "platform.v1": _check_platform_ics,
}


def validate_record(decoded: DecodedRecord) -> ValidatedRecord:
    """Convert a decoded record to its typed definition and check it.

    Raises:
        ValidationError: A field is missing, of the wrong type or out of range
            (the error names the field).
    """
    kind = decoded.kind
    record_type = raw.KIND_TYPES.get(kind)
    if record_type is None:
        raise ValidationError(f"unknown record kind {kind!r}", stage="validate")
    try:
        record = msgspec.convert(decoded.fields, record_type, strict=False)
    except msgspec.ValidationError as error:
        raise _msgspec_error(error, kind, decoded.fields) from None
    for name, value in _ADDRESSES[kind](record):
        if value is not None:
            _check_ip(kind, name, value)
    _EXTRA_CHECKS[kind](kind, record)
    return ValidatedRecord(
        kind=kind, source_format=decoded.source_format, record=record, origin=decoded.origin
    )


class Validate(beam.PTransform):  # type: ignore[misc]
    """Stage 2: `DecodedRecord` -> `ValidatedRecord`, with a ``dead_letters`` output."""

    def expand(self, records: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return stage_outputs(records, "ValidateRecords", StageFn("validate", validate_record))
