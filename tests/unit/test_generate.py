"""Tests of `beam_pipelines.generate`: determinism, record validity, ground truth and the plant.

Every generated line goes through the real Decode, Validate and Normalize functions, so the
generator and the raw schemas are held to each other.
"""

from __future__ import annotations

import csv
import dataclasses
import ipaddress
import itertools
import json
import os
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines.generate import DEFECTS, SCENARIOS, GenerateReport, GeneratorConfig, generate
from schemas.errors import ValidationError
from schemas.event import NormalizedEvent, Operation
from schemas.records import RawLine, ValidatedRecord
from transforms import ics_protocols as ics
from transforms.decode import decode_line
from transforms.normalize import normalize_record
from transforms.sources import read_lines
from transforms.validate import validate_record

SENSOR_FILES = (
    "sensors/zeek/conn.log",
    "sensors/zeek/modbus.log",
    "sensors/zeek/modbus_detailed.log",
    "sensors/zeek/dnp3.log",
    "sensors/zeek/s7comm.log",
    "sensors/zeek/s7comm_plus.log",
    "sensors/zeek/enip.log",
    "sensors/zeek/cip.log",
    "sensors/zeek/bacnet.log",
    "sensors/suricata/eve.json",
    "sensors/platform/agent.jsonl",
)
ROLES = {
    "plc",
    "rtu",
    "safety_controller",
    "hmi",
    "engineering_workstation",
    "historian",
    "it_host",
    "network_device",
    "other",
}
ASSET_HEADER = [
    "address", "name", "role", "purdue_level", "zone", "criticality", "vendor", "model", "firmware",
]  # fmt: skip
# ATT&CK for ICS (v18, the release in shared/fixtures/stix) technique of each scenario.
TECHNIQUES = {
    "modbus_write_from_non_ews": "T0855",  # Unauthorized Command Message
    "modbus_mask_write": "T0836",  # Modify Parameter
    "modbus_restart_comm": "T0816",  # Device Restart/Shutdown
    "modbus_device_id_sweep": "T0888",  # Remote System Information Discovery
    "modbus_unit_scan": "T0846",  # Remote System Discovery
    "dnp3_cold_restart": "T0816",
    "dnp3_warm_restart": "T0816",
    "dnp3_stop_application": "T0881",  # Service Stop
    "dnp3_file_transfer": "T0843",  # Program Download
    "dnp3_disable_unsolicited": "T0804",  # Block Reporting Message
    "s7_plc_stop": "T0881",
    "s7_program_download": "T0843",
    "s7_program_upload": "T0845",  # Program Upload
    "s7plus_program_download": "T0843",
    "cip_stop": "T0881",
    "cip_reset": "T0816",
    "cip_firmware_update": "T0839",  # Module Firmware
    "bacnet_reinitialize": "T0816",
    "bacnet_dcc": "T0814",  # Denial of Service
    "cross_zone_ics": "T0886",  # Remote Services
    "unknown_asset_ics": "T0846",
    "internet_exposed_ics": "T0883",  # Internet Accessible Device
    "cti_c2_beacon": "T0869",  # Standard Application Layer Protocol
}
ZEEK_HEADER = ("#separator", "#set_separator", "#empty_field", "#unset_field", "#path", "#open")
CIP_FIELDS = [
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "is_orig", "source_h",
    "source_p", "destination_h", "destination_p", "cip_sequence_count", "direction",
    "cip_service_code", "cip_service", "cip_status_code", "cip_status", "cip_extended_status_code",
    "cip_extended_status", "class_id", "class_name", "instance_id", "attribute_id",
]  # fmt: skip
ICS_KINDS = {
    "zeek.modbus", "zeek.modbus_detailed", "zeek.dnp3", "zeek.s7comm", "zeek.s7comm_plus",
    "zeek.enip", "zeek.cip", "zeek.bacnet", "suricata.modbus", "suricata.dnp3",
}  # fmt: skip


@dataclasses.dataclass
class Run:
    """A generated directory with every line read, and its fate in the first three stages."""

    report: GenerateReport
    truth: list[dict[str, Any]]
    raw: dict[tuple[str, int], RawLine]
    validated: dict[tuple[str, int], ValidatedRecord]
    events: dict[tuple[str, int], NormalizedEvent]
    rejected: dict[tuple[str, int], ValidationError]
    unexpected: dict[tuple[str, int], BaseException]

    def rows(self, kind: str) -> list[dict[str, Any]]:
        return [row for row in self.truth if row["type"] == kind]

    def attack_lines(self) -> set[tuple[str, int]]:
        return {(f, n) for row in self.rows("attack") for f, n in row["lines"]}

    def injected(self) -> set[tuple[str, int]]:
        other = {(row["file"], row["line"]) for row in self.truth if row["type"] != "attack"}
        return self.attack_lines() | other


