"""Stage 5, EnrichWithAssets: who the endpoints of an event are, and whether it crosses zones.

The inventory (`schemas.asset.Asset` rows) comes from a CSV or JSON file
(`load_inventory`) or from PostgreSQL ``assets`` (`read_assets`, filled by
``otsec assets import``). It reaches the stage as a singleton side input, an
`AssetInventory`; each worker builds one `AssetTable` per inventory version and
reuses it for every element.

Each event gains ``src_asset``/``dst_asset`` (the most specific inventory entry
for the address: a host row wins over a network row), ``zone_crossing`` (both
ends known and in different zones) and ``unknown_asset`` (an endpoint with a
private address the inventory does not know: a new device on the plant network).
Public, multicast and broadcast addresses are never "unknown assets", and with
an empty inventory nothing is flagged (there is nothing to compare against).
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import msgspec

from schemas.asset import Asset, AssetInventory
from schemas.errors import ValidationError
from schemas.event import AssetContext, NormalizedEvent
from transforms._stage import StageFn, stage_outputs
from transforms.side_inputs import Polled

__all__ = [
    "AssetTable",
    "EnrichWithAssets",
    "enrich_event",
    "enrich_with",
    "import_assets",
    "inventory_of",
    "load_inventory",
    "read_assets",
]

_COLUMNS = (
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


def _canonical_address(text: str) -> str:
    network = ipaddress.ip_network(text.strip(), strict=False)
    if network.prefixlen == network.max_prefixlen:
        return network.network_address.compressed
    return network.compressed


def _asset(row: dict[str, Any], where: str) -> Asset:
    values = {key: value for key, value in row.items() if key in _COLUMNS}
    for key in ("vendor", "model", "firmware"):
        if values.get(key) in ("", None):
            values.pop(key, None)
    try:
        values["address"] = _canonical_address(str(values.get("address", "")))
    except ValueError as error:
        raise ValidationError(f"{where}: address: {error}", field="address") from None
    try:
        return msgspec.convert(values, Asset, strict=False)
    except msgspec.ValidationError as error:
        field = str(error).rsplit("at `$.", 1)[-1].rstrip("`") if "at `$." in str(error) else None
        raise ValidationError(f"{where}: {error}", field=field) from None


def inventory_of(assets: Iterable[Asset], source: str = "") -> AssetInventory:
    """An inventory with its version: a digest of its rows, so equal rows give equal versions."""
    rows = tuple(sorted(assets, key=lambda asset: asset.address))
    digest = hashlib.blake2b(msgspec.msgpack.encode(rows), digest_size=8).hexdigest()
    return AssetInventory(version=digest, assets=rows, source=source)


def load_inventory(path: str) -> AssetInventory:
    """Read an inventory file: CSV with a header row, or a JSON list of objects.

    Raises:
        ValidationError: On a missing column, a bad value or a repeated address, naming the
            file, the line (CSV) or index (JSON) and the field.
        OSError: When the file cannot be read.
    """
    with open(path, "rb") as handle:
        data = handle.read().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationError(
            f"{path}: not UTF-8 at byte {error.start} (save the inventory as UTF-8)"
        ) from None
    assets: list[Asset] = []
    where: list[str] = []
    if text.lstrip()[:1] in ("[", "{"):
        try:
            rows = msgspec.json.decode(text)
        except msgspec.DecodeError as error:
            raise ValidationError(f"{path}: not valid JSON: {error}") from None
        if isinstance(rows, dict):
            rows = rows.get("assets")
        if not isinstance(rows, list):
            raise ValidationError(f"{path}: expected a JSON list of asset objects")
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValidationError(f"{path}[{index}]: expected an object")
            where.append(f"{path}[{index}]")
            assets.append(_asset(row, where[-1]))
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in _COLUMNS[:6] if c not in (reader.fieldnames or ())]
        if missing:
            raise ValidationError(f"{path}: missing columns {', '.join(missing)}", field=missing[0])
        for row in reader:
            where.append(f"{path}:{reader.line_num}")
            assets.append(_asset(row, where[-1]))
    first: dict[str, str] = {}
    for asset, place in zip(assets, where, strict=True):
        if asset.address in first:
            raise ValidationError(
                f"{place}: address {asset.address} is listed twice "
                f"(first at {first[asset.address]})",
                field="address",
            )
        first[asset.address] = place
    return inventory_of(assets, source=os.path.abspath(path))


_UPSERT = """
INSERT INTO assets (address, name, role, purdue_level, zone, criticality, vendor, model, firmware)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (address) DO UPDATE SET
    name = EXCLUDED.name, role = EXCLUDED.role, purdue_level = EXCLUDED.purdue_level,
    zone = EXCLUDED.zone, criticality = EXCLUDED.criticality, vendor = EXCLUDED.vendor,
    model = EXCLUDED.model, firmware = EXCLUDED.firmware, updated_at = now()
