"""The event pipeline: sensor files through the eight stages into the stores.

`EventStages` is the chain of stages 1-7 as one composite transform (decode,
validate, normalize, deduplicate, enrich with assets, correlate with CTI,
detect and score); `build` wires the sources and the sinks of stage 8 around
it (events to ClickHouse, alerts to PostgreSQL, every dead letter to its sink);
`run` executes it and returns the `RunSummary`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.summary import RunSummary, summarize
from runners.direct import batch_gc
from schemas.asset import AssetInventory
from transforms._stage import METRICS_NAMESPACE
from transforms.assets import EnrichWithAssets
from transforms.clickhouse import ClickHouseConfig, WriteToClickHouse
from transforms.correlate import CorrelateWithCti
from transforms.dead_letters import WriteDeadLetters
from transforms.decode import DEFAULT_MAX_RECORD_BYTES, Decode
from transforms.dedupe import Deduplicate
from transforms.detect import ALERTS, DetectAndScore, RuleSpec, load_rules
from transforms.normalize import Normalize
from transforms.postgres import PostgresConfig, WriteAlertsToPostgres, WriteDeadLettersToPostgres
from transforms.side_inputs import Polled
from transforms.sinks import WriteEventsJsonl, WriteJsonLines, encode_json
from transforms.sources import ReadSensorFiles
from transforms.validate import Validate

__all__ = ["EventStages", "RunConfig", "build", "run", "store"]

_log = logging.getLogger("otsec.pipeline")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What one run of the event pipeline reads and where it writes.

    Raises:
        ValueError: On an empty input list or a non-positive record size limit.
    """

    input_files: tuple[str, ...]
    output_dir: str | None = None
    dead_letter_dir: str | None = None
    clickhouse: ClickHouseConfig | None = None
    postgres: PostgresConfig | None = None
    fallback_dir: str | None = None
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    assets: AssetInventory | None = None
    cti_snapshot: Any = None  # a cti.snapshot.SnapshotRef, or None for no threat intelligence
    rules: tuple[RuleSpec, ...] | None = None  # None: the built-in rules

    def __post_init__(self) -> None:
        if self.max_record_bytes <= 0:
            raise ValueError(f"max_record_bytes must be positive, got {self.max_record_bytes}")
        if self.clickhouse is None and self.output_dir is None:
            raise ValueError("events need a store: a ClickHouse config or an output directory")
        if self.postgres is None and self.dead_letter_dir is None:
            raise ValueError("dead letters need a store: PostgreSQL or a dead-letter directory")
        if self.postgres is not None and self.fallback_dir is None:
            raise ValueError("the PostgreSQL dead-letter sink needs a fallback directory")
        if self.postgres is None and self.output_dir is None:
            raise ValueError("alerts need a store: PostgreSQL or an output directory")


def _side_input(pipeline: beam.Pipeline, label: str, value: Any) -> beam.PCollection | Polled:
    """A singleton side input from a value (batch), or the `Polled` source (streaming)."""
    if isinstance(value, Polled | beam.PCollection):
        return value
    return pipeline | label >> beam.Create([] if value is None else [value])


class EventStages(beam.PTransform):  # type: ignore[misc]
    """Stages 1-7 over raw lines: returns ``(events, dead_letters, alerts)``.

    The dead letters of every stage are flattened into one collection.

    Args:
        max_record_bytes: Decode's record size limit.
        assets: The `AssetInventory` for stage 5, or a `Polled` one (streaming); None: none.
        cti_snapshot: The `SnapshotRef` for stage 6, or a `Polled` one (streaming); None: no CTI.
        rules: Stage 7's rules; None: the built-in rules.
        dedupe_ttl_seconds: Stage 4's memory in streaming jobs; None: exact (batch).
        alert_delay_seconds: Stage 7 in streaming jobs: alerts leave every so many
            seconds; None: batch (one alert per hour bucket).
    """

    def __init__(
        self,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        *,
        assets: AssetInventory | Polled | None = None,
        cti_snapshot: Any = None,
        rules: Sequence[RuleSpec] | None = None,
        dedupe_ttl_seconds: float | None = None,
        alert_delay_seconds: float | None = None,
    ) -> None:
        super().__init__()
        self._max_record_bytes = max_record_bytes
        self._assets = assets
        self._cti_snapshot = cti_snapshot
        self._rules = tuple(rules) if rules is not None else load_rules()
        self._dedupe_ttl = dedupe_ttl_seconds
        self._alert_delay = alert_delay_seconds

    def expand(
        self, lines: beam.PCollection
    ) -> tuple[beam.PCollection, beam.PCollection, beam.PCollection]:
        pipeline = lines.pipeline
        inventory = _side_input(pipeline, "AssetInventory", self._assets)
        snapshot = _side_input(pipeline, "CtiSnapshot", self._cti_snapshot)
        decoded = lines | "Decode" >> Decode(self._max_record_bytes)
        validated = decoded.main | "Validate" >> Validate()
        normalized = validated.main | "Normalize" >> Normalize()
        unique = normalized.main | "Deduplicate" >> Deduplicate(self._dedupe_ttl)
        enriched = unique.main | "EnrichWithAssets" >> EnrichWithAssets(inventory)
        correlated = enriched.main | "CorrelateWithCti" >> CorrelateWithCti(snapshot)
        detected = correlated.main | "DetectAndScore" >> DetectAndScore(
            self._rules, alert_delay_s=self._alert_delay
        )
        dead_letters = (
            decoded.dead_letters,
            validated.dead_letters,
            normalized.dead_letters,
            unique.dead_letters,
            enriched.dead_letters,
            correlated.dead_letters,
            detected["dead_letters"],
        ) | "FlattenStageDeadLetters" >> beam.Flatten()
        return detected["main"], dead_letters, detected[ALERTS]


