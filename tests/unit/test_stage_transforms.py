"""Each stage as a Beam transform: main output, dead letters and counters on TestPipeline."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.event_pipeline import EventStages
from schemas.records import DecodedRecord, RawLine, SourceFormat
from tests.conftest import ZEEK_TSV, raw_line
from transforms._stage import METRICS_NAMESPACE
from transforms.decode import Decode, decode_line
from transforms.normalize import Normalize, normalize_record
from transforms.sources import ReadSensorFiles, read_lines
from transforms.validate import Validate, validate_record

MODBUS = str(ZEEK_TSV / "zeek_modbus_2016.log")


def counters(result) -> dict[str, int]:
    found: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))[
        "counters"
    ]:
        found[counter.key.metric.name] = found.get(counter.key.metric.name, 0) + counter.committed
    return found


def good_lines(n: int = 5) -> list[RawLine]:
    return list(read_lines(MODBUS))[:n]


BAD = [
    raw_line(b"\xff\xfe\x00garbage", line=101),
    raw_line(b'{"event_type": "modbus"', line=102),
]


def test_decode_transform() -> None:
    lines = good_lines() + BAD
    pipeline = TestPipeline()
    out = pipeline | beam.Create(lines) | Decode()
    assert_that(
        out.main | "Kinds" >> beam.Map(lambda r: r.kind),
        equal_to(["zeek.modbus"] * 5),
        label="main",
    )
    assert_that(
        out.dead_letters
        | "Where" >> beam.Map(lambda d: (d.stage, d.error_class, d.source.line, d.payload)),
        equal_to(
            [
                ("decode", "ValidationError", 101, BAD[0].payload),
                ("decode", "ValidationError", 102, BAD[1].payload),
            ]
        ),
        label="dead_letters",
    )
    result = pipeline.run()
    result.wait_until_finish()
    assert counters(result) == {
        "decode.in": 7,
        "decode.out": 5,
        "decode.dead_letter.ValidationError": 2,
    }


def test_validate_transform() -> None:
    decoded = [decode_line(line) for line in good_lines(3)]
    broken = DecodedRecord(
        kind="zeek.modbus",
        source_format=SourceFormat.ZEEK_TSV,
        fields=dict(decoded[0].fields, **{"id.orig_p": "99999"}),
        origin=decoded[0].origin,
    )
    pipeline = TestPipeline()
    out = pipeline | beam.Create([*decoded, broken]) | Validate()
    assert_that(
        out.main | "Ports" >> beam.Map(lambda r: r.record.orig_p),
        equal_to([2578] * 3),
        label="main",
    )
    assert_that(
        out.dead_letters | "Fields" >> beam.Map(lambda d: (d.stage, d.field, d.record_kind)),
        equal_to([("validate", "id.orig_p", "zeek.modbus")]),
        label="dead_letters",
    )
    result = pipeline.run()
    result.wait_until_finish()
    assert counters(result) == {
        "validate.in": 4,
        "validate.out": 3,
        "validate.dead_letter.ValidationError": 1,
    }


def test_normalize_transform_routes_unexpected_errors() -> None:
    validated = [validate_record(decode_line(line)) for line in good_lines(2)]
    # A record whose kind has no mapping: a bug, so an UnexpectedError with a traceback.
    odd = type(validated[0])(
        kind="zeek.nonexistent",
        source_format=SourceFormat.ZEEK_TSV,
        record=None,
        origin=validated[0].origin,
    )
    expected = [normalize_record(v).event_id for v in validated]
    pipeline = TestPipeline()
    out = pipeline | beam.Create([*validated, odd]) | Normalize()
    assert_that(
        out.main | "Ids" >> beam.Map(lambda e: e.event_id), equal_to(expected), label="main"
    )
    assert_that(
        out.dead_letters
        | "Classes" >> beam.Map(lambda d: (d.error_class, "Traceback" in (d.traceback or ""))),
        equal_to([("UnexpectedError", True)]),
        label="dead_letters",
    )
    result = pipeline.run()
    result.wait_until_finish()
    assert counters(result) == {
        "normalize.in": 3,
        "normalize.out": 2,
        "normalize.dead_letter.UnexpectedError": 1,
    }


def test_read_and_stages_account_for_every_line(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"event_type":"flow"}\n\n\xff\xfe\n')
    pipeline = TestPipeline()
    read = pipeline | ReadSensorFiles([MODBUS, str(ZEEK_TSV / "zeek_dnp3_current.log"), str(bad)])
    events, dead, _ = read.main | EventStages()
    assert_that(
        events | "CountEvents" >> beam.combiners.Count.Globally(), equal_to([300]), label="events"
    )
    assert_that(
        dead | "CountDead" >> beam.combiners.Count.Globally(), equal_to([66 + 2]), label="dead"
    )
    result = pipeline.run()
    result.wait_until_finish()
    found = counters(result)
    assert found["read.in"] == found["read.out"] == 300 + 66 + 2
    assert found["read.blank_lines"] == 1 and found["read.files"] == 3
    assert found["decode.dead_letter.ValidationError"] == 1  # \xff\xfe
    assert (
        found["validate.dead_letter.ValidationError"] == 66 + 1
    )  # canonified ts, flow without fields
    assert found["normalize.out"] == 300


def test_missing_file_is_a_read_dead_letter(tmp_path) -> None:
    pipeline = TestPipeline()
    read = pipeline | ReadSensorFiles([str(tmp_path / "gone.log")])
    assert_that(
        read.dead_letters
        | beam.Map(lambda d: (d.stage, d.error_class, d.source.uri.endswith("gone.log"))),
        equal_to([("read", "NotFoundError", True)]),
    )
    result = pipeline.run()
    result.wait_until_finish()
    assert counters(result)["read.dead_letter.NotFoundError"] == 1
