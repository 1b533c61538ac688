"""Stage 7, DetectAndScore: table-driven ICS rules, a 0-100 risk score, aggregated alerts.

Rules are data: YAML files (`BUILTIN_RULES` ships with otsec; ``--rules DIR``
adds a user directory, where a rule with a built-in id replaces it). A rule has
an id, a title, a description saying why it fires and what to check, ATT&CK
for ICS technique ids, a severity, a condition in the safe language of
`transforms.ruleexpr`, and optionally a threshold over an event-time window::

    - id: OTSEC-MODBUS-UNIT-SCAN
      title: Modbus unit id scan
      techniques: [T0846]
      severity: medium
      condition: ics.protocol == "modbus" and ics.is_request == true
      threshold: {window: 60s, distinct: ics.unit_id, count: 8, group_by: [src.ip]}

Scoring (documented in docs/stages/07-detect.md)::

    risk = clamp(base[severity] + 5 * (criticality - 3) + cti_confidence // 20, 0, 100)

with base info 10, low 30, medium 50, high 70, critical 85; ``criticality`` is
the highest criticality of the assets involved (3 when none is known) and
``cti_confidence`` the highest confidence of the event's CTI matches (0 without).
A rule with ``severity: from_cti`` takes its severity from that confidence
(>= 90 critical, >= 70 high, >= 40 medium, >= 20 low, else info). An event's
``risk_score`` is the highest score of the single-event rules it fired.

Alerts have deterministic ids: a digest of the rule id, the rule's entity values
(``src.ip`` and ``dst.ip`` unless the rule says otherwise) and the hour the
first event fell in, so repeats aggregate into one row (`AggregateAlerts`, then
the PostgreSQL upsert adds ``event_count`` and widens ``first_seen``/``last_seen``).

Threshold rules emit their matching events as `ThresholdHit`s keyed by rule and
group; those are windowed in event time (sliding windows of the rule's length
that advance by half of it, so any burst shorter than half a window falls
whole into one window) and counted; a window that reaches the threshold raises
one alert. Its ``event_count`` is the count of the busiest window.

Streaming jobs (``DetectAndScore(rules, alert_delay_s=5)``) keep each element's
own timestamp, the Kinesis arrival time the source's watermark follows: an event
time older than the watermark would make every replayed or delayed record late
and drop it from the windows. Threshold windows then count arrivals (the same as
sensor time on a live feed; a replayed backlog arrives compressed and counts as
a burst). Alerts are not held for their hour bucket: per alert id, what arrived
is emitted every ``alert_delay_s`` seconds of processing time as a delta (the
PostgreSQL upsert adds the counts), so an alert reaches the store within seconds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Literal

import apache_beam as beam
import msgspec
import yaml
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import trigger, window

from schemas.alert import Alert
from schemas.errors import ValidationError
from schemas.event import NormalizedEvent
from transforms._stage import DEAD_LETTERS, MAIN, StageCounters, event_origin
from transforms.coders import MsgspecCoder
from transforms.durations import parse_duration
from transforms.ruleexpr import compile_condition, condition_facts, field_getter

__all__ = [
    "BUILTIN_RULES",
    "AggregateAlerts",
    "DetectAndScore",
    "RuleSet",
    "RuleSpec",
    "Threshold",
    "ThresholdHit",
    "alert_id_for",
    "load_rules",
    "merge_alerts",
    "risk_score",
]

BUILTIN_RULES = os.path.join(os.path.dirname(__file__), "rules")
ALERTS = "alerts"
THRESHOLD_HITS = "threshold_hits"
ALERT_BUCKET_SECONDS = 3600
SAMPLE_EVENT_IDS = 10
_DISTINCT_CAP = 10_000

Severity = Literal["info", "low", "medium", "high", "critical"]
_SEVERITY_BASE = {"info": 10, "low": 30, "medium": 50, "high": 70, "critical": 85}
_SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


class Threshold(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Raise when ``count`` matching events (or ``count`` distinct values of ``distinct``)
    from one ``group_by`` group fall within ``window`` of event time."""

    window: str = "60s"
    count: int
    distinct: str | None = None
    group_by: tuple[str, ...] = ("src.ip",)

    @property
    def seconds(self) -> int:
        return int(parse_duration(self.window, field="threshold.window"))


class RuleSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One rule as written in YAML."""

    id: str
    title: str
    description: str
    techniques: tuple[str, ...] = ()
    severity: Literal["info", "low", "medium", "high", "critical", "from_cti"]
    condition: str
    entities: tuple[str, ...] = ("src.ip", "dst.ip")
    threshold: Threshold | None = None
    enabled: bool = True
    tags: tuple[str, ...] = ()


class _RuleFile(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[RuleSpec]


def _rule_files(directory: str) -> list[str]:
    if os.path.isfile(directory):
        return [directory]
    if not os.path.isdir(directory):
        raise ValidationError(f"rules directory {directory} does not exist", field="rules")
    return sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if name.endswith((".yaml", ".yml"))
    )


def load_rules(*directories: str) -> tuple[RuleSpec, ...]:
    """The enabled rules of the YAML files in ``directories`` (built-ins first by default).

    A later directory's rule with the same id replaces the earlier one. Every
    condition is compiled here, so a bad rule fails at start with its file and id.

    Raises:
        ValidationError: On unreadable YAML, an unknown key, a bad condition or field.
    """
    by_id: dict[str, RuleSpec] = {}
    for directory in directories or (BUILTIN_RULES,):
        for path in _rule_files(directory):
            with open(path, encoding="utf-8") as handle:
                try:
                    document = yaml.safe_load(handle)
                except yaml.YAMLError as error:
                    raise ValidationError(f"{path}: not valid YAML: {error}") from None
            try:
                specs = msgspec.convert(document, _RuleFile).rules
            except msgspec.ValidationError as error:
                raise ValidationError(f"{path}: {error}") from None
            seen: set[str] = set()
            for spec in specs:
                if spec.id in seen:
                    raise ValidationError(f"{path}: rule id {spec.id} is used twice", field="id")
                seen.add(spec.id)
                try:
                    _Rule(spec)
                except ValidationError as error:
                    raise ValidationError(
                        f"{path}: rule {spec.id}: {error.message}", field=error.field
                    ) from None
                by_id[spec.id] = spec
    return tuple(spec for spec in by_id.values() if spec.enabled)


def severity_from_confidence(confidence: int) -> Severity:
    if confidence >= 90:
        return "critical"
    if confidence >= 70:
        return "high"
    if confidence >= 40:
        return "medium"
    if confidence >= 20:
        return "low"
    return "info"


def risk_score(severity: str, criticality: int | None, cti_confidence: int) -> int:
    """The documented 0-100 score: severity base, asset criticality, CTI confidence."""
    base = _SEVERITY_BASE[severity]
    score = base + 5 * ((criticality or 3) - 3) + cti_confidence // 20
    return max(0, min(100, score))


def _criticality(event: NormalizedEvent) -> int | None:
    values = [a.criticality for a in (event.src_asset, event.dst_asset) if a is not None]
    return max(values) if values else None


def _cti_confidence(event: NormalizedEvent) -> int:
    return max((m.confidence for m in event.cti_matches), default=0)


def alert_id_for(rule_id: str, entities: Sequence[Any], time: datetime) -> str:
    """Deterministic: the same rule, entities and hour give the same id."""
    bucket = int(time.timestamp()) // ALERT_BUCKET_SECONDS
    key = "\x1f".join([rule_id, *("" if v is None else str(v) for v in entities), str(bucket)])
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _techniques(rule: RuleSpec, event: NormalizedEvent) -> tuple[str, ...]:
    found = list(rule.techniques)
    if event.detection is not None:
        found.extend(event.detection.techniques)
    return tuple(dict.fromkeys(found))


class _Rule:
    """A `RuleSpec` compiled: its predicate and entity getters."""

    def __init__(self, spec: RuleSpec) -> None:
        self.spec = spec
        self.matches = compile_condition(spec.condition)
        self.entities = [field_getter(path) for path in spec.entities]
        self.group: list[Callable[[Any], Any]] = []
        self.distinct: Callable[[Any], Any] | None = None
        if spec.threshold is not None:
            if spec.threshold.count < 1:
                raise ValidationError("threshold count must be at least 1", field="threshold")
            if spec.threshold.seconds < 2:
                raise ValidationError("threshold window must be at least 2 s", field="threshold")
            self.group = [field_getter(path) for path in spec.threshold.group_by]
            if spec.threshold.distinct:
                self.distinct = field_getter(spec.threshold.distinct)
        entities = spec.threshold.group_by if spec.threshold else spec.entities
        self.src_is_entity = "src.ip" in entities
        self.dst_is_entity = "dst.ip" in entities

    def severity(self, event: NormalizedEvent) -> Severity:
        if self.spec.severity == "from_cti":
            return severity_from_confidence(_cti_confidence(event))
        return self.spec.severity

    def alert(self, event: NormalizedEvent) -> Alert:
        severity = self.severity(event)
        spec = self.spec
        return Alert(
            alert_id=alert_id_for(spec.id, [get(event) for get in self.entities], event.time),
            rule_id=spec.id,
            title=spec.title,
            description=spec.description,
            attack_techniques=_techniques(spec, event),
            severity=severity,
            risk_score=risk_score(severity, _criticality(event), _cti_confidence(event)),
            src_ip=event.src.ip if self.src_is_entity else None,
            dst_ip=event.dst.ip if self.dst_is_entity else None,
            event_count=1,
            first_seen=event.time,
            last_seen=event.time,
            sample_event_ids=(event.event_id,),
        )


class ThresholdHit(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One event that matched a threshold rule's condition, as the window counts it."""

    time: datetime
    event_id: str
    distinct: str | None = None
    src_ip: str | None = None
    dst_ip: str | None = None
    criticality: int | None = None
    cti_confidence: int = 0


