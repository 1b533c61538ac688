"""MISP feeds: ``manifest.json`` lists the events, ``<uuid>.json`` holds each one.

Every attribute of an event (``Event.Attribute`` and ``Event.Object[].Attribute``)
is an entry. Only attributes flagged ``to_ids`` are meant for detection, so the
others are skipped, as are deleted ones and types otsec does not index
(filenames, registry keys, free text). TLP comes from ``tlp:`` tags of the event
and the attribute (the strictest wins), ATT&CK technique ids from MITRE galaxy
tags (``misp-galaxy:mitre-ics-techniques="... - T0855"``), the other tags are
kept as tags, and the attribute's UUID is the reference.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from functools import partial

import msgspec

from cti.indicators import TLP_LEVELS, Indicator, IndicatorType, canonical_tlp, make_indicator
from cti.parsers._common import TECHNIQUE_ID, Collector, parse_time
from schemas.errors import ValidationError
from schemas.records import SourcePosition

__all__ = ["MISP_TYPES", "manifest_events", "parse_misp_event"]

_Part = tuple[int, IndicatorType]  # which part of a "a|b" value, and its type

# MISP attribute type -> the parts of its value that are indicators.
MISP_TYPES: dict[str, tuple[_Part, ...]] = {
    "ip-src": ((0, IndicatorType.IPV4),),
    "ip-dst": ((0, IndicatorType.IPV4),),
    "ip-src|port": ((0, IndicatorType.IPV4),),
    "ip-dst|port": ((0, IndicatorType.IPV4),),
    "domain": ((0, IndicatorType.DOMAIN),),
    "hostname": ((0, IndicatorType.DOMAIN),),
    "hostname|port": ((0, IndicatorType.DOMAIN),),
    "domain|ip": ((0, IndicatorType.DOMAIN), (1, IndicatorType.IPV4)),
    "url": ((0, IndicatorType.URL),),
    "uri": ((0, IndicatorType.URL),),  # only when absolute; a bare path is skipped
    "md5": ((0, IndicatorType.MD5),),
    "sha1": ((0, IndicatorType.SHA1),),
    "sha256": ((0, IndicatorType.SHA256),),
    "filename|md5": ((1, IndicatorType.MD5),),
    "filename|sha1": ((1, IndicatorType.SHA1),),
    "filename|sha256": ((1, IndicatorType.SHA256),),
    "vulnerability": ((0, IndicatorType.CVE),),
    "ja3-fingerprint-md5": ((0, IndicatorType.JA3),),
}


class _Tag(msgspec.Struct):
    name: str


class _Cluster(msgspec.Struct):
    tag_name: str | None = None


class _Galaxy(msgspec.Struct):
    GalaxyCluster: list[_Cluster] = []


class _Attribute(msgspec.Struct, kw_only=True):
    type: str
    value: str
    uuid: str | None = None
    to_ids: bool | int | str = False
    deleted: bool | int | str = False
    timestamp: str | int | None = None
    first_seen: str | None = None
    Tag: list[_Tag] = []
    Galaxy: list[_Galaxy] = []


class _Object(msgspec.Struct):
    Attribute: list[msgspec.Raw] = []
    deleted: bool | int | str = False


class _Event(msgspec.Struct, kw_only=True):
    uuid: str | None = None
    Attribute: list[msgspec.Raw] = []
    Object: list[_Object] = []
    Tag: list[_Tag] = []
    Galaxy: list[_Galaxy] = []


class _EventFile(msgspec.Struct):
    Event: _Event


def manifest_events(body: bytes, uri: str) -> list[str]:
    """The event UUIDs a feed's ``manifest.json`` lists, in its order.

    Raises:
        ValidationError: When the manifest is not a JSON object of event UUIDs
            (a key that is not a UUID could name any file).
    """
    try:
        manifest = msgspec.json.decode(body, type=dict[str, dict[str, object]])
    except msgspec.ValidationError as error:
        raise ValidationError(f"{uri} is not a MISP feed manifest: {error}", source=uri) from None
    except msgspec.DecodeError as error:
        raise ValidationError(f"{uri} is not valid JSON: {error}", source=uri) from None
    events: list[str] = []
    for key in manifest:
        try:
            events.append(str(uuid.UUID(key)))
        except ValueError:
            raise ValidationError(
                f"{uri}: manifest key {key!r} is not an event UUID", field="manifest", source=uri
            ) from None
    return events


def _truthy(value: bool | int | str) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def parse_misp_event(body: bytes, uri: str, collector: Collector) -> None:
    """Parse one event file into ``collector``; attributes are positioned by their ordinal.

    Raises:
        ValidationError: When the document is not JSON or not ``{"Event": {...}}``.
    """
    try:
        event = msgspec.json.decode(body, type=_EventFile).Event
    except msgspec.ValidationError as error:
        raise ValidationError(f"{uri} is not a MISP event: {error}", source=uri) from None
    except msgspec.DecodeError as error:
        raise ValidationError(f"{uri} is not valid JSON: {error}", source=uri) from None
    event_tags = [tag.name for tag in event.Tag] + _cluster_tags(event.Galaxy)
    attributes = [(raw, False) for raw in event.Attribute] + [
        (raw, _truthy(obj.deleted)) for obj in event.Object for raw in obj.Attribute
    ]
    for ordinal, (raw, in_deleted_object) in enumerate(attributes):
        payload = bytes(raw)
        source = SourcePosition(uri=uri, line=ordinal)
        if in_deleted_object:
            collector.skip()
            continue
        collector.entry(payload, source, partial(_attribute, payload, event_tags, collector))


def _cluster_tags(galaxies: Iterable[_Galaxy]) -> list[str]:
    return [c.tag_name for g in galaxies for c in g.GalaxyCluster if c.tag_name]


def _attribute(
    payload: bytes, event_tags: list[str], collector: Collector
) -> list[Indicator] | None:
    try:
        attribute = msgspec.json.decode(payload, type=_Attribute)
    except msgspec.MsgspecError as error:
        raise ValidationError(f"malformed MISP attribute: {error}", field="value") from None
    parts = MISP_TYPES.get(attribute.type)
    if not _truthy(attribute.to_ids) or _truthy(attribute.deleted) or parts is None:
        return None
    if attribute.type == "uri" and "://" not in attribute.value:
        return None  # a path without a host says nothing otsec can match
    names = event_tags + [tag.name for tag in attribute.Tag] + _cluster_tags(attribute.Galaxy)
    context = collector.context
    tlp = _tlp(names, context.tlp)
    techniques = sorted(
        {t for name in names if "mitre" in name.lower() for t in TECHNIQUE_ID.findall(name)}
    )
    tags = sorted({name for name in names if not name.lower().startswith("tlp:")})
    valid_from = parse_time(attribute.first_seen, "first_seen") or parse_time(
        attribute.timestamp, "timestamp"
    )
    values = _split(attribute, parts)
    return [
        make_indicator(
            kind,
            value,
            confidence=context.confidence,
            feed=context.feed,
            reference=attribute.uuid,
            tlp=tlp,
            valid_from=valid_from,
            tags=tags,
            techniques=techniques,
        )
        for kind, value in values
    ]


def _split(attribute: _Attribute, parts: tuple[_Part, ...]) -> list[tuple[IndicatorType, str]]:
    if "|" not in attribute.type:
        return [(parts[0][1], attribute.value)]
    pieces = attribute.value.split("|")
    if len(pieces) != 2:
        raise ValidationError(
            f"a {attribute.type} value needs two parts separated by '|', got {attribute.value!r}",
            field="value",
        )
    return [(kind, pieces[index]) for index, kind in parts]


def _tlp(tags: Iterable[str], default: str) -> str:
    levels = [canonical_tlp(tag) for tag in tags if tag.lower().startswith("tlp:")]
    return max(levels, key=TLP_LEVELS.index) if levels else default
