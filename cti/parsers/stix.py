"""STIX 2.1: indicators from bundles (files, URLs) and TAXII pages.

A STIX indicator is a *pattern*, not an observable. otsec matches observables,
so a pattern is indexed only when it reduces soundly to "each of these
observables is bad": an observation that holds for one observable whatever else
is seen. `reduce_pattern` decides that on the parse tree of the pattern
(`stix2patterns`, the OASIS grammar):

* ``=`` and ``IN`` on ``ipv4-addr:value``, ``ipv6-addr:value``, ``domain-name:value``,
  ``url:value``, ``file:hashes.MD5/SHA-1/SHA-256`` (any spelling) and on
  ``network-traffic:src_ref.value``/``dst_ref.value`` when the value is an address
  (or its ``*_ref.type`` says ``domain-name``) give one observable per value;
  ``ISSUBSET`` on an address gives a CIDR.
* ``OR`` (within or between observations) gives the observables of every branch
  that reduces: seeing any of them satisfies the pattern.
* ``AND`` within a ``file`` observation gives its hash equalities: a content hash
  identifies the file whatever else (name, size) is said about it. Any other
  ``AND``, between observations or within one, needs more than one thing seen.
* ``!=``, ``NOT``, ``<``/``>``, ``LIKE``, ``MATCHES``, ``ISSUPERSET``, ``EXISTS``,
  ``FOLLOWEDBY`` and the ``WITHIN``/``START``/``REPEATS`` qualifiers describe
  behaviour, not a bad observable: such patterns are counted as skipped.

Each indicator keeps its STIX id as reference, its confidence, TLP (the standard
TLP 1.0 and 2.0 marking definitions, or TLP markings defined in the feed),
validity and revocation, its labels and types as tags, and ATT&CK technique ids
from its own references and from ``indicates`` relationships to attack patterns
anywhere in the same feed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import msgspec
from stix2patterns.exceptions import ParseException
from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser as P
from stix2patterns.v21.grammars.STIXPatternVisitor import STIXPatternVisitor
from stix2patterns.v21.pattern import Pattern

from cti.indicators import TLP_LEVELS, Indicator, IndicatorType, canonical_tlp, make_indicator
from cti.parsers._common import TECHNIQUE_ID, Collector, ParseContext
from schemas.errors import ValidationError
from schemas.records import SourcePosition

__all__ = [
    "TLP_MARKING_DEFINITIONS",
    "StixDocument",
    "decode_bundle",
    "parse_stix",
    "reduce_pattern",
]

Observable = tuple[IndicatorType, str]

# The standard TLP marking definitions: TLP 1.0 from the STIX 2.1 specification
# (section 7.2.1.4), TLP 2.0 from OASIS cti-stix-common-objects.
TLP_MARKING_DEFINITIONS: dict[str, str] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "clear",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "red",
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": "clear",
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": "green",
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": "amber",
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": "amber+strict",
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": "red",
}
_MITRE_SOURCES = frozenset({"mitre-attack", "mitre-ics-attack", "mitre-mobile-attack"})
# Objects an indicator can `indicate` whose name is worth a tag ("malware:Poison Ivy").
_NAMED_TARGETS = frozenset({"malware", "tool", "intrusion-set", "threat-actor", "campaign"})

# -- pattern reduction ---------------------------------------------------------------------

_VALUE_KINDS = {
    "ipv4-addr": IndicatorType.IPV4,
    "ipv6-addr": IndicatorType.IPV6,
    "domain-name": IndicatorType.DOMAIN,
    "url": IndicatorType.URL,
}
_HASH_KINDS = {"MD5": IndicatorType.MD5, "SHA1": IndicatorType.SHA1, "SHA256": IndicatorType.SHA256}
_HASHES = frozenset(_HASH_KINDS.values())
_REF_TYPES = {
    "ipv4-addr": IndicatorType.IPV4,
    "ipv6-addr": IndicatorType.IPV6,
    "domain-name": IndicatorType.DOMAIN,
}
_ADDRESS_KINDS = frozenset({IndicatorType.IPV4, IndicatorType.IPV6})
_REDUCING_OPS = frozenset({"=", "IN", "ISSUBSET"})
_ESCAPE = re.compile(r"\\(['\\])")


@dataclass(frozen=True)
class _Test:
    """One comparison: ``object_type:path op values`` (values None for non-string literals)."""

    object_type: str
    path: tuple[str | int, ...]
    op: str
    negated: bool
    values: tuple[str | None, ...]


class _Tree(STIXPatternVisitor):  # type: ignore[misc]
    def visitPattern(self, ctx: Any) -> Any:
        return ctx


def reduce_pattern(pattern: str) -> list[Observable] | None:
    """The observables a STIX pattern calls bad, or None when it does not reduce to any.

    The values are raw (as written in the pattern); `make_indicator` canonicalizes them.

    Raises:
        ValidationError: When the pattern does not parse, or compares an indexed
            property with something that is not a string.
    """
    try:
        tree = Pattern(pattern).visit(_Tree())
    except ParseException as error:
        raise ValidationError(f"STIX pattern does not parse: {error}", field="pattern") from None
    found = _observation(tree.observationExpressions())
    return None if not found else sorted(found)


def _union(parts: Iterable[frozenset[Observable] | None]) -> frozenset[Observable] | None:
    reduced = [part for part in parts if part]
    return frozenset().union(*reduced) if reduced else None


def _observation(ctx: Any) -> frozenset[Observable] | None:
    if isinstance(ctx, P.ObservationExpressionsContext):
        if ctx.FOLLOWEDBY() is not None:
            return None
        return _observation(ctx.observationExpressionOr())
    if isinstance(ctx, P.ObservationExpressionOrContext):
        if ctx.OR() is not None:
            return _union(_observation(c) for c in ctx.observationExpressionOr())
        return _observation(ctx.observationExpressionAnd())
    if isinstance(ctx, P.ObservationExpressionAndContext):
        if ctx.AND() is not None:
            return None  # two observations must both be seen
        return _observation(ctx.observationExpression())
    if isinstance(ctx, P.ObservationExpressionSimpleContext):
        return _comparison(ctx.comparisonExpression())
    if isinstance(ctx, P.ObservationExpressionCompoundContext):
        return _observation(ctx.observationExpressions())
    return None  # WITHIN, START ... STOP, REPEATS: conditions on time and count


def _comparison(ctx: Any) -> frozenset[Observable] | None:
    if isinstance(ctx, P.ComparisonExpressionContext):
        if ctx.OR() is not None:
            return _union(_comparison(c) for c in ctx.comparisonExpression())
        return _comparison(ctx.comparisonExpressionAnd())
    if isinstance(ctx, P.ComparisonExpressionAndContext):
        if ctx.AND() is not None:
            return _conjunction(list(_conjuncts(ctx)))
        return _comparison(ctx.propTest())
    if isinstance(ctx, P.PropTestParenContext):
        return _comparison(ctx.comparisonExpression())
    return _observables(_test(ctx))


def _conjuncts(ctx: Any) -> Iterable[Any]:
    if isinstance(ctx, P.ComparisonExpressionAndContext):
        if ctx.AND() is not None:
            for child in ctx.comparisonExpressionAnd():
                yield from _conjuncts(child)
        else:
            yield ctx.propTest()
    else:
        yield ctx


def _conjunction(items: list[Any]) -> frozenset[Observable] | None:
    if any(isinstance(item, P.PropTestParenContext) for item in items):
        return None
    tests = [_test(item) for item in items]
    if all(test.object_type == "file" for test in tests):
        return _file_conjunction(tests)
    if all(test.object_type == "network-traffic" for test in tests):
        return _traffic_conjunction(tests)
    return None


def _file_conjunction(tests: list[_Test]) -> frozenset[Observable] | None:
    """Hash equalities identify the file's content; its other properties only describe it."""
    equal: dict[IndicatorType, str] = {}
    listed: list[frozenset[Observable]] = []
    for test in tests:
        found = _observables(test)
        if found is None or not all(kind in _HASHES for kind, _ in found):
            continue
        if test.op == "=":
            ((kind, value),) = found
            if equal.setdefault(kind, value.lower()) != value.lower():
                return None  # two different digests of one algorithm: no file matches
        else:
            listed.append(found)
    if equal:
        return frozenset(equal.items())
    return listed[0] if len(listed) == 1 else None


