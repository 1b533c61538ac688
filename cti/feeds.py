"""Refresh one threat-intelligence feed: fetch or read it, parse it, report, never raise.

`refresh_feed` is the unit the CTI refresh job runs per feed. It fetches a URL
feed through `cti.http` (conditional on the stored ETag/Last-Modified, or from
the stored TAXII cursor) or reads a local file or directory, parses it with
`cti.parsers`, and returns a `FeedResult`: the feed's canonical indicators
(merged within the feed, not across feeds), a dead letter per bad entry, the
counts, and the state to store for the next run. A failing feed is a result
with status ``failed`` and its error class, never an exception, so a bad feed
never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urljoin

import msgspec
import requests

from cti.config import FeedConfig
from cti.http import JSON_MEDIA_TYPE, STIX_MEDIA_TYPE, FeedHttp, HttpResponse
from cti.indicators import Indicator
from cti.parsers import (
    Collector,
    ParseContext,
    StixDocument,
    decode_bundle,
    fetch_collection,
    manifest_events,
    parse_csv,
    parse_kev,
    parse_misp_event,
    parse_stix,
)
from schemas.dead_letter import DeadLetter
from schemas.errors import (
    AuthorizationError,
    NotFoundError,
    OtsecError,
    UnexpectedError,
    ValidationError,
)
from schemas.records import SourcePosition

__all__ = ["FeedResult", "FeedState", "refresh_feed"]

_log = logging.getLogger("otsec.cti")

_CSV_MEDIA_TYPE = "text/csv, text/plain;q=0.9, */*;q=0.5"


class FeedState(msgspec.Struct, omit_defaults=True):
    """What a feed's next refresh needs from this one.

    ``etag``/``last_modified`` make the next fetch conditional (for a local path,
    ``etag`` is a digest of the files read); ``cursor`` is a TAXII feed's
    ``added_after``: the ``X-TAXII-Date-Added-Last`` of the last object received.
    """

    etag: str | None = None
    last_modified: str | None = None
    cursor: str | None = None


class FeedResult(msgspec.Struct):
    """The outcome of refreshing one feed.

    ``entries == indexed + skipped + len(dead_letters)``. ``full_list`` says the
    indicators are the feed's complete current content (so those missing from
    it expire); it is False for TAXII (incremental), when the feed did not
    change or failed, and when a document of a multi-document feed could not be
    read. ``error_class``/``error`` name the failure in one line, without credentials.
    """

    name: str
    type: str
    status: Literal["ok", "not_modified", "failed"]
    indicators: list[Indicator] = []
    dead_letters: list[DeadLetter] = []
    state: FeedState = msgspec.field(default_factory=FeedState)
    full_list: bool = False
    entries: int = 0
    skipped: int = 0
    error_class: str | None = None
    error: str | None = None
    seconds: float = 0.0
    indexed: int = 0


_Reader = Callable[[FeedConfig, FeedState, FeedHttp, Collector], FeedState | None]


def refresh_feed(
    config: FeedConfig,
    state: FeedState,
    *,
    now: datetime | None = None,
    session: requests.Session | None = None,
) -> FeedResult:
    """Fetch (or read) and parse one feed. Never raises.

    Args:
        config: The feed.
        state: What the previous refresh stored (`FeedState()` the first time).
        now: The refresh time stamped on dead letters; default: now.
        session: A `requests.Session` to use (the caller keeps owning it);
            default: a new one, closed at the end.

    Returns:
        ``ok`` with the indicators; ``not_modified`` (nothing to do, state
        unchanged); or ``failed`` with ``error_class`` and ``error``, the state
        unchanged so the next run tries again.
    """
    started = time.monotonic()
    context = ParseContext(
        feed=config.name,
        kind=config.type,
        confidence=config.confidence,
        tlp=config.tlp,
        now=now or datetime.now(UTC),
    )
    collector = Collector(context)
    http = FeedHttp(config, session)
    try:
        with http:
            new_state = _READERS[config.type](config, state, http, collector)
    except OtsecError as error:
        return _failed(config, state, error, http, started)
    except Exception as error:  # a bug must fail this feed only: report it, keep the others
        _log.exception("feed %s: unexpected failure", config.name)
        unexpected = UnexpectedError(f"{type(error).__name__}: {error}", feed=config.name)
        return _failed(config, state, unexpected, http, started)
    seconds = time.monotonic() - started
    if new_state is None:
        _log.info("feed %s: not modified (%.2fs)", config.name, seconds)
        return FeedResult(
            name=config.name, type=config.type, status="not_modified", state=state, seconds=seconds
        )
    result = FeedResult(
        name=config.name,
        type=config.type,
        status="ok",
        indicators=collector.indicators,
        dead_letters=collector.dead_letters,
        state=new_state,
        full_list=bool(config.full_list) and collector.complete,
        entries=collector.entries,
        skipped=collector.skipped,
        seconds=seconds,
        indexed=collector.indexed,
    )
    _log.info(
        "feed %s: %d indicators from %d entries (%d skipped, %d dead letters) in %.2fs",
        config.name,
        len(result.indicators),
        result.entries,
        result.skipped,
        len(result.dead_letters),
        seconds,
    )
    return result


def _failed(
    config: FeedConfig, state: FeedState, error: OtsecError, http: FeedHttp, started: float
) -> FeedResult:
    message = " ".join(http.scrub(error.message).split())
    _log.warning("feed %s failed: %s: %s", config.name, error.error_class, message)
    return FeedResult(
        name=config.name,
        type=config.type,
        status="failed",
        state=state,
        error_class=error.error_class,
        error=message,
        seconds=time.monotonic() - started,
    )


# -- readers: one per feed type -----------------------------------------------------------


def _read_stix(
    config: FeedConfig, state: FeedState, http: FeedHttp, collector: Collector
) -> FeedState | None:
    if config.url is not None:
        response = _conditional_get(http, config.url, state, STIX_MEDIA_TYPE)
        if response is None:
            return None
        parse_stix([decode_bundle(response.body, response.url)], collector)
        return _http_state(response, state)
    files = _local_files(config, "*.json")
    digest = _digest(files)
    if digest == state.etag:
        return None
    documents: list[StixDocument] = []
    for uri, body in files:
        try:
            documents.append(decode_bundle(body, uri))
        except ValidationError as error:
            if len(files) == 1:
                raise
            collector.reject_document(error, body, SourcePosition(uri=uri))
    parse_stix(documents, collector)
    return FeedState(etag=digest)


def _read_taxii(
    config: FeedConfig, state: FeedState, http: FeedHttp, collector: Collector
) -> FeedState | None:
    collection = fetch_collection(http, config, state.cursor)
    parse_stix(collection.pages, collector)
    return FeedState(etag=state.etag, last_modified=state.last_modified, cursor=collection.cursor)


def _read_misp(
    config: FeedConfig, state: FeedState, http: FeedHttp, collector: Collector
) -> FeedState | None:
    if config.url is not None:
        base = config.url if config.url.endswith("/") else config.url + "/"
        manifest = _conditional_get(http, urljoin(base, "manifest.json"), state, JSON_MEDIA_TYPE)
        if manifest is None:
            return None
        for event in manifest_events(manifest.body, manifest.url):
            response = http.get(urljoin(base, f"{event}.json"), accept=JSON_MEDIA_TYPE)
            _misp_event(response.body, response.url, collector)
        return _http_state(manifest, state)
    directory = Path(str(config.path))
    manifest_file = directory / "manifest.json"
    manifest_body = _read_file(manifest_file, config.max_bytes)
    events = [
        (
            str(directory / f"{event}.json"),
            _read_file(directory / f"{event}.json", config.max_bytes),
        )
        for event in manifest_events(manifest_body, str(manifest_file))
    ]
    digest = _digest([(str(manifest_file), manifest_body), *events])
    if digest == state.etag:
        return None
    for uri, body in events:
        _misp_event(body, uri, collector)
    return FeedState(etag=digest)


def _misp_event(body: bytes, uri: str, collector: Collector) -> None:
    try:
        parse_misp_event(body, uri, collector)
    except ValidationError as error:
        collector.reject_document(error, body, SourcePosition(uri=uri))


def _read_csv(
    config: FeedConfig, state: FeedState, http: FeedHttp, collector: Collector
) -> FeedState | None:
    document = _one_document(config, state, http, _CSV_MEDIA_TYPE)
    if document is None:
        return None
    uri, body, new_state = document
    parse_csv(body, uri, config.csv_layout, collector, max_age=config.max_age_seconds)
    return new_state


def _read_kev(
    config: FeedConfig, state: FeedState, http: FeedHttp, collector: Collector
) -> FeedState | None:
    document = _one_document(config, state, http, JSON_MEDIA_TYPE)
    if document is None:
        return None
    uri, body, new_state = document
    parse_kev(body, uri, collector)
    return new_state


_READERS: dict[str, _Reader] = {
    "stix": _read_stix,
    "taxii": _read_taxii,
    "misp": _read_misp,
    "csv": _read_csv,
    "kev": _read_kev,
}


# -- fetching and reading -----------------------------------------------------------------


def _conditional_get(
    http: FeedHttp, url: str, state: FeedState, accept: str
) -> HttpResponse | None:
    response = http.get(url, accept=accept, etag=state.etag, last_modified=state.last_modified)
    return None if response.not_modified else response


def _http_state(response: HttpResponse, state: FeedState) -> FeedState:
    return FeedState(etag=response.etag, last_modified=response.last_modified, cursor=state.cursor)


def _one_document(
    config: FeedConfig, state: FeedState, http: FeedHttp, accept: str
) -> tuple[str, bytes, FeedState] | None:
    """The feed's single document with the state it implies, or None when it did not change."""
    if config.url is not None:
        response = _conditional_get(http, config.url, state, accept)
        if response is None:
            return None
        return response.url, response.body, _http_state(response, state)
    path = Path(str(config.path))
    if path.is_dir():
        raise ValidationError(
            f"{path} is a directory; a {config.type} feed reads one file", field="path"
        )
    body = _read_file(path, config.max_bytes)
    digest = _digest([(str(path), body)])
    return None if digest == state.etag else (str(path), body, FeedState(etag=digest))


def _local_files(config: FeedConfig, pattern: str) -> list[tuple[str, bytes]]:
    path = Path(str(config.path))
    files = sorted(f for f in path.glob(pattern) if f.is_file()) if path.is_dir() else [path]
    return [(str(file), _read_file(file, config.max_bytes)) for file in files]


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ValidationError(
                f"{path} has {size} bytes, more than max_bytes {max_bytes}", source=str(path)
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist", source=str(path)) from None
    except PermissionError:
        raise AuthorizationError(
            f"{path} cannot be read (permission denied)", source=str(path)
        ) from None
    except IsADirectoryError:
        raise ValidationError(f"{path} is a directory, not a file", source=str(path)) from None


def _digest(files: Sequence[tuple[str, bytes]]) -> str:
    """A local feed's version: a digest of its files' names and contents."""
    digest = hashlib.blake2b(digest_size=16)
    for name, body in files:
        digest.update(name.encode("utf-8", "surrogateescape"))
        digest.update(len(body).to_bytes(8, "big"))
        digest.update(body)
    return f"blake2b:{digest.hexdigest()}"
