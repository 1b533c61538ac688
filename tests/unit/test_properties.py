"""Property tests: any bytes in, never a crash, always exactly one event or one dead letter."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines.event_pipeline import EventStages
from schemas.dead_letter import DeadLetter
from schemas.event import NormalizedEvent
from schemas.records import RawLine
from tests.conftest import ZEEK_TSV, raw_line, run_stages
from transforms.sources import read_lines

REAL_LINES: list[RawLine] = [
    line
    for name in (
        "zeek_modbus_2016.log",
        "icsnpp_s7comm_snap7.log",
        "icsnpp_enip_enip.log",
        "icsnpp_s7comm_plus.log",
        "zeek_modbus_conn_2016.log",
    )
    for line in list(read_lines(str(ZEEK_TSV / name)))[:40]
]
JSON_LINES = [
    b'{"timestamp":"2026-11-20T08:00:00.123456+0000","flow_id":1,"event_type":"modbus",'
    b'"src_ip":"10.20.0.5","src_port":40000,"dest_ip":"10.10.1.10","dest_port":502,"proto":"TCP",'
    b'"modbus":{"id":1,"request":{"transaction_id":1,"unit_id":1,"function_raw":6,'
    b'"write":{"address":40,"data":7}}}}',
    b'{"schema":"robotlab.sensor/v1","message_id":"m1","sensor_id":"a1",'
    b'"observed_at":"2026-11-20T08:00:00Z","src":{"ip":"10.20.0.5","port":4840},'
    b'"dst":{"ip":"10.30.0.2","port":4840},"ics":{"protocol":"opcua","function":"WriteRequest"}}',
    b'{"_path":"modbus","ts":1700000000.5,"uid":"C1","id.orig_h":"10.0.0.1","id.orig_p":1,'
    b'"id.resp_h":"10.0.0.2","id.resp_p":502,"func":"WRITE_SINGLE_REGISTER"}',
]


def _accounted(line: RawLine) -> None:
    result = run_stages(line)
    assert isinstance(result, NormalizedEvent | DeadLetter)
    if isinstance(result, DeadLetter):
        assert result.payload == line.payload  # the original bytes, byte for byte
        assert result.source == line.source
        assert result.error_class in ("ValidationError", "UnexpectedError")
        # Bad input is a ValidationError; an UnexpectedError here would be a bug in a stage.
        assert result.error_class == "ValidationError", result.traceback


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.binary(max_size=300),
    with_header=st.booleans(),
    index=st.integers(0, len(REAL_LINES) - 1),
)
def test_arbitrary_bytes_are_accounted_for(payload: bytes, with_header: bool, index: int) -> None:
    context = REAL_LINES[index].context if with_header else None
    _accounted(raw_line(payload.replace(b"\n", b""), context))


def _mutate(data: bytes, position: int, action: str, value: bytes) -> bytes:
    position = position % (len(data) + 1)
    if action == "replace":
        return data[:position] + value + data[position + len(value) :]
    if action == "insert":
        return data[:position] + value + data[position:]
    if action == "delete":
        return data[:position] + data[position + max(1, len(value)) :]
    return data[:position]  # truncate


@settings(max_examples=800, deadline=None)
@given(
    index=st.integers(0, len(REAL_LINES) + len(JSON_LINES) - 1),
    position=st.integers(0, 2000),
    action=st.sampled_from(["replace", "insert", "delete", "truncate"]),
    value=st.one_of(
        st.binary(min_size=1, max_size=8),
        st.sampled_from(
            [
                b"\t",
                b"-",
                b"(empty)",
                b"XXXXXXXXXX.XXXXXX",
                b"99999",
                b"-1",
                b'"',
                b"{",
                b"}",
                b"null",
                b"1e309",
                b"\\x09",
                b"\xff",
                b"T",
                b",",
            ]
        ),
    ),
)
def test_mutated_real_lines_are_accounted_for(
    index: int, position: int, action: str, value: bytes
) -> None:
    if index < len(REAL_LINES):
        base = REAL_LINES[index]
        line = RawLine(
            payload=_mutate(base.payload, position, action, value).replace(b"\n", b""),
            source=base.source,
            context=base.context,
        )
    else:
        payload = _mutate(JSON_LINES[index - len(REAL_LINES)], position, action, value)
        line = raw_line(payload.replace(b"\n", b""))
    _accounted(line)


def test_unmutated_json_lines_are_events() -> None:
    for payload in JSON_LINES:
        assert isinstance(run_stages(raw_line(payload)), NormalizedEvent)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(st.binary(max_size=120), min_size=1, max_size=60))
def test_pipeline_conserves_arbitrary_input(payloads: list[bytes]) -> None:
    lines = [
        raw_line(p.replace(b"\n", b""), REAL_LINES[0].context, line=i)
        for i, p in enumerate(payloads)
    ]
    lines += REAL_LINES[:5]
    pipeline = TestPipeline()
    events, dead, _ = pipeline | beam.Create(lines) | EventStages()
    total = (
        events | "E" >> beam.Map(lambda _: 1),
        dead | "D" >> beam.Map(lambda _: 1),
    ) | beam.Flatten()
    assert_that(total | beam.combiners.Count.Globally(), equal_to([len(lines)]))
    pipeline.run().wait_until_finish()