def _traffic_conjunction(tests: list[_Test]) -> frozenset[Observable] | None:
    """``*_ref.type = '...' AND *_ref.value = '...'``: the type only says what the value is."""
    asserted: dict[str | int, str] = {}
    rest: list[_Test] = []
    for test in tests:
        is_type = len(test.path) == 2 and test.path[1] == "type"
        if is_type and test.op == "=" and not test.negated and len(test.values) == 1:
            value = test.values[0]
            if value is None or asserted.setdefault(test.path[0], value) != value:
                return None
        else:
            rest.append(test)
    if len(rest) != 1 or set(asserted) - {rest[0].path[0]}:
        return None
    return _observables(rest[0], asserted.get(rest[0].path[0]))


def _test(ctx: Any) -> _Test:
    object_type, path = _path(ctx.objectPath())
    negated = ctx.NOT() is not None
    if isinstance(ctx, P.PropTestEqualContext):
        op = "=" if ctx.EQ() is not None else "!="
        return _Test(object_type, path, op, negated, (_literal(ctx.primitiveLiteral()),))
    if isinstance(ctx, P.PropTestSetContext):
        values = tuple(_literal(c) for c in ctx.setLiteral().primitiveLiteral())
        return _Test(object_type, path, "IN", negated, values)
    if isinstance(ctx, P.PropTestIsSubsetContext):
        return _Test(object_type, path, "ISSUBSET", negated, (_string(ctx.StringLiteral()),))
    return _Test(object_type, path, type(ctx).__name__, negated, ())  # order, LIKE, MATCHES...


