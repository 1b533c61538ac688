"""Stage 5 (`transforms.assets`, `schemas.asset`): loading the inventory, looking addresses up,
enriching events, the Beam transform, and the plant inventory `otsec generate` writes.

Asset context drives most OT rules (who may write to a PLC, which zones may talk), so a
wrong lookup is a missed or a false alert; these tests pin the lookup and the two flags.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to, is_empty

import transforms.assets as assets_module
from beam_pipelines.generate import GeneratorConfig, generate
from schemas.asset import ROLES, Asset, AssetInventory
from schemas.errors import ValidationError
from schemas.event import AssetContext, NetworkEndpoint, NormalizedEvent
from schemas.records import SourceFormat, SourcePosition
from transforms.assets import (
    AssetTable,
    EnrichWithAssets,
    enrich_event,
    enrich_with,
    inventory_of,
    load_inventory,
    table_for,
)

HEADER = "address,name,role,purdue_level,zone,criticality,vendor,model,firmware\n"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def asset(address: str, name: str, zone: str = "cell-a", role: str = "plc", **extra: Any) -> Asset:
    return Asset(
        address=address,
        name=name,
        role=role,  # type: ignore[arg-type]
        purdue_level=extra.pop("purdue_level", 1),
        zone=zone,
        criticality=extra.pop("criticality", 3),
        **extra,
    )


# A small plant: two cells, a control room, a management network and a nested cell network.
PLANT = inventory_of(
    [
        asset("10.10.1.10", "plc-a1", "cell-a", vendor="Siemens", model="S7-1500"),
        asset("10.10.2.10", "plc-b1", "cell-b"),
        asset("10.20.0.10", "hmi-01", "control", role="hmi", purdue_level=2),
        asset("10.20.0.50", "ews-01", "control", role="engineering_workstation"),
        asset("10.10.0.0/16", "cells", "cells", role="other"),
        asset("10.10.3.0/24", "cell-c", "cell-c", role="other"),
        asset("10.10.3.128/25", "cell-c-io", "cell-c-io", role="other"),
        asset("fd00:10::/64", "ipv6-cell", "cell-v6", role="other"),
        asset("fd00:10::5", "plc-v6", "cell-v6-host"),
    ],
    source="test",
)
TABLE = AssetTable(PLANT)


def write(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def event(
    src: str = "10.20.0.10", dst: str = "10.10.1.10", event_id: str = "e1"
) -> NormalizedEvent:
    return NormalizedEvent(
        event_id=event_id,
        time=T0,
        class_uid=4001,
        category_uid=4,
        activity_id=6,
        type_uid=400106,
        severity_id=1,
        source_format=SourceFormat.ZEEK_TSV,
        source_kind="zeek.conn",
        observer="zeek",
        message="test",
        src=NetworkEndpoint(ip=src, port=50000),
        dst=NetworkEndpoint(ip=dst, port=502),
        source=SourcePosition(uri="conn.log", line=1),
    )


def rejected(path: str) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        load_inventory(path)
    return caught.value


# --- load_inventory: CSV ----------------------------------------------------------------


def test_csv_with_bom_and_empty_optional_columns(tmp_path: Path) -> None:
    """Excel saves CSV with a UTF-8 BOM; the first column must still be ``address``, and
    empty vendor/model/firmware cells are "unknown" (None), not empty strings."""
    path = write(
        tmp_path / "assets.csv",
        "\ufeff"
        + HEADER
        + "10.10.1.10,plc-a1,plc,1,cell-a,5,Siemens,S7-1500,V2.9\n"
        + "10.20.0.10,hmi-01,hmi,2,control,3,,,\n",
    )
    inventory = load_inventory(path)
    assert inventory.assets == (
        Asset(
            address="10.10.1.10",
            name="plc-a1",
            role="plc",
            purdue_level=1,
            zone="cell-a",
            criticality=5,
            vendor="Siemens",
            model="S7-1500",
            firmware="V2.9",
        ),
        Asset(
            address="10.20.0.10",
            name="hmi-01",
            role="hmi",
            purdue_level=2,
            zone="control",
            criticality=3,
        ),
    )
    assert inventory.assets[1].vendor is None
    assert inventory.source == os.path.abspath(path)


def test_csv_without_optional_columns_or_with_short_rows(tmp_path: Path) -> None:
    """Only the six required columns are needed; a row missing its trailing optional cells
    loads with those fields unknown."""
    path = write(
        tmp_path / "a.csv",
        "address,name,role,purdue_level,zone,criticality\n10.0.0.1,plc,plc,1,z,1\n",
    )
    assert load_inventory(path).assets == (asset("10.0.0.1", "plc", "z", criticality=1),)
    short = write(tmp_path / "b.csv", HEADER + "10.0.0.1,plc,plc,1,z,1\n")
    assert load_inventory(short).assets[0].firmware is None


def test_csv_cidr_rows_and_host_rows_given_as_slash_32(tmp_path: Path) -> None:
    """Addresses are stored canonically: a /32 (or /128) is a host, a network with host bits
    set is its network, IPv6 is compressed, surrounding spaces are ignored."""
    path = write(
        tmp_path / "assets.csv",
        HEADER
        + "10.10.1.10/32,plc-a1,plc,1,cell-a,5,,,\n"
        + "10.10.2.0/24,cell-b,other,1,cell-b,2,,,\n"
        + "10.10.3.77/24,cell-c,other,1,cell-c,2,,,\n"
        + "fd00:0010:0000:0000:0000:0000:0000:0005/128,plc-v6,plc,1,v6,5,,,\n"
        + "FD00:20::/64,cell-v6,other,1,v6,2,,,\n"
        + " 10.20.0.10 ,hmi-01,hmi,2,control,3,,,\n",
    )
    addresses = {a.name: a.address for a in load_inventory(path).assets}
    assert addresses == {
        "plc-a1": "10.10.1.10",
        "cell-b": "10.10.2.0/24",
        "cell-c": "10.10.3.0/24",
        "plc-v6": "fd00:10::5",
        "cell-v6": "fd00:20::/64",
        "hmi-01": "10.20.0.10",
    }


def test_csv_header_only_is_an_empty_inventory(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path / "a.csv", HEADER))
    assert inventory.assets == ()
    assert not AssetTable(inventory).lookup("10.0.0.1")


# --- load_inventory: JSON ---------------------------------------------------------------

ROWS = [
    {
        "address": "10.10.1.10",
        "name": "plc-a1",
        "role": "plc",
        "purdue_level": 1,
        "zone": "cell-a",
        "criticality": 5,
        "vendor": "Siemens",
        "model": None,
        "firmware": "",
    },
    {
        "address": "10.10.2.0/24",
        "name": "cell-b",
        "role": "other",
        "purdue_level": 1,
        "zone": "cell-b",
        "criticality": 2,
        "comment": "ignored",
    },
]


def test_json_list_and_object_with_assets_key_load_the_same(tmp_path: Path) -> None:
    """Both JSON shapes are accepted, with the same rows, version and null/empty optionals."""
    as_list = load_inventory(write(tmp_path / "a.json", json.dumps(ROWS)))
    as_object = load_inventory(write(tmp_path / "b.json", json.dumps({"assets": ROWS}, indent=2)))
    assert as_list.assets == as_object.assets
    assert as_list.version == as_object.version
    plc = next(a for a in as_list.assets if a.name == "plc-a1")
    assert (plc.vendor, plc.model, plc.firmware) == ("Siemens", None, None)
    assert {a.address for a in as_list.assets} == {"10.10.1.10", "10.10.2.0/24"}


def test_json_and_csv_of_the_same_rows_have_the_same_version(tmp_path: Path) -> None:
    """The version is a digest of the rows, not of the file: converting the inventory's format
    does not make every worker rebuild its table."""
    csv_path = write(
        tmp_path / "a.csv",
        HEADER
        + "10.10.2.0/24,cell-b,other,1,cell-b,2,,,\n10.10.1.10,plc-a1,plc,1,cell-a,5,Siemens,,\n",
    )
    json_path = write(tmp_path / "a.json", json.dumps(ROWS))
    assert load_inventory(csv_path).version == load_inventory(json_path).version


# --- load_inventory: errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("10.0.0.1,plc-1,controller,1,z,1,,,", "role", "Invalid enum value 'controller'"),
        ("10.0.0.1,plc-1,plc,7,z,1,,,", "purdue_level", "<= 5"),
        ("10.0.0.1,plc-1,plc,-1,z,1,,,", "purdue_level", ">= 0"),
        ("10.0.0.1,plc-1,plc,level1,z,1,,,", "purdue_level", "Expected `int`"),
        ("10.0.0.1,plc-1,plc,1,z,0,,,", "criticality", ">= 1"),
        ("10.0.0.1,plc-1,plc,1,z,6,,,", "criticality", "<= 5"),
        ("10.0.0.1,,plc,1,z,1,,,", "name", "length >= 1"),
        ("10.0.0.1,plc-1,plc,1,,1,,,", "zone", "length >= 1"),
        ("10.0.0.999,plc-1,plc,1,z,1,,,", "address", "10.0.0.999"),
        ("plc.example,plc-1,plc,1,z,1,,,", "address", "plc.example"),
        (",plc-1,plc,1,z,1,,,", "address", "address"),
        ("10.0.0.0/33,plc-1,plc,1,z,1,,,", "address", "10.0.0.0/33"),
    ],
)
def test_csv_bad_values_name_file_line_and_field(
    tmp_path: Path, row: str, field: str, words: str
) -> None:
    """The operator fixing a 2,000-row inventory needs the line and the column, not a trace."""
    path = write(tmp_path / "assets.csv", HEADER + "10.9.9.9,ok,plc,1,z,1,,,\n" + row + "\n")
    error = rejected(path)
    assert error.message.startswith(f"{path}:3: ")
    assert error.field == field
    assert words in error.message


def test_csv_missing_columns_are_listed(tmp_path: Path) -> None:
    error = rejected(write(tmp_path / "a.csv", "address,name,role\n10.0.0.1,plc-1,plc\n"))
    assert error.message.endswith("missing columns purdue_level, zone, criticality")
    assert str(tmp_path / "a.csv") in error.message
    assert error.field == "purdue_level"


def test_a_file_without_a_header_is_missing_columns(tmp_path: Path) -> None:
    error = rejected(write(tmp_path / "a.csv", "10.0.0.1,plc-1,plc,1,z,1\n"))
    assert "missing columns address, name, role, purdue_level, zone, criticality" in error.message


def test_an_empty_file_is_missing_columns(tmp_path: Path) -> None:
    assert "missing columns" in rejected(write(tmp_path / "a.csv", "")).message


def test_duplicate_address_is_rejected_even_when_spelled_differently(tmp_path: Path) -> None:
    """``10.0.0.1`` and ``10.0.0.1/32`` are one device; two rows for it would make the
    answer depend on row order."""
    path = write(
        tmp_path / "a.csv",
        HEADER + "10.0.0.1,plc-1,plc,1,z,1,,,\n10.0.0.1/32,plc-2,plc,1,z,1,,,\n",
    )
    error = rejected(path)
    assert error.message == f"{path}:3: address 10.0.0.1 is listed twice (first at {path}:2)"
    assert error.field == "address"
    networks = write(
        tmp_path / "b.csv",
        HEADER + "10.0.0.0/24,n1,other,1,z,1,,,\n10.0.0.9/24,n2,other,1,z,1,,,\n",
    )
    assert "address 10.0.0.0/24 is listed twice" in rejected(networks).message


@pytest.mark.parametrize(
    ("rows", "where", "field", "words"),
    [
        ([{**ROWS[0], "role": "robot"}], "[0]", "role", "Invalid enum value 'robot'"),
        ([ROWS[1], {**ROWS[0], "purdue_level": 7}], "[1]", "purdue_level", "<= 5"),
        ([{**ROWS[0], "criticality": 0}], "[0]", "criticality", ">= 1"),
        ([{**ROWS[0], "address": "300.1.1.1"}], "[0]", "address", "300.1.1.1"),
        ([{**ROWS[0], "purdue_level": "one"}], "[0]", "purdue_level", "Expected `int`"),
    ],
)
def test_json_bad_values_name_file_index_and_field(
    tmp_path: Path, rows: list[dict[str, Any]], where: str, field: str, words: str
) -> None:
    path = write(tmp_path / "assets.json", json.dumps(rows))
    error = rejected(path)
    assert error.message.startswith(f"{path}{where}: ")
    assert error.field == field
    assert words in error.message


def test_json_missing_field_names_it(tmp_path: Path) -> None:
    row = {k: v for k, v in ROWS[0].items() if k != "zone"}
    path = write(tmp_path / "a.json", json.dumps([ROWS[1], row]))
    error = rejected(path)
    assert error.message.startswith(f"{path}[1]: ")
    assert "`zone`" in error.message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[{not json", "not valid JSON"),
        ('{"assets": 5}', "expected a JSON list of asset objects"),
        ('{"devices": []}', "expected a JSON list of asset objects"),
        ("[1, 2]", "[0]: expected an object"),
    ],
)
def test_json_that_is_not_an_asset_list(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path / "a.json", text)
    error = rejected(path)
    assert path in error.message
    assert words in error.message


def test_json_duplicate_address_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", json.dumps([ROWS[0], {**ROWS[0], "name": "other"}]))
    assert "address 10.10.1.10 is listed twice" in rejected(path).message


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_inventory(str(tmp_path / "nope.csv"))


# --- inventory_of -----------------------------------------------------------------------


def test_version_is_stable_under_row_order_and_source() -> None:
    """Workers rebuild their table only when the rows change: a re-sorted or re-read file
    with the same rows must keep its version."""
    rows = list(PLANT.assets)
    assert inventory_of(reversed(rows)).version == PLANT.version
    assert inventory_of(rows[3:] + rows[:3], source="elsewhere").version == PLANT.version
    assert inventory_of(reversed(rows)).assets == PLANT.assets  # sorted by address


def test_version_changes_with_any_content_change() -> None:
    rows = list(PLANT.assets)
    changed = [
        rows[1:],
        [*rows, asset("10.99.0.1", "new")],
        [Asset(**{**_fields(rows[0]), "criticality": 1}), *rows[1:]],
        [Asset(**{**_fields(rows[0]), "zone": "elsewhere"}), *rows[1:]],
        [Asset(**{**_fields(rows[0]), "firmware": "V3.0"}), *rows[1:]],
    ]
    versions = {inventory_of(variant).version for variant in changed}
    assert PLANT.version not in versions
    assert len(versions) == len(changed)


def _fields(a: Asset) -> dict[str, Any]:
    return {name: getattr(a, name) for name in a.__struct_fields__}


def test_empty_inventory_has_a_version() -> None:
    empty = inventory_of([])
    assert empty.assets == ()
    assert empty.version and empty.version != PLANT.version


# --- AssetTable.lookup ------------------------------------------------------------------


def test_host_row_beats_the_network_it_sits_in() -> None:
    found = TABLE.lookup("10.10.1.10")
    assert found is not None and found.name == "plc-a1"
    assert found == AssetContext(
        name="plc-a1",
        role="plc",
        purdue_level=1,
        zone="cell-a",
        criticality=3,
        vendor="Siemens",
        model="S7-1500",
    )


def test_an_address_only_in_a_network_gets_the_network() -> None:
    found = TABLE.lookup("10.10.1.11")
    assert found is not None and found.name == "cells"


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("10.10.3.5", "cell-c"),
        ("10.10.3.127", "cell-c"),
        ("10.10.3.128", "cell-c-io"),
        ("10.10.3.200", "cell-c-io"),
        ("10.10.4.1", "cells"),
    ],
)
def test_most_specific_network_wins_for_nested_networks(address: str, name: str) -> None:
    """A /25 inside a /24 inside a /16: the narrowest one describes the device best."""
    found = TABLE.lookup(address)
    assert found is not None and found.name == name
    # Asked again (memoized), the answer is the same.
    assert TABLE.lookup(address) == found


def test_most_specific_network_wins_whatever_the_row_order() -> None:
    rows = [asset("10.0.0.0/8", "wide", "a"), asset("10.1.0.0/16", "mid", "b")]
    for order in (rows, rows[::-1]):
        table = AssetTable(inventory_of(order))
        found = table.lookup("10.1.2.3")
        assert found is not None and found.name == "mid"


def test_ipv6_hosts_and_networks() -> None:
    host = TABLE.lookup("fd00:10::5")
    network = TABLE.lookup("fd00:10::6")
    assert host is not None and host.name == "plc-v6"
    assert network is not None and network.name == "ipv6-cell"
    assert TABLE.lookup("fd00:11::1") is None


def test_ipv4_and_ipv6_networks_do_not_cover_each_other() -> None:
    """``::ffff:10.10.1.11`` style or numeric coincidences must not cross address families."""
    table = AssetTable(inventory_of([asset("::/0", "all-v6", "v6")]))
    assert table.lookup("10.10.1.11") is None
    assert TABLE.lookup("::a0a:10b") is None  # the integer of 10.10.1.11, as IPv6


@pytest.mark.parametrize("address", ["not-an-ip", "", "10.10.1", "10.10.1.10/32", "10.10.1.300"])
def test_invalid_address_is_none(address: str) -> None:
    assert TABLE.lookup(address) is None


def test_unknown_address_is_none_and_table_size() -> None:
    assert TABLE.lookup("192.168.50.5") is None
    assert TABLE.lookup("8.8.8.8") is None
    assert len(TABLE) == len(PLANT.assets)
    assert not TABLE.empty
    assert AssetTable(inventory_of([])).empty


def test_host_only_table_without_networks() -> None:
    table = AssetTable(inventory_of([asset("10.0.0.1", "plc")]))
    assert table.lookup("10.0.0.2") is None
    assert table.lookup("junk") is None
    found = table.lookup("10.0.0.1")
    assert found is not None and found.name == "plc"


# --- enrich_event -----------------------------------------------------------------------


def test_both_ends_known_in_different_zones_is_a_zone_crossing() -> None:
    enriched = enrich_event(event("10.20.0.10", "10.10.1.10"), TABLE)
    assert enriched.src_asset is not None and enriched.src_asset.name == "hmi-01"
    assert enriched.dst_asset is not None and enriched.dst_asset.name == "plc-a1"
    assert enriched.zone_crossing
    assert not enriched.unknown_asset


def test_both_ends_in_the_same_zone_is_not_a_crossing() -> None:
    enriched = enrich_event(event("10.20.0.50", "10.20.0.10"), TABLE)
    assert enriched.src_asset is not None and enriched.dst_asset is not None
    assert not enriched.zone_crossing


def test_one_end_unknown_is_never_a_crossing() -> None:
    """With one end unknown the zones cannot be compared: no crossing (the unknown flag
    carries the signal instead)."""
    enriched = enrich_event(event("10.20.0.10", "192.168.7.7"), TABLE)
    assert enriched.src_asset is not None and enriched.dst_asset is None
    assert not enriched.zone_crossing
    assert enriched.unknown_asset
    public = enrich_event(event("10.20.0.10", "8.8.8.8"), TABLE)
    assert not public.zone_crossing and not public.unknown_asset
    assert public.src_asset is not None


@pytest.mark.parametrize(
    "address",
    ["192.168.7.7", "172.16.5.5", "10.99.0.1", "fd12:3456::1"],
)
def test_private_unicast_address_not_in_inventory_is_an_unknown_asset(address: str) -> None:
    """A new device on the plant network is what an OT analyst wants to hear about first."""
    as_src = enrich_event(event(address, "10.10.1.10"), TABLE)
    as_dst = enrich_event(event("10.20.0.10", address), TABLE)
    assert as_src.unknown_asset and as_dst.unknown_asset
    assert as_src.src_asset is None and as_dst.dst_asset is None


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",  # public
        "84.247.157.112",  # public
        "2a00:1450:4001:80b::200e",  # public IPv6
        "224.0.0.251",  # multicast (mDNS)
        "239.255.255.250",  # multicast (SSDP)
        "ff02::1",  # IPv6 multicast
        "127.0.0.1",  # loopback
        "::1",
        "169.254.10.20",  # link-local
        "fe80::1",
        "10.99.0.255",  # subnet broadcast (BACnet Who-Is)
        "192.168.1.255",
        "255.255.255.255",  # limited broadcast
        "0.0.0.0",  # unspecified (DHCP discover)
        "not-an-ip",
    ],
)
def test_not_unknown_for_public_multicast_loopback_link_local_or_broadcast(address: str) -> None:
    """Only something that could be a plant device is "unknown"; flagging every multicast or
    broadcast would bury the one real new device in noise."""
    as_dst = enrich_event(event("10.20.0.10", address), TABLE)
    as_src = enrich_event(event(address, "10.10.1.10"), TABLE)
    assert not as_dst.unknown_asset
    assert not as_src.unknown_asset


def test_empty_inventory_flags_nothing_and_returns_the_same_object() -> None:
    """Without an inventory every address would be "unknown"; nothing is flagged instead."""
    table = AssetTable(inventory_of([]))
    original = event("192.168.7.7", "10.99.0.1")
    assert enrich_event(original, table) is original


def test_event_is_the_same_object_when_nothing_applies() -> None:
    """No known end and nothing unknown: no copy (the stage runs on every event)."""
    original = event("8.8.8.8", "224.0.0.251")
    assert enrich_event(original, TABLE) is original


def test_enrich_with_none_inventory_passes_the_event() -> None:
    original = event("192.168.7.7", "10.10.1.10")
    assert enrich_with(original, None) is original
    assert enrich_with(original, PLANT).dst_asset is not None


def test_enrichment_replaces_only_the_asset_fields() -> None:
    original = event("10.20.0.10", "10.10.1.10")
    enriched = enrich_event(original, TABLE)
    for name in original.__struct_fields__:
        if name not in ("src_asset", "dst_asset", "zone_crossing", "unknown_asset"):
            assert getattr(enriched, name) == getattr(original, name), name


# --- table_for --------------------------------------------------------------------------


def test_table_for_builds_once_per_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """One table per inventory version per worker: a million events must not rebuild it,
    and an equal inventory delivered again (a refresh that changed nothing) reuses it."""
    monkeypatch.setattr(assets_module, "_tables", {})
    first = table_for(PLANT)
    again = table_for(inventory_of(reversed(PLANT.assets), source="refresh"))
    assert first is again
    other = inventory_of([asset("10.0.0.1", "only")])
    second = table_for(other)
    assert second is not first
    assert second.version == other.version
    assert table_for(PLANT) is first


def test_table_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A streaming job that refreshes its inventory for weeks must not keep every version."""
    monkeypatch.setattr(assets_module, "_tables", {})
    for n in range(10):
        table_for(inventory_of([asset(f"10.0.0.{n}", f"a{n}")]))
    assert 1 <= len(assets_module._tables) <= 4


