"""`IndicatorIndex` against a brute-force reference, plus the cases stage 6 relies on."""

from __future__ import annotations

import ipaddress
import pickle
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cti.index as index_module
from cti.index import IndicatorIndex, clear_index_cache, index_for
from cti.indicators import Indicator, IndicatorType, Source, canonical_domain, make_indicator
from cti.prefix import flatten_networks
from cti.snapshot import indicators_to_table, write_snapshot
from schemas.event import CtiMatch

NOW = datetime(2026, 1, 20, 8, 0, tzinfo=UTC)
STATES = ("active",) * 6 + ("revoked", "expired", "expires_now")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _indicator(kind: str, value: str, state: str = "active", feed: str = "feed") -> Indicator:
    until = {"expired": NOW - timedelta(days=1), "expires_now": NOW}.get(
        state, NOW + timedelta(microseconds=1)
    )
    return make_indicator(
        kind,
        value,
        confidence=60,
        feed=feed,
        revoked=state == "revoked",
        valid_from=NOW - timedelta(days=30),
        valid_until=None if state == "active" and len(value) % 2 else until,
    )


def _lasting(kind: str, value: str) -> Indicator:
    """An indicator without an end, for indexes built at the real clock's time."""
    return make_indicator(kind, value, confidence=60, feed="feed")


def _index(indicators: list[Indicator]) -> IndicatorIndex:
    return IndicatorIndex.from_table(indicators_to_table(indicators), version="v1", now=NOW)


def _is_active(indicator: Indicator) -> bool:
    return not indicator.revoked and (indicator.valid_until is None or indicator.valid_until > NOW)


# The brute-force reference: every indicator checked with `ipaddress`, the longest prefix wins.


def _reference_ip(indicators: list[Indicator], query: str) -> tuple[int, ...]:
    try:
        address: Address = ipaddress.ip_address(query.partition("%")[0] if ":" in query else query)
    except ValueError:
        return ()
    exact: list[int] = []
    covering: list[tuple[int, int]] = []  # (-prefix length, row): the smallest is the answer
    for row, indicator in enumerate(indicators):
        if not _is_active(indicator):
            continue
        if indicator.type in (IndicatorType.IPV4, IndicatorType.IPV6):
            if ipaddress.ip_address(indicator.value) == address:
                exact.append(row)
        elif indicator.type is IndicatorType.CIDR:
            network = ipaddress.ip_network(indicator.value)
            if network.version == address.version and address in network:
                covering.append((-network.prefixlen, row))
    found = exact[:1]
    if covering:
        found.append(min(covering)[1])
    return tuple(found)


def _reference_domain(indicators: list[Indicator], query: str) -> tuple[int, ...]:
    try:
        name = canonical_domain(query)
    except Exception:
        return ()
    candidates = [
        (-len(indicator.value), row)
        for row, indicator in enumerate(indicators)
        if indicator.type is IndicatorType.DOMAIN
        and _is_active(indicator)
        and (name == indicator.value or name.endswith("." + indicator.value))
    ]
    return (min(candidates)[1],) if candidates else ()


# Strategies: nested networks (parents, children inside them, grandchildren), addresses
# on and around their edges, and domains from a few labels so that suffixes collide.


def _nested_networks(bits: int, most_extra: int) -> st.SearchStrategy[list[tuple[int, int]]]:
    @st.composite
    def networks(draw: st.DrawFn) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []

        def grow(start: int, length: int, depth: int) -> None:
            found.append((start, length))
            if depth == 0 or length >= bits:
                return
            children = draw(
                st.lists(
                    st.tuples(st.integers(0, 2 ** (bits - length) - 1), st.integers(1, most_extra)),
                    max_size=3,
                )
            )
            for offset, extra in children:
                child_length = min(bits, length + extra)
                host = bits - child_length
                grow((start + offset) >> host << host, child_length, depth - 1)

        for _ in range(draw(st.integers(0, 4))):
            length = draw(st.integers(0, bits))
            host = bits - length
            grow(draw(st.integers(0, 2**bits - 1)) >> host << host, length, 2)
        return found

    return networks()


