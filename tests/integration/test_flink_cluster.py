"""The local Flink for real: a standalone cluster, Beam's job server and the SDK worker pool.

The module's fixture starts all three from the shared cache (the first run downloads
Flink and resolves the job server with Maven, a few minutes; later runs reuse it), on
free ports and in a run directory of its own, so a cluster a developer keeps running on
the default ports is left alone. Real Beam pipelines then run on it through
``PortableRunner`` and are checked by their output files and by Flink's REST API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineState
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from runners.flink import (
    FlinkError,
    FlinkSetup,
    JobServer,
    LocalFlinkCluster,
    find_jobs,
    flink_pipeline_args,
    local_flink_status,
    local_pipeline_args,
    start_local_flink,
)
from runners.local_services import AWS_TEST_ENV, free_ports, private_flink

# When Flink cancels or stops a job, or the cluster stops at the end of the session, the
# SDK harness threads that LOOPBACK runs in this process lose their gRPC streams and die
# with "Socket closed": Beam's threads, and expected.
pytestmark = [
    pytest.mark.flink,
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def flink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlinkSetup]:
    """The local Flink of this module: stopped when its tests are done, not at session end."""
    # The worker pool runs the pipelines' Python code: like a production pool, whose image
    # has otsec installed, it must import the DoFns (here: of this test module).
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    environment = {**AWS_TEST_ENV, "PYTHONPATH": pythonpath}
    with private_flink(tmp_path_factory.mktemp("flink-run"), environment=environment) as setup:
        yield setup


def otsec(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "beam_pipelines.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def where(setup: FlinkSetup) -> list[str]:
    return ["--cache-dir", setup.cache_dir, "--run-dir", setup.run_dir]


class _AppendTo(beam.DoFn):
    """Appends each batch to a file: the test reads what the job produced."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._written = Metrics.counter("flink_test", "written")

    def process(self, batch: list[int]) -> Iterator[int]:
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write("".join(f"{value}\n" for value in batch))
        self._written.inc(len(batch))
        yield len(batch)


def _square_pipeline(options: PipelineOptions, out: Path) -> beam.Pipeline:
    pipeline = beam.Pipeline(options=options)
    _ = (
        pipeline
        | "Numbers" >> beam.Create(range(1000))
        | "Square" >> beam.Map(lambda value: value * value)
        | "Batch" >> beam.BatchElements(min_batch_size=50, max_batch_size=50)
        | "Write" >> beam.ParDo(_AppendTo(str(out)))
    )
    return pipeline


def _lines(path: Path) -> list[int]:
    return sorted(int(line) for line in path.read_text().split()) if path.exists() else []


def test_batch_pipeline_runs_on_the_cluster_with_loopback(
    flink: FlinkSetup, tmp_path: Path
) -> None:
    name = f"otsec-test-loopback-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "squares.txt"
    options = PipelineOptions(local_pipeline_args(flink, job_name=name))
    result = _square_pipeline(options, out).run()
    assert result.wait_until_finish() == PipelineState.DONE

    assert _lines(out) == [value * value for value in range(1000)]
    written = result.metrics().query(MetricsFilter().with_name("written"))["counters"]
    assert sum(counter.committed for counter in written) == 1000
    jobs = find_jobs(flink, name=name)
    assert [job.state for job in jobs] == ["FINISHED"]


def test_batch_pipeline_runs_on_the_worker_pool(flink: FlinkSetup, tmp_path: Path) -> None:
    """EXTERNAL: the Python code runs in the pool, not in this process (detached jobs)."""
    name = f"otsec-test-external-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "squares.txt"
    options = PipelineOptions(local_pipeline_args(flink, environment="external", job_name=name))
    result = _square_pipeline(options, out).run()
    assert result.wait_until_finish() == PipelineState.DONE

    assert _lines(out) == [value * value for value in range(1000)]
    assert [job.state for job in find_jobs(flink, name=name)] == ["FINISHED"]
    pool_log = Path(flink.run_dir, "worker-pool.log").read_text()
    assert "SDK worker pool listening" in pool_log