# --- EnrichWithAssets (Beam) ------------------------------------------------------------


def _summary(e: NormalizedEvent) -> tuple[str, str | None, str | None, bool, bool]:
    return (
        e.event_id,
        e.src_asset.name if e.src_asset else None,
        e.dst_asset.name if e.dst_asset else None,
        e.zone_crossing,
        e.unknown_asset,
    )


EVENTS = [
    event("10.20.0.10", "10.10.1.10", "crossing"),
    event("10.20.0.50", "10.20.0.10", "same-zone"),
    event("192.168.7.7", "10.10.1.10", "new-device"),
    event("8.8.8.8", "224.0.0.251", "nothing"),
]


def test_enrich_transform_with_an_inventory_side_input() -> None:
    with TestPipeline() as pipeline:
        inventory = pipeline | "Inventory" >> beam.Create([PLANT])
        out = pipeline | "Events" >> beam.Create(EVENTS) | EnrichWithAssets(inventory)
        assert_that(
            out.main | beam.Map(_summary),
            equal_to(
                [
                    ("crossing", "hmi-01", "plc-a1", True, False),
                    ("same-zone", "ews-01", "hmi-01", False, False),
                    ("new-device", None, "plc-a1", False, True),
                    ("nothing", None, None, False, False),
                ]
            ),
            label="main",
        )
        assert_that(out.dead_letters, is_empty(), label="dead_letters")