# The fields an event's "kind" is made of: rules whose top-level facts on these fields
# contradict the event are skipped. The list per kind is computed once and cached.
_KIND_FIELDS = (
    "ics.protocol",
    "class_uid",
    "ics.function_code",
    "ics.function_name",
    "ics.operation",
    "ics.subfunction",
    "ics.is_request",
    "ics.is_exception",
)
_MAX_KINDS = 20_000
_EventKind = tuple[Any, ...]  # the values of _KIND_FIELDS, then whether it has CTI matches


def _kind_of(event: NormalizedEvent) -> _EventKind:
    ics = event.ics
    if ics is None:
        return (None, event.class_uid, None, None, None, None, None, None, bool(event.cti_matches))
    return (
        ics.protocol,
        event.class_uid,
        ics.function_code,
        ics.function_name,
        ics.operation,
        ics.subfunction,
        ics.is_request,
        ics.is_exception,
        bool(event.cti_matches),
    )


def _fact_holds(op: str, actual: Any, value: Any) -> bool:
    if op == "==":
        return bool(actual == value)
    if op == "!=":
        return bool(actual != value)
    if op == "in":
        return actual in value
    if op == "not in":
        return actual not in value
    if op == "is not null":
        return actual is not None
    return True  # orderings and the rest: not used to skip


def _can_match(rule: _Rule, kind: _EventKind) -> bool:
    """Whether the rule's top-level facts allow an event of this kind (False: skip it)."""
    values = dict(zip(_KIND_FIELDS, kind, strict=False))
    has_cti = kind[-1]
    for op, field, value in condition_facts(rule.matches):
        if field == "ics" and op == "is not null" and values["ics.protocol"] is None:
            return False
        if field in values and not _fact_holds(op, values[field], value):
            return False
        if not has_cti and _needs_cti(op, field, value):
            return False
    return True


