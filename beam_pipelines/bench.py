"""``otsec bench``: the eight-stage event pipeline on DirectRunner against a plain loop.

Both sides do the same work on the same generated input (a plant of about
5,000 assets, its inventory, a CTI snapshot of 1,000,000 indicators): read the
sensor files, run stages 1-7 with the same stage functions, and load events into
a fresh embedded ClickHouse, alerts and dead letters into a fresh embedded
PostgreSQL. Each measured run is its own child process (so each has its own
peak memory), the two sides alternate, and medians are reported, since the
machine is shared and noisy. The ratio ``beam / loop`` is what Beam costs over
the bare functions. Parts measure single pieces: each stage function, the
ClickHouse sink, alert upserts, the CTI index, and a CTI refresh of the same
million indicators from a local file.
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

from beam_pipelines.bench_cti import TARGET_BUILD_S, TARGET_LOOKUPS_PER_S, TARGET_RSS_MB

__all__ = ["BenchConfig", "run_bench"]

# Targets: the eight stages into both stores (detection), sinks (storage), CTI (threat intel).
TARGET_BEAM_EVENTS_PER_S = 40_000
TARGET_RATIO = 0.5
TARGET_PEAK_RSS_MB = 2048
TARGET_CLICKHOUSE_SINK_ROWS_PER_S = 300_000
TARGET_ALERT_UPSERTS_PER_S = 20_000
TARGET_REFRESH_S = 60.0
PART_SAMPLE = 200_000


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    events: int = 1_000_000
    repeat: int = 3
    work_dir: str = ".otsec"
    json_path: str | None = None
    seed: int = 42
    assets: int = 5_000
    indicators: int = 1_000_000

    def __post_init__(self) -> None:
        if self.events <= 0 or self.repeat <= 0 or self.indicators <= 0:
            raise ValueError("events, indicators and repeat must be positive")


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
    """Generate the input once per size and seed; later benchmarks reuse it.

    The directory holds ``sensors/``, ``assets.csv``, a CTI snapshot of
    ``config.indicators`` synthetic indicators plus the plant's Feodo C2 addresses
    (``cti/snapshots``), and the same indicators as a plain list for the refresh part.
    """
    from beam_pipelines.bench_cti import synthetic_indicators
    from beam_pipelines.generate import GeneratorConfig, generate
    from cti.indicators import make_indicator
    from cti.snapshot import indicators_to_table, write_snapshot

    name = f"input-{config.events}-{config.seed}-{config.assets}-{config.indicators}"
    directory = os.path.join(config.work_dir, "bench", name)
    marker = os.path.join(directory, ".complete")
    if not os.path.exists(marker):
        print(f"generating {config.events:,} records into {directory}", file=sys.stderr)
        report = generate(
            GeneratorConfig(
                out_dir=directory, events=config.events, seed=config.seed, assets=config.assets
            )
        )
        print(f"writing a CTI snapshot of {config.indicators:,} indicators", file=sys.stderr)
        import pyarrow as pa

        synthetic = synthetic_indicators(config.indicators)
        feodo = indicators_to_table(
            make_indicator("ipv4", address, confidence=80, feed="feodo")
            for address in ("192.9.135.73", "213.199.41.33", "194.233.91.144", "84.247.157.112")
        )
        write_snapshot(
            os.path.join(directory, "cti", "snapshots"), pa.concat_tables([synthetic, feodo])
        )
        with open(os.path.join(directory, "cti", "indicators.txt"), "w") as handle:
            for value in synthetic.column("value").to_pylist():
                handle.write(value)
                handle.write("\n")
        with open(marker, "w") as handle:
            handle.write(report.describe())
    return directory


def _files(sensor_dir: str) -> tuple[str, ...]:
    from beam_pipelines.inputs import resolve_inputs

    return resolve_inputs([sensor_dir])


def _threshold_windows(
    rules: Any, hits: list[tuple[tuple[str, ...], Any]]
) -> dict[tuple[Any, ...], list[Any]]:
    """The loop's sliding windows: each hit into the windows of its rule that contain it."""
    from transforms.detect import _ThresholdCombineFn

    combine = _ThresholdCombineFn()
    windows: dict[tuple[Any, ...], list[Any]] = {}
    for key, hit in hits:
        spec = rules.by_id[key[0]].spec
        size = spec.threshold.seconds
        period = max(1, size // 2)
        t = hit.time.timestamp()
        start = int(t // period) * period
        while start > t - size:
            acc = windows.get((key, start))
            if acc is None:
                acc = windows[(key, start)] = combine.create_accumulator()
            combine.add_input(acc, hit)
            start -= period
    return windows


def _loop_run(input_dir: str, out_dir: str) -> dict[str, Any]:
    """The baseline: stages 1-7 in a plain loop with the same functions, the same stores."""
    from beam_pipelines.stores import StoreSettings, open_stores
    from cti.index import IndicatorIndex
    from cti.snapshot import latest_snapshot
    from runners.direct import batch_gc
    from schemas.dead_letter import DeadLetter
    from transforms._retry import RetryPolicy
    from transforms.assets import AssetTable, enrich_event, load_inventory
    from transforms.chain import process_line
    from transforms.clickhouse import EventWriter
    from transforms.correlate import correlate_event
    from transforms.detect import (
        RuleSet,
        _merge_threshold,
        _threshold_alert,
        load_rules,
        merge_alerts,
    )
    from transforms.postgres import store_dead_letters, upsert_alerts
    from transforms.sources import read_lines

    snapshot = latest_snapshot(os.path.join(input_dir, "cti", "snapshots"))
    assert snapshot is not None
    with open_stores(StoreSettings.resolve(out_dir)) as stores:
        writer = EventWriter(stores.clickhouse, RetryPolicy(attempts=3))
        started = time.perf_counter()
        records = events = duplicates = 0
        letters: list[Any] = []
        alerts: dict[str, Any] = {}
        hits: list[tuple[tuple[str, ...], Any]] = []
        seen: set[str] = set()
        batch: list[Any] = []
        with batch_gc():
            table = AssetTable(load_inventory(os.path.join(input_dir, "assets.csv")))
            index = IndicatorIndex.load(snapshot)
            rules = RuleSet(load_rules())
            for path in _files(os.path.join(input_dir, "sensors")):
                for line in read_lines(path):
                    records += 1
                    event = process_line(line)
                    if isinstance(event, DeadLetter):
                        letters.append(event)
                        continue
                    if event.event_id in seen:
                        duplicates += 1
                        continue
                    seen.add(event.event_id)
                    event = correlate_event(enrich_event(event, table), index)
                    event, raised, matched = rules.evaluate(event)
                    for alert in raised:
                        known = alerts.get(alert.alert_id)
                        alerts[alert.alert_id] = (
                            alert if known is None else merge_alerts(known, alert)
                        )
                    hits.extend(matched)
                    batch.append(event)
                    if len(batch) >= stores.clickhouse.batch_rows:
                        writer.write(batch)
                        events += len(batch)
                        batch = []
            writer.write(batch)
            events += len(batch)
            specs = {rule.spec.id: rule.spec for rule in rules.windowed}
            windowed: dict[str, Any] = {}
            for (key, _), acc in _threshold_windows(rules, hits).items():
                for alert in _threshold_alert((key, acc), specs):
                    known = windowed.get(alert.alert_id)
                    windowed[alert.alert_id] = (
                        alert if known is None else _merge_threshold(known, alert)
                    )
            everything = [*alerts.values(), *windowed.values()]
            connection = stores.postgres_connection
            for offset in range(0, len(everything), 5_000):
                upsert_alerts(connection, everything[offset : offset + 5_000])
            for offset in range(0, len(letters), 5_000):
                store_dead_letters(connection, letters[offset : offset + 5_000])
        seconds = time.perf_counter() - started
        writer.close()
    if records != events + duplicates + len(letters):
        raise RuntimeError("the loop lost records")
    return {
        "records": records,
        "events": events,
        "duplicates": duplicates,
        "dead_letters": len(letters),
        "alerts": len(everything),
        "seconds": seconds,
    }


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
        "duplicates": summary.duplicates_dropped,
        "dead_letters": summary.dead_letters.total,
        "alerts": summary.alerts,
        "seconds": seconds,
    }


def _beam_run(input_dir: str, out_dir: str) -> dict[str, Any]:
    """The eight stages on DirectRunner into fresh embedded stores: chDB and PostgreSQL."""
    from beam_pipelines.event_pipeline import RunConfig
    from beam_pipelines.stores import StoreSettings, open_stores
    from cti.snapshot import latest_snapshot
    from transforms.assets import load_inventory

    with open_stores(StoreSettings.resolve(out_dir)) as stores:
        config = RunConfig(
            input_files=_files(os.path.join(input_dir, "sensors")),
            clickhouse=stores.clickhouse,
            postgres=stores.postgres,
            fallback_dir=os.path.join(out_dir, "fallback"),
            assets=load_inventory(os.path.join(input_dir, "assets.csv")),
            cti_snapshot=latest_snapshot(os.path.join(input_dir, "cti", "snapshots")),
        )
        return _timed_run(config)


def _sample_events(input_dir: str, limit: int = 20_000) -> list[Any]:
    """Normalized events from every sensor file, for the sink benchmarks."""
    from transforms.decode import decode_line
    from transforms.normalize import normalize_record
    from transforms.sources import read_lines
    from transforms.validate import validate_record

    files = _files(os.path.join(input_dir, "sensors"))
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


def _index_run(input_dir: str, out_dir: str) -> dict[str, Any]:
    """The CTI index alone: build, memory, lookups (`beam_pipelines.bench_cti`)."""
    from beam_pipelines.bench_cti import measure_index

    figures = measure_index(_indicator_count(input_dir), repeat=1)
    figures["records"] = figures["indicators"]
    figures["seconds"] = figures["build_s"]
    return figures


def _indicator_count(input_dir: str) -> int:
    return int(os.path.basename(input_dir).rsplit("-", 1)[1])


def _refresh_run(input_dir: str, out_dir: str) -> dict[str, Any]:
    """`otsec cti refresh` of the whole indicator list from a local file into a fresh
    embedded PostgreSQL, and the snapshot it writes."""
    from beam_pipelines.stores import StoreSettings, open_postgres
    from cti.config import FeedConfig
    from cti.refresh import RefreshConfig, run_refresh
    from runners.direct import with_direct_defaults

    feed = FeedConfig(
        name="bench",
        type="csv",
        preset="plain",
        path=os.path.join(input_dir, "cti", "indicators.txt"),
    )
    with open_postgres(StoreSettings.resolve(out_dir)) as (postgres, _):
        config = RefreshConfig(
            feeds=(feed,),
            postgres=postgres,
            snapshot_dir=os.path.join(out_dir, "snapshots"),
            fallback_dir=os.path.join(out_dir, "fallback"),
        )
        started = time.perf_counter()
        report = run_refresh(config, {}, with_direct_defaults([]))
        seconds = time.perf_counter() - started
    (outcome,) = report.feeds
    if outcome.status != "ok":
        raise RuntimeError(f"refresh benchmark failed: {outcome.error_class}: {outcome.error}")
    return {
        "records": outcome.entries,
        "indicators": report.store_indicators,
        "snapshot_indicators": report.snapshot.indicators if report.snapshot else 0,
        "dead_letters": outcome.dead_letters,
        "parse_seconds": outcome.seconds,
        "seconds": seconds,
    }


_SIDES = {
    "loop": lambda d, o: _loop_run(d, o),
    "beam": lambda d, o: _beam_run(d, o),
    "clickhouse_sink": lambda d, o: _clickhouse_sink_run(d, o),
    "alert_upserts": lambda d, o: _alert_upsert_run(d, o),
    "index": lambda d, o: _index_run(d, o),
    "refresh": lambda d, o: _refresh_run(d, o),
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


def _parts(input_dir: str) -> list[dict[str, Any]]:
    """Each stage function alone on a sample, to show where the time goes."""
    from cti.index import IndicatorIndex
    from cti.snapshot import latest_snapshot
    from transforms.assets import AssetTable, enrich_event, load_inventory
    from transforms.correlate import correlate_event
    from transforms.decode import decode_line
    from transforms.detect import RuleSet, load_rules
    from transforms.normalize import normalize_record
    from transforms.sinks import encode_event
    from transforms.sources import read_lines
    from transforms.validate import validate_record

    def sample() -> Iterator[Any]:
        for path in _files(os.path.join(input_dir, "sensors")):
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
    table = AssetTable(load_inventory(os.path.join(input_dir, "assets.csv")))
    snapshot = latest_snapshot(os.path.join(input_dir, "cti", "snapshots"))
    assert snapshot is not None
    index = IndicatorIndex.load(snapshot)
    rules = RuleSet(load_rules())
    enriched = [enrich_event(event, table) for event in events]
    parts.append(_time_part("enrich", events, lambda event: enrich_event(event, table)))
    correlated = [correlate_event(event, index) for event in enriched]
    parts.append(_time_part("correlate", enriched, lambda event: correlate_event(event, index)))
    parts.append(_time_part("detect", correlated, rules.evaluate))
    parts.append(_time_part("encode_event_json", events, encode_event))
    return parts


def _median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def run_bench(config: BenchConfig) -> int:
    """Run the benchmark, print a table, write ``--json``; 0 when it ran (targets are reported)."""
    input_dir = _input_dir(config)
    runs: list[dict[str, Any]] = []
    for round_number in range(config.repeat):
        for side in ("loop", "beam"):
            figures = _measure_child(side, input_dir)
            runs.append(figures)
            print(
                f"round {round_number + 1}/{config.repeat} {side:<4} "
                f"{figures['records']:,} records in {figures['seconds']:.1f} s = "
                f"{figures['records_per_s']:,.0f} records/s, {figures['alerts']:,} alerts, "
                f"peak {figures['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )
    beam = [r for r in runs if r["side"] == "beam"]
    loop = [r for r in runs if r["side"] == "loop"]
    beam_rate = _median_of(beam, "records_per_s")
    loop_rate = _median_of(loop, "records_per_s")
    # Ratio of medians, and the median of per-round ratios (each pair ran back to back).
    pair_ratios = [
        b["records_per_s"] / lo["records_per_s"] for b, lo in zip(beam, loop, strict=True)
    ]
    peak = max(r["peak_rss_mb"] for r in beam)
    parts = _parts(input_dir)
    measured: dict[str, list[dict[str, Any]]] = {
        "clickhouse_sink": [],
        "alert_upserts": [],
        "index": [],
        "refresh": [],
    }
    for round_number in range(config.repeat):
        for side in measured:
            figures = _measure_child(side, input_dir)
            measured[side].append(figures)
            print(
                f"round {round_number + 1}/{config.repeat} {side}: {_brief(figures)}",
                file=sys.stderr,
            )
    sink_rate = _median_of(measured["clickhouse_sink"], "sink_rows_per_s")
    upsert_rate = _median_of(measured["alert_upserts"], "rows_per_s")
    index_runs = measured["index"]
    index_build = _median_of(index_runs, "build_s")
    index_mb = _median_of(index_runs, "rss_increase_mb")
    lookups = _median_of(index_runs, "ip_batch_lookups_per_s")
    refresh_seconds = _median_of(measured["refresh"], "seconds")
    parts += [
        {
            "part": "clickhouse_sink_in_beam",
            "records_per_s": round(sink_rate, 1),
            "runs": measured["clickhouse_sink"],
            "target": TARGET_CLICKHOUSE_SINK_ROWS_PER_S,
        },
        {
            "part": "postgres_alert_upserts",
            "records_per_s": round(upsert_rate, 1),
            "runs": measured["alert_upserts"],
            "target": TARGET_ALERT_UPSERTS_PER_S,
        },
        {
            "part": "cti_index",
            "indicators": config.indicators,
            "build_seconds": round(index_build, 3),
            "memory_mb": round(index_mb, 1),
            "records_per_s": round(lookups, 1),
            "runs": index_runs,
            "targets": {
                "build_seconds": TARGET_BUILD_S,
                "memory_mb": TARGET_RSS_MB,
                "lookups_per_s": TARGET_LOOKUPS_PER_S,
            },
        },
        {
            "part": "cti_refresh",
            "indicators": config.indicators,
            "seconds": round(refresh_seconds, 3),
            "records_per_s": round(config.indicators / refresh_seconds, 1),
            "runs": measured["refresh"],
            "target_seconds": TARGET_REFRESH_S,
        },
    ]
    import apache_beam

    report = {
        "events": beam[0]["records"],
        "assets": config.assets,
        "indicators": config.indicators,
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
            "index_build_seconds": index_build < TARGET_BUILD_S,
            "index_memory_mb": index_mb < TARGET_RSS_MB,
            "index_lookups_per_s": lookups >= TARGET_LOOKUPS_PER_S,
            "refresh_seconds": refresh_seconds < TARGET_REFRESH_S,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "beam": apache_beam.__version__,
            "runner": "DirectRunner (in_memory, 1 worker)",
        },
    }
    print(
        f"\neight stages into ClickHouse and PostgreSQL, {report['events']:,} records, "
        f"{config.assets:,} assets, {config.indicators:,} indicators, medians of {config.repeat}:\n"
        f"  beam  {beam_rate:>12,.0f} records/s  (target {TARGET_BEAM_EVENTS_PER_S:,})\n"
        f"  loop  {loop_rate:>12,.0f} records/s\n"
        f"  ratio {report['ratio']:>12.3f}         (target {TARGET_RATIO})\n"
        f"  peak  {peak:>12,.0f} MB         (target < {TARGET_PEAK_RSS_MB:,})"
    )
    print(
        f"  clickhouse sink in Beam {sink_rate:>10,.0f} rows/s   "
        f"(target {TARGET_CLICKHOUSE_SINK_ROWS_PER_S:,})\n"
        f"  alert upserts           {upsert_rate:>10,.0f} rows/s   "
        f"(target {TARGET_ALERT_UPSERTS_PER_S:,})\n"
        f"  CTI index build {index_build:.2f} s (target < {TARGET_BUILD_S:.0f}), "
        f"memory {index_mb:,.0f} MB (target < {TARGET_RSS_MB:.0f}), "
        f"{lookups:,.0f} lookups/s (target {TARGET_LOOKUPS_PER_S:,})\n"
        f"  CTI refresh of {config.indicators:,} indicators {refresh_seconds:.1f} s "
        f"(target < {TARGET_REFRESH_S:.0f})"
    )
    for part in parts:
        if "us_per_record" in part:
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
