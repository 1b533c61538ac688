"""Normalize on the real Zeek and ICSNPP fixtures: concrete normalized values from every file.

Files with canonified timestamps (``XXXXXXXXXX.XXXXXX``) are dead letters in a
real run (see `test_canonified_timestamps_are_dead_letters`); to check how
their records normalize, these tests give them a real timestamp first.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.dead_letter import DeadLetter
from schemas.event import NormalizedEvent, Operation
from schemas.records import RawLine
from tests.conftest import ZEEK_TSV, run_stages
from transforms.sources import read_lines

CANONIFIED = b"XXXXXXXXXX.XXXXXX"
REAL_TS = b"1700000000.000001"


def events_of(name: str, *, fix_ts: bool = False) -> dict[int, NormalizedEvent]:
    events = {}
    for line in read_lines(str(ZEEK_TSV / name)):
        if fix_ts:
            line = RawLine(
                payload=line.payload.replace(CANONIFIED, REAL_TS),
                source=line.source,
                context=line.context,
            )
        result = run_stages(line)
        assert isinstance(result, NormalizedEvent), f"{name}:{line.source.line}: {result}"
        events[line.source.line] = result
    return events


def test_zeek_modbus_2016() -> None:
    events = events_of("zeek_modbus_2016.log")
    assert len(events) == 300
    first = events[9]
    assert first.time == datetime(2004, 8, 26, 12, 1, 44, 839184, tzinfo=UTC)
    assert (first.src.ip, first.src.port, first.dst.ip, first.dst.port) == (
        "10.0.0.57",
        2578,
        "10.0.0.3",
        502,
    )
    assert first.ics is not None
    assert (first.ics.protocol, first.ics.function_code, first.ics.function_name) == (
        "modbus",
        8,
        "DIAGNOSTICS",
    )
    assert first.ics.operation == Operation.DIAGNOSTIC
    assert (first.class_uid, first.category_uid, first.activity_id, first.type_uid) == (
        4001,
        4,
        6,
        400106,
    )
    assert first.connection_uid == "ClEkJM2Vm5giqnMf4h"
    assert first.source.line == 9 and first.source.uri.endswith("zeek_modbus_2016.log")
    write = events[20].ics
    assert write is not None and (write.function_code, write.operation) == (6, Operation.WRITE)
    exception = events[25].ics
    assert exception is not None
    assert (exception.function_name, exception.is_exception, exception.status) == (
        "READ_HOLDING_REGISTERS_EXCEPTION",
        True,
        "ILLEGAL_DATA_VALUE",
    )
    operations = {e.ics.function_name: e.ics.operation for e in events.values() if e.ics}
    assert operations["FIRMWARE_REPLACEMENT"] == Operation.PROGRAM
    assert operations["PROGRAM_CONCEPT"] == Operation.PROGRAM
    assert operations["READ_INPUT_REGISTERS"] == Operation.READ


def test_zeek_modbus_conn_2016() -> None:
    events = events_of("zeek_modbus_conn_2016.log")
    assert len(events) == 9
    conn = events[11]
    assert (conn.src.ip, conn.dst.ip, conn.dst.port) == ("10.0.0.57", "10.0.0.3", 502)
    assert (conn.transport, conn.app_protocol, conn.ics) == ("tcp", "modbus", None)
    assert conn.details["conn_state"] == "S3" and conn.details["duration"] == "385.694948"
    assert events[9].app_protocol is None and events[9].activity_id == 6  # SF, no service


def test_zeek_modbus_current_and_exceptions() -> None:
    current = events_of("zeek_modbus_current.log", fix_ts=True)
    request, response = current[10].ics, current[11].ics
    assert request is not None and response is not None
    assert (request.unit_id, request.is_request, request.function_name) == (10, True, "READ_COILS")
    assert response.is_request is False
    exceptions = events_of("zeek_modbus_exceptions_current.log", fix_ts=True)
    unknown = exceptions[10]
    assert (unknown.src.ip, unknown.dst.ip) == ("192.168.66.235", "166.161.16.230")
    assert unknown.ics is not None
    assert (unknown.ics.function_code, unknown.ics.is_exception, unknown.ics.status) == (
        156,
        True,
        "ILLEGAL_FUNCTION",
    )
    assert exceptions[11].ics is not None and exceptions[11].ics.operation == Operation.UNKNOWN


def test_zeek_dnp3_current() -> None:
    events = events_of("zeek_dnp3_current.log", fix_ts=True)
    assert len(events) == 66
    by_name = {e.ics.function_name: e for e in events.values() if e.ics}
    assert by_name["COLD_RESTART"].ics.operation == Operation.RESTART_STOP
    assert by_name["WARM_RESTART"].ics.function_code == 14
    assert by_name["STOP_APPL"].ics.operation == Operation.RESTART_STOP
    assert by_name["DISABLE_UNSOLICITED"].ics.operation == Operation.CONTROL
    assert by_name["WRITE"].ics.operation == Operation.WRITE
    unsolicited = events[10]
    assert (
        unsolicited.ics.function_name == "UNSOLICITED_RESPONSE"
        and unsolicited.ics.is_request is False
    )
    assert unsolicited.details["iin"] == "4096"
    assert (unsolicited.src.ip, unsolicited.dst.port) == ("10.0.0.8", 20000)


def test_icsnpp_dnp3_control() -> None:
    events = events_of("icsnpp_dnp3_control.log", fix_ts=True)
    select = events[10]
    assert select.ics is not None
    assert (select.ics.function_name, select.ics.operation, select.ics.address_start) == (
        "SELECT",
        Operation.CONTROL,
        8,
    )
    assert select.details["block_type"] == "Control Relay Output Block"
    assert select.details["trip_control_code"] == "Close"
    assert events[11].ics.status == "Success" and events[11].ics.is_request is False


def test_icsnpp_modbus_detailed() -> None:
    events = events_of("icsnpp_modbus_detailed.log", fix_ts=True)
    assert len(events) == 26
    coils = events[10].ics
    assert coils is not None
    assert (coils.function_name, coils.unit_id, coils.address_start, coils.address_count) == (
        "READ_COILS",
        4,
        1,
        1,
    )
    multi = events[24].ics
    assert multi is not None and (multi.function_code, multi.operation, multi.address_count) == (
        16,
        Operation.WRITE,
        4,
    )
    assert events[27].ics.operation == Operation.FILE_TRANSFER
    assert events[22].ics.subfunction == "RETURN_DIAGNOSTIC_REGISTER"


def test_icsnpp_s7comm() -> None:
    events = events_of("icsnpp_s7comm_snap7.log")
    assert len(events) == 62
    setup = events[9]
    assert setup.time == datetime(2016, 2, 8, 22, 8, 9, 930413, tzinfo=UTC)
    assert setup.ics is not None
    assert (setup.ics.function_code, setup.ics.operation, setup.ics.is_request) == (
        0xF0,
        Operation.SESSION,
        True,
    )
    assert events[11].ics.operation == Operation.DIAGNOSTIC  # user data: Read SZL
    assert events[24].ics.function_name == "START_UPLOAD"
    assert events[24].ics.operation == Operation.PROGRAM  # program upload (T0845)
    conn = events_of("icsnpp_s7comm_conn_snap7.log")[9]
    assert (conn.app_protocol, conn.dst.port) == ("cotp,s7comm", 102)


def test_icsnpp_s7comm_plus() -> None:
    events = events_of("icsnpp_s7comm_plus.log")
    assert len(events) == 121
    assert events[9].ics.function_name == "NOTIFICATION"
    set_variable = events[12].ics
    assert set_variable is not None
    assert (set_variable.function_code, set_variable.operation, set_variable.is_request) == (
        0x04F2,
        Operation.WRITE,
        True,
    )
    assert (events[12].src.ip, events[12].dst.ip) == ("192.168.0.3", "192.168.0.1")


def test_icsnpp_enip_and_cip_identity() -> None:
    enip = events_of("icsnpp_enip_enip.log")
    assert len(enip) == 269
    first = enip[9]
    assert first.ics is not None
    assert (first.ics.protocol, first.ics.function_code, first.ics.status) == (
        "enip",
        0x70,
        "Success",
    )
    assert first.details["session_handle"] == "0x11020100"
    identity = events_of("icsnpp_enip_cip_identity.log")[9]
    assert identity.details["product_name"] == "1756-ENBT/A"
    assert identity.details["vendor_name"] == "Rockwell Automation/Allen-Bradley"
    assert identity.ics is not None and identity.ics.operation == Operation.DIAGNOSTIC
    conns = events_of("icsnpp_enip_conn.log")
    assert conns[12].transport == "udp" and conns[12].app_protocol == "cip"


def test_icsnpp_bacnet() -> None:
    events = events_of("icsnpp_bacnet_basic.log", fix_ts=True)
    assert len(events) == 300
    request = events[10]
    assert request.ics is not None
    assert (request.ics.function_name, request.ics.operation, request.ics.is_request) == (
        "read_property",
        Operation.READ,
        True,
    )
    assert request.transport == "udp"
    assert events[11].ics.operation == Operation.RESPONSE
    assert events[81].ics.function_name == "who_is"


def test_opcua_conn_ipv6() -> None:
    events = events_of("icsnpp_opcua_conn.log", fix_ts=True)
    assert (events[9].src.ip, events[9].dst.port, events[9].app_protocol) == (
        "::1",
        4840,
        "opcua-binary",
    )


@pytest.mark.parametrize(
    "name",
    [
        "zeek_modbus_current.log",
        "zeek_modbus_exceptions_current.log",
        "zeek_dnp3_current.log",
        "icsnpp_modbus_detailed.log",
        "icsnpp_dnp3_control.log",
        "icsnpp_bacnet_basic.log",
        "icsnpp_opcua_conn.log",
    ],
)
def test_canonified_timestamps_are_dead_letters(name: str) -> None:
    lines = list(read_lines(str(ZEEK_TSV / name)))
    assert lines, name
    for line in lines:
        letter = run_stages(line)
        assert isinstance(letter, DeadLetter)
        assert (letter.stage, letter.error_class, letter.field) == (
            "validate",
            "ValidationError",
            "ts",
        )
        assert "XXXXXXXXXX.XXXXXX" in letter.message
        assert letter.payload == line.payload and letter.source == line.source
        assert letter.context is not None and "#fields" in letter.context


def test_event_id_is_deterministic_and_distinct() -> None:
    first = events_of("zeek_modbus_2016.log")
    again = events_of("zeek_modbus_2016.log")
    assert [e.event_id for e in first.values()] == [e.event_id for e in again.values()]
    ids = {e.event_id for e in first.values()}
    payloads = {line.payload for line in read_lines(str(ZEEK_TSV / "zeek_modbus_2016.log"))}
    assert len(ids) == len(payloads)  # identical lines collide, distinct lines do not


SURICATA = ZEEK_TSV.parent.parent / "suricata" / "surevego_eve_alert-flow-http-dns.json"
ZEEK_JSON = ZEEK_TSV.parent / "json" / "zed-sample-data_zeek_modbus_wrccdc2018.json"


def test_real_suricata_eve_alert_and_flow() -> None:
    results = {line.source.line: run_stages(line) for line in read_lines(str(SURICATA))}
    alert = results[49]
    assert isinstance(alert, NormalizedEvent)
    assert (alert.class_uid, alert.category_uid, alert.type_uid) == (2004, 2, 200401)
    assert alert.time == datetime(2017, 1, 30, 15, 12, 36, 66011, tzinfo=UTC)  # +0100 to UTC
    assert alert.detection is not None
    assert alert.detection.rule_uid == "1:2013504:5"
    assert alert.detection.title.startswith("ET POLICY GNU/Linux APT User-Agent")  # \/ unescaped
    assert alert.severity_id == 2  # Suricata severity 3 -> OCSF Low
    assert (alert.src.ip, alert.dst.ip, alert.dst.port, alert.transport) == (
        "172.17.0.2",
        "54.230.202.37",
        80,
        "tcp",
    )
    assert alert.connection_uid == "1501577875823823"
    flows = [
        r
        for r in results.values()
        if isinstance(r, NormalizedEvent) and r.source_kind == "suricata.flow"
    ]
    assert len(flows) == 13
    icmp = [f for f in flows if f.transport == "ipv6-icmp"]
    assert len(icmp) == 2 and all(f.src.port is None for f in icmp)
    # Suricata writes IPv6 uncompressed; events carry the canonical form.
    assert {f.src.ip for f in icmp} == {"fe80::42:acff:fe11:2", "fe80::42:95ff:fea2:534a"}
    assert icmp[0].dst.ip == "ff02::2"
    # DNS, HTTP, fileinfo and stats records are kinds otsec does not read: dead letters that say so.
    skipped = [r for r in results.values() if isinstance(r, DeadLetter)]
    assert len(skipped) == 48 + 14 + 14 + 1
    assert all(
        d.stage == "decode" and "supported suricata kinds: alert, dnp3, flow, modbus" in d.message
        for d in skipped
    )


def test_real_zeek_json_modbus_with_iso_timestamps() -> None:
    events = [run_stages(line) for line in read_lines(str(ZEEK_JSON))]
    assert len(events) == 200 and all(isinstance(e, NormalizedEvent) for e in events)
    first = events[0]
    assert first.source_format == "zeek_json" and first.source_kind == "zeek.modbus"
    assert first.time == datetime(2018, 3, 24, 17, 15, 33, 511226, tzinfo=UTC)
    assert first.ics is not None
    assert (first.ics.function_code, first.ics.unit_id, first.ics.is_request) == (100, 34, True)
    assert first.ics.operation == Operation.UNKNOWN  # unknown-100: not a public Modbus code
    assert (first.src.ip, first.dst.ip, first.dst.port) == ("10.128.0.242", "10.47.8.54", 502)