def _address_text(bits: int, value: int) -> str:
    value %= 2**bits
    return str(ipaddress.IPv4Address(value) if bits == 32 else ipaddress.IPv6Address(value))


@st.composite
def _ip_case(draw: st.DrawFn) -> tuple[list[Indicator], list[str]]:
    indicators: list[Indicator] = []
    queries: list[str] = []
    for bits, most_extra in ((32, 12), (128, 48)):
        for start, length in draw(_nested_networks(bits, most_extra)):
            end = start + 2 ** (bits - length) - 1
            text = f"{_address_text(bits, start)}/{length}"
            indicators.append(_indicator("cidr", text, draw(st.sampled_from(STATES))))
            inside = draw(st.integers(start, end))
            queries += [_address_text(bits, v) for v in (start - 1, start, inside, end, end + 1)]
            if draw(st.booleans()):
                indicators.append(
                    _indicator("ip", _address_text(bits, inside), draw(st.sampled_from(STATES)))
                )
        for value in draw(st.lists(st.integers(0, 2**bits - 1), max_size=5)):
            indicators.append(
                _indicator("ip", _address_text(bits, value), draw(st.sampled_from(STATES)))
            )
            queries += [_address_text(bits, value), _address_text(bits, value + 1)]
    queries += draw(st.lists(st.ip_addresses().map(str), max_size=5))
    queries += draw(
        st.lists(
            st.sampled_from(["", "10.1", "01.2.3.4", "1.2.3.4/24", "::g", " 1.2.3.4"]), max_size=2
        )
    )
    return draw(st.permutations(indicators)), draw(st.permutations(queries))


LABELS = ("a", "b", "evil", "notevil", "xn--bcher-kva", "bücher", "ex-ample", "0")
SUFFIXES = ("example", "com", "xn--p1ai", "evil.example")


@st.composite
def _domain_case(draw: st.DrawFn) -> tuple[list[Indicator], list[str]]:
    def name(most_labels: int) -> str:
        labels = draw(st.lists(st.sampled_from(LABELS), max_size=most_labels))
        return ".".join([*labels, draw(st.sampled_from(SUFFIXES))])

    indicators = [
        _indicator("domain", name(2), draw(st.sampled_from(STATES)))
        for _ in range(draw(st.integers(0, 8)))
    ]
    queries = []
    for _ in range(draw(st.integers(1, 10))):
        query = name(4)
        if draw(st.booleans()):
            query = query.upper()
        if draw(st.booleans()):
            query += "."
        queries.append(query)
    return indicators, queries


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_ip_case())
def test_addresses_match_the_brute_force_longest_prefix(
    case: tuple[list[Indicator], list[str]],
) -> None:
    indicators, queries = case
    index = _index(indicators)
    expected = [_reference_ip(indicators, query) for query in queries]
    assert [index.lookup_ip(query) for query in queries] == expected
    assert index.lookup_ips(queries) == expected
    ipv4_only = [q for q, e in zip(queries, expected, strict=True) if "." in q and ":" not in q]
    assert index.lookup_ips(ipv4_only) == [_reference_ip(indicators, q) for q in ipv4_only]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_domain_case())
def test_domains_match_the_brute_force_most_specific_suffix(
    case: tuple[list[Indicator], list[str]],
) -> None:
    indicators, queries = case
    index = _index(indicators)
    assert [index.lookup_domain(q) for q in queries] == [
        _reference_domain(indicators, q) for q in queries
    ]


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=50))
def test_any_text_is_looked_up_without_an_exception(text: str) -> None:
    index = _index([_indicator("cidr", "0.0.0.0/0"), _indicator("cidr", "::/0")])
    for lookup in (index.lookup_ip, index.lookup_domain):
        assert isinstance(lookup(text), tuple)
    assert index.lookup_ips([text, "1.2.3.4"])[1] == (0,)
    for kind in IndicatorType:
        assert isinstance(index.lookup_value(kind, text), tuple)


