"""The streaming event job: a Kinesis stream through the eight stages into the stores.

The same stages as the batch job (`beam_pipelines.event_pipeline.EventStages`)
and the same sinks (`beam_pipelines.event_pipeline.store`), with what an
unbounded input needs:

- stage 1 reads ``kinesis://STREAM?...`` (`transforms.kinesis.ReadFromKinesis`);
- stage 4 remembers event ids for ``dedupe_ttl_s`` of processing time;
- stages 5 and 6 take the asset inventory and the CTI snapshot as `Polled`
  sources each worker re-reads every ``refresh_s`` (`transforms.side_inputs`): a
  new snapshot written by ``otsec cti refresh`` reaches the running job without
  a restart;
- stage 7 windows on arrival time and emits alerts every ``alert_delay_s``;
- stage 8 flushes at the end of every bundle, and Flink closes a bundle after
  ``bundle_size`` elements or ``bundle_ms`` milliseconds, whichever comes first:
  that bounds how long an event or alert waits before it is stored.

`submit` hands the job to a Flink job server and returns once Flink runs it
(detached: the job outlives the submitting process when its Python code runs in
an SDK worker pool, the ``external`` environment).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.event_pipeline import EventStages, store
from transforms.clickhouse import ClickHouseConfig
from transforms.decode import DEFAULT_MAX_RECORD_BYTES
from transforms.detect import RuleSpec
from transforms.kinesis import KinesisReadConfig, ReadFromKinesis
from transforms.postgres import PostgresConfig
from transforms.side_inputs import Polled, latest_inventory, latest_snapshot_ref

__all__ = ["StreamConfig", "SubmittedJob", "build_streaming", "streaming_args", "submit"]


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """What the streaming job reads, where it writes, and its time settings.

    Args:
        source: The Kinesis stream and how to read it.
        clickhouse: Events; multi-worker jobs need a server (``http(s)://``): the
            embedded chDB store opens in one process at a time.
        postgres: Alerts and dead letters.
        fallback_dir: Dead letters PostgreSQL refuses go here, on the worker.
        assets_source: The inventory: a CSV/JSON file or a ``postgresql://`` DSN
            (the ``assets`` table); None: no inventory.
        cti_snapshot_dir: The directory ``otsec cti refresh`` writes snapshots into;
            None: no threat intelligence.
        refresh_s: How often the inventory and the snapshot directory are re-read.
        rules: Stage 7's rules; None: the built-in rules.
        dedupe_ttl_s: How long an event id is remembered.
        alert_delay_s: How often alerts leave stage 7.
        bundle_size: Elements per bundle at most (Flink's ``max_bundle_size``).
        bundle_ms: Milliseconds per bundle at most (Flink's ``max_bundle_time_mills``).

    Raises:
        ValueError: On a non-positive interval or size.
    """

    source: KinesisReadConfig
    clickhouse: ClickHouseConfig
    postgres: PostgresConfig
    fallback_dir: str
    assets_source: str | None = None
    cti_snapshot_dir: str | None = None
    refresh_s: float = 60.0
    rules: tuple[RuleSpec, ...] | None = None
    dedupe_ttl_s: float = 600.0
    alert_delay_s: float = 5.0
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    bundle_size: int = 1000
    bundle_ms: int = 1000

    def __post_init__(self) -> None:
        for name in ("refresh_s", "dedupe_ttl_s", "alert_delay_s", "bundle_size", "bundle_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def build_streaming(pipeline: beam.Pipeline, config: StreamConfig) -> None:
    """Add the streaming job to ``pipeline``: Kinesis, the stages, the sinks."""
    lines = pipeline | "ReadFromKinesis" >> ReadFromKinesis(config.source)
    assets = None
    if config.assets_source is not None:
        assets = Polled(latest_inventory, config.assets_source, config.refresh_s)
    snapshot = None
    if config.cti_snapshot_dir is not None:
        snapshot = Polled(latest_snapshot_ref, config.cti_snapshot_dir, config.refresh_s)
    events, stage_dead_letters, alerts = lines | "EventStages" >> EventStages(
        config.max_record_bytes,
        assets=assets,
        cti_snapshot=snapshot,
        rules=config.rules,
        dedupe_ttl_seconds=config.dedupe_ttl_s,
        alert_delay_seconds=config.alert_delay_s,
    )
    store(
        events,
        [stage_dead_letters],
        alerts,
        clickhouse=config.clickhouse,
        postgres=config.postgres,
        fallback_dir=config.fallback_dir,
    )


def streaming_args(config: StreamConfig, flink_args: Sequence[str]) -> list[str]:
    """``flink_args`` (`runners.flink.flink_pipeline_args`) plus the bundle settings.

    ``finish_bundle_before_checkpointing``: every bundle ends (and the sinks flush)
    before a checkpoint barrier passes, so a checkpoint never holds output that is not
    yet stored, and restoring one neither loses nor repeats a write. Without it Beam
    2.62's Flink runner keeps the output of a bundle cut by a checkpoint in operator
    state, and fails to encode it when a stage feeds a GroupByKey
    (``ClassCastException: [B cannot be cast to WindowedValue``, seen here).
    """
    return [
        *flink_args,
        f"--max_bundle_size={config.bundle_size}",
        f"--max_bundle_time_mills={config.bundle_ms}",
        "--finish_bundle_before_checkpointing",
    ]


@dataclasses.dataclass(frozen=True)
class SubmittedJob:
    """A job Flink runs: its Flink id and name, and the Beam result while this process has it."""

    job_id: str
    name: str
    result: Any = dataclasses.field(default=None, compare=False, repr=False)


def submit(
    config: StreamConfig,
    beam_args: Sequence[str],
    *,
    setup: Any,
    job_name: str,
    timeout_s: float = 300.0,
) -> SubmittedJob:
    """Submit the streaming job and wait until Flink lists it as running.

    Args:
        config: The job.
        beam_args: Pipeline options, from `streaming_args` (they name the job server,
            the SDK environment, ``--streaming`` and ``--job_name``).
        setup: The `runners.flink.FlinkSetup` whose REST API lists the job.
        job_name: The ``--job_name`` in ``beam_args``: how the job is found in Flink.
        timeout_s: How long to wait for the job to run (the classpath upload takes a while).

    Raises:
        runners.flink.FlinkError: The job failed, or did not run within ``timeout_s``.
    """
    from apache_beam.runners.runner import PipelineState

    from runners.flink import FlinkError, find_jobs

    pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    build_streaming(pipeline, config)
    result = pipeline.run()
    deadline = time.monotonic() + timeout_s
    while True:
        running = [job for job in find_jobs(setup, name=job_name) if job.state == "RUNNING"]
        if running:
            return SubmittedJob(running[0].job_id, job_name, result)
        state = result.state
        if PipelineState.is_terminal(state):
            raise FlinkError(f"job {job_name} ended as {state} before it ran; see the Flink logs")
        if time.monotonic() > deadline:
            raise FlinkError(
                f"job {job_name} was not running after {timeout_s:.0f} s (state {state})"
            )
        time.sleep(1.0)
