"""Flink for otsec: a local standalone cluster, Beam's Flink job server, the options to reach them.

Everything is built once into a cache outside the repository (``$OTSEC_CACHE/flink``,
default ``~/.cache/otsec/flink``) and never pip-installed into the project's environment:

* the Flink distribution, unpacked from the ``apache-flink`` wheel (``bin/``, ``conf/``)
  and the ``apache-flink-libraries`` source archive (``lib/``, ``opt/``, ``plugins/``),
  which pip downloads but does not install (they pin an old Beam);
* the classpath of Beam's Flink job server, resolved with Maven from the unshaded runner
  (Maven Central serves no shaded ``beam-runners-flink-*-job-server`` jar for Beam 2.62),
  or a jar or directory of jars the user gives instead.

`start_local_flink` then runs, in the background and bound to 127.0.0.1: a Flink
standalone cluster (one JobManager, one TaskManager), the job server, and a Beam SDK
worker pool for jobs that must outlive the command that submitted them. Their
configuration, pid files and logs live in a run directory (default ``<cache>/run``).
Pipelines reach the job server with `flink_pipeline_args`, or with
`local_pipeline_args` for the cluster that `otsec flink cluster start` runs.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import dataclasses
import datetime
import fcntl
import glob
import hashlib
import importlib.resources
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = [
    "BEAM_VERSION",
    "DEFAULT_CHECKPOINT_INTERVAL_MS",
    "FLINK_VERSION",
    "ClusterStatus",
    "FlinkError",
    "FlinkJob",
    "FlinkSetup",
    "JobServer",
    "LocalFlinkCluster",
    "LocalFlinkStatus",
    "ProcessStatus",
    "SdkWorkerPool",
    "cancel_job",
    "check_java",
    "default_cache_dir",
    "ensure_flink_distribution",
    "ensure_job_server_classpath",
    "find_jobs",
    "flink_pipeline_args",
    "local_flink",
    "local_flink_status",
    "local_pipeline_args",
    "start_local_flink",
    "stop_job_with_savepoint",
    "stop_local_flink",
]

FLINK_VERSION = "1.19.3"
# The SDK and the job server must be the same Beam release; setup.py pins the SDK to this.
BEAM_VERSION = "2.62.0"

Progress = Callable[[str], None]

# Java 17 refuses Flink's and Beam's reflective access into the JDK without these. The
# list is the one Flink 1.19 ships in its default config (env.java.opts.all); the job
# server needs the same.
JAVA_MODULE_OPTIONS = (
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.text=ALL-UNNAMED",
    "--add-opens=java.base/java.time=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
)

_HOST = "127.0.0.1"
# No cache of user state in the SDK harness. Beam's default (100 MB) sizes every cached
# entry with objsize; for the streaming job, whose dedupe reads and writes one state cell per
# new event id, that cost more than the state calls it saved: 207 -> 455 events/s and p99
# 3.8 -> 1.9 s without it (`python -m beam_pipelines.bench_streaming --events 6000`, one
# round each, docs/benchmarks.md). The job has no side inputs for it to cache either.
_STATE_CACHE_BYTES = 0
_MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_POM_RESOURCE = "flink_job_server.pom.xml"
_STATE_FILE = "cluster.json"
_START_MARK = "--- otsec started this process at "
_JOB_SERVER_MAIN = "org.apache.beam.runners.flink.FlinkJobServerDriver"
_WORKER_POOL_MAIN = "runners.flink"
_FLINK_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_SIZE = re.compile(r"^\d+[kmg]$")
_TERMINAL_STATES = frozenset({"FINISHED", "CANCELED", "FAILED"})
# Flink reports a job without checkpointing as checkpointing every Long.MAX_VALUE ms.
_CHECKPOINTING_DISABLED = 2**62
# Streaming jobs checkpoint this often unless told otherwise: without checkpoints a job
# loses its state on any failure and cannot be stopped with a savepoint.
DEFAULT_CHECKPOINT_INTERVAL_MS = 10_000


class FlinkError(Exception):
    """Flink cannot be set up, started or reached; the message is the one line an operator sees."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_cache_dir() -> str:
    """``$OTSEC_CACHE/flink``, else ``$XDG_CACHE_HOME/otsec/flink``, or ``~/.cache/otsec/flink``."""
    root = os.environ.get("OTSEC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "otsec",
    )
    return os.path.join(os.path.abspath(root), "flink")


