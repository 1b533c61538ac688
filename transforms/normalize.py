"""Stage 3, Normalize: every validated record into the one OCSF-aligned `NormalizedEvent`.

Each raw kind has a small mapping function. Function codes are named and put in
an operation category by `transforms.ics_protocols`. The ``event_id`` is a hash
of the record's identity (its kind and original bytes, or the platform agent's
sensor and message ids), so a redelivered record gets the same id and
Deduplicate can drop it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam

from schemas import raw
from schemas.event import (
    ActivityId,
    DetectionInfo,
    IcsActivity,
    NetworkEndpoint,
    NormalizedEvent,
    SeverityId,
)
from schemas.records import ValidatedRecord
from transforms import ics_protocols as ics
from transforms._stage import StageFn, stage_outputs
from transforms.validate import canonical_ip

__all__ = ["Normalize", "event_id_for", "normalize_record"]

NETWORK_ACTIVITY = 4001
DETECTION_FINDING = 2004
_CATEGORY = {NETWORK_ACTIVITY: 4, DETECTION_FINDING: 2}

# Zeek conn_state -> OCSF activity (see Zeek's conn.log documentation).
_CONN_ACTIVITY = {
    "S0": ActivityId.OPEN,
    "REJ": ActivityId.REFUSE,
    "RSTO": ActivityId.RESET,
    "RSTR": ActivityId.RESET,
    "RSTOS0": ActivityId.RESET,
    "RSTRH": ActivityId.RESET,
    "SH": ActivityId.CLOSE,
    "SHR": ActivityId.CLOSE,
    "SF": ActivityId.TRAFFIC,
}
# Transport of the protocols that have only one; DNP3, EtherNet/IP and CIP run over
# TCP or UDP and their logs do not say which, so it stays unknown for them.
_ZEEK_TRANSPORT = {
    "zeek.modbus": "tcp",
    "zeek.modbus_detailed": "tcp",
    "zeek.s7comm": "tcp",
    "zeek.s7comm_plus": "tcp",
    "zeek.bacnet": "udp",
}
# Suricata alert.severity 1 is the most severe.
_SURICATA_SEVERITY = {1: SeverityId.HIGH, 2: SeverityId.MEDIUM, 3: SeverityId.LOW}


def event_id_for(kind: str, identity: bytes) -> str:
    """A 128-bit hex id from a record kind and its identity bytes (BLAKE2b keyed by the kind)."""
    return hashlib.blake2b(identity, digest_size=16, key=kind.encode()).hexdigest()


def _utc(value: float | datetime) -> datetime:
    if value.__class__ is float:
        return datetime.fromtimestamp(value, UTC)  # type: ignore[arg-type]
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromtimestamp(value, UTC)


def _endpoint(ip: str, port: int | None) -> NetworkEndpoint:
    return NetworkEndpoint(ip=canonical_ip(ip), port=port)


def _details(**values: Any) -> dict[str, str]:
    return {
        k: v if v.__class__ is str else str(v)
        for k, v in values.items()
        if v is not None and v != ""
    }


def _ics(
    info: ics.FunctionInfo,
    protocol: str,
    is_request: bool | None = None,
    unit_id: int | None = None,
    address_start: int | None = None,
    address_count: int | None = None,
    subfunction: str | None = None,
    status: str | None = None,
) -> IcsActivity:
    return IcsActivity(
        protocol=protocol,
        function_code=info.code,
        function_name=info.name,
        operation=info.operation,
        is_exception=info.is_exception,
        is_request=is_request,
        unit_id=unit_id,
        address_start=address_start,
        address_count=address_count,
        subfunction=subfunction,
        status=status,
    )


def _zeek_event(
    v: ValidatedRecord,
    *,
    message: str,
    details: dict[str, str],
    app_protocol: str | None,
    ics: IcsActivity | None = None,
    transport: str | None = None,
    activity_id: int = ActivityId.TRAFFIC,
) -> NormalizedEvent:
    """An OCSF Network Activity event from a Zeek record (orig is the source)."""
    r = v.record
    if transport is None:
        transport = _ZEEK_TRANSPORT.get(v.kind)
    return NormalizedEvent(
        event_id=event_id_for(v.kind, v.origin.payload),
        time=_utc(r.ts),
        class_uid=NETWORK_ACTIVITY,
        category_uid=4,
        activity_id=activity_id,
        type_uid=NETWORK_ACTIVITY * 100 + activity_id,
        severity_id=SeverityId.INFORMATIONAL,
        source_format=v.source_format,
        source_kind=v.kind,
        observer="zeek",
        message=message,
        src=_endpoint(r.orig_h, r.orig_p),
        dst=_endpoint(r.resp_h, r.resp_p),
        source=v.origin.source,
        transport=transport,
        connection_uid=r.uid,
        app_protocol=app_protocol,
        ics=ics,
        details=details,
    )


def _suricata_event(
    v: ValidatedRecord,
    *,
    message: str,
    details: dict[str, str],
    app_protocol: str | None = None,
    ics: IcsActivity | None = None,
    class_uid: int = NETWORK_ACTIVITY,
    activity_id: int = ActivityId.TRAFFIC,
    severity_id: int = SeverityId.INFORMATIONAL,
    detection: DetectionInfo | None = None,
) -> NormalizedEvent:
    """An OCSF event from a Suricata EVE record."""
    r = v.record
    if app_protocol is None and r.app_proto and r.app_proto != "failed":
        app_protocol = r.app_proto
    return NormalizedEvent(
        event_id=event_id_for(v.kind, v.origin.payload),
        time=r.timestamp.astimezone(UTC),
        class_uid=class_uid,
        category_uid=_CATEGORY[class_uid],
        activity_id=activity_id,
        type_uid=class_uid * 100 + activity_id,
        severity_id=severity_id,
        source_format=v.source_format,
        source_kind=v.kind,
        observer="suricata",
        message=message,
        src=_endpoint(r.src_ip, r.src_port),
        dst=_endpoint(r.dest_ip, r.dest_port),
        source=v.origin.source,
        sensor=r.host,
        transport=r.proto.lower() if r.proto else None,
        connection_uid=str(r.flow_id) if r.flow_id is not None else None,
        app_protocol=app_protocol,
        ics=ics,
        detection=detection,
        details=details,
    )


def _arrow(v: ValidatedRecord) -> str:
    r = v.record
    return f"{r.orig_h}:{r.orig_p} -> {r.resp_h}:{r.resp_p}"


def _zeek_conn(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekConn = v.record
    service = r.service or None
    return _zeek_event(
        v,
        transport=r.proto,
        activity_id=_CONN_ACTIVITY.get(r.conn_state or "", ActivityId.TRAFFIC),
        app_protocol=service,
        message=(
            f"{r.proto} connection {_arrow(v)} {service or 'unknown service'} {r.conn_state or ''}"
        ).rstrip(),
        details=_details(
            conn_state=r.conn_state,
            history=r.history,
            duration=r.duration,
            orig_bytes=r.orig_bytes,
            resp_bytes=r.resp_bytes,
        ),
    )


def _zeek_modbus(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekModbus = v.record
    info = ics.modbus_function(r.func)
    is_request = None if r.pdu_type is None else r.pdu_type == "REQ"
    return _zeek_event(
        v,
        app_protocol="modbus",
        ics=_ics(info, "modbus", is_request=is_request, unit_id=r.unit, status=r.exception),
        message=f"modbus {info.name} {_arrow(v)}"
        + (f" unit {r.unit}" if r.unit is not None else ""),
        details=_details(tid=r.tid, exception=r.exception),
    )


def _zeek_modbus_detailed(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekModbusDetailed = v.record
    info = ics.modbus_function(r.func)
    subfunction = None
    sub_code = r.request_subfunction_code or r.response_subfunction_code
    if sub_code:
        sub = ics.modbus_diagnostic_subfunction(sub_code)
        subfunction = sub.name
        if sub.operation not in (ics.Operation.UNKNOWN, ics.Operation.OTHER):
            info = ics.FunctionInfo(info.code, info.name, sub.operation, info.is_exception)
    elif r.mei_type:
        mei = ics.modbus_mei_type(r.mei_type)
        subfunction = mei.name
    return _zeek_event(
        v,
        app_protocol="modbus",
        ics=_ics(
            info,
            "modbus",
            is_request=r.is_orig,
            unit_id=r.unit,
            address_start=r.address,
            address_count=r.quantity,
            subfunction=subfunction,
            status=r.exception_code,
        ),
        message=f"modbus {info.name} {_arrow(v)}"
        + (f" unit {r.unit}" if r.unit is not None else "")
        + (f" address {r.address} x{r.quantity}" if r.address is not None else ""),
        details=_details(
            tid=r.tid,
            request_values=",".join(map(str, r.request_values)) if r.request_values else None,
            response_values=",".join(map(str, r.response_values)) if r.response_values else None,
            exception_code=r.exception_code,
        ),
    )


def _zeek_dnp3(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekDnp3 = v.record
    info = ics.dnp3_function(r.fc_request or r.fc_reply)
    return _zeek_event(
        v,
        app_protocol="dnp3",
        ics=_ics(info, "dnp3", is_request=bool(r.fc_request)),
        message=f"dnp3 {info.name} {_arrow(v)}",
        details=_details(fc_request=r.fc_request, fc_reply=r.fc_reply, iin=r.iin),
    )


def _zeek_dnp3_control(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekDnp3Control = v.record
    info = ics.dnp3_function(r.function_code, unknown_hex=True)  # ICSNPP writes unknown-%x
    return _zeek_event(
        v,
        app_protocol="dnp3",
        ics=_ics(
            info,
            "dnp3",
            is_request=r.is_orig,
            address_start=r.index_number,
            address_count=1 if r.index_number is not None else None,
            subfunction=r.operation_type,
            status=r.status_code,
        ),
        message=f"dnp3 {info.name} {r.block_type or ''} index {r.index_number} {_arrow(v)}",
        details=_details(
            block_type=r.block_type,
            trip_control_code=r.trip_control_code,
            operation_type=r.operation_type,
            execute_count=r.execute_count,
            on_time=r.on_time,
            off_time=r.off_time,
        ),
    )


def _s7_is_request(rosctr: int | None, function_code: str | None) -> bool | None:
    if rosctr == 1:
        return True
    if rosctr in (2, 3):
        return False
    if rosctr == 7 and function_code:
        # User-data function groups: 0x4_ is a request, 0x8_ a response.
        nibble = function_code.lower().removeprefix("0x")[:1]
        return True if nibble == "4" else False if nibble == "8" else None
    return None


def _zeek_s7comm(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekS7comm = v.record
    info = ics.s7comm_function(r.function_code, r.subfunction_code, r.rosctr_code)
    return _zeek_event(
        v,
        app_protocol="s7comm",
        ics=_ics(
            info,
            "s7comm",
            is_request=_s7_is_request(r.rosctr_code, r.function_code),
            subfunction=r.subfunction_name or r.subfunction_code,
            status=r.error_class,
        ),
        message=f"s7comm {r.rosctr_name or ''} {info.name} {_arrow(v)}",
        details=_details(
            rosctr=r.rosctr_name,
            function_name=r.function_name,
            subfunction_name=r.subfunction_name,
            error_code=r.error_code,
            pdu_reference=r.pdu_reference,
        ),
    )


def _zeek_s7comm_plus(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekS7commPlus = v.record
    info = ics.s7comm_plus_function(r.function_code, r.opcode)
    opcode = (r.opcode or "").lower()
    is_request = True if opcode == "0x31" else False if opcode == "0x32" else None
    return _zeek_event(
        v,
        app_protocol="s7comm_plus",
        ics=_ics(info, "s7comm_plus", is_request=is_request),
        message=f"s7comm-plus {r.opcode_name or ''} {info.name} {_arrow(v)}",
        details=_details(version=r.version, opcode=r.opcode_name, function_name=r.function_name),
    )


def _zeek_enip(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekEnip = v.record
    info = ics.enip_command(r.enip_command_code)
    return _zeek_event(
        v,
        app_protocol="enip",
        ics=_ics(info, "enip", is_request=r.is_orig, status=r.enip_status),
        message=f"enip {info.name} {_arrow(v)}",
        details=_details(session_handle=r.session_handle, length=r.length),
    )


def _zeek_cip(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekCip = v.record
    info = ics.cip_service(r.cip_service_code, r.class_id, response=r.direction)
    return _zeek_event(
        v,
        app_protocol="cip",
        ics=_ics(info, "cip", is_request=r.is_orig, status=r.cip_status),
        message=f"cip {info.name} {r.class_name or ''} {_arrow(v)}",
        details=_details(
            class_id=r.class_id,
            class_name=r.class_name,
            instance_id=r.instance_id,
            attribute_id=r.attribute_id,
            direction=r.direction,
        ),
    )


def _zeek_cip_identity(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekCipIdentity = v.record
    info = ics.enip_command(0x63)  # identity records answer a List Identity request
    return _zeek_event(
        v,
        app_protocol="enip",
        ics=_ics(info, "enip", is_request=r.is_orig),
        message=(
            f"cip identity {r.vendor_name or ''} {r.product_name or ''} "
            f"rev {r.revision} {_arrow(v)}"
        ),
        details=_details(
            vendor_id=r.vendor_id,
            vendor_name=r.vendor_name,
            device_type=r.device_type_name,
            product_code=r.product_code,
            product_name=r.product_name,
            revision=r.revision,
            serial_number=r.serial_number,
            device_state=r.device_state,
        ),
    )


_BACNET_REQUEST = {"CONFIRMED_REQUEST": True, "UNCONFIRMED_REQUEST": True}


def _zeek_bacnet(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.ZeekBacnet = v.record
    info = ics.bacnet_service(r.pdu_type, r.pdu_service)
    return _zeek_event(
        v,
        app_protocol="bacnet",
        ics=_ics(
            info,
            "bacnet",
            is_request=_BACNET_REQUEST.get(r.pdu_type or "", False),
            status=r.result_code,
        ),
        message=f"bacnet {r.pdu_type or ''} {info.name} {_arrow(v)}",
        details=_details(bvlc_function=r.bvlc_function, invoke_id=r.invoke_id),
    )


def _suricata_arrow(r: Any) -> str:
    return f"{r.src_ip}:{r.src_port} -> {r.dest_ip}:{r.dest_port}"


# Suricata rule metadata keys that carry ATT&CK technique ids (ET rules use the first).
_TECHNIQUE_KEYS = ("mitre_technique_id", "mitre_attack", "attack_id")


def _attack_techniques(metadata: dict[str, list[str]] | None) -> tuple[str, ...]:
    if not metadata:
        return ()
    found = [
        value.strip().upper()
        for key in _TECHNIQUE_KEYS
        for value in metadata.get(key) or ()
        if value.strip().upper().startswith("T")
    ]
    return tuple(dict.fromkeys(found))


def _suricata_alert(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.SuricataAlert = v.record
    alert = r.alert
    return _suricata_event(
        v,
        class_uid=DETECTION_FINDING,
        activity_id=1,  # OCSF Detection Finding: Create
        severity_id=_SURICATA_SEVERITY.get(alert.severity or 0, SeverityId.INFORMATIONAL),
        detection=DetectionInfo(
            rule_uid=f"{alert.gid or 1}:{alert.signature_id}:{alert.rev or 0}",
            title=alert.signature,
            category=alert.category,
            sensor_severity=alert.severity,
            techniques=_attack_techniques(alert.metadata),
        ),
        message=f"suricata alert {alert.signature} {_suricata_arrow(r)}",
        details=_details(action=alert.action, community_id=r.community_id),
    )


def _suricata_flow(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.SuricataFlow = v.record
    flow = r.flow
    return _suricata_event(
        v,
        activity_id=ActivityId.CLOSE if flow.state == "closed" else ActivityId.TRAFFIC,
        message=f"suricata flow {_suricata_arrow(r)} {flow.state or ''}".rstrip(),
        details=_details(
            state=flow.state,
            reason=flow.reason,
            bytes_toserver=flow.bytes_toserver,
            bytes_toclient=flow.bytes_toclient,
            pkts_toserver=flow.pkts_toserver,
            pkts_toclient=flow.pkts_toclient,
            community_id=r.community_id,
        ),
    )


def _suricata_modbus(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.SuricataModbus = v.record
    message = r.modbus.request or r.modbus.response
    if message is None:
        info = ics.modbus_function(None)
        unit = address = quantity = None
        status = subfunction = None
    else:
        info = ics.modbus_function(message.function_raw)
        unit = message.unit_id
        address = message.read.address if message.read else None
        quantity = message.read.quantity if message.read else None
        if message.write is not None:
            address = message.write.address if message.write.address is not None else address
            quantity = quantity if quantity is not None else 1
        response = r.modbus.response
        status = response.exception.code if response and response.exception else None
        subfunction = None
        if message.diagnostic is not None and message.diagnostic.raw is not None:
            sub = ics.modbus_diagnostic_subfunction(message.diagnostic.raw)
            subfunction = sub.name
            if sub.operation not in (ics.Operation.UNKNOWN, ics.Operation.OTHER):
                info = ics.FunctionInfo(info.code, info.name, sub.operation, info.is_exception)
        elif message.mei is not None and message.mei.raw is not None:
            subfunction = ics.modbus_mei_type(message.mei.raw).name
        if status is not None and not info.is_exception:
            info = ics.FunctionInfo(info.code, f"{info.name}_EXCEPTION", info.operation, True)
    return _suricata_event(
        v,
        app_protocol="modbus",
        ics=_ics(
            info,
            "modbus",
            is_request=r.modbus.request is not None,
            unit_id=unit,
            address_start=address,
            address_count=quantity,
            subfunction=subfunction,
            status=status,
        ),
        message=f"modbus {info.name} {_suricata_arrow(r)}",
        details=_details(
            transaction_id=message.transaction_id if message else None,
            access_type=message.access_type if message else None,
        ),
    )


def _suricata_dnp3(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.SuricataDnp3 = v.record
    d = r.dnp3
    message = d.request or d.response
    application = d.application or (message.application if message is not None else None)
    info = ics.dnp3_function(application.function_code if application else None)
    kind = d.type or ("request" if d.request else "response" if d.response else None)
    return _suricata_event(
        v,
        app_protocol="dnp3",
        # The outstation's link address: the destination of a request, the source of a response.
        ics=_ics(
            info,
            "dnp3",
            is_request=kind == "request",
            unit_id=d.dst if kind == "request" else d.src,
        ),
        message=f"dnp3 {info.name} {_suricata_arrow(r)}",
        details=_details(type=kind, link_src=d.src, link_dst=d.dst),
    )


_PLATFORM_LOOKUP: dict[str, Callable[[Any], ics.FunctionInfo]] = {
    "modbus": ics.modbus_function,
    "dnp3": ics.dnp3_function,
    "s7comm": ics.s7comm_function,
    "s7comm_plus": ics.s7comm_plus_function,
    "enip": ics.enip_command,
    "cip": ics.cip_service,
    "bacnet": lambda code: ics.bacnet_service("CONFIRMED_REQUEST", code),
    "opcua": ics.opcua_service,
}


def _platform(v: ValidatedRecord) -> NormalizedEvent:
    r: raw.PlatformEnvelope = v.record
    ics_info = None
    app_protocol = None
    if r.ics is not None:
        p = r.ics
        lookup = _PLATFORM_LOOKUP[p.protocol]
        # A name says more than a number where numbers are ambiguous (BACnet confirmed
        # and unconfirmed services share numbers), so the name wins when both are given.
        info = lookup(p.function if p.function else p.function_code)
        if p.protocol == "modbus" and p.function_code == 8 and p.subfunction_code is not None:
            sub = ics.modbus_diagnostic_subfunction(p.subfunction_code)
            if sub.operation not in (ics.Operation.UNKNOWN, ics.Operation.OTHER):
                info = ics.FunctionInfo(info.code, info.name, sub.operation, info.is_exception)
        ics_info = _ics(
            info,
            p.protocol,
            is_request=p.is_request,
            unit_id=p.unit_id,
            address_start=p.address,
            address_count=p.quantity,
            subfunction=str(p.subfunction_code) if p.subfunction_code is not None else None,
            status=p.status,
        )
        app_protocol = p.protocol
    name = ics_info.function_name if ics_info else "traffic"
    return NormalizedEvent(
        # The agent's message id is unique per observation and survives redelivery.
        event_id=event_id_for(v.kind, f"{r.sensor_id}\0{r.message_id}".encode()),
        time=r.observed_at.astimezone(UTC),
        class_uid=NETWORK_ACTIVITY,
        category_uid=4,
        activity_id=ActivityId.TRAFFIC,
        type_uid=NETWORK_ACTIVITY * 100 + ActivityId.TRAFFIC,
        severity_id=SeverityId.INFORMATIONAL,
        source_format=v.source_format,
        source_kind=v.kind,
        observer="robotlab-agent",
        message=(
            f"{app_protocol or 'network'} {name} {r.src.ip}:{r.src.port} -> {r.dst.ip}:{r.dst.port}"
        ),
        src=_endpoint(r.src.ip, r.src.port),
        dst=_endpoint(r.dst.ip, r.dst.port),
        source=v.origin.source,
        sensor=r.sensor_id,
        transport=r.transport,
        app_protocol=app_protocol,
        ics=ics_info,
        details=dict(r.attributes or {}),
    )


_NORMALIZERS: dict[str, Callable[[ValidatedRecord], NormalizedEvent]] = {
    "zeek.conn": _zeek_conn,
    "zeek.modbus": _zeek_modbus,
    "zeek.modbus_detailed": _zeek_modbus_detailed,
    "zeek.dnp3": _zeek_dnp3,
    "zeek.dnp3_control": _zeek_dnp3_control,
    "zeek.s7comm": _zeek_s7comm,
    "zeek.s7comm_plus": _zeek_s7comm_plus,
    "zeek.enip": _zeek_enip,
    "zeek.cip": _zeek_cip,
    "zeek.cip_identity": _zeek_cip_identity,
    "zeek.bacnet": _zeek_bacnet,
    "suricata.alert": _suricata_alert,
    "suricata.flow": _suricata_flow,
    "suricata.modbus": _suricata_modbus,
    "suricata.dnp3": _suricata_dnp3,
    "platform.v1": _platform,
}
assert set(_NORMALIZERS) == set(raw.KIND_TYPES), "every raw kind needs a normalizer"


def normalize_record(validated: ValidatedRecord) -> NormalizedEvent:
    """Map a validated record of any kind to the normalized event model."""
    return _NORMALIZERS[validated.kind](validated)


class Normalize(beam.PTransform):  # type: ignore[misc]
    """Stage 3: `ValidatedRecord` -> `NormalizedEvent`, with a ``dead_letters`` output."""

    def expand(self, records: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return stage_outputs(records, "NormalizeRecords", StageFn("normalize", normalize_record))
