"""TAXII 2.1 collections: discovery, API root, collection, then the objects page by page.

A TAXII feed is read incrementally: each refresh asks for the objects added after
the cursor it stored (``added_after``), follows the pages (``more``/``next``) and
stores as new cursor the ``X-TAXII-Date-Added-Last`` of what it received, so a
collection is never read twice. The objects are STIX and go to the STIX parser.
"""

from __future__ import annotations

import logging
from typing import TypeVar
from urllib.parse import urljoin

import msgspec

from cti.config import FeedConfig
from cti.http import TAXII_MEDIA_TYPE, FeedHttp, HttpResponse
from cti.parsers._common import parse_time
from cti.parsers.stix import StixDocument
from schemas.errors import AuthorizationError, NotFoundError, ValidationError

__all__ = ["MAX_PAGES", "TaxiiCollection", "fetch_collection"]

_log = logging.getLogger("otsec.cti")

MAX_PAGES = 10_000  # a server that never says "no more" must not keep a refresh forever
_DATE_ADDED_LAST = "x-taxii-date-added-last"


class _Discovery(msgspec.Struct):
    default: str | None = None
    api_roots: list[str] = []
    versions: list[str] = []  # present when the URL is an API root, not a discovery


class _ApiRoot(msgspec.Struct):
    versions: list[str] = []


class _Collection(msgspec.Struct):
    id: str
    title: str | None = None
    can_read: bool = True


class _Collections(msgspec.Struct):
    collections: list[_Collection] = []


class _Envelope(msgspec.Struct):
    more: bool = False
    next: str | None = None
    objects: list[msgspec.Raw] = []


class TaxiiCollection(msgspec.Struct, frozen=True):
    """What one incremental read of a collection gave: its pages and the new cursor."""

    pages: list[StixDocument]
    cursor: str | None


T = TypeVar("T", bound=msgspec.Struct)


def _decode(response: HttpResponse, kind: type[T], what: str) -> T:
    try:
        return msgspec.json.decode(response.body, type=kind)
    except msgspec.ValidationError as error:
        raise ValidationError(
            f"{response.url} is not a TAXII {what}: {error}", source=response.url
        ) from None
    except msgspec.DecodeError as error:
        raise ValidationError(
            f"{response.url} is not valid JSON: {error}", source=response.url
        ) from None


def _as_directory(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def fetch_collection(http: FeedHttp, config: FeedConfig, cursor: str | None) -> TaxiiCollection:
    """Read the objects of the feed's collection added after ``cursor``.

    Raises:
        ValidationError: On answers that are not TAXII 2.1.
        NotFoundError: When the collection is not on the API root.
        AuthorizationError: When the collection cannot be read.
        OtsecError: Whatever `FeedHttp.get` raises.
    """
    assert config.url is not None and config.collection is not None  # FeedConfig guarantees it
    api_root = _api_root(http, config.url, config.api_root)
    collection = _collection(http, api_root, config.collection)
    objects_url = f"{api_root}collections/{collection.id}/objects/"
    return _pages(http, objects_url, cursor, config.page_size)


def _api_root(http: FeedHttp, url: str, configured: str | None) -> str:
    if configured is not None:
        root = _as_directory(urljoin(_as_directory(url), configured))
    else:
        response = http.get(url, accept=TAXII_MEDIA_TYPE)
        discovery = _decode(response, _Discovery, "discovery resource")
        if discovery.versions and not discovery.api_roots and discovery.default is None:
            return _checked_root(http, _as_directory(url), discovery.versions)
        chosen = discovery.default
        if chosen is None and len(discovery.api_roots) == 1:
            chosen = discovery.api_roots[0]
        if chosen is None:
            raise ValidationError(
                f"{response.url}: the discovery resource names no default API root among "
                f"{len(discovery.api_roots)}; set api_root",
                field="api_root",
                source=response.url,
            )
        root = _as_directory(urljoin(url, chosen))
    response = http.get(root, accept=TAXII_MEDIA_TYPE)
    information = _decode(response, _ApiRoot, "API root")
    return _checked_root(http, root, information.versions)


def _checked_root(http: FeedHttp, root: str, versions: list[str]) -> str:
    spoken = {v.replace(" ", "").lower() for v in versions}
    if versions and TAXII_MEDIA_TYPE not in spoken:
        raise ValidationError(
            f"{http.display(root)} speaks {sorted(versions)}, not {TAXII_MEDIA_TYPE}",
            field="api_root",
            source=http.display(root),
        )
    return root


def _collection(http: FeedHttp, api_root: str, wanted: str) -> _Collection:
    response = http.get(f"{api_root}collections/", accept=TAXII_MEDIA_TYPE)
    listing = _decode(response, _Collections, "collections resource")
    for collection in listing.collections:
        if wanted in (collection.id, collection.title):
            if not collection.can_read:
                raise AuthorizationError(
                    f"{response.url}: collection {wanted!r} cannot be read with these credentials",
                    source=response.url,
                )
            return collection
    titles = [c.title or c.id for c in listing.collections]
    raise NotFoundError(
        f"{response.url}: no collection with id or title {wanted!r} (found {titles})",
        field="collection",
        source=response.url,
    )


def _pages(http: FeedHttp, objects_url: str, cursor: str | None, page_size: int) -> TaxiiCollection:
    filters = {"limit": str(page_size)}
    if cursor:
        filters["added_after"] = cursor
    params = dict(filters)
    pages: list[StixDocument] = []
    newest = cursor
    seen_next: set[str] = set()
    for _ in range(MAX_PAGES):
        response = http.get(objects_url, params=params, accept=TAXII_MEDIA_TYPE)
        envelope = _decode(response, _Envelope, "envelope")
        pages.append(StixDocument(uri=response.url, objects=envelope.objects))
        last = response.headers.get(_DATE_ADDED_LAST)
        newest = _later(newest, last, response.url)
        if not envelope.more:
            return TaxiiCollection(pages=pages, cursor=newest)
        if envelope.next:
            if envelope.next in seen_next:
                raise ValidationError(
                    f"{response.url}: the server repeats the page token {envelope.next!r}",
                    source=response.url,
                )
            seen_next.add(envelope.next)
            params = {**filters, "next": envelope.next}
        elif last and last != params.get("added_after"):
            params = {**filters, "added_after": last}  # paging by time, as TAXII 2.1 allows
        else:
            raise ValidationError(
                f"{response.url}: 'more' is true but the page gives neither 'next' nor a new "
                f"X-TAXII-Date-Added-Last",
                source=response.url,
            )
    raise ValidationError(f"{http.display(objects_url)}: more than {MAX_PAGES} pages")


def _later(current: str | None, candidate: str | None, where: str) -> str | None:
    """The later of two TAXII timestamps, kept as the server wrote it (it expects it back)."""
    if not candidate:
        return current
    try:
        new = parse_time(candidate, _DATE_ADDED_LAST)
        old = parse_time(current, "cursor") if current else None
    except ValidationError:
        _log.warning("%s: ignoring unreadable %s %r", where, _DATE_ADDED_LAST, candidate)
        return current
    return candidate if old is None or (new is not None and new > old) else current