@dataclasses.dataclass(frozen=True)
class FlinkSetup:
    """Where the local Flink lives and how it is configured.

    Args:
        cache_dir: Downloads, the Flink distribution and the job-server classpath.
        run_dir: Configuration, pid files, logs, checkpoints of the running cluster
            (default ``<cache_dir>/run``).
        flink_version: A Flink release Beam's runner supports (1.19.x for Beam 2.62).
        beam_version: The Beam release of the job server; must equal the Python SDK's.
        rest_port: Flink's REST API and dashboard.
        rpc_port: The JobManager's RPC port.
        job_port: The Beam job service (``--job_endpoint``).
        artifact_port: The Beam artifact staging service.
        expansion_port: The Java expansion service inside the job server.
        worker_pool_port: The Beam SDK worker pool (``--environment_type=EXTERNAL``).
        task_slots: Slots of the one TaskManager.
        taskmanager_memory: Total process memory of the TaskManager (``3072m``, ``4g``).
        jobmanager_memory: Total process memory of the JobManager.
        job_server_jar: A job-server jar, or a directory of jars, used instead of Maven.
        kinesis_io: Put Beam's Java Kinesis IO on the job server's classpath, so that its
            expansion service can expand the cross-language ``ReadDataFromKinesis``.
        worker_pool: Also run an SDK worker pool.
        remote_rest_url: The REST API of a Flink that is not this local one (``otsec flink
            submit|cancel --rest-url``): jobs are listed, stopped and linked there.
    """

    cache_dir: str
    run_dir: str = ""
    flink_version: str = FLINK_VERSION
    beam_version: str = BEAM_VERSION
    rest_port: int = 8081
    rpc_port: int = 6123
    job_port: int = 8099
    artifact_port: int = 8098
    expansion_port: int = 8097
    worker_pool_port: int = 50000
    task_slots: int = 4
    taskmanager_memory: str = "3072m"
    jobmanager_memory: str = "1024m"
    job_server_jar: str | None = None
    kinesis_io: bool = False
    worker_pool: bool = True
    remote_rest_url: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_dir", os.path.abspath(self.cache_dir))
        run_dir = self.run_dir or os.path.join(self.cache_dir, "run")
        object.__setattr__(self, "run_dir", os.path.abspath(run_dir))
        if self.job_server_jar:
            object.__setattr__(self, "job_server_jar", os.path.abspath(self.job_server_jar))
        if not re.fullmatch(r"\d+\.\d+\.\d+", self.flink_version):
            raise FlinkError(f"Flink version must be like 1.19.3, got {self.flink_version!r}")
        if not re.fullmatch(r"\d+\.\d+\.\d+", self.beam_version):
            raise FlinkError(f"Beam version must be like 2.62.0, got {self.beam_version!r}")
        ports = {
            "rest": self.rest_port,
            "rpc": self.rpc_port,
            "job": self.job_port,
            "artifact": self.artifact_port,
            "expansion": self.expansion_port,
            "worker pool": self.worker_pool_port,
        }
        for name, port in ports.items():
            if not 1 <= port <= 65535:
                raise FlinkError(f"the {name} port must be between 1 and 65535, got {port}")
        if len(set(ports.values())) != len(ports):
            raise FlinkError(f"the ports must differ, got {ports}")
        if self.task_slots < 1:
            raise FlinkError(f"task slots must be >= 1, got {self.task_slots}")
        for name, size in (
            ("TaskManager", self.taskmanager_memory),
            ("JobManager", self.jobmanager_memory),
        ):
            if not _SIZE.match(size.lower()):
                raise FlinkError(f"{name} memory must be like 2048m or 4g, got {size!r}")

    @classmethod
    def resolve(
        cls, cache_dir: str | None = None, run_dir: str | None = None, **settings: Any
    ) -> FlinkSetup:
        """A setup for a new cluster: ``cache_dir`` or `default_cache_dir`, then ``settings``."""
        return cls(cache_dir=cache_dir or default_cache_dir(), run_dir=run_dir or "", **settings)

    @classmethod
    def current(cls, cache_dir: str | None = None, run_dir: str | None = None) -> FlinkSetup:
        """The setup the cluster of ``run_dir`` was started with, or the defaults if none was."""
        setup = cls.resolve(cache_dir, run_dir)
        try:
            with open(setup.state_file, encoding="utf-8") as handle:
                saved = json.load(handle)
        except FileNotFoundError:
            return setup
        except (OSError, ValueError) as error:
            raise FlinkError(f"cannot read {setup.state_file}: {error}") from None
        known = {field.name for field in dataclasses.fields(cls)}
        saved = {key: value for key, value in saved.items() if key in known}
        saved.update(cache_dir=setup.cache_dir, run_dir=setup.run_dir)
        return cls(**saved)

    @classmethod
    def for_start(
        cls, cache_dir: str | None = None, run_dir: str | None = None, **overrides: Any
    ) -> FlinkSetup:
        """The setup a start uses: the running one's (a second start changes nothing), else
        the defaults; then ``overrides``."""
        current = cls.current(cache_dir, run_dir)
        running = local_flink_status(current)
        base = current if running.cluster.reachable or running.job_server.pid else None
        return dataclasses.replace(base or cls.resolve(cache_dir, run_dir), **overrides)

    @property
    def flink_minor(self) -> str:
        return ".".join(self.flink_version.split(".")[:2])

    @property
    def flink_home(self) -> str:
        return os.path.join(self.cache_dir, f"flink-{self.flink_version}")

    @property
    def classpath_dir(self) -> str:
        suffix = "-kinesis" if self.kinesis_io else ""
        return os.path.join(
            self.cache_dir,
            "job-server",
            f"beam-{self.beam_version}-flink-{self.flink_minor}{suffix}",
        )

    @property
    def state_file(self) -> str:
        return os.path.join(self.run_dir, _STATE_FILE)

    @property
    def conf_dir(self) -> str:
        return os.path.join(self.run_dir, "conf")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.run_dir, "log")

    @property
    def pid_dir(self) -> str:
        return os.path.join(self.run_dir, "pids")

    @property
    def rest_url(self) -> str:
        return (self.remote_rest_url or f"http://{_HOST}:{self.rest_port}").rstrip("/")

    @property
    def dashboard_url(self) -> str:
        return self.rest_url

    @property
    def job_endpoint(self) -> str:
        return f"{_HOST}:{self.job_port}"

    @property
    def worker_pool_endpoint(self) -> str:
        return f"{_HOST}:{self.worker_pool_port}"


# --- the Flink distribution -------------------------------------------------------------


