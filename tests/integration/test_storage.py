"""Storage against real stores: PostgreSQL servers and the ClickHouse engine, with real faults."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import apache_beam as beam
import msgspec
import psycopg
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline

from beam_pipelines.event_pipeline import RunConfig, run
from beam_pipelines.replay import ReplayFilter, load_from_files, load_pending, replay
from runners.direct import with_direct_defaults
from schemas.errors import DatabaseError
from schemas.migrate import ClickHouseMigrator, PostgresMigrator, SchemaBehindError
from tests.conftest import ZEEK_TSV, raw_line, run_stages
from tests.integration.conftest import ch_rows, pg_rows
from transforms._retry import RetryPolicy
from transforms._stage import METRICS_NAMESPACE
from transforms.clickhouse import ClickHouseConfig, open_clickhouse
from transforms.dead_letters import read_dead_letters
from transforms.postgres import PostgresConfig, WriteDeadLettersToPostgres
from transforms.sources import read_lines

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


def _run(tmp_path: Path, clickhouse: ClickHouseConfig, postgres, *inputs: str):
    config = RunConfig(
        input_files=tuple(str(i) for i in inputs),
        clickhouse=clickhouse,
        postgres=postgres,
        fallback_dir=str(tmp_path / "fallback"),
    )
    return run(config, with_direct_defaults([]))


def test_migrations_run_twice_and_are_checked(postgres, clickhouse, postgres_server) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        assert PostgresMigrator(connection).migrate() == []  # already applied by the fixture
        PostgresMigrator(connection).require_current("test")
    client = open_clickhouse(clickhouse)
    assert ClickHouseMigrator(client).migrate() == []
    client.close()
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        admin.execute("CREATE DATABASE empty_schema")
    empty = postgres_server.dsn.replace("/postgres?", "/empty_schema?", 1)
    with (
        psycopg.connect(empty, autocommit=True) as connection,
        pytest.raises(
            SchemaBehindError, match=r"version 0, this otsec needs 2: run `otsec db migrate`"
        ),
    ):
        PostgresMigrator(connection).require_current("empty")


def test_run_lands_events_and_dead_letters_once_even_when_run_twice(
    tmp_path, clickhouse, postgres
) -> None:
    fixtures = [ZEEK_TSV / "zeek_modbus_2016.log", ZEEK_TSV / "zeek_dnp3_current.log"]
    first = _run(tmp_path, clickhouse, postgres, *fixtures)
    assert first.conservation_ok and first.stored_events == 300 and first.dead_letters.total == 66
    assert first.dead_letters_stored == 66
    ids_first = ch_rows(clickhouse, "SELECT event_id FROM ot_events FINAL ORDER BY event_id")
    second = _run(tmp_path, clickhouse, postgres, *fixtures)
    assert second.conservation_ok and second.stored_events == 300
    ids_second = ch_rows(clickhouse, "SELECT event_id FROM ot_events FINAL ORDER BY event_id")
    assert ids_first == ids_second and len(ids_first) == 300
    assert pg_rows(postgres, "SELECT count(*), count(DISTINCT id) FROM dead_letters") == [(66, 66)]
    row = ch_rows(
        clickhouse,
        "SELECT toString(src_ip), dst_port, ics_protocol, ics_function, ics_operation, source_line "
        "FROM ot_events FINAL WHERE source_line = 20 AND source_uri LIKE '%zeek_modbus_2016.log'",
    )
    assert row == [("::ffff:10.0.0.9", 502, "modbus", "WRITE_SINGLE_REGISTER", "write", 20)]


class _StopServerAfter(beam.DoFn):
    """Test step: really stops the PostgreSQL server when the n-th element passes."""

    def __init__(self, n: int, server) -> None:
        self._n = n
        self._server = server

    def setup(self) -> None:
        self._seen = 0

    def process(self, element):
        self._seen += 1
        if self._seen == self._n:
            self._server.stop()
        yield element


def _counters(result) -> dict[str, int]:
    found: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))[
        "counters"
    ]:
        found[counter.key.metric.name] = found.get(counter.key.metric.name, 0) + counter.committed
    return found


def test_postgres_stopped_mid_run_then_replay_lands_every_dead_letter_once(
    tmp_path, postgres, postgres_server, clickhouse
) -> None:
    lines = list(read_lines(str(ZEEK_TSV / "zeek_dnp3_current.log"))) + list(
        read_lines(str(ZEEK_TSV / "icsnpp_bacnet_basic.log"))
    )
    letters = [run_stages(line) for line in lines]
    assert len(letters) == 366
    small_batches = PostgresConfig(dsn=postgres.dsn, batch_rows=50, connect_timeout=1)
    fallback = tmp_path / "fallback"
    pipeline = TestPipeline()
    (
        pipeline
        | beam.Create(letters, reshuffle=False)
        | beam.ParDo(_StopServerAfter(100, postgres_server))
        | WriteDeadLettersToPostgres(small_batches, str(fallback), policy=FAST)
    )
    result = pipeline.run()
    result.wait_until_finish()
    postgres_server.start()
    counts = _counters(result)
    assert counts["dead_letters.in"] == 366
    assert counts["dead_letters.out"] == 50  # the first batch, before the stop
    assert counts["dead_letters.fallback"] == 316  # nothing lost: kept in files
    assert counts["dead_letters.retries"] >= 2 * 7  # every failed batch was retried
    files = sorted(str(p) for p in fallback.glob("*.jsonl"))
    assert sum(1 for _ in read_dead_letters(files)) == 316
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        report = replay(load_from_files(files, ReplayFilter()), clickhouse, connection)
    assert report.selected == 316 and report.stored == 0
    assert sum(report.failed_again.values()) == 316  # the records are still invalid: dead letters
    rows = pg_rows(postgres, "SELECT count(*), count(DISTINCT id), max(attempts) FROM dead_letters")
    assert rows == [(366, 366, 2)]  # every record exactly once; replayed ones counted twice tried
    assert {letter.id for letter in letters} == {
        r[0] for r in pg_rows(postgres, "SELECT id FROM dead_letters")
    }


class _Http500(http.server.BaseHTTPRequestHandler):
    def _fail(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b"Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _fail

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def failing_clickhouse():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Http500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://default:s3cret-pw@127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_clickhouse_failing_then_replay_lands_every_event_exactly_once(
    tmp_path, clickhouse, postgres, failing_clickhouse
) -> None:
    # A real failure: the sink talks HTTP to a local endpoint that answers 500 to everything.
    broken = ClickHouseConfig(dsn=failing_clickhouse, attempts=3)
    summary = _run(tmp_path, broken, postgres, ZEEK_TSV / "zeek_modbus_2016.log")
    assert summary.conservation_ok and summary.stored_events == 0
    assert summary.dead_letters.by_stage == {"load": 300}
    assert summary.dead_letters.by_error_class == {"DatabaseError": 300}
    rows = pg_rows(
        postgres, "SELECT DISTINCT error_class, retriable, attempts, stage FROM dead_letters"
    )
    assert rows == [("DatabaseError", True, 3, "load")]
    messages = pg_rows(postgres, "SELECT message FROM dead_letters LIMIT 1")[0][0]
    assert "s3cret-pw" not in messages and "default:***@" in messages
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        pending = load_pending(connection, ReplayFilter(error_class="DatabaseError"))
        assert len(pending) == 300
        report = replay(pending, clickhouse, connection)
        assert (report.selected, report.stored) == (300, 300)
        assert load_pending(connection, ReplayFilter()) == []  # all marked replayed
        again = replay(load_pending(connection, ReplayFilter()), clickhouse, connection)
        assert again.selected == 0
    assert ch_rows(clickhouse, "SELECT count(), uniqExact(event_id) FROM ot_events FINAL") == [
        (300, 300)
    ]
    assert ch_rows(clickhouse, "SELECT count() FROM ot_events") == [
        (300,)
    ]  # not even a duplicate row


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("store", ["clickhouse", "postgres"])
def test_store_unreachable_at_start_exits_2_with_one_line(tmp_path, store) -> None:
    port = _closed_port()
    dsn = (
        f"http://otsec:hunter2@127.0.0.1:{port}/otsec"
        if store == "clickhouse"
        else f"postgresql://otsec:hunter2@127.0.0.1:{port}/otsec"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "beam_pipelines.cli",
            "run",
            "--input",
            str(ZEEK_TSV / "zeek_modbus_2016.log"),
            "--data-dir",
            str(tmp_path),
            f"--{store}-dsn",
            dsn,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("otsec: error: ")
    assert ("ClickHouse" if store == "clickhouse" else "PostgreSQL") in lines[0]
    assert f"127.0.0.1:{port}" in lines[0] and "hunter2" not in lines[0]


def test_values_that_break_sql_arrive_intact(tmp_path, clickhouse, postgres) -> None:
    nasty = 'it\'s "quoted"; DROP TABLE ot_events; -- \\ back\\slash \x00 nul ' + "x" * 4000
    envelope = {
        "schema": "robotlab.sensor/v1",
        "message_id": "m-1",
        "sensor_id": "agent'1",
        "observed_at": "2026-11-20T08:00:00Z",
        "src": {"ip": "10.20.0.5", "port": 40000},
        "dst": {"ip": "10.10.1.10", "port": 502},
        "ics": {"protocol": "modbus", "function_code": 6},
        "attributes": {"note": nasty},
    }
    source = tmp_path / "in" / "agent.jsonl"
    source.parent.mkdir()
    bad = b"\xff\xfe'; DROP TABLE dead_letters; --\x00\\"
    huge = msgspec.json.encode(
        envelope | {"message_id": "m-2", "attributes": {"note": "y" * 100_000}}
    )
    source.write_bytes(msgspec.json.encode(envelope) + b"\n" + bad + b"\n" + huge + b"\n")
    summary = _run(tmp_path, clickhouse, postgres, source)
    assert (
        summary.conservation_ok and summary.stored_events == 1 and summary.dead_letters.total == 2
    )
    stored = ch_rows(clickhouse, "SELECT details['note'], sensor FROM ot_events FINAL")
    assert stored == [(nasty, "agent'1")]
    payloads = {bytes(p) for (p,) in pg_rows(postgres, "SELECT payload FROM dead_letters")}
    assert payloads == {bad, huge}  # byte for byte; the table is still there
    field = pg_rows(postgres, "SELECT field FROM dead_letters WHERE length(payload) > 1000")
    assert field == [("attributes[...]",)]  # msgspec names a map value this way


def test_dead_letter_fallback_files_round_trip(tmp_path) -> None:
    line = raw_line(b'{"event_type": "modbus"')
    letter = run_stages(line)
    path = tmp_path / "x.jsonl"
    path.write_bytes(msgspec.json.encode(letter) + b"\n")
    assert read_dead_letters([str(path)]) == [letter]
    assert json.loads(path.read_text())["pipeline_version"]


def test_unreachable_clickhouse_raises_database_error_quickly() -> None:
    config = ClickHouseConfig(dsn=f"http://127.0.0.1:{_closed_port()}", connect_timeout=2)
    with pytest.raises(DatabaseError, match=r"cannot connect to ClickHouse at http://127\.0\.0\.1"):
        open_clickhouse(config)


def test_alert_upserts_aggregate_and_keep_triage_status(postgres) -> None:
    from datetime import UTC, datetime, timedelta

    from schemas.alert import Alert
    from transforms.postgres import upsert_alerts

    start = datetime(2026, 11, 20, 8, tzinfo=UTC)

    def alert(minute: int, events: int = 1) -> Alert:
        return Alert(
            alert_id="a1",
            rule_id="OT-MODBUS-WRITE-NON-EWS",
            title="Modbus write from a non-EWS host",
            attack_techniques=("T0855",),
            severity="high",
            risk_score=70 + minute,
            src_ip="10.50.0.7",
            dst_ip="10.10.1.10",
            event_count=events,
            first_seen=start + timedelta(minutes=minute),
            last_seen=start + timedelta(minutes=minute),
            sample_event_ids=(f"e{minute}",),
        )

    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        upsert_alerts(connection, [alert(0), alert(5, events=2)])  # same id twice in one batch
        connection.execute("UPDATE alerts SET status = 'investigating'")
        upsert_alerts(connection, [alert(9)])
        row = connection.execute(
            "SELECT event_count, first_seen, last_seen, status, risk_score, "
            "host(src_ip), attack_techniques, cardinality(sample_event_ids) FROM alerts"
        ).fetchall()
    assert row == [
        (4, start, start + timedelta(minutes=9), "investigating", 79, "10.50.0.7", ["T0855"], 3)
    ]


ENGINE_SQL = (
    "SELECT engine_full FROM system.tables "
    "WHERE database = currentDatabase() AND name = 'ot_events'"
)


def test_event_ttl_is_set_and_removed(clickhouse) -> None:
    from schemas.migrate import set_event_ttl

    client = open_clickhouse(clickhouse)
    try:
        set_event_ttl(client, 30)
        engine = client.query(ENGINE_SQL).result_rows[0][0]
        assert "TTL toDateTime(time) + toIntervalDay(30)" in engine
        set_event_ttl(client, 0)
        engine = client.query(ENGINE_SQL).result_rows[0][0]
        assert " TTL " not in engine
    finally:
        client.close()


def test_second_process_on_the_embedded_clickhouse_store_gets_a_clear_error(tmp_path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, clickhouse_connect; c = clickhouse_connect.get_client(dsn=sys.argv[1]); "
            "c.command('SELECT 1'); print('ready', flush=True); sys.stdin.read()",
            f"chdb://{tmp_path / 'clickhouse'}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "beam_pipelines.cli",
                "run",
                "--input",
                str(ZEEK_TSV / "zeek_modbus_conn_2016.log"),
                "--data-dir",
                str(tmp_path),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.communicate("", timeout=30)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "is in use by another process" in last and str(tmp_path / "clickhouse") in last


def test_real_servers_from_environment_migrate_run_and_replay(tmp_path, postgres_server) -> None:
    """The commands against a PostgreSQL server named only by OTSEC_POSTGRES_DSN."""
    import os

    name = "envdb"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    env = dict(os.environ)
    env["OTSEC_POSTGRES_DSN"] = postgres_server.dsn.replace("/postgres?", f"/{name}?", 1)
    env["OTSEC_CLICKHOUSE_DSN"] = f"chdb://{tmp_path / 'ch'}"

    def otsec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "beam_pipelines.cli", *args, "--data-dir", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )

    fixture = str(ZEEK_TSV / "zeek_dnp3_current.log")
    behind = otsec("run", "--input", fixture)
    assert behind.returncode == 2
    assert "PostgreSQL schema" in behind.stderr and "run `otsec db migrate` first" in behind.stderr
    migrated = otsec("db", "migrate")
    assert migrated.returncode == 0 and "schema current" in migrated.stdout, migrated.stderr
    assert otsec("db", "migrate").returncode == 0  # twice is fine
    ran = otsec("run", "--input", fixture)
    assert ran.returncode == 0, ran.stderr
    assert "dead letters                66" in ran.stdout
    replayed = otsec("dlq", "replay", "--stage", "validate")
    assert replayed.returncode == 0, replayed.stderr
    assert "dead letters selected           66" in replayed.stdout
    assert "ValidationError: 66" in replayed.stdout  # still invalid: back with attempts + 1
    rows = pg_rows(
        PostgresConfig(dsn=env["OTSEC_POSTGRES_DSN"]),
        "SELECT count(*), min(attempts), max(attempts) FROM dead_letters",
    )
    assert rows == [(66, 2, 2)]
