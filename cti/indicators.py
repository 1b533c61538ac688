"""The indicator model: one canonical form per observable, whatever feed it came from.

Every parser hands its raw values to `make_indicator`, which canonicalizes them
(`canonical_value`) so that the same observable from two feeds is one key
``(type, value)``, and `merge` combines such duplicates: the highest
confidence, every source, the union of tags and techniques, the widest
validity. A value that cannot be canonicalized raises `ValidationError`
naming the field, and the refresh job turns it into a dead letter.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import idna
import msgspec

from schemas.errors import ValidationError

__all__ = [
    "TLP_LEVELS",
    "Indicator",
    "IndicatorType",
    "Source",
    "canonical_domain",
    "canonical_tlp",
    "canonical_url",
    "canonical_value",
    "indicator_type_of",
    "make_indicator",
    "merge",
]


class IndicatorType(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    CIDR = "cidr"
    DOMAIN = "domain"
    URL = "url"
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    CVE = "cve"
    JA3 = "ja3"


# TLP 2.0 names; TLP 1.0 "white" is "clear" in 2.0.
TLP_LEVELS = ("clear", "green", "amber", "amber+strict", "red")
_TLP_ALIASES = {"white": "clear", "tlp:white": "clear"}

_HASH_LENGTHS = {
    IndicatorType.MD5: 32,
    IndicatorType.SHA1: 40,
    IndicatorType.SHA256: 64,
    IndicatorType.JA3: 32,
}
_HEX = re.compile(r"[0-9a-f]+")
_CVE = re.compile(r"CVE-\d{4}-\d{4,}")
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


class Source(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A feed that carries an indicator, and its own reference for it (an id or a link)."""

    feed: str
    reference: str | None = None


