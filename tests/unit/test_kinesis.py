"""`ReadFromKinesis` against a real Kinesis endpoint: moto's server on 127.0.0.1.

Most tests drive the splittable DoFn directly, the way a runner does: a
restriction in, ``process`` run with a tracker and a watermark estimator, the
residual of each checkpoint passed through the restriction coder and resumed,
often by a fresh DoFn instance (as after a restart, with no cached iterator).
One test runs the transform in a Beam pipeline on the DirectRunner in streaming
mode. moto does not throttle, expire iterators, or reshard as AWS does; the
tests that need those turn on the server-side patches of `kinesis_server`
(named in each test), which make the server itself answer as AWS would.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import FixedWindows
from apache_beam.utils.timestamp import Timestamp

from schemas.errors import ValidationError
from schemas.records import SourcePosition
from tests.unit.kinesis_server import REGION, MotoKinesis, aws_resharding, inject_errors
from transforms.kinesis import (
    KinesisReadConfig,
    KinesisRestriction,
    ReadFromKinesis,
    ShardInfo,
    StartPosition,
    _KinesisRestrictionProvider,
    _KinesisTracker,
    _ReadKinesisFn,
    _RestrictionCoder,
    initial_restriction,
    plan_discovery,
    readable_shards,
    record_lines,
    split_restriction,
)

# A real moto_server on 127.0.0.1 speaks Kinesis to these tests (fast enough for the unit layer).
pytestmark = pytest.mark.integration

HALF = 2**127


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoKinesis]:
    server = MotoKinesis()
    yield server
    server.stop()


@dataclass
class Stream:
    name: str
    shards: list[dict[str, Any]]


@pytest.fixture
def stream(moto: MotoKinesis) -> Stream:
    name = f"ot-{uuid.uuid4().hex[:10]}"
    return Stream(name, moto.create_stream(name, shards=2))


def config(moto: MotoKinesis, stream: Stream, **overrides: Any) -> KinesisReadConfig:
    """Fast settings for tests: short polls and checkpoints, a bounded read."""
    settings: dict[str, Any] = {
        "stream": stream.name,
        "region": REGION,
        "endpoint": moto.endpoint,
        "stop_when_caught_up": True,
        "poll_seconds": 0.02,
        "checkpoint_seconds": 0.3,
        "discover_seconds": 0.05,
        "idle_allowance_seconds": 0.0,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.4,
    }
    settings.update(overrides)
    return KinesisReadConfig(**settings)


@dataclass
class Step:
    """One ``process`` call: what it emitted, the residual to resume, the watermark."""

    values: list[Any]
    residual: KinesisRestriction | None
    watermark: Timestamp | None


def process_once(
    fn: _ReadKinesisFn,
    cfg: KinesisReadConfig,
    restriction: KinesisRestriction,
    watermark: Timestamp | None = None,
    split_after: int | None = None,
) -> Step:
    """Run ``process`` as a runner would; ``split_after`` checkpoints it mid-read."""
    tracker = ThreadsafeRestrictionTracker(_KinesisTracker(restriction))
    estimator = ManualWatermarkEstimator(watermark)
    values: list[Any] = []
    split = None
    for value in fn.process(
        cfg, tracker=RestrictionTrackerView(tracker), watermark_estimator=estimator
    ):
        values.append(value)
        if split_after is not None and len(values) == split_after:
            split = tracker.try_split(0)  # what a runner's checkpoint request does
    if split is not None:
        residual: KinesisRestriction | None = split[1]
    else:
        deferred = tracker.deferred_status()
        residual = deferred[0] if deferred else None
    if residual is None or split is not None:
        tracker.check_done()
    return Step(values, residual, estimator.current_watermark())


def roundtrip(restriction: KinesisRestriction) -> KinesisRestriction:
    coder = _RestrictionCoder()
    decoded: KinesisRestriction = coder.decode(coder.encode(restriction))
    assert decoded == restriction
    return decoded


def new_fn(cfg: KinesisReadConfig) -> _ReadKinesisFn:
    fn = _ReadKinesisFn(cfg)
    fn.setup()
    return fn


@dataclass
class Run:
    values: list[Any] = field(default_factory=list)
    steps: int = 0
    watermark: Timestamp | None = None
    last: KinesisRestriction | None = None

    @property
    def payloads(self) -> list[bytes]:
        return [v.value.payload for v in self.values]


def drain(
    cfg: KinesisReadConfig,
    restriction: KinesisRestriction,
    fn: _ReadKinesisFn | None = None,
    fresh: bool = False,
    max_steps: int = 200,
) -> Run:
    """Resume checkpoints until the restriction is done; ``fresh``: a new DoFn each time."""
    run = Run()
    current: KinesisRestriction | None = restriction
    fn = fn or new_fn(cfg)
    while current is not None:
        run.steps += 1
        assert run.steps <= max_steps, "the read never finished"
        if fresh:
            fn = new_fn(cfg)
        step = process_once(fn, cfg, current, run.watermark)
        run.values += step.values
        run.watermark = step.watermark
        run.last = current
        current = roundtrip(step.residual) if step.residual is not None else None
    return run


def whole_stream(cfg: KinesisReadConfig) -> KinesisRestriction:
    return _KinesisRestrictionProvider().initial_restriction(cfg)


def left_shard(cfg: KinesisReadConfig) -> KinesisRestriction:
    """The restriction that owns the first shard's hash range (and so only that shard)."""
    left, _ = split_restriction(whole_stream(cfg))
    assert len(left.shards) == 1
    return left


