"""Stage 6, `transforms.correlate`: events against a real CTI snapshot (Parquet on disk, read
back into an `IndicatorIndex`), as a pure function and as the `CorrelateWithCti` transform.

A missed match is a missed C2 beacon from a plant network; a match on a revoked or expired
indicator is an alert an analyst has to dismiss. Both directions are pinned here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to, is_empty

from cti.index import IndicatorIndex, clear_index_cache
from cti.indicators import Indicator, make_indicator, merge
from cti.snapshot import SnapshotRef, indicators_to_table, write_snapshot
from schemas.event import CtiMatch, NetworkEndpoint, NormalizedEvent
from schemas.records import SourceFormat, SourcePosition
from transforms.correlate import DETAIL_OBSERVABLES, CorrelateWithCti, correlate_event

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
NOW = datetime.now(UTC)  # the index drops indicators expired at build time, by the clock

C2 = "84.247.157.112"
C2_V6 = "2a01:4f8:c17:b8f::2"
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
URL = "http://evil.example/payload.bin"


def _indicators() -> list[Indicator]:
    active = NOW + timedelta(days=30)
    return [
        # An exact IPv4 reported by two feeds: one indicator, both feeds as sources.
        merge(
            make_indicator("ip-dst", C2, confidence=80, feed="feodo", tlp="clear"),
            make_indicator("ipv4", C2, confidence=60, feed="threatfox", tlp="TLP:AMBER"),
        ),
        make_indicator("ipv6", C2_V6, confidence=70, feed="misp", tlp="green"),
        # Nested networks: the /24 is inside the /22.
        make_indicator("cidr", "185.220.100.0/22", confidence=40, feed="tor-exits"),
        make_indicator("cidr", "185.220.101.0/24", confidence=55, feed="spamhaus-drop"),
        # An exact address inside a listed network.
        make_indicator("ipv4", "45.9.148.10", confidence=90, feed="feodo", tlp="red"),
        make_indicator("cidr", "45.9.148.0/24", confidence=50, feed="spamhaus-drop"),
        make_indicator("cidr", "2a0e:1c80::/32", confidence=45, feed="misp"),
        make_indicator("domain", "evil.example", confidence=75, feed="urlhaus"),
        make_indicator("domain", "b.evil.example", confidence=85, feed="threatfox"),
        make_indicator("url", URL, confidence=65, feed="urlhaus", valid_until=active),
        make_indicator("sha256", SHA256.upper(), confidence=95, feed="malwarebazaar"),
        make_indicator("cve", "CVE-2015-5374", confidence=100, feed="kev"),
        # Revoked and expired: never match.
        make_indicator("ipv4", "91.92.93.94", confidence=99, feed="misp", revoked=True),
        make_indicator(
            "ipv4",
            "91.92.93.95",
            confidence=99,
            feed="misp",
            valid_from=NOW - timedelta(days=10),
            valid_until=NOW - timedelta(days=1),
        ),
        make_indicator("domain", "gone.example", confidence=99, feed="urlhaus", revoked=True),
        make_indicator("cidr", "203.0.113.0/24", confidence=99, feed="x", revoked=True),
    ]


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnapshotRef]:
    directory = tmp_path_factory.mktemp("cti")
    yield write_snapshot(str(directory), indicators_to_table(_indicators()))
    clear_index_cache()


@pytest.fixture(scope="module")
def index(ref: SnapshotRef) -> IndicatorIndex:
    return IndicatorIndex.load(ref)


def event(
    src: str = "10.20.0.10",
    dst: str = "10.10.1.10",
    details: dict[str, str] | None = None,
    event_id: str = "e1",
) -> NormalizedEvent:
    return NormalizedEvent(
        event_id=event_id,
        time=T0,
        class_uid=4001,
        category_uid=4,
        activity_id=6,
        type_uid=400106,
        severity_id=1,
        source_format=SourceFormat.ZEEK_TSV,
        source_kind="zeek.conn",
        observer="zeek",
        message="test",
        src=NetworkEndpoint(ip=src, port=50000),
        dst=NetworkEndpoint(ip=dst, port=443),
        source=SourcePosition(uri="conn.log", line=1),
        details=details or {},
    )


def hits(e: NormalizedEvent) -> list[tuple[str, str, str]]:
    return [(m.field, m.type, m.value) for m in e.cti_matches]


# --- addresses --------------------------------------------------------------------------


def test_exact_ipv4_on_dst_carries_confidence_tlp_and_every_feed(index: IndicatorIndex) -> None:
    """The match tells the analyst how sure the feeds are, what may be shared (the stricter
    TLP of the two reports) and which feeds to look at."""
    found = correlate_event(event(dst=C2), index)
    assert found.cti_matches == (
        CtiMatch(
            field="dst.ip",
            type="ipv4",
            value=C2,
            confidence=80,
            tlp="amber",
            sources=("feodo", "threatfox"),
        ),
    )


def test_exact_ipv4_on_src(index: IndicatorIndex) -> None:
    """Inbound from a known-bad address is matched on ``src.ip``, so rules can tell the
    direction apart."""
    assert hits(correlate_event(event(src=C2), index)) == [("src.ip", "ipv4", C2)]


def test_both_ends_match(index: IndicatorIndex) -> None:
    found = correlate_event(event(src=C2, dst="185.220.101.9"), index)
    assert hits(found) == [
        ("src.ip", "ipv4", C2),
        ("dst.ip", "cidr", "185.220.101.0/24"),
    ]


def test_exact_ipv6_on_src_and_dst(index: IndicatorIndex) -> None:
    for side, e in (("src.ip", event(src=C2_V6)), ("dst.ip", event(dst=C2_V6))):
        found = correlate_event(e, index)
        assert hits(found) == [(side, "ipv6", C2_V6)]
        assert found.cti_matches[0].tlp == "green"
        assert found.cti_matches[0].sources == ("misp",)


def test_ipv6_network(index: IndicatorIndex) -> None:
    assert hits(correlate_event(event(dst="2a0e:1c80:1::7"), index)) == [
        ("dst.ip", "cidr", "2a0e:1c80::/32")
    ]


@pytest.mark.parametrize(
    ("address", "network", "confidence"),
    [
        ("185.220.101.5", "185.220.101.0/24", 55),
        ("185.220.101.255", "185.220.101.0/24", 55),
        ("185.220.100.5", "185.220.100.0/22", 40),
        ("185.220.103.255", "185.220.100.0/22", 40),
    ],
)
def test_nested_networks_give_only_the_most_specific(
    index: IndicatorIndex, address: str, network: str, confidence: int
) -> None:
    """One match per address from networks: the narrowest listing, which is the one
    whose confidence and feed describe that address best."""
    found = correlate_event(event(dst=address), index)
    assert hits(found) == [("dst.ip", "cidr", network)]
    assert found.cti_matches[0].confidence == confidence


def test_exact_address_and_its_network_give_two_matches(index: IndicatorIndex) -> None:
    """The exact indicator first, then the covering network: both are evidence."""
    found = correlate_event(event(dst="45.9.148.10"), index)
    assert hits(found) == [
        ("dst.ip", "ipv4", "45.9.148.10"),
        ("dst.ip", "cidr", "45.9.148.0/24"),
    ]
    assert [(m.confidence, m.tlp, m.sources) for m in found.cti_matches] == [
        (90, "red", ("feodo",)),
        (50, "clear", ("spamhaus-drop",)),
    ]


def test_addresses_just_outside_listed_networks_do_not_match(index: IndicatorIndex) -> None:
    for address in ("185.220.99.255", "185.220.104.0", "45.9.149.0", "84.247.157.113"):
        assert correlate_event(event(dst=address), index).cti_matches == ()


# --- details observables ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "indicator"),
    [
        ("query", "evil.example", "evil.example"),
        ("query", "cdn.a.evil.example", "evil.example"),
        ("query", "EVIL.Example.", "evil.example"),
        ("query", "x.b.evil.example", "b.evil.example"),
        ("server_name", "b.evil.example", "b.evil.example"),
        ("server_name", "login.evil.example", "evil.example"),
        ("host", "evil.example", "evil.example"),
    ],
)
def test_domain_suffix_on_dns_query_and_tls_server_name(
    index: IndicatorIndex, key: str, value: str, indicator: str
) -> None:
    """A DNS query or TLS SNI for any name under a listed domain matches the most specific
    listed domain, case and trailing dot aside."""
    found = correlate_event(event(details={key: value}), index)
    assert hits(found) == [(f"details.{key}", "domain", indicator)]


@pytest.mark.parametrize("name", ["notevil.example", "evil.example.com", "example", "evil"])
def test_domain_match_is_cut_at_label_boundaries(index: IndicatorIndex, name: str) -> None:
    """``notevil.example`` is not under ``evil.example``: a substring is not a match."""
    assert correlate_event(event(details={"query": name}), index).cti_matches == ()


def test_url_and_sha256_in_details(index: IndicatorIndex) -> None:
    found = correlate_event(event(details={"url": URL, "sha256": SHA256}), index)
    assert hits(found) == [
        ("details.url", "url", URL),
        ("details.sha256", "sha256", SHA256),
    ]
    assert [m.sources for m in found.cti_matches] == [("urlhaus",), ("malwarebazaar",)]


def test_url_and_hash_are_matched_in_canonical_form(index: IndicatorIndex) -> None:
    """Sensors write ``HTTP://EVIL.example:80/...`` and upper-case digests; the feed wrote
    them otherwise. Both are canonicalized before the lookup."""
    found = correlate_event(
        event(details={"url": "HTTP://EVIL.example:80/payload.bin", "sha256": SHA256.upper()}),
        index,
    )
    assert [m.field for m in found.cti_matches] == ["details.url", "details.sha256"]


def test_cve_in_details(index: IndicatorIndex) -> None:
    found = correlate_event(event(details={"cve": "cve-2015-5374"}), index)
    assert hits(found) == [("details.cve", "cve", "CVE-2015-5374")]


def test_details_keys_outside_the_observable_list_are_not_looked_up(
    index: IndicatorIndex,
) -> None:
    """Only the keys in DETAIL_OBSERVABLES are observables; free text like a user agent that
    happens to equal a domain is not."""
    assert "user_agent" not in DETAIL_OBSERVABLES
    found = correlate_event(event(details={"user_agent": "evil.example", "query": ""}), index)
    assert found.cti_matches == ()


def test_address_and_details_hits_together(index: IndicatorIndex) -> None:
    found = correlate_event(event(dst=C2, details={"server_name": "evil.example"}), index)
    assert [m.field for m in found.cti_matches] == ["dst.ip", "details.server_name"]


# --- what never matches -----------------------------------------------------------------


@pytest.mark.parametrize("address", ["91.92.93.94", "91.92.93.95", "203.0.113.7"])
def test_revoked_and_expired_indicators_never_match(index: IndicatorIndex, address: str) -> None:
    """A feed's retraction or expiry takes effect: no alert on an address it withdrew."""
    assert correlate_event(event(src=address, dst=address), index).cti_matches == ()