def _needs_cti(op: str, field: str, value: Any) -> bool:
    """Whether the fact is false for every event without CTI matches."""
    if field in ("cti.fields", "cti.types"):
        return op == "contains"  # an empty list contains nothing
    if field == "cti.max_confidence":
        return op in ("<", "<=", ">", ">=")  # null: ordering comparisons are false
    if field == "cti.count" and isinstance(value, int | float) and not isinstance(value, bool):
        return (op == ">" and value >= 0) or (op in (">=", "==") and value > 0)
    return False


class ThresholdHitCoder(MsgspecCoder):
    record_type = ThresholdHit


beam.coders.registry.register_coder(ThresholdHit, ThresholdHitCoder)


class RuleSet:
    """The compiled rules, split into single-event and threshold rules.

    Most rules name the protocol and function they are about (``ics.protocol ==
    "dnp3" and ics.function_name in [...]``), the event class, or need CTI matches.
    `evaluate` only runs the rules whose top-level facts an event of its kind can
    satisfy; the list per kind (`_KIND_FIELDS` and CTI matches or not) is worked
    out once and cached: a few hundred kinds in practice.
    """

    def __init__(self, specs: Iterable[RuleSpec]) -> None:
        rules = [_Rule(spec) for spec in specs]
        self.single = [rule for rule in rules if rule.spec.threshold is None]
        self.windowed = [rule for rule in rules if rule.spec.threshold is not None]
        self.by_id = {rule.spec.id: rule for rule in rules}
        self._candidates: dict[_EventKind, tuple[list[_Rule], list[_Rule]]] = {}

    def _rules_for(self, event: NormalizedEvent) -> tuple[list[_Rule], list[_Rule]]:
        kind = _kind_of(event)
        found = self._candidates.get(kind)
        if found is None:
            found = (
                [rule for rule in self.single if _can_match(rule, kind)],
                [rule for rule in self.windowed if _can_match(rule, kind)],
            )
            if len(self._candidates) >= _MAX_KINDS:  # odd data: many unknown function codes
                self._candidates.clear()
            self._candidates[kind] = found
        return found

    def evaluate(
        self, event: NormalizedEvent
    ) -> tuple[NormalizedEvent, list[Alert], list[tuple[tuple[str, ...], ThresholdHit]]]:
        """The scored event, its alerts and its threshold hits (keyed by rule and group)."""
        single, windowed = self._rules_for(event)
        alerts = [rule.alert(event) for rule in single if rule.matches(event)]
        hits: list[tuple[tuple[str, ...], ThresholdHit]] = []
        for rule in windowed:
            if not rule.matches(event):
                continue
            group = tuple("" if (v := get(event)) is None else str(v) for get in rule.group)
            distinct = rule.distinct(event) if rule.distinct is not None else None
            hits.append(
                (
                    (rule.spec.id, *group),
                    ThresholdHit(
                        time=event.time,
                        event_id=event.event_id,
                        distinct=None if distinct is None else str(distinct),
                        src_ip=event.src.ip if rule.src_is_entity else None,
                        dst_ip=event.dst.ip if rule.dst_is_entity else None,
                        criticality=_criticality(event),
                        cti_confidence=_cti_confidence(event),
                    ),
                )
            )
        if alerts:
            event = msgspec.structs.replace(
                event,
                risk_score=max(alert.risk_score for alert in alerts),
                rule_ids=tuple(alert.rule_id for alert in alerts),
            )
        return event, alerts, hits


def _worse(a: Severity, b: Severity) -> Severity:
    return a if _SEVERITY_BASE[a] >= _SEVERITY_BASE[b] else b


