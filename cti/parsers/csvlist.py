"""CSV and plain IOC lists (abuse.ch Feodo Tracker and URLhaus, one-value-per-line lists).

The layout (`cti.config.CsvColumns`, from a preset and/or the feed's ``columns``)
says which column holds the value, its type, times, tags and reference. Each
physical line is one entry: comment and blank lines are not entries, and a line
that does not parse is a dead letter carrying its bytes and its line number.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from collections.abc import Sequence
from datetime import timedelta
from functools import partial

from cti.config import Column, CsvColumns
from cti.indicators import Indicator, IndicatorType, indicator_type_of, make_indicator
from cti.parsers._common import Collector, parse_time
from schemas.errors import ValidationError
from schemas.records import SourcePosition

__all__ = ["guess_type", "parse_csv"]

_HEX = re.compile(r"[0-9A-Fa-f]+")
_DOTTED_QUAD = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_CVE = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)
_HASH_BY_LENGTH = {32: IndicatorType.MD5, 40: IndicatorType.SHA1, 64: IndicatorType.SHA256}
# What lists write in an empty tag field (URLhaus writes "None").
_NO_TAG = frozenset({"", "none", "null", "n/a", "-"})


def guess_type(value: str) -> IndicatorType:
    """The indicator type a bare value has: URL, address or network, CVE, hash, domain.

    A 32-digit hex value is taken as MD5 (a JA3 fingerprint looks the same: give
    such lists an ``indicator_type``).

    Raises:
        ValidationError: When the value is none of these.
    """
    text = value.strip()
    if "://" in text:
        return IndicatorType.URL
    # Addresses start with a digit (IPv4) or hold a colon (IPv6): only those are tried,
    # since a failed parse costs an exception and most list values are domains or hashes.
    if text[:1].isdigit() or ":" in text:
        if _DOTTED_QUAD.fullmatch(text):
            return IndicatorType.IPV4  # canonical_value checks the octets
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            pass
        else:
            return IndicatorType.IPV4  # canonical_value takes family and prefix from the value
    if _CVE.fullmatch(text):
        return IndicatorType.CVE
    if _HEX.fullmatch(text) and len(text) in _HASH_BY_LENGTH:
        return _HASH_BY_LENGTH[len(text)]
    if "/" in text and "." in text.split("/", 1)[0]:
        return IndicatorType.URL  # host/path without a scheme
    if "." in text and " " not in text:
        return IndicatorType.DOMAIN
    raise ValidationError(f"cannot tell the indicator type of {value!r}", field="value")


class _Layout:
    """A `CsvColumns` layout with its header names resolved to indexes."""

    def __init__(self, columns: CsvColumns, header: Sequence[str] | None, uri: str) -> None:
        self.columns = columns
        self._index = {name.strip(): i for i, name in enumerate(header or ())}
        self._uri = uri
        for column in self._all():
            self.position(column)  # a named column missing from the header fails the feed

    def _all(self) -> list[Column]:
        c = self.columns
        single = (c.value, c.type, c.first_seen, c.last_seen, c.valid_until, c.reference)
        return [column for column in single if column is not None] + list(c.tags or ())

    def position(self, column: Column) -> int:
        if isinstance(column, int):
            return column
        if column not in self._index:
            raise ValidationError(
                f"{self._uri}: column {column!r} is not in the header {list(self._index)}",
                field="columns",
                source=self._uri,
            )
        return self._index[column]

    def split(self, line: str) -> list[str]:
        delimiter = self.columns.delimiter or ","
        if delimiter == " ":  # plain lists: any run of whitespace
            return line.split()
        return next(csv.reader([line], delimiter=delimiter), [])

    def field(self, fields: Sequence[str], column: Column | None, name: str) -> str | None:
        if column is None:
            return None
        index = self.position(column)
        if index >= len(fields):
            raise ValidationError(
                f"line has {len(fields)} fields, {name} is column {index + 1}", field=name
            )
        return fields[index].strip()


def parse_csv(
    body: bytes,
    uri: str,
    columns: CsvColumns,
    collector: Collector,
    *,
    max_age: float | None = None,
) -> None:
    """Parse a CSV or plain list into ``collector``, one entry per data line.

    Args:
        body: The whole list.
        uri: Where it came from (dead letters' source).
        columns: The complete layout (`FeedConfig.csv_layout`).
        collector: Where indicators, skips and dead letters go.
        max_age: Seconds after ``last_seen`` at which a value expires.

    Raises:
        ValidationError: When the header is missing or lacks a named column.
    """
    comment = (columns.comment or "#").encode()
    layout: _Layout | None = None if columns.header else _Layout(columns, None, uri)
    for number, raw in enumerate(body.split(b"\n"), start=1):
        line = raw.removesuffix(b"\r")
        if number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
        if not line.strip() or line.lstrip().startswith(comment):
            continue
        if layout is None:
            layout = _Layout(columns, _header(line, columns, uri, number), uri)
            continue
        source = SourcePosition(uri=uri, line=number)
        collector.entry(line, source, partial(_row, line, layout, collector, max_age))
    if layout is None:
        raise ValidationError(f"{uri}: the list has no header line", source=uri)


def _header(line: bytes, columns: CsvColumns, uri: str, number: int) -> list[str]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{uri}:{number}: the header is not UTF-8", source=uri) from None
    delimiter = columns.delimiter or ","
    return next(csv.reader([text], delimiter=delimiter), [])


def _row(
    line: bytes, layout: _Layout, collector: Collector, max_age: float | None
) -> list[Indicator]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationError(f"line is not UTF-8 ({error.reason})", field="value") from None
    columns, context = layout.columns, collector.context
    fields = layout.split(text)
    value = layout.field(fields, columns.value, "value") or ""
    kind = _kind(layout, fields, value)
    first_seen = parse_time(layout.field(fields, columns.first_seen, "first_seen"), "first_seen")
    valid_until = parse_time(
        layout.field(fields, columns.valid_until, "valid_until"), "valid_until"
    )
    if max_age is not None:
        last_seen = parse_time(layout.field(fields, columns.last_seen, "last_seen"), "last_seen")
        if last_seen is not None:
            aged = last_seen + timedelta(seconds=max_age)
            valid_until = aged if valid_until is None else min(valid_until, aged)
    tags = [
        tag.strip()
        for column in columns.tags or ()
        for tag in (layout.field(fields, column, "tags") or "").split(columns.tag_separator or ",")
        if tag.strip().lower() not in _NO_TAG
    ]
    reference = layout.field(fields, columns.reference, "reference") or None
    return [
        make_indicator(
            kind,
            value,
            confidence=context.confidence,
            feed=context.feed,
            reference=reference,
            tlp=context.tlp,
            valid_from=first_seen,
            valid_until=valid_until,
            tags=tags,
        )
    ]


def _kind(layout: _Layout, fields: Sequence[str], value: str) -> IndicatorType:
    columns = layout.columns
    if columns.indicator_type is not None:
        return indicator_type_of(columns.indicator_type)
    named = layout.field(fields, columns.type, "type")
    if named:
        return indicator_type_of(named)
    if not value:
        raise ValidationError("empty value", field="value")
    return guess_type(value)