def test_revoked_domain_never_matches(index: IndicatorIndex) -> None:
    found = correlate_event(event(details={"query": "www.gone.example"}), index)
    assert found.cti_matches == ()


def test_event_without_a_hit_is_returned_unchanged(index: IndicatorIndex) -> None:
    """No copy for the vast majority of events that match nothing."""
    original = event(details={"query": "plant.local", "url": "http://10.20.0.10/"})
    assert correlate_event(original, index) is original
    odd = event(src="not-an-ip", dst="")
    assert correlate_event(odd, index) is odd


def test_only_cti_matches_change(index: IndicatorIndex) -> None:
    original = event(dst=C2, details={"query": "evil.example"})
    found = correlate_event(original, index)
    for name in original.__struct_fields__:
        if name != "cti_matches":
            assert getattr(found, name) == getattr(original, name), name


# --- CorrelateWithCti (Beam) ------------------------------------------------------------

EVENTS = [
    event(dst=C2, event_id="c2"),
    event(dst="185.220.101.5", details={"query": "a.evil.example"}, event_id="tor-dns"),
    event(dst="91.92.93.94", event_id="revoked"),
    event(event_id="clean"),
]


def test_correlate_transform_with_a_snapshot_side_input(ref: SnapshotRef) -> None:
    """The side input is the snapshot reference; each worker loads the index itself."""
    with TestPipeline() as pipeline:
        snapshots = pipeline | "Snapshot" >> beam.Create([ref])
        out = pipeline | "Events" >> beam.Create(EVENTS) | CorrelateWithCti(snapshots)
        assert_that(
            out.main | beam.Map(lambda e: (e.event_id, hits(e))),
            equal_to(
                [
                    ("c2", [("dst.ip", "ipv4", C2)]),
                    (
                        "tor-dns",
                        [
                            ("dst.ip", "cidr", "185.220.101.0/24"),
                            ("details.query", "domain", "evil.example"),
                        ],
                    ),
                    ("revoked", []),
                    ("clean", []),
                ]
            ),
            label="main",
        )
        assert_that(out.dead_letters, is_empty(), label="dead_letters")


