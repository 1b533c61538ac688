"""CISA Known Exploited Vulnerabilities: one CVE indicator per catalog entry.

A KEV entry says a vulnerability is exploited in the wild; in otsec it marks
events and assets that name the CVE. Vendor, product, known ransomware use and
CWEs become tags, the date CISA added it is ``valid_from``, and the CVE id is
the reference (the catalog has no other id). The catalog is always complete.
"""

from __future__ import annotations

from functools import partial

import msgspec

from cti.indicators import Indicator, IndicatorType, make_indicator
from cti.parsers._common import Collector, parse_time
from schemas.errors import ValidationError
from schemas.records import SourcePosition

__all__ = ["parse_kev"]


class _Catalog(msgspec.Struct):
    vulnerabilities: list[msgspec.Raw]
    catalogVersion: str | None = None


class _Entry(msgspec.Struct, kw_only=True):
    cveID: str
    vendorProject: str | None = None
    product: str | None = None
    dateAdded: str | None = None
    knownRansomwareCampaignUse: str | None = None
    cwes: list[str] = []


def parse_kev(body: bytes, uri: str, collector: Collector) -> None:
    """Parse a KEV catalog into ``collector``; entries are positioned by their index.

    Raises:
        ValidationError: When the document is not JSON or has no ``vulnerabilities`` list.
    """
    try:
        catalog = msgspec.json.decode(body, type=_Catalog)
    except msgspec.ValidationError as error:
        raise ValidationError(
            f"{uri} is not a KEV catalog: {error}", field="vulnerabilities", source=uri
        ) from None
    except msgspec.DecodeError as error:
        raise ValidationError(f"{uri} is not valid JSON: {error}", source=uri) from None
    for index, raw in enumerate(catalog.vulnerabilities):
        payload = bytes(raw)
        source = SourcePosition(uri=uri, line=index)
        collector.entry(payload, source, partial(_entry, payload, collector))


def _entry(payload: bytes, collector: Collector) -> list[Indicator]:
    try:
        entry = msgspec.json.decode(payload, type=_Entry)
    except msgspec.MsgspecError as error:
        raise ValidationError(f"malformed KEV entry: {error}", field="cveID") from None
    tags = [cwe.strip() for cwe in entry.cwes]
    if entry.vendorProject:
        tags.append(f"vendor:{entry.vendorProject.strip()}")
    if entry.product:
        tags.append(f"product:{entry.product.strip()}")
    if (entry.knownRansomwareCampaignUse or "").strip().lower() == "known":
        tags.append("ransomware:known")
    context = collector.context
    return [
        make_indicator(
            IndicatorType.CVE,
            entry.cveID,
            confidence=context.confidence,
            feed=context.feed,
            reference=entry.cveID.strip().upper(),
            tlp=context.tlp,
            valid_from=parse_time(entry.dateAdded, "dateAdded"),
            tags=[tag for tag in tags if tag],
        )
    ]
