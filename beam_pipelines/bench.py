"""``otsec bench``: the event pipeline on DirectRunner against the same functions in a plain loop.

Both sides do the same work on the same generated input: read the sensor
files, decode, validate and normalize every record, and write events and dead
letters as JSON lines. Each measured run is its own child process (so each has
its own peak memory), the two sides alternate, and medians are reported, since
the machine is shared and noisy. The ratio ``beam / loop`` is what Beam costs
over the bare functions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
import msgspec

__all__ = ["BenchConfig", "run_bench"]

# Targets: stages 1-3 on DirectRunner (foundation), sinks and stores (storage).
TARGET_BEAM_EVENTS_PER_S = 60_000
TARGET_RATIO = 0.5
TARGET_PEAK_RSS_MB = 1024
TARGET_CLICKHOUSE_SINK_ROWS_PER_S = 300_000
TARGET_ALERT_UPSERTS_PER_S = 20_000
TARGET_STORES_EVENTS_PER_S = 40_000
TARGET_STORES_PEAK_RSS_MB = 1536
PART_SAMPLE = 200_000


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    events: int = 1_000_000
    repeat: int = 3
    work_dir: str = ".otsec"
    json_path: str | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        if self.events <= 0 or self.repeat <= 0:
            raise ValueError("events and repeat must be positive")


def _peak_rss_mb() -> float:
    """This process's peak resident memory since it started.

    ``VmHWM`` belongs to the address space, which ``exec`` replaces; ``ru_maxrss``
    would carry over the peak of the parent that forked this child.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _input_dir(config: BenchConfig) -> str:
    """Generate the input once per size and seed; later benchmarks reuse it."""
    from beam_pipelines.generate import GeneratorConfig, generate

    directory = os.path.join(config.work_dir, "bench", f"input-{config.events}-{config.seed}")
    marker = os.path.join(directory, ".complete")
    if not os.path.exists(marker):
        print(f"generating {config.events:,} records into {directory}", file=sys.stderr)
        report = generate(
            GeneratorConfig(out_dir=directory, events=config.events, seed=config.seed)
        )
        with open(marker, "w") as handle:
            handle.write(report.describe())
    return os.path.join(directory, "sensors")


def _files(sensor_dir: str) -> tuple[str, ...]:
    from beam_pipelines.inputs import resolve_inputs

    return resolve_inputs([sensor_dir])


def _loop_run(sensor_dir: str, out_dir: str) -> dict[str, Any]:
    """The baseline: the stage functions in a plain loop, with the same file output."""
    from runners.direct import batch_gc
    from schemas.dead_letter import dead_letter_from_error
    from transforms.dead_letters import encode_dead_letter
    from transforms.decode import decode_line
    from transforms.normalize import normalize_record
    from transforms.sinks import encode_event
    from transforms.sources import read_lines
    from transforms.validate import validate_record

    started = time.perf_counter()
    records = events = dead = 0
    with (
        batch_gc(),
        open(os.path.join(out_dir, "events.jsonl"), "w") as event_out,
        open(os.path.join(out_dir, "dead_letters.jsonl"), "w") as dead_out,
    ):
        for path in _files(sensor_dir):
            for line in read_lines(path):
                records += 1
                stage = "decode"
                try:
                    decoded = decode_line(line)
                    stage = "validate"
                    validated = validate_record(decoded)
                    stage = "normalize"
                    event = normalize_record(validated)
                except Exception as error:
                    dead += 1
                    dead_out.write(encode_dead_letter(dead_letter_from_error(stage, error, line)))
                    dead_out.write("\n")
                    continue
                events += 1
                event_out.write(encode_event(event))
                event_out.write("\n")
    seconds = time.perf_counter() - started
    return {"records": records, "events": events, "dead_letters": dead, "seconds": seconds}