def build(pipeline: beam.Pipeline, config: RunConfig) -> None:
    """Add the whole job to ``pipeline``: the reader, the stages and every sink."""
    read = pipeline | "ReadSensorFiles" >> ReadSensorFiles(config.input_files)
    events, stage_dead_letters, alerts = read.main | "EventStages" >> EventStages(
        config.max_record_bytes,
        assets=config.assets,
        cti_snapshot=config.cti_snapshot,
        rules=config.rules,
    )
    store(
        events,
        [read.dead_letters, stage_dead_letters],
        alerts,
        clickhouse=config.clickhouse,
        postgres=config.postgres,
        fallback_dir=config.fallback_dir,
        output_dir=config.output_dir,
        dead_letter_dir=config.dead_letter_dir,
    )


def store(
    events: beam.PCollection,
    dead_letter_sources: list[beam.PCollection],
    alerts: beam.PCollection,
    *,
    clickhouse: ClickHouseConfig | None,
    postgres: PostgresConfig | None,
    fallback_dir: str | None,
    output_dir: str | None = None,
    dead_letter_dir: str | None = None,
) -> None:
    """Stage 8: events, alerts and the dead letters of every stage (and of the sinks) stored."""
    dead_letter_sources = list(dead_letter_sources)
    if clickhouse is not None:
        loaded = events | "Load" >> WriteToClickHouse(clickhouse)
        dead_letter_sources.append(loaded.dead_letters)
        if output_dir is not None:
            events | "ExportEvents" >> WriteEventsJsonl(output_dir, stage="export")
    else:
        assert output_dir is not None
        events | "Load" >> WriteEventsJsonl(output_dir)
    if postgres is not None:
        dead_letter_sources.append(alerts | "StoreAlerts" >> WriteAlertsToPostgres(postgres))
    if output_dir is not None:
        alerts | "ExportAlerts" >> WriteJsonLines(output_dir, "alerts", encode_json)
    dead_letters = dead_letter_sources | "FlattenDeadLetters" >> beam.Flatten()
    if postgres is not None:
        assert fallback_dir is not None
        dead_letters | "StoreDeadLetters" >> WriteDeadLettersToPostgres(postgres, fallback_dir)
    if dead_letter_dir is not None:
        dead_letters | "WriteDeadLetters" >> WriteDeadLetters(dead_letter_dir)


def counters_of(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    """The committed ``otsec`` counters of a finished run, summed over steps."""
    totals: dict[str, int] = {}
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    for counter in query["counters"]:
        name = counter.key.metric.name
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[name] = totals.get(name, 0) + int(value or 0)
    return totals


def run(config: RunConfig, beam_args: Sequence[str] = ()) -> RunSummary:
    """Run the event pipeline to completion and return its summary."""
    for directory in (config.output_dir, config.dead_letter_dir):
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
    options = PipelineOptions(list(beam_args))
    _log.info(
        "event pipeline starting: %d input files, events to %s, dead letters to %s",
        len(config.input_files),
        config.clickhouse.where if config.clickhouse else config.output_dir,
        config.postgres.where if config.postgres else config.dead_letter_dir,
    )
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config)
    with batch_gc():
        result = pipeline.run()
        result.wait_until_finish()
    summary = summarize(counters_of(result), time.monotonic() - started)
    _log.info(
        "event pipeline finished in %.1f s: %d records in, %d events stored, %d dead letters, "
        "conservation %s",
        summary.seconds,
        summary.input_records,
        summary.stored_events,
        summary.dead_letters.total,
        "ok" if summary.conservation_ok else "MISMATCH",
    )
    if not summary.conservation_ok:
        _log.error("records unaccounted for: %s", summary.to_json().decode())
    return summary