def put_many(moto: MotoKinesis, stream: Stream, prefix: str, count: int, shard: int) -> list[bytes]:
    payloads = [f"{prefix}-{i}".encode() for i in range(count)]
    for payload in payloads:
        moto.put(stream.name, payload, stream.shards[shard])
    return payloads


def assert_exactly_once(got: list[bytes], expected: list[bytes]) -> None:
    duplicates = [p for p, n in Counter(got).items() if n > 1]
    assert not duplicates, f"read twice: {duplicates}"
    assert sorted(got) == sorted(expected)


# --- configuration -------------------------------------------------------------------


def test_uri_parses_every_option() -> None:
    cfg = KinesisReadConfig.from_uri(
        "kinesis://ot-sensors?region=eu-central-1&endpoint=http://127.0.0.1:4566"
        "&start=at_timestamp&timestamp=2026-01-02T03:04:05Z&limit=500"
        "&stop_when_caught_up=true&max_records=10&split_lines=false&ordered=1"
        "&poll_seconds=0.5&checkpoint_seconds=3&idle_allowance=2&discover_seconds=30"
        "&backoff_seconds=0.1&backoff_max_seconds=4"
    )
    assert cfg == KinesisReadConfig(
        stream="ot-sensors",
        region="eu-central-1",
        endpoint="http://127.0.0.1:4566",
        start=StartPosition.AT_TIMESTAMP,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        limit=500,
        stop_when_caught_up=True,
        max_records=10,
        split_lines=False,
        ordered=True,
        poll_seconds=0.5,
        checkpoint_seconds=3.0,
        idle_allowance_seconds=2.0,
        discover_seconds=30.0,
        backoff_base_seconds=0.1,
        backoff_max_seconds=4.0,
    )
    assert cfg.uri == "kinesis://ot-sensors"


