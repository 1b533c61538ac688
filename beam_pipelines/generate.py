"""Seeded generator of realistic OT sensor files and their ground truth (``otsec generate``).

A plant of PLCs, RTUs, a safety controller, HMIs, engineering workstations, a historian,
building controllers and IT hosts across the Purdue levels talks in the native formats of the
sensors otsec reads: Zeek and ICSNPP TSV logs, Suricata EVE JSON and the platform agent's JSON
envelopes. Attacks mapped to ATT&CK for ICS, malformed records and redelivered duplicates are
injected at known places and listed in ``truth.jsonl``, so that detection recall, dead letters
and deduplication can be measured. The same configuration always gives byte-identical files;
records stream to disk, so memory stays flat at any size.

Field layouts follow what the tools write: Zeek's base scripts (conn, modbus with tid/unit/
pdu_type, dnp3), cisagov ICSNPP (modbus_detailed, s7comm and s7comm_plus as of 2025, enip and
cip as of 2024 before ``packet_correlation_id``, bacnet) and Suricata's EVE output
(``rust/src/modbus/log.rs``, ``src/output-json-dnp3.c``, ``src/output-json-flow.c``).
Standard library plus msgspec; no Beam.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import functools
import hashlib
import heapq
import itertools
import math
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO

import msgspec

__all__ = [
    "DEFECTS",
    "SCENARIOS",
    "GenerateReport",
    "GeneratorConfig",
    "generate",
]

# --------------------------------------------------------------------------------------------
# Configuration and report
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """What to generate.

    Args:
        out_dir: Directory for ``sensors/``, ``assets.csv`` and ``truth.jsonl``.
        events: Data lines to write, all sensor files together, malformed and duplicate
            lines included.
        seed: The same seed (and the same other settings) gives byte-identical output.
        attack_rate: Fraction of the records that belong to injected attacks. With
            ``events >= 2000`` and a positive rate, every scenario is injected at least once.
        malformed_rate: Fraction of records that are malformed (each fails Decode or Validate).
        duplicate_rate: Fraction of records that are byte copies of an earlier line.
        assets: 0 for the default plant (about 60 assets); N > 0 scales the plant up to about
            N assets (a smaller N keeps the default plant).
    """

    out_dir: str
    events: int = 10_000
    seed: int = 1
    attack_rate: float = 0.002
    malformed_rate: float = 0.001
    duplicate_rate: float = 0.002
    assets: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.out_dir, str) or not self.out_dir:
            raise ValueError("out_dir must be a non-empty path")
        for name in ("events", "seed", "assets"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.events < 0:
            raise ValueError(f"events must be >= 0, got {self.events}")
        if self.assets < 0:
            raise ValueError(f"assets must be >= 0, got {self.assets}")
        for name in ("attack_rate", "malformed_rate", "duplicate_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"{name} must be between 0 and 1, got {value}")


@dataclasses.dataclass(frozen=True)
class GenerateReport:
    """What `generate` wrote: paths, counts and the data lines of every sensor file."""

    out_dir: str
    sensor_dir: str
    truth_path: str
    assets_path: str
    feeds_path: str
    records: int
    attacks: int
    malformed: int
    duplicates: int
    files: dict[str, int]
    assets: int = 0
    first_time: str = ""
    last_time: str = ""

    def describe(self) -> str:
        """A short human summary of the run."""
        busiest = sorted(self.files.items(), key=lambda item: -item[1])[:4]
        files = ", ".join(f"{os.path.basename(path)} {count:,}" for path, count in busiest)
        return (
            f"wrote {self.records:,} sensor records in {len(self.files)} files under "
            f"{self.sensor_dir}\n"
            f"  busiest: {files}\n"
            f"  injected: {self.attacks:,} attacks, {self.malformed:,} malformed, "
            f"{self.duplicates:,} duplicates (ground truth: {self.truth_path})\n"
            f"  plant: {self.assets:,} assets ({self.assets_path}); "
            f"time {self.first_time} .. {self.last_time}\n"
            f"  threat intelligence: {self.feeds_path}"
        )


# --------------------------------------------------------------------------------------------
# Output files and their Zeek headers
# --------------------------------------------------------------------------------------------

(
    _CONN,
    _MODBUS,
    _MODBUS_DETAILED,
    _DNP3,
    _S7COMM,
    _S7PLUS,
    _ENIP,
    _CIP,
    _BACNET,
    _EVE,
    _AGENT,
) = range(11)

_FILES = (
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

_ID = (
    "ts time",
    "uid string",
    "id.orig_h addr",
    "id.orig_p port",
    "id.resp_h addr",
    "id.resp_p port",
)
_DIR = (
    "is_orig bool",
    "source_h addr",
    "source_p port",
    "destination_h addr",
    "destination_p port",
)
_ZEEK_LOGS: dict[int, tuple[str, tuple[str, ...]]] = {
    _CONN: (
        "conn",
        (
            *_ID,
            "proto enum",
            "service string",
            "duration interval",
            "orig_bytes count",
            "resp_bytes count",
            "conn_state string",
            "local_orig bool",
            "local_resp bool",
            "missed_bytes count",
            "history string",
            "orig_pkts count",
            "orig_ip_bytes count",
            "resp_pkts count",
            "resp_ip_bytes count",
            "tunnel_parents set[string]",
        ),
    ),
    _MODBUS: (
        "modbus",
        (*_ID, "tid count", "unit count", "func string", "pdu_type string", "exception string"),
    ),
    _MODBUS_DETAILED: (
        "modbus_detailed",
        (
            *_ID,
            "tid count",
            "unit count",
            "func string",
            "address count",
            "quantity count",
            "request_values vector[count]",
            "response_values vector[count]",
            "modbus_detailed_link_id string",
            "matched bool",
            "request_subfunction_code string",
            "response_subfunction_code string",
            "request_data string",
            "response_data string",
            "exception_code string",
            "mei_type string",
        ),
    ),
    _DNP3: ("dnp3", (*_ID, "fc_request string", "fc_reply string", "iin count")),
    _S7COMM: (
        "s7comm",
        (
            *_ID,
            *_DIR,
            "rosctr_code count",
            "rosctr_name string",
            "pdu_reference count",
            "function_code string",
            "function_name string",
            "subfunction_code string",
            "subfunction_name string",
            "error_class string",
            "error_code string",
        ),
    ),
    _S7PLUS: (
        "s7comm_plus",
        (
            *_ID,
            *_DIR,
            "version count",
            "opcode string",
            "opcode_name string",
            "function_code string",
            "function_name string",
        ),
    ),
    _ENIP: (
        "enip",
        (
            *_ID,
            *_DIR,
            "enip_command_code string",
            "enip_command string",
            "length count",
            "session_handle string",
            "enip_status string",
            "sender_context string",
            "options string",
        ),
    ),
    _CIP: (
        "cip",
        (
            *_ID,
            *_DIR,
            "cip_sequence_count count",
            "direction string",
            "cip_service_code string",
            "cip_service string",
            "cip_status_code string",
            "cip_status string",
            "cip_extended_status_code string",
            "cip_extended_status string",
            "class_id string",
            "class_name string",
            "instance_id string",
            "attribute_id string",
        ),
    ),
    _BACNET: (
        "bacnet",
        (
            *_ID,
            *_DIR,
            "bvlc_function string",
            "pdu_type string",
            "pdu_service string",
            "invoke_id count",
            "result_code string",
        ),
    ),
}
_ZEEK_HEADER_LINES = 8  # separator, set_separator, empty, unset, path, open, fields, types


def _zeek_date(us: int) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(us // 1_000_000))


def _zeek_header(path: str, columns: Sequence[str], opened_us: int) -> bytes:
    names = "\t".join(column.split(" ", 1)[0] for column in columns)
    types = "\t".join(column.split(" ", 1)[1] for column in columns)
    return (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
        f"#path\t{path}\n#open\t{_zeek_date(opened_us)}\n#fields\t{names}\n#types\t{types}\n"
    ).encode()


# --------------------------------------------------------------------------------------------
# Time, identifiers and formatting
# --------------------------------------------------------------------------------------------

_START_US = int(datetime(2026, 11, 20, 8, 0, tzinfo=UTC).timestamp()) * 1_000_000
# About one hour of plant traffic per 100,000 records.
_US_PER_RECORD = 36_000
_SECOND = 1_000_000
_MS = 1_000

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PLATFORM_SCHEMA = "robotlab.sensor/v1"
_SURICATA_HOST = "suricata-ot-01"
_SURICATA_IFACE = "ens1f0"
_SITE = {"site": "riverside-plant"}
_encode = msgspec.json.Encoder().encode


def _zts(us: int) -> str:
    """Zeek's epoch time with six decimals."""
    return f"{us // _SECOND}.{us % _SECOND:06d}"


@functools.lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _eve_ts(us: int) -> str:
    """Suricata's timestamp form: ``2026-11-20T08:15:02.123456+0000``."""
    return f"{_iso_second(us // _SECOND)}.{us % _SECOND:06d}+0000"


def _rfc3339(us: int) -> str:
    return f"{_iso_second(us // _SECOND)}.{us % _SECOND:06d}Z"


def _between(r: random.Random, low: int, high: int) -> int:
    """A random int in [low, high): ``randrange`` is the generator's hottest call otherwise."""
    return low + int(r.random() * (high - low))


def _uid(r: random.Random) -> str:
    """A Zeek connection uid: ``C`` and 17 base62 characters."""
    n = r.getrandbits(102)
    chars = ["C"]
    for _ in range(17):
        n, digit = divmod(n, 62)
        chars.append(_B62[digit])
    return "".join(chars)


def _message_id(r: random.Random) -> str:
    """A UUID4-shaped id from the run's random stream (uuid4() itself is not seedable)."""
    h = f"{r.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _community_id(src: str, sport: int, dst: str, dport: int, proto: int) -> str:
    """Community ID v1 (seed 0), as Suricata writes it, so flows correlate across sensors."""
    a, b = socket.inet_aton(src), socket.inet_aton(dst)
    if (a, sport) > (b, dport):
        a, b, sport, dport = b, a, dport, sport
    digest = hashlib.sha1(
        b"\x00\x00"
        + a
        + b
        + bytes((proto, 0))
        + sport.to_bytes(2, "big")
        + dport.to_bytes(2, "big")
    ).digest()
    return "1:" + base64.b64encode(digest).decode()


def _is_local(address: str) -> bool:
    return address.startswith("10.")


_ESCAPED = tuple(f"\\x{b:02x}" for b in range(256))


def _hex_bytes(r: random.Random, count: int) -> str:
    """Random bytes as Suricata's JSON builder escapes them."""
    return "".join(map(_ESCAPED.__getitem__, r.getrandbits(8 * count).to_bytes(count, "big")))


# --------------------------------------------------------------------------------------------
# The plant
# --------------------------------------------------------------------------------------------

