"""`otsec flink submit` and `otsec publish` refuse bad settings before touching Flink or
Kinesis, with one line that names what is wrong."""

from __future__ import annotations

import pytest

from beam_pipelines.cli import main

# A job server that need not exist: these checks come before anything is contacted.
NOWHERE = ("--job-endpoint", "127.0.0.1:9", "--rest-url", "http://127.0.0.1:9")


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    if argv[:2] == ("flink", "submit") and "--job-endpoint" not in argv:
        argv = (*argv, *NOWHERE)
    assert main(list(argv)) == 2
    return capsys.readouterr().err.strip()


def test_submit_to_the_local_flink_says_to_start_it(
    capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    message = _error(
        capsys,
        "flink",
        "submit",
        "--input",
        "kinesis://s?region=eu-west-1",
        "--run-dir",
        str(tmp_path),
        "--job-endpoint",
        "",
    )
    assert "start the local Flink with `otsec flink cluster start`" in message


def test_a_remote_job_server_needs_its_rest_url(capsys: pytest.CaptureFixture[str]) -> None:
    message = _error(
        capsys,
        "flink",
        "submit",
        "--input",
        "kinesis://s?region=eu-west-1",
        "--job-endpoint",
        "jobserver:8099",
    )
    assert message == "otsec: error: --job-endpoint needs --rest-url (to find the job in Flink)"


def test_submit_needs_a_kinesis_uri(capsys: pytest.CaptureFixture[str]) -> None:
    message = _error(capsys, "flink", "submit", "--input", "/tmp/sensors", "--postgres-dsn", "x")
    assert message == "otsec: error: /tmp/sensors: expected kinesis://STREAM?..."


def test_submit_rejects_unknown_stream_options(capsys: pytest.CaptureFixture[str]) -> None:
    message = _error(
        capsys, "flink", "submit", "--input", "kinesis://s?region=r&shards=2", "--postgres-dsn", "x"
    )
    assert "unknown option 'shards'" in message


def test_submit_needs_a_postgres_server_the_workers_reach(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.delenv("OTSEC_POSTGRES_DSN", raising=False)
    message = _error(
        capsys,
        "flink",
        "submit",
        "--input",
        "kinesis://s?region=eu-west-1",
        "--data-dir",
        str(tmp_path),
    )
    assert "a streaming job needs a PostgreSQL server it can reach" in message


def test_submit_rejects_a_bad_duration(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assets = tmp_path / "assets.csv"
    assets.write_text("address,name,role,purdue_level,zone,criticality\n")
    message = _error(
        capsys,
        "flink",
        "submit",
        "--input",
        "kinesis://s?region=eu-west-1",
        "--postgres-dsn",
        "postgresql://nobody@127.0.0.1:1/none",
        "--assets",
        str(assets),
        "--data-dir",
        str(tmp_path),
        "--dedupe-ttl",
        "ten minutes",
    )
    assert message.startswith("otsec: error: --dedupe-ttl: duration 'ten minutes' is not")


def test_submit_names_a_missing_inventory(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    message = _error(
        capsys,
        "flink",
        "submit",
        "--input",
        "kinesis://s?region=eu-west-1",
        "--postgres-dsn",
        "postgresql://nobody@127.0.0.1:1/none",
        "--assets",
        str(tmp_path / "missing.csv"),
        "--data-dir",
        str(tmp_path),
    )
    assert message == f"otsec: error: asset inventory {tmp_path / 'missing.csv'} does not exist"


def test_publish_needs_a_kinesis_uri_and_existing_files(
    capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    assert "expected kinesis://STREAM" in _error(capsys, "publish", "--to", "s3://b", str(tmp_path))
    missing = tmp_path / "none.log"
    assert _error(capsys, "publish", "--to", "kinesis://s?region=r", str(missing)) == (
        f"otsec: error: input not found: {missing}"
    )
