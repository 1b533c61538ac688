"""Validate: types, required fields, ranges and addresses, each violation naming its field."""

from __future__ import annotations

import msgspec
import pytest

from schemas import raw
from schemas.errors import ValidationError
from tests.conftest import raw_line
from transforms.decode import decode_line
from transforms.validate import canonical_ip, validate_record

MODBUS_HEADER = (
    b"#separator \\x09",
    b"#set_separator\t,",
    b"#empty_field\t(empty)",
    b"#unset_field\t-",
    b"#path\tmodbus",
    b"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\ttid\tunit\tfunc\tpdu_type\texception",
    b"#types\ttime\tstring\taddr\tport\taddr\tport\tcount\tcount\tstring\tstring\tstring",
)
GOOD = b"1093521704.839184\tC1\t10.0.0.57\t2578\t10.0.0.3\t502\t1\t10\tREAD_COILS\tREQ\t-"


def _modbus(line: bytes):
    return validate_record(decode_line(raw_line(line, MODBUS_HEADER)))


def _fail(line: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _modbus(line)
    assert caught.value.stage == "validate"
    return caught.value


def test_good_record_is_typed() -> None:
    record = _modbus(GOOD).record
    assert isinstance(record, raw.ZeekModbus)
    assert record.ts == pytest.approx(1093521704.839184)
    assert (record.orig_p, record.unit, record.tid, record.pdu_type) == (2578, 10, 1, "REQ")


@pytest.mark.parametrize(
    ("line", "field", "text"),
    [
        (GOOD.replace(b"1093521704.839184", b"XXXXXXXXXX.XXXXXX"), "ts", "XXXXXXXXXX.XXXXXX"),
        (GOOD.replace(b"1093521704.839184", b"-5.0"), "ts", "-5.0"),
        (GOOD.replace(b"\t2578\t", b"\t70000\t"), "id.orig_p", "70000"),
        (GOOD.replace(b"\t2578\t", b"\thttp\t"), "id.orig_p", "http"),
        (GOOD.replace(b"10.0.0.57", b"10.0.0.999"), "id.orig_h", "10.0.0.999"),
        (GOOD.replace(b"\t10\tREAD", b"\t300\tREAD"), "unit", "300"),
        (GOOD.replace(b"READ_COILS", b"unknown-300"), "func", "unknown-300"),
        (GOOD.replace(b"READ_COILS", b"read coils!"), "func", "read coils!"),
        (GOOD.replace(b"\tREQ\t", b"\tMAYBE\t"), "pdu_type", "MAYBE"),
        (GOOD.replace(b"\tC1\t", b"\t-\t"), "uid", None),
    ],
)
def test_violations_name_the_field(line: bytes, field: str, text: str | None) -> None:
    error = _fail(line)
    assert error.field == field
    if text is not None:
        assert text in error.message


def test_missing_required_field_in_json() -> None:
    line = raw_line(
        b'{"timestamp":"2026-11-20T08:00:00.000000+0000","event_type":"modbus",'
        b'"dest_ip":"10.10.1.10","dest_port":502,"modbus":{"request":{"function_raw":3}}}'
    )
    with pytest.raises(ValidationError, match="missing required field `src_ip`") as caught:
        validate_record(decode_line(line))
    assert caught.value.field == "src_ip"


def test_platform_envelope_ranges() -> None:
    base = {
        "schema": "robotlab.sensor/v1",
        "message_id": "m-1",
        "sensor_id": "agent-7",
        "observed_at": "2026-11-20T08:00:00Z",
        "src": {"ip": "10.20.0.5", "port": 40000},
        "dst": {"ip": "10.10.1.10", "port": 502},
        "ics": {"protocol": "modbus", "function_code": 3},
    }
    ok = validate_record(decode_line(raw_line(msgspec.json.encode(base))))
    assert ok.record.ics.function_code == 3
    bad_code = base | {"ics": {"protocol": "modbus", "function_code": 300}}
    with pytest.raises(ValidationError, match=r"out of range 0\.\.255") as caught:
        validate_record(decode_line(raw_line(msgspec.json.encode(bad_code))))
    assert caught.value.field == "ics.function_code"
    bad_port = base | {"src": {"ip": "10.20.0.5", "port": "http"}}
    with pytest.raises(ValidationError) as caught:
        validate_record(decode_line(raw_line(msgspec.json.encode(bad_port))))
    assert caught.value.field == "src.port"
    naive_time = base | {"observed_at": "2026-11-20T08:00:00"}
    with pytest.raises(ValidationError) as caught:
        validate_record(decode_line(raw_line(msgspec.json.encode(naive_time))))
    assert caught.value.field == "observed_at"


def test_canonical_ip() -> None:
    assert canonical_ip("2001:0db8:0000:0000:0000:0000:0000:0001") == "2001:db8::1"
    assert canonical_ip("fe80::1%eth0") == "fe80::1"
    assert canonical_ip("10.0.0.1") == "10.0.0.1"
    with pytest.raises(ValueError):
        canonical_ip("10.0.0.256")


def test_ipv4_mapped_addresses_become_ipv4() -> None:
    assert canonical_ip("::ffff:10.0.0.1") == "10.0.0.1"