"""


def import_assets(connection: Any, assets: Sequence[Asset], replace: bool = False) -> int:
    """Upsert ``assets`` into PostgreSQL ``assets`` in one transaction; returns the row count.

    With ``replace``, rows whose address is not in ``assets`` are deleted: the file
    is then the whole inventory.
    """
    with connection.transaction(), connection.cursor() as cursor:
        cursor.executemany(
            _UPSERT,
            [
                (
                    a.address,
                    a.name,
                    a.role,
                    a.purdue_level,
                    a.zone,
                    a.criticality,
                    a.vendor,
                    a.model,
                    a.firmware,
                )
                for a in assets
            ],
        )
        if replace:
            cursor.execute(
                "DELETE FROM assets WHERE NOT (address::text = ANY(%s))",
                ([_cidr_text(a.address) for a in assets],),
            )
    return len(assets)


def _cidr_text(address: str) -> str:
    return str(ipaddress.ip_network(address, strict=False))


def read_assets(connection: Any) -> AssetInventory:
    """The inventory stored in PostgreSQL ``assets``."""
    rows = connection.execute(
        "SELECT address, name, role, purdue_level, zone, criticality, vendor, model, firmware "
        "FROM assets ORDER BY address"
    ).fetchall()
    assets = [
        _asset(dict(zip(_COLUMNS, (str(row[0]), *row[1:]), strict=True)), "postgres assets")
        for row in rows
    ]
    return inventory_of(assets, source="postgres:assets")


def _context(asset: Asset) -> AssetContext:
    return AssetContext(
        name=asset.name,
        role=asset.role,
        purdue_level=asset.purdue_level,
        zone=asset.zone,
        criticality=asset.criticality,
        vendor=asset.vendor,
        model=asset.model,
        firmware=asset.firmware,
    )


class AssetTable:
    """Address to `AssetContext`: exact hosts in a dict, networks most specific first."""

    def __init__(self, inventory: AssetInventory) -> None:
        self.version = inventory.version
        self._hosts: dict[str, AssetContext] = {}
        networks = []
        for asset in inventory.assets:
            if "/" in asset.address:
                networks.append((ipaddress.ip_network(asset.address), _context(asset)))
            else:
                self._hosts[asset.address] = _context(asset)
        networks.sort(key=lambda item: item[0].prefixlen, reverse=True)
        self._networks = networks
        self._memo: dict[str, AssetContext | None] = {}
        self.empty = not inventory.assets

    def __len__(self) -> int:
        return len(self._hosts) + len(self._networks)

    def lookup(self, address: str) -> AssetContext | None:
        found = self._hosts.get(address)
        if found is not None or not self._networks:
            return found
        try:
            return self._memo[address]
        except KeyError:
            pass
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        for network, context in self._networks:
            if ip.version == network.version and ip in network:
                found = context
                break
        if len(self._memo) < 100_000:
            self._memo[address] = found
        return found


_local_cache: dict[str, bool] = {}


def _is_plant_address(address: str) -> bool:
    """A private unicast address: something on the plant network that should be inventoried."""
    known = _local_cache.get(address)
    if known is None:
        try:
            ip = ipaddress.ip_address(address)
            known = ip.is_private and not (
                ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local
            )
            if ip.version == 4 and str(ip).endswith(".255"):
                known = False  # a subnet broadcast, not a device
        except ValueError:
            known = False
        if len(_local_cache) < 100_000:
            _local_cache[address] = known
    return known


def enrich_event(event: NormalizedEvent, table: AssetTable) -> NormalizedEvent:
    """``event`` with the inventory's context for both endpoints and the two flags."""
    if table.empty:
        return event
    src = table.lookup(event.src.ip)
    dst = table.lookup(event.dst.ip)
    unknown = (src is None and _is_plant_address(event.src.ip)) or (
        dst is None and _is_plant_address(event.dst.ip)
    )
    crossing = src is not None and dst is not None and src.zone != dst.zone
    if src is None and dst is None and not unknown:
        return event
    return msgspec.structs.replace(
        event, src_asset=src, dst_asset=dst, zone_crossing=crossing, unknown_asset=unknown
    )


_tables: dict[str, AssetTable] = {}
_tables_lock = threading.Lock()


def table_for(inventory: AssetInventory) -> AssetTable:
    """The worker's `AssetTable` for this inventory version (built once, shared by DoFns)."""
    table = _tables.get(inventory.version)
    if table is None:
        with _tables_lock:
            table = _tables.get(inventory.version)
            if table is None:
                table = AssetTable(inventory)
                if len(_tables) >= 4:
                    _tables.clear()
                _tables[inventory.version] = table
    return table


def enrich_with(event: NormalizedEvent, inventory: AssetInventory | None) -> NormalizedEvent:
    """`enrich_event` against the worker's table for ``inventory`` (the stage's function)."""
    if inventory is None:
        return event
    return enrich_event(event, table_for(inventory))


def enrich_polled(event: NormalizedEvent, inventory: Polled) -> NormalizedEvent:
    """`enrich_with` the inventory a streaming worker last read (`Polled`)."""
    return enrich_with(event, inventory.current())


class EnrichWithAssets(beam.PTransform):  # type: ignore[misc]
    """Stage 5: events gain asset context; outputs ``main`` and ``dead_letters``.

    Args:
        inventory: A PCollection of at most one `AssetInventory` per window (the side
            input; empty means no inventory, and events pass unchanged), or a `Polled`
            inventory that streaming workers re-read.
    """

    def __init__(self, inventory: beam.PCollection | Polled) -> None:
        super().__init__()
        self._inventory = inventory

    def expand(self, events: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        if isinstance(self._inventory, Polled):
            return stage_outputs(
                events, "EnrichEvents", StageFn("enrich", enrich_polled), self._inventory
            )
        return stage_outputs(
            events,
            "EnrichEvents",
            StageFn("enrich", enrich_with),
            beam.pvalue.AsSingleton(self._inventory, default_value=None),
        )