_ASSET_COLUMNS = (
    "address",
    "name",
    "role",
    "purdue_level",
    "zone",
    "criticality",
    "vendor",
    "model",
    "firmware",
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Asset:
    address: str
    name: str
    role: str
    purdue_level: int
    zone: str
    criticality: int
    vendor: str
    model: str
    firmware: str
    serves: tuple[str, ...] = ()  # industrial protocols it answers as a server
    unit: int = 1  # Modbus unit id, or DNP3 outstation link address


# Vendors, spelled once. The plant table below keeps one asset per line on purpose.
_SE, _SIEMENS, _RA = "Schneider Electric", "Siemens", "Rockwell Automation"
_SEL, _JCI, _HON = "Schweitzer Engineering Laboratories", "Johnson Controls", "Honeywell"
_MSFT, _AVEVA = "Microsoft", "AVEVA"
_MB, _S7, _S7P, _EIP, _DNP, _BAC, _UA = (
    ("modbus",),
    ("s7",),
    ("s7", "s7plus"),
    ("enip",),
    ("dnp3",),
    ("bacnet",),
    ("opcua",),
)
_WS = "Latitude 7440 / Windows 11 Enterprise"
# zone, address prefix, then rows of:
# (octet, name, role, purdue level, criticality, vendor, model, firmware, serves, unit/address)
_Row = tuple[int, str, str, int, int, str, str, str, tuple[str, ...], int]
# fmt: off
_BASE_ZONES: tuple[tuple[str, str, tuple[_Row, ...]], ...] = (
    ("cell-a", "10.10.1", (
        (10, "plc-a1-m580", "plc", 1, 5, _SE, "Modicon M580 BMEP584040", "SV3.20", _MB, 255),
        (11, "plc-a2-m580", "plc", 1, 5, _SE, "Modicon M580 BMEP582040", "SV3.10", _MB, 255),
        (12, "plc-a3-m340", "plc", 1, 4, _SE, "Modicon M340 BMXP342020", "SV3.40", _MB, 1),
        (20, "plc-a4-s71500", "plc", 1, 5, _SIEMENS, "S7-1500 CPU 1516-3 PN/DP", "V3.1.2", _S7P, 1),
        (21, "plc-a5-s71500", "plc", 1, 5, _SIEMENS, "S7-1500 CPU 1515-2 PN", "V2.9.7", _S7P, 1),
        (22, "plc-a6-s7300", "plc", 1, 4, _SIEMENS, "S7-300 CPU 315-2 PN/DP", "V3.2.17", _S7, 1),
        (30, "sis-a1-tricon", "safety_controller", 1, 5, _SE, "Triconex Tricon CX 3009 / TCM 4351B",
         "11.6", _MB, 1),
        (40, "io-a1-et200sp", "other", 0, 3, _SIEMENS, "ET 200SP IM 155-6 PN HF", "V6.0", (), 1),
        (41, "vfd-a1-g120", "other", 0, 3, _SIEMENS, "SINAMICS G120 CU250S-2 PN", "V4.7 SP13",
         (), 1),
    )),
    ("cell-b", "10.10.2", (
        (10, "plc-b1-clx", "plc", 1, 5, _RA, "ControlLogix 1756-L83E", "33.011", _EIP, 1),
        (11, "plc-b2-clx", "plc", 1, 5, _RA, "ControlLogix 1756-L83E", "32.012", _EIP, 1),
        (12, "plc-b3-cpx", "plc", 1, 4, _RA, "CompactLogix 5380 5069-L330ER", "33.011", _EIP, 1),
        (20, "plc-b4-m580", "plc", 1, 4, _SE, "Modicon M580 BMEP584040", "SV3.20", _MB, 255),
        (21, "plc-b5-m580", "plc", 1, 4, _SE, "Modicon M580 BMEP581020", "SV3.10", _MB, 255),
        (30, "sis-b1-guardlogix", "safety_controller", 1, 5, _RA, "GuardLogix 5580 1756-L83ES",
         "33.011", _EIP, 1),
        (40, "vfd-b1-pf755", "other", 0, 3, _RA, "PowerFlex 755 20G", "14.001", (), 1),
        (41, "io-b1-point", "other", 0, 3, _RA, "POINT I/O 1734-AENTR", "7.011", (), 1),
    )),
    ("substation", "10.10.3", (
        (10, "rtu-s1-rtac", "rtu", 1, 4, _SEL, "SEL-3530 RTAC", "R151-V2", _DNP, 10),
        (11, "rtu-s2-rtac", "rtu", 1, 4, _SEL, "SEL-3530 RTAC", "R151-V2", _DNP, 11),
        (12, "rtu-s3-rtac", "rtu", 1, 4, _SEL, "SEL-3505 RTAC", "R150-V4", _DNP, 12),
        (13, "rtu-s4-d20", "rtu", 1, 4, "GE Vernova", "D20MX", "2.60", _DNP, 13),
        (20, "ied-s1-sel751", "other", 0, 4, _SEL, "SEL-751 Feeder Protection Relay", "R402",
         (), 1),
    )),
    ("building", "10.40.1", (
        (5, "bms-ads-01", "hmi", 2, 2, _JCI, "Metasys ADX Server", "12.0", (), 1),
        (10, "bac-nae-01", "plc", 1, 2, _JCI, "Metasys NAE5510", "12.0.1", _BAC, 1),
        (11, "bac-nae-02", "plc", 1, 2, _JCI, "Metasys NAE5510", "12.0.1", _BAC, 2),
        (12, "bac-fec-03", "plc", 1, 2, _JCI, "Metasys FEC2621", "10.1", _BAC, 3),
        (13, "bac-jace-04", "plc", 1, 2, _HON, "WEBs-N4 JACE 8000", "4.12", _BAC, 4),
        (14, "bac-spyder-05", "plc", 1, 2, _HON, "Spyder PUL6438S", "3.2", _BAC, 5),
        (15, "bac-ciper-06", "plc", 1, 2, _HON, "CIPer Model 30", "1.6", _BAC, 6),
        # Who-Is goes to the subnet broadcast; listed so every address seen is in the inventory.
        (255, "bacnet-broadcast-building", "other", 1, 1, "", "BACnet/IP broadcast", "", (), 1),
    )),
    ("control", "10.20.0", (
        (1, "fw-control-01", "network_device", 2, 4, "Fortinet", "FortiGate 100F", "7.2.8", (), 1),
        (10, "hmi-01-wincc", "hmi", 2, 3, _SIEMENS, "IPC677E / WinCC Unified V19", "V19 Upd2",
         (), 1),
        (11, "hmi-02-intouch", "hmi", 2, 3, _AVEVA, "InTouch HMI 2023 R2 / OptiPlex XE4", "2023 R2",
         (), 1),
        (12, "hmi-03-ftview", "hmi", 2, 3, _RA, "FactoryTalk View SE 14 Server", "14.00", (), 1),
        (13, "hmi-04-ftview", "hmi", 2, 3, _RA, "FactoryTalk View SE 14 Client", "14.00", (), 1),
        (20, "ews-01-tia", "engineering_workstation", 2, 4, _SIEMENS,
         "Field PG M6 / TIA Portal V19", "V19 Upd2", (), 1),
        (21, "ews-02-studio5000", "engineering_workstation", 2, 4, _RA,
         "Precision 3581 / Studio 5000 V33", "33.00", (), 1),
        (30, "scada-01-master", "hmi", 2, 4, _AVEVA, "System Platform 2023 R2 (DNP3 master)",
         "2023 R2", (), 1),
    )),
    ("operations", "10.30.0", (
        (10, "hist-01-pi", "historian", 3, 3, _AVEVA, "PI Server 2023", "2023 SP1", (), 1),
        (11, "opcua-01-kepware", "other", 3, 3, "PTC", "Kepware KEPServerEX 6.15", "6.15.154",
         _UA, 1),
    )),
    ("dmz", "10.35.0", (
        (10, "hist-dmz-pi", "historian", 3, 2, _AVEVA, "PI Server 2023 (DMZ replica)", "2023 SP1",
         (), 1),
        (11, "wsus-dmz", "it_host", 3, 2, _MSFT, "Windows Server 2022 WSUS", "21H2", (), 1),
        (12, "jump-dmz", "it_host", 3, 3, _MSFT, "Windows Server 2022 RD Gateway", "21H2", (), 1),
    )),
    ("enterprise", "10.50.1", (
        (10, "dc-01", "it_host", 4, 3, _MSFT, "Windows Server 2022 AD DS", "21H2", (), 1),
        (11, "fs-01", "it_host", 4, 2, _MSFT, "Windows Server 2022 File Server", "21H2", (), 1),
        (12, "intranet-01", "it_host", 4, 1, _MSFT, "Windows Server 2022 IIS", "21H2", (), 1),
    )),
    ("enterprise", "10.50.2", tuple(
        (20 + i, f"ws-{i + 1:03d}", "it_host", 4, 1, "Dell", _WS, "23H2", (), 1) for i in range(10)
    )),
    ("enterprise", "10.50.3", (
        (10, "erp-01", "it_host", 5, 2, "SAP", "S/4HANA 2023 application server", "2023 FPS02",
         (), 1),
        (11, "mail-01", "it_host", 5, 1, _MSFT, "Exchange Server 2019 CU14", "CU14", (), 1),
    )),
)

# Models for the extra cells of a scaled-up plant, with the protocols each answers.
_EXTRA_PLC_MODELS = (
    (_SE, "Modicon M580 BMEP584040", "SV3.20", _MB, 255, "m580"),
    (_SIEMENS, "S7-1500 CPU 1516-3 PN/DP", "V3.1.2", _S7P, 1, "s71500"),
    (_RA, "ControlLogix 1756-L83E", "33.011", _EIP, 1, "clx"),
    (_SE, "Modicon M340 BMXP342020", "SV3.40", _MB, 1, "m340"),
    (_SIEMENS, "S7-300 CPU 315-2 PN/DP", "V3.2.17", _S7, 1, "s7300"),
)
# fmt: on
_EXTRA_GROUP_SIZE = 40  # 10 PLCs, 2 HMIs, 1 EWS, 2 BACnet controllers + broadcast, 24 IT hosts


@dataclasses.dataclass(frozen=True)
class _Plant:
    """The assets and who talks to whom in normal operation."""

    assets: tuple[_Asset, ...]
    by_address: dict[str, _Asset]
    hmis: tuple[_Asset, ...]
    it_clients: tuple[_Asset, ...]
    modbus_reads: tuple[tuple[_Asset, _Asset], ...]
    modbus_writes: tuple[tuple[_Asset, _Asset], ...]
    s7_reads: tuple[tuple[_Asset, _Asset], ...]
    s7plus_sessions: tuple[tuple[_Asset, _Asset], ...]
    enip_reads: tuple[tuple[_Asset, _Asset], ...]
    dnp3_polls: tuple[tuple[_Asset, _Asset], ...]
    bacnet_polls: tuple[tuple[_Asset, _Asset, str], ...]  # (BMS server, controller, broadcast)
    opcua_sessions: tuple[tuple[_Asset, _Asset], ...]
    it_flows: tuple[tuple[_Asset, _Asset, int, str, str], ...]  # client, server, port, proto, svc
    modbus_plcs: tuple[_Asset, ...]  # controllers, not safety systems
    s7_plcs: tuple[_Asset, ...]
    s7plus_plcs: tuple[_Asset, ...]
    enip_plcs: tuple[_Asset, ...]
    rtus: tuple[_Asset, ...]
    bacnet_controllers: tuple[_Asset, ...]
    exposed: tuple[_Asset, ...]  # PLCs reachable through a careless NAT rule (scenario target)


def _base_assets() -> list[_Asset]:
    return [
        _Asset(f"{prefix}.{octet}", name, role, level, zone, crit, vendor, model, fw, serves, unit)
        for zone, prefix, rows in _BASE_ZONES
        for octet, name, role, level, crit, vendor, model, fw, serves, unit in rows
    ]


def _extra_group(g: int) -> list[_Asset]:
    """One more production cell with its HMIs, EWS, building controllers and office hosts."""
    cell, control, building = f"cell-{g + 2:03d}", f"control-{g:03d}", f"building-{g:03d}"
    models = [_EXTRA_PLC_MODELS[(g + i) % len(_EXTRA_PLC_MODELS)] for i in range(10)]
    # fmt: off
    return [
        *(_Asset(f"10.11.{g}.{10 + i}", f"plc-{g:03d}-{i + 1:02d}-{m[5]}", "plc", 1, cell, 4,
                 *m[:5]) for i, m in enumerate(models)),
        *(_Asset(f"10.21.{g}.{10 + i}", f"hmi-{g:03d}-{i + 1:02d}", "hmi", 2, control, 3, _AVEVA,
                 "InTouch HMI 2023 R2", "2023 R2") for i in range(2)),
        _Asset(f"10.21.{g}.20", f"ews-{g:03d}-01", "engineering_workstation", 2, control, 4,
               _SIEMENS, "Field PG M6 / TIA Portal V19", "V19 Upd2"),
        *(_Asset(f"10.41.{g}.{10 + i}", f"bac-{g:03d}-{i + 1:02d}", "plc", 1, building, 2, _JCI,
                 "Metasys FEC2621", "10.1", _BAC, 10 + i) for i in range(2)),
        _Asset(f"10.41.{g}.255", f"bacnet-broadcast-{g:03d}", "other", 1, building, 1, "",
               "BACnet/IP broadcast", ""),
        *(_Asset(f"10.51.{g}.{10 + i}", f"ws-{g:03d}-{i + 1:02d}", "it_host", 4, "enterprise", 1,
                 "Dell", _WS, "23H2") for i in range(24)),
    ]
    # fmt: on


def _named(assets: Sequence[_Asset]) -> dict[str, _Asset]:
    return {a.name: a for a in assets}


def _build_plant(size: int) -> _Plant:
    """The default plant, grown by whole cells until it has about ``size`` assets."""
    assets = _base_assets()
    extra_groups = max(0, math.ceil((size - len(assets)) / _EXTRA_GROUP_SIZE)) if size else 0
    groups = [_extra_group(g) for g in range(1, extra_groups + 1)]
    for group in groups:
        assets.extend(group)
    n = _named(assets)
    cell_a = [a for a in assets if a.zone == "cell-a"]
    cell_b = [a for a in assets if a.zone == "cell-b"]

    def serving(pool: Sequence[_Asset], protocol: str, *roles: str) -> list[_Asset]:
        return [a for a in pool if protocol in a.serves and (not roles or a.role in roles)]

    hmi1, hmi2, hmi3, hmi4 = (
        n["hmi-01-wincc"],
        n["hmi-02-intouch"],
        n["hmi-03-ftview"],
        n["hmi-04-ftview"],
    )
    ews1, ews2 = n["ews-01-tia"], n["ews-02-studio5000"]
    historian, opcua, bms = n["hist-01-pi"], n["opcua-01-kepware"], n["bms-ads-01"]
    scada = n["scada-01-master"]

    modbus_reads = [(h, p) for h in (hmi1, hmi2) for p in serving(cell_a, "modbus")]
    modbus_reads += [(h, p) for h in (hmi3, hmi4) for p in serving(cell_b, "modbus")]
    modbus_writes = [(ews1, p) for p in serving(cell_a, "modbus", "plc")]
    modbus_writes += [(ews2, p) for p in serving(cell_b, "modbus", "plc")]
    s7_reads = [(c, p) for c in (hmi1, ews1) for p in serving(cell_a, "s7")]
    s7plus = [(ews1, p) for p in serving(cell_a, "s7plus")]
    enip_reads = [(c, p) for c in (hmi3, hmi4, ews2) for p in serving(cell_b, "enip")]
    hmis = [
        a for a in assets if a.role == "hmi" and a.name not in ("bms-ads-01", "scada-01-master")
    ]
    for group in groups:
        gn = [a for a in group if a.role == "hmi"]
        ews = next(a for a in group if a.role == "engineering_workstation")
        plcs = [a for a in group if a.role == "plc" and a.zone.startswith("cell-")]
        modbus_reads += [(h, p) for h in gn for p in plcs if "modbus" in p.serves]
        modbus_writes += [(ews, p) for p in plcs if "modbus" in p.serves]
        s7_reads += [(c, p) for c in (*gn, ews) for p in plcs if "s7" in p.serves]
        s7plus += [(ews, p) for p in plcs if "s7plus" in p.serves]
        enip_reads += [(c, p) for c in (*gn, ews) for p in plcs if "enip" in p.serves]
    # The historian polls every Modbus device for trends (it sits at level 3 by design).
    modbus_reads += [(historian, p) for p in assets if "modbus" in p.serves]
    dnp3_polls = [(scada, rtu) for rtu in assets if "dnp3" in rtu.serves]
    bacnet_polls = [
        (bms, c, c.address.rsplit(".", 1)[0] + ".255") for c in assets if "bacnet" in c.serves
    ]
    opcua_sessions = [(c, opcua) for c in (hmi1, hmi2, hmi3, historian)]

    it_clients = [a for a in assets if a.role == "it_host" and a.name.startswith("ws-")]
    dc, fs, web, erp, mail = n["dc-01"], n["fs-01"], n["intranet-01"], n["erp-01"], n["mail-01"]
    pi_dmz, wsus = n["hist-dmz-pi"], n["wsus-dmz"]
    it_flows: list[tuple[_Asset, _Asset, int, str, str]] = []
    for ws in it_clients:
        it_flows += [
            (ws, dc, 53, "udp", "dns"),
            (ws, dc, 88, "tcp", "krb_tcp"),
            (ws, dc, 389, "tcp", "ldap"),
            (ws, fs, 445, "tcp", "smb"),
            (ws, web, 443, "tcp", "ssl"),
            (ws, erp, 443, "tcp", "ssl"),
            (ws, mail, 443, "tcp", "ssl"),
            (ws, pi_dmz, 443, "tcp", "ssl"),
        ]
    it_flows.append((historian, pi_dmz, 5450, "tcp", "-"))  # PI-to-PI replication
    for host in (hmi1, hmi2, hmi3, hmi4, ews1, ews2, historian, opcua, bms, scada):
        it_flows.append((host, wsus, 8530, "tcp", "http"))  # patches come through the DMZ

    return _Plant(
        assets=tuple(assets),
        by_address={a.address: a for a in assets},
        hmis=tuple(hmis),
        it_clients=tuple(it_clients),
        modbus_reads=tuple(modbus_reads),
        modbus_writes=tuple(modbus_writes),
        s7_reads=tuple(s7_reads),
        s7plus_sessions=tuple(s7plus),
        enip_reads=tuple(enip_reads),
        dnp3_polls=tuple(dnp3_polls),
        bacnet_polls=tuple(bacnet_polls),
        opcua_sessions=tuple(opcua_sessions),
        it_flows=tuple(it_flows),
        modbus_plcs=tuple(a for a in assets if "modbus" in a.serves and a.role == "plc"),
        s7_plcs=tuple(a for a in assets if "s7" in a.serves),
        s7plus_plcs=tuple(a for a in assets if "s7plus" in a.serves),
        enip_plcs=tuple(a for a in assets if "enip" in a.serves and a.role == "plc"),
        rtus=tuple(a for a in assets if "dnp3" in a.serves),
        bacnet_controllers=tuple(a for a in assets if "bacnet" in a.serves),
        exposed=(n["plc-a2-m580"], n["plc-a5-s71500"]),
    )


def _write_assets(path: str, plant: _Plant) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(_ASSET_COLUMNS)
        for asset in plant.assets:
            writer.writerow(getattr(asset, column) for column in _ASSET_COLUMNS)


# --------------------------------------------------------------------------------------------
# Records: connections and the lines each sensor writes for them
# --------------------------------------------------------------------------------------------

# (sort key in microseconds, file index, line without its newline). The key is when the sensor
# writes the line: Zeek's conn.log and Suricata's flow events are written when a flow ends.
_Rec = tuple[int, int, bytes]


class _Flow:
    """One TCP or UDP conversation and the traffic counters its conn/flow records report."""

    __slots__ = (
        "cid",
        "client",
        "cport",
        "fid",
        "fwd",
        "ident",
        "orig_bytes",
        "orig_pkts",
        "proto",
        "resp_bytes",
        "resp_pkts",
        "rev",
        "server",
        "sport",
        "start",
        "tx",
        "uid",
    )

    def __init__(
        self,
        r: random.Random,
        client: str,
        server: str,
        sport: int,
        start: int,
        proto: str = "tcp",
        cport: int | None = None,
    ) -> None:
        self.uid = _uid(r)
        self.client, self.server, self.sport, self.start, self.proto = (
            client,
            server,
            sport,
            start,
            proto,
        )
        self.cport = cport if cport is not None else _between(r, 49152, 65535)
        self.ident = f"{self.uid}\t{client}\t{self.cport}\t{server}\t{sport}"
        self.fwd = f"T\t{client}\t{self.cport}\t{server}\t{sport}"
        self.rev = f"F\t{server}\t{sport}\t{client}\t{self.cport}"
        self.fid = r.getrandbits(50) + (1 << 50)
        self.cid = _community_id(client, self.cport, server, sport, 6 if proto == "tcp" else 17)
        self.orig_bytes = self.resp_bytes = self.tx = 0
        # The TCP handshake and teardown (SYN, ACK, FIN, ACK) before any payload.
        self.orig_pkts, self.resp_pkts = (3, 2) if proto == "tcp" else (0, 0)

    def exchange(self, request: int, response: int) -> None:
        self.tx += 1
        self.orig_bytes += request
        self.orig_pkts += 1 if request else 0
        self.resp_bytes += response
        self.resp_pkts += 1 if response else 0

    def direction(self, from_client: bool) -> str:
        return self.fwd if from_client else self.rev


def _conn_record(f: _Flow, end: int, service: str, state: str = "SF", history: str = "") -> _Rec:
    duration = max(0, end - f.start)
    overhead = 52 if f.proto == "tcp" else 28  # IP + TCP-with-timestamps, or IP + UDP headers
    history = history or ("ShADadFf" if f.proto == "tcp" else ("Dd" if f.resp_pkts else "D"))
    line = (
        f"{_zts(f.start)}\t{f.ident}\t{f.proto}\t{service}\t{duration // _SECOND}."
        f"{duration % _SECOND:06d}\t{f.orig_bytes}\t{f.resp_bytes}\t{state}\t"
        f"{'T' if _is_local(f.client) else 'F'}\t{'T' if _is_local(f.server) else 'F'}\t0\t"
        f"{history}\t{f.orig_pkts}\t{f.orig_bytes + overhead * f.orig_pkts}\t{f.resp_pkts}\t"
        f"{f.resp_bytes + overhead * f.resp_pkts}\t-"
    )
    # Zeek writes conn.log when the connection is removed, a little after its last packet.
    return (end + 250 * _MS, _CONN, line.encode())


def _eve(f: _Flow, us: int, event_type: str, body: dict[str, Any]) -> _Rec:
    record: dict[str, Any] = {
        "timestamp": _eve_ts(us),
        "flow_id": f.fid,
        "in_iface": _SURICATA_IFACE,
        "event_type": event_type,
        "src_ip": f.client,
        "src_port": f.cport,
        "dest_ip": f.server,
        "dest_port": f.sport,
        "proto": "TCP" if f.proto == "tcp" else "UDP",
        "community_id": f.cid,
    }
    record.update(body)
    record["host"] = _SURICATA_HOST
    return (us, _EVE, _encode(record))


def _eve_flow(f: _Flow, end: int, app_proto: str | None, alerted: bool = False) -> _Rec:
    logged = end + 30 * _SECOND  # Suricata logs a flow when it times out
    flow = {
        "pkts_toserver": f.orig_pkts,
        "pkts_toclient": f.resp_pkts,
        "bytes_toserver": f.orig_bytes + 66 * f.orig_pkts,
        "bytes_toclient": f.resp_bytes + 66 * f.resp_pkts,
        "start": _eve_ts(f.start),
        "end": _eve_ts(end),
        "age": max(0, (end - f.start) // _SECOND),
        "state": "closed" if f.proto == "tcp" else ("established" if f.resp_pkts else "new"),
        "reason": "timeout",
        "alerted": alerted,
    }
    body: dict[str, Any] = {"app_proto": app_proto} if app_proto else {}
    body["flow"] = flow
    return _eve(f, logged, "flow", body)


def _envelope(
    r: random.Random,
    us: int,
    sensor: str,
    src: str,
    sport: int,
    dst: str,
    dport: int,
    ics: dict[str, Any],
) -> _Rec:
    record = {
        "schema": _PLATFORM_SCHEMA,
        "message_id": _message_id(r),
        "sensor_id": sensor,
        "observed_at": _rfc3339(us),
        "transport": "tcp",
        "src": {"ip": src, "port": sport},
        "dst": {"ip": dst, "port": dport},
        "ics": ics,
        "attributes": _SITE,
    }
    return (us, _AGENT, _encode(record))


# ---- Modbus ---------------------------------------------------------------------------------

# Zeek function name -> (code, Suricata/sawp name, sawp access type as Suricata prints it)
_MODBUS_EVE = {
    "READ_COILS": (1, "RdCoils", "READ | COILS"),
    "READ_HOLDING_REGISTERS": (3, "RdHoldRegs", "READ | HOLDING"),
    "READ_INPUT_REGISTERS": (4, "RdInputRegs", "READ | INPUT"),
    "WRITE_SINGLE_COIL": (5, "WrSingleCoil", "WRITE | COILS | SINGLE | WRITE_SINGLE"),
    "WRITE_SINGLE_REGISTER": (6, "WrSingleReg", "WRITE | HOLDING | SINGLE | WRITE_SINGLE"),
    "DIAGNOSTICS": (8, "Diagnostic", "NONE"),
    "WRITE_MULTIPLE_REGISTERS": (16, "WrMultRegs", "WRITE | HOLDING | MULTIPLE | WRITE_MULTIPLE"),
    "REPORT_SLAVE_ID": (17, "ReportServerID", "NONE"),
    "MASK_WRITE_REGISTER": (22, "MaskWrReg", "WRITE | HOLDING"),
    "ENCAP_INTERFACE_TRANSPORT": (43, "MEI", "NONE"),
}


def _modbus_row(
    us: int, f: _Flow, tid: int, unit: int, func: str, pdu: str, exc: str = "-"
) -> _Rec:
    return (us, _MODBUS, f"{_zts(us)}\t{f.ident}\t{tid}\t{unit}\t{func}\t{pdu}\t{exc}".encode())


def _values(values: Sequence[int] | None) -> str:
    if values is None:
        return "-"
    return ",".join(map(str, values)) if values else "(empty)"


def _modbus_detailed_row(
    us: int,
    f: _Flow,
    tid: int,
    unit: int,
    func: str,
    address: int | None,
    quantity: int | None,
    request: Sequence[int] | None,
    response: Sequence[int] | None,
    *,
    link: str = "-",
    sub: str = "-",
    request_data: str = "-",
    response_data: str = "-",
    exception: str = "-",
    mei: str = "-",
) -> _Rec:
    line = (
        f"{_zts(us)}\t{f.ident}\t{tid}\t{unit}\t{func}\t{'-' if address is None else address}\t"
        f"{'-' if quantity is None else quantity}\t{_values(request)}\t{_values(response)}\t"
        f"{link}\tT\t{sub}\t{sub}\t{request_data}\t{response_data}\t{exception}\t{mei}"
    )
    return (us, _MODBUS_DETAILED, line.encode())


def _modbus_message(func: str, tid: int, unit: int, **data: Any) -> dict[str, Any]:
    code, name, access = _MODBUS_EVE[func]
    message: dict[str, Any] = {
        "transaction_id": tid,
        "protocol_id": 0,
        "unit_id": unit,
        "function_raw": code,
        "function_code": name,
        "access_type": access,
        "category": "PUBLIC_ASSIGNED",
        "error_flags": "NONE",
    }
    message.update(data)
    return message


def _modbus_eve(
    us: int, f: _Flow, tx: int, request: dict[str, Any], response: dict[str, Any] | None
) -> _Rec:
    body: dict[str, Any] = {"id": tx, "request": request}
    if response is not None:
        body["response"] = response
    return _eve(f, us, "modbus", {"app_proto": "modbus", "modbus": body})


def _register_map(plc: _Asset) -> tuple[tuple[str, int, int], ...]:
    """The blocks an HMI polls on this PLC: stable per device, whatever the seed."""
    r = random.Random(plc.address)
    blocks = [
        ("READ_HOLDING_REGISTERS", _between(r, 0, 90) * 10, _between(r, 2, 17)),
        ("READ_HOLDING_REGISTERS", _between(r, 100, 190) * 10, _between(r, 2, 17)),
        ("READ_INPUT_REGISTERS", _between(r, 0, 50) * 10, _between(r, 2, 13)),
        ("READ_COILS", _between(r, 0, 20) * 8, 8 * _between(r, 1, 5)),
    ]
    return tuple(blocks)


def _read_values(r: random.Random, func: str, quantity: int) -> list[int]:
    bits = 1 if func == "READ_COILS" else 12  # process values fit a 12-bit analog range
    return [r.getrandbits(bits) for _ in range(quantity)]


# ---- DNP3 -------------------------------------------------------------------------------------

_DNP3_CODES = {
    "CONFIRM": 0,
    "READ": 1,
    "WRITE": 2,
    "COLD_RESTART": 13,
    "WARM_RESTART": 14,
    "STOP_APPL": 18,
    "DISABLE_UNSOLICITED": 21,
    "OPEN_FILE": 25,
    "CLOSE_FILE": 26,
    "ACTIVATE_CONFIG": 31,
    "RESPONSE": 129,
    "UNSOLICITED_RESPONSE": 130,
}
_DNP3_MASTER_ADDRESS = 1


def _class_poll(variations: Sequence[int]) -> list[dict[str, int]]:
    """Object headers of a class poll: group 60, qualifier 6 (all objects)."""
    return [
        {"group": 60, "variation": v, "qualifier": 6, "prefix_code": 0, "range_code": 6}
        | {"start": 0, "stop": 0, "count": 0}
        for v in variations
    ]


# Class 1/2/3 event polls, and the same with the class 0 integrity poll.
_DNP3_CLASS_POLLS = (_class_poll((2, 3, 4)), _class_poll((2, 3, 4, 1)))


def _dnp3_row(us: int, f: _Flow, request: str, reply: str, iin: int | None) -> _Rec:
    line = f"{_zts(us)}\t{f.ident}\t{request}\t{reply}\t{'-' if iin is None else iin}"
    return (us, _DNP3, line.encode())


def _dnp3_eve(
    us: int,
    f: _Flow,
    kind: str,
    function: str,
    seq: int,
    outstation: int,
    objects: list[dict[str, int]] | None = None,
) -> _Rec:
    from_master = kind == "request"
    application: dict[str, Any] = {
        "control": {
            "fir": True,
            "fin": True,
            "con": kind == "unsolicited_response",
            "uns": kind == "unsolicited_response",
            "sequence": seq,
        },
        "function_code": _DNP3_CODES[function],
    }
    if objects:
        application["objects"] = objects
    application["complete"] = True
    body = {
        "type": kind,
        "control": {
            "dir": from_master,
            "pri": True,
            "fcb": False,
            "fcv": False,
            "function_code": 4,
        },
        "src": _DNP3_MASTER_ADDRESS if from_master else outstation,
        "dst": outstation if from_master else _DNP3_MASTER_ADDRESS,
        "application": application,
    }
    return _eve(f, us, "dnp3", {"app_proto": "dnp3", "dnp3": body})


# ---- S7comm and S7comm-plus -----------------------------------------------------------------

_S7_JOBS = {
    0x04: "Read Variable",
    0x05: "Write Variable",
    0x1A: "Request Download",
    0x1B: "Download Block",
    0x1C: "Download Ended",
    0x1D: "Start Upload",
    0x1E: "Upload",
    0x1F: "End Upload",
    0x28: "PLC Control",
    0x29: "PLC Stop",
    0xF0: "Setup Communication",
}


def _s7_job(us: int, f: _Flow, from_client: bool, ref: int, code: int, sub: str = "-\t-") -> _Rec:
    line = (
        f"{_zts(us)}\t{f.ident}\t{f.direction(from_client)}\t1\tJob-Request\t{ref}\t0x{code:02x}\t"
        f"{_S7_JOBS[code]}\t{sub}\t-\t-"
    )
    return (us, _S7COMM, line.encode())


def _s7_ack(us: int, f: _Flow, from_client: bool, ref: int, code: int) -> _Rec:
    line = (
        f"{_zts(us)}\t{f.ident}\t{f.direction(from_client)}\t3\tACK-Data\t{ref}\t0x{code:02x}\t"
        f"{_S7_JOBS[code]}\t-\t-\tNo error\t0x00"
    )
    return (us, _S7COMM, line.encode())


def _s7_userdata(us: int, f: _Flow, request: bool, ref: int, group: int, sub: int) -> _Rec:
    groups = {0x4: "CPU Functions", 0x3: "Block Functions"}
    subs = {(0x4, 0x01): "Read SZL", (0x3, 0x01): "List Blocks"}
    code = (0x40 if request else 0x80) | group
    kind = "Request" if request else "Response"
    error = "-\t-" if request else "No error\t0x00"
    line = (
        f"{_zts(us)}\t{f.ident}\t{f.direction(request)}\t7\tUser-Data\t{ref}\t0x{code:02x}\t"
        f"{kind}: {groups[group]}\t0x{sub:02x}\t{subs[(group, sub)]}\t{error}"
    )
    return (us, _S7COMM, line.encode())


_S7PLUS_FUNCTIONS = {
    0x04BB: "Explore",
    0x04CA: "Create Object",
    0x04D4: "Delete Object",
    0x04F2: "Set Variable",
    0x0542: "Set Multi Variables",
    0x054C: "Get Multi Variables",
    0x0556: "Begin Sequence",
    0x0560: "End Sequence",
    0x056B: "Invoke",
}


def _s7plus_row(us: int, f: _Flow, opcode: int, function: int | None) -> _Rec:
    names = {0x31: "Request", 0x32: "Response", 0x33: "Notification"}
    fn = "-\t-" if function is None else f"0x{function:04x}\t{_S7PLUS_FUNCTIONS[function]}"
    line = (
        f"{_zts(us)}\t{f.ident}\t{f.direction(opcode == 0x31)}\t3\t0x{opcode:02x}\t"
        f"{names[opcode]}\t{fn}"
    )
    return (us, _S7PLUS, line.encode())


# ---- EtherNet/IP and CIP ----------------------------------------------------------------------

_ENIP_COMMANDS = {0x65: "Register Session", 0x6F: "Send RR Data", 0x70: "Send Unit Data"}
# Service names as icsnpp-enip logs them (its cip_services table).
_CIP_SERVICES = {
    0x05: "Reset",
    0x07: "Stop",
    0x0E: "Get Attributes Single",
    0x4B: "Execute PCCC Service",
    0x4C: "Read Data",
    0x4D: "Write Data",
    0x54: "Forward Open",
}
_CIP_CLASSES = {0x01: "Identity", 0x06: "Connection Manager"}  # others log as "unknown"


def _enip_row(
    us: int, f: _Flow, from_client: bool, command: int, length: int, session: int
) -> _Rec:
    line = (
        f"{_zts(us)}\t{f.ident}\t{f.direction(from_client)}\t0x{command:02x}\t"
        f"{_ENIP_COMMANDS[command]}\t{length}\t0x{session:08x}\tSuccess\t0x0000000000000000\t0x00000000"
    )
    return (us, _ENIP, line.encode())


def _cip_request(
    us: int,
    f: _Flow,
    seq: int | None,
    service: int,
    cls: int | None,
    instance: int | None,
    attribute: int | None,
) -> _Rec:
    path = (
        "-\t-\t-\t-"
        if cls is None
        else (
            f"0x{cls:02x}\t{_CIP_CLASSES.get(cls, 'unknown')}\t"
            f"{'-' if instance is None else f'0x{instance:02x}'}\t"
            f"{'-' if attribute is None else f'0x{attribute:02x}'}"
        )
    )
    line = (
        f"{_zts(us)}\t{f.ident}\t{f.fwd}\t{'-' if seq is None else seq}\trequest\t0x{service:02x}\t"
        f"{_CIP_SERVICES[service]}\t-\t-\t-\t-\t{path}"
    )
    return (us, _CIP, line.encode())


def _cip_response(us: int, f: _Flow, seq: int | None, service: int) -> _Rec:
    # icsnpp-enip logs the service masked to 7 bits, the direction, the status and no path.
    line = (
        f"{_zts(us)}\t{f.ident}\t{f.rev}\t{'-' if seq is None else seq}\tresponse\t"
        f"0x{service:02x}\t"
        f"{_CIP_SERVICES[service]}\t0x00\tSuccess\t-\t-\t-\t-\t-\t-"
    )
    return (us, _CIP, line.encode())


# ---- BACnet -----------------------------------------------------------------------------------


def _bacnet_row(
    us: int,
    f: _Flow,
    from_client: bool,
    bvlc: str,
    pdu_type: str,
    service: str,
    invoke: int | None,
    result: str = "-",
) -> _Rec:
    line = (
        f"{_zts(us)}\t{f.ident}\t{f.direction(from_client)}\t{bvlc}\t{pdu_type}\t{service}\t"
        f"{'-' if invoke is None else invoke}\t{result}"
    )
    return (us, _BACNET, line.encode())


# --------------------------------------------------------------------------------------------
# Who sees what
# --------------------------------------------------------------------------------------------

# The Suricata sensor sits on the cell A and substation SPAN ports and at the IT/OT boundary.
_SURICATA_ZONES = frozenset({"cell-a", "substation", "enterprise", "dmz"})
_AGENT_MODBUS = "rl-agent-cell-b-01"
_AGENT_OPCUA = "rl-agent-ops-01"
# Low-severity stream/app-layer anomaly rules from Suricata's own rule files (severity 3).
_DECODE_ALERTS = (
    (2210020, 3, "SURICATA STREAM ESTABLISHED packet out of window"),
    (2210045, 2, "SURICATA STREAM Packet with invalid ack"),
    (2210029, 3, "SURICATA STREAM ESTABLISHED invalid ack"),
    (2260002, 1, "SURICATA Applayer Detect protocol only one direction"),
)


class _Gen:
    """What the record builders share: the plant, who observes what, cached register maps."""

    def __init__(self, plant: _Plant) -> None:
        self.plant = plant
        self._maps: dict[str, tuple[tuple[str, int, int], ...]] = {}

    def zone(self, address: str) -> str:
        asset = self.plant.by_address.get(address)
        if asset is not None:
            return asset.zone
        return "unknown" if _is_local(address) else "internet"

    def suricata_sees(self, f: _Flow) -> bool:
        zones = (self.zone(f.client), self.zone(f.server))
        return "internet" in zones or any(z in _SURICATA_ZONES for z in zones)

    def agent_sees_modbus(self, server: str) -> bool:
        return self.zone(server) == "cell-b"

    def register_map(self, plc: _Asset) -> tuple[tuple[str, int, int], ...]:
        blocks = self._maps.get(plc.address)
        if blocks is None:
            blocks = self._maps[plc.address] = _register_map(plc)
        return blocks


def _decode_alert(r: random.Random, f: _Flow, us: int, app_proto: str) -> _Rec:
    sid, rev, signature = r.choice(_DECODE_ALERTS)
    alert = {
        "action": "allowed",
        "gid": 1,
        "signature_id": sid,
        "rev": rev,
        "signature": signature,
        "category": "Generic Protocol Command Decode",
        "severity": 3,
    }
    return _eve(f, us, "alert", {"app_proto": app_proto, "direction": "to_server", "alert": alert})


# --------------------------------------------------------------------------------------------
# Normal traffic: one builder per kind of conversation
# --------------------------------------------------------------------------------------------

_Builder = Callable[[_Gen, random.Random, int], list[_Rec]]


def _close_flow(
    g: _Gen, f: _Flow, end: int, service: str, app_proto: str | None, records: list[_Rec]
) -> None:
    """The records a finished connection leaves: Zeek's conn.log row and Suricata's flow."""
    records.append(_conn_record(f, end, service))
    if g.suricata_sees(f):
        records.append(_eve_flow(f, end, app_proto))


def _finish_tcp(
    g: _Gen,
    r: random.Random,
    f: _Flow,
    end: int,
    service: str,
    app_proto: str | None,
    records: list[_Rec],
) -> list[_Rec]:
    """Close a normal connection, now and then with a harmless stream-anomaly alert."""
    if app_proto and g.suricata_sees(f) and r.random() < 0.03:
        records.append(_decode_alert(r, f, f.start + (end - f.start) // 2, app_proto))
    _close_flow(g, f, end, service, app_proto, records)
    return records


def _modbus_reads(
    g: _Gen,
    r: random.Random,
    f: _Flow,
    plc: _Asset,
    t: int,
    count: int,
    tid: int,
    records: list[_Rec],
    blocks: Sequence[tuple[str, int, int]] | None = None,
) -> tuple[int, int]:
    """Read transactions on an open Modbus connection; returns the time and next tid."""
    eve = g.suricata_sees(f)
    agent = g.agent_sees_modbus(plc.address)
    blocks = blocks or g.register_map(plc)
    for _ in range(count):
        func, address, quantity = r.choice(blocks)
        code = _MODBUS_EVE[func][0]
        values = _read_values(r, func, quantity)
        tr = t + _between(r, 2 * _MS, 15 * _MS)
        records.append(_modbus_row(t, f, tid, plc.unit, func, "REQ"))
        records.append(_modbus_row(tr, f, tid, plc.unit, func, "RESP"))
        records.append(
            _modbus_detailed_row(tr + 1, f, tid, plc.unit, func, address, quantity, None, values)
        )
        data_bytes = math.ceil(quantity / 8) if func == "READ_COILS" else 2 * quantity
        f.exchange(12, 9 + data_bytes)
        if eve:
            request = _modbus_message(
                func, tid, plc.unit, read={"address": address, "quantity": quantity}
            )
            response = _modbus_message(
                func, tid, plc.unit, read={"data": _hex_bytes(r, data_bytes)}
            )
            records.append(_modbus_eve(tr + 40, f, f.tx, request, response))
        if agent:
            ics = {
                "protocol": "modbus",
                "function_code": code,
                "function": func,
                "unit_id": plc.unit,
                "address": address,
                "quantity": quantity,
                "is_request": True,
            }
            records.append(
                _envelope(r, t + 300, _AGENT_MODBUS, f.client, f.cport, f.server, 502, ics)
            )
        t = tr + _between(r, 20 * _MS, 250 * _MS)
        tid = (tid + 1) & 0xFFFF
    return t, tid


def _normal_modbus_read(g: _Gen, r: random.Random, t0: int) -> list[_Rec]:
    client, plc = r.choice(g.plant.modbus_reads)
    f = _Flow(r, client.address, plc.address, 502, t0)
    records: list[_Rec] = []
    t, _ = _modbus_reads(
        g,
        r,
        f,
        plc,
        t0 + _between(r, 1 * _MS, 4 * _MS),
        _between(r, 3, 9),
        _between(r, 1, 60000),
        records,
    )
    return _finish_tcp(g, r, f, t, "modbus", "modbus", records)


def _modbus_write(
    g: _Gen,
    r: random.Random,
    f: _Flow,
    plc: _Asset,
    t: int,
    tid: int,
    func: str,
    records: list[_Rec],
    eve: bool,
    agent: bool,
) -> int:
    """One write transaction (single/multiple register or coil); returns the response time."""
    address = _between(r, 0, 200) * 10
    tr = t + _between(r, 3 * _MS, 20 * _MS)
    code = _MODBUS_EVE[func][0]
    if func == "WRITE_MULTIPLE_REGISTERS":
        values = [_between(r, 0, 4096) for _ in range(_between(r, 2, 9))]
        request_values, response_values = values, None
        f.exchange(13 + 2 * len(values), 12)
    else:
        value = r.getrandbits(1) * 0xFF00 if func == "WRITE_SINGLE_COIL" else _between(r, 0, 4096)
        values = [value]
        request_values = response_values = values
        f.exchange(12, 12)
    records.append(_modbus_row(t, f, tid, plc.unit, func, "REQ"))
    records.append(_modbus_row(tr, f, tid, plc.unit, func, "RESP"))
    records.append(
        _modbus_detailed_row(
            tr + 1, f, tid, plc.unit, func, address, len(values), request_values, response_values
        )
    )
    # Suricata logs a multiple-register write's data as an escaped string, which the raw schema
    # (schemas/raw.py SuricataModbusWrite.data: int) would reject; only single writes go to EVE.
    if eve and func != "WRITE_MULTIPLE_REGISTERS":
        write = {"address": address, "data": values[0]}
        records.append(
            _modbus_eve(
                tr + 40,
                f,
                f.tx,
                _modbus_message(func, tid, plc.unit, write=write),
                _modbus_message(func, tid, plc.unit, write=write),
            )
        )
    if agent:
        ics = {
            "protocol": "modbus",
            "function_code": code,
            "function": func,
            "unit_id": plc.unit,
            "address": address,
            "quantity": len(values),
            "is_request": True,
        }
        records.append(_envelope(r, t + 300, _AGENT_MODBUS, f.client, f.cport, f.server, 502, ics))
    return tr


def _normal_modbus_write(g: _Gen, r: random.Random, t0: int) -> list[_Rec]:
    ews, plc = r.choice(g.plant.modbus_writes)
    f = _Flow(r, ews.address, plc.address, 502, t0)
    records: list[_Rec] = []
    tid = _between(r, 1, 60000)
    t, tid = _modbus_reads(g, r, f, plc, t0 + 2 * _MS, _between(r, 1, 3), tid, records)
    eve, agent = g.suricata_sees(f), g.agent_sees_modbus(plc.address)
    for _ in range(_between(r, 1, 4)):
        func = r.choices(
            ("WRITE_SINGLE_REGISTER", "WRITE_MULTIPLE_REGISTERS", "WRITE_SINGLE_COIL"), (6, 3, 1)
        )[0]
        t = _modbus_write(g, r, f, plc, t, tid, func, records, eve, agent) + _between(
            r, 200 * _MS, 2 * _SECOND
        )
        tid = (tid + 1) & 0xFFFF
    return _finish_tcp(g, r, f, t, "modbus", "modbus", records)


def _normal_dnp3(g: _Gen, r: random.Random, t0: int) -> list[_Rec]:
    master, rtu = r.choice(g.plant.dnp3_polls)
    f = _Flow(r, master.address, rtu.address, 20000, t0)
    eve = g.suricata_sees(f)
    records: list[_Rec] = []
    t = t0 + 2 * _MS
    seq = r.randrange(16)
    for _ in range(_between(r, 3, 8)):
        if r.random() < 0.12:
            # The outstation reports events on its own; the master confirms.
            records.append(_dnp3_row(t, f, "-", "UNSOLICITED_RESPONSE", r.choice((0, 0, 2, 4))))
            tc = t + _between(r, 5 * _MS, 30 * _MS)
            records.append(_dnp3_row(tc, f, "CONFIRM", "-", None))
            f.exchange(15, 42)
            if eve:
                records.append(
                    _dnp3_eve(
                        t + 30, f, "unsolicited_response", "UNSOLICITED_RESPONSE", seq, rtu.unit
                    )
                )
                records.append(_dnp3_eve(tc + 30, f, "request", "CONFIRM", seq, rtu.unit))
            t = tc + _between(r, 100 * _MS, 900 * _MS)
        else:
            tr = t + _between(r, 10 * _MS, 60 * _MS)
            objects = r.choice(_DNP3_CLASS_POLLS)
            records.append(_dnp3_row(tr, f, "READ", "RESPONSE", r.choice((0, 0, 0, 2))))
            f.exchange(17 + 3 * len(objects), _between(r, 20, 240))
            if eve:
                records.append(_dnp3_eve(t + 30, f, "request", "READ", seq, rtu.unit, objects))
                records.append(_dnp3_eve(tr + 30, f, "response", "RESPONSE", seq, rtu.unit))
            t = tr + _between(r, 500 * _MS, 2 * _SECOND)
        seq = (seq + 1) & 0x0F
    return _finish_tcp(g, r, f, t, "dnp3_tcp", "dnp3", records)


def _s7_setup(f: _Flow, t: int, records: list[_Rec]) -> int:
    """COTP is connected; negotiate the PDU size. Returns the time after the ACK."""
    records.append(_s7_job(t, f, True, 0, 0xF0))
    records.append(_s7_ack(t + 4 * _MS, f, False, 0, 0xF0))
    f.exchange(25, 27)
    return t + 10 * _MS


def _normal_s7(g: _Gen, r: random.Random, t0: int) -> list[_Rec]:
    client, plc = r.choice(g.plant.s7_reads)
    f = _Flow(r, client.address, plc.address, 102, t0)
    records: list[_Rec] = []
    t = _s7_setup(f, t0 + 3 * _MS, records)
    ref = 1
    if r.random() < 0.5:
        records.append(_s7_userdata(t, f, True, ref, 0x4, 0x01))
        records.append(_s7_userdata(t + 6 * _MS, f, False, ref, 0x4, 0x01))
        f.exchange(33, 120)
        t += 20 * _MS
        ref += 1
    for _ in range(_between(r, 2, 7)):
        records.append(_s7_job(t, f, True, ref, 0x04))
        tr = t + _between(r, 3 * _MS, 12 * _MS)
        records.append(_s7_ack(tr, f, False, ref, 0x04))
        f.exchange(31, _between(r, 30, 220))
        t = tr + _between(r, 50 * _MS, 400 * _MS)
        ref += 1
    return _finish_tcp(g, r, f, t, "cotp,s7comm", None, records)


def _normal_s7plus(g: _Gen, r: random.Random, t0: int) -> list[_Rec]:
    ews, plc = r.choice(g.plant.s7plus_sessions)
    f = _Flow(r, ews.address, plc.address, 102, t0)
    records: list[_Rec] = []
    t = t0 + 5 * _MS
    for _ in range(_between(r, 3, 9)):
        kind = r.random()
        if kind < 0.45:
            records.append(_s7plus_row(t, f, 0x33, None))  # subscribed values from the CPU
            f.exchange(0, _between(r, 40, 300))
        else:
            function = 0x054C if kind < 0.8 else (0x04F2 if kind < 0.95 else 0x04BB)
            records.append(_s7plus_row(t, f, 0x31, function))
            records.append(_s7plus_row(t + _between(r, 3 * _MS, 15 * _MS), f, 0x32, function))
            f.exchange(_between(r, 40, 160), _between(r, 30, 400))
        t += _between(r, 200 * _MS, _SECOND)
    return _finish_tcp(g, r, f, t, "cotp,s7comm-plus", None, records)


def _enip_exchange(
    f: _Flow,
    t: int,
    command: int,
    session: int,
    seq: int | None,
    service: int,
    cls: int | None,
    instance: int | None,
    attribute: int | None,
    sizes: tuple[int, int],
    records: list[_Rec],
) -> int:
    """One CIP request and its response inside ENIP; returns the response time."""
    tr = t + 4 * _MS
    records.append(_enip_row(t, f, True, command, sizes[0], session))
    records.append(_cip_request(t, f, seq, service, cls, instance, attribute))
    records.append(_enip_row(tr, f, False, command, sizes[1], session))
    records.append(_cip_response(tr, f, seq, service))
    f.exchange(24 + sizes[0], 24 + sizes[1])
    return tr


def _enip_register(r: random.Random, f: _Flow, t: int, records: list[_Rec]) -> tuple[int, int]:
    session = r.getrandbits(32) | 1
    records.append(_enip_row(t, f, True, 0x65, 4, 0))
    records.append(_enip_row(t + 2 * _MS, f, False, 0x65, 4, session))
    f.exchange(28, 28)
    return t + 5 * _MS, session


def _normal_enip(g: _Gen, r: random.Random, t0: int) -> list[_Rec]:
    client, plc = r.choice(g.plant.enip_reads)
    f = _Flow(r, client.address, plc.address, 44818, t0)
    records: list[_Rec] = []
    t, session = _enip_register(r, f, t0 + 2 * _MS, records)
    if r.random() < 0.3:
        # Identity product name (class 1, instance 1, attribute 7) for the HMI's device list.
        t = _enip_exchange(f, t, 0x6F, session, None, 0x0E, 0x01, 0x01, 0x07, (24, 44), records)
        t += 10 * _MS
    t = _enip_exchange(f, t, 0x6F, session, None, 0x54, 0x06, 0x01, None, (64, 46), records)
    seq = _between(r, 1, 30000)
    for _ in range(_between(r, 2, 7)):
        t = _enip_exchange(
            f,
            t + _between(r, 20 * _MS, 250 * _MS),
            0x70,
            session,
            seq,
            0x4C,
            None,
            None,
            None,
            (_between(r, 36, 60), _between(r, 30, 200)),
            records,
        )
        seq += 1
    return _finish_tcp(g, r, f, t + 5 * _MS, "enip", "enip", records)


def _normal_bacnet(g: _Gen, r: random.Random, t0: int) -> list[_Rec]:
    bms, controller, broadcast = r.choice(g.plant.bacnet_polls)
    records: list[_Rec] = []
    if r.random() < 0.15:
        # Device discovery: a broadcast Who-Is and the I-Am broadcasts of the controllers.
        f = _Flow(r, bms.address, broadcast, 47808, t0, "udp", cport=47808)
        records.append(
            _bacnet_row(
                t0, f, True, "Original_Broadcast_NPDU", "UNCONFIRMED_REQUEST", "who_is", None
            )
        )
        f.exchange(12, 0)
        records.append(_conn_record(f, t0, "bacnet", "S0"))
        peers = [c for _, c, b in g.plant.bacnet_polls if b == broadcast]
        t = t0
        for peer in r.sample(peers, min(len(peers), _between(r, 2, 5))):
            t += _between(r, 5 * _MS, 80 * _MS)
            answer = _Flow(r, peer.address, broadcast, 47808, t, "udp", cport=47808)
            records.append(
                _bacnet_row(
                    t, answer, True, "Original_Broadcast_NPDU", "UNCONFIRMED_REQUEST", "i_am", None
                )
            )
            answer.exchange(25, 0)
            records.append(_conn_record(answer, t, "bacnet", "S0"))
        return records
    f = _Flow(r, bms.address, controller.address, 47808, t0, "udp", cport=47808)
    t = t0
    invoke = _between(r, 0, 256)
    for _ in range(_between(r, 2, 7)):
        service = "read_property" if r.random() < 0.7 else "read_property_multiple"
        records.append(
            _bacnet_row(t, f, True, "Original_Unicast_NPDU", "CONFIRMED_REQUEST", service, invoke)
        )
        tr = t + _between(r, 8 * _MS, 60 * _MS)
        records.append(
            _bacnet_row(tr, f, False, "Original_Unicast_NPDU", "COMPLEX_ACK", service, invoke)
        )
        f.exchange(_between(r, 17, 40), _between(r, 20, 120))
        invoke = (invoke + 1) & 0xFF
        t = tr + _between(r, 50 * _MS, 300 * _MS)
    records.append(_conn_record(f, t, "bacnet"))
    return records


# OPC UA binary encoding node ids of the request and response (icsnpp-opcua-binary).
_OPCUA_CALLS = (("Read", 631, 634), ("Read", 631, 634), ("Publish", 826, 829), ("Browse", 527, 530))


def _normal_opcua(g: _Gen, r: random.Random, t0: int) -> list[_Rec]:
    client, server = r.choice(g.plant.opcua_sessions)
    f = _Flow(r, client.address, server.address, 4840, t0)
    records: list[_Rec] = []
    t = t0 + 3 * _MS
    for _ in range(_between(r, 2, 6)):
        name, request, response = r.choice(_OPCUA_CALLS)
        tr = t + _between(r, 2 * _MS, 25 * _MS)
        ask = {
            "protocol": "opcua",
            "function_code": request,
            "function": f"{name}Request",
            "is_request": True,
        }
        answer = {
            "protocol": "opcua",
            "function_code": response,
            "function": f"{name}Response",
            "is_request": False,
            "status": "Good",
        }
        records.append(_envelope(r, t, _AGENT_OPCUA, f.client, f.cport, f.server, 4840, ask))
        records.append(_envelope(r, tr, _AGENT_OPCUA, f.server, 4840, f.client, f.cport, answer))
        f.exchange(_between(r, 80, 300), _between(r, 60, 900))
        t = tr + _between(r, 100 * _MS, _SECOND)
    return _finish_tcp(g, r, f, t, "-", None, records)


_APP_PROTO = {
    "dns": "dns",
    "krb_tcp": "krb5",
    "ldap": "ldap",
    "smb": "smb",
    "ssl": "tls",
    "http": "http",
    "-": None,
}


def _normal_it(g: _Gen, r: random.Random, t0: int) -> list[_Rec]:
    client, server, port, proto, service = r.choice(g.plant.it_flows)
    f = _Flow(r, client.address, server.address, port, t0, proto)
    if proto == "udp":
        f.exchange(_between(r, 30, 60), _between(r, 60, 300))
        end = t0 + _between(r, 200, 3 * _MS)
    else:
        for _ in range(_between(r, 2, 12)):
            f.exchange(_between(r, 40, 1500), _between(r, 40, 1500))
        end = t0 + _between(r, 20 * _MS, 20 * _SECOND)
    records = [_conn_record(f, end, service)]
    if g.suricata_sees(f):
        records.append(_eve_flow(f, end, _APP_PROTO[service]))
    return records


_NORMAL: tuple[tuple[_Builder, int], ...] = (
    (_normal_modbus_read, 30),
    (_normal_modbus_write, 2),
    (_normal_dnp3, 10),
    (_normal_s7, 8),
    (_normal_s7plus, 5),
    (_normal_enip, 7),
    (_normal_bacnet, 7),
    (_normal_opcua, 6),
    (_normal_it, 40),
)


# --------------------------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Attack:
    """The records of one injected attack and what its truth row says."""

    records: list[_Rec]
    primary: int  # index in records of the line the truth row points at
    time: int  # when the primary record happened (microseconds)
    fields: dict[str, Any]
    flow: _Flow | None = None  # the flow a companion Suricata alert belongs to


@dataclasses.dataclass(frozen=True)
class _Scenario:
    name: str
    technique: str
    technique_name: str
    protocol: str
    build: Callable[[_Gen, random.Random, int, bool], list[_Attack]]


def _attacker(g: _Gen, r: random.Random, it_share: float = 0.3) -> _Asset:
    """A compromised host that has no business sending the command: an HMI or an IT host."""
    return r.choice(g.plant.it_clients if r.random() < it_share else g.plant.hmis)


def _pick(r: random.Random, pool: Sequence[_Asset], g: _Gen, visible: bool) -> _Asset:
    if visible:
        seen = [a for a in pool if g.zone(a.address) in _SURICATA_ZONES]
        pool = seen or pool
    return r.choice(pool)


def _attack(
    records: list[_Rec],
    primary: int,
    fields: dict[str, Any],
    f: _Flow | None = None,
    time_us: int | None = None,
) -> _Attack:
    return _Attack(records, primary, records[primary][0] if time_us is None else time_us, fields, f)


def _modbus_command(
    g: _Gen,
    r: random.Random,
    f: _Flow,
    plc: _Asset,
    t: int,
    func: str,
    detail: dict[str, Any],
    eve: tuple[dict[str, Any], dict[str, Any]],
    records: list[_Rec],
) -> tuple[int, int]:
    """One Modbus request and its answer as Zeek, ICSNPP and (when it sees them) Suricata log
    them. ``detail`` fills modbus_detailed.log; ``eve`` is the EVE request and response data.
    Returns the response time and the index of the modbus_detailed.log row."""
    tid = _between(r, 1, 60000)
    tr = t + _between(r, 3 * _MS, 15 * _MS)
    records.append(_modbus_row(t, f, tid, plc.unit, func, "REQ"))
    records.append(_modbus_row(tr, f, tid, plc.unit, func, "RESP"))
    points: dict[str, Any] = {"address": None, "quantity": None, "request": None, "response": None}
    records.append(_modbus_detailed_row(tr + 1, f, tid, plc.unit, func, **(points | detail)))
    index = len(records) - 1
    f.exchange(12, 12)
    if g.suricata_sees(f):
        ask = _modbus_message(func, tid, plc.unit, **eve[0])
        records.append(
            _modbus_eve(tr + 40, f, f.tx, ask, _modbus_message(func, tid, plc.unit, **eve[1]))
        )
    return tr, index


def _a_modbus_write(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    src = _attacker(g, r)
    plc = _pick(r, g.plant.modbus_plcs, g, visible)
    f = _Flow(r, src.address, plc.address, 502, t0)
    eve = g.suricata_sees(f)
    records: list[_Rec] = []
    funcs = (
        ["WRITE_SINGLE_REGISTER"]
        if visible
        else [r.choice(("WRITE_SINGLE_REGISTER", "WRITE_MULTIPLE_REGISTERS"))]
    )
    funcs += [
        r.choice(("WRITE_SINGLE_REGISTER", "WRITE_MULTIPLE_REGISTERS"))
        for _ in range(_between(r, 0, 3))
    ]
    t, tid = t0 + 3 * _MS, _between(r, 1, 60000)
    for func in funcs:
        t = _modbus_write(g, r, f, plc, t, tid, func, records, eve, False) + _between(
            r, 50 * _MS, 500 * _MS
        )
        tid = (tid + 1) & 0xFFFF
    _close_flow(g, f, t, "modbus", "modbus", records)
    return [
        _attack(records, 0, {"src_ip": src.address, "dst_ip": plc.address, "function": funcs[0]}, f)
    ]


def _a_modbus_mask_write(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    src = _attacker(g, r, 0.2)
    plc = _pick(r, g.plant.modbus_plcs, g, visible)
    f = _Flow(r, src.address, plc.address, 502, t0)
    records: list[_Rec] = []
    address = _between(r, 0, 200) * 10
    write = {"address": address, "and_mask": r.getrandbits(16), "or_mask": r.getrandbits(16)}
    # ICSNPP puts the masks in modbus_mask_write_register.log, linked by this id.
    detail = {"address": address, "link": "".join(r.choice(_B62) for _ in range(16))}
    tr, _ = _modbus_command(
        g, r, f, plc, t0 + 3 * _MS, "MASK_WRITE_REGISTER", detail, ({"write": write},) * 2, records
    )
    _close_flow(g, f, tr + 20 * _MS, "modbus", "modbus", records)
    fields = {"src_ip": src.address, "dst_ip": plc.address, "function": "MASK_WRITE_REGISTER"}
    return [_attack(records, 0, fields, f)]


def _a_modbus_restart_comm(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    src = _attacker(g, r)
    plc = _pick(r, g.plant.modbus_plcs, g, visible)
    f = _Flow(r, src.address, plc.address, 502, t0)
    records: list[_Rec] = []
    # Data 0xFF00 also clears the communications event log; 0x0000 keeps it.
    data = "\\xff\\x00" if r.random() < 0.5 else "\\x00\\x00"
    detail = {"sub": "Restart Communications Option", "request_data": data, "response_data": data}
    diagnostic = {"diagnostic": {"raw": 1, "code": "RestartCommOpt", "data": data}}
    tr, primary = _modbus_command(
        g, r, f, plc, t0 + 3 * _MS, "DIAGNOSTICS", detail, (diagnostic, diagnostic), records
    )
    _close_flow(g, f, tr + 20 * _MS, "modbus", "modbus", records)
    fields = {"src_ip": src.address, "dst_ip": plc.address, "function": "DIAGNOSTICS"}
    return [_attack(records, primary, fields | {"subfunction": "RESTART_COMMUNICATIONS_OPTION"}, f)]


def _a_modbus_device_id_sweep(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    src = _attacker(g, r, 0.5)
    pool = list(g.plant.modbus_plcs)
    chosen = r.sample(pool, min(len(pool), _between(r, 5, 9)))
    targets = sorted(chosen, key=lambda a: socket.inet_aton(a.address))  # a scanner walks up
    records: list[_Rec] = []
    flows: list[_Flow] = []
    primary = -1
    t = t0
    for plc in targets:
        f = _Flow(r, src.address, plc.address, 502, t)
        flows.append(f)
        detail = {"request_data": "\\x01\\x00", "mei": "Read Device Identification"}
        ask = {"mei": {"raw": 14, "code": "RdDevId", "data": "\\x01\\x00"}}
        reply = {"mei": {"raw": 14, "code": "RdDevId", "data": _hex_bytes(r, 8)}}
        tr, index = _modbus_command(
            g, r, f, plc, t + 3 * _MS, "ENCAP_INTERFACE_TRANSPORT", detail, (ask, reply), records
        )
        primary = index if primary < 0 else primary
        _close_flow(g, f, tr + 10 * _MS, "modbus", "modbus", records)
        t = tr + _between(r, 150 * _MS, 900 * _MS)
    fields = {
        "src_ip": src.address,
        "dst_ip": targets[0].address,
        "function": "ENCAP_INTERFACE_TRANSPORT",
        "subfunction": "READ_DEVICE_IDENTIFICATION",
        "targets": [a.address for a in targets],
    }
    return [_attack(records, primary, fields, flows[0])]


def _a_modbus_unit_scan(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    src = _attacker(g, r, 0.5)
    plc = _pick(r, g.plant.modbus_plcs, g, visible)
    f = _Flow(r, src.address, plc.address, 502, t0)
    records: list[_Rec] = []
    first = _between(r, 0, 3)
    units = list(range(first, first + _between(r, 16, 33)))
    if plc.unit not in units:
        units.append(plc.unit)  # scanners finish with 255, the Modbus/TCP "this device" unit
    t, tid = t0 + 3 * _MS, _between(r, 1, 60000)
    for unit in units:
        tr = t + _between(r, 3 * _MS, 30 * _MS)
        records.append(_modbus_row(t, f, tid, unit, "READ_HOLDING_REGISTERS", "REQ"))
        if unit == plc.unit:
            records.append(_modbus_row(tr, f, tid, unit, "READ_HOLDING_REGISTERS", "RESP"))
        else:
            # A gateway answers for units that do not exist behind it.
            records.append(
                _modbus_row(
                    tr,
                    f,
                    tid,
                    unit,
                    "READ_HOLDING_REGISTERS_EXCEPTION",
                    "RESP",
                    "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND",
                )
            )
        f.exchange(12, 11)
        tid = (tid + 1) & 0xFFFF
        t = tr + _between(r, 20 * _MS, 250 * _MS)  # the whole scan stays well inside 60 s
    _close_flow(g, f, t, "modbus", "modbus", records)
    return [
        _attack(
            records,
            0,
            {
                "src_ip": src.address,
                "dst_ip": plc.address,
                "function": "READ_HOLDING_REGISTERS",
                "units": units,
            },
            f,
        )
    ]


def _dnp3_attack(
    steps: Sequence[tuple[str, int]],
) -> Callable[[_Gen, random.Random, int, bool], list[_Attack]]:
    """A DNP3 attack: each step is a request function and how often it is sent."""

    def build(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
        src = r.choice((*g.plant.hmis, *g.plant.it_clients[:3]))
        rtu = _pick(r, g.plant.rtus, g, visible)
        f = _Flow(r, src.address, rtu.address, 20000, t0)
        eve = g.suricata_sees(f)
        records: list[_Rec] = []
        t, seq = t0 + 3 * _MS, r.randrange(16)
        for function, times in steps:
            for _ in range(times):
                tr = t + _between(r, 10 * _MS, 80 * _MS)
                records.append(_dnp3_row(tr, f, function, "RESPONSE", 0))
                f.exchange(_between(r, 17, 250) if function == "WRITE" else 17, 15)
                if eve:
                    records.append(_dnp3_eve(t + 30, f, "request", function, seq, rtu.unit))
                    records.append(_dnp3_eve(tr + 30, f, "response", "RESPONSE", seq, rtu.unit))
                seq = (seq + 1) & 0x0F
                t = tr + _between(r, 50 * _MS, 400 * _MS)
        _close_flow(g, f, t, "dnp3_tcp", "dnp3", records)
        return [
            _attack(
                records,
                0,
                {"src_ip": src.address, "dst_ip": rtu.address, "function": steps[0][0]},
                f,
            )
        ]

    return build


def _dnp3_file_transfer(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    # Open a file for writing, write its blocks (g70v5), close it and activate the new config.
    steps = (
        ("OPEN_FILE", 1),
        ("WRITE", _between(r, 2, 6)),
        ("CLOSE_FILE", 1),
        ("ACTIVATE_CONFIG", 1),
    )
    return _dnp3_attack(steps)(g, r, t0, visible)


def _s7_session(
    g: _Gen,
    r: random.Random,
    t0: int,
    src: _Asset,
    plc: _Asset,
    body: Callable[[_Flow, int, list[_Rec]], tuple[int, int]],
) -> list[_Attack]:
    f = _Flow(r, src.address, plc.address, 102, t0)
    records: list[_Rec] = []
    t = _s7_setup(f, t0 + 3 * _MS, records)
    t, primary = body(f, t, records)
    _close_flow(g, f, t, "cotp,s7comm", None, records)
    return [_attack(records, primary, {"src_ip": src.address, "dst_ip": plc.address}, f)]


def _a_s7_plc_stop(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    def body(f: _Flow, t: int, records: list[_Rec]) -> tuple[int, int]:
        records.append(_s7_job(t, f, True, 1, 0x29))
        records.append(_s7_ack(t + 30 * _MS, f, False, 1, 0x29))
        f.exchange(33, 22)
        return t + 40 * _MS, len(records) - 2

    attacks = _s7_session(g, r, t0, _attacker(g, r), _pick(r, g.plant.s7_plcs, g, visible), body)
    attacks[0].fields["function"] = "PLC_STOP"
    return attacks


def _a_s7_download(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    def body(f: _Flow, t: int, records: list[_Rec]) -> tuple[int, int]:
        primary, ref = len(records), 1
        for _ in range(_between(r, 1, 4)):  # one request/blocks/ended sequence per block
            records.append(_s7_job(t, f, True, ref, 0x1A))
            records.append(_s7_ack(t + 8 * _MS, f, False, ref, 0x1A))
            t += 15 * _MS
            # The PLC pulls the block: Download Block and Download Ended are its requests.
            for _ in range(_between(r, 1, 4)):
                records.append(_s7_job(t, f, False, ref, 0x1B))
                records.append(_s7_ack(t + 6 * _MS, f, True, ref, 0x1B))
                f.exchange(_between(r, 200, 480), 30)
                t += 12 * _MS
            records.append(_s7_job(t, f, False, ref, 0x1C))
            records.append(_s7_ack(t + 5 * _MS, f, True, ref, 0x1C))
            f.exchange(60, 40)
            t += 15 * _MS
            ref += 1
        records.append(_s7_job(t, f, True, ref, 0x28, "_INSE\tActivates a PLC module"))
        records.append(_s7_ack(t + 20 * _MS, f, False, ref, 0x28))
        f.exchange(50, 20)
        return t + 30 * _MS, primary

    attacks = _s7_session(g, r, t0, _attacker(g, r), _pick(r, g.plant.s7_plcs, g, visible), body)
    attacks[0].fields["function"] = "REQUEST_DOWNLOAD"
    return attacks


def _a_s7_upload(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    def body(f: _Flow, t: int, records: list[_Rec]) -> tuple[int, int]:
        primary, ref = len(records), 1
        for _ in range(_between(r, 2, 5)):  # one start/upload/end sequence per block read out
            records.append(_s7_job(t, f, True, ref, 0x1D))
            records.append(_s7_ack(t + 6 * _MS, f, False, ref, 0x1D))
            ref += 1
            for _ in range(_between(r, 1, 4)):
                t += 12 * _MS
                records.append(_s7_job(t, f, True, ref, 0x1E))
                records.append(_s7_ack(t + 6 * _MS, f, False, ref, 0x1E))
                f.exchange(32, _between(r, 200, 480))
                ref += 1
            t += 12 * _MS
            records.append(_s7_job(t, f, True, ref, 0x1F))
            records.append(_s7_ack(t + 5 * _MS, f, False, ref, 0x1F))
            ref += 1
            t += 15 * _MS
        return t, primary

    attacks = _s7_session(g, r, t0, _attacker(g, r), _pick(r, g.plant.s7_plcs, g, visible), body)
    attacks[0].fields["function"] = "START_UPLOAD"
    return attacks


def _a_s7plus_download(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    src = _attacker(g, r)
    plc = _pick(r, g.plant.s7plus_plcs, g, visible)
    f = _Flow(r, src.address, plc.address, 102, t0)
    records: list[_Rec] = []
    # TIA Portal's download: a sequence bracket around deleting the old blocks, creating the
    # new program blocks, writing their attributes, then invoking the activation.
    steps = [0x0556, 0x04D4] + [0x04CA] * _between(r, 2, 6) + [0x0542, 0x0560, 0x056B]
    t = t0 + 5 * _MS
    primary = -1
    for function in steps:
        if function == 0x04CA and primary < 0:
            primary = len(records)
        records.append(_s7plus_row(t, f, 0x31, function))
        records.append(_s7plus_row(t + _between(r, 5 * _MS, 40 * _MS), f, 0x32, function))
        f.exchange(_between(r, 400, 1400) if function == 0x04CA else 60, 40)
        t += _between(r, 60 * _MS, 300 * _MS)
    _close_flow(g, f, t, "cotp,s7comm-plus", None, records)
    return [
        _attack(
            records,
            primary,
            {"src_ip": src.address, "dst_ip": plc.address, "function": "CREATE_OBJECT"},
            f,
        )
    ]


def _cip_attack(
    requests: Callable[[random.Random], list[tuple[int, int, int | None]]],
    function: str,
) -> Callable[[_Gen, random.Random, int, bool], list[_Attack]]:
    """Explicit (unconnected) CIP requests over Send RR Data: (service, class, instance)."""

    def build(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
        src = _attacker(g, r)
        plc = r.choice(g.plant.enip_plcs)
        f = _Flow(r, src.address, plc.address, 44818, t0)
        records: list[_Rec] = []
        t, session = _enip_register(r, f, t0 + 3 * _MS, records)
        primary = -1
        for service, cls, instance in requests(r):
            if primary < 0:
                primary = len(records) + 1  # the CIP request row after its ENIP row
            size = _between(r, 400, 520) if cls == 0xA1 and service == 0x4C else 24
            t = _enip_exchange(
                f, t, 0x6F, session, None, service, cls, instance, None, (size, 24), records
            ) + _between(r, 20 * _MS, 200 * _MS)
        _close_flow(g, f, t, "enip", "enip", records)
        return [
            _attack(
                records,
                primary,
                {"src_ip": src.address, "dst_ip": plc.address, "function": function},
                f,
            )
        ]

    return build


def _firmware_requests(r: random.Random) -> list[tuple[int, int, int | None]]:
    # ControlFLASH-style update through the Nonvolatile Storage object (class 0xA1): start,
    # transfer the image in chunks, finish, then reset the device to boot the new firmware.
    chunks = [(0x4C, 0xA1, 0x01)] * _between(r, 3, 9)
    return [(0x4B, 0xA1, 0x01), *chunks, (0x4D, 0xA1, 0x01), (0x05, 0x01, 0x01)]


def _bacnet_attack(service: str) -> Callable[[_Gen, random.Random, int, bool], list[_Attack]]:
    def build(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
        src = _attacker(g, r, 0.4)
        target = r.choice(g.plant.bacnet_controllers)
        f = _Flow(r, src.address, target.address, 47808, t0, "udp", cport=47808)
        invoke = r.randrange(256)
        tr = t0 + _between(r, 10 * _MS, 60 * _MS)
        records = [
            _bacnet_row(t0, f, True, "Original_Unicast_NPDU", "CONFIRMED_REQUEST", service, invoke),
            _bacnet_row(tr, f, False, "Original_Unicast_NPDU", "SIMPLE_ACK", service, invoke),
        ]
        f.exchange(_between(r, 18, 40), 9)
        records.append(_conn_record(f, tr, "bacnet"))
        return [
            _attack(
                records,
                0,
                {"src_ip": src.address, "dst_ip": target.address, "function": service},
                f,
            )
        ]

    return build


def _a_cross_zone(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    src = r.choice(g.plant.it_clients)
    if r.random() < 0.7:
        plc = _pick(r, g.plant.modbus_plcs, g, visible)
        f = _Flow(r, src.address, plc.address, 502, t0)
        records: list[_Rec] = []
        blocks = [b for b in g.register_map(plc) if b[0] == "READ_HOLDING_REGISTERS"]
        t, _ = _modbus_reads(
            g, r, f, plc, t0 + 3 * _MS, _between(r, 2, 6), _between(r, 1, 60000), records, blocks
        )
        _close_flow(g, f, t, "modbus", "modbus", records)
        function, protocol, primary = "READ_HOLDING_REGISTERS", "modbus", 0
    else:
        plc = _pick(r, g.plant.s7_plcs, g, visible)
        f = _Flow(r, src.address, plc.address, 102, t0)
        records = []
        t = _s7_setup(f, t0 + 3 * _MS, records)
        for ref in range(1, _between(r, 3, 6)):
            records.append(_s7_job(t, f, True, ref, 0x04))
            records.append(_s7_ack(t + 6 * _MS, f, False, ref, 0x04))
            f.exchange(31, 80)
            t += _between(r, 50 * _MS, 300 * _MS)
        _close_flow(g, f, t, "cotp,s7comm", None, records)
        # The first Read Variable, after the setup exchange, leads the truth row.
        function, protocol, primary = "READ_VAR", "s7comm", 2
    fields = {"src_ip": src.address, "dst_ip": plc.address, "function": function}
    return [_attack(records, primary, fields | {"protocol": protocol}, f)]


def _rogue_address(g: _Gen, r: random.Random, prefix: str) -> str:
    while True:
        address = f"{prefix}.{_between(r, 200, 250)}"
        if address not in g.plant.by_address:
            return address


def _a_unknown_asset(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    plc = _pick(r, g.plant.modbus_plcs, g, visible)
    src = _rogue_address(g, r, plc.address.rsplit(".", 1)[0])  # a laptop plugged into the cell
    f = _Flow(r, src, plc.address, 502, t0)
    records: list[_Rec] = []
    func = r.choice(("READ_HOLDING_REGISTERS", "READ_COILS"))
    blocks = [b for b in g.register_map(plc) if b[0] == func]
    t, _ = _modbus_reads(
        g, r, f, plc, t0 + 3 * _MS, _between(r, 2, 8), _between(r, 1, 60000), records, blocks
    )
    _close_flow(g, f, t, "modbus", "modbus", records)
    return [_attack(records, 0, {"src_ip": src, "dst_ip": plc.address, "function": func}, f)]


def _a_internet_exposed(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    # 185.0.0.0/8 is globally routable (Python's is_global is True); the documentation ranges
    # 192.0.2/24, 198.51.100/24 and 203.0.113/24 count as private to ipaddress and would hide it.
    src = f"185.{_between(r, 1, 255)}.{_between(r, 0, 256)}.{_between(r, 1, 255)}"
    plc = r.choice(g.plant.exposed)
    records: list[_Rec] = []
    if "modbus" in plc.serves:
        f = _Flow(r, src, plc.address, 502, t0, cport=_between(r, 1024, 65535))
        tid, t = _between(r, 0, 10), t0 + 90 * _MS
        tr = t + _between(r, 3 * _MS, 15 * _MS)
        records.append(_modbus_row(t, f, tid, 0, "REPORT_SLAVE_ID", "REQ"))
        records.append(_modbus_row(tr, f, tid, 0, "REPORT_SLAVE_ID", "RESP"))
        f.exchange(8, 40)
        _close_flow(g, f, tr + 120 * _MS, "modbus", "modbus", records)
        function, protocol = "REPORT_SLAVE_ID", "modbus"
    else:
        # The classic S7 banner grab: setup communication, then read the module identification.
        f = _Flow(r, src, plc.address, 102, t0, cport=_between(r, 1024, 65535))
        t = _s7_setup(f, t0 + 90 * _MS, records)
        records.append(_s7_userdata(t, f, True, 1, 0x4, 0x01))
        records.append(_s7_userdata(t + 8 * _MS, f, False, 1, 0x4, 0x01))
        f.exchange(33, 150)
        _close_flow(g, f, t + 130 * _MS, "cotp,s7comm", None, records)
        function, protocol = "SETUP_COMMUNICATION", "s7comm"
    return [
        _attack(
            records,
            0,
            {"src_ip": src, "dst_ip": plc.address, "function": function, "protocol": protocol},
            f,
        )
    ]


# Feodo Tracker botnet C2 servers (abuse.ch IP blocklist of 2024-04-04, status online):
# (address, port, first seen, last online, malware) as the list gives them.
_FEODO_ROWS = (
    ("192.9.135.73", 1194, "2023-05-23 17:51:44", "2024-04-01", "Pikabot"),
    ("213.199.41.33", 13721, "2024-03-26 23:30:07", "2024-04-04", "Pikabot"),
    ("194.233.91.144", 5000, "2024-03-26 23:30:11", "2024-04-04", "Pikabot"),
    ("84.247.157.112", 13783, "2024-03-26 23:30:15", "2024-04-04", "Pikabot"),
)
_FEODO_C2 = tuple((address, port) for address, port, *_ in _FEODO_ROWS)


def _write_cti(directory: str) -> str:
    """The threat intelligence of the demo: the Feodo rows above as abuse.ch publishes them,
    and a feed file for `otsec cti refresh`. Returns the feed file's path."""
    os.makedirs(directory, exist_ok=True)
    blocklist = os.path.join(directory, "feodotracker_ipblocklist.csv")
    with open(blocklist, "w", encoding="utf-8") as handle:
        handle.write(
            "# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (CSV): the online entries of\n"
            "# the list of 2024-04-04 07:03:03 UTC (https://feodotracker.abuse.ch/blocklist/)\n"
            '"first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"\n'
        )
        for address, port, first_seen, last_online, malware in _FEODO_ROWS:
            handle.write(
                f'"{first_seen}","{address}","{port}","online","{last_online}","{malware}"\n'
            )
    feeds = os.path.join(directory, "feeds.yaml")
    with open(feeds, "w", encoding="utf-8") as handle:
        handle.write(
            "# Threat intelligence for the generated plant: `otsec cti refresh --feeds` this.\n"
            "feeds:\n"
            "  - name: feodo\n"
            "    type: csv\n"
            "    preset: feodo\n"
            "    path: feodotracker_ipblocklist.csv  # relative to this file\n"
            "    confidence: 80\n"
            "    tlp: clear\n"
        )
    return feeds


def _a_c2_beacon(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    src = _attacker(g, r, 0.5)
    c2, port = r.choice(_FEODO_C2)
    records: list[_Rec] = []
    first = None
    t = t0
    for _ in range(_between(r, 3, 6)):  # a beacon every minute or so, jittered
        f = _Flow(r, src.address, c2, port, t)
        first = first or f
        for _ in range(_between(r, 3, 7)):
            f.exchange(_between(r, 100, 600), _between(r, 60, 1400))
        end = t + _between(r, 200 * _MS, 2 * _SECOND)
        records.append(_conn_record(f, end, "ssl"))
        records.append(_eve_flow(f, end, "tls"))
        t += _between(r, 45 * _SECOND, 75 * _SECOND)
    assert first is not None
    return [
        _attack(
            records,
            0,
            {"src_ip": src.address, "dst_ip": c2, "function": None, "dst_port": port},
            first,
            time_us=first.start,
        )
    ]


# (base scenario, Suricata signature id, message) for the companion severity-1 alerts. Local
# rule ids (1000000-1999999 is the local range), messages in the style of ET SCADA rules.
_SCADA_SIGNATURES = (
    (
        "modbus_write_from_non_ews",
        1000101,
        "ET SCADA Modbus TCP Write Single Register from non-engineering host",
    ),
    ("modbus_restart_comm", 1000102, "ET SCADA Modbus TCP Restart Communications Option"),
    ("modbus_mask_write", 1000103, "ET SCADA Modbus TCP Mask Write Register"),
    ("dnp3_cold_restart", 1000201, "ET SCADA DNP3 Cold Restart From Unauthorized Client"),
    ("dnp3_warm_restart", 1000202, "ET SCADA DNP3 Warm Restart From Unauthorized Client"),
    ("dnp3_stop_application", 1000203, "ET SCADA DNP3 Stop Application From Unauthorized Client"),
    (
        "dnp3_disable_unsolicited",
        1000204,
        "ET SCADA DNP3 Disable Unsolicited Responses From Unauthorized Client",
    ),
    ("dnp3_file_transfer", 1000205, "ET SCADA DNP3 File Open For Write From Unauthorized Client"),
)


def _a_scada_alert(g: _Gen, r: random.Random, t0: int, visible: bool) -> list[_Attack]:
    base_name, sid, signature = r.choice(_SCADA_SIGNATURES)
    base = _SCENARIO_BY_NAME[base_name]
    attacks = base.build(g, r, t0, True)
    main = attacks[0]
    main.fields.update(
        scenario=base.name, technique=base.technique, technique_name=base.technique_name
    )
    main.fields.setdefault("protocol", base.protocol)
    f = main.flow
    assert f is not None
    alert = {
        "action": "allowed",
        "gid": 1,
        "signature_id": sid,
        "rev": 1,
        "signature": signature,
        "category": "Attempted Administrator Privilege Gain",
        "severity": 1,
        "metadata": {"signature_severity": ["Major"], "mitre_technique_id": [base.technique]},
    }
    app_proto = "dnp3" if base.protocol == "dnp3" else "modbus"
    record = _eve(
        f,
        main.time + 150,
        "alert",
        {"app_proto": app_proto, "direction": "to_server", "alert": alert},
    )
    companion = _attack(
        [record],
        0,
        {
            "src_ip": main.fields["src_ip"],
            "dst_ip": main.fields["dst_ip"],
            "function": main.fields["function"],
            "technique": base.technique,
            "technique_name": base.technique_name,
            "protocol": base.protocol,
            "accompanies": base.name,
            "signature_id": sid,
        },
    )
    return [main, companion]


# fmt: off
SCENARIOS: tuple[_Scenario, ...] = (
    _Scenario("modbus_write_from_non_ews", "T0855", "Unauthorized Command Message", "modbus",
              _a_modbus_write),
    _Scenario("modbus_mask_write", "T0836", "Modify Parameter", "modbus", _a_modbus_mask_write),
    _Scenario("modbus_restart_comm", "T0816", "Device Restart/Shutdown", "modbus",
              _a_modbus_restart_comm),
    _Scenario("modbus_device_id_sweep", "T0888", "Remote System Information Discovery", "modbus",
              _a_modbus_device_id_sweep),
    _Scenario("modbus_unit_scan", "T0846", "Remote System Discovery", "modbus",
              _a_modbus_unit_scan),
    _Scenario("dnp3_cold_restart", "T0816", "Device Restart/Shutdown", "dnp3",
              _dnp3_attack((("COLD_RESTART", 1),))),
    _Scenario("dnp3_warm_restart", "T0816", "Device Restart/Shutdown", "dnp3",
              _dnp3_attack((("WARM_RESTART", 1),))),
    _Scenario("dnp3_stop_application", "T0881", "Service Stop", "dnp3",
              _dnp3_attack((("STOP_APPL", 1),))),
    _Scenario("dnp3_file_transfer", "T0843", "Program Download", "dnp3", _dnp3_file_transfer),
    # ATT&CK for ICS v18 (the release in shared/fixtures) names blocking reports T0804; v19
    # (April 2026) folds it into T1691.002 Block Operational Technology Message: Reporting.
    _Scenario("dnp3_disable_unsolicited", "T0804", "Block Reporting Message", "dnp3",
              _dnp3_attack((("DISABLE_UNSOLICITED", 1),))),
    _Scenario("s7_plc_stop", "T0881", "Service Stop", "s7comm", _a_s7_plc_stop),
    _Scenario("s7_program_download", "T0843", "Program Download", "s7comm", _a_s7_download),
    _Scenario("s7_program_upload", "T0845", "Program Upload", "s7comm", _a_s7_upload),
    _Scenario("s7plus_program_download", "T0843", "Program Download", "s7comm_plus",
              _a_s7plus_download),
    _Scenario("cip_stop", "T0881", "Service Stop", "cip",
              _cip_attack(lambda r: [(0x07, 0x8E, 0x01)], "Stop")),
    _Scenario("cip_reset", "T0816", "Device Restart/Shutdown", "cip",
              _cip_attack(lambda r: [(0x05, 0x01, 0x01)], "Reset")),
    _Scenario("cip_firmware_update", "T0839", "Module Firmware", "cip",
              _cip_attack(_firmware_requests, "NVS_Update_0x4b")),
    _Scenario("bacnet_reinitialize", "T0816", "Device Restart/Shutdown", "bacnet",
              _bacnet_attack("reinitialize_device")),
    _Scenario("bacnet_dcc", "T0814", "Denial of Service", "bacnet",
              _bacnet_attack("device_communication_control")),
    _Scenario("cross_zone_ics", "T0886", "Remote Services", "modbus", _a_cross_zone),
    _Scenario("unknown_asset_ics", "T0846", "Remote System Discovery", "modbus", _a_unknown_asset),
    _Scenario("internet_exposed_ics", "T0883", "Internet Accessible Device", "modbus",
              _a_internet_exposed),
    _Scenario("cti_c2_beacon", "T0869", "Standard Application Layer Protocol", "ssl",
              _a_c2_beacon),
    # Technique and protocol are those of the attack the alert accompanies.
    _Scenario("suricata_scada_alert", "", "", "", _a_scada_alert),
)
# fmt: on
_SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}


def _build_attacks(g: _Gen, scenario: _Scenario, seed: int, t0: int) -> list[_Attack]:
    attacks = scenario.build(g, random.Random(seed), t0, False)
    for attack in attacks:
        fields = attack.fields
        fields.setdefault("scenario", scenario.name)
        fields.setdefault("technique", scenario.technique)
        fields.setdefault("technique_name", scenario.technique_name)
        fields.setdefault("protocol", scenario.protocol)
    return attacks


# --------------------------------------------------------------------------------------------
# Malformed records
# --------------------------------------------------------------------------------------------

DEFECTS = (
    "truncated_line",
    "column_count",
    "bad_port",
    "canonified_ts",
    "invalid_utf8",
    "binary_garbage",
    "bad_json",
    "missing_field",
    "wrong_type",
    "unknown_kind",
    "out_of_range_function",
)


def _malformed(g: _Gen, r: random.Random, defect: str, t: int) -> tuple[int, bytes]:
    """One record that Decode or Validate must reject, in the file where such damage happens."""
    client, plc = r.choice(g.plant.modbus_reads)
    f = _Flow(r, client.address, plc.address, 502, t)
    if defect == "truncated_line":  # a writer killed mid-line
        row = _modbus_row(t, f, r.randrange(65536), plc.unit, "READ_HOLDING_REGISTERS", "REQ")
        fields = row[2].split(b"\t")
        keep = _between(r, 3, 9)
        cut = fields[keep][: max(1, len(fields[keep]) // 2)]
        return _MODBUS, b"\t".join(fields[:keep]) + b"\t" + cut
    if defect == "column_count":  # a line from a different schema version
        master, rtu = r.choice(g.plant.dnp3_polls)
        d = _Flow(r, master.address, rtu.address, 20000, t)
        return _DNP3, _dnp3_row(t, d, "READ", "RESPONSE", 0)[2] + b"\t0"
    if defect == "bad_port":
        f.exchange(12, 25)
        line = _conn_record(f, t + 40 * _MS, "modbus")[2]
        return _CONN, line.replace(
            f"\t{plc.address}\t502\t".encode(), f"\t{plc.address}\t70000\t".encode(), 1
        )
    if defect == "canonified_ts":  # a btest baseline copied into production
        s7client, s7plc = r.choice(g.plant.s7_reads)
        s = _Flow(r, s7client.address, s7plc.address, 102, t)
        line = _s7_job(t, s, True, 1, 0x04)[2]
        return _S7COMM, b"XXXXXXXXXX.XXXXXX" + line[line.index(b"\t") :]
    if defect == "invalid_utf8":
        bms, controller, _ = r.choice(g.plant.bacnet_polls)
        b = _Flow(r, bms.address, controller.address, 47808, t, "udp", cport=47808)
        line = _bacnet_row(
            t, b, True, "Original_Unicast_NPDU", "CONFIRMED_REQUEST", "read_property", 7
        )[2]
        return _BACNET, line.replace(b"read_property", b"read_\xff\xfeproperty")
    if defect == "binary_garbage":
        # Starts with a byte that is neither "#", "{" nor whitespace and is never valid UTF-8.
        body = bytes(r.choice(_GARBAGE_BYTES) for _ in range(_between(r, 30, 120)))
        return _CIP, b"\xff" + body
    if defect == "bad_json":
        line = _eve_flow(f, t, "modbus")[2]
        return _EVE, line[: _between(r, len(line) // 3, len(line) - 2)]
    if defect == "missing_field":
        read = {"address": 0, "quantity": 4}
        request = _modbus_message("READ_HOLDING_REGISTERS", 1, plc.unit, read=read)
        record = msgspec.json.decode(_modbus_eve(t, f, 1, request, None)[2])
        del record["src_ip"]
        return _EVE, _encode(record)
    if defect == "unknown_kind":
        tls = _eve(f, t, "tls", {"tls": {"sni": "update.example.com", "version": "TLS 1.2"}})[2]
        return _EVE, tls
    ics: dict[str, Any] = {
        "protocol": "modbus",
        "function_code": 3,
        "function": "READ_HOLDING_REGISTERS",
    }
    if defect == "out_of_range_function":
        ics = {"protocol": "modbus", "function_code": 300, "unit_id": plc.unit, "is_request": True}
    line = _envelope(r, t, _AGENT_MODBUS, client.address, f.cport, plc.address, 502, ics)[2]
    if defect == "wrong_type":
        line = line.replace(f'"port":{f.cport}'.encode(), b'"port":"http"', 1)
    return _AGENT, line


_GARBAGE_BYTES = bytes(b for b in range(256) if b not in (0x0A, 0x0D))


# --------------------------------------------------------------------------------------------
# Writing: files, ground truth, duplicates and malformed lines
# --------------------------------------------------------------------------------------------


class _TruthItem:
    """Collects the file/line of each record of one attack; writes its row when complete."""

    __slots__ = ("attack", "lines", "pending", "primary")

    def __init__(self, attack: _Attack) -> None:
        self.attack = attack
        self.pending = len(attack.records)
        self.lines: list[tuple[str, int]] = []
        self.primary: tuple[str, int] | None = None


class _Sink:
    """The output files. Places malformed and duplicate lines at planned positions."""

    def __init__(
        self,
        out_dir: str,
        g: _Gen,
        r: random.Random,
        malformed: Sequence[int],
        duplicates: Sequence[int],
    ) -> None:
        self.out_dir = out_dir
        self.g, self.r = g, r
        self.handles: list[BinaryIO] = []
        self.lines = [0] * len(_FILES)
        self.data = [0] * len(_FILES)
        for index, rel in enumerate(_FILES):
            path = os.path.join(out_dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            handle = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close()
            if index in _ZEEK_LOGS:
                log, columns = _ZEEK_LOGS[index]
                handle.write(_zeek_header(log, columns, _START_US))
                self.lines[index] = _ZEEK_HEADER_LINES
            self.handles.append(handle)
        self.truth = open(os.path.join(out_dir, "truth.jsonl"), "wb", buffering=1 << 16)  # noqa: SIM115
        self.specials: deque[tuple[int, str]] = deque(
            sorted([(p, "malformed") for p in malformed] + [(p, "duplicate") for p in duplicates])
        )
        self.defect = r.randrange(len(DEFECTS))
        self.recent: deque[tuple[int, int, bytes]] = deque(maxlen=512)
        self.written = 0
        self.attacks = self.malformed = self.duplicates = 0
        self.first = self.last = 0

    def _put(self, index: int, payload: bytes) -> int:
        self.handles[index].write(payload + b"\n")
        self.lines[index] += 1
        self.data[index] += 1
        self.written += 1
        return self.lines[index]

    def _special(self, kind: str) -> bool:
        if kind == "malformed":
            defect = DEFECTS[self.defect % len(DEFECTS)]
            self.defect += 1
            index, payload = _malformed(self.g, self.r, defect, self.last or _START_US)
            line = self._put(index, payload)
            self._truth(
                {"type": "malformed", "defect": defect, "file": _FILES[index], "line": line}
            )
            self.malformed += 1
            return True
        if not self.recent:
            return False  # nothing to redeliver yet: try again after the next line
        index, original, payload = self.recent[self.r.randrange(len(self.recent))]
        line = self._put(index, payload)
        self._truth({"type": "duplicate", "file": _FILES[index], "line": line, "of_line": original})
        self.duplicates += 1
        return True

    def _drain(self, final: bool = False) -> None:
        specials = self.specials
        while specials and (final or specials[0][0] <= self.written):
            if not self._special(specials[0][1]):
                if final:
                    specials.popleft()  # cannot happen: duplicates never outnumber originals
                    continue
                return
            specials.popleft()

    def write(
        self, key: int, index: int, payload: bytes, owner: _TruthItem | None, primary: bool
    ) -> None:
        if self.specials and self.specials[0][0] <= self.written:
            self._drain()
        line = self._put(index, payload)
        self.first = self.first or key
        self.last = max(self.last, key)
        if owner is None:
            self.recent.append((index, line, payload))
            return
        where = (_FILES[index], line)
        owner.lines.append(where)
        if primary:
            owner.primary = where
        owner.pending -= 1
        if owner.pending == 0:
            self._attack_truth(owner)

    def _attack_truth(self, item: _TruthItem) -> None:
        attack = item.attack
        assert item.primary is not None
        fields = dict(attack.fields)
        row = {
            "type": "attack",
            "scenario": fields.pop("scenario"),
            "technique": fields.pop("technique"),
            "technique_name": fields.pop("technique_name"),
            "file": item.primary[0],
            "line": item.primary[1],
            "lines": sorted(item.lines),
            "src_ip": fields.pop("src_ip"),
            "dst_ip": fields.pop("dst_ip"),
            "time": _rfc3339(attack.time),
            "protocol": fields.pop("protocol"),
            "function": fields.pop("function"),
            **fields,
        }
        self._truth(row)
        self.attacks += 1

    def _truth(self, row: dict[str, Any]) -> None:
        self.truth.write(_encode(row))
        self.truth.write(b"\n")

    def close(self) -> None:
        self._drain(final=True)
        closed = _zeek_date(self.last or _START_US)
        for index, handle in enumerate(self.handles):
            if index in _ZEEK_LOGS:
                handle.write(f"#close\t{closed}\n".encode())
            handle.close()
        self.truth.close()


class _Merger:
    """Orders the records of overlapping conversations by the time each sensor writes them."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.heap: list[tuple[int, int, int, bytes, _TruthItem | None, bool]] = []
        self.seq = 0

    def push(
        self, records: Sequence[_Rec], owner: _TruthItem | None = None, primary: int = -1
    ) -> None:
        heap, seq = self.heap, self.seq
        for i, (key, index, payload) in enumerate(records):
            heapq.heappush(heap, (key, seq, index, payload, owner, i == primary))
            seq += 1
        self.seq = seq

    def flush(self, before: int) -> None:
        """Write every record due before ``before``: nothing pushed later can precede them."""
        heap, write = self.heap, self.sink.write
        while heap and heap[0][0] < before:
            key, _, index, payload, owner, primary = heapq.heappop(heap)
            write(key, index, payload, owner, primary)

    def finish(self) -> None:
        self.flush(1 << 62)


# --------------------------------------------------------------------------------------------
# Planning and the main loop
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Planned:
    scenario: _Scenario
    seed: int
    size: int
    position: int  # normal records generated before it starts


def _spread(r: random.Random, count: int, span: int) -> list[int]:
    """``count`` positions spread over ``span``: one in each equal slice, jittered."""
    if count <= 0:
        return []
    return sorted(min(span, int((k + r.random()) * span / count)) for k in range(count))


def _plan_attacks(
    g: _Gen, r: random.Random, config: GeneratorConfig, budget: int
) -> list[tuple[_Scenario, int, int]]:
    """Which attacks to inject, each with its seed and record count, within ``budget``."""
    if config.attack_rate <= 0 or budget <= 0:
        return []
    target = min(budget, round(config.events * config.attack_rate))
    every = config.events >= 2000
    order = list(SCENARIOS)
    r.shuffle(order)
    chosen: list[tuple[_Scenario, int, int]] = []
    total = 0
    i = 0
    while True:
        scenario = order[i % len(order)]
        seed = r.getrandbits(64)
        size = sum(len(a.records) for a in _build_attacks(g, scenario, seed, _START_US))
        first_round = i < len(order)
        limit = budget if every and first_round else target
        if total + size <= limit:
            chosen.append((scenario, seed, size))
            total += size
        elif not (every and first_round):
            break
        i += 1
    return chosen


def generate(config: GeneratorConfig) -> GenerateReport:
    """Write the plant's sensor files, ``assets.csv``, ``truth.jsonl`` and ``cti/`` (a feed
    file and the Feodo list its C2 beacons use) under ``out_dir``."""
    out_dir = os.path.abspath(config.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(config.seed)
    plant = _build_plant(config.assets)
    g = _Gen(plant)
    assets_path = os.path.join(out_dir, "assets.csv")
    _write_assets(assets_path, plant)
    feeds_path = _write_cti(os.path.join(out_dir, "cti"))

    events = config.events
    n_malformed = min(events, round(events * config.malformed_rate))
    rest = events - n_malformed
    # A duplicate copies a normal line, so there are never more duplicates than originals.
    n_duplicates = min(round(events * config.duplicate_rate), rest // 2)
    originals = rest - n_duplicates
    plan_rng = random.Random(rng.getrandbits(64))
    attacks = _plan_attacks(g, plan_rng, config, originals - n_duplicates)
    n_normal = originals - sum(size for _, _, size in attacks)
    positions = _spread(plan_rng, len(attacks), n_normal)
    plan_rng.shuffle(attacks)
    planned = deque(
        _Planned(s, seed, size, p) for (s, seed, size), p in zip(attacks, positions, strict=True)
    )

    sink = _Sink(
        out_dir,
        g,
        random.Random(rng.getrandbits(64)),
        _spread(plan_rng, n_malformed, events),
        _spread(plan_rng, n_duplicates, events),
    )
    merger = _Merger(sink)
    builders = [b for b, _ in _NORMAL]
    weights = list(itertools.accumulate(w for _, w in _NORMAL))
    traffic = random.Random(rng.getrandbits(64))
    clock = _START_US
    left = n_normal
    try:
        while left > 0 or planned:
            if planned and (planned[0].position <= n_normal - left or left == 0):
                item = planned.popleft()
                for attack in _build_attacks(g, item.scenario, item.seed, clock):
                    merger.push(attack.records, _TruthItem(attack), attack.primary)
                continue
            builder = traffic.choices(builders, cum_weights=weights)[0]
            records = builder(g, traffic, clock)
            if len(records) > left:
                records = records[:left]
            merger.push(records)
            left -= len(records)
            clock += max(1, int(len(records) * _US_PER_RECORD * (0.5 + traffic.random())))
            merger.flush(clock)
        merger.finish()
    finally:
        sink.close()

    sensor_dir = os.path.join(out_dir, "sensors")
    return GenerateReport(
        out_dir=out_dir,
        sensor_dir=sensor_dir,
        truth_path=os.path.join(out_dir, "truth.jsonl"),
        assets_path=assets_path,
        feeds_path=feeds_path,
        records=sink.written,
        attacks=sink.attacks,
        malformed=sink.malformed,
        duplicates=sink.duplicates,
        files={rel: count for rel, count in zip(_FILES, sink.data, strict=True)},
        assets=len(plant.assets),
        first_time=_rfc3339(sink.first or _START_US),
        last_time=_rfc3339(sink.last or _START_US),
    )
