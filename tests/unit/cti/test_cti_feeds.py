"""`refresh_feed` end to end: every feed type from the local HTTP server and from local paths.

TAXII runs against a TAXII 2.1 server built from the OASIS fixtures (discovery,
API root, collections, paged objects with ``added_after``), MISP against a feed
directory (manifest plus event), STIX, CSV and KEV against their fixture files.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cti import feeds as feeds_module
from cti.config import FeedConfig
from cti.feeds import FeedResult, FeedState, refresh_feed
from tests.unit.cti.conftest import (
    FIXTURES,
    HIGH_VALUE_COLLECTION,
    MISP_EVENT,
    TAXII_MEDIA_TYPE,
    FeedServer,
    Reply,
    Seen,
)

NOW = datetime(2026, 1, 2, tzinfo=UTC)
OBJECTS = f"/api2/collections/{HIGH_VALUE_COLLECTION}/objects/"


def keys(result: FeedResult) -> set[tuple[str, str]]:
    return {i.key for i in result.indicators}


def conserved(result: FeedResult) -> FeedResult:
    assert result.entries == result.indexed + result.skipped + len(result.dead_letters)
    return result


# -- TAXII ---------------------------------------------------------------------------------


def taxii_feed(server: FeedServer, **options: object) -> FeedConfig:
    settings: dict[str, object] = {"collection": "High Value Indicator Collection", "page_size": 2}
    settings.update(options)
    return FeedConfig(name="taxii", type="taxii", url=server.url + "/taxii2/", **settings)


def test_taxii_pages_through_the_collection_and_stores_the_cursor(feed_server: FeedServer) -> None:
    result = conserved(refresh_feed(taxii_feed(feed_server), FeedState(), now=NOW))
    assert result.status == "ok" and result.full_list is False  # TAXII is incremental
    assert (result.entries, result.indexed, result.skipped) == (2, 2, 0)
    assert keys(result) == {
        ("sha256", "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c"),
        ("url", "http://x4z9arb.cn/4712"),
    }
    by_type = {i.type.value: i for i in result.indicators}
    # the relationship (page 1) and the malware it names (page 2) are resolved across pages
    assert by_type["sha256"].tags == ("file-hash-watchlist", "malware:Poison Ivy")
    assert by_type["url"].sources[0].reference == "indicator--6770298f-0fd8-471a-ab8c-1c658a46574e"
    assert result.state == FeedState(cursor="2017-12-31T13:49:53.935000Z")
    pages = feed_server.seen(OBJECTS)
    assert [p.query.get("next") for p in pages] == [None, ["2"], ["4"]]
    assert all(p.query["limit"] == ["2"] and "added_after" not in p.query for p in pages)
    assert all(TAXII_MEDIA_TYPE in r.headers["accept"] for r in feed_server.requests)


def test_taxii_next_refresh_asks_only_for_what_was_added(feed_server: FeedServer) -> None:
    config = taxii_feed(feed_server)
    first = refresh_feed(config, FeedState())
    nothing_new = conserved(refresh_feed(config, first.state))
    assert nothing_new.status == "ok" and nothing_new.entries == 0 and nothing_new.indicators == []
    assert nothing_new.state == first.state
    assert feed_server.seen(OBJECTS)[-1].query["added_after"] == ["2017-12-31T13:49:53.935000Z"]
    envelope = json.loads(
        (FIXTURES / "taxii" / "taxii2client_envelope_get_objects.json").read_text()
    )
    assert feed_server.taxii is not None
    feed_server.taxii.add("2018-01-05T00:00:00.000000Z", envelope["objects"][0])
    added = conserved(refresh_feed(config, nothing_new.state))
    assert keys(added) == {("md5", "d41d8cd98f00b204e9800998ecf8427e")}
    assert added.state.cursor == "2018-01-05T00:00:00.000000Z"


def test_taxii_collection_by_id_and_explicit_api_root(feed_server: FeedServer) -> None:
    config = taxii_feed(feed_server, collection=HIGH_VALUE_COLLECTION, api_root="/api2/")
    result = refresh_feed(config, FeedState())
    assert result.status == "ok" and len(result.indicators) == 2
    assert feed_server.seen("/taxii2/") == []  # no discovery needed


def test_taxii_unknown_collection(feed_server: FeedServer) -> None:
    result = refresh_feed(taxii_feed(feed_server, collection="Nope"), FeedState(cursor="c"))
    assert result.status == "failed" and result.error_class == "NotFoundError"
    assert "High Value Indicator Collection" in str(result.error)  # the ones that exist
    assert result.state == FeedState(cursor="c")


def test_taxii_discovery_without_default(feed_server: FeedServer) -> None:
    discovery = {
        "title": "x",
        "api_roots": [f"{feed_server.url}/api1/", f"{feed_server.url}/api2/"],
    }
    feed_server.script("/taxii2/", Reply(200, json.dumps(discovery).encode()))
    result = refresh_feed(taxii_feed(feed_server), FeedState())
    assert result.error_class == "ValidationError" and "set api_root" in str(result.error)


def test_taxii_failure_on_a_later_page_keeps_the_old_cursor(feed_server: FeedServer) -> None:
    served = feed_server.taxii
    assert served is not None

    def flaky(seen: Seen) -> Reply:
        return Reply(500) if seen.query.get("next") == ["2"] else served.serve(seen)

    feed_server.route(OBJECTS, flaky)
    config = taxii_feed(feed_server, retries=1, backoff=0.0)
    result = refresh_feed(config, FeedState(cursor="2010-01-01T00:00:00Z"))
    assert result.status == "failed" and result.error_class == "ExternalAPIError"
    assert result.indicators == [] and result.state.cursor == "2010-01-01T00:00:00Z"


def test_taxii_server_that_never_ends(feed_server: FeedServer) -> None:
    endless = json.dumps({"more": True, "next": "same", "objects": []}).encode()
    feed_server.script(OBJECTS, Reply(200, endless, {"Content-Type": TAXII_MEDIA_TYPE}))
    result = refresh_feed(taxii_feed(feed_server), FeedState())
    assert result.error_class == "ValidationError" and "repeats the page token" in str(result.error)


# -- MISP ----------------------------------------------------------------------------------


def test_misp_feed_over_http_with_a_conditional_manifest(feed_server: FeedServer) -> None:
    config = FeedConfig(name="circl", type="misp", url=feed_server.url + "/misp", tlp="amber")
    first = conserved(refresh_feed(config, FeedState()))
    assert first.status == "ok" and first.full_list
    assert (first.entries, first.indexed, first.skipped) == (9, 3, 6)
    assert {i.type.value for i in first.indicators} == {"md5", "sha1", "sha256"}
    assert {i.tlp for i in first.indicators} == {"clear"}  # the event's tlp:white beats the default
    assert first.state.etag == '"manifest-1"'
    second = refresh_feed(config, first.state)
    assert second.status == "not_modified"
    assert len(feed_server.seen(f"/misp/{MISP_EVENT}.json")) == 1  # events not fetched again


def test_misp_malformed_event_is_a_dead_letter_and_nothing_expires(feed_server: FeedServer) -> None:
    feed_server.script(f"/misp/{MISP_EVENT}.json", Reply(200, b'{"Event": {"Attribute": [}'))
    config = FeedConfig(name="circl", type="misp", url=feed_server.url + "/misp/")
    result = conserved(refresh_feed(config, FeedState(), now=NOW))
    assert result.status == "ok" and result.full_list is False and result.indicators == []
    (letter,) = result.dead_letters
    assert letter.source.uri == f"{feed_server.url}/misp/{MISP_EVENT}.json"
    assert letter.payload == b'{"Event": {"Attribute": [}' and letter.failed_at == NOW


def test_misp_feed_directory(tmp_path: Path) -> None:
    config = FeedConfig(name="circl", type="misp", path=str(FIXTURES / "misp"))
    first = refresh_feed(config, FeedState())
    assert first.status == "ok" and len(first.indicators) == 3 and first.full_list
    assert first.state.etag is not None and first.state.etag.startswith("blake2b:")
    assert refresh_feed(config, first.state).status == "not_modified"
    empty = tmp_path / "misp"
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({MISP_EVENT: {}}))
    missing = refresh_feed(FeedConfig(name="x", type="misp", path=str(empty)), FeedState())
    assert missing.error_class == "NotFoundError" and MISP_EVENT in str(missing.error)


# -- STIX, CSV, KEV ------------------------------------------------------------------------


def test_stix_bundle_over_http(feed_server: FeedServer) -> None:
    url = feed_server.url + "/stix/oasis_threat-report_apt1.json"
    result = conserved(refresh_feed(FeedConfig(name="apt1", type="stix", url=url), FeedState()))
    assert result.status == "ok" and len(result.indicators) == 10 and result.skipped == 2
    assert result.state.etag == '"oasis_threat-report_apt1.json"'
    assert "application/stix+json;version=2.1" in feed_server.requests[-1].headers["accept"]


def test_stix_directory_with_one_broken_bundle(tmp_path: Path) -> None:
    for name in ("oasis_indicators-for-C2-with-COA.json", "oasis_threat-report_apt1.json"):
        shutil.copy(FIXTURES / "stix" / name, tmp_path / name)
    (tmp_path / "zz_broken.json").write_bytes(b'{"type": "bundle", "objects": [')
    (tmp_path / "notes.txt").write_text("not a bundle, not read")
    config = FeedConfig(name="dir", type="stix", path=str(tmp_path))
    result = conserved(refresh_feed(config, FeedState()))
    assert result.status == "ok" and len(result.indicators) == 12
    assert result.full_list is False  # one document is unreadable: expire nothing
    (letter,) = result.dead_letters
    assert letter.source.uri.endswith("zz_broken.json") and letter.source.line is None


def test_single_broken_bundle_fails_the_feed(tmp_path: Path) -> None:
    broken = tmp_path / "bundle.json"
    broken.write_bytes(b'{"type": "bundle", "objects": [')
    result = refresh_feed(FeedConfig(name="one", type="stix", path=str(broken)), FeedState())
    assert result.status == "failed" and result.error_class == "ValidationError"


def test_feodo_and_kev_files() -> None:
    feodo = FeedConfig(
        name="feodo",
        type="csv",
        path=str(FIXTURES / "abusech" / "feodotracker_ipblocklist_2024-04-04.csv"),
        preset="feodo",
        confidence=80,
    )
    result = conserved(refresh_feed(feodo, FeedState()))
    assert result.status == "ok" and len(result.indicators) == 28 and result.full_list
    assert {i.confidence for i in result.indicators} == {80}
    kev = FeedConfig(
        name="kev",
        type="kev",
        path=str(FIXTURES / "cisa_kev" / "known_exploited_vulnerabilities_CUT50.json"),
    )
    result = conserved(refresh_feed(kev, FeedState()))
    assert result.status == "ok" and len(result.indicators) == 50


def test_missing_local_path_fails_the_feed(tmp_path: Path) -> None:
    config = FeedConfig(name="gone", type="kev", path=str(tmp_path / "nope.json"))
    result = refresh_feed(config, FeedState(etag="e"))
    assert result.status == "failed" and result.error_class == "NotFoundError"
    assert result.state == FeedState(etag="e")


def test_a_bug_fails_only_its_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(feeds_module, "parse_kev", broken)
    config = FeedConfig(
        name="kev",
        type="kev",
        path=str(FIXTURES / "cisa_kev" / "known_exploited_vulnerabilities_CUT50.json"),
    )
    result = refresh_feed(config, FeedState())
    assert result.status == "failed" and result.error_class == "UnexpectedError"
    assert result.error == "RuntimeError: parser bug"
