"""Feed configuration: which threat-intelligence feeds to pull, from where, and how.

The feeds file (YAML or JSON, ``{feeds: [...]}``) is validated completely when it
is loaded, so that a typo fails the refresh job at start with a message naming
the file, the feed and the field, instead of failing one feed at 3 a.m. Every
`FeedConfig` also validates itself at construction, whoever builds it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml

from cti.indicators import canonical_tlp, indicator_type_of
from schemas.errors import NotFoundError, OtsecError, ValidationError
from transforms.durations import parse_duration

__all__ = [
    "CSV_PRESETS",
    "CsvColumns",
    "FeedAuth",
    "FeedConfig",
    "load_feeds",
    "parse_duration",
]

FeedType = Literal["stix", "taxii", "misp", "csv", "kev"]
Column = str | int  # a header name, or a 0-based index when the list has no header

CSV_PRESETS = ("feodo", "urlhaus", "plain")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)


class FeedAuth(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Credentials for a feed, named by environment variable, never written in the file.

    ``bearer`` sends ``Authorization: Bearer $token_env``; ``basic`` sends
    ``$user_env``/``$password_env``; ``header`` sends ``<header>: $token_env``
    (an API key header such as MISP's ``Authorization`` or ``X-API-Key``).
    """

    type: Literal["bearer", "basic", "header"]
    token_env: str | None = None
    user_env: str | None = None
    password_env: str | None = None
    header: str | None = None

    def __post_init__(self) -> None:
        needed = {
            "bearer": ("token_env",),
            "basic": ("user_env", "password_env"),
            "header": ("header", "token_env"),
        }[self.type]
        for name in needed:
            if not getattr(self, name):
                raise ValidationError(f"auth type {self.type!r} needs {name}", field=f"auth.{name}")
        for name in ("token_env", "user_env", "password_env"):
            value = getattr(self, name)
            if value is not None and not _ENV_NAME.fullmatch(value):
                raise ValidationError(
                    f"{name} must name an environment variable, got {value!r}",
                    field=f"auth.{name}",
                )
        if self.header is not None and not _HEADER_NAME.fullmatch(self.header):
            raise ValidationError(
                f"header {self.header!r} is not an HTTP header name", field="auth.header"
            )

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.token_env, self.user_env, self.password_env) if n)


