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

from schemas.dead_letter import DeadLetter
from schemas.errors import DatabaseError
from schemas.secrets import redact, redact_dsn
from transforms._retry import RetryPolicy, call_with_retries
from transforms._stage import StageCounters

__all__ = [
    "DEAD_LETTER_COLUMNS",
    "PostgresConfig",
    "WriteDeadLettersToPostgres",
    "connect_postgres",
    "store_dead_letters",
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


class _WriteDeadLettersFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, config: PostgresConfig, fallback_dir: str, policy: RetryPolicy) -> None:
        self._config = config
        self._fallback_dir = fallback_dir
        self._policy = policy

    def setup(self) -> None:
        self.counters = StageCounters("dead_letters")
        self._connection: Any = None

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
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _store(self, batch: list[DeadLetter]) -> None:
        import psycopg

        try:
            if self._connection is None or self._connection.closed:
                self._connection = connect_postgres(self._config, autocommit=True)
            store_dead_letters(self._connection, batch)
        except psycopg.Error as error:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()
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