def _path(ctx: Any) -> tuple[str, tuple[str | int, ...]]:
    first = ctx.firstPathComponent()
    literal = first.StringLiteral()
    parts: list[str | int] = [_string(literal) if literal is not None else first.getText()]
    component = ctx.objectPathComponent()
    if component is not None:
        parts.extend(_steps(component))
    return ctx.objectType().getText(), tuple(parts)


def _steps(ctx: Any) -> Iterable[str | int]:
    if isinstance(ctx, P.KeyPathStepContext):
        literal = ctx.StringLiteral()
        yield _string(literal) if literal is not None else ctx.IdentifierWithoutHyphen().getText()
    elif isinstance(ctx, P.IndexPathStepContext):
        yield "*" if ctx.ASTERISK() is not None else int(ctx.getText().strip("[]"))
    else:
        for child in ctx.objectPathComponent():
            yield from _steps(child)


def _literal(ctx: Any) -> str | None:
    text = ctx.getText()
    return _unquote(text) if text.startswith("'") else None


def _string(token: Any) -> str:
    return _unquote(token.getText())


def _unquote(text: str) -> str:
    return _ESCAPE.sub(r"\1", text[1:-1])


def _kind(test: _Test, asserted: str | None) -> IndicatorType | None:
    path = test.path
    if path == ("value",) and test.object_type in _VALUE_KINDS:
        return _VALUE_KINDS[test.object_type]
    if test.object_type == "file" and len(path) == 2 and path[0] == "hashes":
        algorithm = str(path[1]).upper().replace("-", "").replace("_", "")
        return _HASH_KINDS.get(algorithm)
    if test.object_type == "network-traffic" and path in (
        ("src_ref", "value"),
        ("dst_ref", "value"),
    ):
        if asserted is not None:
            return _REF_TYPES.get(asserted)
        if all(value is not None and _is_address(value) for value in test.values):
            return IndicatorType.IPV4  # canonical_value takes the family from the value
    return None


def _observables(test: _Test, asserted: str | None = None) -> frozenset[Observable] | None:
    if test.negated or test.op not in _REDUCING_OPS:
        return None
    kind = _kind(test, asserted)
    if kind is None:
        return None
    if any(value is None for value in test.values):
        path = ".".join(str(p) for p in test.path)
        raise ValidationError(
            f"{test.object_type}:{path} is compared with a non-string literal", field="pattern"
        )
    if test.op == "ISSUBSET":
        if kind not in _ADDRESS_KINDS:
            return None
        kind = IndicatorType.CIDR
    return frozenset((kind, value) for value in test.values if value is not None) or None


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return False
    return True