# Plain examples.


def test_nested_networks_the_most_specific_wins() -> None:
    index = _index(
        [
            _indicator("cidr", "10.0.0.0/8"),
            _indicator("cidr", "10.1.0.0/16"),
            _indicator("cidr", "10.1.2.0/24"),
            _indicator("ip", "10.1.2.3"),
        ]
    )
    assert index.lookup_ip("10.1.2.3") == (3, 2)  # the exact address first, then the /24
    assert index.lookup_ip("10.1.2.255") == (2,)
    assert index.lookup_ip("10.1.3.0") == (1,)  # the /16 still covers what the /24 does not
    assert index.lookup_ip("10.1.1.255") == (1,)
    assert index.lookup_ip("10.255.255.255") == (0,)
    assert index.lookup_ip("11.0.0.0") == ()
    assert index.lookup_ip("9.255.255.255") == ()
    assert index.match(2, "dst.ip") == CtiMatch(
        field="dst.ip",
        type="cidr",
        value="10.1.2.0/24",
        confidence=60,
        tlp="clear",
        sources=("feed",),
    )


def test_revoked_and_expired_indicators_never_match() -> None:
    index = _index(
        [
            _indicator("cidr", "10.0.0.0/8"),
            _indicator("cidr", "10.1.0.0/16", "revoked"),
            _indicator("ip", "10.1.2.3", "expired"),
            _indicator("ip", "10.1.2.4", "expires_now"),  # valid_until == now: already over
            _indicator("domain", "evil.example", "revoked"),
            _indicator("sha256", "a" * 64, "expired"),
        ]
    )
    assert index.lookup_ip("10.1.2.3") == (0,)
    assert index.lookup_ips(["10.1.2.3", "10.1.2.4"]) == [(0,), (0,)]
    assert index.lookup_domain("evil.example") == ()
    assert index.lookup_value("sha256", "a" * 64) == ()
    assert (len(index), index.excluded, index.invalid, index.rows) == (1, 5, 0, 6)


def test_ipv6_exact_and_networks() -> None:
    index = _index(
        [
            _indicator("cidr", "2001:db8::/32"),
            _indicator("cidr", "2001:db8:1::/48"),
            _indicator("ip", "2001:db8:1::1"),
            _indicator("ip", "10.0.0.1"),
        ]
    )
    assert index.lookup_ip("2001:db8:1::1") == (2, 1)
    assert index.lookup_ip("2001:DB8:1:0::1") == (2, 1)  # any spelling of the address
    assert index.lookup_ip("2001:db8:2::1") == (0,)
    assert index.lookup_ip("2001:db9::") == ()
    assert index.lookup_ip("::ffff:10.0.0.1") == ()  # an IPv6 address, not the IPv4 one
    assert index.lookup_ips(["2001:db8:1::1", "10.0.0.1", "fe80::1"]) == [(2, 1), (3,), ()]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10.1",
        "01.2.3.4",
        "10.0.0.1/32",
        "10.0.0.256",
        " 10.0.0.1",
        "::g",
        "garbage",
        "1.2.3.4\x00",
    ],
)
def test_bad_addresses_match_nothing(text: str) -> None:
    index = _index([_indicator("cidr", "0.0.0.0/0"), _indicator("cidr", "::/0")])
    assert index.lookup_ip(text) == ()
    assert index.lookup_ips([text, "10.0.0.1", text]) == [(), (0,), ()]


