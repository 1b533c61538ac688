"""The real Zeek, ICSNPP and Suricata fixtures through all eight stages: the alerts a
detection engineer would expect from each capture, and why (no asset inventory, no CTI:
nothing in these captures is known to be an engineering workstation)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from beam_pipelines.event_pipeline import RunConfig, run
from runners.direct import with_direct_defaults
from tests.conftest import ZEEK_TSV

pytestmark = pytest.mark.e2e
FIXTURES = ZEEK_TSV.parent.parent


def _alerts(tmp_path: Path, *files: Path) -> list[dict]:
    out = tmp_path / "out"
    summary = run(
        RunConfig(
            input_files=tuple(str(f) for f in files),
            output_dir=str(out),
            dead_letter_dir=str(tmp_path / "dead"),
        ),
        with_direct_defaults([]),
    )
    assert summary.conservation_ok
    return [json.loads(line) for path in out.glob("alerts-*.jsonl") for line in path.open()]


def _by_rule(alerts: list[dict]) -> Counter[tuple[str, str | None, str | None]]:
    return Counter((a["rule_id"], a.get("src_ip"), a.get("dst_ip")) for a in alerts)


def test_snap7_session_stops_the_plc_and_moves_program_blocks(tmp_path: Path) -> None:
    # ICSNPP's s7comm test capture is a Snap7 client driving a PLC through its control
    # functions: block uploads, a download and a PLC stop. Each is what an attacker with
    # network access to an S7 PLC does (T0845, T0843, T0881) and none came from a known
    # engineering workstation, so each is an alert; the stop is critical.
    alerts = _alerts(tmp_path, ZEEK_TSV / "icsnpp_s7comm_snap7.log")
    pair = ("134.217.61.131", "134.217.61.211")
    assert set(_by_rule(alerts)) == {
        ("OTSEC-S7-PLC-STOP", *pair),
        ("OTSEC-S7-PROGRAM-UPLOAD", *pair),
        ("OTSEC-S7-PROGRAM-DOWNLOAD", *pair),
    }
    severity = {a["rule_id"]: a["severity"] for a in alerts}
    assert severity["OTSEC-S7-PLC-STOP"] == "critical"
    upload = next(a for a in alerts if a["rule_id"] == "OTSEC-S7-PROGRAM-UPLOAD")
    assert upload["event_count"] == 13 and upload["attack_techniques"] == ["T0845"]


def test_zeek_modbus_capture_shows_writes_programming_and_an_exception_burst(
    tmp_path: Path,
) -> None:
    # Zeek's 2016 Modbus test capture mixes several public pcaps. Writes to registers from
    # hosts nobody vouches for (T0855); Modicon programming function codes (T0843) and a
    # storm of exception replies from 192.168.66.235, the client of a Modbus fuzzing capture.
    alerts = _alerts(tmp_path, ZEEK_TSV / "zeek_modbus_2016.log")
    rules = _by_rule(alerts)
    assert ("OTSEC-MODBUS-WRITE-NON-EWS", "10.0.0.9", "10.0.0.3") in rules
    assert ("OTSEC-MODBUS-WRITE-NON-EWS", "10.1.1.234", "10.10.5.85") in rules
    assert ("OTSEC-MODBUS-PROGRAM", "192.168.66.235", "166.161.16.230") in rules
    assert ("OTSEC-MODBUS-EXCEPTION-BURST", "192.168.66.235", None) in rules
    assert {rule for rule, _, _ in rules} <= {
        "OTSEC-MODBUS-WRITE-NON-EWS",
        "OTSEC-MODBUS-PROGRAM",
        "OTSEC-MODBUS-EXCEPTION-BURST",
        "OTSEC-MODBUS-DEVICE-ID-SWEEP",
    }


def test_suricata_signatures_become_alerts_and_quiet_logs_stay_quiet(tmp_path: Path) -> None:
    # The Suricata EVE sample carries ET signatures of severity 2-3: medium alerts, one per
    # flow pair. The ICSNPP EtherNet/IP and S7comm-plus captures are ordinary reads and
    # session traffic: no alert.
    alerts = _alerts(
        tmp_path,
        FIXTURES / "suricata" / "surevego_eve_alert-flow-http-dns.json",
        ZEEK_TSV / "icsnpp_enip_enip.log",
        ZEEK_TSV / "icsnpp_s7comm_plus.log",
    )
    assert {(a["rule_id"], a["severity"]) for a in alerts} == {("OTSEC-SENSOR-ALERT", "medium")}
    assert sum(a["event_count"] for a in alerts) == 24
