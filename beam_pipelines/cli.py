"""The ``otsec`` command line.

Heavy modules (Beam, pyarrow) are imported inside the commands that need them,
so ``otsec --help`` and configuration errors answer at once. Configuration
errors exit with status 2 and one line on standard error; a job that ran exits
0 even when it produced dead letters (they are data, not failure).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from beam_pipelines.summary import RunSummary

__all__ = ["main"]

_PROG = "otsec"


class ConfigError(Exception):
    """A bad option, path or setting: reported in one line, exit status 2."""


def _data_dir(value: str | None) -> str:
    return os.path.abspath(value or os.environ.get("OTSEC_HOME") or ".otsec")


def _count(text: str) -> int:
    """A whole number >= 0 (underscores allowed: 1_000_000)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    """A whole number >= 1."""
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="otsec: OT/ICS security event pipeline on Apache Beam.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text for people (default), json lines for log shippers",
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default) or ERROR"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="generate a plant's sensor files and run the pipeline on them",
        allow_abbrev=False,
    )
    demo.add_argument("--data-dir", help="working directory (default $OTSEC_HOME or ./.otsec)")
    demo.add_argument(
        "--events",
        type=_positive_int,
        default=20_000,
        help="sensor records to generate (default 20000)",
    )
    demo.add_argument("--seed", type=int, default=7)

    generate = commands.add_parser(
        "generate",
        help="write realistic OT sensor files and their ground truth",
        allow_abbrev=False,
    )
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--events", type=_count, default=10_000)
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--attack-rate", type=_rate, default=0.002)
    generate.add_argument("--malformed-rate", type=_rate, default=0.001)
    generate.add_argument("--duplicate-rate", type=_rate, default=0.002)

    run = commands.add_parser(
        "run",
        help="run the event pipeline over files (any other --option goes to Beam)",
        allow_abbrev=False,
    )
    run.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="PATH_OR_URI",
        help="file, directory or glob; repeatable",
    )
    run.add_argument("--data-dir", help="working directory (default $OTSEC_HOME or ./.otsec)")
    run.add_argument("--output", help="also export the events as JSON lines into this directory")
    run.add_argument(
        "--dead-letter-dir",
        help="also write the dead letters as JSON lines into this directory",
    )
    run.add_argument("--summary-json", help="also write the run summary to this file")
    run.add_argument(
        "--assets",
        metavar="FILE",
        help="asset inventory, CSV or JSON (default: PostgreSQL assets, see `otsec assets import`)",
    )
    run.add_argument(
        "--cti-snapshot",
        metavar="PATH",
        help="CTI snapshot file or directory (its newest version; default "
        "DATA_DIR/cti/snapshots when `otsec cti refresh` wrote one there)",
    )
    run.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar="DIR",
        help="directory (or file) of YAML detection rules added to the built-in ones; "
        "a rule with a built-in id replaces it; repeatable",
    )
    _store_arguments(run)
    run.add_argument(
        "--runner",
        default="DirectRunner",
        choices=("DirectRunner", "FlinkRunner"),
        help="DirectRunner (in this process), or FlinkRunner: the local Flink of "
        "`otsec flink cluster start` (the Python code runs in this process, LOOPBACK)",
    )
    run.add_argument(
        "--flink-run-dir",
        metavar="DIR",
        help="FlinkRunner: the run directory of the cluster (default: the one "
        "`otsec flink cluster start` uses)",
    )
    run.add_argument(
        "--max-record-bytes",
        type=_positive_int,
        default=1 << 20,
        help="records larger than this are dead letters (default 1 MiB)",
    )
    run.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress line on standard error (auto: when it is a terminal)",
    )

    publish = commands.add_parser(
        "publish",
        help="put sensor files into a Kinesis stream, a batch of lines per record",
        allow_abbrev=False,
    )
    publish.add_argument(
        "--to", required=True, metavar="URI", help="kinesis://STREAM?region=R&endpoint=URL"
    )
    publish.add_argument("input", nargs="+", metavar="PATH", help="files, directories or globs")
    publish.add_argument(
        "--lines-per-record",
        type=_positive_int,
        default=100,
        help="data lines per Kinesis record (default 100)",
    )

    cti = commands.add_parser("cti", help="threat intelligence feeds", allow_abbrev=False)
    cti_commands = cti.add_subparsers(dest="cti_command", metavar="ACTION", required=True)
    refresh = cti_commands.add_parser(
        "refresh",
        help="fetch the feeds into PostgreSQL and publish a CTI snapshot",
        allow_abbrev=False,
    )
    refresh.add_argument("--feeds", required=True, metavar="FILE", help="feed file (YAML or JSON)")
    refresh.add_argument(
        "--every",
        metavar="DURATION",
        help="keep running and refresh every DURATION (15m, 1h...); feeds with their own "
        "`every` are refreshed only when it has passed",
    )
    refresh.add_argument(
        "--snapshot-dir",
        help="where snapshots are published (default DATA_DIR/cti/snapshots)",
    )
    refresh.add_argument(
        "--keep", type=_positive_int, default=5, help="snapshot versions kept (default 5)"
    )
    refresh.add_argument("--data-dir", help="working directory (default $OTSEC_HOME or ./.otsec)")
    refresh.add_argument(
        "--postgres-dsn",
        help="PostgreSQL for the indicator store (default $OTSEC_POSTGRES_DSN, else an "
        "embedded server under DATA_DIR/postgres)",
    )

    assets = commands.add_parser("assets", help="the asset inventory", allow_abbrev=False)
    assets_commands = assets.add_subparsers(dest="assets_command", metavar="ACTION", required=True)
    assets_import = assets_commands.add_parser(
        "import",
        help="load an inventory file (CSV or JSON) into PostgreSQL assets",
        allow_abbrev=False,
    )
    assets_import.add_argument("file", metavar="FILE")
    assets_import.add_argument(
        "--replace", action="store_true", help="delete stored assets the file does not list"
    )
    assets_import.add_argument(
        "--data-dir", help="working directory (default $OTSEC_HOME or ./.otsec)"
    )
    assets_import.add_argument(
        "--postgres-dsn",
        help="PostgreSQL (default $OTSEC_POSTGRES_DSN, else the embedded server of DATA_DIR)",
    )

    bench = commands.add_parser(
        "bench", help="measure the pipeline against a plain loop", allow_abbrev=False
    )
    bench.add_argument(
        "--events",
        type=_positive_int,
        help="records per run (default 1000000; with --streaming: lines per burst, 20000)",
    )
    bench.add_argument(
        "--repeat",
        type=_positive_int,
        default=3,
        help="runs of each side; medians are reported (default 3)",
    )
    bench.add_argument(
        "--data-dir", help="working directory; generated input is cached under its bench/ folder"
    )
    bench.add_argument(
        "--indicators",
        type=_positive_int,
        default=1_000_000,
        help="CTI indicators in the snapshot and the refresh (default 1000000)",
    )
    bench.add_argument(
        "--assets", type=_count, default=5_000, help="assets in the generated plant (default 5000)"
    )
    bench.add_argument("--json", help="write the figures to this file")
    bench.add_argument(
        "--streaming",
        action="store_true",
        help="measure the streaming job instead: Kinesis (moto_server) through a private "
        "local Flink into the stores, against a read-only job (docs/benchmarks.md)",
    )
    bench.add_argument(
        "--latency-rate",
        type=_positive_int,
        metavar="EVENTS_PER_S",
        help="--streaming: rate of the paced phase whose latency is reported (default "
        "10000 if the first burst sustained it, else half the first burst's rate)",
    )
    bench.add_argument(
        "--latency-time",
        default="20s",
        metavar="DURATION",
        help="--streaming: length of the paced phase (default 20s)",
    )
    bench.add_argument(
        "--shards", type=_positive_int, default=2, help="--streaming: stream shards (default 2)"
    )
    bench.add_argument(
        "--checkpoint-interval",
        default="10s",
        metavar="DURATION",
        help="--streaming: Flink checkpoints (default 10s)",
    )

    db = commands.add_parser("db", help="the stores' schemas", allow_abbrev=False)
    db_commands = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    migrate = db_commands.add_parser(
        "migrate", help="apply pending schema migrations (safe to run twice)", allow_abbrev=False
    )
    migrate.add_argument("--data-dir", help="working directory (default $OTSEC_HOME or ./.otsec)")
    migrate.add_argument(
        "--clickhouse-ttl-days",
        type=_count,
        help="keep events this many days by event time (0: forever); unchanged if not given",
    )
    _store_arguments(migrate)

    dlq = commands.add_parser("dlq", help="dead letters", allow_abbrev=False)
    dlq_commands = dlq.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND", required=True)
    replay = dlq_commands.add_parser(
        "replay",
        help="re-drive dead letters through the stages after a fix; mark them replayed",
        allow_abbrev=False,
    )
    replay.add_argument("--stage", help="only dead letters of this stage (decode, validate, ...)")
    replay.add_argument("--error-class", help="only this error class (DatabaseError, ...)")
    replay.add_argument("--limit", type=_positive_int, help="at most this many")
    replay.add_argument(
        "--from-files",
        nargs="*",
        metavar="FILE_OR_DIR",
        help="replay dead letters from JSON-lines files instead of PostgreSQL "
        "(no value: the fallback files under DATA_DIR/dead_letters-fallback)",
    )
    replay.add_argument("--data-dir", help="working directory (default $OTSEC_HOME or ./.otsec)")
    _store_arguments(replay)

    schema = commands.add_parser(
        "schema", help="JSON Schemas of the record types", allow_abbrev=False
    )
    schema_commands = schema.add_subparsers(
        dest="schema_command", metavar="SUBCOMMAND", required=True
    )
    export = schema_commands.add_parser("export", help="write the JSON Schemas into DIR")
    export.add_argument("directory", metavar="DIR")
    _add_flink_commands(commands)
    return parser


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clickhouse-dsn",
        help="ClickHouse for events: http(s)://user:pass@host:port/db or chdb:///path "
        "(default $OTSEC_CLICKHOUSE_DSN, else embedded chDB under DATA_DIR/clickhouse)",
    )
    parser.add_argument(
        "--postgres-dsn",
        help="PostgreSQL for dead letters, alerts, assets and CTI "
        "(default $OTSEC_POSTGRES_DSN, else an embedded server under DATA_DIR/postgres)",
    )


