"""Typed definitions of every raw input kind otsec accepts.

One `msgspec.Struct` per kind: the Zeek logs (TSV and JSON share a definition,
since Zeek writes the same record either way), the Suricata EVE event types and
the platform's own JSON envelope. Validation is `msgspec.convert` against these
types, so the JSON Schemas exported from them (`otsec schema export`) are the
contract sensors are held to. Unknown extra fields are accepted (sensors add
fields in new versions); missing required fields, wrong types and out-of-range
values are not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, field

__all__ = [
    "KIND_TYPES",
    "PLATFORM_SCHEMA",
    "PlatformEnvelope",
    "RawRecord",
    "SuricataAlert",
    "SuricataDnp3",
    "SuricataFlow",
    "SuricataModbus",
    "ZeekBacnet",
    "ZeekCip",
    "ZeekCipIdentity",
    "ZeekConn",
    "ZeekDnp3",
    "ZeekDnp3Control",
    "ZeekEnip",
    "ZeekModbus",
    "ZeekModbusDetailed",
    "ZeekS7comm",
    "ZeekS7commPlus",
]

# Seconds since the epoch, 1970 to 2100: a canonified Zeek test timestamp
# ("XXXXXXXXXX.XXXXXX") or a negative value is rejected, not silently stored.
EpochSeconds = Annotated[float, Meta(ge=0.0, le=4_102_444_800.0)]
Timestamp = Annotated[datetime, Meta(tz=True)]
ZeekTime = EpochSeconds | Timestamp  # Zeek JSON may write ISO 8601 times
Port = Annotated[int, Meta(ge=0, le=65535)]
Count = Annotated[int, Meta(ge=0)]
Byte = Annotated[int, Meta(ge=0, le=255)]
UnitId = Annotated[int, Meta(ge=0, le=255)]
Address = Annotated[str, Meta(min_length=2, max_length=64)]  # checked again in Validate
Text = Annotated[str, Meta(max_length=4096)]

PLATFORM_SCHEMA = "robotlab.sensor/v1"


class _Record(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Base of every raw kind."""


class _ZeekRecord(_Record, frozen=True, kw_only=True):
    """The connection identity every Zeek log starts with."""

    ts: ZeekTime
    uid: Annotated[str, Meta(min_length=1, max_length=64)]
    orig_h: Address = field(name="id.orig_h")
    orig_p: Port = field(name="id.orig_p")
    resp_h: Address = field(name="id.resp_h")
    resp_p: Port = field(name="id.resp_p")


class _ZeekDirectional(_ZeekRecord, frozen=True, kw_only=True):
    """ICSNPP logs that also record the direction of the message."""

    is_orig: bool | None = None
    source_h: Address | None = None
    source_p: Port | None = None
    destination_h: Address | None = None
    destination_p: Port | None = None
    packet_correlation_id: Text | None = None


class ZeekConn(_ZeekRecord, frozen=True, kw_only=True):
    """Zeek ``conn.log``: one connection summary."""

    proto: Literal["tcp", "udp", "icmp", "unknown_transport"]
    service: Text | None = None
    duration: Annotated[float, Meta(ge=0.0)] | None = None
    orig_bytes: Count | None = None
    resp_bytes: Count | None = None
    conn_state: Annotated[str, Meta(max_length=8)] | None = None
    local_orig: bool | None = None
    local_resp: bool | None = None
    missed_bytes: Count | None = None
    history: Text | None = None
    orig_pkts: Count | None = None
    orig_ip_bytes: Count | None = None
    resp_pkts: Count | None = None
    resp_ip_bytes: Count | None = None


class ZeekModbus(_ZeekRecord, frozen=True, kw_only=True):
    """Zeek ``modbus.log`` (both the 2.x schema and the current one with tid/unit)."""

    func: Annotated[str, Meta(min_length=1, max_length=64)]
    exception: Text | None = None
    tid: Annotated[int, Meta(ge=0, le=65535)] | None = None
    unit: UnitId | None = None
    pdu_type: Literal["REQ", "RESP"] | None = None


