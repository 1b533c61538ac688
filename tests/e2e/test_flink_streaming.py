"""The streaming job for real: a 2-shard Kinesis stream (``moto_server``) through the local
Flink into PostgreSQL and the ClickHouse engine, submitted and stopped with the ``otsec``
command, and the batch job on Flink against DirectRunner.

What the stream receives is ``otsec generate`` output (plant traffic with attacks, malformed
records and duplicates), so the expected outcome comes from the same files run through the
batch job on DirectRunner: the same event ids, the same dead letters. The embedded ClickHouse
engine opens in one process at a time, so the events are counted after each stop, when the
job's SDK harness has exited; while the job runs, progress shows in PostgreSQL (alerts,
dead letters). A marker event on each shard, matching a CTI snapshot published while the job
runs, tells that the shard has been worked through.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from beam_pipelines.stores import chdb_holder
from cti.indicators import make_indicator
from cti.snapshot import indicators_to_table, write_snapshot
from runners.flink import FlinkSetup, LocalFlinkCluster, find_jobs
from runners.local_services import moto_kinesis, postgres_server, private_flink
from tests.e2e.test_cli import otsec

pytestmark = [
    pytest.mark.flink,
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.slow,
]

REGION = "eu-west-1"
# TEST-NET-2 addresses: what the CTI snapshot published mid-run lists, one per marker event.
MARKERS = ("198.51.100.77", "198.51.100.78", "198.51.100.79", "198.51.100.80")
PLANT_HOST = "10.10.1.10"


class Stack:
    """The services of this module."""

    def __init__(self, flink: FlinkSetup, kinesis: str, postgres: str, root: Path) -> None:
        self.flink = flink
        self.kinesis = kinesis
        self.postgres = postgres
        self.root = root
        self.client = boto3.session.Session().client(
            "kinesis", region_name=REGION, endpoint_url=kinesis
        )

    def where(self) -> list[str]:
        return ["--cache-dir", self.flink.cache_dir, "--run-dir", self.flink.run_dir]

    def new_database(self) -> str:
        """A fresh database on the server, for one test: its DSN."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.postgres, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.postgres.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("streaming")
    with (
        private_flink(root / "flink") as flink,
        moto_kinesis(root / "moto.log") as (kinesis, _),
        postgres_server(root / "pg") as postgres,
    ):
        yield Stack(flink, kinesis, postgres, root)


def _check(result: Any) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


def _generate(out: Path, events: int, seed: int) -> Path:
    _check(
        otsec(
            "generate",
            "--out",
            str(out),
            "--events",
            str(events),
            "--seed",
            str(seed),
            "--attack-rate",
            "0.01",
        )
    )
    return out


def _batch(stack: Stack, sensors: Path, assets: Path, data: Path) -> tuple[dict, set[str]]:
    """DirectRunner over the same files: its summary and the event ids it stored."""
    summary = data / "summary.json"
    _check(
        otsec(
            "run",
            "--input",
            str(sensors),
            "--data-dir",
            str(data),
            "--assets",
            str(assets),
            "--output",
            str(data / "events"),
            "--summary-json",
            str(summary),
        )
    )
    ids = {
        json.loads(line)["event_id"]
        for path in (data / "events").glob("events-*.jsonl")
        for line in path.open()
    }
    return json.loads(summary.read_text()), ids


