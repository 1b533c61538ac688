"""The asset inventory: what each address in the plant is, where it sits, how much it matters."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["ROLES", "Asset", "AssetInventory"]

ROLES = (
    "plc",
    "rtu",
    "safety_controller",
    "hmi",
    "engineering_workstation",
    "historian",
    "it_host",
    "network_device",
    "other",
)

Role = Literal[
    "plc",
    "rtu",
    "safety_controller",
    "hmi",
    "engineering_workstation",
    "historian",
    "it_host",
    "network_device",
    "other",
]


class Asset(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One inventory row; ``address`` is an IP address or a CIDR network, canonical."""

    address: str
    name: Annotated[str, msgspec.Meta(min_length=1)]
    role: Role
    purdue_level: Annotated[int, msgspec.Meta(ge=0, le=5)]
    zone: Annotated[str, msgspec.Meta(min_length=1)]
    criticality: Annotated[int, msgspec.Meta(ge=1, le=5)]
    vendor: str | None = None
    model: str | None = None
    firmware: str | None = None


class AssetInventory(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The inventory as the enrich stage's side input: its rows and a version.

    ``version`` changes whenever the rows change (a digest of them), so workers
    rebuild their lookup table only when a refreshed inventory differs.
    """

    version: str
    assets: tuple[Asset, ...] = ()
    source: str = ""