def _check_beam_args(beam_args: Sequence[str]) -> None:
    """Refuse options no Beam options class knows (Beam itself only warns and drops them)."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    seen: dict[str, type[Any]] = {}
    pending: list[type[Any]] = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        seen.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)
    for cls in seen.values():
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:
            continue  # an option defined twice by Beam's own classes
    _, unknown = parser.parse_known_args(list(beam_args))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]} (not an otsec or Beam pipeline option)")


class _ProgressLine:
    """Prints records read and the rate every two seconds while a local run goes on."""

    def __init__(self, enabled: bool, total_files: int) -> None:
        self._enabled = enabled
        self._total_files = total_files
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="otsec-progress", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> _ProgressLine:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            self._stop.set()
            self._thread.join()
            self._render()
            sys.stderr.write("\n")

    def _render(self) -> None:
        from transforms.sources import PROGRESS

        elapsed = time.monotonic() - self._started
        rate = PROGRESS.records / elapsed if elapsed else 0.0
        sys.stderr.write(
            f"\rread {PROGRESS.records:,} records from {PROGRESS.files}/{self._total_files} "
            f"files, {rate:,.0f} records/s, {elapsed:,.0f} s"
        )
        sys.stderr.flush()

    def _loop(self) -> None:
        while not self._stop.wait(2.0):
            self._render()


def print_summary(summary: RunSummary, stream: Any = None) -> None:
    """The end-of-run summary for people: counts per stage and per dead-letter class."""
    out = stream or sys.stdout
    verdict = "OK" if summary.conservation_ok else "MISMATCH: records unaccounted for"
    out.write(
        f"input records     {summary.input_records:>12,}  ({summary.files} files, "
        f"{summary.seconds:.1f} s, {summary.records_per_second:,.0f} records/s)\n"
        f"stored events     {summary.stored_events:>12,}\n"
        f"duplicates        {summary.duplicates_dropped:>12,}\n"
        f"dead letters      {summary.dead_letters.total:>12,}"
        + (
            f"  ({summary.dead_letters_in_fallback_files:,} kept in fallback files: "
            "PostgreSQL was unavailable)\n"
            if summary.dead_letters_in_fallback_files
            else "\n"
        )
        + f"  stored in PostgreSQL {summary.dead_letters_stored:>9,}\n"
        + f"alerts            {summary.alerts:>12,}\n"
        + (
            f"  refused by PostgreSQL {summary.alerts_dead_lettered:>8,} (dead letters)\n"
            if summary.alerts_dead_lettered
            else ""
        )
        + f"conservation      {verdict}\n"
    )
    out.write("stage                 in          out  dead letters\n")
    for name, stage in summary.stages.items():
        out.write(f"  {name:<12}{stage.in_:>12,} {stage.out:>12,} {stage.dead_letter:>12,}\n")
    for error_class, count in summary.dead_letters.by_error_class.items():
        out.write(f"  dead letters of class {error_class}: {count:,}\n")


def _clear_outputs(directory: str, prefix: str) -> None:
    # A run replaces the output files of the previous run in the same directory.
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            if name.startswith(prefix) and name.endswith(".jsonl"):
                os.remove(os.path.join(directory, name))


def _run(args: argparse.Namespace, beam_args: list[str], *, report: bool = False) -> int:
    from beam_pipelines.inputs import resolve_inputs
    from schemas.errors import OtsecError

    try:
        files = resolve_inputs(args.input)
    except OtsecError as error:
        raise ConfigError(error.message) from None
    _check_beam_args(beam_args)

    from beam_pipelines.event_pipeline import RunConfig, run
    from beam_pipelines.stores import StoreSettings, StoreUnavailable, open_stores

    data_dir = _data_dir(args.data_dir)
    if any("multi_processing" in arg for arg in beam_args) and not (
        args.clickhouse_dsn or os.environ.get("OTSEC_CLICKHOUSE_DSN", "").startswith("http")
    ):
        raise ConfigError(
            "--direct_running_mode=multi_processing needs a ClickHouse server "
            "(--clickhouse-dsn http://...): the embedded store opens in one process only"
        )
    output_dir = os.path.abspath(args.output) if args.output else None
    dead_letter_dir = os.path.abspath(args.dead_letter_dir) if args.dead_letter_dir else None
    rules, snapshot = _rules_and_snapshot(args, data_dir)
    settings = StoreSettings.resolve(data_dir, args.clickhouse_dsn, args.postgres_dsn)
    try:
        with open_stores(settings) as stores:
            inventory = _inventory(args.assets, stores.postgres_connection)
            config = RunConfig(
                input_files=files,
                output_dir=output_dir,
                dead_letter_dir=dead_letter_dir,
                clickhouse=stores.clickhouse,
                postgres=stores.postgres,
                fallback_dir=os.path.join(data_dir, "dead_letters-fallback"),
                max_record_bytes=args.max_record_bytes,
                assets=inventory,
                cti_snapshot=snapshot,
                rules=rules,
            )
            _describe_context(inventory, snapshot, rules)
            for directory, prefix in (
                (output_dir, "events-"),
                (output_dir, "alerts-"),
                (dead_letter_dir, "dead_letters-"),
            ):
                if directory is not None:
                    _clear_outputs(directory, prefix)
            show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
            with _ProgressLine(show, len(files)):
                summary = run(config, _runner_args(args, beam_args))
            stored = store_report(stores) if report else None
    except StoreUnavailable as error:
        raise ConfigError(str(error)) from None
    if args.summary_json:
        with open(args.summary_json, "wb") as handle:
            handle.write(summary.to_json())
    print_summary(summary)
    print(f"events: ClickHouse {stores.clickhouse.where}")
    print(f"dead letters: PostgreSQL {stores.postgres.where}")
    for label, directory in (
        ("events also in", output_dir),
        ("dead letters also in", dead_letter_dir),
    ):
        if directory is not None:
            print(f"{label}: {directory}")
    if stored:
        print(stored)
    return 0


def _runner_args(args: argparse.Namespace, beam_args: list[str]) -> list[str]:
    """Pipeline options for ``--runner``: DirectRunner's defaults, or the local Flink's."""
    if args.runner == "DirectRunner":
        from runners.direct import with_direct_defaults

        return with_direct_defaults(["--runner=DirectRunner", *beam_args])
    from runners.flink import FlinkError, FlinkSetup, local_pipeline_args

    try:
        setup = FlinkSetup.current(run_dir=args.flink_run_dir)
        flink_args = local_pipeline_args(setup, environment="loopback", job_name="otsec-run")
    except FlinkError as error:
        raise ConfigError(str(error)) from None
    print(f"running on Flink: {setup.dashboard_url}", file=sys.stderr)
    return [*flink_args, *beam_args]


def _rules_and_snapshot(args: argparse.Namespace, data_dir: str) -> tuple[Any, Any]:
    """The detection rules (built-in plus ``--rules``) and the CTI snapshot a run uses."""
    from cti.snapshot import latest_snapshot
    from schemas.errors import OtsecError
    from transforms.detect import BUILTIN_RULES, load_rules

    try:
        rules = load_rules(BUILTIN_RULES, *(os.path.abspath(d) for d in args.rules))
        if args.cti_snapshot:
            snapshot = latest_snapshot(os.path.abspath(args.cti_snapshot))
            if snapshot is None:
                raise ConfigError(f"no CTI snapshot in {args.cti_snapshot}")
        else:
            default = os.path.join(data_dir, "cti", "snapshots")
            snapshot = latest_snapshot(default) if os.path.isdir(default) else None
    except OtsecError as error:
        raise ConfigError(error.message) from None
    return rules, snapshot


def _inventory(path: str | None, connection: Any) -> Any:
    """The asset inventory from ``--assets``, else PostgreSQL ``assets`` (None when empty)."""
    from schemas.errors import OtsecError
    from transforms.assets import load_inventory, read_assets

    try:
        if path:
            return load_inventory(os.path.abspath(path))
    except FileNotFoundError:
        raise ConfigError(f"asset inventory {path} does not exist") from None
    except OtsecError as error:
        raise ConfigError(error.message) from None
    stored = read_assets(connection)
    return stored if stored.assets else None


def _describe_context(inventory: Any, snapshot: Any, rules: Any) -> None:
    assets = f"{len(inventory.assets):,} assets ({inventory.source})" if inventory else "none"
    cti = f"{snapshot.indicators:,} indicators ({snapshot.path})" if snapshot else "none"
    print(f"asset inventory: {assets}", file=sys.stderr)
    print(f"CTI snapshot: {cti}", file=sys.stderr)
    print(f"detection rules: {len(rules)}", file=sys.stderr)


def _cti(args: argparse.Namespace) -> int:
    from cti.config import load_feeds
    from cti.refresh import RefreshConfig, RefreshReport, due_feeds, refresh_forever, run_refresh
    from cti.store import load_feed_states, load_last_runs
    from schemas.errors import OtsecError
    from transforms.durations import parse_duration

    try:
        feeds = load_feeds(os.path.abspath(args.feeds))
        if args.every:
            parse_duration(args.every)
    except FileNotFoundError:
        raise ConfigError(f"feed file {args.feeds} does not exist") from None
    except OtsecError as error:
        raise ConfigError(error.message) from None
    from beam_pipelines.stores import StoreSettings, StoreUnavailable, open_postgres
    from runners.direct import with_direct_defaults

    data_dir = _data_dir(args.data_dir)
    snapshot_dir = os.path.abspath(args.snapshot_dir or os.path.join(data_dir, "cti", "snapshots"))
    settings = StoreSettings.resolve(data_dir, None, args.postgres_dsn)
    reports: list[RefreshReport] = []
    try:
        with open_postgres(settings) as (postgres, connection):

            def once() -> RefreshReport | None:
                now = datetime.datetime.now(datetime.UTC)
                due = due_feeds(feeds, load_last_runs(connection), now) if args.every else feeds
                if not due:
                    print(f"{now:%H:%M:%S} no feed is due", flush=True)
                    return None
                print(f"refreshing {len(due)} of {len(feeds)} feeds", flush=True)
                config = RefreshConfig(
                    feeds=tuple(due),
                    postgres=postgres,
                    snapshot_dir=snapshot_dir,
                    fallback_dir=os.path.join(data_dir, "dead_letters-fallback"),
                    keep=args.keep,
                )
                report = run_refresh(config, load_feed_states(connection), with_direct_defaults([]))
                print(report.describe(), flush=True)
                reports.append(report)
                return report

            if args.every:
                print(f"refreshing every {args.every}; Ctrl-C stops", flush=True)
                refresh_forever(once, args.every)
            else:
                once()
    except StoreUnavailable as error:
        raise ConfigError(str(error)) from None
    # A feed that failed is reported, not fatal; exit 3 lets cron and CronJobs notice it.
    return 3 if reports and reports[-1].failed else 0


def _assets(args: argparse.Namespace) -> int:
    from beam_pipelines.stores import StoreSettings, StoreUnavailable, open_postgres
    from schemas.errors import OtsecError
    from transforms.assets import import_assets, load_inventory

    try:
        inventory = load_inventory(os.path.abspath(args.file))
    except FileNotFoundError:
        raise ConfigError(f"asset inventory {args.file} does not exist") from None
    except OtsecError as error:
        raise ConfigError(error.message) from None
    settings = StoreSettings.resolve(_data_dir(args.data_dir), None, args.postgres_dsn)
    try:
        with open_postgres(settings) as (postgres, connection):
            count = import_assets(connection, inventory.assets, args.replace)
            print(f"imported {count:,} assets into PostgreSQL {postgres.where}")
    except StoreUnavailable as error:
        raise ConfigError(str(error)) from None
    return 0


def store_report(stores: Any) -> str:
    """A short report read back from the stores: what landed, by protocol and operation."""
    rows = stores.clickhouse_client.query(
        "SELECT if(ics_protocol = '', app_protocol, ics_protocol) AS protocol, ics_operation, "
        "count() FROM ot_events FINAL GROUP BY protocol, ics_operation "
        "ORDER BY count() DESC LIMIT 15"
    ).result_rows
    lines = ["events in ClickHouse by protocol and operation:"]
    lines += [
        f"  {protocol or '-':<14} {operation or '-':<14} {count:>10,}"
        for protocol, operation, count in rows
    ]
    letters = stores.postgres_connection.execute(
        "SELECT error_class, stage, count(*) FROM dead_letters WHERE replayed_at IS NULL "
        "GROUP BY error_class, stage ORDER BY count(*) DESC"
    ).fetchall()
    alerts = stores.postgres_connection.execute(
        "SELECT severity, risk_score, rule_id, attack_techniques, host(src_ip), host(dst_ip), "
        "event_count FROM alerts WHERE status = 'new' "
        "ORDER BY risk_score DESC, last_seen DESC LIMIT 12"
    ).fetchall()
    lines.append("open alerts in PostgreSQL, highest risk first:")
    lines += [
        f"  {risk:>3} {severity:<8} {rule_id:<34} {','.join(techniques):<12} "
        f"{src or '-'} -> {dst or '-'} ({count:,} events)"
        for severity, risk, rule_id, techniques, src, dst, count in alerts
    ]
    lines.append("dead letters in PostgreSQL by class and stage:")
    lines += [
        f"  {error_class:<18} {stage:<10} {count:>10,}" for error_class, stage, count in letters
    ]
    return "\n".join(lines)


def _generate(args: argparse.Namespace) -> int:
    from beam_pipelines.generate import GeneratorConfig, generate

    report = generate(
        GeneratorConfig(
            out_dir=os.path.abspath(args.out),
            events=args.events,
            seed=args.seed,
            attack_rate=args.attack_rate,
            malformed_rate=args.malformed_rate,
            duplicate_rate=args.duplicate_rate,
        )
    )
    print(report.describe())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from beam_pipelines.generate import GeneratorConfig, generate

    data_dir = _data_dir(args.data_dir)
    demo_dir = os.path.join(data_dir, "demo")
    print(f"generating {args.events:,} sensor records of a demo plant into {demo_dir}")
    report = generate(GeneratorConfig(out_dir=demo_dir, events=args.events, seed=args.seed))
    print(report.describe())
    print("refreshing threat intelligence from the demo's feed file")
    refresh_args = _parser().parse_args(
        ["cti", "refresh", "--feeds", report.feeds_path, "--data-dir", data_dir]
    )
    _cti(refresh_args)
    print("running the pipeline on them")
    run_args = _parser().parse_args(
        [
            "run",
            "--input",
            report.sensor_dir,
            "--assets",
            os.path.join(demo_dir, "assets.csv"),
            "--data-dir",
            data_dir,
            "--summary-json",
            os.path.join(data_dir, "demo-summary.json"),
        ]
    )
    return _run(run_args, [], report=True)


def _db(args: argparse.Namespace) -> int:
    from beam_pipelines.stores import StoreSettings, StoreUnavailable, open_stores

    settings = StoreSettings.resolve(
        _data_dir(args.data_dir), args.clickhouse_dsn, args.postgres_dsn
    )
    try:
        with open_stores(settings, migrate=True) as stores:
            print(f"PostgreSQL {stores.postgres.where}: schema current")
            print(f"ClickHouse {stores.clickhouse.where}: schema current")
            if args.clickhouse_ttl_days is not None:
                from schemas.migrate import set_event_ttl

                set_event_ttl(stores.clickhouse_client, args.clickhouse_ttl_days)
                kept = f"{args.clickhouse_ttl_days} days" if args.clickhouse_ttl_days else "forever"
                print(f"ClickHouse ot_events: events kept {kept}")
    except StoreUnavailable as error:
        raise ConfigError(str(error)) from None
    return 0


def _dlq(args: argparse.Namespace) -> int:
    from beam_pipelines.inputs import resolve_inputs
    from beam_pipelines.replay import (
        ReplayFilter,
        fallback_files,
        load_from_files,
        load_pending,
        replay,
    )
    from beam_pipelines.stores import StoreSettings, StoreUnavailable, open_stores
    from schemas.errors import OtsecError

    data_dir = _data_dir(args.data_dir)
    selection = ReplayFilter(stage=args.stage, error_class=args.error_class, limit=args.limit)
    files: list[str] = []
    if args.from_files is not None:
        try:
            found = resolve_inputs(args.from_files) if args.from_files else fallback_files(data_dir)
            files = [path for path in found if path.endswith(".jsonl")]
        except OtsecError as error:
            raise ConfigError(error.message) from None
    settings = StoreSettings.resolve(data_dir, args.clickhouse_dsn, args.postgres_dsn)
    try:
        with open_stores(settings) as stores:
            if args.from_files is not None:
                letters = load_from_files(files, selection)
            else:
                letters = load_pending(stores.postgres_connection, selection)
            report = replay(letters, stores.clickhouse, stores.postgres_connection)
    except StoreUnavailable as error:
        raise ConfigError(str(error)) from None
    if not (args.stage or args.error_class or args.limit):
        for path in files:
            # Every dead letter in them is now a stored event or a dead letter in PostgreSQL.
            os.replace(path, f"{path}.replayed")
    print(report.describe())
    return 0


def _bench(args: argparse.Namespace) -> int:
    from beam_pipelines.bench import BenchConfig, run_bench

    data_dir = _data_dir(args.data_dir)
    if args.streaming:
        from beam_pipelines.bench_streaming import StreamingBenchConfig, run_streaming_bench
        from runners.flink import FlinkError

        try:
            config = StreamingBenchConfig(
                events=args.events or 20_000,
                repeat=args.repeat,
                work_dir=data_dir,
                json_path=args.json,
                assets=args.assets,
                indicators=args.indicators,
                latency_rate=args.latency_rate,
                latency_seconds=_seconds(args.latency_time, "--latency-time"),
                shards=args.shards,
                checkpoint_interval_s=_seconds(args.checkpoint_interval, "--checkpoint-interval"),
            )
        except ValueError as error:
            raise ConfigError(str(error)) from None
        try:
            return run_streaming_bench(config)
        except FlinkError as error:  # no Java, no Flink download, a port taken
            raise ConfigError(str(error)) from None
    return run_bench(
        BenchConfig(
            events=args.events or 1_000_000,
            repeat=max(1, args.repeat),
            work_dir=data_dir,
            json_path=args.json,
            assets=args.assets,
            indicators=args.indicators,
        )
    )


def _schema(args: argparse.Namespace) -> int:
    from schemas.export import export_schemas

    for path in export_schemas(args.directory):
        print(path)
    return 0


# --- otsec flink: the local Flink cluster (runners/flink.py) and jobs on it ------------------


def _add_flink_commands(commands: Any) -> Any:
    """``otsec flink cluster start|stop|status`` and ``otsec flink cancel``; returns the
    ``flink`` subcommands, where more (``submit``) are added."""
    flink = commands.add_parser(
        "flink", help="the local Flink cluster and the jobs on it", allow_abbrev=False
    )
    flink_commands = flink.add_subparsers(dest="flink_command", metavar="ACTION", required=True)

    def where(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--cache-dir",
            help="Flink distribution, job-server jars and the run directory "
            "(default $OTSEC_CACHE/flink, else ~/.cache/otsec/flink)",
        )
        parser.add_argument(
            "--run-dir",
            help="configuration, pid files and logs of the running cluster (default CACHE_DIR/run)",
        )

    def remote(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--rest-url",
            metavar="URL",
            help="the REST API of a Flink that is not the local one (http://jobmanager:8081)",
        )

    cluster = flink_commands.add_parser(
        "cluster", help="start, stop or inspect the local Flink cluster", allow_abbrev=False
    )
    cluster_commands = cluster.add_subparsers(
        dest="cluster_command", metavar="ACTION", required=True
    )
    start = cluster_commands.add_parser(
        "start",
        help="start Flink, Beam's job server and an SDK worker pool on 127.0.0.1 "
        "(the first time downloads Flink and the job server: a few minutes); options not "
        "given keep the values of a cluster that runs, else the defaults",
        allow_abbrev=False,
    )
    where(start)
    start.add_argument(
        "--flink-job-server-jar",
        metavar="PATH",
        help="Beam Flink job-server jar, or a directory of jars, used instead of Maven",
    )
    start.add_argument("--slots", type=_positive_int, help="task slots (default 4)")
    start.add_argument(
        "--taskmanager-memory",
        metavar="SIZE",
        help="TaskManager process memory (default 3072m)",
    )
    start.add_argument(
        "--rest-port", type=_positive_int, help="dashboard and REST API (default 8081)"
    )
    start.add_argument("--job-port", type=_positive_int, help="Beam job endpoint (default 8099)")
    start.add_argument(
        "--worker-pool-port", type=_positive_int, help="Beam SDK worker pool (default 50000)"
    )
    start.add_argument(
        "--no-worker-pool",
        action="store_true",
        help="no SDK worker pool (jobs then need --environment_type=LOOPBACK)",
    )
    start.add_argument(
        "--kinesis-io",
        action="store_true",
        help="put Beam's Java Kinesis IO on the job server (cross-language ReadDataFromKinesis)",
    )
    stop = cluster_commands.add_parser(
        "stop", help="stop the worker pool, the job server and Flink", allow_abbrev=False
    )
    where(stop)
    status = cluster_commands.add_parser(
        "status",
        help="what runs, free slots, jobs (exit 0 when all runs, 3 when not)",
        allow_abbrev=False,
    )
    where(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    fetch = flink_commands.add_parser(
        "fetch",
        help="download Flink and resolve the job server into the cache, start nothing "
        "(what `cluster start` does first: for CI and offline preparation)",
        allow_abbrev=False,
    )
    fetch.add_argument("--cache-dir", help="default $OTSEC_CACHE/flink, else ~/.cache/otsec/flink")
    fetch.add_argument(
        "--kinesis-io", action="store_true", help="also Beam's Java Kinesis IO for the job server"
    )

    cancel = flink_commands.add_parser(
        "cancel", help="cancel a job on the local Flink cluster", allow_abbrev=False
    )
    cancel.add_argument("job", metavar="JOB_ID", help="Flink job id, or the name of a running job")
    cancel.add_argument(
        "--savepoint",
        nargs="?",
        const="",
        metavar="DIR",
        help="stop with a savepoint instead (default dir: RUN_DIR/savepoints); resume with "
        "`otsec flink submit --from-savepoint PATH` (give JOB_ID first: --savepoint JOB_ID "
        "would take it for the directory)",
    )
    where(cancel)
    remote(cancel)

    submit = flink_commands.add_parser(
        "submit",
        help="submit the streaming event job (Kinesis through the eight stages into the "
        "stores) to the local Flink; prints the job id and the dashboard URL",
        allow_abbrev=False,
    )
    submit.add_argument(
        "--input",
        required=True,
        metavar="URI",
        help="kinesis://STREAM?region=R&endpoint=URL&start=trim_horizon|latest|at_timestamp",
    )
    submit.add_argument("--data-dir", help="working directory (default $OTSEC_HOME or ./.otsec)")
    _store_arguments(submit)
    submit.add_argument(
        "--assets",
        metavar="FILE_OR_DSN",
        help="asset inventory re-read every --refresh-every: a CSV/JSON file or a "
        "postgresql:// DSN (default: the assets table of --postgres-dsn)",
    )
    submit.add_argument(
        "--cti-snapshot",
        metavar="DIR",
        help="snapshot directory `otsec cti refresh` writes to, re-read every "
        "--refresh-every (default DATA_DIR/cti/snapshots)",
    )
    submit.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar="DIR",
        help="directory (or file) of YAML detection rules added to the built-in ones",
    )
    submit.add_argument(
        "--refresh-every", default="1m", metavar="DURATION", help="side inputs (default 1m)"
    )
    submit.add_argument(
        "--dedupe-ttl", default="10m", metavar="DURATION", help="event id memory (default 10m)"
    )
    submit.add_argument(
        "--alert-delay",
        default="5s",
        metavar="DURATION",
        help="alerts leave stage 7 this often (default 5s)",
    )
    submit.add_argument(
        "--bundle-size",
        type=_positive_int,
        default=1000,
        help="elements per bundle; sinks flush at every bundle end (default 1000)",
    )
    submit.add_argument(
        "--bundle-time",
        default="1s",
        metavar="DURATION",
        help="longest bundle; bounds how long sinks buffer (default 1s)",
    )
    submit.add_argument(
        "--max-record-bytes",
        type=_positive_int,
        default=1 << 20,
        help="records larger than this are dead letters (default 1 MiB)",
    )
    submit.add_argument("--job-name", default="otsec-events", help="(default otsec-events)")
    submit.add_argument("--parallelism", type=_positive_int, help="(default: the cluster's)")
    submit.add_argument(
        "--checkpoint-interval",
        default="10s",
        metavar="DURATION",
        help="Flink checkpoints (default 10s; 0 turns them and savepoints off)",
    )
    submit.add_argument(
        "--from-savepoint",
        metavar="PATH",
        help="resume from this savepoint (what `otsec flink cancel --savepoint` printed)",
    )
    submit.add_argument(
        "--environment",
        choices=("external", "loopback"),
        default="external",
        help="where the Python code runs: the SDK worker pool (external, detached), or "
        "this process (loopback: the command then waits until the job ends)",
    )
    submit.add_argument(
        "--job-endpoint",
        metavar="HOST:PORT",
        help="a Beam Flink job server that is not the local one (with --rest-url; the "
        "environment is then external, at --worker-pool)",
    )
    submit.add_argument(
        "--worker-pool",
        metavar="HOST:PORT",
        default="localhost:50000",
        help="with --job-endpoint: where the TaskManagers reach their SDK worker pool, as they "
        "see it (default localhost:50000, a sidecar)",
    )
    where(submit)
    remote(submit)
    return flink_commands


def _flink(args: argparse.Namespace) -> int:
    import json

    from runners.flink import (
        FlinkError,
        FlinkSetup,
        cancel_job,
        check_java,
        ensure_flink_distribution,
        ensure_job_server_classpath,
        local_flink_status,
        start_local_flink,
        stop_job_with_savepoint,
        stop_local_flink,
    )

    try:
        if args.flink_command == "fetch":
            setup = FlinkSetup.resolve(args.cache_dir, kinesis_io=args.kinesis_io)
            java = check_java()
            print(f"Flink {setup.flink_version}: {ensure_flink_distribution(setup)}")
            print(f"job server classpath: {ensure_job_server_classpath(setup)[0]}")
            print(f"java: {java}")
            return 0
        current = FlinkSetup.current(args.cache_dir, args.run_dir)
        if getattr(args, "rest_url", None):
            current = dataclasses.replace(current, remote_rest_url=args.rest_url)
        if args.flink_command == "cancel":
            if args.savepoint is not None:
                location = stop_job_with_savepoint(current, args.job, args.savepoint or None)
                print(f"job {args.job} stopped with a savepoint: {location}")
            else:
                job = cancel_job(current, args.job)
                print(f"job {job.job_id} ({job.name}): {job.state}")
            return 0
        if args.flink_command == "submit":
            return _submit(args, current)
        if args.flink_command != "cluster":
            raise ConfigError(f"unknown flink action {args.flink_command}")
        if args.cluster_command == "start":
            given = {
                "rest_port": args.rest_port,
                "job_port": args.job_port,
                "worker_pool_port": args.worker_pool_port,
                "task_slots": args.slots,
                "taskmanager_memory": args.taskmanager_memory,
                "job_server_jar": args.flink_job_server_jar,
                "kinesis_io": args.kinesis_io or None,
                "worker_pool": False if args.no_worker_pool else None,
            }
            setup = FlinkSetup.for_start(
                args.cache_dir,
                args.run_dir,
                **{name: value for name, value in given.items() if value is not None},
            )
            state = start_local_flink(setup)
            print(f"Flink dashboard: {setup.dashboard_url}")
            print(f"job endpoint: {setup.job_endpoint}")
            if state.worker_pool is not None:
                print(f"SDK worker pool: {state.worker_pool.endpoint}")
            print(f"logs: {setup.run_dir}")
            return 0
        if args.cluster_command == "stop":
            stopped = stop_local_flink(current)
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
            return 0
        state = local_flink_status(current)
    except FlinkError as error:
        raise ConfigError(str(error)) from None
    print(json.dumps(state.to_dict(), indent=1) if args.json else state.describe())
    # Like `systemctl status`: 3 tells scripts that the cluster is not (all) running.
    return 0 if state.running else 3


def _publish(args: argparse.Namespace) -> int:
    from beam_pipelines.inputs import resolve_inputs
    from beam_pipelines.publish import PublishReport, publish_files
    from schemas.errors import OtsecError
    from transforms.kinesis import KinesisReadConfig

    try:
        config = KinesisReadConfig.from_uri(args.to)
        files = resolve_inputs(args.input)
    except OtsecError as error:
        raise ConfigError(error.message) from None

    def progress(report: PublishReport) -> None:
        if sys.stderr.isatty():
            print(f"\r{report.records:,} records, {report.lines:,} lines", end="", file=sys.stderr)

    try:
        report = publish_files(
            files, config, lines_per_record=args.lines_per_record, progress=progress
        )
    except OtsecError as error:
        raise ConfigError(error.message) from None
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(
        f"published {report.lines:,} lines of {report.files} files as {report.records:,} "
        f"records ({report.bytes / 1e6:.1f} MB) to {config.uri} in {report.seconds:.1f} s"
        + (f"; {report.retried} records resent after throttling" if report.retried else "")
    )
    return 0


def _seconds(text: str, option: str, *, zero: bool = False) -> float:
    from schemas.errors import OtsecError
    from transforms.durations import parse_duration

    if zero and text.strip() == "0":
        return 0.0
    try:
        return parse_duration(text, field=option)
    except OtsecError as error:
        raise ConfigError(f"{option}: {error.message}") from None


def _submit(args: argparse.Namespace, setup: Any) -> int:
    """``otsec flink submit``: check everything here, then hand the job to Flink."""
    from beam_pipelines.stores import StoreSettings, StoreUnavailable, open_stores
    from beam_pipelines.streaming import StreamConfig, streaming_args, submit
    from runners.flink import flink_pipeline_args, local_pipeline_args
    from schemas.errors import OtsecError
    from transforms.kinesis import KinesisReadConfig
    from transforms.side_inputs import latest_inventory

    data_dir = _data_dir(args.data_dir)
    try:
        source = KinesisReadConfig.from_uri(args.input)
    except OtsecError as error:
        raise ConfigError(error.message) from None
    if source.bounded:
        print("the stream is read as a bounded input (max_records/stop_when_caught_up)")
    seconds = {
        name: _seconds(getattr(args, name.replace("-", "_")), f"--{name}")
        for name in ("refresh-every", "dedupe-ttl", "alert-delay", "bundle-time")
    }
    checkpoint_s = _seconds(args.checkpoint_interval, "--checkpoint-interval", zero=True)
    # Where the job goes is checked first: nothing is opened for a cluster that is not there.
    job_settings: dict[str, Any] = {
        "streaming": True,
        "parallelism": args.parallelism,
        "job_name": args.job_name,
        "checkpointing_interval_ms": int(checkpoint_s * 1000),
    }
    if args.job_endpoint:
        if not args.rest_url:
            raise ConfigError("--job-endpoint needs --rest-url (to find the job in Flink)")
        if args.environment != "external":
            raise ConfigError(
                "a remote job server runs jobs on a worker pool: --environment external"
            )
        flink_args = flink_pipeline_args(
            args.job_endpoint, "external", worker_pool=args.worker_pool, **job_settings
        )
    else:
        flink_args = local_pipeline_args(setup, environment=args.environment, **job_settings)
    settings = StoreSettings.resolve(data_dir, args.clickhouse_dsn, args.postgres_dsn)
    if settings.postgres_dsn is None:
        raise ConfigError(
            "a streaming job needs a PostgreSQL server it can reach: --postgres-dsn or "
            "OTSEC_POSTGRES_DSN (the embedded one lives only as long as a command)"
        )
    rules, _ = _rules_and_snapshot(
        argparse.Namespace(rules=args.rules, cti_snapshot=None), data_dir
    )
    snapshot_dir = os.path.abspath(args.cti_snapshot or os.path.join(data_dir, "cti", "snapshots"))
    os.makedirs(snapshot_dir, exist_ok=True)
    assets_source = args.assets or settings.postgres_dsn
    if not assets_source.startswith(("postgresql://", "postgres://")):
        assets_source = os.path.abspath(assets_source)
    try:
        # Checked here, so a wrong path fails now and not silently on a worker.
        latest_inventory(assets_source)
    except FileNotFoundError:
        raise ConfigError(f"asset inventory {args.assets} does not exist") from None
    except OtsecError as error:
        raise ConfigError(error.message) from None
    except Exception as error:
        raise ConfigError(f"asset inventory {args.assets or 'in PostgreSQL'}: {error}") from None
    try:
        with open_stores(settings) as stores:
            config = StreamConfig(
                source=source,
                clickhouse=stores.clickhouse,
                postgres=stores.postgres,
                fallback_dir=os.path.join(data_dir, "dead_letters-fallback"),
                assets_source=assets_source,
                cti_snapshot_dir=snapshot_dir,
                refresh_s=seconds["refresh-every"],
                rules=rules,
                dedupe_ttl_s=seconds["dedupe-ttl"],
                alert_delay_s=seconds["alert-delay"],
                max_record_bytes=args.max_record_bytes,
                bundle_size=args.bundle_size,
                bundle_ms=max(1, int(seconds["bundle-time"] * 1000)),
            )
    except StoreUnavailable as error:
        raise ConfigError(str(error)) from None
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if config.clickhouse.embedded:
        print(
            f"events: embedded ClickHouse {config.clickhouse.where}: one worker process may "
            "open it (parallelism 1 on one TaskManager); use a server for more",
            file=sys.stderr,
        )
    if args.from_savepoint:
        flink_args.append(f"--savepoint_path={args.from_savepoint}")
    endpoint = args.job_endpoint or setup.job_endpoint
    print(f"submitting {args.job_name} to {endpoint} ...", file=sys.stderr)
    job = submit(config, streaming_args(config, flink_args), setup=setup, job_name=args.job_name)
    print(f"job {job.job_id} ({job.name}): RUNNING")
    print(f"dashboard: {setup.dashboard_url}/#/job/running/{job.job_id}/overview")
    print(f"stop it with: otsec flink cancel {job.job_id} [--savepoint]")
    if args.environment == "loopback":
        print("loopback: the job runs in this process; Ctrl-C cancels it", file=sys.stderr)
        try:
            job.result.wait_until_finish()
        except KeyboardInterrupt:
            job.result.cancel()
            raise
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    from beam_pipelines.logs import configure_logging

    configure_logging(args.log_format, args.log_level)
    try:
        if args.command != "run" and extra:
            raise ConfigError(f"unknown option {extra[0]}")
        handler = {
            "run": lambda: _run(args, extra),
            "generate": lambda: _generate(args),
            "demo": lambda: _demo(args),
            "db": lambda: _db(args),
            "dlq": lambda: _dlq(args),
            "bench": lambda: _bench(args),
            "assets": lambda: _assets(args),
            "cti": lambda: _cti(args),
            "schema": lambda: _schema(args),
            "flink": lambda: _flink(args),
            "publish": lambda: _publish(args),
        }[args.command]
        return handler()
    except ConfigError as error:
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    except PermissionError as error:
        print(f"{_PROG}: error: {error.strerror}: {error.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