# -- objects -------------------------------------------------------------------------------


class _ExternalReference(msgspec.Struct):
    source_name: str | None = None
    external_id: str | None = None


class _KillChainPhase(msgspec.Struct):
    kill_chain_name: str | None = None
    phase_name: str | None = None


class _StixIndicator(msgspec.Struct, kw_only=True):
    id: str
    pattern: str
    pattern_type: str = "stix"
    modified: datetime | None = None
    created: datetime | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    revoked: bool = False
    confidence: int | None = None
    labels: list[str] = []
    indicator_types: list[str] = []
    object_marking_refs: list[str] = []
    kill_chain_phases: list[_KillChainPhase] = []
    external_references: list[_ExternalReference] = []

    @property
    def version(self) -> datetime | None:
        return self.modified or self.created


class _Head(msgspec.Struct):
    """What every STIX object says about itself; the rest is read per type."""

    type: str
    id: str | None = None


class _Related(msgspec.Struct, kw_only=True):
    """The parts of non-indicator objects the indicators need (relationships, ATT&CK, TLP)."""

    type: str
    id: str | None = None
    name: str | None = None
    revoked: bool = False
    relationship_type: str | None = None
    source_ref: str | None = None
    target_ref: str | None = None
    external_references: list[_ExternalReference] = []
    definition_type: str | None = None
    definition: dict[str, Any] | None = None


class StixDocument(msgspec.Struct, frozen=True):
    """A bundle or a TAXII page: where it came from, and its objects' original bytes."""

    uri: str
    objects: list[msgspec.Raw]


class _Bundle(msgspec.Struct):
    type: str | None = None
    objects: list[msgspec.Raw] = []


def decode_bundle(body: bytes, uri: str) -> StixDocument:
    """The objects of a STIX bundle (or TAXII envelope), each kept as its original bytes.

    Raises:
        ValidationError: When the document is not JSON or not a bundle.
    """
    try:
        bundle = msgspec.json.decode(body, type=_Bundle)
    except msgspec.ValidationError as error:
        raise ValidationError(f"{uri} is not a STIX bundle: {error}", source=uri) from None
    except msgspec.DecodeError as error:
        raise ValidationError(f"{uri} is not valid JSON: {error}", source=uri) from None
    if bundle.type not in (None, "bundle"):
        raise ValidationError(
            f"{uri} is a STIX {bundle.type!r} object, not a bundle", field="type", source=uri
        )
    return StixDocument(uri=uri, objects=bundle.objects)


@dataclass
class _Candidate:
    indicator: _StixIndicator
    raw: bytes
    source: SourcePosition


class _Knowledge:
    """Everything a feed says besides its indicators: relationships, attack patterns, markings."""

    def __init__(self) -> None:
        self.objects: dict[str, _Related] = {}
        self.indicates: dict[str, list[str]] = {}

    def learn(self, related: _Related) -> None:
        if related.id is not None:
            self.objects[related.id] = related
        if (
            related.type == "relationship"
            and related.relationship_type == "indicates"
            and not related.revoked
            and related.source_ref
            and related.target_ref
        ):
            self.indicates.setdefault(related.source_ref, []).append(related.target_ref)

    def tlp(self, refs: Sequence[str], default: str) -> str:
        levels = [level for ref in refs if (level := self._tlp_of(ref)) is not None]
        return max(levels, key=TLP_LEVELS.index) if levels else default

    def _tlp_of(self, ref: str) -> str | None:
        if ref in TLP_MARKING_DEFINITIONS:
            return TLP_MARKING_DEFINITIONS[ref]
        marking = self.objects.get(ref)
        if marking is None or marking.type != "marking-definition":
            return None
        if (marking.definition_type or "").lower() == "tlp" and marking.definition:
            level = marking.definition.get("tlp")
            return canonical_tlp(level) if isinstance(level, str) else None
        if marking.name and marking.name.upper().startswith("TLP:"):
            return canonical_tlp(marking.name)
        return None

    def targets(self, indicator_id: str) -> list[_Related]:
        found = (self.objects.get(ref) for ref in self.indicates.get(indicator_id, ()))
        return [target for target in found if target is not None and not target.revoked]