def merge_alerts(a: Alert, b: Alert) -> Alert:
    """Two observations of one alert id as one: counts add, times widen, samples fill up,
    the severity and risk keep their maximum (``from_cti`` rules vary with confidence)."""
    return msgspec.structs.replace(
        a,
        severity=_worse(a.severity, b.severity),
        attack_techniques=tuple(dict.fromkeys(a.attack_techniques + b.attack_techniques)),
        event_count=a.event_count + b.event_count,
        first_seen=min(a.first_seen, b.first_seen),
        last_seen=max(a.last_seen, b.last_seen),
        risk_score=max(a.risk_score, b.risk_score),
        sample_event_ids=tuple(dict.fromkeys(a.sample_event_ids + b.sample_event_ids))[
            :SAMPLE_EVENT_IDS
        ],
    )


class _DetectFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, specs: tuple[RuleSpec, ...]) -> None:
        super().__init__()
        self._specs = specs

    def setup(self) -> None:
        self.rules = RuleSet(self._specs)
        self.counters = StageCounters("detect")

    def process(self, event: NormalizedEvent) -> Iterator[Any]:
        counters = self.counters
        counters.inputs += 1
        try:
            scored, alerts, hits = self.rules.evaluate(event)
        except Exception as error:  # a rule that breaks on odd data must not lose the event
            from schemas.dead_letter import dead_letter_from_error

            letter = dead_letter_from_error(
                "detect", error, event_origin(event), record_kind=event.source_kind
            )
            counters.dead_letters[letter.error_class] += 1
            yield TaggedOutput(DEAD_LETTERS, letter)
            return
        counters.outputs += 1
        yield scored
        for alert in alerts:
            counters.extra["rule_hits"] += 1
            yield TaggedOutput(ALERTS, alert)
        for hit in hits:
            yield TaggedOutput(THRESHOLD_HITS, hit)

    def finish_bundle(self) -> None:
        self.counters.flush()


class _ThresholdCombineFn(beam.CombineFn):  # type: ignore[misc]
    """Counts, distinct values, time range, samples and the worst context of a window."""

    def create_accumulator(self) -> list[Any]:
        # count, distinct values, first, last, samples, criticality, cti confidence, src, dst
        return [0, set(), None, None, [], None, 0, None, None]

    def add_input(self, acc: list[Any], hit: ThresholdHit) -> list[Any]:
        acc[0] += 1
        if hit.distinct is not None and len(acc[1]) < _DISTINCT_CAP:
            acc[1].add(hit.distinct)
        acc[2] = hit.time if acc[2] is None else min(acc[2], hit.time)
        acc[3] = hit.time if acc[3] is None else max(acc[3], hit.time)
        if len(acc[4]) < SAMPLE_EVENT_IDS:
            acc[4].append(hit.event_id)
        if hit.criticality is not None:
            acc[5] = hit.criticality if acc[5] is None else max(acc[5], hit.criticality)
        acc[6] = max(acc[6], hit.cti_confidence)
        acc[7] = acc[7] or hit.src_ip
        acc[8] = acc[8] or hit.dst_ip
        return acc

    def merge_accumulators(self, accumulators: Iterable[list[Any]]) -> list[Any]:
        merged = self.create_accumulator()
        for acc in accumulators:
            if acc[0] == 0:
                continue
            merged[0] += acc[0]
            merged[1] |= acc[1]
            merged[2] = acc[2] if merged[2] is None else min(merged[2], acc[2])
            merged[3] = acc[3] if merged[3] is None else max(merged[3], acc[3])
            merged[4] = (merged[4] + acc[4])[:SAMPLE_EVENT_IDS]
            if acc[5] is not None:
                merged[5] = acc[5] if merged[5] is None else max(merged[5], acc[5])
            merged[6] = max(merged[6], acc[6])
            merged[7] = merged[7] or acc[7]
            merged[8] = merged[8] or acc[8]
        return merged

    def extract_output(self, acc: list[Any]) -> list[Any]:
        return acc


