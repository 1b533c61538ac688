"""The CTI refresh job: feeds into the PostgreSQL indicator store and a new snapshot, on Beam.

One batch pipeline per refresh:

1. ``Create`` one element per feed that is due (with the state its last refresh
   stored), then ``RefreshFeed`` fetches and parses each feed in parallel
   (`cti.feeds.refresh_feed`: conditional requests, retries, a failing feed is
   reported and never stops the others). Bad entries go to the dead-letter sink.
2. ``StoreIndicators`` brings every feed's result to one worker (the store is one
   database) and, in one transaction under an advisory lock, replaces the
   contribution of each full-list feed (or adds to an incremental one), merges
   all feeds into ``cti_indicators`` (highest confidence, every source), expires
   what no feed carries any more, and records each feed's state and outcome.
3. It then writes the indicators valid now as a versioned Parquet snapshot
   (atomic rename, the last few kept) that event pipelines read.

`run_refresh` runs it once and returns the `RefreshReport`; `refresh_forever`
repeats it on a schedule (``otsec cti refresh --every 15m``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import TaggedOutput

from cti.config import FeedConfig
from cti.feeds import FeedResult, FeedState, refresh_feed
from cti.snapshot import SnapshotRef, latest_snapshot, write_snapshot
from transforms._stage import DEAD_LETTERS, MAIN, StageCounters
from transforms.coders import MsgspecCoder
from transforms.durations import parse_duration
from transforms.postgres import PostgresConfig, WriteDeadLettersToPostgres, connect_postgres

__all__ = [
    "FeedOutcome",
    "RefreshConfig",
    "RefreshReport",
    "due_feeds",
    "refresh_forever",
    "run_refresh",
]

_log = logging.getLogger("otsec.cti")


@dataclasses.dataclass(frozen=True)
class RefreshConfig:
    """What one refresh reads and writes.

    Args:
        feeds: The feeds to refresh (already filtered to the due ones).
        postgres: The indicator store.
        snapshot_dir: Where snapshots are published.
        fallback_dir: Where dead letters go when PostgreSQL refuses them.
        keep: Snapshot versions kept.
    """

    feeds: tuple[FeedConfig, ...]
    postgres: PostgresConfig
    snapshot_dir: str
    fallback_dir: str
    keep: int = 5


class FeedOutcome(msgspec.Struct, kw_only=True):
    """One feed's line in the refresh summary."""

    name: str
    type: str
    status: str
    entries: int = 0
    indicators: int = 0
    skipped: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    error_class: str | None = None
    error: str | None = None


class RefreshReport(msgspec.Struct, kw_only=True):
    """What a refresh did: every feed's outcome, the store's counts, the snapshot."""

    feeds: list[FeedOutcome]
    store_indicators: int = 0
    current_indicators: int = 0
    expired_now: int = 0
    snapshot: SnapshotRef | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[FeedOutcome]:
        return [feed for feed in self.feeds if feed.status == "failed"]

    def describe(self) -> str:
        lines = [
            f"{'feed':<22} {'type':<6} {'status':<13} {'entries':>9} {'indicators':>11} "
            f"{'skipped':>8} {'dead':>6} {'seconds':>8}"
        ]
        for feed in self.feeds:
            lines.append(
                f"{feed.name:<22} {feed.type:<6} {feed.status:<13} {feed.entries:>9,} "
                f"{feed.indicators:>11,} {feed.skipped:>8,} {feed.dead_letters:>6,} "
                f"{feed.seconds:>8.2f}"
            )
            if feed.error:
                lines.append(f"  {feed.error_class}: {feed.error}")
        lines.append(
            f"store: {self.store_indicators:,} indicators, {self.current_indicators:,} current, "
            f"{self.expired_now:,} expired by this refresh"
        )
        if self.snapshot is not None:
            lines.append(
                f"snapshot: {self.snapshot.path} ({self.snapshot.indicators:,} indicators)"
            )
        else:
            lines.append("snapshot: unchanged (no feed changed)")
        failed = len(self.failed)
        lines.append(
            f"{len(self.feeds)} feeds, {failed} failed, in {self.seconds:.1f} s"
            if failed
            else f"{len(self.feeds)} feeds refreshed in {self.seconds:.1f} s"
        )
        return "\n".join(lines)


def _outcome(result: FeedResult) -> FeedOutcome:
    return FeedOutcome(
        name=result.name,
        type=result.type,
        status=result.status,
        entries=result.entries,
        indicators=len(result.indicators),
        skipped=result.skipped,
        dead_letters=len(result.dead_letters),
        seconds=round(result.seconds, 3),
        error_class=result.error_class,
        error=result.error,
    )


class _FeedResultCoder(MsgspecCoder):
    record_type = FeedResult


class _FeedOutcomeCoder(MsgspecCoder):
    record_type = FeedOutcome


# A feed's result can hold a million indicators: msgpack, not pickle (about 100 times faster).
beam.coders.registry.register_coder(FeedResult, _FeedResultCoder)
beam.coders.registry.register_coder(FeedOutcome, _FeedOutcomeCoder)