def _techniques(references: Iterable[_ExternalReference]) -> set[str]:
    return {
        ref.external_id
        for ref in references
        if ref.source_name in _MITRE_SOURCES
        and ref.external_id
        and TECHNIQUE_ID.fullmatch(ref.external_id)
    }


def parse_stix(documents: Iterable[StixDocument], collector: Collector) -> None:
    """Parse the indicators of every document of one feed into ``collector``.

    Relationships, attack patterns and marking definitions are resolved across
    all documents (the feed is one body of knowledge). When one indicator id
    appears in several versions, the latest ``modified`` counts; older versions
    are skipped. Entries are positioned by document URI and object index.
    """
    knowledge = _Knowledge()
    latest: dict[str, _Candidate] = {}
    for document in documents:
        for index, raw in enumerate(document.objects):
            source = SourcePosition(uri=document.uri, line=index)
            _read_object(bytes(raw), source, knowledge, latest, collector)
    for candidate in latest.values():
        parse = partial(_indicators, candidate.indicator, knowledge, collector.context)
        collector.entry(candidate.raw, candidate.source, parse)


def _read_object(
    raw: bytes,
    source: SourcePosition,
    knowledge: _Knowledge,
    latest: dict[str, _Candidate],
    collector: Collector,
) -> None:
    try:
        head = msgspec.json.decode(raw, type=_Head)
    except msgspec.MsgspecError as error:
        collector.reject_entry(
            ValidationError(f"not a STIX object: {error}", field="type"), raw, source
        )
        return
    if head.type != "indicator":
        # Not an entry: a malformed relationship or marking only adds nothing.
        with contextlib.suppress(msgspec.MsgspecError):
            knowledge.learn(msgspec.json.decode(raw, type=_Related))
        return
    try:
        indicator = msgspec.json.decode(raw, type=_StixIndicator)
    except msgspec.MsgspecError as error:
        collector.reject_entry(_field_error(error), raw, source)
        return
    known = latest.get(indicator.id)
    candidate = _Candidate(indicator, raw, source)
    if known is None:
        latest[indicator.id] = candidate
        return
    collector.skip()  # one of the two versions is superseded
    if _newer(indicator, known.indicator):
        latest[indicator.id] = candidate


def _newer(a: _StixIndicator, b: _StixIndicator) -> bool:
    if a.version is None or b.version is None:
        return b.version is None
    return a.version >= b.version


_MSGSPEC_FIELD = re.compile(r"at `\$\.([A-Za-z_]+)|required field `([A-Za-z_]+)`")


def _field_error(error: msgspec.MsgspecError) -> ValidationError:
    found = _MSGSPEC_FIELD.search(str(error))
    field = (found.group(1) or found.group(2)) if found else None
    return ValidationError(f"malformed STIX indicator: {error}", field=field)


def _indicators(
    stix: _StixIndicator, knowledge: _Knowledge, context: ParseContext
) -> list[Indicator] | None:
    if stix.pattern_type.lower() != "stix":
        return None  # YARA, Snort, Sigma...: rules for other engines
    observables = reduce_pattern(stix.pattern)
    if observables is None:
        return None
    techniques = _techniques(stix.external_references)
    techniques |= {
        phase.phase_name
        for phase in stix.kill_chain_phases
        if phase.phase_name and TECHNIQUE_ID.fullmatch(phase.phase_name)
    }
    tags = set(stix.labels) | set(stix.indicator_types)
    for target in knowledge.targets(stix.id):
        if target.type == "attack-pattern":
            techniques |= _techniques(target.external_references)
        elif target.type in _NAMED_TARGETS and target.name:
            tags.add(f"{target.type}:{target.name}")
    tlp = knowledge.tlp(stix.object_marking_refs, context.tlp)
    confidence = context.confidence if stix.confidence is None else stix.confidence
    return [
        make_indicator(
            kind,
            value,
            confidence=confidence,
            feed=context.feed,
            reference=stix.id,
            tlp=tlp,
            valid_from=stix.valid_from,
            valid_until=stix.valid_until,
            revoked=stix.revoked,
            tags=sorted(tags),
            techniques=sorted(techniques),
        )
        for kind, value in observables
    ]
