"""PostgreSQL sinks: dead letters (and, with detection, alerts), written in batches.

`WriteDeadLettersToPostgres` appends with ``COPY`` into a temporary table and
merges on the deterministic dead-letter id, so a rerun does not duplicate rows
and a dead letter that fails again counts its attempts. Each worker keeps one
connection pool (opened in ``setup``). Database errors are retried with backoff;
dead letters that still cannot be stored go to a JSON-lines fallback file, so
even a dead PostgreSQL loses nothing. `upsert_alerts` is the alert merge
(``event_count`` adds up, ``last_seen`` moves forward).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import msgspec

from schemas.alert import Alert
from schemas.dead_letter import DeadLetter
from schemas.errors import DatabaseError
from schemas.secrets import redact, redact_dsn
from transforms._retry import RetryPolicy, call_with_retries
from transforms._stage import StageCounters

__all__ = [
    "DEAD_LETTER_COLUMNS",
    "PostgresConfig",
    "WriteAlertsToPostgres",
    "WriteDeadLettersToPostgres",
    "connect_postgres",
    "open_pool",
    "store_dead_letters",
    "upsert_alerts",
]

_log = logging.getLogger("otsec.postgres")

DEAD_LETTER_COLUMNS = (
    "id",
    "stage",
    "error_class",
    "message",
    "field",
    "payload",
    "context",
    "source",
    "record_kind",
    "traceback",
    "attempts",
    "retriable",
    "failed_at",
    "pipeline_version",
)

_MERGE_DEAD_LETTERS = f"""
INSERT INTO dead_letters ({", ".join(DEAD_LETTER_COLUMNS)})
SELECT {", ".join(DEAD_LETTER_COLUMNS)} FROM incoming_dead_letters
ON CONFLICT (id) DO UPDATE SET
    error_class = EXCLUDED.error_class,
    message = EXCLUDED.message,
    field = EXCLUDED.field,
    traceback = EXCLUDED.traceback,
    retriable = EXCLUDED.retriable,
    attempts = GREATEST(dead_letters.attempts, EXCLUDED.attempts),
    failed_at = EXCLUDED.failed_at,
    replayed_at = NULL