class Indicator(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One observable that threat intelligence calls malicious, in canonical form."""

    type: IndicatorType
    value: str
    confidence: Annotated[int, msgspec.Meta(ge=0, le=100)]
    tlp: str = "clear"
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    revoked: bool = False
    sources: tuple[Source, ...] = ()
    tags: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.type.value, self.value)


def _is_dotted_quad(text: str) -> bool:
    """Whether ``text`` is an IPv4 address already in canonical form (``inet_pton`` accepts
    exactly the dotted quads without leading zeros that ``ipaddress`` prints)."""
    try:
        socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):
        return False
    return True


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValidationError(f"not an IP address: {text!r}", field="value") from None


def canonical_domain(text: str) -> str:
    """Lower case, no trailing dot, internationalized labels in their ``xn--`` form.

    Raises:
        ValidationError: On a value that is not a host name.
    """
    name = text.strip().rstrip(".").lower()
    if name.startswith("*."):  # a wildcard in a feed means the domain and everything under it
        name = name[2:]
    if not name or " " in name or "/" in name or ".." in name:
        raise ValidationError(f"not a domain name: {text!r}", field="value")
    try:
        name = name.encode("ascii").decode() if name.isascii() else idna.encode(name).decode()
    except (idna.IDNAError, UnicodeError) as error:
        raise ValidationError(f"not a domain name: {text!r} ({error})", field="value") from None
    # Letters, digits, '-' and the '_' real DNS names use; no port, '@', ':' or '?' slips in.
    if not all(_LABEL.fullmatch(label) for label in name.split(".")) or len(name) > 253:
        raise ValidationError(f"not a domain name: {text!r}", field="value")
    return name


def canonical_url(text: str) -> str:
    """Scheme and host in lower case, default port and fragment dropped, path kept as given.

    Raises:
        ValidationError: On a value without a scheme and a host.
    """
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw  # URLhaus and many lists give some URLs without a scheme
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as error:
        raise ValidationError(f"not a URL: {text!r} ({error})", field="value") from None
    if not parts.scheme or not parts.hostname:
        raise ValidationError(f"not a URL: {text!r}", field="value")
    scheme = parts.scheme.lower()
    host = parts.hostname
    try:
        address = ipaddress.ip_address(host)
        host = f"[{address.compressed}]" if address.version == 6 else address.compressed
    except ValueError:
        host = canonical_domain(host)
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def canonical_value(kind: IndicatorType, text: str) -> tuple[IndicatorType, str]:
    """The canonical ``(type, value)`` of a raw value a feed calls ``kind``.

    For addresses the value decides: an address typed as a CIDR with a full-length
    prefix becomes an address, an ``ipv4`` value with a prefix becomes a CIDR, and
    the family follows the value (feeds' ``ip-dst`` and ``ip`` carry either).

    Raises:
        ValidationError: On a value that is not of its type.
    """
    value = text.strip()
    if not value:
        raise ValidationError(f"empty {kind.value} value", field="value")
    if kind in (IndicatorType.IPV4, IndicatorType.IPV6, IndicatorType.CIDR):
        if "/" not in value:
            if _is_dotted_quad(value):  # the common case, ten times cheaper than ipaddress
                return IndicatorType.IPV4, value
            address = _ip(value)
            found = IndicatorType.IPV4 if address.version == 4 else IndicatorType.IPV6
            return found, address.compressed
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValidationError(f"not a CIDR network: {text!r}", field="value") from None
        if network.prefixlen == network.max_prefixlen:
            address = network.network_address
            return (
                IndicatorType.IPV4 if address.version == 4 else IndicatorType.IPV6
            ), address.compressed
        return IndicatorType.CIDR, network.compressed
    if kind is IndicatorType.DOMAIN:
        return kind, canonical_domain(value)
    if kind is IndicatorType.URL:
        return kind, canonical_url(value)
    if kind in _HASH_LENGTHS:
        digest = value.lower()
        if len(digest) != _HASH_LENGTHS[kind] or not _HEX.fullmatch(digest):
            raise ValidationError(
                f"not an {kind.value} digest ({_HASH_LENGTHS[kind]} hex digits): {text!r}",
                field="value",
            )
        return kind, digest
    if kind is IndicatorType.CVE:
        cve = value.upper()
        if not _CVE.fullmatch(cve):
            raise ValidationError(f"not a CVE id: {text!r}", field="value")
        return kind, cve
    raise ValidationError(f"unsupported indicator type {kind!r}", field="type")


def indicator_type_of(name: str) -> IndicatorType:
    """The `IndicatorType` a feed's type name means (``ip-dst``, ``sha-256``, ``ipv4-addr``...).

    Raises:
        ValidationError: On a name otsec does not index.
    """
    key = name.strip().lower().replace("_", "-")
    found = _TYPE_NAMES.get(key)
    if found is None:
        raise ValidationError(f"indicator type {name!r} is not indexed", field="type")
    return found


_TYPE_NAMES: dict[str, IndicatorType] = {
    **{t.value: t for t in IndicatorType},
    "ip": IndicatorType.IPV4,  # canonical_value corrects the family from the value
    "ipv4-addr": IndicatorType.IPV4,
    "ipv6-addr": IndicatorType.IPV6,
    "ip-src": IndicatorType.IPV4,
    "ip-dst": IndicatorType.IPV4,
    "ip-address": IndicatorType.IPV4,
    "network": IndicatorType.CIDR,
    "domain-name": IndicatorType.DOMAIN,
    "hostname": IndicatorType.DOMAIN,
    "fqdn": IndicatorType.DOMAIN,
    "uri": IndicatorType.URL,
    "link": IndicatorType.URL,
    "sha-1": IndicatorType.SHA1,
    "sha-256": IndicatorType.SHA256,
    "ja3-fingerprint-md5": IndicatorType.JA3,
    "vulnerability": IndicatorType.CVE,
}


def canonical_tlp(text: str | None, default: str = "clear") -> str:
    """A TLP 2.0 level name from ``TLP:AMBER``, ``white``, ``amber+strict``...

    Raises:
        ValidationError: On an unknown level.
    """
    if text is None or not text.strip():
        return default
    level = text.strip().lower()
    level = _TLP_ALIASES.get(level, level).removeprefix("tlp:")
    level = _TLP_ALIASES.get(level, level)
    if level not in TLP_LEVELS:
        raise ValidationError(f"unknown TLP level {text!r}", field="tlp")
    return level


def make_indicator(
    kind: IndicatorType | str,
    value: str,
    *,
    confidence: int,
    feed: str,
    reference: str | None = None,
    tlp: str | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    revoked: bool = False,
    tags: tuple[str, ...] | list[str] = (),
    techniques: tuple[str, ...] | list[str] = (),
) -> Indicator:
    """One canonical indicator from a feed's raw fields.

    Raises:
        ValidationError: On a value, confidence or TLP that cannot be canonicalized.
    """
    if isinstance(kind, str) and not isinstance(kind, IndicatorType):
        kind = indicator_type_of(kind)
    found, canonical = canonical_value(kind, value)
    if not 0 <= confidence <= 100:
        raise ValidationError(f"confidence {confidence} is outside 0-100", field="confidence")
    if valid_from is not None and valid_until is not None and valid_until < valid_from:
        raise ValidationError(
            f"valid_until {valid_until.isoformat()} is before valid_from {valid_from.isoformat()}",
            field="valid_until",
        )
    return Indicator(
        type=found,
        value=canonical,
        confidence=int(confidence),
        tlp=canonical_tlp(tlp),
        valid_from=valid_from,
        valid_until=valid_until,
        revoked=revoked,
        sources=(Source(feed=feed, reference=reference),),
        tags=tuple(sorted(set(tags))),
        techniques=tuple(sorted(set(techniques))),
    )


def _stricter_tlp(a: str, b: str) -> str:
    return a if TLP_LEVELS.index(a) >= TLP_LEVELS.index(b) else b


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return None if a is None or b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return None if a is None or b is None else max(a, b)


def merge(a: Indicator, b: Indicator) -> Indicator:
    """Two reports of one observable as one: highest confidence, all sources, widest validity.

    The stricter TLP wins (sharing must respect every source); the indicator is
    revoked only when every report revokes it.
    """
    if a.key != b.key:
        raise ValueError(f"cannot merge {a.key} with {b.key}")
    sources = tuple(dict.fromkeys(a.sources + b.sources))
    return Indicator(
        type=a.type,
        value=a.value,
        confidence=max(a.confidence, b.confidence),
        tlp=_stricter_tlp(a.tlp, b.tlp),
        valid_from=_earliest(a.valid_from, b.valid_from),
        valid_until=_latest(a.valid_until, b.valid_until),
        revoked=a.revoked and b.revoked,
        sources=sources,
        tags=tuple(sorted(set(a.tags) | set(b.tags))),
        techniques=tuple(sorted(set(a.techniques) | set(b.techniques))),
    )
