"""Feed parsers on every fixture and on synthetic entries: exact indicators, skips, dead letters.

Every test also checks the entry conservation of the parsers: each entry is
indexed, skipped or dead-lettered, exactly once.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.config import CsvColumns, FeedConfig
from cti.indicators import Indicator, IndicatorType, Source
from cti.parsers import (
    Collector,
    ParseContext,
    decode_bundle,
    guess_type,
    manifest_events,
    parse_csv,
    parse_kev,
    parse_misp_event,
    parse_stix,
    reduce_pattern,
)
from schemas.errors import ValidationError
from schemas.records import SourcePosition
from tests.unit.cti.conftest import FIXTURES, MISP_EVENT

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T = IndicatorType


def collector(kind: str, *, confidence: int = 60, tlp: str = "green") -> Collector:
    context = ParseContext(feed="f", kind=kind, confidence=confidence, tlp=tlp, now=NOW)
    return Collector(context)


def conserved(found: Collector) -> Collector:
    assert found.entries == found.indexed + found.skipped + len(found.dead_letters)
    for letter in found.dead_letters:
        assert letter.stage == "cti.parse" and letter.failed_at == NOW
        assert letter.record_kind == found.context.kind and not letter.retriable
    return found


def by_key(found: Collector) -> dict[tuple[str, str], Indicator]:
    return {i.key: i for i in found.indicators}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- STIX ----------------------------------------------------------------------------------


def stix_file(name: str, **options: Any) -> Collector:
    found = collector("stix", **options)
    body = (FIXTURES / "stix" / name).read_bytes()
    parse_stix([decode_bundle(body, name)], found)
    return conserved(found)


def stix_objects(*objects: Any, **options: Any) -> Collector:
    found = collector("stix", **options)
    body = json.dumps({"type": "bundle", "id": "bundle--1", "objects": list(objects)}).encode()
    parse_stix([decode_bundle(body, "test.json")], found)
    return conserved(found)


def stix_indicator(pattern: str, number: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{number:012d}",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
        **fields,
    }


def test_stix_oasis_c2_ip() -> None:
    found = stix_file("oasis_indicator-for-c2-ip-address.json")
    assert found.entries == 1 and found.skipped == 0
    assert found.indicators == [
        Indicator(
            type=T.IPV4,
            value="10.0.0.0",
            confidence=60,
            tlp="green",
            valid_from=utc("2014-05-08T09:00:00Z"),
            sources=(
                Source(feed="f", reference="indicator--33fe3b22-0201-47cf-85d0-97c02164528d"),
            ),
            tags=("malicious-activity",),
        )
    ]


def test_stix_oasis_c2_with_course_of_action_tags_the_indicated_malware() -> None:
    found = stix_file("oasis_indicators-for-C2-with-COA.json")
    assert (found.entries, found.indexed) == (
        2,
        2,
    )  # malware, identity, COA, relationships: no entries
    indicators = by_key(found)
    assert set(indicators) == {
        ("ipv4", "10.0.0.0"),
        ("sha256", "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c"),
    }
    assert all(i.tags == ("malicious-activity", "malware:Poison Ivy") for i in indicators.values())


def test_stix_apt1_report() -> None:
    found = stix_file("oasis_threat-report_apt1.json")
    # The two x509-certificate patterns (issuer AND serial number) are not observables otsec sees.
    assert (found.entries, found.indexed, found.skipped, found.dead_letters) == (12, 10, 2, [])
    assert sorted(by_key(found)) == [
        ("cidr", "112.64.0.0/15"),
        ("cidr", "139.226.0.0/15"),
        ("cidr", "223.166.0.0/15"),
        ("cidr", "58.246.0.0/15"),
        ("domain", "arrowservice.net"),
        ("domain", "hugesoft.org"),
        ("domain", "msnhome.org"),
        ("md5", "001dd76872d80801692ff942308c64e6"),
        ("md5", "002325a0a67fded0381b5648d7fe9b8e"),
        ("md5", "00dbb9e1c09dbdafb360f3163ba5a3de"),
    ]
    hop = by_key(found)[("cidr", "223.166.0.0/15")]
    assert hop.sources == (
        Source(feed="f", reference="indicator--031778a4-057f-48e6-9db9-c8d72b81ccd5"),
    )
    assert hop.valid_from == utc("2015-05-15T09:12:16.432678Z") and hop.techniques == ()


def test_stix_mitre_ics_cut_has_no_indicators() -> None:
    found = stix_file("mitre_ics-attack-18.1_CUT_frostygoop_industroyer2_triton.json")
    assert (found.entries, found.indicators, found.dead_letters) == (0, [], [])


def test_stix_techniques_from_relationships_across_bundles() -> None:
    """An indicator in one bundle `indicates` ATT&CK for ICS patterns of the MITRE cut."""
    unauthorized_command = "attack-pattern--40b300ba-f553-48bf-862e-9471b220d455"  # T0855
    frostygoop = "malware--b34df04a-9d30-4d84-a03f-0d536ee19a05"
    own = {"source_name": "mitre-ics-attack", "external_id": "T0836"}
    indicator = stix_indicator(
        "[ipv4-addr:value = '203.0.113.7']",
        external_references=[own, {"source_name": "other", "external_id": "T9999"}],
    )
    relationships = [
        {
            "type": "relationship",
            "id": f"relationship--00000000-0000-4000-8000-00000000000{n}",
            "relationship_type": "indicates",
            "source_ref": indicator["id"],
            "target_ref": target,
        }
        for n, target in enumerate((unauthorized_command, frostygoop))
    ]
    found = collector("stix")
    mitre = FIXTURES / "stix" / "mitre_ics-attack-18.1_CUT_frostygoop_industroyer2_triton.json"
    ours = json.dumps({"type": "bundle", "objects": [indicator, *relationships]}).encode()
    parse_stix(
        [decode_bundle(ours, "ours.json"), decode_bundle(mitre.read_bytes(), "mitre")], found
    )
    (only,) = conserved(found).indicators
    assert only.techniques == ("T0836", "T0855")
    assert "malware:FrostyGoop" in only.tags


def test_stix_latest_version_wins_and_older_ones_are_skipped() -> None:
    data = json.loads((FIXTURES / "taxii" / "medallion_default_data.json").read_bytes())
    collection = next(
        c
        for c in data["trustgroup1"]["collections"]
        if c["title"] == "High Value Indicator Collection"
    )
    found = stix_objects(*collection["objects"])
    assert (found.entries, found.indexed, found.skipped) == (4, 2, 2)  # 3 versions of one id
    assert set(by_key(found)) == {
        ("url", "http://x4z9arb.cn/4712"),
        ("sha256", "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c"),
    }
    url = by_key(found)[("url", "http://x4z9arb.cn/4712")]
    assert url.valid_from == utc("2016-11-03T12:30:59Z") and url.tags == ("url-watchlist",)


@pytest.mark.parametrize(
    ("refs", "defined", "tlp"),
    [
        ([], [], "green"),  # the feed's default
        (["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"], [], "amber"),  # TLP 1.0
        (["marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"], [], "clear"),  # 1.0 white
        (["marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"], [], "amber+strict"),  # 2.0
        (
            [
                "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
                "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
            ],
            [],
            "red",  # the strictest of several
        ),
        (
            ["marking-definition--00000000-0000-4000-8000-000000000001"],
            [
                {
                    "type": "marking-definition",
                    "id": "marking-definition--00000000-0000-4000-8000-000000000001",
                    "definition_type": "tlp",
                    "definition": {"tlp": "amber"},
                }
            ],
            "amber",  # a TLP marking defined in the feed
        ),
        (
            ["marking-definition--00000000-0000-4000-8000-000000000002"],
            [
                {
                    "type": "marking-definition",
                    "id": "marking-definition--00000000-0000-4000-8000-000000000002",
                    "name": "TLP:AMBER+STRICT",
                    "extensions": {},
                }
            ],
            "amber+strict",  # a TLP 2.0 marking named, as OpenCTI writes them
        ),
        (["marking-definition--fa42a846-8d90-4e51-bc29-71d5b4802168"], [], "green"),  # a statement
    ],
)
def test_stix_tlp_from_markings(refs: list[str], defined: list[Any], tlp: str) -> None:
    found = stix_objects(
        stix_indicator("[domain-name:value = 'evil.example']", object_marking_refs=refs), *defined
    )
    assert [i.tlp for i in found.indicators] == [tlp]


def test_stix_confidence_validity_revocation_and_other_pattern_languages() -> None:
    found = stix_objects(
        stix_indicator("[ipv4-addr:value = '198.51.100.1']", 1, confidence=85),
        stix_indicator(
            "[ipv4-addr:value = '198.51.100.2']",
            2,
            revoked=True,
            valid_until="2025-01-01T00:00:00Z",
        ),
        stix_indicator("rule x { condition: true }", 3, pattern_type="yara"),
        stix_indicator("[ipv4-addr:value = '198.51.100.3']", 4, pattern_type="STIX"),
    )
    indicators = by_key(found)
    assert (found.entries, found.indexed, found.skipped) == (4, 3, 1)
    assert indicators[("ipv4", "198.51.100.1")].confidence == 85
    revoked = indicators[("ipv4", "198.51.100.2")]
    assert revoked.revoked and revoked.valid_until == utc("2025-01-01T00:00:00Z")
    assert revoked.confidence == 60 and indicators[("ipv4", "198.51.100.3")].tlp == "green"


def test_stix_bad_entries_become_dead_letters_with_their_bytes() -> None:
    objects: list[Any] = [
        stix_indicator("[ipv4-addr:value = '192.0.2.1']", 1),
        stix_indicator("[ipv4-addr:value = ", 2),  # syntax
        stix_indicator("[ipv4-addr:value = '999.1.1.1']", 3),  # value
        stix_indicator("[ipv4-addr:value = '192.0.2.4']", 4, confidence=150),
        stix_indicator("[ipv4-addr:value = '192.0.2.5']", 5, valid_until="2000-01-01T00:00:00Z"),
        stix_indicator("[ipv4-addr:value = '192.0.2.6']", 6, valid_from="yesterday"),
        42,  # not an object at all
        {"type": "indicator", "id": "indicator--x"},  # no pattern
    ]
    found = stix_objects(*objects)
    assert [i.value for i in found.indicators] == ["192.0.2.1"]
    letters = {letter.source.line: letter for letter in found.dead_letters}
    assert sorted(letters) == [1, 2, 3, 4, 5, 6, 7]
    assert letters[1].field == "pattern" and "does not parse" in letters[1].message
    assert letters[2].field == "value" and "999.1.1.1" in letters[2].message
    assert letters[3].field == "confidence"
    assert letters[4].field == "valid_until"
    assert letters[5].field == "valid_from"
    assert letters[6].payload == b"42" and letters[7].field == "pattern"
    body = json.dumps({"objects": objects}).encode()
    raw = msgspec.json.decode(body, type=dict[str, list[msgspec.Raw]])["objects"]
    for line, letter in letters.items():
        assert letter.payload == bytes(raw[line]) and letter.source.uri == "test.json"
        assert letter.error_class == "ValidationError"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("[ipv4-addr:value = '198.51.100.1']", [(T.IPV4, "198.51.100.1")]),
        ("[ipv6-addr:value = '2001:db8::1']", [(T.IPV6, "2001:db8::1")]),
        ("[url:value = 'http://evil.example/a']", [(T.URL, "http://evil.example/a")]),
        ("[url:value = 'http://evil.example/it\\'s']", [(T.URL, "http://evil.example/it's")]),
        ("[file:hashes.'SHA-256' = 'AB']", [(T.SHA256, "AB")]),
        ("[file:hashes.SHA256 = 'ab']", [(T.SHA256, "ab")]),
        ("[file:hashes.'SHA-1' = 'ab']", [(T.SHA1, "ab")]),
        ("[file:hashes.MD5 = 'ab']", [(T.MD5, "ab")]),
        ("[file:hashes.'SHA-512' = 'ab']", None),  # not indexed
        # OR, within and between observations: one indicator per observable
        (
            "[ipv4-addr:value = '198.51.100.1' OR ipv4-addr:value = '198.51.100.2']",
            [(T.IPV4, "198.51.100.1"), (T.IPV4, "198.51.100.2")],
        ),
        (
            "[domain-name:value = 'a.example'] OR [url:value = 'http://b.example/']",
            [(T.DOMAIN, "a.example"), (T.URL, "http://b.example/")],
        ),
        (
            "[ipv4-addr:value IN ('198.51.100.1', '198.51.100.2')]",
            [(T.IPV4, "198.51.100.1"), (T.IPV4, "198.51.100.2")],
        ),
        # an OR branch that does not reduce leaves the others sound
        ("[ipv4-addr:value = '198.51.100.1'] OR [file:name = 'x.exe']", [(T.IPV4, "198.51.100.1")]),
        ("[ipv4-addr:value ISSUBSET '198.51.100.0/24']", [(T.CIDR, "198.51.100.0/24")]),
        ("[domain-name:value ISSUBSET 'example.com']", None),
        # AND needs more than one thing seen...
        ("[ipv4-addr:value = '198.51.100.1'] AND [domain-name:value = 'a.example']", None),
        ("[ipv4-addr:value = '198.51.100.1' AND ipv4-addr:value = '198.51.100.2']", None),
        (
            "[network-traffic:dst_ref.value = '198.51.100.1' AND network-traffic:dst_port = 443]",
            None,
        ),
        # ... except a file's content hashes, and a reference's declared type
        ("[file:hashes.MD5 = 'ab' AND file:name = 'x.exe']", [(T.MD5, "ab")]),
        (
            "[file:hashes.MD5 = 'AB' AND file:hashes.'SHA-1' = 'cd' AND file:size = 3]",
            [(T.MD5, "ab"), (T.SHA1, "cd")],
        ),
        ("[file:hashes.MD5 = 'ab' AND file:hashes.MD5 = 'cd']", None),  # no file has both
        (
            "[network-traffic:dst_ref.type = 'ipv4-addr'"
            " AND network-traffic:dst_ref.value = '198.51.100.1']",
            [(T.IPV4, "198.51.100.1")],
        ),
        (
            "[network-traffic:dst_ref.type = 'domain-name'"
            " AND network-traffic:dst_ref.value = 'a.example']",
            [(T.DOMAIN, "a.example")],
        ),
        ("[network-traffic:dst_ref.value = '198.51.100.1']", [(T.IPV4, "198.51.100.1")]),
        ("[network-traffic:dst_ref.value = 'a.example']", None),  # a name, a MAC...: unknown
        # behaviour, not observables
        ("[ipv4-addr:value != '198.51.100.1']", None),
        ("[ipv4-addr:value NOT IN ('198.51.100.1')]", None),
        ("[domain-name:value MATCHES '^evil']", None),
        ("[url:value LIKE 'http://evil.%']", None),
        ("[file:size > 100]", None),
        ("[ipv4-addr:value = '198.51.100.1'] FOLLOWEDBY [ipv4-addr:value = '198.51.100.2']", None),
        ("[ipv4-addr:value = '198.51.100.1'] REPEATS 5 TIMES", None),
        ("[ipv4-addr:value = '198.51.100.1'] WITHIN 60 SECONDS", None),
        (
            "[ipv4-addr:value = '198.51.100.1']"
            " START t'2024-01-01T00:00:00Z' STOP t'2024-02-01T00:00:00Z'",
            None,
        ),
        (
            "[x509-certificate:issuer = 'CN=WEBMAIL' AND x509-certificate:serial_number = '4c']",
            None,
        ),
    ],
)
def test_reduce_pattern(pattern: str, expected: list[tuple[IndicatorType, str]] | None) -> None:
    assert reduce_pattern(pattern) == expected


def test_reduce_pattern_rejects_what_is_malformed() -> None:
    with pytest.raises(ValidationError, match="does not parse"):
        reduce_pattern("ipv4-addr:value = '198.51.100.1'")  # no brackets
    with pytest.raises(ValidationError, match="non-string literal"):
        reduce_pattern("[ipv4-addr:value = 5]")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_reduce_pattern_never_crashes(text: str) -> None:
    with contextlib.suppress(ValidationError):
        reduce_pattern(text)


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
PATTERNS = st.sampled_from(
    ["[ipv4-addr:value = '198.51.100.1']", "[url:value = 'x']", "[a:b MATCHES 'c']", "[", ""]
)
ANY_INDICATOR = st.builds(
    stix_indicator,
    PATTERNS | TEXT,
    st.integers(1, 3),
    confidence=JSON,
    revoked=JSON,
    object_marking_refs=JSON,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(JSON | ANY_INDICATOR, max_size=6))
def test_any_stix_objects_are_indexed_skipped_or_dead_lettered(objects: list[Any]) -> None:
    stix_objects(*objects)  # conserved() checks the counts


@settings(max_examples=100, deadline=None)
@given(st.lists(JSON, max_size=5), st.lists(JSON, max_size=3))
def test_any_misp_attributes_and_kev_entries_are_handled(
    attributes: list[Any], kev: list[Any]
) -> None:
    misp_event({"Attribute": attributes, "Tag": [{"name": "tlp:green"}]})
    found = collector("kev")
    parse_kev(json.dumps({"vulnerabilities": kev}).encode(), "kev.json", found)
    assert conserved(found).entries == len(kev)


def test_decode_bundle_rejects_what_is_not_a_bundle() -> None:
    with pytest.raises(ValidationError, match="not valid JSON"):
        decode_bundle(b'{"type": "bundle", "objects": [', "x.json")
    with pytest.raises(ValidationError, match="not a STIX bundle"):
        decode_bundle(b"[1, 2]", "x.json")
    with pytest.raises(ValidationError, match="'indicator' object, not a bundle"):
        decode_bundle(json.dumps(stix_indicator("[x:y = 'z']")).encode(), "x.json")


# -- MISP ----------------------------------------------------------------------------------


def misp_event(event: dict[str, Any], **options: Any) -> Collector:
    found = collector("misp", **options)
    parse_misp_event(json.dumps({"Event": event}).encode(), "event.json", found)
    return conserved(found)


def test_misp_pymisp_feed_event() -> None:
    found = collector("misp")
    uri = f"{MISP_EVENT}.json"
    parse_misp_event((FIXTURES / "misp" / uri).read_bytes(), uri, found)
    conserved(found)
    # 4 attributes are not to_ids (links, comment, text); filename and regkey|value are not indexed
    assert (found.entries, found.indexed, found.skipped, found.dead_letters) == (9, 3, 6, [])
    tags = (
        'circl:incident-classification="malware"',
        'malware_classification:malware-category="Ransomware"',
        'ms-caro-malware:malware-type="Ransom"',
    )
    assert found.indicators == [
        Indicator(
            type=T.MD5,
            value="0749bae92ca336a02c83d126e04ec628",
            confidence=60,
            tlp="clear",  # the event's tlp:white
            valid_from=datetime.fromtimestamp(1472480395, UTC),
            sources=(Source(feed="f", reference="57c4448b-454c-4d17-90d1-4d2f950d210f"),),
            tags=tags,
        ),
        Indicator(
            type=T.SHA1,
            value="77b0c41b7d340b8a3d903f21347bbf06aa766b5b",
            confidence=60,
            tlp="clear",
            valid_from=datetime.fromtimestamp(1472480394, UTC),
            sources=(Source(feed="f", reference="57c4448a-bef0-4ba7-a071-444e950d210f"),),
            tags=tags,
        ),
        Indicator(
            type=T.SHA256,
            value="b3c4ae251f8094fa15b510051835c657eaef2a6cea46075d3aec964b14a99f68",
            confidence=60,
            tlp="clear",
            valid_from=datetime.fromtimestamp(1472480395, UTC),
            sources=(Source(feed="f", reference="57c4448b-3fa4-4d65-9ccc-4afa950d210f"),),
            tags=tags,
        ),
    ]


def attribute(type_: str, value: str, number: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "value": value,
        "uuid": f"00000000-0000-4000-8000-{number:012d}",
        "to_ids": True,
        "timestamp": "1700000000",
        **fields,
    }


def test_misp_attribute_types_objects_tags_and_bad_values() -> None:
    found = misp_event(
        {
            "uuid": "11111111-1111-4111-8111-111111111111",
            "Tag": [
                {"name": "tlp:green"},
                {"name": 'misp-galaxy:mitre-ics-techniques="Unauthorized Command Message - T0855"'},
            ],
            "Attribute": [
                attribute("ip-dst|port", "198.51.100.7|502", 1),
                attribute("domain|ip", "Plc-Update.Example.|203.0.113.9", 2),
                attribute(
                    "url", "HTTP://Evil.Example:80/a#frag", 3, first_seen="2024-05-01T10:00:00Z"
                ),
                attribute("uri", "/gate.php", 4),  # a path: nothing to match
                attribute("vulnerability", "cve-2023-6448", 5, Tag=[{"name": "tlp:amber"}]),
                attribute("ja3-fingerprint-md5", "E7D705A3286E19EA42F587B344EE6865", 6),
                attribute("ip-src", "198.51.100.99", 7, deleted=True),
                attribute("ip-src", "not-an-ip", 8),
                attribute("ip-src", "198.51.100.8", 9, to_ids=False),
                attribute("ip-src", "198.51.100.10", 10, Tag=[{"name": "tlp:purple"}]),
            ],
            "Object": [
                {"Attribute": [attribute("sha256", "AA" * 32, 11), attribute("filename", "x", 12)]},
                {"deleted": True, "Attribute": [attribute("md5", "bb" * 16, 13)]},
            ],
        }
    )
    assert (found.entries, found.indexed, found.skipped, len(found.dead_letters)) == (13, 6, 5, 2)
    indicators = by_key(found)
    assert set(indicators) == {
        ("ipv4", "198.51.100.7"),
        ("domain", "plc-update.example"),
        ("ipv4", "203.0.113.9"),
        ("url", "http://evil.example/a"),
        ("cve", "CVE-2023-6448"),
        ("ja3", "e7d705a3286e19ea42f587b344ee6865"),
        ("sha256", "aa" * 32),
    }
    assert all(i.techniques == ("T0855",) for i in indicators.values())
    assert indicators[("cve", "CVE-2023-6448")].tlp == "amber"  # the stricter tag wins
    assert indicators[("ipv4", "198.51.100.7")].tlp == "green"
    assert indicators[("url", "http://evil.example/a")].valid_from == utc("2024-05-01T10:00:00Z")
    assert indicators[("ipv4", "198.51.100.7")].valid_from == datetime.fromtimestamp(1.7e9, UTC)
    assert indicators[("ipv4", "203.0.113.9")].sources[0].reference.endswith("000000000002")
    bad_ip, bad_tlp = found.dead_letters
    assert bad_ip.source == SourcePosition(uri="event.json", line=7) and bad_ip.field == "value"
    assert json.loads(bad_ip.payload)["value"] == "not-an-ip"
    assert bad_tlp.source.line == 9 and bad_tlp.field == "tlp"


def test_misp_manifest() -> None:
    body = (FIXTURES / "misp" / "manifest.json").read_bytes()
    assert manifest_events(body, "manifest.json") == [MISP_EVENT]
    with pytest.raises(ValidationError, match="not an event UUID"):
        manifest_events(b'{"../../etc/passwd": {}}', "manifest.json")
    with pytest.raises(ValidationError, match="not a MISP feed manifest"):
        manifest_events(b"[]", "manifest.json")


def test_misp_event_that_is_not_one() -> None:
    with pytest.raises(ValidationError, match="not a MISP event"):
        parse_misp_event(b'{"event": {}}', "x.json", collector("misp"))


# -- CSV and plain lists -------------------------------------------------------------------


def csv_list(body: bytes, config: FeedConfig, **options: Any) -> Collector:
    found = collector("csv", **options)
    parse_csv(body, "list.csv", config.csv_layout, found, max_age=config.max_age_seconds)
    return conserved(found)


FEODO = (FIXTURES / "abusech" / "feodotracker_ipblocklist_2024-04-04.csv").read_bytes()


def test_feodo_preset() -> None:
    config = FeedConfig(name="feodo", type="csv", path="x", preset="feodo")
    found = csv_list(FEODO, config)
    assert (found.entries, found.indexed, found.skipped, found.dead_letters) == (28, 28, 0, [])
    first = found.indicators[0]
    assert first == Indicator(
        type=T.IPV4,
        value="192.9.135.73",
        confidence=60,
        tlp="green",
        valid_from=utc("2023-05-23T17:51:44Z"),
        sources=(Source(feed="f"),),
        tags=("Pikabot",),
    )
    assert found.indicators[-1].value == "172.233.221.61"
    assert all(i.type is T.IPV4 and i.valid_until is None for i in found.indicators)


def test_feodo_max_age_expires_from_last_online() -> None:
    config = FeedConfig(name="feodo", type="csv", path="x", preset="feodo", max_age="30d")
    found = csv_list(FEODO, config)
    first = by_key(found)[("ipv4", "192.9.135.73")]  # last_online 2024-04-01
    assert first.valid_until == utc("2024-04-01T00:00:00Z") + timedelta(days=30)


def test_csv_bad_lines_are_dead_letters_with_their_line_numbers() -> None:
    body = FEODO.replace(b'"37.60.242.85"', b'"37.60.242"').replace(
        b'"2024-02-09 06:56:00"', b'"2024-02-31 06:56:00"'
    )
    # the file ends without a newline after its "# END 28 entries" trailer
    body += b'\n"2024-04-04 07:03:03","\xff\xfe",1,"online","2024-04-04","x"\n"short"\n'
    config = FeedConfig(name="feodo", type="csv", path="x", preset="feodo")
    found = csv_list(body, config)
    assert (found.entries, found.indexed) == (30, 26)
    letters = {letter.source.line: letter for letter in found.dead_letters}
    lines = body.split(b"\n")
    assert sorted(letters) == [12, 13, 39, 40]
    for number, letter in letters.items():
        assert letter.payload == lines[number - 1] and letter.source.uri == "list.csv"
    assert letters[12].field == "value" and "37.60.242" in letters[12].message
    assert letters[13].field == "first_seen"
    assert "not UTF-8" in letters[39].message
    assert "line has 1 fields" in letters[40].message


URLHAUS = (
    b"################################################################\n"
    b"# abuse.ch URLhaus Database Dump (CSV - recent URLs only)      #\n"
    b"################################################################\n"
    b"#\n"
    b"# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n"
    b'"3189133","2024-09-24 08:01:07","http://117.215.212.171:46011/i","online",'
    b'"2024-09-24 08:01:07","malware_download","32-bit,elf,mips,Mozi",'
    b'"https://urlhaus.abuse.ch/url/3189133/","geenensp"\r\n'
    b'"3189132","2024-09-24 08:00:09","https://Evil.Example:443/a.exe#x","offline","",'
    b'"malware_download","None","https://urlhaus.abuse.ch/url/3189132/","anonymous"\r\n'
)


def test_urlhaus_preset() -> None:
    """The URLhaus layout (header in a comment, "None" for no tags); the rows are made up."""
    found = csv_list(URLHAUS, FeedConfig(name="urlhaus", type="csv", path="x", preset="urlhaus"))
    mozi, exe = found.indicators
    assert mozi.key == ("url", "http://117.215.212.171:46011/i")
    assert mozi.tags == ("32-bit", "Mozi", "elf", "malware_download", "mips")
    assert mozi.sources == (Source(feed="f", reference="https://urlhaus.abuse.ch/url/3189133/"),)
    assert exe.key == ("url", "https://evil.example/a.exe") and exe.tags == ("malware_download",)
    assert exe.valid_from == utc("2024-09-24T08:00:09Z")


def test_plain_list_guesses_each_type() -> None:
    body = (
        b"; Spamhaus-style header\n# comment\n\n"
        b"198.51.100.0/24 ; SBL1\n2001:db8::1\nevil.example.\nhttp://evil.example/x\n"
        b"CVE-2024-3400\n" + b"a" * 32 + b"\n" + b"b" * 40 + b"\n" + b"c" * 64 + b"\n"
        b"not_a_value\n198.51.100.5/32\n"
    )
    config = FeedConfig(
        name="plain", type="csv", path="x", preset="plain", columns=CsvColumns(comment=";")
    )
    found = csv_list(body.replace(b"# comment\n", b""), config)
    assert [i.key for i in found.indicators] == [
        ("cidr", "198.51.100.0/24"),
        ("ipv6", "2001:db8::1"),
        ("domain", "evil.example"),
        ("url", "http://evil.example/x"),
        ("cve", "CVE-2024-3400"),
        ("md5", "a" * 32),
        ("sha1", "b" * 40),
        ("sha256", "c" * 64),
        ("ipv4", "198.51.100.5"),
    ]
    (letter,) = found.dead_letters
    assert letter.payload == b"not_a_value" and "cannot tell the indicator type" in letter.message


def test_columns_with_a_type_column_and_a_fixed_type() -> None:
    body = b"kind;indicator;ref\nip-dst;198.51.100.1;r1\ndomain;evil.example;r2\nregkey;x;r3\n"
    columns = CsvColumns(value="indicator", type="kind", reference="ref", delimiter=";")
    found = csv_list(body, FeedConfig(name="c", type="csv", path="x", columns=columns))
    assert [(i.key, i.sources[0].reference) for i in found.indicators] == [
        (("ipv4", "198.51.100.1"), "r1"),
        (("domain", "evil.example"), "r2"),
    ]
    assert found.dead_letters[0].field == "type"  # regkey is not indexed
    fixed = CsvColumns(value=0, indicator_type="ja3")
    found = csv_list(
        b"E7D705A3286E19EA42F587B344EE6865\n",
        FeedConfig(name="c", type="csv", path="x", columns=fixed),
    )
    assert [i.key for i in found.indicators] == [("ja3", "e7d705a3286e19ea42f587b344ee6865")]


def test_csv_header_problems_fail_the_list() -> None:
    config = FeedConfig(name="feodo", type="csv", path="x", preset="feodo")
    with pytest.raises(ValidationError, match="column 'dst_ip' is not in the header"):
        parse_csv(b"first_seen_utc,ip\n1,2\n", "list.csv", config.csv_layout, collector("csv"))
    with pytest.raises(ValidationError, match="no header line"):
        parse_csv(b"# only comments\n", "list.csv", config.csv_layout, collector("csv"))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_any_bytes_in_a_plain_list_are_indicators_or_dead_letters(lines: list[bytes]) -> None:
    config = FeedConfig(name="plain", type="csv", path="x", preset="plain")
    found = csv_list(b"\n".join(lines), config)
    data_lines = [
        line.removesuffix(b"\r")
        for line in b"\n".join(lines).split(b"\n")
        if line.strip() and not line.lstrip().startswith(b"#")
    ]
    assert found.entries == len(data_lines)


def test_guess_type() -> None:
    assert guess_type("evil.example/path") is T.URL
    assert guess_type("10.0.0.0/8") is T.IPV4  # canonical_value makes it a CIDR
    with pytest.raises(ValidationError):
        guess_type("hello")


# -- CISA KEV ------------------------------------------------------------------------------


def test_kev_cut() -> None:
    found = collector("kev", confidence=90, tlp="clear")
    body = (FIXTURES / "cisa_kev" / "known_exploited_vulnerabilities_CUT50.json").read_bytes()
    parse_kev(body, "kev.json", found)
    conserved(found)
    assert (found.entries, found.indexed, found.skipped, found.dead_letters) == (50, 50, 0, [])
    indicators = by_key(found)
    assert all(i.type is T.CVE and i.confidence == 90 for i in indicators.values())
    unitronics = indicators[("cve", "CVE-2023-6448")]
    assert unitronics.sources == (Source(feed="f", reference="CVE-2023-6448"),)
    assert "vendor:Unitronics" in unitronics.tags and unitronics.valid_from is not None
    git = indicators[("cve", "CVE-2025-48384")]
    assert git.tags == ("CWE-436", "CWE-59", "product:Git", "vendor:Git")
    assert git.valid_from == utc("2025-08-25T00:00:00Z")
    ransomware = [i.value for i in indicators.values() if "ransomware:known" in i.tags]
    assert len(ransomware) == 5


def test_kev_bad_entries_and_bad_catalogs() -> None:
    found = collector("kev")
    entries = [{"cveID": "CVE-2024-1234", "dateAdded": "2024-01-02"}, {"cveID": "CVE-24"}, {}]
    parse_kev(json.dumps({"vulnerabilities": entries}).encode(), "kev.json", found)
    conserved(found)
    assert [i.value for i in found.indicators] == ["CVE-2024-1234"]
    assert [(d.source.line, d.field) for d in found.dead_letters] == [(1, "value"), (2, "cveID")]
    with pytest.raises(ValidationError, match="not a KEV catalog"):
        parse_kev(b'{"title": "x"}', "kev.json", collector("kev"))
