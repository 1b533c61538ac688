"""Versioned schema migrations for PostgreSQL and ClickHouse.

Migrations are SQL files under ``schemas/migrations/<store>/NNNN_name.sql``,
applied in order by ``otsec db migrate`` and recorded with their checksum in a
migrations table. Applying them twice changes nothing. A pipeline checks the
recorded version at start (`require_current`) and refuses to run against a
schema that is behind, naming the command that fixes it.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from schemas.errors import DatabaseError

__all__ = [
    "ClickHouseMigrator",
    "Migration",
    "PostgresMigrator",
    "SchemaBehindError",
    "load_migrations",
    "set_event_ttl",
]

_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class SchemaBehindError(DatabaseError):
    """The store's schema is older than this otsec; ``otsec db migrate`` brings it up."""

    retriable = False


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self) -> list[str]:
        """The statements of the file, split on semicolons that end a line."""
        text = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [part.strip() for part in re.split(r";\s*$", text, flags=re.M) if part.strip()]


def load_migrations(store: str) -> list[Migration]:
    """The migrations shipped for ``store`` (``postgres`` or ``clickhouse``), in order."""
    folder = resources.files("schemas").joinpath("migrations", store)
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(
                Migration(int(match["version"]), match["name"], entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{store} migrations must be numbered 1..n without gaps: {versions}")
    return found


class _Migrator(abc.ABC):
    store = ""
    label = ""

    def __init__(self, migrations: Sequence[Migration] | None = None) -> None:
        self.migrations = list(migrations or load_migrations(self.store))

    @property
    def latest(self) -> int:
        return self.migrations[-1].version if self.migrations else 0

    @abc.abstractmethod
    def applied(self) -> dict[int, str]:
        """Version -> checksum of the migrations recorded in the store."""

    @abc.abstractmethod
    def apply(self, migration: Migration) -> None:
        """Run one migration and record it."""

    def migrate(self, log: Callable[[str], None] = lambda _: None) -> list[int]:
        """Apply every migration not yet recorded; return the versions applied."""
        done = self.applied()
        applied = []
        for migration in self.migrations:
            recorded = done.get(migration.version)
            if recorded is not None:
                if recorded != migration.checksum:
                    log(
                        f"{self.label} migration {migration.version} ({migration.name}) changed "
                        "since it was applied; it is not applied again"
                    )
                continue
            self.apply(migration)
            log(f"{self.label}: applied migration {migration.version} ({migration.name})")
            applied.append(migration.version)
        return applied

    def require_current(self, where: str) -> None:
        """Raise `SchemaBehindError` unless every shipped migration has been applied.

        Args:
            where: The store's address without secrets, for the message.
        """
        done = self.applied()
        missing = [m.version for m in self.migrations if m.version not in done]
        if missing:
            have = max(done) if done else 0
            raise SchemaBehindError(
                f"{self.label} schema at {where} is at version {have}, this otsec needs "
                f"{self.latest}: run `otsec db migrate` first"
            )


class PostgresMigrator(_Migrator):
    """Migrations on a psycopg 3 connection; each one in its own transaction."""

    store = "postgres"
    label = "PostgreSQL"

    def __init__(self, connection: Any, migrations: Sequence[Migration] | None = None) -> None:
        super().__init__(migrations)
        self._conn = connection

    def _bootstrap(self) -> None:
        with self._conn.transaction():
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )

    def applied(self) -> dict[int, str]:
        self._bootstrap()
        rows = self._conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        return {int(version): checksum for version, checksum in rows}

    def apply(self, migration: Migration) -> None:
        with self._conn.transaction():
            # One migration at a time, even when two processes migrate at once.
            self._conn.execute("SELECT pg_advisory_xact_lock(7405001)")
            exists = self._conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
            ).fetchone()
            if exists:
                return
            for statement in migration.statements():
                self._conn.execute(statement)
            self._conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )


class ClickHouseMigrator(_Migrator):
    """Migrations through a clickhouse-connect client (server or embedded chDB)."""

    store = "clickhouse"
    label = "ClickHouse"

    def __init__(self, client: Any, migrations: Sequence[Migration] | None = None) -> None:
        super().__init__(migrations)
        self._client = client

    def _bootstrap(self) -> None:
        self._client.command(
            "CREATE TABLE IF NOT EXISTS otsec_migrations ("
            " version UInt32, name String, checksum String,"
            " applied_at DateTime64(3, 'UTC') DEFAULT now64(3))"
            " ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
        )

    def applied(self) -> dict[int, str]:
        self._bootstrap()
        result = self._client.query("SELECT version, checksum FROM otsec_migrations FINAL")
        return {int(version): str(checksum) for version, checksum in result.result_rows}

    def apply(self, migration: Migration) -> None:
        # ClickHouse has no transactional DDL: every statement is idempotent
        # (IF NOT EXISTS), so a half-applied migration is completed by running it again.
        for statement in migration.statements():
            self._client.command(statement)
        self._client.insert(
            "otsec_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )


def set_event_ttl(client: Any, days: int, table: str = "ot_events") -> None:
    """Keep events ``days`` days (by event time), or forever with 0.

    A table setting rather than a migration: it differs between deployments.
    """
    if days < 0:
        raise ValueError(f"TTL days must be >= 0, got {days}")
    if days == 0:
        ttl = client.query(
            "SELECT engine_full FROM system.tables "
            "WHERE database = currentDatabase() AND name = {t:String}",
            parameters={"t": table},
        ).result_rows
        if ttl and " TTL " in ttl[0][0]:
            client.command(f"ALTER TABLE {table} REMOVE TTL")
        return
    client.command(f"ALTER TABLE {table} MODIFY TTL toDateTime(time) + INTERVAL {int(days)} DAY")