def _wait(
    what: str | Callable[[], str], condition: Callable[[], bool], stack: Stack, timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            what = what() if callable(what) else what
            logs = LocalFlinkCluster(stack.flink).logs()
            tail = Path(logs[-1]).read_text().splitlines()[-40:] if logs else []
            pytest.fail(f"{what}: not within {timeout:.0f} s; {logs}:\n" + "\n".join(tail))
        time.sleep(1.0)


def _rows(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(sql).fetchall()


def _clickhouse(path: Path, sql: str) -> list[tuple]:
    """Query the embedded store once its holder (the stopped job's harness) let it go."""
    import clickhouse_connect

    deadline = time.monotonic() + 60
    while chdb_holder(str(path)) is not None:
        assert time.monotonic() < deadline, f"{path} still held by pid {chdb_holder(str(path))}"
        time.sleep(0.5)
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    try:
        return client.query(sql).result_rows
    finally:
        client.close()


def _marker_line(address: str) -> bytes:
    """A Suricata flow from a plant host to ``address``: unique content, so a unique event."""
    flow = int(time.time() * 1e6)
    return json.dumps(
        {
            "timestamp": "2026-11-20T09:00:00.000000+0000",
            "flow_id": flow,
            "event_type": "flow",
            "src_ip": PLANT_HOST,
            "src_port": 40000 + flow % 20000,
            "dest_ip": address,
            "dest_port": 443,
            "proto": "TCP",
            "flow": {
                "pkts_toserver": 3,
                "pkts_toclient": 2,
                "bytes_toserver": 300,
                "bytes_toclient": 200,
                "start": "2026-11-20T08:59:59.000000+0000",
                "end": "2026-11-20T09:00:00.000000+0000",
                "age": 1,
                "state": "closed",
            },
        }
    ).encode()


def _put_markers(stack: Stack, stream: str, addresses: tuple[str, str]) -> None:
    """One marker per shard: the shard's own starting hash key routes it there."""
    shards = stack.client.list_shards(StreamName=stream)["Shards"]
    assert len(shards) == 2
    for shard, address in zip(shards, addresses, strict=True):
        stack.client.put_record(
            StreamName=stream,
            Data=_marker_line(address),
            PartitionKey="marker",
            ExplicitHashKey=shard["HashKeyRange"]["StartingHashKey"],
        )


def _cti_alerts(dsn: str) -> set[str]:
    return {
        row[0]
        for row in _rows(
            dsn, "SELECT host(dst_ip) FROM alerts WHERE rule_id = 'OTSEC-CTI-OUTBOUND'"
        )
    }


def _submit(stack: Stack, stream: str, dsn: str, data: Path, name: str, *extra: str) -> str:
    out = _check(
        otsec(
            "flink",
            "submit",
            "--input",
            f"kinesis://{stream}?region={REGION}&endpoint={stack.kinesis}",
            "--postgres-dsn",
            dsn,
            "--clickhouse-dsn",
            f"chdb://{data / 'clickhouse'}",
            "--data-dir",
            str(data),
            "--cti-snapshot",
            str(data / "snapshots"),
            "--refresh-every",
            "2s",
            "--alert-delay",
            "2s",
            "--parallelism",
            "1",
            "--checkpoint-interval",
            "5s",
            "--job-name",
            name,
            *extra,
            *stack.where(),
            timeout=600,
        )
    )
    assert f"({name}): RUNNING" in out and "dashboard: http://127.0.0.1:" in out
    return out


def _stop(stack: Stack, name: str, savepoints: Path) -> str:
    out = _check(otsec("flink", "cancel", name, "--savepoint", str(savepoints), *stack.where()))
    return out.strip().rsplit(": ", 1)[1]


def test_streaming_job_lands_every_record_and_resumes_from_a_savepoint(
    stack: Stack, tmp_path: Path
) -> None:
    stream = f"sensors-{uuid.uuid4().hex[:6]}"
    stack.client.create_stream(StreamName=stream, ShardCount=2)
    first = _generate(tmp_path / "first", 10_000, seed=11)
    second = _generate(tmp_path / "second", 600, seed=12)
    expected_first, first_ids = _batch(
        stack, first / "sensors", first / "assets.csv", tmp_path / "b1"
    )
    expected_second, second_ids = _batch(
        stack, second / "sensors", first / "assets.csv", tmp_path / "b2"
    )
    assert expected_first["input_records"] == 10_000 and expected_first["duplicates_dropped"] > 0
    assert expected_first["dead_letters"]["total"] > 0

    dsn = stack.new_database()
    data = tmp_path / "job"
    _check(otsec("db", "migrate", "--postgres-dsn", dsn, "--data-dir", str(data)))
    _check(otsec("assets", "import", str(first / "assets.csv"), "--postgres-dsn", dsn))
    published = _check(
        otsec(
            "publish",
            "--to",
            f"kinesis://{stream}?region={REGION}&endpoint={stack.kinesis}",
            str(first / "sensors"),
        )
    )
    assert "published 10,000 lines of 11 files" in published

    # 1. The job starts with no threat intelligence and works through the backlog.
    name = f"otsec-stream-{uuid.uuid4().hex[:6]}"
    _submit(stack, stream, dsn, data, name)
    dead_first = expected_first["dead_letters"]["total"]
    _wait(
        "the dead letters of the backlog in PostgreSQL",
        lambda: _rows(dsn, "SELECT count(*) FROM dead_letters")[0][0] >= dead_first,
        stack,
    )
    # Threshold rules alert when their window closes: a minute of arrival time.
    missed: list = []

    def alerted() -> bool:
        missed[:] = _missed_attacks(first, dsn)
        return not missed

    _wait(lambda: f"an alert for every injected attack (missed: {missed})", alerted, stack)
    assert missed == []
    # 2. A CTI snapshot published while the job runs reaches it without a restart.
    snapshot = indicators_to_table(
        [make_indicator("ipv4", address, confidence=90, feed="test") for address in MARKERS]
    )
    write_snapshot(str(data / "snapshots"), snapshot)
    time.sleep(5)  # more than --refresh-every: the workers re-read the directory
    _put_markers(stack, stream, MARKERS[:2])
    _wait("the CTI alerts of both markers", lambda: set(MARKERS[:2]) <= _cti_alerts(dsn), stack)
    time.sleep(3)
    # 3. Stopped with a savepoint: ClickHouse, PostgreSQL and the dead letters hold every record.
    savepoint = _stop(stack, name, tmp_path / "savepoints")
    assert savepoint.startswith(f"file:{tmp_path / 'savepoints'}/savepoint-")
    stored = _clickhouse(data / "clickhouse", "SELECT event_id FROM ot_events")
    ids = [row[0] for row in stored]
    assert len(ids) == len(set(ids))  # nothing stored twice
    markers = set(ids) - first_ids
    assert len(markers) == 2 and first_ids <= set(ids)  # nothing lost
    assert len(ids) == expected_first["stored_events"] + 2
    dead = _rows(dsn, "SELECT stage, count(*) FROM dead_letters GROUP BY stage")
    assert dict(dead) == expected_first["dead_letters"]["by_stage"]
    assert (
        len(ids) + dead_first + expected_first["duplicates_dropped"] == 10_000 + 2
    )  # conservation: every record is an event, a dead letter or a dropped duplicate
    matched = _clickhouse(
        data / "clickhouse",
        "SELECT IPv6NumToString(dst_ip) FROM ot_events WHERE cti_max_confidence > 0",
    )
    assert sorted(row[0].removeprefix("::ffff:") for row in matched) == sorted(MARKERS[:2])

    # 4. Records put while the job is down are read after the resume, once.
    _check(
        otsec(
            "publish",
            "--to",
            f"kinesis://{stream}?region={REGION}&endpoint={stack.kinesis}",
            str(second / "sensors"),
        )
    )
    counts_before = dict(_rows(dsn, "SELECT alert_id, event_count FROM alerts"))
    # Resumed through the options for a Flink that is not the local one (here: the same
    # cluster, reached by its endpoints), as a production submission does.
    _submit(
        stack,
        stream,
        dsn,
        data,
        name,
        "--from-savepoint",
        savepoint,
        "--job-endpoint",
        stack.flink.job_endpoint,
        "--rest-url",
        stack.flink.rest_url,
        "--worker-pool",
        stack.flink.worker_pool_endpoint,
    )
    _put_markers(stack, stream, MARKERS[2:])
    _wait("the CTI alerts after the resume", lambda: set(MARKERS) <= _cti_alerts(dsn), stack)
    time.sleep(3)
    _stop(stack, name, tmp_path / "savepoints")
    assert [job.state for job in find_jobs(stack.flink, name=name)] == ["FINISHED", "FINISHED"]

    ids_after = [
        row[0] for row in _clickhouse(data / "clickhouse", "SELECT event_id FROM ot_events")
    ]
    assert len(ids_after) == len(set(ids_after))
    assert set(ids_after) == set(ids) | second_ids | (set(ids_after) - set(ids) - second_ids)
    assert len(set(ids_after) - set(ids) - second_ids) == 2  # the two new markers
    assert second_ids <= set(ids_after)
    dead_total = _rows(dsn, "SELECT count(*), count(DISTINCT id) FROM dead_letters")[0]
    assert dead_total == (dead_first + expected_second["dead_letters"]["total"],) * 2
    # The backlog was not processed again: the alerts it raised did not grow by replay.
    counts_after = dict(_rows(dsn, "SELECT alert_id, event_count FROM alerts"))
    regrown = {
        alert: (count, counts_after[alert])
        for alert, count in counts_before.items()
        if counts_after[alert] >= 2 * count and count > 1
    }
    assert regrown == {}


def _missed_attacks(plant: Path, dsn: str) -> list[tuple[str, str, str, str]]:
    """Injected attacks without an alert carrying their technique and source address.

    The C2 beacon needs the Feodo list, which this job does not have.
    """
    truth = [json.loads(line) for line in (plant / "truth.jsonl").open()]
    attacks = [t for t in truth if t["type"] == "attack" and t["scenario"] != "cti_c2_beacon"]
    assert attacks
    alerts = _rows(dsn, "SELECT attack_techniques, host(src_ip), host(dst_ip) FROM alerts")
    return [
        (attack["scenario"], attack["technique"], attack["src_ip"], attack["dst_ip"])
        for attack in attacks
        if not any(
            attack["technique"] in techniques
            and src == attack["src_ip"]
            and dst in (None, attack["dst_ip"])  # threshold rules group by source
            for techniques, src, dst in alerts
        )
    ]


def test_batch_job_on_flink_gives_what_directrunner_gives(stack: Stack, tmp_path: Path) -> None:
    plant = _generate(tmp_path / "plant", 2_000, seed=3)
    runs = {}
    for runner in ("DirectRunner", "FlinkRunner"):
        data = tmp_path / runner
        extra = ["--flink-run-dir", stack.flink.run_dir] if runner == "FlinkRunner" else []
        _check(
            otsec(
                "run",
                "--runner",
                runner,
                *extra,
                "--input",
                str(plant / "sensors"),
                "--assets",
                str(plant / "assets.csv"),
                "--data-dir",
                str(data),
                "--output",
                str(data / "out"),
                "--summary-json",
                str(data / "summary.json"),
            )
        )
        events = {
            json.loads(line)["event_id"]
            for path in (data / "out").glob("events-*.jsonl")
            for line in path.open()
        }
        alerts = {
            (a["alert_id"], a["rule_id"], a["severity"], a["event_count"], a["risk_score"])
            for a in (
                json.loads(line)
                for path in (data / "out").glob("alerts-*.jsonl")
                for line in path.open()
            )
        }
        runs[runner] = (events, alerts, json.loads((data / "summary.json").read_text()))
    (direct_events, direct_alerts, direct), (flink_events, flink_alerts, flink) = runs.values()
    assert flink_events == direct_events and len(direct_events) == direct["stored_events"]
    assert flink_alerts == direct_alerts and direct_alerts
    for key in ("input_records", "stored_events", "duplicates_dropped", "dead_letters", "alerts"):
        assert flink[key] == direct[key], key
    assert flink["conservation_ok"] is True
    assert "FINISHED" in [job.state for job in find_jobs(stack.flink, name="otsec-run")]
