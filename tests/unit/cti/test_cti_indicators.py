"""The indicator model: one canonical form per observable, and how two reports of it merge."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.indicators import (
    Indicator,
    IndicatorType,
    Source,
    canonical_domain,
    canonical_tlp,
    canonical_url,
    canonical_value,
    indicator_type_of,
    make_indicator,
    merge,
)
from schemas.errors import ValidationError

T = IndicatorType


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("Evil.Example", "evil.example"),
        ("evil.example.", "evil.example"),  # the root's trailing dot
        ("*.evil.example", "evil.example"),  # a wildcard means the domain and below
        ("Bücher.example", "xn--bcher-kva.example"),  # IDNA
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("_dmarc.evil.example", "_dmarc.evil.example"),
        (" münchen.de ", "xn--mnchen-3ya.de"),
    ],
)
def test_domains(text: str, canonical: str) -> None:
    assert canonical_domain(text) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        "a..b",
        "evil example",
        "evil.example/x",
        "evil.example:8080",  # a port is not part of a name
        "a@evil.example",
        "x" * 64 + ".example",  # labels are at most 63 characters
        "☃\u200d.example",  # not valid IDNA
    ],
)
def test_not_domains(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        canonical_domain(text)
    assert caught.value.field == "value"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("HTTP://Evil.Example:80/Path?q=1#frag", "http://evil.example/Path?q=1"),
        ("https://evil.example:443", "https://evil.example/"),
        ("https://evil.example:8443/a", "https://evil.example:8443/a"),
        ("evil.example/gate.php", "http://evil.example/gate.php"),  # no scheme, as URLhaus writes
        ("http://[2001:DB8:0::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("http://Bücher.example./x", "http://xn--bcher-kva.example/x"),
        ("ftp://files.example:21/a", "ftp://files.example/a"),
    ],
)
def test_urls(text: str, canonical: str) -> None:
    assert canonical_url(text) == canonical


@pytest.mark.parametrize("text", ["http://", "http://evil.example:99999/", "http://ev!l.example/"])
def test_not_urls(text: str) -> None:
    with pytest.raises(ValidationError):
        canonical_url(text)


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        (T.IPV4, "198.51.100.7", (T.IPV4, "198.51.100.7")),
        (T.IPV4, "2001:0db8:0000::0001", (T.IPV6, "2001:db8::1")),  # the family follows the value
        (T.IPV6, "2001:DB8::1", (T.IPV6, "2001:db8::1")),
        (T.IPV4, "10.1.2.3/8", (T.CIDR, "10.0.0.0/8")),  # host bits dropped
        (T.CIDR, "198.51.100.7/32", (T.IPV4, "198.51.100.7")),  # a full prefix is an address
        (T.CIDR, "2001:db8::/32", (T.CIDR, "2001:db8::/32")),
        (T.MD5, " D41D8CD98F00B204E9800998ECF8427E ", (T.MD5, "d41d8cd98f00b204e9800998ecf8427e")),
        (T.SHA1, "A" * 40, (T.SHA1, "a" * 40)),
        (T.SHA256, "F" * 64, (T.SHA256, "f" * 64)),
        (T.JA3, "E7D705A3286E19EA42F587B344EE6865", (T.JA3, "e7d705a3286e19ea42f587b344ee6865")),
        (T.CVE, "cve-2023-6448", (T.CVE, "CVE-2023-6448")),
        (T.CVE, "CVE-2021-123456", (T.CVE, "CVE-2021-123456")),
    ],
)
def test_values(kind: IndicatorType, text: str, expected: tuple[IndicatorType, str]) -> None:
    assert canonical_value(kind, text) == expected


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (T.IPV4, "999.1.1.1"),
        (T.IPV4, ""),
        (T.CIDR, "10.0.0.0/33"),
        (T.MD5, "a" * 31),
        (T.SHA256, "g" * 64),
        (T.CVE, "CVE-24-1"),
    ],
)
def test_bad_values(kind: IndicatorType, text: str) -> None:
    with pytest.raises(ValidationError):
        canonical_value(kind, text)


def test_type_names() -> None:
    assert indicator_type_of("ip-dst") is T.IPV4
    assert indicator_type_of("SHA-256") is T.SHA256
    assert indicator_type_of("domain_name") is T.DOMAIN
    assert indicator_type_of("ja3-fingerprint-md5") is T.JA3
    with pytest.raises(ValidationError, match="not indexed"):
        indicator_type_of("mutex")


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("TLP:WHITE", "clear"),
        ("white", "clear"),
        ("tlp:clear", "clear"),
        ("GREEN", "green"),
        ("TLP:AMBER+STRICT", "amber+strict"),
        ("tlp:red", "red"),
        (None, "clear"),
        ("", "clear"),
    ],
)
def test_tlp_aliases(text: str | None, level: str) -> None:
    assert canonical_tlp(text) == level


def test_unknown_tlp() -> None:
    with pytest.raises(ValidationError, match="unknown TLP level") as caught:
        canonical_tlp("tlp:purple")
    assert caught.value.field == "tlp"
    assert canonical_tlp(None, default="amber") == "amber"


def test_make_indicator() -> None:
    indicator = make_indicator(
        "ip-dst",
        "2001:0db8::0001",
        confidence=70,
        feed="f",
        reference="r",
        tlp="TLP:WHITE",
        tags=["b", "a", "b"],
        techniques=("T0855", "T0855"),
    )
    assert indicator == Indicator(
        type=T.IPV6,
        value="2001:db8::1",
        confidence=70,
        tlp="clear",
        sources=(Source(feed="f", reference="r"),),
        tags=("a", "b"),
        techniques=("T0855",),
    )
    with pytest.raises(ValidationError, match="outside 0-100"):
        make_indicator(T.IPV4, "198.51.100.1", confidence=101, feed="f")
    with pytest.raises(ValidationError, match="before valid_from") as caught:
        make_indicator(
            T.IPV4,
            "198.51.100.1",
            confidence=1,
            feed="f",
            valid_from=datetime(2024, 2, 1, tzinfo=UTC),
            valid_until=datetime(2024, 1, 1, tzinfo=UTC),
        )
    assert caught.value.field == "valid_until"


JAN, FEB, MAR = (datetime(2024, m, 1, tzinfo=UTC) for m in (1, 2, 3))


def report(feed: str, **fields: object) -> Indicator:
    settings: dict[str, object] = {"confidence": 50, "feed": feed, "reference": f"{feed}-ref"}
    settings.update(fields)
    return make_indicator(T.DOMAIN, "evil.example", **settings)  # type: ignore[arg-type]


def test_merge_semantics() -> None:
    a = report("a", confidence=40, tlp="amber", valid_from=FEB, valid_until=FEB, tags=["x"])
    b = report("b", confidence=90, tlp="green", valid_from=JAN, valid_until=MAR, revoked=True)
    merged = merge(a, b)
    assert merged.confidence == 90  # the highest
    assert merged.tlp == "amber"  # the stricter: sharing must respect every source
    assert (merged.valid_from, merged.valid_until) == (JAN, MAR)  # the widest validity
    assert merged.revoked is False  # revoked only when every report revokes it
    assert merged.sources == (
        Source(feed="a", reference="a-ref"),
        Source(feed="b", reference="b-ref"),
    )
    assert merged.tags == ("x",)
    assert merge(report("a", valid_from=JAN), report("b")).valid_from is None  # unbounded wins
    assert merge(report("a", revoked=True), report("b", revoked=True)).revoked
    with pytest.raises(ValueError, match="cannot merge"):
        merge(a, make_indicator(T.DOMAIN, "other.example", confidence=1, feed="a"))


REPORTS = st.builds(
    report,
    st.sampled_from(["a", "b", "c"]),
    confidence=st.integers(0, 100),
    tlp=st.sampled_from(["clear", "green", "amber", "amber+strict", "red"]),
    valid_from=st.sampled_from([None, JAN, FEB]),
    revoked=st.booleans(),
    tags=st.lists(st.sampled_from(["x", "y", "z"]), max_size=3),
    techniques=st.lists(st.sampled_from(["T0855", "T0836"]), max_size=2),
)


def _unordered(indicator: Indicator) -> tuple[object, ...]:
    return (indicator.key, indicator.confidence, indicator.tlp, indicator.valid_from,
            indicator.valid_until, indicator.revoked, frozenset(indicator.sources),
            indicator.tags, indicator.techniques)  # fmt: skip


@given(REPORTS, REPORTS, REPORTS)
def test_merge_is_commutative_associative_and_idempotent(
    a: Indicator, b: Indicator, c: Indicator
) -> None:
    assert _unordered(merge(a, b)) == _unordered(merge(b, a))
    assert _unordered(merge(merge(a, b), c)) == _unordered(merge(a, merge(b, c)))
    assert merge(a, a) == a


@given(st.ip_addresses())
def test_addresses_are_canonical_once(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    kind, value = canonical_value(T.IPV4, address.exploded.upper())
    assert canonical_value(kind, value) == (kind, value)
    assert ipaddress.ip_address(value) == address


@given(st.ip_addresses(v=4), st.integers(0, 32))
def test_networks_lose_host_bits(address: ipaddress.IPv4Address, prefix: int) -> None:
    kind, value = canonical_value(T.CIDR, f"{address}/{prefix}")
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    expected = str(network.network_address) if prefix == 32 else str(network)
    assert value == expected and canonical_value(kind, value) == (kind, value)


LABELS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüß0123456789-", min_size=1, max_size=20)


@given(st.lists(LABELS, min_size=2, max_size=4))
def test_domains_are_canonical_once(labels: list[str]) -> None:
    text = ".".join(labels).upper() + "."
    try:
        name = canonical_domain(text)
    except ValidationError:
        return  # not every string of letters is a valid IDNA label
    assert canonical_domain(name) == name and name.isascii() and name == name.lower()
    assert canonical_url(f"HTTP://{text}:80/p#f") == f"http://{name}/p"