class ZeekModbusDetailed(_ZeekRecord, frozen=True, kw_only=True):
    """ICSNPP ``modbus_detailed.log``: function, addresses and values."""

    func: Annotated[str, Meta(min_length=1, max_length=64)]
    tid: Annotated[int, Meta(ge=0, le=65535)] | None = None
    unit: UnitId | None = None
    address: Annotated[int, Meta(ge=0, le=65535)] | None = None
    quantity: Annotated[int, Meta(ge=0, le=65535)] | None = None
    request_values: list[Count] | None = None
    response_values: list[Count] | None = None
    matched: bool | None = None
    request_subfunction_code: Text | None = None
    response_subfunction_code: Text | None = None
    exception_code: Text | None = None
    mei_type: Text | None = None
    is_orig: bool | None = None


class ZeekDnp3(_ZeekRecord, frozen=True, kw_only=True):
    """Zeek ``dnp3.log``: request and reply function codes of one transaction."""

    fc_request: Text | None = None
    fc_reply: Text | None = None
    iin: Annotated[int, Meta(ge=0, le=65535)] | None = None


class ZeekDnp3Control(_ZeekDirectional, frozen=True, kw_only=True):
    """ICSNPP ``dnp3_control.log``: control relay output blocks and analog outputs."""

    block_type: Text | None = None
    function_code: Annotated[str, Meta(min_length=1, max_length=64)]
    index_number: Count | None = None
    trip_control_code: Text | None = None
    operation_type: Text | None = None
    clear_bit: bool | None = None
    execute_count: Count | None = None
    on_time: Count | None = None
    off_time: Count | None = None
    status_code: Text | None = None


class ZeekS7comm(_ZeekDirectional, frozen=True, kw_only=True):
    """ICSNPP ``s7comm.log``: S7comm jobs, acks and user-data PDUs."""

    rosctr_code: Annotated[int, Meta(ge=0, le=255)] | None = None
    rosctr_name: Text | None = None
    pdu_reference: Count | None = None
    function_code: Text | None = None
    function_name: Text | None = None
    subfunction_code: Text | None = None
    subfunction_name: Text | None = None
    error_class: Text | None = None
    error_code: Text | None = None


class ZeekS7commPlus(_ZeekDirectional, frozen=True, kw_only=True):
    """ICSNPP ``s7comm_plus.log`` (S7-1200/1500 protocol)."""

    version: Annotated[int, Meta(ge=0, le=255)] | None = None
    opcode: Text | None = None
    opcode_name: Text | None = None
    function_code: Text | None = None
    function_name: Text | None = None


class ZeekEnip(_ZeekDirectional, frozen=True, kw_only=True):
    """ICSNPP ``enip.log``: EtherNet/IP encapsulation commands."""

    enip_command_code: Annotated[str, Meta(min_length=1, max_length=16)]
    enip_command: Text | None = None
    length: Count | None = None
    session_handle: Text | None = None
    enip_status: Text | None = None
    sender_context: Text | None = None
    options: Text | None = None


class ZeekCip(_ZeekDirectional, frozen=True, kw_only=True):
    """ICSNPP ``cip.log``: CIP services inside EtherNet/IP."""

    cip_sequence_count: Count | None = None
    direction: Text | None = None
    cip_service_code: Annotated[str, Meta(min_length=1, max_length=16)]
    cip_service: Text | None = None
    cip_status_code: Text | None = None
    cip_status: Text | None = None
    cip_extended_status_code: Text | None = None
    cip_extended_status: Text | None = None
    class_id: Text | None = None
    class_name: Text | None = None
    instance_id: Text | None = None
    attribute_id: Text | None = None