def _threshold_alert(
    keyed: tuple[tuple[str, ...], list[Any]], specs: dict[str, RuleSpec]
) -> Iterator[Alert]:
    (rule_id, *group), acc = keyed
    spec = specs[rule_id]
    assert spec.threshold is not None
    count, distinct, first, last, samples, criticality, confidence, src, dst = acc
    measured = len(distinct) if spec.threshold.distinct else count
    if measured < spec.threshold.count:
        return
    severity: Severity = (
        severity_from_confidence(confidence) if spec.severity == "from_cti" else spec.severity
    )
    yield Alert(
        alert_id=alert_id_for(rule_id, group, first),
        rule_id=rule_id,
        title=spec.title,
        description=spec.description,
        attack_techniques=spec.techniques,
        severity=severity,
        risk_score=risk_score(severity, criticality, confidence),
        src_ip=src,
        dst_ip=dst,
        event_count=count,
        first_seen=first,
        last_seen=last,
        sample_event_ids=tuple(samples),
    )


def _timestamped(keyed: tuple[tuple[str, ...], ThresholdHit]) -> window.TimestampedValue:
    return window.TimestampedValue(keyed, keyed[1].time.timestamp())


class _WindowedThresholds(beam.PTransform):  # type: ignore[misc]
    """Threshold hits of the rules sharing one window length into threshold alerts."""

    def __init__(self, seconds: int, specs: dict[str, RuleSpec]) -> None:
        super().__init__()
        self._seconds = seconds
        self._specs = specs

    def expand(self, hits: beam.PCollection) -> beam.PCollection:
        period = max(1, self._seconds // 2)
        return (
            hits
            | "Window" >> beam.WindowInto(window.SlidingWindows(self._seconds, period))
            | "Count" >> beam.CombinePerKey(_ThresholdCombineFn())
            | "Alert" >> beam.FlatMap(_threshold_alert, self._specs)
            # Rules of other window lengths are flattened with these: one windowing for all.
            | "Unwindow" >> beam.WindowInto(window.GlobalWindows())
        )


def _merge_threshold(a: Alert, b: Alert) -> Alert:
    # Overlapping sliding windows see the same events: keep the busiest window's count.
    return msgspec.structs.replace(
        a,
        event_count=max(a.event_count, b.event_count),
        first_seen=min(a.first_seen, b.first_seen),
        last_seen=max(a.last_seen, b.last_seen),
        risk_score=max(a.risk_score, b.risk_score),
        sample_event_ids=tuple(dict.fromkeys(a.sample_event_ids + b.sample_event_ids))[
            :SAMPLE_EVENT_IDS
        ],
    )


def _combine_alerts(
    alerts: Iterable[Alert], merge: Callable[[Alert, Alert], Alert] = merge_alerts
) -> Alert:
    iterator = iter(alerts)
    merged = next(iterator)
    for alert in iterator:
        merged = merge(merged, alert)
    return merged


def _by_alert_id(alert: Alert) -> window.TimestampedValue:
    return window.TimestampedValue((alert.alert_id, alert), alert.first_seen.timestamp())


def _keyed_alert(alert: Alert) -> tuple[str, Alert]:
    return alert.alert_id, alert


class AggregateAlerts(beam.PTransform):  # type: ignore[misc]
    """Observations of one alert id into one alert per alert bucket (the hour in its id).

    Args:
        merge: How two observations combine (`merge_alerts` adds counts).
        delay_s: Streaming: emit what arrived per alert id every so many seconds of
            processing time (deltas: the store adds them up); None: one alert per
            event-time hour bucket, when the watermark passes it (batch).
    """

    def __init__(
        self, merge: Callable[[Alert, Alert], Alert] = merge_alerts, delay_s: float | None = None
    ) -> None:
        super().__init__()
        if delay_s is not None and delay_s <= 0:
            raise ValueError(f"the alert delay must be positive, got {delay_s}")
        self._merge = merge
        self._delay = delay_s

    def expand(self, alerts: beam.PCollection) -> beam.PCollection:
        merge = self._merge
        if self._delay is None:
            keyed = alerts | "KeyByAlertId" >> beam.Map(_by_alert_id).with_output_types(
                tuple[str, Alert]
            )
            windowing = beam.WindowInto(window.FixedWindows(ALERT_BUCKET_SECONDS))
        else:
            keyed = alerts | "KeyByAlertId" >> beam.Map(_keyed_alert).with_output_types(
                tuple[str, Alert]
            )
            windowing = beam.WindowInto(
                window.GlobalWindows(),
                # Beam's runner API carries the delay in whole seconds.
                trigger=trigger.Repeatedly(trigger.AfterProcessingTime(max(1, round(self._delay)))),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        return (
            keyed
            | "AlertBucket" >> windowing
            | "Merge" >> beam.CombinePerKey(lambda batch: _combine_alerts(batch, merge))  # type: ignore[arg-type]
            | "Values" >> beam.Values()
            | "Rewindow" >> beam.WindowInto(window.GlobalWindows())
        )


class _CountAlerts(beam.DoFn):  # type: ignore[misc]
    def setup(self) -> None:
        self.counters = StageCounters("detect")

    def process(self, alert: Alert) -> Iterator[Alert]:
        self.counters.extra["alerts"] += 1
        yield alert

    def finish_bundle(self) -> None:
        self.counters.flush()


class DetectAndScore(beam.PTransform):  # type: ignore[misc]
    """Stage 7: outputs ``main`` (scored events), ``alerts`` and ``dead_letters``.

    Args:
        rules: The rule specs (default: the built-in rules).
        alert_delay_s: Streaming: windows on the elements' own (arrival) timestamps and
            alerts emitted every so many seconds (see the module text); None: batch.
    """

    def __init__(
        self, rules: Sequence[RuleSpec] | None = None, *, alert_delay_s: float | None = None
    ) -> None:
        super().__init__()
        self._rules = tuple(rules) if rules is not None else load_rules()
        self._delay = alert_delay_s

    def expand(self, events: beam.PCollection) -> dict[str, beam.PCollection]:
        detected = events | "EvaluateRules" >> beam.ParDo(_DetectFn(self._rules)).with_outputs(
            ALERTS, THRESHOLD_HITS, DEAD_LETTERS, main=MAIN
        )
        specs = {spec.id: spec for spec in self._rules}
        windowed = [spec for spec in self._rules if spec.threshold is not None]
        hits = detected[THRESHOLD_HITS]
        if self._delay is None:
            hits = hits | "HitTimestamps" >> beam.Map(_timestamped).with_output_types(
                tuple[tuple[str, ...], ThresholdHit]
            )
        threshold_alerts = []
        for seconds in sorted({spec.threshold.seconds for spec in windowed if spec.threshold}):
            rules = {
                spec.id: spec
                for spec in windowed
                if spec.threshold is not None and spec.threshold.seconds == seconds
            }
            mine = hits | f"Hits{seconds}s" >> beam.Filter(lambda hit, r=rules: hit[0][0] in r)
            threshold_alerts.append(
                mine | f"Threshold{seconds}s" >> _WindowedThresholds(seconds, specs)
            )
        # Counted per branch, before the flatten: a runner that fuses a step after a
        # Flatten into each input's stage (Flink) reports one step twice, and keeps one.
        single = (
            detected[ALERTS]
            | "AggregateRuleAlerts" >> AggregateAlerts(delay_s=self._delay)
            | "CountRuleAlerts" >> beam.ParDo(_CountAlerts())
        )
        if threshold_alerts:
            windowed_alerts = (
                threshold_alerts
                | "FlattenThresholdAlerts" >> beam.Flatten()
                | "AggregateThresholdAlerts" >> AggregateAlerts(_merge_threshold, self._delay)
                | "CountThresholdAlerts" >> beam.ParDo(_CountAlerts())
            )
            counted = (single, windowed_alerts) | "FlattenAlerts" >> beam.Flatten()
        else:
            counted = single
        return {MAIN: detected[MAIN], ALERTS: counted, DEAD_LETTERS: detected[DEAD_LETTERS]}
