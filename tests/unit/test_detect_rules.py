"""Stage 7 rules: every built-in rule fires on the event it is written for and not on its
near miss; threshold rules count in event time (TestStream); scores and alert ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
import msgspec
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from schemas.errors import ValidationError
from schemas.event import (
    AssetContext,
    CtiMatch,
    DetectionInfo,
    IcsActivity,
    NetworkEndpoint,
    NormalizedEvent,
)
from schemas.records import SourceFormat, SourcePosition
from transforms.detect import (
    DetectAndScore,
    RuleSet,
    alert_id_for,
    load_rules,
    risk_score,
    severity_from_confidence,
)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
RULES = load_rules()
RULESET = RuleSet(RULES)

EWS = AssetContext(
    name="ews-01", role="engineering_workstation", purdue_level=2, zone="control", criticality=4
)
HMI = AssetContext(name="hmi-01", role="hmi", purdue_level=2, zone="control", criticality=3)
PLC = AssetContext(name="plc-a1", role="plc", purdue_level=1, zone="cell-a", criticality=5)
PLC_B = AssetContext(name="plc-b1", role="plc", purdue_level=1, zone="cell-b", criticality=5)
OFFICE = AssetContext(
    name="ws-001", role="it_host", purdue_level=4, zone="enterprise", criticality=1
)
HISTORIAN = AssetContext(
    name="hist-01", role="historian", purdue_level=3, zone="operations", criticality=3
)


def event(
    protocol: str | None = None,
    *,
    src: str = "10.20.0.10",
    dst: str = "10.10.1.10",
    src_asset: AssetContext | None = HMI,
    dst_asset: AssetContext | None = PLC,
    time: datetime = T0,
    event_id: str = "e1",
    **ics: Any,
) -> NormalizedEvent:
    """A normalized event; ``ics`` fields fill its IcsActivity when ``protocol`` is given."""
    extra = {
        k: ics.pop(k)
        for k in list(ics)
        if k in ("cti_matches", "detection", "class_uid", "unknown_asset", "zone_crossing")
    }
    return NormalizedEvent(
        event_id=event_id,
        time=time,
        class_uid=extra.pop("class_uid", 4001),
        category_uid=4,
        activity_id=6,
        type_uid=400106,
        severity_id=1,
        source_format=SourceFormat.ZEEK_TSV,
        source_kind=f"zeek.{protocol or 'conn'}",
        observer="zeek",
        message="test",
        src=NetworkEndpoint(ip=src, port=50000),
        dst=NetworkEndpoint(ip=dst, port=502),
        source=SourcePosition(uri="test.log", line=1),
        ics=IcsActivity(protocol=protocol, **ics) if protocol else None,
        src_asset=src_asset,
        dst_asset=dst_asset,
        zone_crossing=extra.pop(
            "zone_crossing",
            src_asset is not None and dst_asset is not None and src_asset.zone != dst_asset.zone,
        ),
        **extra,
    )


def fired(e: NormalizedEvent) -> set[str]:
    _, alerts, hits = RULESET.evaluate(e)
    return {a.rule_id for a in alerts} | {key[0] for key, _ in hits}


def c2(field: str, confidence: int = 80) -> CtiMatch:
    return CtiMatch(
        field=field,
        type="ipv4",
        value="84.247.157.112",
        confidence=confidence,
        tlp="clear",
        sources=("feodo",),
    )


# rule id -> (an event it must fire on, a near miss it must not fire on)
CASES: dict[str, tuple[NormalizedEvent, NormalizedEvent]] = {
    "OTSEC-MODBUS-WRITE-NON-EWS": (
        event(
            "modbus",
            function_code=16,
            function_name="WRITE_MULTIPLE_REGISTERS",
            operation="write",
            is_request=True,
        ),
        event(
            "modbus",
            function_code=16,
            function_name="WRITE_MULTIPLE_REGISTERS",
            operation="write",
            is_request=True,
            src_asset=EWS,
        ),
    ),
    "OTSEC-MODBUS-MASK-WRITE": (
        event(
            "modbus",
            function_code=22,
            function_name="MASK_WRITE_REGISTER",
            operation="write",
            is_request=True,
        ),
        event(
            "modbus",
            function_code=22,
            function_name="MASK_WRITE_REGISTER",
            operation="write",
            is_request=False,
        ),
    ),
    "OTSEC-MODBUS-RESTART-COMM": (
        event(
            "modbus",
            function_code=8,
            function_name="DIAGNOSTICS",
            operation="restart_stop",
            subfunction="RESTART_COMMUNICATIONS_OPTION",
        ),
        event(
            "modbus",
            function_code=8,
            function_name="DIAGNOSTICS",
            operation="diagnostic",
            subfunction="RETURN_QUERY_DATA",
        ),
    ),
    "OTSEC-MODBUS-LISTEN-ONLY": (
        event(
            "modbus",
            function_code=8,
            function_name="DIAGNOSTICS",
            operation="control",
            subfunction="FORCE_LISTEN_ONLY_MODE",
            is_request=True,
        ),
        event(
            "modbus",
            function_code=8,
            function_name="DIAGNOSTICS",
            operation="control",
            subfunction="FORCE_LISTEN_ONLY_MODE",
            is_request=False,
        ),
    ),
    "OTSEC-MODBUS-PROGRAM": (
        event(
            "modbus",
            function_code=90,
            function_name="PROGRAM_UNITY",
            operation="program",
            is_request=True,
        ),
        event(
            "modbus",
            function_code=90,
            function_name="PROGRAM_UNITY",
            operation="program",
            is_request=True,
            src_asset=EWS,
        ),
    ),
    "OTSEC-DNP3-RESTART": (
        event(
            "dnp3",
            function_code=13,
            function_name="COLD_RESTART",
            operation="restart_stop",
            is_request=True,
        ),
        event("dnp3", function_code=1, function_name="READ", operation="read", is_request=True),
    ),
    "OTSEC-DNP3-STOP-APPLICATION": (
        event(
            "dnp3",
            function_code=18,
            function_name="STOP_APPL",
            operation="restart_stop",
            is_request=True,
        ),
        event(
            "dnp3",
            function_code=17,
            function_name="START_APPL",
            operation="restart_stop",
            is_request=True,
        ),
    ),
    "OTSEC-DNP3-FILE-TRANSFER": (
        event(
            "dnp3",
            function_code=25,
            function_name="OPEN_FILE",
            operation="file_transfer",
            is_request=True,
        ),
        event(
            "dnp3",
            function_code=25,
            function_name="OPEN_FILE",
            operation="file_transfer",
            is_request=False,
        ),
    ),
    "OTSEC-DNP3-DISABLE-UNSOLICITED": (
        event(
            "dnp3",
            function_code=21,
            function_name="DISABLE_UNSOLICITED",
            operation="control",
            is_request=True,
        ),
        event(
            "dnp3",
            function_code=20,
            function_name="ENABLE_UNSOLICITED",
            operation="control",
            is_request=True,
        ),
    ),
    "OTSEC-S7-PLC-STOP": (
        event(
            "s7comm",
            function_code=0x29,
            function_name="PLC_STOP",
            operation="restart_stop",
            is_request=True,
        ),
        event(
            "s7comm",
            function_code=0x04,
            function_name="READ_VAR",
            operation="read",
            is_request=True,
        ),
    ),
    "OTSEC-S7-PROGRAM-DOWNLOAD": (
        event(
            "s7comm",
            function_code=0x1A,
            function_name="REQUEST_DOWNLOAD",
            operation="program",
            is_request=True,
            src_asset=OFFICE,
        ),
        event(
            "s7comm",
            function_code=0x1A,
            function_name="REQUEST_DOWNLOAD",
            operation="program",
            is_request=True,
            src_asset=EWS,
        ),
    ),
    "OTSEC-S7-PROGRAM-UPLOAD": (
        event(
            "s7comm",
            function_code=0x1D,
            function_name="START_UPLOAD",
            operation="program",
            is_request=True,
        ),
        event(
            "s7comm",
            function_code=0x1D,
            function_name="START_UPLOAD",
            operation="program",
            is_request=True,
            src_asset=EWS,
        ),
    ),
    "OTSEC-S7PLUS-PROGRAM-DOWNLOAD": (
        event(
            "s7comm_plus",
            function_code=0x04CA,
            function_name="CREATE_OBJECT",
            operation="session",
            is_request=True,
        ),
        event(
            "s7comm_plus",
            function_code=0x04CA,
            function_name="CREATE_OBJECT",
            operation="session",
            is_request=True,
            src_asset=EWS,
        ),
    ),
    "OTSEC-S7-PROGRAM-CHANGE-EWS": (
        event(
            "s7comm",
            function_code=0x1B,
            function_name="DOWNLOAD_BLOCK",
            operation="program",
            is_request=True,
            src_asset=EWS,
        ),
        event(
            "s7comm",
            function_code=0x1B,
            function_name="DOWNLOAD_BLOCK",
            operation="program",
            is_request=True,
            src_asset=HMI,
        ),
    ),
    "OTSEC-CIP-STOP": (
        event(
            "cip", function_code=7, function_name="Stop", operation="restart_stop", is_request=True
        ),
        event(
            "cip", function_code=6, function_name="Start", operation="restart_stop", is_request=True
        ),
    ),
    "OTSEC-CIP-RESET": (
        event(
            "cip", function_code=5, function_name="Reset", operation="restart_stop", is_request=True
        ),
        event(
            "cip",
            function_code=5,
            function_name="Reset",
            operation="restart_stop",
            is_request=False,
        ),
    ),
    "OTSEC-CIP-FIRMWARE-UPDATE": (
        event(
            "cip",
            function_code=0x4B,
            function_name="NVS_Update_0x4b",
            operation="program",
            is_request=True,
        ),
        event(
            "cip",
            function_code=0x0E,
            function_name="Get_Attribute_Single",
            operation="read",
            is_request=True,
        ),
    ),
    "OTSEC-BACNET-REINITIALIZE": (
        event(
            "bacnet",
            function_code=20,
            function_name="reinitialize_device",
            operation="restart_stop",
            is_request=True,
        ),
        event(
            "bacnet",
            function_code=12,
            function_name="read_property",
            operation="read",
            is_request=True,
        ),
    ),
    "OTSEC-BACNET-DEVICE-COMM-CONTROL": (
        event(
            "bacnet",
            function_code=17,
            function_name="device_communication_control",
            operation="control",
            is_request=True,
        ),
        event(
            "bacnet",
            function_code=17,
            function_name="device_communication_control",
            operation="control",
            is_request=False,
        ),
    ),
    "OTSEC-ICS-IT-TO-CONTROL": (
        event(
            "modbus",
            function_code=3,
            function_name="READ_HOLDING_REGISTERS",
            operation="read",
            is_request=True,
            src_asset=OFFICE,
        ),
        event(
            "modbus",
            function_code=3,
            function_name="READ_HOLDING_REGISTERS",
            operation="read",
            is_request=True,
            src_asset=HISTORIAN,
        ),
    ),
    "OTSEC-ICS-CROSS-CELL": (
        event(
            "enip",
            function_code=0x6F,
            function_name="SEND_RR_DATA",
            operation="other",
            src_asset=PLC_B,
        ),
        event(
            "enip",
            function_code=0x6F,
            function_name="SEND_RR_DATA",
            operation="other",
            src_asset=PLC,
        ),
    ),
    "OTSEC-ICS-UNKNOWN-ASSET": (
        event(
            "modbus",
            function_code=3,
            function_name="READ_HOLDING_REGISTERS",
            operation="read",
            is_request=True,
            src="10.10.1.240",
            src_asset=None,
            unknown_asset=True,
        ),
        event(
            "modbus",
            function_code=3,
            function_name="READ_HOLDING_REGISTERS",
            operation="read",
            is_request=True,
            unknown_asset=False,
        ),
    ),
    "OTSEC-ICS-FROM-INTERNET": (
        event(
            "s7comm",
            function_code=0xF0,
            function_name="SETUP_COMMUNICATION",
            operation="session",
            is_request=True,
            src="185.245.101.207",
            src_asset=None,
        ),
        event(
            "s7comm",
            function_code=0xF0,
            function_name="SETUP_COMMUNICATION",
            operation="session",
            is_request=True,
            src="10.20.0.10",
        ),
    ),
    "OTSEC-CTI-OUTBOUND": (
        event(
            src="10.50.2.27",
            dst="84.247.157.112",
            src_asset=OFFICE,
            dst_asset=None,
            cti_matches=(c2("dst.ip"),),
        ),
        event(src="10.50.2.27", dst="1.1.1.1", src_asset=OFFICE, dst_asset=None),
    ),
    "OTSEC-CTI-INBOUND": (
        event(src="84.247.157.112", dst="10.10.1.21", src_asset=None, cti_matches=(c2("src.ip"),)),
        event(src="84.247.157.113", dst="10.10.1.21", src_asset=None),
    ),
    "OTSEC-CTI-OBSERVABLE": (
        event(
            cti_matches=(
                CtiMatch(
                    field="details.query",
                    type="domain",
                    value="evil.example",
                    confidence=60,
                    tlp="amber",
                ),
            )
        ),
        event(cti_matches=(c2("dst.ip"),), src_asset=OFFICE),
    ),
    "OTSEC-SENSOR-ALERT-HIGH": (
        event(
            class_uid=2004,
            detection=DetectionInfo(
                rule_uid="1:1000203:1", title="ET SCADA", sensor_severity=1, techniques=("T0881",)
            ),
        ),
        event(
            class_uid=2004,
            detection=DetectionInfo(rule_uid="1:2:1", title="decoder", sensor_severity=3),
        ),
    ),
    "OTSEC-SENSOR-ALERT": (
        event(
            class_uid=2004,
            detection=DetectionInfo(rule_uid="1:2:1", title="decoder", sensor_severity=3),
        ),
        event(class_uid=4001),
    ),
    # Threshold rules: one matching event is a threshold hit (counted in windows below).
    "OTSEC-MODBUS-DEVICE-ID-SWEEP": (
        event(
            "modbus",
            function_code=43,
            function_name="ENCAP_INTERFACE_TRANSPORT",
            operation="diagnostic",
            subfunction="READ_DEVICE_IDENTIFICATION",
        ),
        event(
            "modbus",
            function_code=3,
            function_name="READ_HOLDING_REGISTERS",
            operation="read",
            is_request=True,
            src_asset=EWS,
            dst_asset=PLC,
        ),
    ),
    "OTSEC-MODBUS-UNIT-SCAN": (
        event(
            "modbus",
            function_code=3,
            function_name="READ_HOLDING_REGISTERS",
            operation="read",
            is_request=True,
            unit_id=7,
        ),
        event(
            "modbus",
            function_code=3,
            function_name="READ_HOLDING_REGISTERS",
            operation="read",
            is_request=False,
            unit_id=7,
        ),
    ),
    "OTSEC-MODBUS-EXCEPTION-BURST": (
        event(
            "modbus",
            function_code=131,
            function_name="READ_HOLDING_REGISTERS_EXCEPTION",
            operation="response",
            is_request=False,
            is_exception=True,
        ),
        event(
            "modbus",
            function_code=3,
            function_name="READ_HOLDING_REGISTERS",
            operation="response",
            is_request=False,
        ),
    ),
}


def test_every_built_in_rule_has_a_case_and_there_are_at_least_twenty() -> None:
    assert len(RULES) >= 20
    assert {rule.id for rule in RULES} == set(CASES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires_on_its_event_and_not_on_the_near_miss(rule_id: str) -> None:
    positive, negative = CASES[rule_id]
    assert rule_id in fired(positive)
    assert rule_id not in fired(negative)


def test_every_rule_names_techniques_from_attack_for_ics_and_says_what_to_check() -> None:
    for rule in RULES:
        assert all(t.startswith("T0") and len(t) == 5 for t in rule.techniques), rule.id
        assert len(rule.description) > 80, rule.id
        if rule.severity != "from_cti" and not rule.id.startswith("OTSEC-SENSOR"):
            assert rule.techniques, rule.id


def test_single_event_alert_carries_score_entities_and_sensor_techniques() -> None:
    scored, alerts, _ = RULESET.evaluate(CASES["OTSEC-SENSOR-ALERT-HIGH"][0])
    (alert,) = alerts
    assert alert.attack_techniques == ("T0881",)  # from the signature's metadata
    assert alert.severity == "high" and alert.src_ip == "10.20.0.10"
    assert alert.risk_score == risk_score("high", 5, 0) == 80  # a criticality-5 PLC
    assert scored.risk_score == 80 and scored.rule_ids == ("OTSEC-SENSOR-ALERT-HIGH",)


def test_cti_rules_take_severity_and_score_from_indicator_confidence() -> None:
    for confidence, severity in (
        (95, "critical"),
        (75, "high"),
        (50, "medium"),
        (25, "low"),
        (5, "info"),
    ):
        assert severity_from_confidence(confidence) == severity
        e = event(
            src="10.50.2.27",
            dst="84.247.157.112",
            src_asset=OFFICE,
            dst_asset=None,
            cti_matches=(c2("dst.ip", confidence),),
        )
        _, alerts, _ = RULESET.evaluate(e)
        (alert,) = alerts
        assert alert.severity == severity
        assert alert.risk_score == risk_score(severity, 1, confidence)


def test_risk_score_is_bounded_and_documented() -> None:
    assert risk_score("critical", 5, 100) == 100
    assert risk_score("info", 1, 0) == 0
    assert risk_score("medium", None, 0) == 50  # unknown criticality counts as 3


def test_alert_ids_aggregate_repeats_within_the_hour_only() -> None:
    first = alert_id_for("R", ["10.0.0.1", "10.0.0.2"], T0)
    assert first == alert_id_for("R", ["10.0.0.1", "10.0.0.2"], T0 + timedelta(minutes=59))
    assert first != alert_id_for("R", ["10.0.0.1", "10.0.0.2"], T0 + timedelta(minutes=60))
    assert first != alert_id_for("R", ["10.0.0.1", "10.0.0.3"], T0)
    assert first != alert_id_for("Q", ["10.0.0.1", "10.0.0.2"], T0)


def test_user_rules_replace_built_ins_by_id_and_bad_rules_fail_with_file_and_id(tmp_path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text(
        "rules:\n"
        "  - id: OTSEC-DNP3-DISABLE-UNSOLICITED\n"
        "    title: t\n    description: d\n    severity: low\n"
        '    condition: ics.protocol == "dnp3" and src_asset.role != "hmi"\n'
    )
    from transforms.detect import BUILTIN_RULES

    rules = {r.id: r for r in load_rules(BUILTIN_RULES, str(tmp_path))}
    assert rules["OTSEC-DNP3-DISABLE-UNSOLICITED"].severity == "low"
    user.write_text(
        "rules:\n  - id: BAD\n    title: t\n    description: d\n    severity: low\n"
        "    condition: ics.nope == 1\n"
    )
    with pytest.raises(ValidationError, match=r"mine.yaml: rule BAD: unknown field 'ics.nope'"):
        load_rules(str(tmp_path))


def _scan_stream(times_and_units: list[tuple[float, int]]) -> TestStream:
    stream = TestStream()
    for i, (offset, unit) in enumerate(times_and_units):
        e = event(
            "modbus",
            function_code=3,
            function_name="READ_HOLDING_REGISTERS",
            operation="read",
            is_request=True,
            unit_id=unit,
            src_asset=OFFICE,
            time=T0 + timedelta(seconds=offset),
            event_id=f"scan-{i}",
        )
        stream = stream.add_elements([window.TimestampedValue(e, e.time.timestamp())])
        stream = stream.advance_watermark_to(e.time.timestamp())
    return stream.advance_watermark_to_infinity()


def _assert_alerts(stream: TestStream, rule_id: str, expected: list[Any]) -> None:
    """Run DetectAndScore over ``stream`` in streaming mode; ``rule_id``'s alerts must be these
    ``(src_ip, dst_ip, event_count)``."""
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as pipeline:
        outputs = pipeline | stream | DetectAndScore(RULES)
        assert_that(
            outputs["alerts"]
            | beam.Filter(lambda a: a.rule_id == rule_id)
            | beam.Map(lambda a: (a.src_ip, a.dst_ip, a.event_count)),
            equal_to(expected),
        )


def test_unit_scan_raises_one_alert_when_the_units_fall_in_one_window() -> None:
    # 12 units within 6 s of event time: one alert, whatever windows it straddles.
    _assert_alerts(
        _scan_stream([(50 + i * 0.5, i) for i in range(12)]),
        "OTSEC-MODBUS-UNIT-SCAN",
        [("10.20.0.10", "10.10.1.10", 12)],
    )


def test_unit_scan_spread_over_minutes_stays_below_the_threshold() -> None:
    # The same 12 units, one every 20 s: never 8 in any 60 s window.
    _assert_alerts(_scan_stream([(i * 20.0, i) for i in range(12)]), "OTSEC-MODBUS-UNIT-SCAN", [])


def test_repeated_reads_of_one_unit_are_not_a_scan() -> None:
    _assert_alerts(_scan_stream([(i * 0.1, 1) for i in range(50)]), "OTSEC-MODBUS-UNIT-SCAN", [])


def test_detect_stage_dead_letters_an_event_a_rule_cannot_evaluate() -> None:
    # An event no coder would carry (time None) handed straight to the DoFn: the failure
    # becomes a dead letter of stage detect, never an exception that stops the bundle.
    from apache_beam.pvalue import TaggedOutput

    from transforms.detect import _DetectFn

    broken = msgspec.structs.replace(CASES["OTSEC-CIP-STOP"][0], time=None)  # type: ignore[arg-type]
    fn = _DetectFn(RULES)
    fn.setup()
    (output,) = list(fn.process(broken))
    assert isinstance(output, TaggedOutput) and output.tag == "dead_letters"
    assert (output.value.stage, output.value.error_class) == ("detect", "UnexpectedError")


def test_skipping_rules_by_protocol_class_and_cti_never_changes_what_fires() -> None:
    # evaluate() runs only the rules an event's kind can satisfy; every rule run on every
    # case event must give the same answer.
    for positive, negative in CASES.values():
        for e in (positive, negative):
            everything = {r.spec.id for r in RULESET.single + RULESET.windowed if r.matches(e)}
            assert fired(e) == everything, e


def test_streaming_mode_windows_on_arrival_time_and_emits_alert_deltas() -> None:
    """``alert_delay_s``: sensor times a week older than the watermark (a replayed backlog)
    are not late; the scan's threshold window and the single-event alerts still fire."""
    arrival = float(int(datetime.now(UTC).timestamp()))  # whole ms: TestStream wants them
    stream = TestStream().advance_watermark_to(arrival - 1)
    for i in range(12):
        e = event(
            "modbus",
            function_code=3,
            function_name="READ_HOLDING_REGISTERS",
            operation="read",
            is_request=True,
            unit_id=i,
            src_asset=OFFICE,
            time=T0 + timedelta(seconds=i),
            event_id=f"late-scan-{i}",
        )
        stream = stream.add_elements([window.TimestampedValue(e, arrival + i * 0.1)])
    stop = CASES["OTSEC-CIP-STOP"][0]
    stream = stream.add_elements([window.TimestampedValue(stop, arrival + 2)])
    stream = stream.advance_watermark_to(arrival + 120).advance_processing_time(10)
    stream = stream.advance_watermark_to_infinity()
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as pipeline:
        outputs = pipeline | stream | DetectAndScore(RULES, alert_delay_s=1)
        assert_that(
            outputs["alerts"]
            | beam.Filter(lambda a: a.rule_id in ("OTSEC-MODBUS-UNIT-SCAN", "OTSEC-CIP-STOP"))
            | beam.Map(lambda a: (a.rule_id, a.event_count)),
            equal_to([("OTSEC-MODBUS-UNIT-SCAN", 12), ("OTSEC-CIP-STOP", 1)]),
        )