def _start_ticking(
    setup: FlinkSetup,
    out: Path,
    name: str,
    *extra: str,
    checkpointing_ms: int | None = None,
    environment: str = "loopback",
) -> PipelineResult:
    """A streaming job that appends a line to ``out`` five times a second, until stopped."""
    args = local_pipeline_args(
        setup,
        environment=environment,
        streaming=True,
        job_name=name,
        checkpointing_interval_ms=checkpointing_ms,
    )
    pipeline = beam.Pipeline(options=PipelineOptions([*args, *extra]))
    _ = (
        pipeline
        | "Ticks" >> PeriodicImpulse(fire_interval=0.2)
        | "One" >> beam.Map(lambda _: 1)
        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=1)
        | "Write" >> beam.ParDo(_AppendTo(str(out)))
    )
    return pipeline.run()


def _wait_for_ticks(setup: FlinkSetup, result: PipelineResult, out: Path, count: int) -> None:
    deadline = time.monotonic() + 180
    while len(_lines(out)) < count:
        assert not PipelineState.is_terminal(result.state), result.state
        if time.monotonic() > deadline:
            logs = LocalFlinkCluster(setup).logs()
            tail = Path(logs[0]).read_text().splitlines()[-30:] if logs else []
            pytest.fail(
                f"the job wrote {len(_lines(out))} ticks in 180 s; {logs}:\n" + "\n".join(tail)
            )
        time.sleep(0.5)


def test_streaming_job_runs_until_cancelled_from_the_cli(flink: FlinkSetup, tmp_path: Path) -> None:
    name = f"otsec-test-streaming-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "ticks.txt"
    result = _start_ticking(flink, out, name, checkpointing_ms=0)
    try:
        _wait_for_ticks(flink, result, out, 5)
        (job,) = find_jobs(flink, name=name)
        assert job.state == "RUNNING"

        refused = otsec("flink", "cancel", job.job_id, "--savepoint", *where(flink))
        assert refused.returncode == 2
        assert "runs without checkpointing" in refused.stderr

        cancelled = otsec("flink", "cancel", job.job_id, *where(flink))
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"job {job.job_id} ({name}): CANCELED" in cancelled.stdout
    finally:
        if not PipelineState.is_terminal(result.state):
            result.cancel()
    # Beam's portable runner reports a cancelled job as a failure of wait_until_finish.
    with pytest.raises(RuntimeError, match="in state CANCELLED"):
        result.wait_until_finish(duration=60_000)
    assert result.state == PipelineState.CANCELLED
    assert [job.state for job in find_jobs(flink, name=name)] == ["CANCELED"]


def test_streaming_job_stops_with_a_savepoint_and_resumes_from_it(
    flink: FlinkSetup, tmp_path: Path
) -> None:
    """On the worker pool, as a detached job is, which must survive a restart."""
    name = f"otsec-test-savepoint-{uuid.uuid4().hex[:8]}"
    first = _start_ticking(flink, tmp_path / "before.txt", name, environment="external")
    try:
        _wait_for_ticks(flink, first, tmp_path / "before.txt", 5)
        # By name: the job id is Flink's, the name is what the submitter chose.
        stopped = otsec("flink", "cancel", name, "--savepoint", str(tmp_path / "sp"), *where(flink))
        assert stopped.returncode == 0, stopped.stderr
    finally:
        if not PipelineState.is_terminal(first.state):
            first.cancel()
    location = stopped.stdout.strip().rsplit(": ", 1)[1]
    assert location.startswith(f"file:{tmp_path / 'sp'}/savepoint-")
    assert Path(location.removeprefix("file:"), "_metadata").is_file()
    assert [job.state for job in find_jobs(flink, name=name)] == ["FINISHED"]

    resumed = _start_ticking(
        flink, tmp_path / "after.txt", name, f"--savepoint_path={location}", environment="external"
    )
    try:
        _wait_for_ticks(flink, resumed, tmp_path / "after.txt", 5)
        states = sorted(job.state for job in find_jobs(flink, name=name))
        assert states == ["FINISHED", "RUNNING"]
    finally:
        resumed.cancel()
        with pytest.raises(RuntimeError, match="in state CANCELLED"):
            resumed.wait_until_finish(duration=60_000)