@contextlib.contextmanager
def _cache_lock(setup: FlinkSetup) -> Iterator[None]:
    """One process at a time builds the cache (two `cluster start`s, parallel test runs)."""
    os.makedirs(setup.cache_dir, exist_ok=True)
    with open(os.path.join(setup.cache_dir, ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _reason(text: str, pattern: str = r"ERROR|error|Error") -> str:
    """The line of a log that says why, for a one-line error: the first exception, else the
    last line matching ``pattern``, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    exceptions = [line for line in lines if re.search(r"^\S*(Exception|Error)\b|Exception:", line)]
    matching = [line for line in lines if re.search(pattern, line)]
    line = exceptions[0] if exceptions else (matching or lines or [""])[-1]
    return line if len(line) <= 300 else line[:297] + "..."


def _last_line(path: str, pattern: str = r"ERROR|error|Error") -> str:
    """`_reason` of a log file ("" when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return _reason(handle.read(), pattern)
    except OSError:
        return ""


def _distribution_complete(home: str, version: str) -> bool:
    return os.path.isfile(os.path.join(home, "bin", "start-cluster.sh")) and os.path.isfile(
        os.path.join(home, "lib", f"flink-dist-{version}.jar")
    )


def ensure_flink_distribution(setup: FlinkSetup, progress: Progress = _stderr) -> str:
    """Download and unpack the Flink distribution into the cache once; return its home.

    pip downloads the ``apache-flink`` wheel (its ``pyflink/bin`` and ``pyflink/conf`` are
    the distribution's scripts and configuration) and the ``apache-flink-libraries``
    source archive (its ``deps/`` holds ``lib/``, ``opt/`` and ``plugins/``); neither is
    installed. The wheel is asked for by platform, so any interpreter downloads the same
    scripts.

    Raises:
        FlinkError: pip failed (no network, version not served) or the archives lack files.
    """
    home = setup.flink_home
    if _distribution_complete(home, setup.flink_version):
        return home
    with _cache_lock(setup):
        if _distribution_complete(home, setup.flink_version):
            return home
        downloads = os.path.join(setup.cache_dir, "downloads")
        os.makedirs(downloads, exist_ok=True)
        log = os.path.join(downloads, "pip.log")
        progress(
            f"downloading Flink {setup.flink_version} (apache-flink and apache-flink-libraries, "
            f"about 235 MB; once) into {setup.cache_dir}"
        )
        started = time.monotonic()
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir"]
        pip += ["--disable-pip-version-check", "--dest", downloads]
        major, minor = sys.version_info[:2]
        wheel_args = [
            "--only-binary=:all:",
            "--platform=manylinux2014_x86_64",
            "--implementation=cp",
            f"--python-version={major}.{minor}",
        ]
        for requirement, extra in (
            (f"apache-flink=={setup.flink_version}", wheel_args),
            (f"apache-flink-libraries=={setup.flink_version}", ["--no-binary=:all:"]),
        ):
            with open(log, "a", encoding="utf-8") as output:
                result = subprocess.run(
                    [*pip, *extra, requirement],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
            if result.returncode != 0:
                raise FlinkError(
                    f"pip could not download {requirement} (see {log}): {_last_line(log)}"
                )
        wheels = glob.glob(os.path.join(downloads, f"apache_flink-{setup.flink_version}-*.whl"))
        sdists = glob.glob(
            os.path.join(downloads, f"apache?flink?libraries-{setup.flink_version}.tar.gz")
        )
        if not wheels or not sdists:
            raise FlinkError(f"pip reported success but left no Flink archives in {downloads}")
        partial = f"{home}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _unpack_wheel(wheels[0], partial)
        _unpack_libraries(sdists[0], partial)
        if not _distribution_complete(partial, setup.flink_version):
            raise FlinkError(
                f"the Flink {setup.flink_version} archives in {downloads} lack "
                "bin/start-cluster.sh or lib/flink-dist.jar"
            )
        shutil.rmtree(home, ignore_errors=True)
        os.replace(partial, home)
        shutil.rmtree(downloads, ignore_errors=True)
        progress(
            f"Flink {setup.flink_version} ready in {home} ({time.monotonic() - started:.0f} s)"
        )
    return home


def _safe_target(root: str, relative: str) -> str | None:
    """``root/relative`` if it stays inside ``root`` (archives are untrusted input)."""
    if not relative or relative.startswith("/") or ".." in relative.split("/"):
        return None
    return os.path.join(root, *relative.split("/"))


def _unpack_wheel(wheel: str, home: str) -> None:
    """``pyflink/bin`` and ``pyflink/conf`` of the ``apache-flink`` wheel into ``home``."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            name = info.filename
            if info.is_dir() or not name.startswith(("pyflink/bin/", "pyflink/conf/")):
                continue
            target = _safe_target(home, name.removeprefix("pyflink/"))
            if target is None:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
            # Zip entries lose their mode through zipfile; the scripts must be executable.
            os.chmod(target, 0o755 if name.startswith("pyflink/bin/") else 0o644)


def _unpack_libraries(sdist: str, home: str) -> None:
    """``deps/{lib,opt,plugins,bin,licenses}`` of the ``apache-flink-libraries`` sdist."""
    wanted = ("lib/", "opt/", "plugins/", "bin/", "licenses/")
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive:
            if not member.isfile():
                continue
            parts = member.name.split("/", 2)
            if len(parts) < 3 or parts[1] != "deps" or not parts[2].startswith(wanted):
                continue
            target = _safe_target(home, parts[2])
            source = archive.extractfile(member)
            if target is None or source is None:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
            os.chmod(target, 0o644)


# --- the job server's classpath -----------------------------------------------------------


def _pom_text() -> str:
    return importlib.resources.files("runners").joinpath(_POM_RESOURCE).read_text("utf-8")


def ensure_job_server_classpath(setup: FlinkSetup, progress: Progress = _stderr) -> list[str]:
    """The job server's Java classpath entries, resolving them with Maven once.

    With ``setup.job_server_jar`` that jar (or every jar of that directory) is used as
    given. Otherwise the runner ``beam-runners-flink-<minor>`` and its runtime
    dependencies are copied into ``<cache>/job-server/...`` by ``mvn
    dependency:copy-dependencies``; a marker with the pom's hash makes later calls free.

    Raises:
        FlinkError: The given jar does not exist, Maven is missing, or Maven failed.
    """
    if setup.job_server_jar:
        path = setup.job_server_jar
        if os.path.isfile(path) and path.endswith(".jar"):
            return [path]
        if os.path.isdir(path) and glob.glob(os.path.join(path, "*.jar")):
            return [os.path.join(path, "*")]
        raise FlinkError(f"--flink-job-server-jar {path} is neither a jar nor a directory of jars")
    directory = setup.classpath_dir
    jars_dir = os.path.join(directory, "jars")
    marker = os.path.join(directory, "complete.json")
    pom = _pom_text()
    fingerprint = hashlib.sha256(
        f"{pom}|{setup.beam_version}|{setup.flink_minor}|{setup.kinesis_io}".encode()
    ).hexdigest()
    if _classpath_complete(marker, jars_dir, fingerprint):
        return [os.path.join(jars_dir, "*")]
    with _cache_lock(setup):
        if _classpath_complete(marker, jars_dir, fingerprint):
            return [os.path.join(jars_dir, "*")]
        mvn = shutil.which("mvn")
        if mvn is None:
            raise FlinkError(
                "Maven (mvn) is needed once to resolve Beam's Flink job server; install it "
                "(apt-get install maven) or pass --flink-job-server-jar PATH"
            )
        os.makedirs(directory, exist_ok=True)
        pom_path = os.path.join(directory, "pom.xml")
        with open(pom_path, "w", encoding="utf-8") as handle:
            handle.write(pom)
        partial = f"{jars_dir}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        log = os.path.join(directory, "mvn.log")
        what = f"beam-runners-flink-{setup.flink_minor}:{setup.beam_version}"
        if setup.kinesis_io:
            what += " with the Kinesis IO"
        progress(
            f"resolving Beam's Flink job server ({what}, about 160 MB; once) with Maven "
            f"into {directory}; log: {log}"
        )
        started = time.monotonic()
        command = [
            mvn,
            "--batch-mode",
            "--no-transfer-progress",
            "-f",
            pom_path,
            f"-Dbeam.version={setup.beam_version}",
            f"-Dflink.minor={setup.flink_minor}",
            *(["-Pkinesis"] if setup.kinesis_io else []),
            f"{_MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ]
        with open(log, "w", encoding="utf-8") as output:
            result = subprocess.run(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=directory,
                check=False,
            )
        jars = sorted(os.listdir(partial)) if os.path.isdir(partial) else []
        if result.returncode != 0 or not jars:
            raise FlinkError(
                f"Maven could not resolve {what} (see {log}): {_last_line(log, r'ERROR')}"
            )
        shutil.rmtree(jars_dir, ignore_errors=True)
        os.replace(partial, jars_dir)
        with open(marker, "w", encoding="utf-8") as handle:
            json.dump({"fingerprint": fingerprint, "jars": jars}, handle, indent=1)
        size = sum(os.path.getsize(os.path.join(jars_dir, jar)) for jar in jars) >> 20
        progress(
            f"job server classpath ready: {len(jars)} jars, {size} MB "
            f"({time.monotonic() - started:.0f} s)"
        )
    return [os.path.join(jars_dir, "*")]


def _classpath_complete(marker: str, jars_dir: str, fingerprint: str) -> bool:
    try:
        with open(marker, encoding="utf-8") as handle:
            saved = json.load(handle)
    except (OSError, ValueError):
        return False
    if saved.get("fingerprint") != fingerprint:
        return False
    return all(os.path.isfile(os.path.join(jars_dir, jar)) for jar in saved.get("jars", ()))


# --- processes ----------------------------------------------------------------------------


def _java() -> str:
    """The java that Flink's scripts would use: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise FlinkError("no Java found (set JAVA_HOME or put java on PATH); Flink needs 11 or 17")
    return java


def _java_major_version(java: str) -> int:
    """The feature release of ``java`` (8, 11, 17...)."""
    result = subprocess.run(
        [java, "-version"], capture_output=True, text=True, check=False, timeout=60
    )
    found = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr)
    if not found:
        raise FlinkError(f"cannot tell the version of {java}: {result.stderr.strip()[:200]}")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def check_java(progress: Progress = _stderr) -> str:
    """The java to run Flink with; refuses Java older than 11, warns beyond 17."""
    java = _java()
    major = _java_major_version(java)
    if major < 11:
        raise FlinkError(f"{java} is Java {major}; Flink {FLINK_VERSION} with Beam needs 11 or 17")
    if major > 17:
        progress(f"warning: {java} is Java {major}; Flink {FLINK_VERSION} is tested on 11 and 17")
    return java


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().split()
    except OSError:
        return None
    return int(text[-1]) if text and text[-1].isdigit() else None


def _spawn_daemon(argv: Sequence[str], log: str, cwd: str) -> int:
    """Start ``argv`` detached (own session, no terminal, stdio to ``log``); return its pid.

    A shell starts it in the background and exits, as Flink's own daemon scripts do, so
    the process is nobody's child here: it outlives the command and leaves no zombie.
    """
    script = 'nohup "$@" </dev/null >>"$OTSEC_DAEMON_LOG" 2>&1 & echo $!'
    env = {**os.environ, "OTSEC_DAEMON_LOG": log}
    result = subprocess.run(
        ["/bin/sh", "-c", script, "sh", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
        check=False,
    )
    pid = result.stdout.strip()
    if result.returncode != 0 or not pid.isdigit():
        raise FlinkError(f"could not start {argv[0]}: {result.stderr.strip()[:200]}")
    return int(pid)


def _terminate(pid: int, marker: str, timeout: float = 30.0) -> bool:
    """Stop ``pid`` if its command line contains ``marker`` (a reused pid is left alone)."""
    if not _pid_alive(pid) or marker not in _cmdline(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def _port_open(port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        return probe.connect_ex((_HOST, port)) == 0


# --- Flink's REST API ---------------------------------------------------------------------

# Proxies from the environment must not see calls to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _rest(
    setup: FlinkSetup,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> Any:
    """Call Flink's REST API; the decoded JSON answer (None when empty)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{setup.rest_url}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"} if data else {},
    )
    with _OPENER.open(request, timeout=timeout) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


def _rest_error(setup: FlinkSetup, error: Exception) -> FlinkError:
    if isinstance(error, urllib.error.HTTPError):
        try:
            detail = "; ".join(json.loads(error.read()).get("errors", []))[:300]
        except (ValueError, AttributeError):
            detail = error.reason
        return FlinkError(f"Flink at {setup.rest_url} answered {error.code}: {detail}")
    return FlinkError(f"Flink is not reachable at {setup.rest_url} ({error}); is it running?")


@dataclasses.dataclass(frozen=True)
class FlinkJob:
    """A job as Flink's REST API lists it."""

    job_id: str
    name: str
    state: str
    start_time: datetime.datetime | None
    duration_s: float

    @classmethod
    def from_rest(cls, job: dict[str, Any]) -> FlinkJob:
        started = job.get("start-time", -1)
        return cls(
            job_id=job["jid"],
            name=job.get("name", ""),
            state=job.get("state", "UNKNOWN"),
            start_time=(
                datetime.datetime.fromtimestamp(started / 1000, datetime.UTC)
                if started and started > 0
                else None
            ),
            duration_s=max(0, job.get("duration", 0)) / 1000,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "name": self.name,
            "state": self.state,
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "duration_s": self.duration_s,
        }


def find_jobs(setup: FlinkSetup, name: str | None = None) -> list[FlinkJob]:
    """Jobs the cluster knows, newest first; only those named ``name`` when given.

    Raises:
        FlinkError: The REST API is not reachable.
    """
    try:
        jobs = _rest(setup, "GET", "/jobs/overview")["jobs"]
    except (OSError, ValueError, KeyError) as error:
        raise _rest_error(setup, error) from None
    found = [FlinkJob.from_rest(job) for job in jobs]
    found.sort(key=lambda job: job.start_time or datetime.datetime.min.replace(tzinfo=datetime.UTC))
    found.reverse()
    return [job for job in found if name is None or job.name == name]


def _resolve_job(setup: FlinkSetup, job: str) -> FlinkJob:
    """A job by Flink job id, or by name when exactly one unfinished job has it."""
    jobs = find_jobs(setup)
    by_id = [found for found in jobs if found.job_id == job]
    if by_id:
        return by_id[0]
    if _FLINK_JOB_ID.match(job):
        raise FlinkError(f"Flink at {setup.rest_url} has no job {job}")
    named = [found for found in jobs if found.name == job and found.state not in _TERMINAL_STATES]
    if len(named) != 1:
        what = "no unfinished job" if not named else f"{len(named)} unfinished jobs"
        raise FlinkError(f"Flink at {setup.rest_url} has {what} named {job!r}")
    return named[0]


def cancel_job(setup: FlinkSetup, job: str, timeout: float = 60.0) -> FlinkJob:
    """Cancel a job (``PATCH /jobs/<id>?mode=cancel``) and wait until it is CANCELED.

    Args:
        setup: The cluster.
        job: The Flink job id (32 hex digits) or the name of one unfinished job.
        timeout: Seconds to wait for the job to reach a terminal state.

    Raises:
        FlinkError: No such job, or it did not stop in time.
    """
    found = _resolve_job(setup, job)
    if found.state in _TERMINAL_STATES:
        return found
    try:
        _rest(setup, "PATCH", f"/jobs/{found.job_id}?mode=cancel")
    except (OSError, ValueError) as error:
        raise _rest_error(setup, error) from None
    return _wait_terminal(setup, found.job_id, timeout)


def _wait_terminal(setup: FlinkSetup, job_id: str, timeout: float) -> FlinkJob:
    deadline = time.monotonic() + timeout
    while True:
        current = _resolve_job(setup, job_id)
        if current.state in _TERMINAL_STATES:
            return current
        if time.monotonic() > deadline:
            raise FlinkError(f"job {job_id} is still {current.state} after {timeout:.0f} s")
        time.sleep(0.5)


def stop_job_with_savepoint(
    setup: FlinkSetup, job: str, directory: str | None = None, timeout: float = 300.0
) -> str:
    """Stop a streaming job with a savepoint (``POST /jobs/<id>/stop``); its location.

    Resume from it by submitting the job again with Beam's ``--savepoint_path``.

    Raises:
        FlinkError: No such job, or the savepoint failed or took too long.
    """
    found = _resolve_job(setup, job)
    try:
        checkpoints = _rest(setup, "GET", f"/jobs/{found.job_id}/checkpoints/config")
    except (OSError, ValueError) as error:
        raise _rest_error(setup, error) from None
    if checkpoints.get("interval", 0) >= _CHECKPOINTING_DISABLED:
        # Beam lets the Impulse source finish then, and the savepoint waits forever.
        raise FlinkError(
            f"job {found.job_id} runs without checkpointing, so Flink cannot take its "
            "savepoint: cancel it, or submit it with --checkpointing_interval=MILLIS"
        )
    target = directory or f"file://{os.path.join(setup.run_dir, 'savepoints')}"
    if "://" not in target:
        target = f"file://{os.path.abspath(target)}"
    try:
        trigger = _rest(
            setup, "POST", f"/jobs/{found.job_id}/stop", {"targetDirectory": target, "drain": False}
        )["request-id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = _rest(setup, "GET", f"/jobs/{found.job_id}/savepoints/{trigger}")
            if answer["status"]["id"] == "COMPLETED":
                operation = answer.get("operation") or {}
                if "location" in operation:
                    _wait_terminal(setup, found.job_id, 60.0)
                    return str(operation["location"])
                cause = operation.get("failure-cause", {}).get("stack-trace", "")
                first = cause.splitlines()[0] if cause else "no reason given"
                raise FlinkError(f"the savepoint of job {found.job_id} failed: {first[:300]}")
            time.sleep(0.5)
    except (OSError, ValueError, KeyError) as error:
        raise _rest_error(setup, error) from None
    raise FlinkError(f"the savepoint of job {found.job_id} took more than {timeout:.0f} s")


# --- the cluster --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClusterStatus:
    """What Flink's REST API and its pid files say."""

    rest_url: str
    reachable: bool
    flink_version: str | None = None
    taskmanagers: int = 0
    slots_total: int = 0
    slots_available: int = 0
    jobs: tuple[FlinkJob, ...] = ()
    jobmanager_pid: int | None = None
    taskmanager_pids: tuple[int, ...] = ()

    @property
    def running_jobs(self) -> tuple[FlinkJob, ...]:
        return tuple(job for job in self.jobs if job.state not in _TERMINAL_STATES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rest_url": self.rest_url,
            "reachable": self.reachable,
            "flink_version": self.flink_version,
            "taskmanagers": self.taskmanagers,
            "slots_total": self.slots_total,
            "slots_available": self.slots_available,
            "jobmanager_pid": self.jobmanager_pid,
            "taskmanager_pids": list(self.taskmanager_pids),
            "jobs": [job.to_dict() for job in self.jobs],
        }


class LocalFlinkCluster:
    """A Flink standalone cluster on 127.0.0.1: one JobManager and one TaskManager.

    Started and stopped with the distribution's ``bin/start-cluster.sh`` and
    ``bin/stop-cluster.sh``, with ``FLINK_CONF_DIR`` pointing at a configuration written
    into the run directory (the distribution itself is never changed).
    """

    def __init__(self, setup: FlinkSetup) -> None:
        self.setup = setup

    def write_config(self) -> str:
        """Write ``config.yaml``, ``masters``, ``workers`` and the log settings; the conf dir."""
        setup = self.setup
        conf = setup.conf_dir
        os.makedirs(conf, exist_ok=True)
        for directory in ("log", "pids", "tmp", "checkpoints", "savepoints"):
            os.makedirs(os.path.join(setup.run_dir, directory), exist_ok=True)
        shipped = os.path.join(setup.flink_home, "conf")
        for name in os.listdir(shipped):
            if name.startswith(("log4j", "logback")):
                shutil.copyfile(os.path.join(shipped, name), os.path.join(conf, name))
        run = setup.run_dir
        settings: dict[str, Any] = {
            "jobmanager.rpc.address": _HOST,
            "jobmanager.rpc.port": setup.rpc_port,
            "jobmanager.bind-host": _HOST,
            "jobmanager.memory.process.size": setup.jobmanager_memory,
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.host": _HOST,
            "taskmanager.bind-host": _HOST,
            "taskmanager.numberOfTaskSlots": setup.task_slots,
            "taskmanager.memory.process.size": setup.taskmanager_memory,
            # Each Beam job loads the runner's classes (about 160 jars) into its own class
            # loader; the default 256m metaspace runs out after a few jobs.
            "taskmanager.memory.jvm-metaspace.size": "512m",
            "parallelism.default": 1,
            "rest.address": _HOST,
            "rest.bind-address": _HOST,
            "rest.port": setup.rest_port,
            # Beam's portable runner keeps references to the job's class loader after the
            # job ends; Flink's check turns that into spurious failures.
            "classloader.check-leaked-classloader": False,
            "io.tmp.dirs": os.path.join(run, "tmp"),
            # Every job ships the job server's classpath (about 150 MB) to the TaskManager's
            # blob cache; Flink keeps it an hour after the job by default.
            "blob.service.cleanup.interval": 60,
            "state.checkpoints.dir": f"file://{os.path.join(run, 'checkpoints')}",
            "state.savepoints.dir": f"file://{os.path.join(run, 'savepoints')}",
            "env.pid.dir": setup.pid_dir,
            "env.log.dir": setup.log_dir,
            "env.java.opts.all": " ".join(JAVA_MODULE_OPTIONS),
        }
        lines = ["# Written by otsec (runners/flink.py) for the local cluster; rewritten at start."]
        lines += [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
        with open(os.path.join(conf, "config.yaml"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        with open(os.path.join(conf, "masters"), "w", encoding="utf-8") as handle:
            handle.write(f"{_HOST}:{setup.rest_port}\n")
        with open(os.path.join(conf, "workers"), "w", encoding="utf-8") as handle:
            handle.write(f"{_HOST}\n")
        return conf

    def _pids(self, daemon: str) -> list[int]:
        pids: list[int] = []
        for path in glob.glob(os.path.join(self.setup.pid_dir, f"flink-*-{daemon}.pid")):
            with contextlib.suppress(OSError, ValueError), open(path, encoding="ascii") as handle:
                pids += [int(line) for line in handle.read().split() if line.isdigit()]
        return [pid for pid in pids if _pid_alive(pid)]

    def logs(self) -> list[str]:
        """The JobManager's and TaskManager's log files, newest first."""
        found = glob.glob(os.path.join(self.setup.log_dir, "flink-*.log"))
        return sorted(found, key=os.path.getmtime, reverse=True)

    def _script(self, name: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FLINK_CONF_DIR": self.setup.conf_dir}
        # The scripts find their home from their own path; FLINK_HOME would override it.
        env.pop("FLINK_HOME", None)
        try:
            return subprocess.run(
                [os.path.join(self.setup.flink_home, "bin", name)],
                capture_output=True,
                text=True,
                env=env,
                cwd=self.setup.run_dir,
                stdin=subprocess.DEVNULL,
                check=False,
                timeout=180,
            )
        except subprocess.TimeoutExpired:
            raise FlinkError(f"bin/{name} did not return in 180 s") from None

    def status(self) -> ClusterStatus:
        """The cluster started from this run directory (a Flink on the same port that was
        started otherwise is not asked: it is not this cluster)."""
        setup = self.setup
        jobmanager = self._pids("standalonesession")
        taskmanagers = tuple(self._pids("taskexecutor"))
        if not jobmanager:
            return ClusterStatus(setup.rest_url, reachable=False, taskmanager_pids=taskmanagers)
        try:
            overview = _rest(setup, "GET", "/overview", timeout=3.0)
            jobs = tuple(find_jobs(setup))
        except (OSError, ValueError, FlinkError):
            return ClusterStatus(
                setup.rest_url,
                reachable=False,
                jobmanager_pid=jobmanager[0],
                taskmanager_pids=taskmanagers,
            )
        return ClusterStatus(
            rest_url=setup.rest_url,
            reachable=True,
            flink_version=overview.get("flink-version"),
            taskmanagers=int(overview.get("taskmanagers", 0)),
            slots_total=int(overview.get("slots-total", 0)),
            slots_available=int(overview.get("slots-available", 0)),
            jobs=jobs,
            jobmanager_pid=jobmanager[0],
            taskmanager_pids=taskmanagers,
        )

    def start(self, timeout: float = 120.0) -> ClusterStatus:
        """Start the cluster and wait until the TaskManager has registered its slots.

        Raises:
            FlinkError: The port is taken by something else, or the cluster did not come
                up in time (the message names the log to read).
        """
        setup = self.setup
        if self._pids("standalonesession"):
            return self._wait_ready(timeout)
        if self._pids("taskexecutor"):
            self.stop()  # a TaskManager left without its JobManager would register twice
        if _port_open(setup.rest_port) or _port_open(setup.rpc_port):
            raise FlinkError(
                f"port {setup.rest_port} or {setup.rpc_port} on {_HOST} is in use by another "
                f"process (not the cluster of {setup.run_dir}); stop it or choose other ports"
            )
        # Left by daemons that were killed: blob caches of old jobs, RPC jar copies.
        shutil.rmtree(os.path.join(setup.run_dir, "tmp"), ignore_errors=True)
        self.write_config()
        result = self._script("start-cluster.sh")
        out = os.path.join(setup.log_dir, "start-cluster.out")
        with open(out, "a") as handle:
            handle.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise FlinkError(
                f"bin/start-cluster.sh failed; see {out}: {_reason(result.stdout + result.stderr)}"
            )
        return self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> ClusterStatus:
        deadline = time.monotonic() + timeout
        # The daemons write their pid files a moment after the script returns.
        grace = time.monotonic() + 10.0
        while True:
            status = self.status()
            if (
                status.reachable
                and status.taskmanagers >= 1
                and status.slots_total >= self.setup.task_slots
            ):
                return status
            now = time.monotonic()
            dead = [
                daemon
                for daemon in ("standalonesession", "taskexecutor")
                if now > grace and not self._pids(daemon)
            ]
            if dead or now > deadline:
                logs = self.logs()
                where = next(
                    (log for log in logs if dead and dead[0] in log), logs[0] if logs else None
                )
                reason = _last_line(where) if where else ""
                what = "exited" if dead else f"is not ready after {timeout:.0f} s"
                name = {"standalonesession": "JobManager", "taskexecutor": "TaskManager"}
                who = name[dead[0]] if dead else "the Flink cluster"
                raise FlinkError(
                    f"{who} {what}; see {where or self.setup.log_dir}"
                    + (f": {reason}" if reason else "")
                )
            time.sleep(0.5)

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the cluster; False when it was not running."""
        if not (self._pids("standalonesession") or self._pids("taskexecutor")):
            return False
        if os.path.isdir(self.setup.flink_home) and os.path.isdir(self.setup.conf_dir):
            self._script("stop-cluster.sh")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self._pids("standalonesession") + self._pids("taskexecutor")
            if not left:
                return True
            time.sleep(0.3)
        for pid in left:  # the scripts could not stop them: stop them as they would
            _terminate(pid, "org.apache.flink")
        return True


# --- the job server and the worker pool ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProcessStatus:
    """One background process of the local Flink: its pid, whether it runs, where, its log."""

    name: str
    pid: int | None
    running: bool
    endpoint: str
    log: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Daemon(abc.ABC):
    """A background process with a pid file and a log in the run directory."""

    name = ""
    slug = ""
    marker = ""

    def __init__(self, setup: FlinkSetup) -> None:
        self.setup = setup
        self.pid_file = os.path.join(setup.run_dir, f"{self.slug}.pid")
        self.log = os.path.join(setup.run_dir, f"{self.slug}.log")

    @property
    @abc.abstractmethod
    def port(self) -> int:
        """The port the process serves on."""

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The command line that starts the process."""

    def _pid(self) -> int | None:
        pid = _read_pid(self.pid_file)
        return pid if pid and _pid_alive(pid) and self.marker in _cmdline(pid) else None

    def status(self) -> ProcessStatus:
        pid = self._pid()
        running = pid is not None and _port_open(self.port)
        return ProcessStatus(self.name, pid, running, f"{_HOST}:{self.port}", self.log)

    def start(self, timeout: float = 90.0) -> ProcessStatus:
        """Start it unless it runs, and wait until its port accepts connections.

        Raises:
            FlinkError: The port is taken by another process, or it exited or did not
                listen in time (the message names its log).
        """
        if self._pid() is not None:
            return self._wait_listening(self._pid(), timeout)
        if _port_open(self.port):
            raise FlinkError(
                f"port {self.port} on {_HOST} is in use by another process; the {self.name} "
                "cannot start (stop that process or choose another port)"
            )
        os.makedirs(self.setup.run_dir, exist_ok=True)
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(f"{_START_MARK}{datetime.datetime.now(datetime.UTC).isoformat()}\n")
        pid = _spawn_daemon(self.command(), self.log, self.setup.run_dir)
        with open(self.pid_file, "w", encoding="ascii") as handle:
            handle.write(f"{pid}\n")
        return self._wait_listening(pid, timeout)

    def _wait_listening(self, pid: int | None, timeout: float) -> ProcessStatus:
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if not _pid_alive(pid):
                with open(self.log, encoding="utf-8", errors="replace") as handle:
                    this_start = handle.read().rsplit(_START_MARK, 1)[-1]
                raise FlinkError(
                    f"the {self.name} exited at start; see {self.log}: {_reason(this_start)}"
                )
            if time.monotonic() > deadline:
                raise FlinkError(
                    f"the {self.name} does not listen on {_HOST}:{self.port} after "
                    f"{timeout:.0f} s; see {self.log}"
                )
            time.sleep(0.3)
        return self.status()

    def stop(self) -> bool:
        """Stop it; False when it was not running."""
        pid = self._pid()
        stopped = pid is not None and _terminate(pid, self.marker)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.pid_file)
        return stopped


class JobServer(_Daemon):
    """Beam's Flink job server (``FlinkJobServerDriver``) submitting to the local cluster."""

    name = "Beam job server"
    slug = "job-server"
    marker = _JOB_SERVER_MAIN

    def __init__(
        self, setup: FlinkSetup, classpath: Sequence[str] = (), java: str | None = None
    ) -> None:
        super().__init__(setup)
        self.classpath = list(classpath)
        self.java = java

    @property
    def port(self) -> int:
        return self.setup.job_port

    def command(self) -> list[str]:
        setup = self.setup
        if not self.classpath:
            raise FlinkError("the job server needs its classpath (ensure_job_server_classpath)")
        return [
            self.java or _java(),
            "-Xmx2g",
            *JAVA_MODULE_OPTIONS,
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss,SSS",
            # Both log hundreds of lines per job: every Flink setting, every Beam metric.
            "-Dorg.slf4j.simpleLogger.log.org.apache.flink.configuration.GlobalConfiguration=warn",
            "-Dorg.slf4j.simpleLogger.log.org.apache.beam.runners.flink.FlinkPipelineRunner=warn",
            "-cp",
            os.pathsep.join(self.classpath),
            _JOB_SERVER_MAIN,
            "--job-host",
            _HOST,
            "--job-port",
            str(setup.job_port),
            "--artifact-port",
            str(setup.artifact_port),
            "--expansion-port",
            str(setup.expansion_port),
            "--artifacts-dir",
            os.path.join(setup.run_dir, "artifacts"),
            "--flink-master",
            f"{_HOST}:{setup.rest_port}",
            "--flink-conf-dir",
            setup.conf_dir,
        ]


class SdkWorkerPool(_Daemon):
    """A Beam Python SDK worker pool on 127.0.0.1 for ``--environment_type=EXTERNAL``.

    Jobs submitted with LOOPBACK run their Python code inside the submitting process and
    die with it; a detached streaming job needs this pool instead. Beam's own
    ``worker_pool_main`` listens on every interface, so this module serves the same
    servicer on 127.0.0.1 only (see `_serve_worker_pool`).
    """

    name = "SDK worker pool"
    slug = "worker-pool"
    marker = f"-m {_WORKER_POOL_MAIN} worker-pool"

    @property
    def port(self) -> int:
        return self.setup.worker_pool_port

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            _WORKER_POOL_MAIN,
            "worker-pool",
            "--port",
            str(self.setup.worker_pool_port),
            "--log-dir",
            self.setup.log_dir,
        ]


def _worker_pool_servicer(log_dir: str) -> Any:
    """Beam's worker pool servicer, starting one SDK harness process per worker.

    Beam's own process mode runs ``python`` from ``PATH`` (not necessarily the
    interpreter otsec is installed in) and pipes the harness's output into a pipe
    nobody reads; this one runs ``sys.executable`` and appends the harness's output
    to ``LOG_DIR/sdk-worker-<id>.log``. A job's state (open stores, caches, the
    embedded ClickHouse engine's lock on its data path) ends with its harness.
    """
    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    class _ProcessPool(BeamFnExternalWorkerPoolServicer):  # type: ignore[misc]
        def StartWorker(self, request: Any, context: Any) -> Any:  # the gRPC method name
            code = (
                "import logging, sys; "
                "logging.basicConfig(level=logging.INFO, stream=sys.stderr, "
                "format='%(asctime)s %(levelname)s %(name)s %(message)s'); "
                "from apache_beam.runners.worker.sdk_worker import SdkHarness; "
                f"SdkHarness({request.control_endpoint.url!r}, "
                f"worker_id={request.worker_id!r}, state_cache_size={_STATE_CACHE_BYTES})"
                ".run()"
            )
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.worker_id)
            try:
                with open(os.path.join(log_dir, f"sdk-worker-{name}.log"), "ab") as log:
                    process = subprocess.Popen(
                        [sys.executable, "-c", code],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        close_fds=True,
                    )
            except OSError as error:
                return beam_fn_api_pb2.StartWorkerResponse(error=f"cannot start a worker: {error}")
            self._worker_processes[request.worker_id] = process
            return beam_fn_api_pb2.StartWorkerResponse()

    return _ProcessPool(use_process=True)


def _serve_worker_pool(port: int, log_dir: str) -> None:
    """Serve Beam's external worker pool on 127.0.0.1:``port`` until terminated."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import kill_process_gracefully
    from apache_beam.utils import thread_pool_executor

    server = grpc.server(
        thread_pool_executor.shared_unbounded_instance(),
        options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)],
    )
    if server.add_insecure_port(f"{_HOST}:{port}") == 0:
        raise SystemExit(f"cannot listen on {_HOST}:{port}")
    os.makedirs(log_dir, exist_ok=True)
    pool = _worker_pool_servicer(log_dir)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    print(f"SDK worker pool listening on {_HOST}:{port}", flush=True)

    def stop(*_: Any) -> None:
        for process in list(pool._worker_processes.values()):
            kill_process_gracefully(process)
        server.stop(5)

    signal.signal(signal.SIGTERM, stop)
    server.wait_for_termination()


# --- the whole local Flink ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LocalFlinkStatus:
    """The cluster, the job server and the worker pool of one run directory."""

    setup: FlinkSetup
    cluster: ClusterStatus
    job_server: ProcessStatus
    worker_pool: ProcessStatus | None

    @property
    def running(self) -> bool:
        """Everything that this setup starts is running."""
        return (
            self.cluster.reachable
            and self.cluster.taskmanagers > 0
            and self.job_server.running
            and (self.worker_pool is None or self.worker_pool.running)
        )

    def describe(self) -> str:
        cluster = self.cluster
        lines = []
        if cluster.reachable:
            pids = [f"JobManager pid {cluster.jobmanager_pid or '?'}"]
            pids += [f"TaskManager pid {pid}" for pid in cluster.taskmanager_pids]
            lines.append(
                f"Flink {cluster.flink_version}: running, dashboard {cluster.rest_url} "
                f"({', '.join(pids)})"
            )
            lines.append(
                f"  task managers {cluster.taskmanagers}, slots {cluster.slots_available} free "
                f"of {cluster.slots_total}"
            )
        else:
            lines.append(f"Flink: not running from {self.setup.run_dir}")
        for process in (self.job_server, self.worker_pool):
            if process is None:
                continue
            state = "running" if process.running else "not running"
            pid = f", pid {process.pid}" if process.pid else ""
            lines.append(f"{process.name}: {state} at {process.endpoint}{pid}")
        if cluster.reachable:
            running = cluster.running_jobs
            lines.append(f"jobs: {len(running)} running, {len(cluster.jobs)} known")
            for job in cluster.jobs[:20]:
                since = f", since {job.start_time:%Y-%m-%d %H:%M:%S}Z" if job.start_time else ""
                lines.append(
                    f"  {job.job_id}  {job.state:<10} {job.name}  ({job.duration_s:.0f} s{since})"
                )
        lines.append(f"logs: {self.setup.log_dir}, {self.setup.run_dir}/*.log")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "dashboard_url": self.setup.dashboard_url,
            "job_endpoint": self.setup.job_endpoint,
            "cluster": self.cluster.to_dict(),
            "job_server": self.job_server.to_dict(),
            "worker_pool": self.worker_pool.to_dict() if self.worker_pool else None,
            "run_dir": self.setup.run_dir,
        }


def local_flink_status(setup: FlinkSetup) -> LocalFlinkStatus:
    """What runs of the local Flink of ``setup.run_dir``."""
    return LocalFlinkStatus(
        setup=setup,
        cluster=LocalFlinkCluster(setup).status(),
        job_server=JobServer(setup).status(),
        worker_pool=SdkWorkerPool(setup).status() if setup.worker_pool else None,
    )


def start_local_flink(setup: FlinkSetup, progress: Progress = _stderr) -> LocalFlinkStatus:
    """Fetch what is missing, then start the cluster, the job server and the worker pool.

    Parts that already run are left as they are. The setup is saved in the run directory
    so that `FlinkSetup.current` (status, stop, submit) finds the same ports.

    Raises:
        FlinkError: Anything could not be fetched or started; the message names the log.
    """
    current = FlinkSetup.current(setup.cache_dir, setup.run_dir)
    if os.path.exists(setup.state_file) and current != setup:
        running = local_flink_status(current)
        if running.cluster.reachable or running.job_server.running:
            raise FlinkError(
                f"a local Flink with other settings runs from {setup.run_dir}; "
                "stop it first (otsec flink cluster stop)"
            )
    if os.path.exists(setup.state_file) and current == setup:
        running = local_flink_status(setup)
        if running.running:
            progress(f"the local Flink of {setup.run_dir} already runs")
            return running
    java = check_java(progress)
    ensure_flink_distribution(setup, progress)
    classpath = ensure_job_server_classpath(setup, progress)
    os.makedirs(setup.run_dir, exist_ok=True)
    with open(setup.state_file, "w", encoding="utf-8") as handle:
        json.dump(dataclasses.asdict(setup), handle, indent=1)
    started = time.monotonic()
    progress(f"starting Flink {setup.flink_version} on {_HOST} ({setup.task_slots} slots)")
    before = local_flink_status(setup)
    parts: list[_Daemon | LocalFlinkCluster] = [
        LocalFlinkCluster(setup),
        JobServer(setup, classpath, java),
        *([SdkWorkerPool(setup)] if setup.worker_pool else []),
    ]
    try:
        for part in parts:
            part.start()
    except FlinkError:
        # Leave nothing half-started behind; what ran before this call keeps running.
        was_running = {
            LocalFlinkCluster: bool(before.cluster.jobmanager_pid),
            JobServer: before.job_server.pid is not None,
            SdkWorkerPool: before.worker_pool is not None and before.worker_pool.pid is not None,
        }
        for part in reversed(parts):
            if not was_running[type(part)]:
                part.stop()
        raise
    progress(f"local Flink up ({time.monotonic() - started:.0f} s)")
    return local_flink_status(setup)


def stop_local_flink(setup: FlinkSetup) -> list[str]:
    """Stop the worker pool, the job server and the cluster; the names of those stopped."""
    stopped = []
    if SdkWorkerPool(setup).stop():
        stopped.append(SdkWorkerPool.name)
    if JobServer(setup).stop():
        stopped.append(JobServer.name)
    if LocalFlinkCluster(setup).stop():
        stopped.append(f"Flink {setup.flink_version} cluster")
    return stopped


@contextlib.contextmanager
def local_flink(setup: FlinkSetup, progress: Progress = _stderr) -> Iterator[LocalFlinkStatus]:
    """The local Flink for a block (a test session): started if needed, stopped after if so."""
    already = local_flink_status(setup).running
    status = start_local_flink(setup, progress)
    try:
        yield status
    finally:
        if not already:
            stop_local_flink(setup)


# --- pipeline options ---------------------------------------------------------------------


def flink_pipeline_args(
    job_endpoint: str,
    environment: str = "loopback",
    *,
    worker_pool: str | None = None,
    streaming: bool = False,
    parallelism: int | None = None,
    job_name: str | None = None,
    checkpointing_interval_ms: int | None = None,
) -> list[str]:
    """Beam pipeline options that run a pipeline through a Flink job server.

    Args:
        job_endpoint: The job server's ``host:port``.
        environment: ``loopback`` (the Python code runs in the submitting process, which
            must stay until the job ends) or ``external`` (a Beam worker pool at
            ``worker_pool`` runs it: detached jobs, the worker-pool sidecar on Kubernetes).
        worker_pool: ``host:port`` of the worker pool, for ``external``.
        streaming: Run in streaming mode (unbounded sources, checkpoints).
        parallelism: Flink parallelism of the job (default: the cluster's default).
        job_name: The job's name in Flink (the dashboard, `find_jobs`, `cancel_job`).
        checkpointing_interval_ms: Checkpoint every so many milliseconds; streaming jobs
            default to `DEFAULT_CHECKPOINT_INTERVAL_MS`, 0 turns checkpoints off (and with
            them savepoints: `stop_job_with_savepoint` refuses such jobs).

    Raises:
        FlinkError: ``environment`` is unknown or ``external`` lacks ``worker_pool``.
    """
    args = ["--runner=PortableRunner", f"--job_endpoint={job_endpoint}"]
    if environment == "loopback":
        args.append("--environment_type=LOOPBACK")
    elif environment == "external":
        if not worker_pool:
            raise FlinkError("the EXTERNAL environment needs the worker pool's host:port")
        args += ["--environment_type=EXTERNAL", f"--environment_config={worker_pool}"]
    else:
        raise FlinkError(f"environment must be loopback or external, got {environment!r}")
    if streaming:
        args.append("--streaming")
        if checkpointing_interval_ms is None:
            checkpointing_interval_ms = DEFAULT_CHECKPOINT_INTERVAL_MS
    if checkpointing_interval_ms:
        args.append(f"--checkpointing_interval={checkpointing_interval_ms}")
    if parallelism is not None:
        args.append(f"--parallelism={parallelism}")
    if job_name:
        args.append(f"--job_name={job_name}")
    return args


def local_pipeline_args(
    setup: FlinkSetup | None = None,
    *,
    environment: str = "loopback",
    streaming: bool = False,
    parallelism: int | None = None,
    job_name: str | None = None,
    checkpointing_interval_ms: int | None = None,
) -> list[str]:
    """`flink_pipeline_args` for the local Flink that `otsec flink cluster start` runs.

    Raises:
        FlinkError: The job server (or, for ``external``, the worker pool) is not running.
    """
    setup = setup or FlinkSetup.current()
    job_server = JobServer(setup).status()
    if not job_server.running:
        raise FlinkError(
            f"no Beam job server runs at {job_server.endpoint}; start the local Flink with "
            "`otsec flink cluster start`"
        )
    pool = None
    if environment == "external":
        status = SdkWorkerPool(setup).status()
        if not status.running:
            raise FlinkError(
                f"no SDK worker pool runs at {status.endpoint}; start the local Flink with "
                "`otsec flink cluster start` (without --no-worker-pool)"
            )
        pool = status.endpoint
    return flink_pipeline_args(
        setup.job_endpoint,
        environment,
        worker_pool=pool,
        streaming=streaming,
        parallelism=parallelism,
        job_name=job_name,
        checkpointing_interval_ms=checkpointing_interval_ms,
    )


def _main(argv: Sequence[str]) -> int:
    """``python -m runners.flink worker-pool --port N``: the SDK worker pool's process."""
    parser = argparse.ArgumentParser(prog="python -m runners.flink")
    commands = parser.add_subparsers(dest="command", required=True)
    pool = commands.add_parser("worker-pool", help="serve a Beam SDK worker pool on 127.0.0.1")
    pool.add_argument("--port", type=int, required=True)
    pool.add_argument("--log-dir", required=True, help="where each SDK harness logs")
    args = parser.parse_args(argv)
    _serve_worker_pool(args.port, args.log_dir)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