def _timed_run(config: Any) -> dict[str, Any]:
    """Run the event pipeline once on DirectRunner; its figures, after checking conservation."""
    from beam_pipelines.event_pipeline import run
    from runners.direct import with_direct_defaults

    started = time.perf_counter()
    summary = run(config, with_direct_defaults([]))
    seconds = time.perf_counter() - started
    if not summary.conservation_ok:
        raise RuntimeError(f"benchmark run lost records: {summary.to_json().decode()}")
    return {
        "records": summary.input_records,
        "events": summary.stored_events,
        "dead_letters": summary.dead_letters.total,
        "seconds": seconds,
    }


def _beam_run(sensor_dir: str, out_dir: str) -> dict[str, Any]:
    from beam_pipelines.event_pipeline import RunConfig

    config = RunConfig(
        input_files=_files(sensor_dir),
        output_dir=os.path.join(out_dir, "events"),
        dead_letter_dir=os.path.join(out_dir, "dead_letters"),
    )
    return _timed_run(config)


def _sample_events(sensor_dir: str, limit: int = 20_000) -> list[Any]:
    """Normalized events from every sensor file, for the sink benchmarks."""
    from transforms.decode import decode_line
    from transforms.normalize import normalize_record
    from transforms.sources import read_lines
    from transforms.validate import validate_record

    files = _files(sensor_dir)
    per_file = max(1, limit // len(files))
    events = []
    for path in files:
        taken = 0
        for line in read_lines(path):
            try:
                events.append(normalize_record(validate_record(decode_line(line))))
            except Exception:
                continue  # malformed sample lines are not what this measures
            taken += 1
            if taken >= per_file:
                break
    return events


class _ReplicateFn(beam.DoFn):  # type: ignore[misc]
    """Emits n distinct events (fresh ids) cycled from a sample of the sensor files.

    The sample is read in ``setup``, not pickled with the DoFn: pickling 20,000 events
    would be timed as part of the run.
    """

    def __init__(self, sensor_dir: str, n: int) -> None:
        self._sensor_dir = sensor_dir
        self._n = n

    def setup(self) -> None:
        self._sample = _sample_events(self._sensor_dir)

    def process(self, _: Any) -> Iterator[Any]:
        sample = self._sample
        for i in range(self._n):
            yield msgspec.structs.replace(sample[i % len(sample)], event_id=f"{i:032x}")


def _clickhouse_sink_run(sensor_dir: str, out_dir: str, rows: int = 500_000) -> dict[str, Any]:
    """WriteToClickHouse alone inside a Beam run, into a fresh chDB store."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from runners.direct import with_direct_defaults
    from schemas.migrate import ClickHouseMigrator
    from transforms.clickhouse import ClickHouseConfig, WriteToClickHouse, open_clickhouse

    config = ClickHouseConfig(dsn=f"chdb://{os.path.join(out_dir, 'clickhouse')}")
    client = open_clickhouse(config)
    ClickHouseMigrator(client).migrate()
    pipeline = beam.Pipeline(options=PipelineOptions(with_direct_defaults([])))
    events = (
        pipeline | beam.Create([None]) | "Replicate" >> beam.ParDo(_ReplicateFn(sensor_dir, rows))
    )
    _ = events | WriteToClickHouse(config)
    generate_only = beam.Pipeline(options=PipelineOptions(with_direct_defaults([])))
    _ = (
        generate_only
        | beam.Create([None])
        | "Replicate" >> beam.ParDo(_ReplicateFn(sensor_dir, rows))
        | beam.Map(lambda _: None)
    )
    started = time.perf_counter()
    generate_only.run().wait_until_finish()
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    pipeline.run().wait_until_finish()
    seconds = time.perf_counter() - started
    stored = client.query("SELECT count() FROM ot_events").result_rows[0][0]
    client.close()
    sink_seconds = max(seconds - baseline, 1e-9)
    return {
        "records": rows,
        "stored": stored,
        "seconds": seconds,
        "generate_seconds": baseline,
        "sink_rows_per_s": rows / sink_seconds,
    }


def _alert_upsert_run(sensor_dir: str, out_dir: str, rows: int = 200_000) -> dict[str, Any]:
    """Alert upserts into a fresh embedded PostgreSQL: half new ids, half repeats."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    from beam_pipelines.stores import EmbeddedPostgres
    from schemas.alert import Alert
    from schemas.migrate import PostgresMigrator
    from transforms.postgres import upsert_alerts

    server = EmbeddedPostgres(os.path.join(out_dir, "postgres"))
    dsn = server.start()
    try:
        start = datetime(2026, 11, 20, tzinfo=UTC)
        alerts = [
            Alert(
                alert_id=f"a{i % (rows // 2):08d}",
                rule_id="OT-BENCH",
                title="bench",
                attack_techniques=("T0855",),
                severity="high",
                risk_score=70,
                src_ip="10.50.0.7",
                dst_ip="10.10.1.10",
                event_count=1,
                first_seen=start + timedelta(seconds=i),
                last_seen=start + timedelta(seconds=i),
                sample_event_ids=(f"{i:032x}",),
            )
            for i in range(rows)
        ]
        with psycopg.connect(dsn, autocommit=True) as connection:
            PostgresMigrator(connection).migrate()
            started = time.perf_counter()
            for offset in range(0, rows, 5_000):
                upsert_alerts(connection, alerts[offset : offset + 5_000])
            seconds = time.perf_counter() - started
            total = connection.execute("SELECT count(*), sum(event_count) FROM alerts").fetchone()
    finally:
        server.stop()
    return {
        "records": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "alerts": [int(value) for value in total or ()],
    }


def _stores_run(sensor_dir: str, out_dir: str) -> dict[str, Any]:
    """Stages 1-3 and 8 into fresh embedded stores: chDB and PostgreSQL."""
    from beam_pipelines.event_pipeline import RunConfig
    from beam_pipelines.stores import StoreSettings, open_stores

    with open_stores(StoreSettings.resolve(out_dir)) as stores:
        config = RunConfig(
            input_files=_files(sensor_dir),
            clickhouse=stores.clickhouse,
            postgres=stores.postgres,
            fallback_dir=os.path.join(out_dir, "fallback"),
        )
        return _timed_run(config)


_SIDES = {
    "loop": lambda d, o: _loop_run(d, o),
    "beam": lambda d, o: _beam_run(d, o),
    "clickhouse_sink": lambda d, o: _clickhouse_sink_run(d, o),
    "alert_upserts": lambda d, o: _alert_upsert_run(d, o),
    "stores": lambda d, o: _stores_run(d, o),
}


def _child(side: str, sensor_dir: str) -> dict[str, Any]:
    """One measured run in this process; prints its figures as JSON."""
    with tempfile.TemporaryDirectory(prefix=f"otsec-bench-{side}-") as out_dir:
        figures = _SIDES[side](sensor_dir, out_dir)
    figures["side"] = side
    figures["records_per_s"] = figures["records"] / figures["seconds"]
    figures["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return figures


def _brief(figures: dict[str, Any]) -> str:
    rate = figures.get("sink_rows_per_s") or figures.get("rows_per_s") or figures["records_per_s"]
    return f"{rate:,.0f}/s, {figures['seconds']:.1f} s, peak {figures['peak_rss_mb']:.0f} MB"


def _measure_child(side: str, sensor_dir: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.bench", side, sensor_dir],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark {side} run failed:\n{result.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def _successes(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """What ``fn`` makes of ``items``, leaving out the ones it rejects (the next part's input)."""
    results = []
    for item in items:
        try:
            results.append(fn(item))
        except Exception:
            continue  # rejected records are timed in their own part; they feed nothing further
    return results


def _time_part(name: str, items: list[Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
    started = time.perf_counter()
    failures = 0
    for item in items:
        try:
            fn(item)
        except Exception:
            failures += 1
    seconds = time.perf_counter() - started
    return {
        "part": name,
        "records": len(items),
        "seconds": round(seconds, 3),
        "records_per_s": round(len(items) / seconds, 1) if seconds else 0.0,
        "us_per_record": round(seconds / len(items) * 1e6, 3) if items else 0.0,
        "failures": failures,
    }


def _parts(sensor_dir: str) -> list[dict[str, Any]]:
    """Each stage function alone on a sample, to show where the time goes."""
    from transforms.decode import decode_line
    from transforms.normalize import normalize_record
    from transforms.sinks import encode_event
    from transforms.sources import read_lines
    from transforms.validate import validate_record

    def sample() -> Iterator[Any]:
        for path in _files(sensor_dir):
            yield from read_lines(path)

    started = time.perf_counter()
    lines = []
    for line in sample():
        lines.append(line)
        if len(lines) >= PART_SAMPLE:
            break
    read_seconds = time.perf_counter() - started
    parts = [
        {
            "part": "read",
            "records": len(lines),
            "seconds": round(read_seconds, 3),
            "records_per_s": round(len(lines) / read_seconds, 1),
            "us_per_record": round(read_seconds / len(lines) * 1e6, 3),
            "failures": 0,
        }
    ]
    decoded = _successes(decode_line, lines)
    parts.append(_time_part("decode", lines, decode_line))
    validated = _successes(validate_record, decoded)
    parts.append(_time_part("validate", decoded, validate_record))
    events = _successes(normalize_record, validated)
    parts.append(_time_part("normalize", validated, normalize_record))
    parts.append(_time_part("encode_event_json", events, encode_event))
    return parts


def run_bench(config: BenchConfig) -> int:
    """Run the benchmark, print a table, write ``--json``; 0 when it ran (targets are reported)."""
    sensor_dir = _input_dir(config)
    runs: list[dict[str, Any]] = []
    for round_number in range(config.repeat):
        for side in ("loop", "beam"):
            figures = _measure_child(side, sensor_dir)
            runs.append(figures)
            print(
                f"round {round_number + 1}/{config.repeat} {side:<4} "
                f"{figures['records']:,} records in {figures['seconds']:.1f} s = "
                f"{figures['records_per_s']:,.0f} records/s, peak {figures['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )
    beam = [r for r in runs if r["side"] == "beam"]
    loop = [r for r in runs if r["side"] == "loop"]
    beam_rate = statistics.median(r["records_per_s"] for r in beam)
    loop_rate = statistics.median(r["records_per_s"] for r in loop)
    # Ratio of medians, and the median of per-round ratios (each pair ran back to back).
    pair_ratios = [
        b["records_per_s"] / lo["records_per_s"] for b, lo in zip(beam, loop, strict=True)
    ]
    peak = max(r["peak_rss_mb"] for r in beam)
    parts = _parts(sensor_dir)
    storage: dict[str, list[dict[str, Any]]] = {
        "clickhouse_sink": [],
        "alert_upserts": [],
        "stores": [],
    }
    for round_number in range(config.repeat):
        for side in storage:
            figures = _measure_child(side, sensor_dir)
            storage[side].append(figures)
            print(
                f"round {round_number + 1}/{config.repeat} {side}: {_brief(figures)}",
                file=sys.stderr,
            )
    sink_rate = statistics.median(r["sink_rows_per_s"] for r in storage["clickhouse_sink"])
    upsert_rate = statistics.median(r["rows_per_s"] for r in storage["alert_upserts"])
    stores_rate = statistics.median(r["records_per_s"] for r in storage["stores"])
    stores_peak = max(r["peak_rss_mb"] for r in storage["stores"])
    parts += [
        {
            "part": "clickhouse_sink_in_beam",
            "records_per_s": round(sink_rate, 1),
            "runs": storage["clickhouse_sink"],
            "target": TARGET_CLICKHOUSE_SINK_ROWS_PER_S,
        },
        {
            "part": "postgres_alert_upserts",
            "records_per_s": round(upsert_rate, 1),
            "runs": storage["alert_upserts"],
            "target": TARGET_ALERT_UPSERTS_PER_S,
        },
        {
            "part": "stages_1_3_and_8_into_stores",
            "records_per_s": round(stores_rate, 1),
            "peak_rss_mb": stores_peak,
            "runs": storage["stores"],
            "target": TARGET_STORES_EVENTS_PER_S,
        },
    ]
    import apache_beam

    report = {
        "events": beam[0]["records"],
        "beam_events_per_s": round(beam_rate, 1),
        "loop_events_per_s": round(loop_rate, 1),
        "ratio": round(beam_rate / loop_rate, 3),
        "ratio_median_of_rounds": round(statistics.median(pair_ratios), 3),
        "peak_rss_mb": peak,
        "loop_peak_rss_mb": max(r["peak_rss_mb"] for r in loop),
        "repeat": config.repeat,
        "runs": runs,
        "parts": parts,
        "targets": {
            "beam_events_per_s": TARGET_BEAM_EVENTS_PER_S,
            "ratio": TARGET_RATIO,
            "peak_rss_mb": TARGET_PEAK_RSS_MB,
        },
        "met": {
            "beam_events_per_s": beam_rate >= TARGET_BEAM_EVENTS_PER_S,
            "ratio": beam_rate / loop_rate >= TARGET_RATIO,
            "peak_rss_mb": peak < TARGET_PEAK_RSS_MB,
            "clickhouse_sink_rows_per_s": sink_rate >= TARGET_CLICKHOUSE_SINK_ROWS_PER_S,
            "alert_upserts_per_s": upsert_rate >= TARGET_ALERT_UPSERTS_PER_S,
            "stores_events_per_s": stores_rate >= TARGET_STORES_EVENTS_PER_S,
            "stores_peak_rss_mb": stores_peak < TARGET_STORES_PEAK_RSS_MB,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "beam": apache_beam.__version__,
            "runner": "DirectRunner (in_memory, 1 worker)",
        },
    }
    print(
        f"\nstages 1-3 + JSON-lines sinks, {report['events']:,} records, "
        f"medians of {config.repeat}:\n"
        f"  beam  {beam_rate:>12,.0f} records/s  (target {TARGET_BEAM_EVENTS_PER_S:,})\n"
        f"  loop  {loop_rate:>12,.0f} records/s\n"
        f"  ratio {report['ratio']:>12.3f}         (target {TARGET_RATIO})\n"
        f"  peak  {peak:>12,.0f} MB         (target < {TARGET_PEAK_RSS_MB})"
    )
    print(
        f"  clickhouse sink in Beam {sink_rate:>10,.0f} rows/s   "
        f"(target {TARGET_CLICKHOUSE_SINK_ROWS_PER_S:,})\n"
        f"  alert upserts           {upsert_rate:>10,.0f} rows/s   "
        f"(target {TARGET_ALERT_UPSERTS_PER_S:,})\n"
        f"  stages 1-3 + 8 (stores) {stores_rate:>10,.0f} records/s "
        f"(target {TARGET_STORES_EVENTS_PER_S:,}), peak {stores_peak:,.0f} MB "
        f"(target < {TARGET_STORES_PEAK_RSS_MB:,})"
    )
    for part in parts[:5]:
        print(
            f"  part {part['part']:<18} {part['records_per_s']:>12,.0f} records/s "
            f"({part['us_per_record']:.2f} us each)"
        )
    if config.json_path:
        with open(config.json_path, "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    # Child mode: `python -m beam_pipelines.bench SIDE SENSOR_DIR` prints one JSON line.
    from beam_pipelines.logs import configure_logging

    configure_logging("text", "WARNING")
    print(json.dumps(_child(sys.argv[1], sys.argv[2])))
