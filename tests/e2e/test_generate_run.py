"""Generated plant data through the whole command: ground truth against what the run reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_cli import otsec, run_summary
from transforms.dead_letters import read_dead_letters

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plant")
    result = otsec(
        "generate",
        "--out",
        str(out),
        "--events",
        "6000",
        "--seed",
        "11",
        "--malformed-rate",
        "0.005",
        "--duplicate-rate",
        "0.01",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 6,000 sensor records" in result.stdout
    return out


def test_every_malformed_record_is_a_dead_letter_at_its_line(plant: Path, tmp_path: Path) -> None:
    summary, data = run_summary(tmp_path, str(plant / "sensors"))
    assert summary["input_records"] == 6000 and summary["conservation_ok"] is True
    truth = [json.loads(line) for line in (plant / "truth.jsonl").open()]
    malformed = {(t["file"], t["line"]) for t in truth if t["type"] == "malformed"}
    letters = read_dead_letters([str(p) for p in (data / "dead_letters").glob("*.jsonl")])
    where = {(str(Path(d.source.uri).relative_to(plant)), d.source.line) for d in letters}
    assert where == malformed  # nothing else failed, nothing malformed got through
    assert summary["dead_letters"]["total"] == len(malformed) == 30
    assert summary["duplicates_dropped"] == 60
    assert summary["stored_events"] == 6000 - 30 - 60


def test_duplicates_are_dropped_and_the_first_copy_is_kept(plant: Path, tmp_path: Path) -> None:
    summary, data = run_summary(tmp_path, str(plant / "sensors"))
    ids: dict[str, list[tuple[str, int]]] = {}
    for path in (data / "events").glob("events-*.jsonl"):
        for line in path.open():
            event = json.loads(line)
            ids.setdefault(event["event_id"], []).append(
                (str(Path(event["source"]["uri"]).relative_to(plant)), event["source"]["line"])
            )
    assert all(len(where) == 1 for where in ids.values())  # one event per id
    stored = {where[0] for where in ids.values()}
    truth = [json.loads(line) for line in (plant / "truth.jsonl").open()]
    duplicates = [t for t in truth if t["type"] == "duplicate"]
    assert len(duplicates) == summary["duplicates_dropped"] == 60
    for t in duplicates:  # the copy read first (the original line) is the one stored
        assert (t["file"], t["of_line"]) in stored and (t["file"], t["line"]) not in stored


def test_attacks_land_as_events_with_their_technique_operation(plant: Path, tmp_path: Path) -> None:
    _, data = run_summary(tmp_path, str(plant / "sensors"))
    events = {}
    for path in (data / "events").glob("events-*.jsonl"):
        for line in path.open():
            event = json.loads(line)
            events[
                (str(Path(event["source"]["uri"]).relative_to(plant)), event["source"]["line"])
            ] = event
    truth = [json.loads(line) for line in (plant / "truth.jsonl").open()]
    attacks = [t for t in truth if t["type"] == "attack"]
    assert len({t["scenario"] for t in attacks}) >= 20
    expected_operation = {
        "s7_plc_stop": "restart_stop",
        "dnp3_cold_restart": "restart_stop",
        "cip_stop": "restart_stop",
        "modbus_write_from_non_ews": "write",
        "s7_program_download": "program",
        "s7_program_upload": "program",
        "bacnet_reinitialize": "restart_stop",
    }
    for attack in attacks:
        event = events[(attack["file"], attack["line"])]
        assert (event["src"]["ip"], event["dst"]["ip"]) == (attack["src_ip"], attack["dst_ip"])
        if attack["scenario"] in expected_operation:
            assert event["ics"]["operation"] == expected_operation[attack["scenario"]], attack


def test_demo_runs_and_prints_the_summary(tmp_path: Path) -> None:
    result = otsec("demo", "--data-dir", str(tmp_path), "--events", "3000")
    assert result.returncode == 0, result.stderr
    assert "conservation      OK" in result.stdout and "input records" in result.stdout
    summary = json.loads((tmp_path / "demo-summary.json").read_text())
    assert summary["input_records"] == 3000 and summary["conservation_ok"] is True


def test_progress_line(plant: Path, tmp_path: Path) -> None:
    result = otsec(
        "run",
        "--input",
        str(plant / "sensors"),
        "--data-dir",
        str(tmp_path),
        "--progress",
        "always",
    )
    assert result.returncode == 0, result.stderr
    assert "records from" in result.stderr and "records/s" in result.stderr