def test_enrich_transform_with_an_empty_side_input_passes_events_unchanged() -> None:
    """No inventory (nothing in PostgreSQL, no ``--assets``): events flow on untouched."""
    with TestPipeline() as pipeline:
        inventory = pipeline | "Inventory" >> beam.Create([]).with_output_types(AssetInventory)
        out = pipeline | "Events" >> beam.Create(EVENTS) | EnrichWithAssets(inventory)
        assert_that(out.main, equal_to(EVENTS), label="main")
        assert_that(out.dead_letters, is_empty(), label="dead_letters")


# --- the generated plant ----------------------------------------------------------------


def test_generated_plant_inventory_loads(tmp_path: Path) -> None:
    """``otsec generate`` writes ``assets.csv``; it must load with the real loader and describe
    a plant with every kind of OT asset the built-in rules reason about."""
    report = generate(GeneratorConfig(out_dir=str(tmp_path), events=200, seed=1))
    assert report.assets_path == str(tmp_path / "assets.csv")
    inventory = load_inventory(report.assets_path)
    assert len(inventory.assets) >= 50
    assert len(inventory.assets) == report.assets
    roles = Counter(a.role for a in inventory.assets)
    assert set(roles) <= set(ROLES)
    for role in (
        "plc",
        "rtu",
        "safety_controller",
        "hmi",
        "engineering_workstation",
        "historian",
        "it_host",
    ):
        assert roles[role] >= 1, role
    assert roles["plc"] >= 10
    assert len({a.zone for a in inventory.assets}) >= 3
    # The generated inventory drives enrichment: the plant's own PLCs are known hosts.
    table = AssetTable(inventory)
    assert all(table.lookup(a.address) is not None for a in inventory.assets)


# --- odd rules and odd data: false or a clear error, never a crash ---


def test_csv_not_in_utf8_is_a_validation_error_naming_the_file(tmp_path: Path) -> None:
    text = HEADER + "10.0.0.1,plc-1,plc,1,z,1,Schneider \u00c9lectric,,\n"
    path = write(tmp_path / "a.csv", text.encode("cp1252"))
    error = rejected(path)
    assert path in error.message


def test_json_with_a_bom_loads(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", b"\xef\xbb\xbf" + json.dumps(ROWS).encode())
    assert len(load_inventory(path).assets) == 2


def test_duplicate_address_names_the_line_of_the_repeat(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.csv",
        HEADER + "10.0.0.1,plc-1,plc,1,z,1,,,\n10.0.0.2,plc-2,plc,1,z,1,,,\n"
        "10.0.0.1,plc-3,plc,1,z,1,,,\n",
    )
    assert f"{path}:4" in rejected(path).message