def load(report: GenerateReport) -> Run:
    run = Run(report, _truth(report), {}, {}, {}, {}, {})
    for rel in SENSOR_FILES:
        for line in read_lines(os.path.join(report.out_dir, rel)):
            assert line.source.line is not None
            key = (rel, line.source.line)
            run.raw[key] = line
            try:
                validated = validate_record(decode_line(line))
                run.validated[key] = validated
                run.events[key] = normalize_record(validated)
            except ValidationError as error:
                run.rejected[key] = error
            except Exception as error:  # reported by the test, with the line
                run.unexpected[key] = error
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("plant")
    return load(generate(GeneratorConfig(out_dir=str(out), events=20_000, seed=11)))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


def _truth(report: GenerateReport) -> list[dict[str, Any]]:
    with open(report.truth_path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(GeneratorConfig(out_dir=str(first), events=5_000, seed=5))
    generate(GeneratorConfig(out_dir=str(second), events=5_000, seed=5))
    generate(GeneratorConfig(out_dir=str(other), events=5_000, seed=6))
    a, b, c = _files(first), _files(second), _files(other)
    assert set(a) == {
        *SENSOR_FILES,
        "truth.jsonl",
        "assets.csv",
        "cti/feeds.yaml",
        "cti/feodotracker_ipblocklist.csv",
    }
    assert a == b
    assert a.keys() == c.keys()
    for rel in (*SENSOR_FILES, "truth.jsonl"):
        assert a[rel] != c[rel], rel
    assert a["assets.csv"] == c["assets.csv"]  # the plant does not depend on the seed


# ---- formats ----------------------------------------------------------------------------------


def test_zeek_logs_have_genuine_headers_and_trailers(run: Run) -> None:
    for rel in SENSOR_FILES[:9]:
        lines = Path(run.report.out_dir, rel).read_bytes().split(b"\n")
        text = [line.decode("utf-8", "replace") for line in lines[:8]]
        assert text[0] == "#separator \\x09"
        assert [t.split("\t", 1)[0] for t in text[1:6]] == list(ZEEK_HEADER[1:])
        assert text[1:4] == ["#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-"]
        assert text[4] == f"#path\t{Path(rel).stem}"
        assert re.fullmatch(r"#open\t2026-11-20-08-00-00", text[5])
        fields, types = text[6].split("\t")[1:], text[7].split("\t")[1:]
        assert text[6].startswith("#fields\t") and text[7].startswith("#types\t")
        assert len(fields) == len(types) and fields[:6] == CIP_FIELDS[:6]
        assert re.fullmatch(rb"#close\t2026-11-20-\d\d-\d\d-\d\d", lines[-2]), rel
        assert lines[-1] == b""
    cip = Path(run.report.out_dir, "sensors/zeek/cip.log").read_text("utf-8", "replace")
    assert cip.split("\n")[6].split("\t")[1:] == CIP_FIELDS


def test_zeek_values_look_like_zeek(run: Run) -> None:
    uids = set()
    for (rel, _), line in run.raw.items():
        if not rel.startswith("sensors/zeek/") or (rel, _) in run.rejected:
            continue
        ts, uid = line.payload.split(b"\t", 2)[:2]
        assert re.fullmatch(rb"17\d{8}\.\d{6}", ts), line.payload
        assert re.fullmatch(rb"C[0-9A-Za-z]{17}", uid), line.payload
        uids.add(uid)
    assert len(uids) > 500


def test_suricata_and_platform_records_use_their_time_formats(run: Run) -> None:
    eve_time = re.compile(r"2026-11-20T\d\d:\d\d:\d\d\.\d{6}\+0000")
    kinds: Counter[str] = Counter()
    for key, event in run.events.items():
        if key[0] == "sensors/suricata/eve.json":
            record = json.loads(run.raw[key].payload)
            assert eve_time.fullmatch(record["timestamp"])
            kinds[record["event_type"]] += 1
        elif key[0] == "sensors/platform/agent.jsonl":
            record = json.loads(run.raw[key].payload)
            assert record["schema"] == "robotlab.sensor/v1"
            assert re.fullmatch(r"2026-11-20T\d\d:\d\d:\d\d\.\d{6}Z", record["observed_at"])
            assert event.ics is not None and event.ics.protocol in ("modbus", "opcua")
    assert set(kinds) == {"flow", "modbus", "dnp3", "alert"}


# ---- validity and defects ---------------------------------------------------------------------


def test_every_line_passes_the_first_stages_unless_truth_marks_it_malformed(run: Run) -> None:
    malformed = {(row["file"], row["line"]): row["defect"] for row in run.rows("malformed")}
    assert not run.unexpected, list(run.unexpected.items())[:3]
    wrongly_rejected = {k: str(e) for k, e in run.rejected.items() if k not in malformed}
    assert not wrongly_rejected, list(wrongly_rejected.items())[:3]
    assert set(run.rejected) == set(malformed)
    assert set(malformed.values()) == set(DEFECTS)
    # Damage lands where it happens in real life: Zeek logs, EVE and the agent's stream.
    assert len({file for file, _ in malformed}) >= 7


@pytest.mark.parametrize(
    ("defect", "stage", "field"),
    [
        ("truncated_line", "decode", None),
        ("column_count", "decode", None),
        ("bad_port", "validate", "id.resp_p"),
        ("canonified_ts", "validate", "ts"),
        ("invalid_utf8", "decode", None),
        ("binary_garbage", "decode", None),
        ("bad_json", "decode", None),
        ("missing_field", "validate", "src_ip"),
        ("wrong_type", "validate", "src.port"),
        ("unknown_kind", "decode", None),
        ("out_of_range_function", "validate", "ics.function_code"),
    ],
)
def test_each_defect_fails_where_expected(run: Run, defect: str, stage: str, field: str) -> None:
    rows = [row for row in run.rows("malformed") if row["defect"] == defect]
    assert rows
    for row in rows:
        error = run.rejected[(row["file"], row["line"])]
        assert error.stage == stage, (defect, str(error))
        if field is not None:
            assert error.field == field, (defect, str(error))


# ---- counts -----------------------------------------------------------------------------------


def test_report_counts_match_the_files_and_the_truth(run: Run) -> None:
    report = run.report
    assert report.records == 20_000 == sum(report.files.values()) == len(run.raw)
    assert set(report.files) == set(SENSOR_FILES)
    per_file = Counter(rel for rel, _ in run.raw)
    assert dict(per_file) == {rel: n for rel, n in report.files.items() if n}
    assert report.attacks == len(run.rows("attack"))
    assert report.malformed == len(run.rows("malformed")) == 20
    assert report.duplicates == len(run.rows("duplicate")) == 40
    attack_records = len(run.attack_lines())
    assert attack_records == sum(len(row["lines"]) for row in run.rows("attack"))
    # Normal traffic dominates, and every file carries some of it.
    assert attack_records < 0.1 * report.records
    assert all(n > 200 for n in report.files.values()), report.files
    assert "20,000 sensor records" in report.describe()


def test_zero_events_writes_headers_only(tmp_path: Path) -> None:
    report = generate(GeneratorConfig(out_dir=str(tmp_path), events=0))
    assert report.records == report.attacks == report.malformed == report.duplicates == 0
    assert set(report.files.values()) == {0}
    assert Path(report.truth_path).read_bytes() == b""
    assert not list(read_lines(os.path.join(report.sensor_dir, "zeek", "modbus.log")))


def test_exact_record_count_with_extreme_rates(tmp_path: Path) -> None:
    config = GeneratorConfig(
        out_dir=str(tmp_path), events=3_001, attack_rate=1.0, malformed_rate=0.1,
        duplicate_rate=0.1,
    )  # fmt: skip
    report = generate(config)
    assert report.records == 3_001 == sum(report.files.values())
    assert (report.malformed, report.duplicates) == (300, 300)
    rows = _truth(report)
    attack_lines = sum(len(row["lines"]) for row in rows if row["type"] == "attack")
    # Attacks take what is left once every duplicate has an original to copy.
    assert 3_001 - 300 - 300 - 300 - 100 < attack_lines <= 3_001 - 300 - 300 - 300
    assert report.attacks > len(SCENARIOS)


def test_rates_that_do_not_fit_give_way_to_originals(tmp_path: Path) -> None:
    config = GeneratorConfig(
        out_dir=str(tmp_path), events=1_000, attack_rate=1.0, malformed_rate=0.5,
        duplicate_rate=1.0,
    )  # fmt: skip
    report = generate(config)
    assert report.records == 1_000
    assert report.malformed == 500 and report.duplicates == 250 and report.attacks == 0


rates = st.floats(min_value=0.0, max_value=1.0)


@settings(max_examples=15, deadline=None)
@given(
    events=st.integers(min_value=0, max_value=800),
    seed=st.integers(min_value=0, max_value=2**32),
    attack=rates,
    malformed=rates,
    duplicate=rates,
)
def test_any_configuration_writes_exactly_the_records_asked_for(
    events: int, seed: int, attack: float, malformed: float, duplicate: float
) -> None:
    with tempfile.TemporaryDirectory() as out:
        config = GeneratorConfig(
            out_dir=out, events=events, seed=seed, attack_rate=attack, malformed_rate=malformed,
            duplicate_rate=duplicate,
        )  # fmt: skip
        report = generate(config)
        counts = Counter(rel for rel in SENSOR_FILES for _ in read_lines(os.path.join(out, rel)))
        truth = Counter(row["type"] for row in _truth(report))
    assert report.records == events == sum(report.files.values()) == sum(counts.values())
    assert report.malformed == truth["malformed"] == round(events * malformed)
    assert report.duplicates == truth["duplicate"] <= (events - report.malformed) // 2
    assert report.attacks == truth["attack"]


# ---- ground truth -----------------------------------------------------------------------------


def test_duplicates_are_later_byte_copies_that_normalize_to_the_same_event(run: Run) -> None:
    attack = run.attack_lines()
    for row in run.rows("duplicate"):
        copy, original = (row["file"], row["line"]), (row["file"], row["of_line"])
        assert row["of_line"] < row["line"]
        assert run.raw[copy].payload == run.raw[original].payload
        assert run.events[copy].event_id == run.events[original].event_id
        assert original not in attack and original in run.events


def test_only_the_injected_duplicates_share_an_event_id(run: Run) -> None:
    copies = {(row["file"], row["line"]) for row in run.rows("duplicate")}
    ids = Counter(event.event_id for key, event in run.events.items() if key not in copies)
    assert ids.most_common(1)[0][1] == 1


def _function(validated: ValidatedRecord) -> tuple[str | None, str | None]:
    """The canonical function (and sub-function) of a record, with all the context it has."""
    r, kind = validated.record, validated.kind
    if kind == "zeek.modbus":
        return ics.modbus_function(r.func).name, None
    if kind == "zeek.modbus_detailed":
        sub = None
        if r.request_subfunction_code:
            sub = ics.modbus_diagnostic_subfunction(r.request_subfunction_code).name
        elif r.mei_type:
            sub = ics.modbus_mei_type(r.mei_type).name
        return ics.modbus_function(r.func).name, sub
    if kind == "zeek.dnp3":
        return ics.dnp3_function(r.fc_request).name, None
    if kind == "zeek.s7comm":
        return ics.s7comm_function(r.function_code, r.subfunction_code, r.rosctr_code).name, None
    if kind == "zeek.s7comm_plus":
        return ics.s7comm_plus_function(r.function_code, r.opcode).name, None
    if kind == "zeek.cip":
        return ics.cip_service(r.cip_service_code, r.class_id, response=r.direction).name, None
    if kind == "zeek.bacnet":
        return ics.bacnet_service(r.pdu_type, r.pdu_service).name, None
    return None, None


def test_attack_truth_points_at_the_attack_records(run: Run) -> None:
    attacks = run.rows("attack")
    assert attacks
    for row in attacks:
        primary = (row["file"], row["line"])
        assert [primary[0], primary[1]] in row["lines"]
        event = run.events[primary]
        assert (event.src.ip, event.dst.ip) == (row["src_ip"], row["dst_ip"]), row
        assert row["time"] == _rfc3339(event.time)
        technique = TECHNIQUES.get(row["scenario"]) or TECHNIQUES[row["accompanies"]]
        assert row["technique"] == technique
        if row["scenario"] == "suricata_scada_alert":
            assert event.detection is not None and event.detection.sensor_severity == 1
            assert event.severity_id == 4 and row["accompanies"] in TECHNIQUES
        elif row["scenario"] == "cti_c2_beacon":
            assert event.source_kind == "zeek.conn" and row["function"] is None
            assert ipaddress.ip_address(row["dst_ip"]).is_global
        else:
            function, sub = _function(run.validated[primary])
            assert function == row["function"], row
            assert sub == row.get("subfunction"), row
            assert event.ics is not None and event.ics.protocol == row["protocol"], row
        targets = set(row.get("targets", [row["dst_ip"]]))
        for file, line in row["lines"]:
            other = run.events[(file, line)]
            ends = {other.src.ip, other.dst.ip}
            assert row["src_ip"] in ends and ends & targets, (row["scenario"], file, line)


def test_every_scenario_is_injected(run: Run) -> None:
    seen = Counter(row["scenario"] for row in run.rows("attack"))
    assert set(seen) == {s.name for s in SCENARIOS} == {*TECHNIQUES, "suricata_scada_alert"}


def test_attacks_are_spread_over_the_run(run: Run) -> None:
    times = sorted(row["time"] for row in run.rows("attack"))
    first, last = run.report.first_time, run.report.last_time
    span = _seconds(last) - _seconds(first)
    assert _seconds(times[0]) - _seconds(first) < 0.25 * span
    assert _seconds(last) - _seconds(times[-1]) < 0.25 * span
    assert 8 * 60 < span < 20 * 60  # about an hour per 100,000 records


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_attack_specifics(run: Run) -> None:
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for row in run.rows("attack"):
        by_scenario.setdefault(row["scenario"], []).append(row)
    for row in by_scenario["modbus_unit_scan"]:
        scan = [run.events[(f, n)] for f, n in row["lines"] if f.endswith("/modbus.log")]
        assert len({event.ics.unit_id for event in scan if event.ics is not None}) >= 16
        stamps = [event.time for event in scan]
        assert (max(stamps) - min(stamps)).total_seconds() < 60
    for row in by_scenario["modbus_device_id_sweep"]:
        assert len(row["targets"]) >= 5
    for row in by_scenario["cip_firmware_update"]:
        assert run.validated[(row["file"], row["line"])].record.class_id == "0xa1"
    for row in by_scenario["internet_exposed_ics"]:
        assert ipaddress.ip_address(row["src_ip"]).is_global
    for row in by_scenario["cti_c2_beacon"]:
        assert (row["dst_ip"], row["dst_port"]) in {
            ("192.9.135.73", 1194), ("213.199.41.33", 13721),
            ("194.233.91.144", 5000), ("84.247.157.112", 13783),
        }  # fmt: skip
        files = {f for f, _ in row["lines"]}
        assert files == {"sensors/zeek/conn.log", "sensors/suricata/eve.json"}


def test_no_attack_rows_when_the_rate_is_zero(tmp_path: Path) -> None:
    report = generate(GeneratorConfig(out_dir=str(tmp_path), events=4_000, attack_rate=0.0))
    kinds = Counter(row["type"] for row in _truth(report))
    assert report.attacks == 0 and "attack" not in kinds
    assert kinds["malformed"] == 4 and kinds["duplicate"] == 8


def test_small_runs_get_attacks_only_within_their_budget(tmp_path: Path) -> None:
    report = generate(GeneratorConfig(out_dir=str(tmp_path), events=1_500, attack_rate=0.02))
    rows = _truth(report)
    lines = sum(len(row["lines"]) for row in rows if row["type"] == "attack")
    assert 0 < lines <= 30
    assert report.records == 1_500


# ---- the plant and normal traffic -------------------------------------------------------------


def _inventory(report: GenerateReport) -> dict[str, dict[str, str]]:
    with open(report.assets_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ASSET_HEADER
        rows = list(reader)
    inventory = {row["address"]: row for row in rows}
    assert len(inventory) == len(rows), "addresses are unique"
    for row in rows:
        ipaddress.ip_address(row["address"])
        assert row["role"] in ROLES
        assert 0 <= int(row["purdue_level"]) <= 5
        assert 1 <= int(row["criticality"]) <= 5
        assert row["name"] and row["zone"]
    return inventory


def _normal_events(run: Run) -> list[NormalizedEvent]:
    injected = run.injected()
    return [event for key, event in run.events.items() if key not in injected]


def test_inventory_covers_normal_traffic_but_not_the_intruders(run: Run) -> None:
    inventory = _inventory(run.report)
    assert 50 <= len(inventory) <= 70
    roles = Counter(row["role"] for row in inventory.values())
    assert set(roles) == ROLES
    zones = {row["zone"] for row in inventory.values()}
    assert {"cell-a", "cell-b", "substation", "control", "operations", "dmz", "enterprise"} <= zones
    seen = {ip for event in _normal_events(run) for ip in (event.src.ip, event.dst.ip)}
    assert seen - set(inventory) == set()
    for row in run.rows("attack"):
        if row["scenario"] in ("unknown_asset_ics", "internet_exposed_ics"):
            assert row["src_ip"] not in inventory
        if row["scenario"] == "cti_c2_beacon":
            assert row["dst_ip"] not in inventory


def test_normal_traffic_gives_detection_rules_nothing_to_fire_on(run: Run) -> None:
    inventory = _inventory(run.report)
    normal = _normal_events(run)
    assert len(normal) > 18_000
    protocols = Counter(e.ics.protocol for e in normal if e.ics is not None)
    assert set(protocols) == {"modbus", "dnp3", "s7comm", "s7comm_plus", "enip", "cip", "bacnet",
                              "opcua"}  # fmt: skip
    for event in normal:
        if event.detection is not None:
            assert event.detection.sensor_severity == 3, event.message
        if event.ics is None:
            continue
        client = inventory[event.src.ip if event.ics.is_request is not False else event.dst.ip]
        # No IT host speaks an industrial protocol; everything stays at Purdue level 3 or below.
        assert client["role"] != "it_host", event.message
        assert int(inventory[event.src.ip]["purdue_level"]) <= 3
        assert int(inventory[event.dst.ip]["purdue_level"]) <= 3
        assert event.ics.operation not in (
            Operation.PROGRAM, Operation.RESTART_STOP, Operation.FILE_TRANSFER, Operation.CONTROL
        ), event.message  # fmt: skip
        if event.ics.operation == Operation.WRITE and event.ics.is_request is not False:
            assert client["role"] == "engineering_workstation", event.message
            assert inventory[event.dst.ip]["role"] == "plc", event.message
            if event.ics.protocol == "modbus":
                assert inventory[event.dst.ip]["zone"].startswith("cell-"), event.message


def test_records_are_ordered_by_time_within_each_file(run: Run) -> None:
    injected = {(row["file"], row["line"]) for row in run.truth if row["type"] != "attack"}
    for rel in SENSOR_FILES:
        keys = sorted(key for key in run.events if key[0] == rel and key not in injected)
        times = [run.events[key].time for key in keys]
        if rel == "sensors/zeek/conn.log":
            # Zeek writes conn.log when a connection ends, stamped with its start.
            late = sum(1 for a, b in itertools.pairwise(times) if b < a)
            assert late < 0.5 * len(times)
        else:
            assert times == sorted(times), rel


def test_scaled_plant_grows_the_inventory_and_its_traffic(tmp_path: Path) -> None:
    report = generate(GeneratorConfig(out_dir=str(tmp_path), events=6_000, assets=500, seed=2))
    inventory = _inventory(report)
    assert 450 <= len(inventory) <= 600
    run = load(report)
    assert not run.unexpected
    seen = {ip for event in _normal_events(run) for ip in (event.src.ip, event.dst.ip)}
    assert seen <= set(inventory)
    assert any(ip.startswith("10.11.") for ip in seen)  # the added cells carry traffic


# ---- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"out_dir": ""}, "out_dir"),
        ({"events": -1}, "events"),
        ({"events": 1.5}, "events"),
        ({"seed": "1"}, "seed"),
        ({"attack_rate": -0.1}, "attack_rate"),
        ({"attack_rate": float("nan")}, "attack_rate"),
        ({"malformed_rate": 1.01}, "malformed_rate"),
        ({"duplicate_rate": 2}, "duplicate_rate"),
        ({"duplicate_rate": True}, "duplicate_rate"),
        ({"assets": -5}, "assets"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(changes: dict[str, Any], field: str) -> None:
    settings: dict[str, Any] = {"out_dir": "/tmp/unused"} | changes
    with pytest.raises(ValueError, match=field):
        GeneratorConfig(**settings)


def test_config_is_frozen() -> None:
    config = GeneratorConfig(out_dir="/tmp/unused")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.events = 5  # type: ignore[misc]