class ZeekCipIdentity(_ZeekDirectional, frozen=True, kw_only=True):
    """ICSNPP ``cip_identity.log``: device identity answers (vendor, product, revision)."""

    encapsulation_version: Count | None = None
    socket_address: Text | None = None
    socket_port: Count | None = None
    vendor_id: Count | None = None
    vendor_name: Text | None = None
    device_type_id: Count | None = None
    device_type_name: Text | None = None
    product_code: Count | None = None
    revision: Text | None = None
    device_status: Text | None = None
    serial_number: Text | None = None
    product_name: Text | None = None
    device_state: Text | None = None


class ZeekBacnet(_ZeekDirectional, frozen=True, kw_only=True):
    """ICSNPP ``bacnet.log``: BACnet/IP APDUs."""

    bvlc_function: Text | None = None
    pdu_type: Text | None = None
    pdu_service: Text | None = None
    invoke_id: Annotated[int, Meta(ge=0, le=255)] | None = None
    result_code: Text | None = None


class _SuricataRecord(_Record, frozen=True, kw_only=True):
    """Fields every Suricata EVE event of interest carries."""

    timestamp: Timestamp
    event_type: str
    flow_id: Count | None = None
    in_iface: Text | None = None
    src_ip: Address
    src_port: Port | None = None
    dest_ip: Address
    dest_port: Port | None = None
    proto: Text | None = None
    app_proto: Text | None = None
    host: Text | None = None
    community_id: Text | None = None


class SuricataAlertInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    action: Text | None = None
    gid: Count | None = None
    signature_id: Count
    rev: Count | None = None
    signature: Text
    category: Text | None = None
    severity: Annotated[int, Meta(ge=1, le=255)] | None = None
    metadata: dict[str, list[Text]] | None = None


class SuricataAlert(_SuricataRecord, frozen=True, kw_only=True):
    """Suricata EVE ``alert``: a signature fired."""

    alert: SuricataAlertInfo


class SuricataFlowInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    pkts_toserver: Count | None = None
    pkts_toclient: Count | None = None
    bytes_toserver: Count | None = None
    bytes_toclient: Count | None = None
    start: Timestamp | None = None
    end: Timestamp | None = None
    age: Count | None = None
    state: Text | None = None
    reason: Text | None = None
    alerted: bool | None = None


class SuricataFlow(_SuricataRecord, frozen=True, kw_only=True):
    """Suricata EVE ``flow``: one flow record at its end."""

    flow: SuricataFlowInfo


