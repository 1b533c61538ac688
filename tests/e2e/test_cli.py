"""The otsec command end to end: real runs over the fixtures, exit codes, summaries."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from schemas.dead_letter import DeadLetter
from tests.conftest import ZEEK_TSV
from transforms.dead_letters import read_dead_letters

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def otsec(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "beam_pipelines.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def run_summary(tmp_path: Path, *inputs: str, extra: tuple[str, ...] = ()) -> tuple[dict, Path]:
    """Run into the embedded stores under tmp_path, exporting events and dead letters as files."""
    summary = tmp_path / "summary.json"
    result = otsec(
        "run",
        *(a for i in inputs for a in ("--input", i)),
        "--data-dir",
        str(tmp_path),
        "--output",
        str(tmp_path / "events"),
        "--dead-letter-dir",
        str(tmp_path / "dead_letters"),
        "--summary-json",
        str(summary),
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(summary.read_text()), tmp_path


def test_every_fixture_is_accounted_for(tmp_path: Path) -> None:
    summary, data = run_summary(tmp_path, str(ZEEK_TSV))
    assert summary["conservation_ok"] is True
    assert summary["files"] == 16
    events = [
        json.loads(line)
        for f in sorted((data / "events").glob("events-*.jsonl"))
        for line in f.open()
    ]
    letters = read_dead_letters(
        [str(p) for p in (data / "dead_letters").glob("dead_letters-*.jsonl")]
    )
    assert summary["stored_events"] == len(events) and summary["dead_letters"]["total"] == len(
        letters
    )
    per_file: dict[str, list[int]] = {}
    for event in events:
        per_file.setdefault(Path(event["source"]["uri"]).name, [0, 0])[0] += 1
    for letter in letters:
        per_file.setdefault(Path(letter.source.uri).name, [0, 0])[1] += 1
    data_lines = {
        p.name: sum(
            1 for line in p.read_bytes().splitlines() if line.strip() and not line.startswith(b"#")
        )
        for p in ZEEK_TSV.glob("*.log")
    }
    assert {name: sum(counts) for name, counts in per_file.items()} == data_lines
    # Real timestamps: stored. Canonified test baselines and the headerless log: dead letters.
    assert per_file["zeek_modbus_2016.log"] == [300, 0]
    assert per_file["icsnpp_enip_enip.log"] == [269, 0]
    assert per_file["icsnpp_s7comm_plus.log"] == [121, 0]
    assert per_file["zeek_dnp3_current.log"] == [0, 66]
    assert per_file["icsnpp_opcua_binary_headerless.log"] == [0, 37]
    assert summary["dead_letters"]["by_stage"] == {"decode": 37, "validate": 723}
    assert summary["dead_letters_stored"] == 760  # in PostgreSQL, besides the files
    modbus = next(
        e
        for e in events
        if e["source"]["uri"].endswith("zeek_modbus_2016.log") and e["source"]["line"] == 20
    )
    assert (
        modbus["ics"]["function_name"] == "WRITE_SINGLE_REGISTER"
        and modbus["ics"]["operation"] == "write"
    )
    assert modbus["time"] == "2004-08-26T12:14:40.000230Z"


def test_rerun_replaces_outputs_with_identical_ids(tmp_path: Path) -> None:
    fixture = str(ZEEK_TSV / "zeek_modbus_2016.log")
    run_summary(tmp_path, fixture)
    first = sorted(
        json.loads(line)["event_id"]
        for f in (tmp_path / "events").glob("events-*.jsonl")
        for line in f.open()
    )
    run_summary(tmp_path, fixture)
    second = sorted(
        json.loads(line)["event_id"]
        for f in (tmp_path / "events").glob("events-*.jsonl")
        for line in f.open()
    )
    assert first == second and len(first) == 300


def test_bad_input_file_becomes_dead_letters_with_payload(tmp_path: Path) -> None:
    bad = tmp_path / "in" / "bad.json"
    bad.parent.mkdir()
    garbage = bytes(range(256)).replace(b"\n", b"")
    bad.write_bytes(
        b'{"event_type": "alert"\n' + garbage + b"\n" + b'{"x":' + b"1" * (1 << 20) + b"}\n"
    )
    summary, data = run_summary(tmp_path, str(bad.parent))
    assert (
        summary["input_records"] == 3
        and summary["dead_letters"]["total"] == 3
        and summary["conservation_ok"]
    )
    letters = sorted(
        read_dead_letters([str(p) for p in (data / "dead_letters").glob("*.jsonl")]),
        key=lambda d: d.source.line or 0,
    )
    assert [d.source.line for d in letters] == [1, 2, 3]
    assert letters[1].payload == garbage
    assert "over the 1048576-byte limit" in letters[2].message and len(letters[2].payload) > 1 << 20
    assert isinstance(letters[0], DeadLetter) and letters[0].stage == "decode"


def test_empty_input_is_a_run_with_zero_records(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    summary, _ = run_summary(tmp_path, str(empty))
    assert (summary["input_records"], summary["stored_events"], summary["conservation_ok"]) == (
        0,
        0,
        True,
    )


def test_beam_options_pass_through(tmp_path: Path) -> None:
    summary, _ = run_summary(
        tmp_path,
        str(ZEEK_TSV / "zeek_modbus_conn_2016.log"),
        extra=("--job_name=otsec-e2e", "--direct_num_workers=1"),
    )
    assert summary["stored_events"] == 9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("run", "--input", "/nonexistent/zeek.log"),
            "otsec: error: input not found: /nonexistent/zeek.log",
        ),
        (
            ("run", "--input", "/nonexistent/*.log"),
            "otsec: error: input glob matches no file: /nonexistent/*.log",
        ),
        (
            ("run", "--input", str(ZEEK_TSV), "--no-such-option", "1"),
            "otsec: error: unknown option --no-such-option",
        ),
        (
            ("run", "--input", "kinesis://stream?region=eu-west-1"),
            "otsec: error: kinesis://stream?region=eu-west-1: a stream is read by the streaming",
        ),
        (
            ("generate", "--out", "/tmp/x", "--attack-rate", "2"),
            "argument --attack-rate: must be between 0 and 1",
        ),
    ],
)
def test_configuration_errors_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    result = otsec(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert message in lines[-1]
    assert all(not line.startswith("Traceback") for line in lines)


def test_help_answers_fast() -> None:
    started = time.monotonic()
    result = otsec("--help")
    elapsed = time.monotonic() - started
    assert result.returncode == 0 and "run" in result.stdout and "generate" in result.stdout
    assert elapsed < 1.0, f"otsec --help took {elapsed:.2f} s"


def test_json_logs(tmp_path: Path) -> None:
    result = otsec(
        "--log-format",
        "json",
        "--log-level",
        "INFO",
        "run",
        "--input",
        str(ZEEK_TSV / "zeek_modbus_conn_2016.log"),
        "--data-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    records = [
        msgspec.json.decode(line) for line in result.stderr.splitlines() if line.startswith("{")
    ]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
