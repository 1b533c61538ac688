"""Detection end to end: generated plant traffic with every attack scenario, its asset
inventory and its threat intelligence through `otsec cti refresh` and `otsec run`; the alerts
in PostgreSQL against the ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from beam_pipelines.generate import SCENARIOS
from beam_pipelines.stores import StoreSettings, open_postgres
from tests.e2e.test_cli import otsec, run_summary

pytestmark = pytest.mark.e2e

SEVERE = ("high", "critical")


def _alerts(data_dir: Path) -> list[dict[str, Any]]:
    with open_postgres(StoreSettings.resolve(str(data_dir))) as (_, connection):
        rows = connection.execute(
            "SELECT rule_id, severity, risk_score, attack_techniques, host(src_ip), "
            "host(dst_ip), event_count, first_seen, last_seen, sample_event_ids FROM alerts"
        ).fetchall()
    names = (
        "rule_id",
        "severity",
        "risk_score",
        "techniques",
        "src_ip",
        "dst_ip",
        "event_count",
        "first_seen",
        "last_seen",
        "sample_event_ids",
    )
    return [dict(zip(names, row, strict=True)) for row in rows]


def _generate(out: Path, *args: str) -> None:
    result = otsec("generate", "--out", str(out), *args)
    assert result.returncode == 0, result.stderr


def _run(plant: Path, data: Path) -> dict[str, Any]:
    refresh = otsec(
        "cti", "refresh", "--feeds", str(plant / "cti" / "feeds.yaml"), "--data-dir", str(data)
    )
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    assert "feodo" in refresh.stdout and "4 indicators" in refresh.stdout
    summary, _ = run_summary(
        data, str(plant / "sensors"), extra=("--assets", str(plant / "assets.csv"))
    )
    return summary


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    plant = tmp_path_factory.mktemp("attacked")
    # 3% attacks over 8,000 records: every one of the 24 scenarios appears.
    _generate(plant, "--events", "8000", "--seed", "21", "--attack-rate", "0.03")
    data = tmp_path_factory.mktemp("attacked-data")
    return plant, data, _run(plant, data)


def test_every_injected_attack_raises_an_alert_with_its_technique(attacked) -> None:
    plant, data, summary = attacked
    assert summary["conservation_ok"] is True
    truth = [json.loads(line) for line in (plant / "truth.jsonl").open()]
    attacks = [t for t in truth if t["type"] == "attack"]
    assert {t["scenario"] for t in attacks} == {s.name for s in SCENARIOS}
    alerts = _alerts(data)
    assert summary["alerts"] == len(alerts)
    missed = []
    for attack in attacks:
        found = [
            a
            for a in alerts
            if attack["technique"] in a["techniques"]
            and a["src_ip"] == attack["src_ip"]
            and a["dst_ip"] in (None, attack["dst_ip"])  # threshold rules group by source
        ]
        if not found:
            missed.append(
                (attack["scenario"], attack["technique"], attack["src_ip"], attack["dst_ip"])
            )
    assert missed == []  # recall 1.0


def test_alerts_aggregate_repeats_into_one_row_with_counts_and_samples(attacked) -> None:
    _, data, _ = attacked
    alerts = _alerts(data)
    keys = [
        (
            a["rule_id"],
            a["src_ip"],
            a["dst_ip"],
            a["first_seen"].replace(minute=0, second=0, microsecond=0),
        )
        for a in alerts
    ]
    assert len(keys) == len(set(keys))  # one row per rule, entities and hour
    for alert in alerts:
        assert 1 <= len(alert["sample_event_ids"]) <= min(10, alert["event_count"])
        assert alert["first_seen"] <= alert["last_seen"]
        assert 0 <= alert["risk_score"] <= 100


def test_the_c2_beacon_matches_the_feodo_list_and_the_event_carries_it(attacked) -> None:
    plant, data, _ = attacked
    beacon = next(
        json.loads(line) for line in (plant / "truth.jsonl").open() if '"cti_c2_beacon"' in line
    )
    alerts = [a for a in _alerts(data) if a["rule_id"] == "OTSEC-CTI-OUTBOUND"]
    assert any(a["dst_ip"] == beacon["dst_ip"] and a["severity"] == "high" for a in alerts)
    events = [
        json.loads(line)
        for path in (data / "events").glob("events-*.jsonl")
        for line in path.open()
    ]
    matched = [e for e in events if e.get("cti_matches")]
    assert matched and all(
        m["sources"] == ["feodo"] and m["confidence"] == 80
        for e in matched
        for m in e["cti_matches"]
    )
    # Nothing else matches: only the Feodo C2 addresses are indicators.
    assert {m["value"] for e in matched for m in e["cti_matches"]} <= {
        "192.9.135.73",
        "213.199.41.33",
        "194.233.91.144",
        "84.247.157.112",
    }
    assert all(e["risk_score"] > 0 for e in matched)


def test_normal_operation_raises_nothing_high_or_critical(tmp_path: Path) -> None:
    plant = tmp_path / "quiet"
    _generate(plant, "--events", "8000", "--seed", "22", "--attack-rate", "0")
    data = tmp_path / "quiet-data"
    summary = _run(plant, data)
    assert summary["conservation_ok"] is True
    severe = [a for a in _alerts(data) if a["severity"] in SEVERE]
    assert severe == []