def test_cli_status_reports_the_running_cluster(flink: FlinkSetup) -> None:
    shown = otsec("flink", "cluster", "status", *where(flink))
    assert shown.returncode == 0, shown.stderr
    assert f"dashboard http://127.0.0.1:{flink.rest_port}" in shown.stdout
    assert f"Beam job server: running at 127.0.0.1:{flink.job_port}" in shown.stdout

    status = json.loads(otsec("flink", "cluster", "status", "--json", *where(flink)).stdout)
    assert status["running"] is True
    assert status["job_endpoint"] == f"127.0.0.1:{flink.job_port}"
    cluster = status["cluster"]
    assert cluster["flink_version"] == flink.flink_version
    assert (cluster["taskmanagers"], cluster["slots_total"]) == (1, 2)
    assert cluster["jobmanager_pid"] and cluster["taskmanager_pids"]
    assert status["job_server"]["running"] and status["worker_pool"]["running"]


def test_cli_start_again_changes_nothing_and_refuses_other_settings(flink: FlinkSetup) -> None:
    before = json.loads(otsec("flink", "cluster", "status", "--json", *where(flink)).stdout)

    again = otsec("flink", "cluster", "start", *where(flink))
    assert again.returncode == 0, again.stderr
    assert f"job endpoint: 127.0.0.1:{flink.job_port}" in again.stdout
    other = otsec("flink", "cluster", "start", "--slots", "3", *where(flink))
    assert other.returncode == 2
    assert "a local Flink with other settings runs" in other.stderr

    after = json.loads(otsec("flink", "cluster", "status", "--json", *where(flink)).stdout)
    assert after["running"] is True
    for part in ("job_server", "worker_pool"):
        assert after[part]["pid"] == before[part]["pid"]
    assert after["cluster"]["jobmanager_pid"] == before["cluster"]["jobmanager_pid"]


def test_cancel_of_an_unknown_job_is_one_line(flink: FlinkSetup) -> None:
    result = otsec("flink", "cancel", "0" * 32, *where(flink))
    assert result.returncode == 2
    assert result.stderr.strip() == f"otsec: error: Flink at {flink.rest_url} has no job {'0' * 32}"


def test_status_and_stop_of_a_run_dir_where_nothing_runs(tmp_path: Path) -> None:
    shown = otsec("flink", "cluster", "status", "--json", "--run-dir", str(tmp_path))
    assert shown.returncode == 3
    assert json.loads(shown.stdout)["running"] is False
    stopped = otsec("flink", "cluster", "stop", "--run-dir", str(tmp_path))
    assert (stopped.returncode, stopped.stdout.strip()) == (0, "nothing was running")


def test_pipeline_args_need_a_running_job_server(tmp_path: Path) -> None:
    setup = FlinkSetup.resolve(run_dir=str(tmp_path), job_port=free_ports(1)[0])
    with pytest.raises(FlinkError, match="no Beam job server runs at"):
        local_pipeline_args(setup)


def test_pipeline_args() -> None:
    assert flink_pipeline_args("127.0.0.1:8099") == [
        "--runner=PortableRunner",
        "--job_endpoint=127.0.0.1:8099",
        "--environment_type=LOOPBACK",
    ]
    assert flink_pipeline_args(
        "flink-jobserver:8099",
        "external",
        worker_pool="localhost:50000",
        streaming=True,
        parallelism=4,
        job_name="otsec-events",
    ) == [
        "--runner=PortableRunner",
        "--job_endpoint=flink-jobserver:8099",
        "--environment_type=EXTERNAL",
        "--environment_config=localhost:50000",
        "--streaming",
        "--checkpointing_interval=10000",
        "--parallelism=4",
        "--job_name=otsec-events",
    ]
    unchecked = flink_pipeline_args("127.0.0.1:8099", streaming=True, checkpointing_interval_ms=0)
    assert unchecked[-1] == "--streaming"
    with pytest.raises(FlinkError, match="needs the worker pool"):
        flink_pipeline_args("127.0.0.1:8099", "external")
    with pytest.raises(FlinkError, match="loopback or external"):
        flink_pipeline_args("127.0.0.1:8099", "docker")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rest_port": 0}, "rest port must be between"),
        ({"rest_port": 8099}, "the ports must differ"),
        ({"task_slots": 0}, "task slots must be >= 1"),
        ({"taskmanager_memory": "lots"}, "TaskManager memory must be like"),
        ({"flink_version": "1.19"}, "Flink version must be like"),
    ],
)
def test_setup_rejects_bad_settings(tmp_path: Path, settings: dict, message: str) -> None:
    with pytest.raises(FlinkError, match=message):
        FlinkSetup.resolve(str(tmp_path), **settings)