class _RefreshFeedFn(beam.DoFn):  # type: ignore[misc]
    """Fetch and parse one feed; its bad entries leave as dead letters."""

    def setup(self) -> None:
        self.counters = StageCounters("cti.parse")

    def process(self, element: tuple[FeedConfig, FeedState]) -> Iterator[Any]:
        config, state = element
        result = refresh_feed(config, state)
        counters = self.counters
        counters.inputs += result.entries
        counters.outputs += len(result.indicators)
        counters.extra[f"feeds.{result.status}"] += 1
        for letter in result.dead_letters:
            counters.dead_letters[letter.error_class] += 1
            yield TaggedOutput(DEAD_LETTERS, letter)
        # The dead letters travel on their own; the outcome line keeps their count.
        yield _outcome(result), msgspec.structs.replace(result, dead_letters=[])

    def finish_bundle(self) -> None:
        self.counters.flush()


class _StoreFn(beam.DoFn):  # type: ignore[misc]
    """All feeds' results into the store and a snapshot, in one transaction."""

    def __init__(self, config: RefreshConfig, report_path: str) -> None:
        self._config = config
        self._report_path = report_path

    def process(
        self, element: tuple[str, Iterable[tuple[FeedOutcome, FeedResult]]]
    ) -> Iterator[RefreshReport]:
        from cti import store

        started = time.monotonic()
        now = datetime.now(UTC)
        fetched = sorted(element[1], key=lambda pair: pair[0].name)
        results = [result for _, result in fetched]
        urls = {c.name: c.url or c.path for c in self._config.feeds}
        full = {c.name: bool(c.full_list) for c in self._config.feeds}
        changed = any(r.status == "ok" for r in results)
        connection = connect_postgres(self._config.postgres)
        try:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (store.REFRESH_LOCK,))
                for result in results:
                    if result.status != "ok":
                        continue
                    if full[result.name] and result.full_list:
                        store.replace_feed(connection, result.name, result.indicators, now)
                    else:
                        store.upsert_feed(connection, result.name, result.indicators, now)
                counts = store.merge_store(connection, now)
                store.record_outcomes(connection, results, urls, now)
            snapshot = None
            if changed or counts.expired_now or latest_snapshot(self._config.snapshot_dir) is None:
                table = store.current_table(connection, now)
                snapshot = write_snapshot(
                    self._config.snapshot_dir, table, keep=self._config.keep, now=now
                )
        finally:
            connection.close()
        report = RefreshReport(
            feeds=[outcome for outcome, _ in fetched],
            store_indicators=counts.indicators,
            current_indicators=counts.current,
            expired_now=counts.expired_now,
            snapshot=snapshot,
            seconds=round(time.monotonic() - started, 3),
        )
        with open(self._report_path, "wb") as handle:
            handle.write(msgspec.json.encode(report))
        yield report


def run_refresh(
    config: RefreshConfig,
    states: dict[str, FeedState],
    beam_args: Sequence[str] = (),
) -> RefreshReport:
    """Refresh ``config.feeds`` once (a Beam batch job) and return the report."""
    started = time.monotonic()
    os.makedirs(config.snapshot_dir, exist_ok=True)
    report_dir = tempfile.mkdtemp(prefix="otsec-refresh-")
    report_path = os.path.join(report_dir, "report.json")
    elements = [(feed, states.get(feed.name, FeedState())) for feed in config.feeds]
    pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    fetched = (
        pipeline
        | "Feeds" >> beam.Create(elements, reshuffle=False)
        | "RefreshFeed" >> beam.ParDo(_RefreshFeedFn()).with_outputs(DEAD_LETTERS, main=MAIN)
    )
    fetched[DEAD_LETTERS] | "StoreDeadLetters" >> WriteDeadLettersToPostgres(
        config.postgres, config.fallback_dir
    )
    (
        fetched[MAIN]
        # One group with every feed's result: the store is one database and one transaction.
        | "OneStore"
        >> beam.Map(lambda pair: ("store", pair)).with_output_types(
            tuple[str, tuple[FeedOutcome, FeedResult]]
        )
        | "AllFeeds" >> beam.GroupByKey()
        | "StoreIndicators" >> beam.ParDo(_StoreFn(config, report_path))
    )
    result = pipeline.run()
    result.wait_until_finish()
    with open(report_path, "rb") as handle:
        report = msgspec.json.decode(handle.read(), type=RefreshReport)
    os.remove(report_path)
    os.rmdir(report_dir)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def due_feeds(
    feeds: Sequence[FeedConfig], last_runs: dict[str, datetime], now: datetime
) -> tuple[FeedConfig, ...]:
    """The feeds whose own ``every`` has passed since their last run (or that have none)."""
    due = []
    for feed in feeds:
        last = last_runs.get(feed.name)
        # A second of slack, so a feed every 15m under a 15m schedule is due on each run.
        if (
            feed.every is None
            or last is None
            or (now - last).total_seconds() >= parse_duration(feed.every) - 1
        ):
            due.append(feed)
    return tuple(due)


def refresh_forever(
    once: Callable[[], RefreshReport | None],
    every: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    runs: int | None = None,
) -> None:
    """Call ``once`` now and then every ``every`` (start to start) until interrupted.

    A refresh that raises is logged and the schedule goes on: the next run tries again.
    """
    period = parse_duration(every)
    count = 0
    while runs is None or count < runs:
        started = time.monotonic()
        try:
            once()
        except Exception:
            _log.exception("CTI refresh failed; the next run is in %s", every)
        count += 1
        if runs is not None and count >= runs:
            return
        sleep(max(0.0, period - (time.monotonic() - started)))
