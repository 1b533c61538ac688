"""The normalized event: one model for every sensor, aligned with OCSF, with an ``ics`` section.

OCSF classes used: Network Activity (``class_uid`` 4001, category 4) for
connection, flow and industrial-protocol records, and Detection Finding
(``class_uid`` 2004, category 2) for IDS alerts. OCSF has no industrial
protocol class, so the protocol operation lives in the ``ics`` section.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum

import msgspec

from schemas.records import SourceFormat, SourcePosition

__all__ = [
    "ActivityId",
    "AssetContext",
    "CtiMatch",
    "DetectionInfo",
    "IcsActivity",
    "NetworkEndpoint",
    "NormalizedEvent",
    "Operation",
    "SeverityId",
    "SourceFormat",
]


class Operation(StrEnum):
    """What an industrial-protocol message does to the process or the device."""

    READ = "read"
    WRITE = "write"
    PROGRAM = "program"
    CONTROL = "control"
    DIAGNOSTIC = "diagnostic"
    FILE_TRANSFER = "file_transfer"
    RESTART_STOP = "restart_stop"
    SESSION = "session"
    RESPONSE = "response"
    OTHER = "other"
    UNKNOWN = "unknown"


class SeverityId(IntEnum):
    """OCSF ``severity_id``."""

    UNKNOWN = 0
    INFORMATIONAL = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5


class ActivityId(IntEnum):
    """OCSF Network Activity ``activity_id`` values otsec emits."""

    UNKNOWN = 0
    OPEN = 1
    CLOSE = 2
    RESET = 3
    FAIL = 4
    REFUSE = 5
    TRAFFIC = 6
    OTHER = 99


class NetworkEndpoint(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """An OCSF network endpoint: the address in canonical text form, and the port."""

    ip: str
    port: int | None = None


class IcsActivity(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """What an industrial-protocol message asked for."""

    protocol: str
    function_code: int | None = None
    function_name: str = ""
    operation: Operation = Operation.UNKNOWN
    is_request: bool | None = None
    is_exception: bool = False
    subfunction: str | None = None
    unit_id: int | None = None
    address_start: int | None = None
    address_count: int | None = None
    status: str | None = None


class DetectionInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A sensor's own detection (a Suricata signature) carried on a Detection Finding."""

    rule_uid: str
    title: str
    category: str | None = None
    sensor_severity: int | None = None
    techniques: tuple[str, ...] = ()


class AssetContext(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """What the asset inventory knows about one endpoint (stage 5)."""

    name: str
    role: str
    purdue_level: int
    zone: str
    criticality: int
    vendor: str | None = None
    model: str | None = None
    firmware: str | None = None


class CtiMatch(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One indicator an event field matched (stage 6).

    ``field`` is the event field (``src.ip``, ``dst.ip``, ``details.query``...),
    ``type`` and ``value`` the indicator as stored (a CIDR match names the
    network), ``sources`` the feeds that carry it.
    """

    field: str
    type: str
    value: str
    confidence: int
    tlp: str
    sources: tuple[str, ...] = ()


class NormalizedEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One observation in the OCSF-aligned model every later stage works on."""

    event_id: str
    time: datetime
    class_uid: int
    category_uid: int
    activity_id: int
    type_uid: int
    severity_id: int
    source_format: SourceFormat
    source_kind: str
    observer: str
    message: str
    src: NetworkEndpoint
    dst: NetworkEndpoint
    source: SourcePosition
    sensor: str | None = None
    transport: str | None = None
    connection_uid: str | None = None
    app_protocol: str | None = None
    ics: IcsActivity | None = None
    detection: DetectionInfo | None = None
    details: dict[str, str] = msgspec.field(default_factory=dict)
    # Set by the later stages: asset context (5), threat intelligence (6), detection (7).
    src_asset: AssetContext | None = None
    dst_asset: AssetContext | None = None
    zone_crossing: bool = False
    unknown_asset: bool = False
    cti_matches: tuple[CtiMatch, ...] = ()
    risk_score: int = 0
    rule_ids: tuple[str, ...] = ()