class SuricataModbusRead(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    address: Annotated[int, Meta(ge=0, le=65535)] | None = None
    quantity: Annotated[int, Meta(ge=0, le=65535)] | None = None


class SuricataModbusWrite(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    address: Annotated[int, Meta(ge=0, le=65535)] | None = None
    # One register value for single writes; Suricata writes the escaped bytes of
    # Write Multiple Registers/Coils as a string (rust/src/modbus/log.rs).
    data: Annotated[int, Meta(ge=0, le=65535)] | Text | None = None


class SuricataModbusCode(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    code: Text | None = None
    raw: Byte | None = None
    data: Text | None = None


class SuricataModbusMessage(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False
):
    transaction_id: Annotated[int, Meta(ge=0, le=65535)] | None = None
    protocol_id: Annotated[int, Meta(ge=0, le=65535)] | None = None
    unit_id: UnitId | None = None
    function_raw: Byte
    function_code: Text | None = None
    access_type: Text | None = None
    category: Text | None = None
    error_flags: Text | None = None
    read: SuricataModbusRead | None = None
    write: SuricataModbusWrite | None = None
    diagnostic: SuricataModbusCode | None = None
    mei: SuricataModbusCode | None = None
    exception: SuricataModbusCode | None = None


class SuricataModbusInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    id: Count | None = None
    request: SuricataModbusMessage | None = None
    response: SuricataModbusMessage | None = None


class SuricataModbus(_SuricataRecord, frozen=True, kw_only=True):
    """Suricata EVE ``modbus``: one request/response transaction."""

    modbus: SuricataModbusInfo


class SuricataDnp3Application(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False
):
    function_code: Byte
    complete: bool | None = None


class SuricataDnp3Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    type: Text | None = None
    src: Annotated[int, Meta(ge=0, le=65535)] | None = None
    dst: Annotated[int, Meta(ge=0, le=65535)] | None = None
    application: SuricataDnp3Application | None = None


class SuricataDnp3Info(SuricataDnp3Message, frozen=True, kw_only=True, omit_defaults=True):
    request: SuricataDnp3Message | None = None
    response: SuricataDnp3Message | None = None


class SuricataDnp3(_SuricataRecord, frozen=True, kw_only=True):
    """Suricata EVE ``dnp3``: a DNP3 request, response or unsolicited response."""

    dnp3: SuricataDnp3Info


class PlatformEndpoint(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    ip: Address
    port: Port | None = None


class PlatformIcs(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    protocol: Literal["modbus", "dnp3", "s7comm", "s7comm_plus", "enip", "cip", "bacnet", "opcua"]
    function_code: Annotated[int, Meta(ge=0, le=65535)] | None = None
    function: Text | None = None
    subfunction_code: Annotated[int, Meta(ge=0, le=65535)] | None = None
    unit_id: Annotated[int, Meta(ge=0, le=65535)] | None = None
    address: Annotated[int, Meta(ge=0, le=4_294_967_295)] | None = None
    quantity: Annotated[int, Meta(ge=0, le=65535)] | None = None
    is_request: bool | None = None
    status: Text | None = None


class PlatformEnvelope(_Record, frozen=True, kw_only=True):
    """The RobotLab platform agent's own record (JSON lines or Kinesis).

    ``message_id`` is unique per observation at the agent, so a redelivered
    envelope keeps it and deduplicates.
    """

    schema_: Literal["robotlab.sensor/v1"] = field(name="schema")
    message_id: Annotated[str, Meta(min_length=1, max_length=128)]
    sensor_id: Annotated[str, Meta(min_length=1, max_length=128)]
    observed_at: Timestamp
    transport: Literal["tcp", "udp"] | None = None
    src: PlatformEndpoint
    dst: PlatformEndpoint
    ics: PlatformIcs | None = None
    attributes: dict[str, Text] | None = None


RawRecord = (
    ZeekConn
    | ZeekModbus
    | ZeekModbusDetailed
    | ZeekDnp3
    | ZeekDnp3Control
    | ZeekS7comm
    | ZeekS7commPlus
    | ZeekEnip
    | ZeekCip
    | ZeekCipIdentity
    | ZeekBacnet
    | SuricataAlert
    | SuricataFlow
    | SuricataModbus
    | SuricataDnp3
    | PlatformEnvelope
)

# Record kind (as Decode names it) -> its type. The kind is the Zeek log path,
# the Suricata event type or the platform schema, prefixed with the sensor family.
KIND_TYPES: dict[str, type[Any]] = {
    "zeek.conn": ZeekConn,
    "zeek.modbus": ZeekModbus,
    "zeek.modbus_detailed": ZeekModbusDetailed,
    "zeek.dnp3": ZeekDnp3,
    "zeek.dnp3_control": ZeekDnp3Control,
    "zeek.s7comm": ZeekS7comm,
    "zeek.s7comm_plus": ZeekS7commPlus,
    "zeek.enip": ZeekEnip,
    "zeek.cip": ZeekCip,
    "zeek.cip_identity": ZeekCipIdentity,
    "zeek.bacnet": ZeekBacnet,
    "suricata.alert": SuricataAlert,
    "suricata.flow": SuricataFlow,
    "suricata.modbus": SuricataModbus,
    "suricata.dnp3": SuricataDnp3,
    "platform.v1": PlatformEnvelope,
}