class CsvColumns(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a CSV or plain list keeps each field; every setting overrides the preset's.

    Columns are header names, or 0-based indexes for lists without a header.
    ``indicator_type`` fixes the type of every value; ``type`` names a column
    that holds it per row; with neither, the type is recognized from each value.
    ``last_seen`` only matters with the feed's ``max_age``: a value not seen for
    that long expires (``valid_until = last_seen + max_age``).
    """

    value: Column | None = None
    type: Column | None = None
    indicator_type: str | None = None
    first_seen: Column | None = None
    last_seen: Column | None = None
    valid_until: Column | None = None
    tags: list[Column] | None = None
    reference: Column | None = None
    delimiter: str | None = None
    comment: str | None = None
    header: bool | None = None
    tag_separator: str | None = None

    def __post_init__(self) -> None:
        if self.indicator_type is not None:
            try:
                indicator_type_of(self.indicator_type)
            except ValidationError as error:
                raise ValidationError(error.message, field="columns.indicator_type") from None
        if self.indicator_type is not None and self.type is not None:
            raise ValidationError(
                "columns.type and columns.indicator_type exclude each other", field="columns.type"
            )
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValidationError(
                f"delimiter must be one character, got {self.delimiter!r}",
                field="columns.delimiter",
            )
        if self.comment == "":
            raise ValidationError("comment prefix must not be empty", field="columns.comment")
        for name in ("value", "type", "first_seen", "last_seen", "valid_until", "reference"):
            _check_column(name, getattr(self, name))
        for column in self.tags or ():
            _check_column("tags", column)


def _check_column(name: str, column: Column | None) -> None:
    if isinstance(column, int) and column < 0:
        raise ValidationError(f"column index must be >= 0, got {column}", field=f"columns.{name}")
    if isinstance(column, str) and not column.strip():
        raise ValidationError("column name must not be empty", field=f"columns.{name}")


# The layouts of the lists the presets name. Feodo Tracker's ipblocklist.csv has a
# quoted header after its "#" banner; URLhaus writes its header as a comment
# ("# id,dateadded,url,...") and "None" for a row without tags; plain lists hold
# one value per line, optionally followed by whitespace and a remark
# (Spamhaus DROP: "1.10.16.0/20 ; SBL256894").
_PRESET_COLUMNS: dict[str, CsvColumns] = {
    "feodo": CsvColumns(
        value="dst_ip",
        indicator_type="ipv4",
        first_seen="first_seen_utc",
        last_seen="last_online",
        tags=["malware"],
        header=True,
    ),
    "urlhaus": CsvColumns(
        value=2,
        indicator_type="url",
        first_seen=1,
        last_seen=4,
        tags=[5, 6],
        reference=7,
        header=False,
    ),
    "plain": CsvColumns(value=0, delimiter=" ", header=False),
}
_CSV_DEFAULTS = CsvColumns(delimiter=",", comment="#", tag_separator=",")


def _csv_layout(preset: str | None, columns: CsvColumns | None) -> CsvColumns:
    """The preset's columns overridden by the configured ones, with defaults filled in."""
    layout = _PRESET_COLUMNS[preset] if preset is not None else CsvColumns()
    for overrides in (columns, _CSV_DEFAULTS):
        if overrides is None:
            continue
        for name in overrides.__struct_fields__:
            value = getattr(overrides, name)
            if value is not None and (overrides is columns or getattr(layout, name) is None):
                layout = msgspec.structs.replace(layout, **{name: value})
    if layout.value is None:
        raise ValidationError("the csv layout needs a value column", field="columns.value")
    names = [c for c in _layout_columns(layout) if isinstance(c, str)]
    if layout.header is None:
        layout = msgspec.structs.replace(layout, header=bool(names))
    elif names and not layout.header:
        raise ValidationError(
            f"columns {names} are named but the list has no header (header: false); "
            "use 0-based indexes",
            field="columns.header",
        )
    if layout.indicator_type is not None and layout.type is not None:
        raise ValidationError(
            "columns.type and columns.indicator_type exclude each other", field="columns.type"
        )
    return layout


def _layout_columns(layout: CsvColumns) -> list[Column]:
    single = (
        layout.value,
        layout.type,
        layout.first_seen,
        layout.last_seen,
        layout.valid_until,
        layout.reference,
    )
    return [c for c in single if c is not None] + list(layout.tags or ())


class FeedConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One threat-intelligence feed.

    Args:
        name: Unique name; it is the ``source`` of every indicator the feed gives.
        type: ``stix`` (bundle file, directory or URL), ``taxii`` (2.1 collection),
            ``misp`` (feed directory or URL with ``manifest.json``), ``csv`` (CSV or
            plain lists), ``kev`` (CISA Known Exploited Vulnerabilities JSON).
        url: Where to fetch it (``http``/``https``); exclusive with ``path``.
        path: A local file or directory; exclusive with ``url``.
        preset: csv only: ``feodo``, ``urlhaus`` or ``plain``.
        columns: csv only: the layout, or overrides of the preset's.
        collection: taxii only: the collection's id or title.
        api_root: taxii only: the API root URL (absolute, or relative to ``url``);
            default: the discovery resource's ``default``.
        auth: Credentials from environment variables.
        every: How often to refresh (``15m``, ``1h``); None: on every run.
        confidence: 0-100, for indicators that carry none.
        tlp: For indicators that carry none (``clear``, ``green``, ``amber``...).
        full_list: Whether each fetch is the feed's complete content, so that
            indicators missing from it expire; default True except for taxii.
        max_age: csv only: expire values whose ``last_seen`` is older than this.
        timeout: Seconds for connecting and for each read.
        ca_bundle: A CA bundle file to verify the server with (TLS is always verified).
        max_bytes: Largest response accepted.
        retries: Retries after the first try on 429, 5xx, time-outs and broken connections.
        backoff: Seconds before the first retry; doubles each time, with jitter.
        max_wait: Longest wait between tries, ``Retry-After`` included.
        page_size: taxii only: objects per page (``limit``).
    """

    name: str
    type: FeedType
    url: str | None = None
    path: str | None = None
    preset: Literal["feodo", "urlhaus", "plain"] | None = None
    columns: CsvColumns | None = None
    collection: str | None = None
    api_root: str | None = None
    auth: FeedAuth | None = None
    every: str | None = None
    confidence: int = 50
    tlp: str = "clear"
    full_list: bool | None = None
    max_age: str | None = None
    timeout: float = 30.0
    ca_bundle: str | None = None
    max_bytes: int = 256 * 1024 * 1024
    retries: int = 3
    backoff: float = 1.0
    max_wait: float = 120.0
    page_size: int = 1000

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValidationError(
                f"feed name {self.name!r} must be 1-64 letters, digits, '.', '_' or '-'",
                field="name",
            )
        self._check_location()
        self._check_type_fields()
        self._check_numbers()
        if self.every is not None:
            parse_duration(self.every)
        if self.max_age is not None:
            try:
                parse_duration(self.max_age)
            except ValidationError as error:
                raise ValidationError(error.message, field="max_age") from None
        if self.ca_bundle is not None and not os.path.isfile(self.ca_bundle):
            raise ValidationError(
                f"ca_bundle {self.ca_bundle!r} is not a readable file", field="ca_bundle"
            )
        msgspec.structs.force_setattr(self, "tlp", canonical_tlp(self.tlp))
        if self.full_list is None:
            msgspec.structs.force_setattr(self, "full_list", self.type != "taxii")

    def _check_location(self) -> None:
        if (self.url is None) == (self.path is None):
            raise ValidationError("give exactly one of url and path", field="url")
        if self.type == "taxii" and self.url is None:
            raise ValidationError("a taxii feed needs a url (discovery or API root)", field="url")
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValidationError(
                    f"url must be http(s)://host/..., got scheme {parts.scheme!r}", field="url"
                )
        if self.path is not None and self.auth is not None:
            raise ValidationError("auth applies to url feeds, not to a local path", field="auth")

    def _check_type_fields(self) -> None:
        if self.type == "csv":
            if self.preset is None and self.columns is None:
                raise ValidationError("a csv feed needs a preset or columns", field="preset")
            _csv_layout(self.preset, self.columns)
        else:
            for name in ("preset", "columns", "max_age"):
                if getattr(self, name) is not None:
                    raise ValidationError(f"{name} applies to csv feeds only", field=name)
        if self.type == "taxii":
            if not self.collection:
                raise ValidationError(
                    "a taxii feed needs a collection (id or title)", field="collection"
                )
        else:
            for name in ("collection", "api_root"):
                if getattr(self, name) is not None:
                    raise ValidationError(f"{name} applies to taxii feeds only", field=name)

    def _check_numbers(self) -> None:
        checks: tuple[tuple[str, bool, str], ...] = (
            ("confidence", 0 <= self.confidence <= 100, "must be 0-100"),
            ("timeout", self.timeout > 0, "must be > 0"),
            ("max_bytes", self.max_bytes > 0, "must be > 0"),
            ("retries", 0 <= self.retries <= 20, "must be 0-20"),
            ("backoff", self.backoff >= 0, "must be >= 0"),
            ("max_wait", self.max_wait >= 0, "must be >= 0"),
            ("page_size", 1 <= self.page_size <= 100_000, "must be 1-100000"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ValidationError(f"{name} {rule}, got {getattr(self, name)!r}", field=name)

    @property
    def location(self) -> str:
        """The URL or path, for messages (a URL's credentials are masked by the HTTP client)."""
        return self.url if self.url is not None else str(self.path)

    @property
    def csv_layout(self) -> CsvColumns:
        """csv only: the complete layout (the preset's columns, the overrides, the defaults)."""
        return _csv_layout(self.preset, self.columns)

    @property
    def every_seconds(self) -> float | None:
        return None if self.every is None else parse_duration(self.every)

    @property
    def max_age_seconds(self) -> float | None:
        return None if self.max_age is None else parse_duration(self.max_age)


class _FeedsFile(msgspec.Struct, forbid_unknown_fields=True):
    feeds: list[Any]


_MSGSPEC_PATH = re.compile(r"at `\$\.?([^`]*)`")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]*)`")


def load_feeds(path: str) -> list[FeedConfig]:
    """Every feed of a feeds file, validated.

    Raises:
        NotFoundError: When the file does not exist.
        ValidationError: On anything wrong in it; the message names the file, the
            feed (position and name) and the field.
    """
    document = _read_document(path)
    try:
        listing = msgspec.convert(document, _FeedsFile)
    except msgspec.ValidationError as error:
        raise ValidationError(
            f"{path}: expected an object with a 'feeds' list ({error})", field="feeds", source=path
        ) from None
    feeds: list[FeedConfig] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(listing.feeds):
        label = _feed_label(index, entry)
        feed = _convert_feed(path, index, label, entry)
        if feed.name in seen:
            raise ValidationError(
                f"{path}: {label}: field 'name': duplicate name, already used by feed "
                f"#{seen[feed.name] + 1}",
                field="name",
                feed=feed.name,
                source=path,
            )
        seen[feed.name] = index
        feeds.append(feed)
    return feeds


def _read_document(path: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise NotFoundError(f"feeds file {path} does not exist", source=path)
    text = file.read_bytes()
    try:
        if file.suffix.lower() == ".json":
            return msgspec.json.decode(text)
        return yaml.safe_load(text)  # YAML is a superset of JSON
    except (msgspec.DecodeError, yaml.YAMLError) as error:
        raise ValidationError(f"{path}: not valid YAML or JSON: {error}", source=path) from None


def _feed_label(index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"feed #{index + 1} ({name!r})" if isinstance(name, str) else f"feed #{index + 1}"


def _convert_feed(path: str, index: int, label: str, entry: Any) -> FeedConfig:
    name = entry.get("name") if isinstance(entry, dict) else None
    if isinstance(entry, dict) and isinstance(entry.get("path"), str):
        # A relative path is relative to the feed file, wherever the command runs from.
        local = os.path.expanduser(entry["path"])
        entry = {**entry, "path": os.path.join(os.path.dirname(os.path.abspath(path)), local)}
    try:
        return msgspec.convert(entry, FeedConfig)
    except msgspec.ValidationError as error:
        text = str(error)
        found = _MSGSPEC_PATH.search(text)
        field = found.group(1) if found else None
        unknown = _UNKNOWN_FIELD.search(text)
        if unknown:
            field = f"{field}.{unknown.group(1)}" if field else unknown.group(1)
        reason = _MSGSPEC_PATH.sub("", text).rstrip(" -")
        where = f"field {field!r}: " if field else ""
        message = f"{path}: {label}: {where}{reason}"
    except OtsecError as error:
        field = error.field
        where = f"field {field!r}: " if field else ""
        message = f"{path}: {label}: {where}{error.message}"
    raise ValidationError(
        message, field=field, feed=name if isinstance(name, str) else None, source=path
    )