"""


@dataclasses.dataclass(frozen=True)
class PostgresConfig:
    """Where dead letters, alerts, assets and indicators live.

    Args:
        dsn: A libpq connection string or ``postgresql://`` URI.
        batch_rows: Rows per COPY (also flushed at the end of every bundle).
        attempts: Tries per batch before giving up on the database.
        connect_timeout: Seconds to wait for a connection.
    """

    dsn: str
    batch_rows: int = 5_000
    attempts: int = 3
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.dsn:
            raise ValueError("PostgreSQL DSN is empty")
        if self.batch_rows <= 0:
            raise ValueError(f"batch_rows must be positive, got {self.batch_rows}")

    @property
    def where(self) -> str:
        return redact_dsn(self.dsn)


def connect_postgres(config: PostgresConfig, **kwargs: Any) -> Any:
    """A psycopg connection; `DatabaseError` naming the server (without password) if it fails."""
    import psycopg

    try:
        return psycopg.connect(
            config.dsn, connect_timeout=max(1, int(config.connect_timeout)), **kwargs
        )
    except psycopg.Error as error:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {config.where}: {_first_line(error)}"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return redact(text.splitlines()[0] if text else type(error).__name__)[:300]


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; the payload (bytea) keeps the original bytes.
    return value.replace("\x00", "\\x00") if value and "\x00" in value else value


def _row(letter: DeadLetter) -> tuple[Any, ...]:
    return (
        letter.id,
        letter.stage,
        letter.error_class,
        _text(letter.message),
        _text(letter.field),
        letter.payload,
        _text(letter.context),
        _text(msgspec.json.encode(letter.source).decode()),
        _text(letter.record_kind),
        _text(letter.traceback),
        letter.attempts,
        letter.retriable,
        letter.failed_at,
        letter.pipeline_version,
    )


def store_dead_letters(connection: Any, letters: Sequence[DeadLetter]) -> None:
    """Merge ``letters`` into ``dead_letters`` in one transaction (COPY, then upsert by id)."""
    with connection.transaction():
        connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_dead_letters "
            "(LIKE dead_letters INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with connection.cursor() as cursor:
            with cursor.copy(
                f"COPY incoming_dead_letters ({', '.join(DEAD_LETTER_COLUMNS)}) FROM STDIN"
            ) as copy:
                for letter in letters:
                    copy.write_row(_row(letter))
            cursor.execute(_MERGE_DEAD_LETTERS)


def open_pool(config: PostgresConfig) -> Any:
    """A small connection pool for one worker; connections are checked before use,
    so a server restart costs one reconnect instead of one failed batch."""
    from psycopg_pool import ConnectionPool

    return ConnectionPool(
        config.dsn,
        min_size=1,
        max_size=2,
        open=True,
        timeout=config.connect_timeout,
        check=ConnectionPool.check_connection,
        kwargs={"autocommit": True, "connect_timeout": max(1, int(config.connect_timeout))},
        name="otsec",
    )


_ALERT_COLUMNS = (
    "alert_id",
    "rule_id",
    "title",
    "description",
    "attack_techniques",
    "severity",
    "risk_score",
    "src_ip",
    "dst_ip",
    "event_count",
    "first_seen",
    "last_seen",
    "sample_event_ids",
)
_SEVERITY_ORDER = "ARRAY['info', 'low', 'medium', 'high', 'critical']"
_MERGE_ALERTS = f"""
INSERT INTO alerts ({", ".join(_ALERT_COLUMNS)})
SELECT {", ".join(_ALERT_COLUMNS)} FROM incoming_alerts
ON CONFLICT (alert_id) DO UPDATE SET
    title = EXCLUDED.title,
    description = EXCLUDED.description,
    attack_techniques = ARRAY(SELECT DISTINCT t FROM unnest(
        alerts.attack_techniques || EXCLUDED.attack_techniques) t ORDER BY t),
    severity = CASE WHEN array_position({_SEVERITY_ORDER}, EXCLUDED.severity)
        > array_position({_SEVERITY_ORDER}, alerts.severity)
        THEN EXCLUDED.severity ELSE alerts.severity END,
    event_count = alerts.event_count + EXCLUDED.event_count,
    first_seen = LEAST(alerts.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(alerts.last_seen, EXCLUDED.last_seen),
    risk_score = GREATEST(alerts.risk_score, EXCLUDED.risk_score),
    sample_event_ids = (alerts.sample_event_ids || EXCLUDED.sample_event_ids)[1:10],
    updated_at = now()
"""
_SAMPLES = 10


def _merge_batch(alerts: Sequence[Alert]) -> list[Alert]:
    # PostgreSQL refuses to update one row twice in a statement: merge repeats first, the
    # way the pipeline does (`transforms.detect.merge_alerts`).
    from transforms.detect import merge_alerts

    merged: dict[str, Alert] = {}
    for alert in alerts:
        seen = merged.get(alert.alert_id)
        merged[alert.alert_id] = alert if seen is None else merge_alerts(seen, alert)
    return list(merged.values())


def upsert_alerts(connection: Any, alerts: Sequence[Alert]) -> None:
    """Merge ``alerts`` into ``alerts`` in one transaction: COPY, then one upsert.

    ``event_count`` adds up, ``first_seen``/``last_seen`` widen, the risk score and the
    severity keep their maximum, techniques accumulate, title and description follow
    the rule as it is now; the analyst's ``status`` is never overwritten.
    """
    alerts = _merge_batch(alerts)
    with connection.transaction():
        connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_alerts "
            "(LIKE alerts INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with connection.cursor() as cursor:
            with cursor.copy(
                f"COPY incoming_alerts ({', '.join(_ALERT_COLUMNS)}) FROM STDIN"
            ) as copy:
                for alert in alerts:
                    copy.write_row(
                        (
                            alert.alert_id,
                            alert.rule_id,
                            _text(alert.title),
                            _text(alert.description),
                            list(alert.attack_techniques),
                            alert.severity,
                            alert.risk_score,
                            alert.src_ip,
                            alert.dst_ip,
                            alert.event_count,
                            alert.first_seen,
                            alert.last_seen,
                            list(alert.sample_event_ids[:_SAMPLES]),
                        )
                    )
            cursor.execute(_MERGE_ALERTS)


class _WriteAlertsFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, config: PostgresConfig, policy: RetryPolicy) -> None:
        self._config = config
        self._policy = policy

    def setup(self) -> None:
        self.counters = StageCounters("alerts")
        self._pool = open_pool(self._config)

    def start_bundle(self) -> None:
        self._buffer: list[Alert] = []

    def process(self, alert: Alert) -> Iterator[Any]:
        self.counters.inputs += 1
        self._buffer.append(alert)
        if len(self._buffer) >= self._config.batch_rows:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.timestamp import MAX_TIMESTAMP
        from apache_beam.utils.windowed_value import WindowedValue

        for letter in self._flush():
            yield WindowedValue(letter, MAX_TIMESTAMP, (GlobalWindow(),))
        self.counters.flush()

    def teardown(self) -> None:
        self._pool.close()

    def _store(self, batch: list[Alert]) -> None:
        import psycopg
        import psycopg_pool

        try:
            with self._pool.connection() as connection:
                upsert_alerts(connection, batch)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
            raise DatabaseError(
                f"upserting {len(batch)} alerts at {self._config.where} failed: "
                f"{_first_line(error)}",
                stage="alerts",
            ) from None

    def _retried(self, attempt: int, error: Exception) -> None:
        self.counters.extra["retries"] += 1
        _log.warning("upserting alerts failed (try %d), retrying: %s", attempt, error)

    def _flush(self) -> Iterator[DeadLetter]:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            call_with_retries(lambda: self._store(batch), self._policy, on_retry=self._retried)
        except DatabaseError as error:
            from schemas.dead_letter import dead_letter_from_error
            from schemas.records import RawLine, SourcePosition

            for alert in batch:
                origin = RawLine(
                    payload=msgspec.json.encode(alert),
                    source=SourcePosition(uri=f"alert:{alert.alert_id}"),
                )
                letter = dead_letter_from_error(
                    "alerts", error, origin, record_kind="alert", attempts=self._policy.attempts
                )
                self.counters.dead_letters[letter.error_class] += 1
                yield letter
            return
        self.counters.outputs += len(batch)


class WriteAlertsToPostgres(beam.PTransform):  # type: ignore[misc]
    """Upsert alerts into PostgreSQL ``alerts``; returns the dead letters of what failed.

    Counters: ``alerts.in``, ``alerts.out``, ``alerts.retries``,
    ``alerts.dead_letter.DatabaseError``.
    """

    def __init__(self, config: PostgresConfig, policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self._fn = _WriteAlertsFn(config, policy or RetryPolicy(attempts=config.attempts))

    def expand(self, alerts: beam.PCollection) -> beam.PCollection:
        return alerts | "UpsertAlerts" >> beam.ParDo(self._fn)


class _WriteDeadLettersFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, config: PostgresConfig, fallback_dir: str, policy: RetryPolicy) -> None:
        self._config = config
        self._fallback_dir = fallback_dir
        self._policy = policy

    def setup(self) -> None:
        self.counters = StageCounters("dead_letters")
        self._pool: Any = None

    def start_bundle(self) -> None:
        self._buffer: list[DeadLetter] = []

    def process(self, letter: DeadLetter) -> Iterator[Any]:
        self.counters.inputs += 1
        self._buffer.append(letter)
        if len(self._buffer) >= self._config.batch_rows:
            self._flush()
        return iter(())

    def finish_bundle(self) -> None:
        self._flush()
        self.counters.flush()

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def _store(self, batch: list[DeadLetter]) -> None:
        import psycopg
        import psycopg_pool

        try:
            if self._pool is None:
                # Opened on first use: a run without dead letters needs no connection.
                self._pool = open_pool(self._config)
            with self._pool.connection() as connection:
                store_dead_letters(connection, batch)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
            raise DatabaseError(
                f"storing {len(batch)} dead letters at {self._config.where} failed: "
                f"{_first_line(error)}",
                stage="dead_letters",
            ) from None

    def _retried(self, attempt: int, error: Exception) -> None:
        self.counters.extra["retries"] += 1
        _log.warning("storing dead letters failed (try %d), retrying: %s", attempt, error)

    def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            call_with_retries(lambda: self._store(batch), self._policy, on_retry=self._retried)
        except DatabaseError as error:
            path = self._write_fallback(batch)
            self.counters.extra["fallback"] += len(batch)
            _log.error(
                "PostgreSQL unavailable for dead letters (%s); %d kept in %s for replay",
                error.message,
                len(batch),
                path,
            )
            return
        self.counters.outputs += len(batch)

    def _write_fallback(self, batch: list[DeadLetter]) -> str:
        os.makedirs(self._fallback_dir, exist_ok=True)
        path = os.path.join(self._fallback_dir, f"dead_letters-fallback-{uuid.uuid4().hex}.jsonl")
        encoder = msgspec.json.Encoder()
        with open(path, "wb") as handle:
            for letter in batch:
                handle.write(encoder.encode(letter) + b"\n")
        return path


class WriteDeadLettersToPostgres(beam.PTransform):  # type: ignore[misc]
    """Store dead letters in PostgreSQL ``dead_letters``; JSON lines in ``fallback_dir`` on failure.

    Counters: ``dead_letters.in``, ``dead_letters.out`` (stored in PostgreSQL),
    ``dead_letters.fallback`` (kept in files), ``dead_letters.retries``.
    """

    def __init__(
        self, config: PostgresConfig, fallback_dir: str, policy: RetryPolicy | None = None
    ) -> None:
        super().__init__()
        self._fn = _WriteDeadLettersFn(
            config, fallback_dir, policy or RetryPolicy(attempts=config.attempts)
        )

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        return letters | "StoreDeadLetters" >> beam.ParDo(self._fn)