def test_values_that_are_not_their_type_are_counted_not_indexed() -> None:
    broken = [
        Indicator(type=IndicatorType.IPV4, value="10.1", confidence=1),
        Indicator(type=IndicatorType.IPV6, value="::g", confidence=1),
        Indicator(type=IndicatorType.CIDR, value="10.0.0.0/33", confidence=1),
        Indicator(type=IndicatorType.CIDR, value="10.0.0.0/x", confidence=1),
        Indicator(type=IndicatorType.CIDR, value="10.0.0.7/24", confidence=1),  # host bits set
        Indicator(type=IndicatorType.IPV4, value="10.0.0.9", confidence=1),
    ]
    index = IndicatorIndex.from_table(indicators_to_table(broken), now=NOW)
    assert index.invalid == 4
    assert index.lookup_ips(["10.0.0.9", "10.0.0.1"]) == [(5, 4), (4,)]


def test_the_first_of_repeated_rows_wins() -> None:
    index = _index(
        [
            _indicator("ip", "10.0.0.1", "revoked"),
            _indicator("ip", "10.0.0.1"),
            _indicator("ip", "10.0.0.1"),
            _indicator("cidr", "10.0.0.0/24"),
            _indicator("cidr", "10.0.0.0/24"),
            _indicator("domain", "evil.example"),
            _indicator("domain", "evil.example"),
        ]
    )
    assert index.lookup_ip("10.0.0.1") == (1, 3)
    assert index.lookup_domain("evil.example") == (5,)
    assert len(index) == 3


def test_the_most_specific_domain_wins_at_label_boundaries() -> None:
    index = _index(
        [
            _indicator("domain", "evil.example"),
            _indicator("domain", "b.evil.example"),
            _indicator("domain", "bücher.example"),
        ]
    )
    assert index.lookup_domain("a.b.evil.example") == (1,)
    assert index.lookup_domain("b.evil.example") == (1,)
    assert index.lookup_domain("c.evil.example") == (0,)
    assert index.lookup_domain("A.EVIL.Example.") == (0,)
    assert index.lookup_domain("notevil.example") == ()
    assert index.lookup_domain("evil.example.com") == ()
    assert index.lookup_domain("example") == ()
    assert index.lookup_domain("www.BÜCHER.example") == (2,)
    assert index.lookup_domain("www.xn--bcher-kva.example") == (2,)
    assert index.lookup_domain("") == ()
    assert index.lookup_value("domain", "x.evil.example") == (0,)


def test_exact_values_are_canonicalized_cheaply() -> None:
    sha256 = "ab" * 32
    index = _index(
        [
            _indicator("url", "http://evil.example/payload.bin"),
            _indicator("sha256", sha256),
            _indicator("md5", "c" * 32),
            _indicator("cve", "CVE-2021-44228"),
            _indicator("ja3", "d" * 32),
            _indicator("ip", "192.0.2.1"),
        ]
    )
    assert index.lookup_value("url", "http://evil.example/payload.bin") == (0,)
    assert index.lookup_value("url", "HTTP://Evil.Example:80/payload.bin#x") == (0,)
    assert index.lookup_value("url", "http://evil.example/other") == ()
    assert index.lookup_value("url", "http://") == ()
    assert index.lookup_value(IndicatorType.SHA256, sha256.upper()) == (1,)
    assert index.lookup_value("md5", "C" * 32) == (2,)
    assert index.lookup_value("sha1", "c" * 40) == ()
    assert index.lookup_value("cve", "cve-2021-44228") == (3,)
    assert index.lookup_value("ja3", "d" * 32) == (4,)
    assert index.lookup_value("ipv4", "192.0.2.1") == (5,)
    with pytest.raises(ValueError):
        index.lookup_value("email", "a@b.example")


def test_a_match_names_every_source() -> None:
    indicator = Indicator(
        type=IndicatorType.DOMAIN,
        value="evil.example",
        confidence=85,
        tlp="amber",
        sources=(Source(feed="feodo", reference="1"), Source(feed="misp")),
    )
    index = _index([indicator])
    assert index.match(0, "details.query") == CtiMatch(
        field="details.query",
        type="domain",
        value="evil.example",
        confidence=85,
        tlp="amber",
        sources=("feodo", "misp"),
    )


