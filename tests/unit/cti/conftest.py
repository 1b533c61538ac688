"""A real HTTP feed server on 127.0.0.1 for the CTI tests.

It serves the fixture feeds (STIX bundles, a TAXII 2.1 server built from the
OASIS fixtures with paging, a MISP feed, the Feodo CSV, the KEV cut) with
ETag/Last-Modified, and misbehaves on demand: scripted status sequences,
``Retry-After``, slow answers, truncated bodies. Every request is recorded
(path, query, headers, time) so tests can assert what the client really sent.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

FIXTURES = Path(__file__).parents[2] / "fixtures" / "cti"
TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
HIGH_VALUE_COLLECTION = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
MISP_EVENT = "57c4445b-c548-4654-af0b-4be3950d210f"


@dataclass
class Reply:
    """One answer. ``truncate_to`` sends only that many body bytes under the full Content-Length."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    truncate_to: int | None = None


@dataclass
class Seen:
    """A request the server received."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    at: float


Handler = Callable[[Seen], Reply]


class FeedServer:
    """Routes by path: static documents, scripted reply sequences, or handler functions."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url
        self.requests: list[Seen] = []
        self.taxii: TaxiiCollection | None = None
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()

    def route(self, path: str, handler: Handler) -> None:
        self._routes[path] = handler

    def script(self, path: str, *replies: Reply) -> None:
        """Answer successive requests with ``replies``; the last one repeats."""
        queue = list(replies)

        def next_reply(_: Seen) -> Reply:
            with self._lock:
                return queue.pop(0) if len(queue) > 1 else queue[0]

        self.route(path, next_reply)

    def document(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        etag: str | None = None,
        last_modified: datetime | None = None,
    ) -> None:
        """A document with validators; a matching conditional request gets 304."""
        headers = {"Content-Type": content_type}
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = format_datetime(last_modified, usegmt=True)

        def serve(seen: Seen) -> Reply:
            if etag and seen.headers.get("if-none-match") == etag:
                return Reply(304, headers=dict(headers))
            since = seen.headers.get("if-modified-since")
            if last_modified and since and parsedate_to_datetime(since) >= last_modified:
                return Reply(304, headers=dict(headers))
            return Reply(200, body, dict(headers))

        self.route(path, serve)

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def handle(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
        handler = self._routes.get(seen.path)
        if handler is None:
            return Reply(404, b'{"title": "not found"}', {"Content-Type": "application/json"})
        return handler(seen)


class TaxiiCollection:
    """A TAXII 2.1 collection: objects (latest version each) with their date_added, paged."""

    def __init__(self, objects: list[tuple[str, dict[str, Any]]]) -> None:
        self.objects = sorted(objects, key=lambda item: item[0])

    @classmethod
    def from_medallion(cls, collection_id: str) -> TaxiiCollection:
        data = json.loads((FIXTURES / "taxii" / "medallion_default_data.json").read_bytes())
        collection = next(c for c in data["trustgroup1"]["collections"] if c["id"] == collection_id)
        latest: dict[str, dict[str, Any]] = {}
        for obj in collection["objects"]:
            version = obj.get("modified", obj.get("created"))
            known = latest.get(obj["id"])
            if known is None or version > known.get("modified", known.get("created")):
                latest[obj["id"]] = obj
        added = {(m["id"], m["version"]): m["date_added"] for m in collection["manifest"]}
        return cls(
            [
                (added[(obj["id"], obj.get("modified", obj.get("created")))], obj)
                for obj in latest.values()
            ]
        )

    def add(self, date_added: str, obj: dict[str, Any]) -> None:
        self.objects = sorted([*self.objects, (date_added, obj)], key=lambda item: item[0])

    def serve(self, seen: Seen) -> Reply:
        if TAXII_MEDIA_TYPE not in seen.headers.get("accept", ""):
            return Reply(406, b'{"title": "not acceptable"}')
        limit = int(seen.query.get("limit", ["100"])[0])
        after = seen.query.get("added_after", [None])[0]
        start = int(seen.query.get("next", ["0"])[0])
        chosen = [item for item in self.objects if after is None or _later(item[0], after)]
        page = chosen[start : start + limit]
        more = start + limit < len(chosen)
        envelope: dict[str, Any] = {"more": more}
        if more:
            envelope["next"] = str(start + limit)
        if page:
            envelope["objects"] = [obj for _, obj in page]
        headers = {"Content-Type": TAXII_MEDIA_TYPE}
        if page:
            headers["X-TAXII-Date-Added-First"] = page[0][0]
            headers["X-TAXII-Date-Added-Last"] = page[-1][0]
        return Reply(200, json.dumps(envelope).encode(), headers)


def _later(a: str, b: str) -> bool:
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return parse(a) > parse(b)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        seen = Seen(
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            at=time.monotonic(),
        )
        reply = self.server.feeds.handle(seen)
        if reply.delay:
            time.sleep(reply.delay)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            if reply.truncate_to is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            if reply.status != 304:
                body = reply.body
                self.wfile.write(body if reply.truncate_to is None else body[: reply.truncate_to])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (time-out tests)
        if reply.truncate_to is not None:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests assert on recorded requests instead


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    feeds: FeedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (time-out and TLS tests) are expected here


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A feed server on an ephemeral port of 127.0.0.1, with the fixture feeds mounted."""
    yield from _serve(None)


@pytest.fixture
def tls_feed_server(tmp_path: Path) -> Iterator[tuple[FeedServer, Path]]:
    """The same server behind TLS with a self-signed certificate; yields it and the cert."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "RANDFILE": str(tmp_path / ".rnd")},
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    for server in _serve(context):
        yield server, cert


def _serve(tls: ssl.SSLContext | None) -> Iterator[FeedServer]:
    httpd = _Server(("127.0.0.1", 0), _RequestHandler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    feeds = FeedServer(f"{scheme}://127.0.0.1:{httpd.server_address[1]}")
    httpd.feeds = feeds
    mount_fixtures(feeds)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield feeds
    finally:
        httpd.shutdown()
        httpd.server_close()


LAST_MODIFIED = datetime.fromisoformat("2024-04-04T07:03:03+00:00")


def mount_fixtures(feeds: FeedServer) -> None:
    """The fixture feeds under stable paths."""
    for name in (
        "oasis_indicator-for-c2-ip-address.json",
        "oasis_indicators-for-C2-with-COA.json",
        "oasis_threat-report_apt1.json",
        "mitre_ics-attack-18.1_CUT_frostygoop_industroyer2_triton.json",
    ):
        feeds.document(f"/stix/{name}", (FIXTURES / "stix" / name).read_bytes(), etag=f'"{name}"')
    feeds.document(
        "/feodo/ipblocklist.csv",
        (FIXTURES / "abusech" / "feodotracker_ipblocklist_2024-04-04.csv").read_bytes(),
        content_type="text/csv",
        etag='"feodo-2024-04-04"',
        last_modified=LAST_MODIFIED,
    )
    feeds.document(
        "/kev/known_exploited_vulnerabilities.json",
        (FIXTURES / "cisa_kev" / "known_exploited_vulnerabilities_CUT50.json").read_bytes(),
        etag='"kev-2025.08.25"',
    )
    feeds.document(
        "/misp/manifest.json",
        (FIXTURES / "misp" / "manifest.json").read_bytes(),
        etag='"manifest-1"',
        last_modified=LAST_MODIFIED,
    )
    feeds.document(
        f"/misp/{MISP_EVENT}.json", (FIXTURES / "misp" / f"{MISP_EVENT}.json").read_bytes()
    )
    mount_taxii(feeds)


def mount_taxii(feeds: FeedServer) -> TaxiiCollection:
    """Discovery at /taxii2/, API root /api2/ (its default), the high-value collection paged."""

    def fixture(name: str) -> bytes:
        text = (FIXTURES / "taxii" / f"taxii2client_{name}.json").read_text()
        text = text.replace("https://example.com/", f"{feeds.url}/")
        return text.replace("https://example.net/", f"{feeds.url}/").encode()

    taxii = {"Content-Type": TAXII_MEDIA_TYPE}
    feeds.script("/taxii2/", Reply(200, fixture("discovery"), taxii))
    feeds.script("/api2/", Reply(200, fixture("api_root"), taxii))
    feeds.script("/api2/collections/", Reply(200, fixture("collections"), taxii))
    collection = TaxiiCollection.from_medallion(HIGH_VALUE_COLLECTION)
    feeds.route(f"/api2/collections/{HIGH_VALUE_COLLECTION}/objects/", collection.serve)
    feeds.taxii = collection
    return collection