def test_correlate_transform_with_an_empty_side_input_passes_events_unchanged() -> None:
    """No snapshot published yet: events flow on without threat intelligence, not stuck."""
    with TestPipeline() as pipeline:
        snapshots = pipeline | "Snapshot" >> beam.Create([]).with_output_types(SnapshotRef)
        out = pipeline | "Events" >> beam.Create(EVENTS) | CorrelateWithCti(snapshots)
        assert_that(out.main, equal_to(EVENTS), label="main")
        assert_that(out.dead_letters, is_empty(), label="dead_letters")


def test_a_missing_snapshot_file_is_a_dead_letter_not_a_crash(tmp_path: Path) -> None:
    """A snapshot pruned under a running job fails the event into the dead-letter output
    (replayable), and the job keeps running."""
    gone = SnapshotRef(path=str(tmp_path / "snapshot-gone.parquet"), version="gone", indicators=1)
    with TestPipeline() as pipeline:
        snapshots = pipeline | "Snapshot" >> beam.Create([gone])
        out = pipeline | "Events" >> beam.Create(EVENTS[:1]) | CorrelateWithCti(snapshots)
        assert_that(out.main, is_empty(), label="main")
        assert_that(
            out.dead_letters | beam.Map(lambda d: (d.stage, d.error_class)),
            equal_to([("correlate", "NotFoundError")]),
            label="dead_letters",
        )