def test_uri_defaults_and_region_from_the_environment() -> None:
    cfg = KinesisReadConfig.from_uri("kinesis://s", environ={"AWS_REGION": "us-west-2"})
    assert (cfg.region, cfg.start, cfg.limit, cfg.endpoint) == (
        "us-west-2",
        StartPosition.TRIM_HORIZON,
        100,
        None,
    )
    assert not cfg.bounded
    # A '+' in an offset arrives as a space when the query is not escaped.
    offset = KinesisReadConfig.from_uri(
        "kinesis://s?region=r&start=AT_TIMESTAMP&timestamp=2026-01-02T05:04:05+02:00", environ={}
    )
    assert offset.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("uri", "field", "message"),
    [
        ("kinesis://s?region=r&colour=blue", "colour", "unknown option"),
        ("kinesis://s?region=r&region=q", "region", "given twice"),
        ("kinesis://s?region=r&start=earliest", "--input", "start must be"),
        ("kinesis://s?region=r&start=at_timestamp", "--input", "timestamp is required"),
        ("kinesis://s?region=r&timestamp=2026-01-01T00:00:00Z", "--input", "only then"),
        ("kinesis://s?region=r&start=at_timestamp&timestamp=yesterday", "--input", "ISO 8601"),
        ("kinesis://s?region=r&limit=0", "--input", "limit must be 1-10000"),
        ("kinesis://s?region=r&limit=10001", "--input", "limit must be 1-10000"),
        ("kinesis://s?region=r&limit=many", "--input", "invalid literal"),
        ("kinesis://s?region=r&endpoint=127.0.0.1:4566", "--input", "http(s) URL"),
        ("kinesis://s?region=r&stop_when_caught_up=maybe", "--input", "true or false"),
        ("kinesis://s?region=r&poll_seconds=0", "--input", "must be positive"),
        ("kinesis://s", "--input", "region is required"),
        ("kinesis://bad name?region=r", "--input", "stream name"),
        ("kinesis:///path?region=r", "--input", "expected kinesis://STREAM"),
        ("kinesis://s/path?region=r", "--input", "no path"),
    ],
)
def test_uri_rejects_bad_configuration(uri: str, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        KinesisReadConfig.from_uri(uri, environ={})
    assert raised.value.field == field
    assert message in str(raised.value)


# --- pure logic ----------------------------------------------------------------------


def test_record_lines_split_a_batched_record_into_positioned_lines() -> None:
    counters: Counter[str] = Counter()
    data = b'{"a":1}\r\n\n{"b":2}\n   \n{"c":3}\n'
    lines = record_lines(data, uri="kinesis://s", shard="sh-1", sequence="42", counters=counters)
    assert [(line.payload, line.source.line, line.source.offset) for line in lines] == [
        (b'{"a":1}', 1, 0),
        (b'{"b":2}', 3, 10),
        (b'{"c":3}', 5, 22),
    ]
    assert all(data[line.source.offset or 0 :].startswith(line.payload) for line in lines)
    assert lines[0].source == SourcePosition(
        uri="kinesis://s", shard="sh-1", sequence="42", line=1, offset=0
    )
    assert str(lines[0].source) == "kinesis://s#sh-1@42"
    assert counters == Counter(blank_lines=2)  # the piece after the final newline is no line


def test_record_lines_carry_zeek_headers_inside_the_record() -> None:
    counters: Counter[str] = Counter()
    data = b"#separator \\x09\n#fields\tts\tid.orig_h\n#types\ttime\taddr\n1.0\t10.0.0.1\n#close\n"
    (line,) = record_lines(data, uri="kinesis://s", shard="a", sequence="1", counters=counters)
    assert line.payload == b"1.0\t10.0.0.1"
    assert line.context == (b"#separator \\x09", b"#fields\tts\tid.orig_h", b"#types\ttime\taddr")
    assert counters == Counter(header_lines=4)


def shard_info(
    shard_id: str, low: int, high: int, *parents: str, end: str | None = None
) -> ShardInfo:
    return ShardInfo(
        shard_id=shard_id, start_hash=low, end_hash=high, parents=parents, ending_sequence=end
    )


LINEAGE = [
    shard_info("p", 0, 2**128 - 1, end="9"),  # closed parent of a and b
    shard_info("a", 0, HALF - 1, "p"),
    shard_info("b", HALF, 2**128 - 1, "p"),
]


def test_initial_restriction_splits_one_per_open_shard() -> None:
    cfg = KinesisReadConfig(stream="s", region="r")
    whole = initial_restriction(LINEAGE, cfg)
    assert [cp.shard_id for cp in whole.shards] == ["a", "b", "p"]
    assert [cp.shard_id for cp in readable_shards(whole)] == ["p"]  # children wait
    left, right = split_restriction(whole)
    assert (left.low, left.high, right.low, right.high) == (
        "0",
        str(HALF - 1),
        str(HALF),
        str(2**128 - 1),
    )
    # The closed parent goes where its starting hash key lies; the child in the other
    # range only waits for parents its own restriction reads.
    assert [cp.shard_id for cp in left.shards] == ["a", "p"]
    assert [cp.shard_id for cp in readable_shards(left)] == ["p"]
    assert [cp.shard_id for cp in readable_shards(right)] == ["b"]
    assert roundtrip(left) == left


def test_latest_skips_closed_shards_and_discovery_adopts_children() -> None:
    cfg = KinesisReadConfig(stream="s", region="r", start=StartPosition.LATEST)
    start = initial_restriction(LINEAGE[:1], KinesisReadConfig(stream="s", region="r"))
    assert start.finished == ()
    latest = initial_restriction(LINEAGE, cfg)
    assert latest.finished == ("p",)
    assert {cp.start for cp in latest.shards} == {StartPosition.LATEST}
    # The parent was listed open at start; a later listing shows it closed, with children.
    opened = initial_restriction([shard_info("p", 0, 2**128 - 1)], cfg)
    claims = plan_discovery(opened, LINEAGE)
    assert [type(c).__name__ for c in claims] == ["_Closed", "_Adopt"]
    tracker = _KinesisTracker(opened)
    for claim in claims:
        assert tracker.try_claim(claim)
    after = tracker.current_restriction()
    assert [cp.shard_id for cp in readable_shards(after)] == ["p"]
    children = [cp for cp in after.shards if cp.shard_id != "p"]
    assert {cp.start for cp in children} == {StartPosition.TRIM_HORIZON}


# --- reading from the moto server ----------------------------------------------------


def test_checkpoint_mid_read_resumes_after_the_last_sequence_number(
    moto: MotoKinesis, stream: Stream
) -> None:
    expected = put_many(moto, stream, "left", 12, 0) + put_many(moto, stream, "right", 12, 1)
    moto.put(stream.name, b"batch-1\nbatch-2\nbatch-3\n", stream.shards[0])
    expected += [b"batch-1", b"batch-2", b"batch-3"]
    cfg = config(moto, stream, limit=5, ordered=True)
    start = whole_stream(cfg)

    # The runner checkpoints the read after 7 lines: the process stops claiming.
    first = process_once(new_fn(cfg), cfg, start, split_after=7)
    assert len(first.values) == 7
    assert first.residual is not None
    resumed = roundtrip(first.residual)
    assert sum(1 for cp in resumed.shards if cp.after_sequence is not None) >= 1

    # A new DoFn (no cached iterator) resumes after each shard's last sequence number.
    rest = drain(cfg, resumed, fresh=True)
    got = [v.value.payload for v in first.values] + rest.payloads
    assert_exactly_once(got, expected)
    for prefix in (b"left", b"right"):
        in_order = [p for p in got if p.startswith(prefix)]
        assert in_order == sorted(in_order, key=lambda p: int(p.split(b"-")[1]))
    # Lines of one record share its position and keep their line numbers.
    batch = [v.value.source for v in first.values + rest.values if v.value.payload[:5] == b"batch"]
    assert len({(s.shard, s.sequence) for s in batch}) == 1
    assert [s.line for s in batch] == [1, 2, 3]


def test_pipeline_on_the_direct_runner_in_streaming_mode(moto: MotoKinesis, stream: Stream) -> None:
    before = time.time()
    expected = put_many(moto, stream, "zeek", 7, 0) + put_many(moto, stream, "eve", 5, 1)
    moto.put(stream.name, b"agent-1\nagent-2\n", stream.shards[1])
    after = time.time()
    cfg = config(moto, stream, limit=4, checkpoint_seconds=0.2)

    pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
    lines = pipeline | "Read" >> ReadFromKinesis(cfg)
    assert_that(
        lines | "Payload" >> beam.Map(lambda line: line.payload),
        equal_to([*expected, b"agent-1", b"agent-2"]),
        label="EveryLineOnce",
    )
    stamped = lines | "Stamp" >> beam.Map(
        lambda line, ts=beam.DoFn.TimestampParam: before - 1 <= float(ts) <= after + 1
    )
    assert_that(stamped, equal_to([True] * 14), label="ArrivalTimes")
    per_shard = (
        lines
        | "Window" >> beam.WindowInto(FixedWindows(3600))
        | "Shard" >> beam.Map(lambda line: (line.source.shard, line.payload))
        | "Count" >> beam.combiners.Count.PerKey()
    )
    assert_that(
        per_shard,
        equal_to([("shardId-000000000000", 7), ("shardId-000000000001", 7)]),
        label="PerShardInWindows",
    )
    result = pipeline.run()
    result.wait_until_finish()

    metrics = result.metrics().query(MetricsFilter())
    counters = {c.key.metric.name: c.committed for c in metrics["counters"]}
    assert counters["read.in"] == counters["read.out"] == 14
    assert counters["kinesis.records"] == 13
    assert counters["kinesis.get_records_calls"] >= 5  # limit 4: at least 2 + 3 calls
    (behind,) = [d.committed for d in metrics["distributions"]]
    assert behind.count == counters["kinesis.get_records_calls"]
    assert behind.min >= 0
    gauges = {g.key.metric.name: g.committed.value for g in metrics["gauges"]}
    assert gauges["kinesis.millis_behind_latest"] >= 0


def test_resharding_reads_the_parent_before_its_children(moto: MotoKinesis, stream: Stream) -> None:
    # moto would keep routing records to the closed parent: aws_resharding makes the
    # server split as AWS does (children get the new records, the parent keeps its own).
    with aws_resharding():
        parent_records = put_many(moto, stream, "parent", 9, 0)
        other = put_many(moto, stream, "other", 3, 1)
        cfg = config(moto, stream, limit=4, checkpoint_seconds=0.01)
        left, right = _KinesisRestrictionProvider().split(cfg, whole_stream(cfg))
        fn = new_fn(cfg)

        first = process_once(fn, cfg, left)
        assert [v.value.payload for v in first.values] == parent_records[:4]
        assert first.residual is not None

        parent = stream.shards[0]
        moto.client.split_shard(
            StreamName=stream.name,
            ShardToSplit=parent["ShardId"],
            NewStartingHashKey=str(HALF // 2),
        )
        children = [s for s in moto.shards(stream.name) if s.get("ParentShardId")]
        assert len(children) == 2
        child_records: list[bytes] = []
        for index, child in enumerate(children):
            for i in range(5):
                payload = f"child{index}-{i}".encode()
                assert moto.put(stream.name, payload, child)["shard"] == child["ShardId"]
                child_records.append(payload)

        rest = drain(cfg, roundtrip(first.residual), fn=fn)
        got = [v.value.payload for v in first.values] + rest.payloads
        assert_exactly_once(got, parent_records + child_records)
        last_parent = max(got.index(p) for p in parent_records)
        first_child = min(got.index(p) for p in child_records)
        assert last_parent < first_child, "a child was read before its parent was drained"
        sources = {v.value.source.shard for v in rest.values if v.value.payload[:5] == b"child"}
        assert sources == {c["ShardId"] for c in children}
        assert fn._metrics.totals["shards_finished"] == 1
        assert fn._metrics.totals["shards_started"] == 2
        assert rest.last is not None and parent["ShardId"] in rest.last.finished

        # The other restriction never saw the split.
        assert_exactly_once(drain(cfg, right).payloads, other)


def test_merge_reads_both_parents_before_the_child(moto: MotoKinesis, stream: Stream) -> None:
    with aws_resharding():
        parents = put_many(moto, stream, "p0", 4, 0) + put_many(moto, stream, "p1", 4, 1)
        moto.client.update_shard_count(
            StreamName=stream.name, TargetShardCount=1, ScalingType="UNIFORM_SCALING"
        )
        (child,) = [s for s in moto.shards(stream.name) if s.get("AdjacentParentShardId")]
        children = [f"merged-{i}".encode() for i in range(6)]
        for payload in children:
            moto.put(stream.name, payload, child)
        cfg = config(moto, stream, limit=3, ordered=True)
        got = drain(cfg, whole_stream(cfg)).payloads
    assert_exactly_once(got, parents + children)
    assert max(got.index(p) for p in parents) < min(got.index(c) for c in children)


def test_throttling_backs_off_and_completes(moto: MotoKinesis, stream: Stream) -> None:
    expected = put_many(moto, stream, "slow", 6, 0)
    cfg = config(moto, stream, limit=10, backoff_base_seconds=0.1)
    only_left = left_shard(cfg)
    fn = new_fn(cfg)
    # moto never throttles: the server answers the first three GetRecords with the
    # error AWS sends, over HTTP, so botocore parses it as it would AWS's.
    with inject_errors("get_records", "ProvisionedThroughputExceededException", 3) as log:
        run = drain(cfg, only_left, fn=fn)
    assert_exactly_once(run.payloads, expected)
    assert fn._metrics.totals["throttled"] == 3
    assert len(log.failed) == 3
    # Exponential backoff with equal jitter: each wait is at least half its ceiling.
    gaps = [b - a for a, b in zip(log.calls, log.calls[1:4], strict=False)]
    for gap, ceiling in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert gap >= ceiling / 2 - 0.005, (gaps, ceiling)


def test_expired_iterator_is_refreshed_at_the_checkpoint(moto: MotoKinesis, stream: Stream) -> None:
    first_batch = put_many(moto, stream, "early", 5, 0)
    cfg = config(moto, stream, stop_when_caught_up=False, checkpoint_seconds=0.01)
    restriction = left_shard(cfg)
    fn = new_fn(cfg)
    first = process_once(fn, cfg, restriction)
    assert [v.value.payload for v in first.values] == first_batch
    assert first.residual is not None
    later = put_many(moto, stream, "late", 5, 0)

    # The DoFn kept its iterator; the server now says it expired (moto never does).
    with inject_errors("get_records", "ExpiredIteratorException", 1) as log:
        bounded = config(moto, stream)
        second = drain(bounded, first.residual, fn=fn)
    assert len(log.failed) == 1
    assert_exactly_once(second.payloads, later)
    assert fn._metrics.totals["expired_iterators"] == 1
    assert fn._metrics.totals["shard_iterators"] == 2  # the first, then the refreshed one


def test_at_timestamp_reads_what_arrived_from_then_on(moto: MotoKinesis, stream: Stream) -> None:
    put_many(moto, stream, "before", 3, 0)
    put_many(moto, stream, "before", 2, 1)
    time.sleep(0.05)
    since = datetime.now(UTC)
    time.sleep(0.05)
    after = put_many(moto, stream, "after", 3, 0) + put_many(moto, stream, "after-b", 2, 1)
    cfg = config(moto, stream, start=StartPosition.AT_TIMESTAMP, timestamp=since)
    run = Run()
    for part in _KinesisRestrictionProvider().split(cfg, whole_stream(cfg)):
        run.values += drain(cfg, part).values
    assert_exactly_once(run.payloads, after)
    assert all(float(v.timestamp) >= since.timestamp() for v in run.values)


def test_latest_reads_only_new_records_and_survives_a_restart(
    moto: MotoKinesis, stream: Stream
) -> None:
    put_many(moto, stream, "old", 4, 0)
    cfg = config(
        moto, stream, start=StartPosition.LATEST, stop_when_caught_up=False, checkpoint_seconds=0.01
    )
    restriction = whole_stream(cfg)
    first = process_once(new_fn(cfg), cfg, restriction)
    assert first.values == []
    assert first.residual is not None
    pinned = roundtrip(first.residual)
    # LATEST was pinned to the time its iterators were taken.
    assert {cp.start for cp in pinned.shards} == {StartPosition.AT_TIMESTAMP}
    time.sleep(0.05)
    new = put_many(moto, stream, "new", 3, 0) + put_many(moto, stream, "new-b", 2, 1)

    # A restarted reader (no iterator kept) still reads exactly what came after the start.
    bounded = config(moto, stream, start=StartPosition.LATEST)
    assert_exactly_once(drain(bounded, pinned, fresh=True).payloads, new)


def test_watermark_follows_the_backlog_and_advances_on_an_idle_shard(
    moto: MotoKinesis, stream: Stream
) -> None:
    put_many(moto, stream, "backlog", 6, 0)
    arrivals = [
        r["ApproximateArrivalTimestamp"].timestamp()
        for r in moto.client.get_records(
            ShardIterator=moto.client.get_shard_iterator(
                StreamName=stream.name,
                ShardId=stream.shards[0]["ShardId"],
                ShardIteratorType="TRIM_HORIZON",
            )["ShardIterator"]
        )["Records"]
    ]
    time.sleep(0.1)
    cfg = config(
        moto, stream, limit=2, ordered=True, stop_when_caught_up=False, checkpoint_seconds=0.01
    )
    fn = new_fn(cfg)
    first = process_once(fn, cfg, whole_stream(cfg))
    # Shard 1 is idle (caught up) and moved to "now"; shard 0 still has a backlog and
    # holds the watermark at the arrival time of the last record it read.
    assert first.residual is not None
    marks = {cp.shard_id: cp.watermark for cp in first.residual.shards}
    assert marks[stream.shards[1]["ShardId"]] is not None
    assert marks[stream.shards[1]["ShardId"]] > arrivals[-1]
    assert first.watermark == Timestamp.of(arrivals[1])

    started = time.time()
    rest = drain(config(moto, stream, limit=2, ordered=True), first.residual, fn=fn)
    assert len(rest.values) == 4
    # Both shards caught up: the watermark is "now" (minus the allowance, 0 here).
    assert rest.watermark is not None
    assert float(rest.watermark) >= started
    assert float(rest.watermark) > arrivals[-1]


def test_max_records_stops_a_bounded_read(moto: MotoKinesis, stream: Stream) -> None:
    put_many(moto, stream, "a", 5, 0)
    put_many(moto, stream, "b", 5, 1)
    cfg = config(moto, stream, stop_when_caught_up=False, max_records=7, limit=3)
    (only,) = list(_KinesisRestrictionProvider().split(cfg, whole_stream(cfg)))
    run = drain(cfg, only)
    assert len(run.values) == 7
    assert len(set(run.payloads)) == 7


def test_read_from_kinesis_takes_a_uri(moto: MotoKinesis, stream: Stream) -> None:
    transform = ReadFromKinesis(f"kinesis://{stream.name}?region={REGION}&endpoint={moto.endpoint}")
    assert transform.config.stream == stream.name
    assert transform.config.endpoint == moto.endpoint


def test_publish_frames_zeek_files_into_records_that_decode_on_their_own(tmp_path) -> None:
    from beam_pipelines.publish import file_records

    log = tmp_path / "modbus.log"
    header = ["#separator \\x09", "#fields\tts\tuid", "#types\ttime\tstring"]
    rows = [f"1700000000.{i:06d}\tC{i}" for i in range(5)]
    log.write_text("\n".join([*header, "#open\t2026-11-20", *rows, "#close\t2026-11-20"]) + "\n")
    records = list(file_records(str(log), lines_per_record=2))
    assert [count for _, count in records] == [2, 2, 1]
    for data, _ in records:
        lines = record_lines(data, uri="kinesis://s", shard="shard-0", sequence="1")
        assert all(line.context == tuple(h.encode() for h in header) for line in lines)
    decoded = [
        line.payload.decode()
        for data, _ in records
        for line in record_lines(data, uri="kinesis://s", shard="shard-0", sequence="1")
    ]
    assert decoded == rows  # every data line once, in order; #open/#close dropped


def test_publish_then_read_gives_the_same_events_as_the_files(
    moto: MotoKinesis, stream: Stream, tmp_path
) -> None:
    """`otsec publish`'s framing through the reader and stages 1-3: the events of the files."""
    from beam_pipelines.generate import GeneratorConfig, generate
    from beam_pipelines.inputs import resolve_inputs
    from beam_pipelines.publish import publish_files
    from tests.conftest import run_stages
    from transforms.sources import read_lines

    generate(GeneratorConfig(out_dir=str(tmp_path), events=400, seed=5))
    files = resolve_inputs([str(tmp_path / "sensors")])
    report = publish_files(files, config(moto, stream), lines_per_record=7)
    assert report.lines == 400 and report.files == len(files)

    def outcomes(lines: Any) -> list[str]:
        return [getattr(run_stages(line), "event_id", "dead letter") for line in lines]

    pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
    read = pipeline | ReadFromKinesis(config(moto, stream, limit=10))
    from_files = outcomes(line for path in files for line in read_lines(path))
    events = read | beam.Map(lambda line: getattr(run_stages(line), "event_id", "dead letter"))
    assert_that(events, equal_to(from_files))
    pipeline.run().wait_until_finish()