def test_job_server_jar_override_is_used_as_given(tmp_path: Path) -> None:
    from runners.flink import ensure_job_server_classpath

    jar = tmp_path / "beam-runners-flink-1.19-job-server-2.62.0.jar"
    jar.write_bytes(b"PK")
    setup = FlinkSetup.resolve(str(tmp_path / "cache"), job_server_jar=str(jar))
    assert ensure_job_server_classpath(setup) == [str(jar)]
    directory = FlinkSetup.resolve(str(tmp_path / "cache"), job_server_jar=str(tmp_path))
    assert ensure_job_server_classpath(directory) == [os.path.join(str(tmp_path), "*")]
    missing = FlinkSetup.resolve(str(tmp_path / "cache"), job_server_jar=str(tmp_path / "no.jar"))
    with pytest.raises(FlinkError, match="neither a jar nor a directory of jars"):
        ensure_job_server_classpath(missing)


def test_unpacking_keeps_archive_paths_inside_the_distribution(tmp_path: Path) -> None:
    """The libraries archive is untrusted input: ``..`` entries must not escape."""
    from runners.flink import _unpack_libraries

    sdist = tmp_path / "apache-flink-libraries-1.19.3.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(payload, "apache-flink-libraries-1.19.3/deps/lib/flink-dist-1.19.3.jar")
        archive.add(payload, "apache-flink-libraries-1.19.3/deps/lib/../../escape.txt")
        archive.add(payload, "apache-flink-libraries-1.19.3/setup.py")
    home = tmp_path / "home"
    _unpack_libraries(str(sdist), str(home))
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()) == [
        "lib/flink-dist-1.19.3.jar"
    ]
    assert not (tmp_path / "escape.txt").exists()


def test_a_cluster_that_cannot_start_names_its_log_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    rest, rpc, job, artifact, expansion, pool = free_ports(6)
    setup = FlinkSetup.resolve(
        run_dir=str(tmp_path),
        rest_port=rest,
        rpc_port=rpc,
        job_port=job,
        artifact_port=artifact,
        expansion_port=expansion,
        worker_pool_port=pool,
        taskmanager_memory="64m",  # less than the metaspace alone
    )
    with pytest.raises(FlinkError) as failed:
        start_local_flink(setup, progress=lambda _: None)
    message = str(failed.value)
    assert f"see {tmp_path}/log/start-cluster.out" in message
    assert "TaskManager memory configuration failed" in message
    assert not local_flink_status(setup).cluster.jobmanager_pid


def test_a_job_server_that_cannot_start_names_its_log(tmp_path: Path) -> None:
    not_beam = tmp_path / "not-beam.jar"
    with zipfile.ZipFile(not_beam, "w") as jar:
        jar.writestr("README", "no FlinkJobServerDriver in here")
    setup = FlinkSetup.resolve(run_dir=str(tmp_path), job_port=free_ports(1)[0])
    with pytest.raises(FlinkError) as failed:
        JobServer(setup, [str(not_beam)]).start()
    assert str(failed.value) == (
        f"the Beam job server exited at start; see {tmp_path}/job-server.log: "
        "Error: Could not find or load main class "
        "org.apache.beam.runners.flink.FlinkJobServerDriver"
    )