def test_an_empty_index_matches_nothing() -> None:
    index = _index([])
    assert len(index) == 0
    assert index.lookup_ip("10.0.0.1") == ()
    assert index.lookup_ips(["10.0.0.1", "::1"]) == [(), ()]
    assert index.lookup_ips([]) == []
    assert index.lookup_domain("evil.example") == ()
    assert index.memory_bytes() > 0


def test_flattening_splits_the_outer_network_around_the_inner_ones() -> None:
    # 0-99 with 10-19 and 30-39 inside, 12-13 inside 10-19, and 200-209 apart.
    starts, ends, rows = flatten_networks(
        [0, 10, 12, 30, 200], [99, 19, 13, 39, 209], [0, 1, 2, 3, 4]
    )
    assert list(zip(starts, ends, rows, strict=True)) == [
        (0, 9, 0),
        (10, 11, 1),
        (12, 13, 2),
        (14, 19, 1),
        (20, 29, 0),
        (30, 39, 3),
        (40, 99, 0),
        (200, 209, 4),
    ]
    with pytest.raises(ValueError):
        flatten_networks([0, 5], [9, 14], [0, 1])


# The process-wide cache.


@pytest.fixture
def empty_cache() -> Iterator[None]:
    clear_index_cache()
    yield
    clear_index_cache()


def _publish(directory: Path, indicators: list[Indicator], when: datetime):
    return write_snapshot(str(directory), indicators_to_table(indicators), now=when)


def test_index_for_shares_one_index_per_version(tmp_path: Path, empty_cache: None) -> None:
    first = _publish(tmp_path, [_lasting("ip", "10.0.0.1")], NOW)
    index = index_for(first)
    assert index_for(first) is index
    assert index.version == first.version
    assert index.lookup_ip("10.0.0.1") == (0,)

    second = _publish(tmp_path, [_lasting("ip", "10.0.0.2")], NOW + timedelta(hours=1))
    newer = index_for(second)
    assert newer is not index
    assert newer.lookup_ip("10.0.0.1") == ()
    assert newer.lookup_ip("10.0.0.2") == (0,)
    assert index.lookup_ip("10.0.0.1") == (0,)  # a caller still holding the old one is unaffected

    third = _publish(tmp_path, [], NOW + timedelta(hours=2))
    index_for(third)
    assert set(index_module._cache) == {(second.path, second.version), (third.path, third.version)}


def test_threads_asking_for_one_version_wait_for_one_build(
    tmp_path: Path, empty_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _publish(tmp_path, [_lasting("ip", "10.0.0.1")], NOW)
    builds = []
    load = IndicatorIndex.load.__func__  # type: ignore[attr-defined]

    def counting_load(cls: type[IndicatorIndex], ref: object, **kwargs: object) -> IndicatorIndex:
        builds.append(ref)
        return load(cls, ref, **kwargs)

    monkeypatch.setattr(IndicatorIndex, "load", classmethod(counting_load))
    found: list[IndicatorIndex] = []
    threads = [threading.Thread(target=lambda: found.append(index_for(ref))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len({id(index) for index in found}) == 1


def test_an_index_pickles_as_its_snapshot_reference(tmp_path: Path, empty_cache: None) -> None:
    ref = _publish(tmp_path, [_lasting("ip", "10.0.0.1")], NOW)
    index = index_for(ref)
    payload = pickle.dumps(index)
    assert len(payload) < 500
    assert pickle.loads(payload) is index
    clear_index_cache()
    rebuilt = pickle.loads(payload)
    assert rebuilt is not index and rebuilt.lookup_ip("10.0.0.1") == (0,)
    with pytest.raises(TypeError, match="SnapshotRef"):
        pickle.dumps(_index([]))
