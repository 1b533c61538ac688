"""ICS protocol reference tables: function and service codes, exactly as sensors log them, mapped
to a canonical function name and an operation category (read, write, program, ...).

Pure standard library, no Beam. Every lookup is a dict hit on the raw value the sensor wrote
("READ_COILS", "0xf0", 0x4C, "read_property", ...); other spellings are resolved once and
memoised. Nothing raises: unrecognised values come back as ``Operation.UNKNOWN`` with the value
kept as the name (and as the code when it is numeric); ``None`` and Zeek's unset markers ("-",
"(empty)", "") give ``FunctionInfo(None, "", Operation.UNKNOWN)``.

Sources consulted (the names below are what these parsers log):

* zeek/zeek: scripts/base/protocols/modbus/consts.zeek and main.zeek (``build_func``: the
  ``_EXCEPTION`` suffix, ``unknown-%d``), scripts/base/protocols/dnp3/consts.zeek and main.zeek.
* cisagov/icsnpp-modbus: scripts/consts.zeek (diagnostic sub-function names, logged as names in
  modbus_detailed.log) and scripts/main.zeek (``mei_type`` strings).
* cisagov/icsnpp-dnp3: scripts/consts.zeek (same names as Zeek, but ``unknown-%x`` in hex).
* cisagov/icsnpp-s7comm: scripts/consts.zeek and scripts/icsnpp/s7comm/main.zeek (function and
  user-data group codes as ``0x%02x``, PI service names in ``subfunction_code`` for PLC Control,
  S7comm-plus function codes as ``0x%04x``).
* cisagov/icsnpp-enip: scripts/consts.zeek, scripts/icsnpp/enip/main.zeek and
  src/enip-protocol.pac (cip.log logs ``service & 0x7f`` plus a ``direction`` field).
* cisagov/icsnpp-bacnet: scripts/consts.zeek and scripts/icsnpp/bacnet/main.zeek.
* cisagov/icsnpp-opcua-binary: src/headers/node_identifiers.h (service names and node ids).
* wireshark/wireshark: epan/dissectors/packet-cip.c and packet-cip.h (common services, class
  names, Connection Manager / PCCC / Modbus-object services), packet-enip.c (encapsulation
  commands incl. StartDTLS 0xC8), packet-s7comm.c (user-data groups).
* The S7comm-plus Wireshark plugin (packet-s7comm_plus.c, T. Wiens): function codes 0x04b1..0x059a
  and opcodes 0x31/0x32/0x33/0x02. ICSNPP's table agrees for the codes it has.
* ottowayi/pycomm3: pycomm3/cip/services.py (Logix tag services, Connection Manager services,
  File object services) and pycomm3/cip/object_library.py (classes 0x6B, 0x6C, 0x8B).
* A BACnet stack enum of unconfirmed services (addenda 135-2016bi/bz: 12 audit notification,
  13 who-am-i, 14 you-are); Modbus Application Protocol Specification V1.1b3 (function codes,
  FC 8 sub-functions incl. 0x15, MEI types 0x0D/0x0E); IEEE 1815 (DNP3) for semantics; Rockwell
  publications 1444-UM001 and 1203-5.13 (class 0xA1 Nonvolatile Storage, the ControlFLASH
  firmware-update object).

Category conventions used throughout: PROGRAM covers changes to control logic, firmware or a
whole-device configuration image (download, upload, activate, persist); WRITE covers individual
data points, attributes and parameters (including the device clock); RESPONSE covers replies and
unsolicited reports/notifications that carry no operation of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterable, Mapping

from schemas.event import Operation  # the one definition of operation categories

__all__ = [
    "EMPTY",
    "FunctionInfo",
    "Operation",
    "bacnet_service",
    "cip_class",
    "cip_service",
    "dnp3_function",
    "enip_command",
    "modbus_diagnostic_subfunction",
    "modbus_function",
    "modbus_mei_type",
    "opcua_service",
    "s7comm_function",
    "s7comm_plus_function",
]


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionInfo:
    """A function/service code resolved to a canonical name and an operation category."""

    code: int | None
    name: str
    operation: Operation
    is_exception: bool = False


READ = Operation.READ
WRITE = Operation.WRITE
PROGRAM = Operation.PROGRAM
CONTROL = Operation.CONTROL
DIAGNOSTIC = Operation.DIAGNOSTIC
FILE_TRANSFER = Operation.FILE_TRANSFER
RESTART_STOP = Operation.RESTART_STOP
SESSION = Operation.SESSION
RESPONSE = Operation.RESPONSE
OTHER = Operation.OTHER
UNKNOWN = Operation.UNKNOWN

EMPTY = FunctionInfo(None, "", UNKNOWN)

# Zeek writes "-" for unset and "(empty)" for empty; treat both like None.
_UNSET_MARKERS = ("-", "", "(empty)")

# Memo tables stop growing at this size, so garbage input cannot exhaust memory.
_MEMO_CAP = 1 << 16


# --------------------------------------------------------------------------------------------
# Helpers (parsing is done once per distinct value; the hot path is a dict hit)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _parse_code(text: str) -> int | None:
    """Parse "0x1A"/"0X1a" as hex and "26" as decimal; anything else gives None."""
    s = text.strip()
    if s[:2] in ("0x", "0X"):
        digits = s[2:]
        if digits and digits.isascii() and all(c in "0123456789abcdefABCDEF" for c in digits):
            return int(digits, 16)
        return None
    if s and s.isascii() and s.isdigit():
        return int(s)
    return None


@functools.lru_cache(maxsize=8192)
def _norm(text: str) -> str:
    """Fold a name to UPPER_SNAKE: "Read Coils", "ReadCoils", "read-coils" -> "READ_COILS"."""
    out: list[str] = []
    prev = ""
    for ch in text.strip():
        if ch.isalnum():
            if ch.isupper() and prev and (prev.islower() or prev.isdigit()):
                out.append("_")
            out.append(ch.upper())
        elif out and out[-1] != "_":
            out.append("_")
        prev = ch
    return "".join(out).strip("_")


def _as_code(value: object) -> int | None:
    """An int, or a decimal/hex string, as an int; else None (bools are not codes)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return _parse_code(value)
    return None


def _is_unset(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in _UNSET_MARKERS)


def _unknown(value: object, *, is_exception: bool = False) -> FunctionInfo:
    """UNKNOWN, keeping the value as the name and, when numeric, as the code."""
    if _is_unset(value):
        return EMPTY
    if isinstance(value, str):
        return FunctionInfo(_parse_code(value), value, UNKNOWN, is_exception)
    if isinstance(value, int) and not isinstance(value, bool):
        return FunctionInfo(value, str(value), UNKNOWN, is_exception)
    return FunctionInfo(None, str(value), UNKNOWN, is_exception)


def _remember(memo: dict[object, FunctionInfo], key: object, info: FunctionInfo) -> FunctionInfo:
    if len(memo) < _MEMO_CAP:
        with contextlib.suppress(TypeError):  # unhashable key: answer, but do not cache
            memo[key] = info
    return info


def _index(
    infos: Iterable[FunctionInfo], *, extra: Mapping[str, FunctionInfo] | None = None
) -> dict[object, FunctionInfo]:
    """Key each info by its int code, decimal string, hex strings and name."""
    idx: dict[object, FunctionInfo] = {marker: EMPTY for marker in _UNSET_MARKERS}
    idx[None] = EMPTY
    for info in infos:
        code = info.code
        if code is not None:
            idx[code] = info
            idx[str(code)] = info
            idx[f"0x{code:02x}"] = info
            idx[f"0x{code:02X}"] = info
        idx.setdefault(info.name, info)
    if extra:
        idx.update(extra)
    return idx


def _name_index(
    infos: Iterable[FunctionInfo], aliases: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Normalised name -> code, for the slow path."""
    names: dict[str, int] = {}
    for info in infos:
        if info.code is not None:
            names.setdefault(_norm(info.name), info.code)
    for alias, code in (aliases or {}).items():
        names[_norm(alias)] = code
    return names


def _table(rows: Mapping[int, tuple[str, Operation]]) -> dict[int, FunctionInfo]:
    return {code: FunctionInfo(code, name, op) for code, (name, op) in rows.items()}


# --------------------------------------------------------------------------------------------
# Modbus (Zeek modbus.log / ICSNPP modbus_detailed.log ``func``; Suricata ``function_raw``)
# --------------------------------------------------------------------------------------------

_MODBUS_ROWS: dict[int, tuple[str, Operation]] = {
    0x01: ("READ_COILS", READ),
    0x02: ("READ_DISCRETE_INPUTS", READ),
    0x03: ("READ_HOLDING_REGISTERS", READ),
    0x04: ("READ_INPUT_REGISTERS", READ),
    0x05: ("WRITE_SINGLE_COIL", WRITE),
    0x06: ("WRITE_SINGLE_REGISTER", WRITE),
    0x07: ("READ_EXCEPTION_STATUS", DIAGNOSTIC),
    # FC 8's real effect depends on the sub-function: see modbus_diagnostic_subfunction.
    0x08: ("DIAGNOSTICS", DIAGNOSTIC),
    0x09: ("PROGRAM_484", PROGRAM),
    # The POLL_* codes poll a Modicon for completion of a PROGRAM_* request: only
    # programming software sends them, so they belong with the programming session.
    0x0A: ("POLL_484", PROGRAM),
    0x0B: ("GET_COMM_EVENT_COUNTER", DIAGNOSTIC),
    0x0C: ("GET_COMM_EVENT_LOG", DIAGNOSTIC),
    0x0D: ("PROGRAM_584_984", PROGRAM),
    0x0E: ("POLL_584_984", PROGRAM),
    0x0F: ("WRITE_MULTIPLE_COILS", WRITE),
    0x10: ("WRITE_MULTIPLE_REGISTERS", WRITE),
    0x11: ("REPORT_SLAVE_ID", DIAGNOSTIC),
    0x12: ("PROGRAM_884_U84", PROGRAM),
    # Resets the 884/U84 communication link, like FC 8 sub-function 1 (restart comms).
    0x13: ("RESET_COMM_LINK_884_U84", RESTART_STOP),
    0x14: ("READ_FILE_RECORD", FILE_TRANSFER),
    0x15: ("WRITE_FILE_RECORD", FILE_TRANSFER),
    0x16: ("MASK_WRITE_REGISTER", WRITE),
    # Writes registers (and reads others) in one transaction: the write is what matters.
    0x17: ("READ_WRITE_MULTIPLE_REGISTERS", WRITE),
    0x18: ("READ_FIFO_QUEUE", READ),
    0x28: ("PROGRAM_CONCEPT", PROGRAM),
    0x29: ("MULTIPLE_FUNCTION_CODES", OTHER),
    # FC 43 carries MEI types; 0x0E Read Device Identification is by far the common one.
    0x2B: ("ENCAP_INTERFACE_TRANSPORT", DIAGNOSTIC),
    # Schneider UMAS rides on FC 90 and can read, write, start/stop and download; without the
    # UMAS sub-code the engineering-protocol category PROGRAM is the safe label.
    0x5A: ("PROGRAM_UNITY", PROGRAM),
    0x5B: ("OBJECT_MESSAGING", OTHER),
    # Replaces the device firmware: that changes device logic (ATT&CK for ICS T0857), so it is
    # grouped with program download rather than FILE_TRANSFER (file records are data).
    0x7D: ("FIRMWARE_REPLACEMENT", PROGRAM),
    0x7E: ("PROGRAM_584_984_2", PROGRAM),
    0x7F: ("REPORT_LOCAL_ADDRESS", DIAGNOSTIC),
}
_MODBUS_BASE = _table(_MODBUS_ROWS)


def _modbus_from_code(code: int) -> FunctionInfo:
    """What Zeek's build_func would name ``code``, with our category."""
    base = _MODBUS_BASE.get(code)
    if base is not None:
        return base
    if 0x80 <= code <= 0xFF:
        base = _MODBUS_BASE.get(code & 0x7F)
        if base is not None:
            return FunctionInfo(code, f"{base.name}_EXCEPTION", base.operation, True)
        return FunctionInfo(code, str(code), UNKNOWN, True)
    return FunctionInfo(code, str(code), UNKNOWN)


def _modbus_unknown_n(n: int) -> FunctionInfo:
    """Zeek's ``unknown-N``: an exception to a known function, else genuinely unknown."""
    if 0x80 <= n <= 0xFF:
        base = _MODBUS_BASE.get(n & 0x7F)
        if base is not None:
            return FunctionInfo(n, f"{base.name}_EXCEPTION", base.operation, True)
        # Still an exception response on the wire (high bit set), to an unassigned code.
        return FunctionInfo(n, f"unknown-{n}", UNKNOWN, True)
    return FunctionInfo(n, f"unknown-{n}", UNKNOWN)


def _build_modbus_index() -> dict[object, FunctionInfo]:
    idx = _index(_modbus_from_code(code) for code in range(256))
    for base in _MODBUS_BASE.values():
        assert base.code is not None
        idx[base.name] = base
        idx[f"{base.name}_EXCEPTION"] = _modbus_from_code(base.code | 0x80)
    for n in range(256):
        idx[f"unknown-{n}"] = _modbus_unknown_n(n)
    return idx


_MODBUS_INDEX = _build_modbus_index()
_MODBUS_NAMES = _name_index(_MODBUS_BASE.values())


def _resolve_modbus(value: object) -> FunctionInfo:
    if _is_unset(value):
        return EMPTY
    code = _as_code(value)
    if code is not None:
        return _modbus_from_code(code) if 0 <= code <= 0xFF else _unknown(value)
    if not isinstance(value, str):
        return _unknown(value)
    text = value.strip()
    if text.lower().startswith("unknown-"):
        n = _parse_code(text[8:])
        return _modbus_unknown_n(n) if n is not None and n <= 0xFF else _unknown(value)
    name = _norm(text)
    if name.endswith("_EXCEPTION") and name[:-10] in _MODBUS_NAMES:
        return _modbus_from_code(_MODBUS_NAMES[name[:-10]] | 0x80)
    if name in _MODBUS_NAMES:
        return _MODBUS_BASE[_MODBUS_NAMES[name]]
    return _unknown(value)


def modbus_function(value: str | int | None) -> FunctionInfo:
    """A Modbus function: Zeek names ("READ_COILS", "READ_COILS_EXCEPTION", "unknown-156"), ints
    (Suricata ``function_raw``; >= 0x80 is the exception response to ``code - 0x80``) or digit
    and hex strings. Exceptions keep the base function's operation, with ``is_exception``."""
    try:
        return _MODBUS_INDEX[value]
    except (KeyError, TypeError):
        return _remember(_MODBUS_INDEX, value, _resolve_modbus(value))


# FC 8 sub-functions (Modbus spec 6.8.1; names as cisagov/icsnpp-modbus logs them).
_MODBUS_DIAG_ROWS: dict[int, tuple[str, Operation]] = {
    0x00: ("RETURN_QUERY_DATA", DIAGNOSTIC),
    # Restarts the serial port and takes the device out of listen-only mode.
    0x01: ("RESTART_COMMUNICATIONS_OPTION", RESTART_STOP),
    0x02: ("RETURN_DIAGNOSTIC_REGISTER", DIAGNOSTIC),
    # Changes the device's ASCII-mode end-of-message delimiter: a device behaviour change.
    0x03: ("CHANGE_ASCII_INPUT_DELIMITER", CONTROL),
    # Silences the device on the bus (a classic denial-of-service primitive).
    0x04: ("FORCE_LISTEN_ONLY_MODE", CONTROL),
    # Clears the diagnostic counters: housekeeping of the diagnostics family, although it also
    # erases evidence; kept DIAGNOSTIC so rules can still pick it out by name.
    0x0A: ("CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER", DIAGNOSTIC),
    0x0B: ("RETURN_BUS_MESSAGE_COUNT", DIAGNOSTIC),
    0x0C: ("RETURN_BUS_COMMUNICATION_ERROR_COUNT", DIAGNOSTIC),
    0x0D: ("RETURN_BUS_EXCEPTION_ERROR_COUNT", DIAGNOSTIC),
    0x0E: ("RETURN_SERVER_MESSAGE_COUNT", DIAGNOSTIC),
    0x0F: ("RETURN_SERVER_NO_RESPONSE_COUNT", DIAGNOSTIC),
    0x10: ("RETURN_SERVER_NAK_COUNT", DIAGNOSTIC),
    0x11: ("RETURN_SERVER_BUSY_COUNT", DIAGNOSTIC),
    0x12: ("RETURN_BUS_CHARACTER_OVERRUN_COUNT", DIAGNOSTIC),
    0x14: ("CLEAR_OVERRUN_COUNTER_AND_FLAG", DIAGNOSTIC),
    0x15: ("GET_CLEAR_MODBUS_PLUS_STATISTICS", DIAGNOSTIC),
}
_MODBUS_DIAG = _table(_MODBUS_DIAG_ROWS)
# cisagov/icsnpp-modbus scripts/consts.zeek spellings (modbus_detailed.log logs names).
_MODBUS_DIAG_ALIASES = {
    "Return Query Data": 0x00,
    "Restart Communications Option": 0x01,
    "Return Diagnostic Register": 0x02,
    "Change ASCII Input Delimiter": 0x03,
    "Force Listen Only Mode": 0x04,
    "Clear Counters and Diagnostic Register": 0x0A,
    "Return Bus Message Count": 0x0B,
    "Return Bus Communication Error Count": 0x0C,
    "Return Bus Exception Error Count": 0x0D,
    "Return Server Message Count": 0x0E,
    "Return Server No Response Count": 0x0F,
    "Return Server NAK Count": 0x10,
    "Return Server Busy Count": 0x11,
    "Return Bus Character Overrun Count": 0x12,
    "Clear Overrun Counter and Flag": 0x14,
}
_MODBUS_DIAG_INDEX = _index(
    _MODBUS_DIAG.values(),
    extra={alias: _MODBUS_DIAG[code] for alias, code in _MODBUS_DIAG_ALIASES.items()},
)
for _info in _MODBUS_DIAG.values():  # the spec writes sub-function codes as 16-bit values
    _MODBUS_DIAG_INDEX[f"0x{_info.code:04x}"] = _info
    _MODBUS_DIAG_INDEX[f"0x{_info.code:04X}"] = _info
_MODBUS_DIAG_NAMES = _name_index(_MODBUS_DIAG.values(), _MODBUS_DIAG_ALIASES)


def _resolve_single(
    value: object, table: Mapping[int, FunctionInfo], names: Mapping[str, int]
) -> FunctionInfo:
    """Slow path shared by the single-number-space tables."""
    if _is_unset(value):
        return EMPTY
    code = _as_code(value)
    if code is not None:
        return table.get(code) or _unknown(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower().startswith("unknown-"):  # Zeek/ICSNPP default "unknown-%d"
            tail = text[8:]
            code = int(tail) if tail.isascii() and tail.isdigit() else None
            return FunctionInfo(code, value, UNKNOWN)
        found = names.get(_norm(text))
        if found is not None:
            return table[found]
    return _unknown(value)


def modbus_diagnostic_subfunction(value: str | int | None) -> FunctionInfo:
    """An FC 8 sub-function: int, "10", "0x000A", or ICSNPP's name ("Return Query Data")."""
    try:
        return _MODBUS_DIAG_INDEX[value]
    except (KeyError, TypeError):
        info = _resolve_single(value, _MODBUS_DIAG, _MODBUS_DIAG_NAMES)
        return _remember(_MODBUS_DIAG_INDEX, value, info)


_MODBUS_MEI = _table(
    {
        # CANopen General Reference Request and Response PDU: tunnels CANopen SDOs.
        0x0D: ("CANOPEN_GENERAL_REFERENCE", OTHER),
        0x0E: ("READ_DEVICE_IDENTIFICATION", DIAGNOSTIC),
    }
)
# cisagov/icsnpp-modbus scripts/main.zeek spellings of mei_type.
_MODBUS_MEI_ALIASES = {
    "CANopen": 0x0D,
    "Read Device Identification": 0x0E,
    "READ-DEVICE-IDENTIFICATION": 0x0E,
}
_MODBUS_MEI_INDEX = _index(
    _MODBUS_MEI.values(),
    extra={alias: _MODBUS_MEI[code] for alias, code in _MODBUS_MEI_ALIASES.items()},
)
_MODBUS_MEI_NAMES = _name_index(_MODBUS_MEI.values(), _MODBUS_MEI_ALIASES)


def _resolve_mei(value: object) -> FunctionInfo:
    if isinstance(value, str):
        text = value.strip()
        # ICSNPP: "invalid encapsulated interface transport mei-(0x%02x)" (requests) and
        # "unknown encapsulated interface transport mei-(ox%02x)" (responses, sic).
        if "mei-(" in text:
            digits = text.rsplit("mei-(", 1)[1].rstrip(")").lower().removeprefix("0x")
            code = _parse_code("0x" + digits.removeprefix("ox"))
            if code in _MODBUS_MEI:
                return _MODBUS_MEI[code]
            return FunctionInfo(code, value, UNKNOWN)
        # ICSNPP joins differing request/response MEI types with " and ": keep the first.
        if " and " in text:
            return _resolve_mei(text.split(" and ", 1)[0])
    return _resolve_single(value, _MODBUS_MEI, _MODBUS_MEI_NAMES)


def modbus_mei_type(value: str | int | None) -> FunctionInfo:
    """An FC 43 MEI type: 0x0E Read Device Identification (DIAGNOSTIC), 0x0D CANopen."""
    try:
        return _MODBUS_MEI_INDEX[value]
    except (KeyError, TypeError):
        return _remember(_MODBUS_MEI_INDEX, value, _resolve_mei(value))


# --------------------------------------------------------------------------------------------
# DNP3 (Zeek dnp3.log fc_request/fc_reply, ICSNPP dnp3_control/dnp3_objects function_code,
# Suricata application.function_code)
# --------------------------------------------------------------------------------------------

_DNP3 = _table(
    {
        0x00: ("CONFIRM", RESPONSE),
        0x01: ("READ", READ),
        0x02: ("WRITE", WRITE),
        0x03: ("SELECT", CONTROL),
        0x04: ("OPERATE", CONTROL),
        0x05: ("DIRECT_OPERATE", CONTROL),
        0x06: ("DIRECT_OPERATE_NR", CONTROL),
        0x07: ("IMMED_FREEZE", CONTROL),
        0x08: ("IMMED_FREEZE_NR", CONTROL),
        0x09: ("FREEZE_CLEAR", CONTROL),
        0x0A: ("FREEZE_CLEAR_NR", CONTROL),
        0x0B: ("FREEZE_AT_TIME", CONTROL),
        0x0C: ("FREEZE_AT_TIME_NR", CONTROL),
        0x0D: ("COLD_RESTART", RESTART_STOP),
        0x0E: ("WARM_RESTART", RESTART_STOP),
        # INITIALIZE_DATA resets data to start-up values; INITIALIZE/START/STOP_APPL start and
        # stop outstation applications: all change the run state.
        0x0F: ("INITIALIZE_DATA", RESTART_STOP),
        0x10: ("INITIALIZE_APPL", RESTART_STOP),
        0x11: ("START_APPL", RESTART_STOP),
        0x12: ("STOP_APPL", RESTART_STOP),
        # Persists the outstation configuration (obsolete in IEEE 1815): a configuration-image
        # change, grouped with program changes.
        0x13: ("SAVE_CONFIG", PROGRAM),
        # Turning unsolicited reporting on/off changes outstation behaviour (and disabling it
        # can blind the master), so CONTROL.
        0x14: ("ENABLE_UNSOLICITED", CONTROL),
        0x15: ("DISABLE_UNSOLICITED", CONTROL),
        # Re-assigns points to event classes: a configuration write.
        0x16: ("ASSIGN_CLASS", WRITE),
        # Time-synchronisation helpers; the clock itself is set with WRITE (g50v1).
        0x17: ("DELAY_MEASURE", OTHER),
        0x18: ("RECORD_CURRENT_TIME", OTHER),
        0x19: ("OPEN_FILE", FILE_TRANSFER),
        0x1A: ("CLOSE_FILE", FILE_TRANSFER),
        0x1B: ("DELETE_FILE", FILE_TRANSFER),
        0x1C: ("GET_FILE_INFO", FILE_TRANSFER),
        0x1D: ("AUTHENTICATE_FILE", FILE_TRANSFER),
        0x1E: ("ABORT_FILE", FILE_TRANSFER),
        # Activates configuration previously written (often by file transfer): the moment a
        # new configuration image takes effect, like a program download.
        0x1F: ("ACTIVATE_CONFIG", PROGRAM),
        # Secure Authentication challenge/reply exchange.
        0x20: ("AUTHENTICATE_REQ", SESSION),
        0x21: ("AUTHENTICATE_REQ_NR", SESSION),
        0x81: ("RESPONSE", RESPONSE),
        0x82: ("UNSOLICITED_RESPONSE", RESPONSE),
        0x83: ("AUTHENTICATE_RESP", RESPONSE),
    }
)


def _dnp3_unknown(text: str, radix: int) -> FunctionInfo:
    try:
        code: int | None = int(text.strip()[8:], radix)
    except ValueError:
        code = None
    return FunctionInfo(code, text, UNKNOWN)


def _build_dnp3_index() -> dict[object, FunctionInfo]:
    idx = _index(_DNP3.values())
    for n in range(256):
        info = _DNP3.get(n) or FunctionInfo(n, str(n), UNKNOWN)
        idx.setdefault(n, info)
        idx.setdefault(str(n), info)
        # Zeek writes unknown codes as unknown-%d (never for a code in its table).
        idx[f"unknown-{n}"] = FunctionInfo(n, f"unknown-{n}", UNKNOWN)
    return idx


_DNP3_INDEX = _build_dnp3_index()
_DNP3_NAMES = _name_index(_DNP3.values())
_DNP3_HEX_MEMO: dict[object, FunctionInfo] = {}


def dnp3_function(value: str | int | None, *, unknown_hex: bool = False) -> FunctionInfo:
    """A DNP3 application function: Zeek/ICSNPP names ("DIRECT_OPERATE"), ints or digit strings.

    Zeek's dnp3.log writes unknown codes as ``unknown-%d``, ICSNPP's dnp3_control/dnp3_objects
    as ``unknown-%x``; pass ``unknown_hex=True`` for the ICSNPP logs so the code comes out right
    (the operation is UNKNOWN either way)."""
    if unknown_hex and isinstance(value, str) and value.strip().lower().startswith("unknown-"):
        try:
            return _DNP3_HEX_MEMO[value]
        except KeyError:
            return _remember(_DNP3_HEX_MEMO, value, _dnp3_unknown(value, 16))
    try:
        return _DNP3_INDEX[value]
    except (KeyError, TypeError):
        if isinstance(value, str) and value.strip().lower().startswith("unknown-"):
            info = _dnp3_unknown(value, 10)
        else:
            info = _resolve_single(value, _DNP3, _DNP3_NAMES)
        return _remember(_DNP3_INDEX, value, info)


# --------------------------------------------------------------------------------------------
# S7comm (cisagov/icsnpp-s7comm s7comm.log: rosctr_code, function_code, subfunction_code)
# --------------------------------------------------------------------------------------------

_S7_JOB = _table(
    {
        0x00: ("CPU_SERVICES", OTHER),
        0x04: ("READ_VAR", READ),
        0x05: ("WRITE_VAR", WRITE),
        0x1A: ("REQUEST_DOWNLOAD", PROGRAM),
        0x1B: ("DOWNLOAD_BLOCK", PROGRAM),
        0x1C: ("DOWNLOAD_ENDED", PROGRAM),
        # Upload (PLC -> engineering station) reads the program out: program theft / the
        # first step of program modification, so PROGRAM rather than READ.
        0x1D: ("START_UPLOAD", PROGRAM),
        0x1E: ("UPLOAD", PROGRAM),
        0x1F: ("END_UPLOAD", PROGRAM),
        # PI service call; the service in subfunction_code decides (see _S7_PI_SERVICES).
        0x28: ("PLC_CONTROL", CONTROL),
        0x29: ("PLC_STOP", RESTART_STOP),
        0xF0: ("SETUP_COMMUNICATION", SESSION),
    }
)
_S7_JOB_ALIASES = {  # icsnpp-s7comm function_name spellings
    "CPU Services": 0x00,
    "Read Variable": 0x04,
    "Write Variable": 0x05,
    "Request Download": 0x1A,
    "Download Block": 0x1B,
    "Download Ended": 0x1C,
    "Start Upload": 0x1D,
    "Upload": 0x1E,
    "End Upload": 0x1F,
    "PLC Control": 0x28,
    "PLC Stop": 0x29,
    "Setup Communication": 0xF0,
}
_S7_JOB_NAMES = _name_index(_S7_JOB.values(), _S7_JOB_ALIASES)

# PI services of function 0x28 (icsnpp-s7comm s7comm_plc_control_services). The "_N_" ones are
# SINUMERIK NC services; their categories are best effort from the descriptions.
_S7_PI_SERVICES: dict[str, Operation] = {
    "P_PROGRAM": RESTART_STOP,  # "PLC Start / Stop" (warm/cold start; stop is normally 0x29)
    "_INSE": PROGRAM,  # activates a downloaded block
    "_INS2": PROGRAM,
    "_DELE": PROGRAM,  # deletes a block
    "_MODU": PROGRAM,  # copy RAM to ROM: persists the program
    "_GARB": PROGRAM,  # compress memory: reorganises program memory
    "_N_LOGIN_": SESSION,
    "_N_LOGOUT": SESSION,
    "_N_NEWPWD": SESSION,  # password change
    "_N_DASAVE": PROGRAM,  # copies data from SRAM to FLASH (persist, like _MODU)
    "_N_CONFIG": PROGRAM,  # reconfigures machine data
    "_N_DELVAR": PROGRAM,  # deletes a data block (like _DELE)
    "_N_F_OPER": FILE_TRANSFER,
    "_N_F_OPEN": FILE_TRANSFER,
    "_N_F_CLOS": FILE_TRANSFER,
    "_N_F_SEEK": FILE_TRANSFER,
    "_N_F_DELE": FILE_TRANSFER,
    "_N_F_DELR": FILE_TRANSFER,
    "_N_F_XFER": FILE_TRANSFER,
    "_N_F_COPY": FILE_TRANSFER,
    "_N_F_DMDA": FILE_TRANSFER,
    "_N_F_PROT": FILE_TRANSFER,
    "_N_F_RENA": FILE_TRANSFER,
    "_N_LOCKE_": FILE_TRANSFER,
    "_N_SRTEXT": FILE_TRANSFER,
    "_N_SELECT": CONTROL,  # selects a program for execution
    "_N_EXTERN": CONTROL,
    "_N_EXTMOD": CONTROL,
    "_N_SEL_BL": CONTROL,
    "_N_FINDBL": CONTROL,
    "_N_CANCEL": CONTROL,
    "_N_DIGIOF": CONTROL,
    "_N_DIGION": CONTROL,
    "_N_OST_OF": CONTROL,
    "_N_OST_ON": CONTROL,
    "_N_SETUFR": CONTROL,
    "_N_STRTLK": CONTROL,
    "_N_STRTUL": CONTROL,
    "_N_ASUP__": CONTROL,
    "_N_IBN_SS": CONTROL,
    "_N_NCKMOD": CONTROL,
    "_N_MMCSEM": OTHER,
    "_N_SCALE_": WRITE,
    "_N_TMRASS": WRITE,
    "_N_DZERO_": WRITE,
    "_N_CREATO": WRITE,
    "_N_DELETO": WRITE,
    "_N_CRCEDN": WRITE,
    "_N_CREACE": WRITE,
    "_N_DELECE": WRITE,
    "_N_CRTOCE": WRITE,
    "_N_SETTST": WRITE,
    "_N_TMAWCO": WRITE,
    "_N_TMCRTC": WRITE,
    "_N_TMCRTO": WRITE,
    "_N_TMMVTL": WRITE,
    "_N_TMPCIT": WRITE,
    "_N_TMPOSM": CONTROL,  # positions a magazine: moves machinery
    "_N_TRESMO": WRITE,
    "_N_CHEKDM": READ,
    "_N_CHKDNO": READ,
    "_N_TMFDPL": READ,
    "_N_TMFPBP": READ,
    "_N_TMGETT": READ,
    "_N_TSEARC": READ,
}

# User-data function groups (low nibble of function_code) and their sub-functions.
_S7_UD_GROUP_NAMES: dict[int, tuple[str, Operation]] = {
    # Group defaults apply only when no sub-function is given.
    0x0: ("MODE_TRANSITION", RESTART_STOP),
    0x1: ("PROGRAMMER_COMMANDS", OTHER),
    0x2: ("CYCLIC_SERVICES", READ),
    0x3: ("BLOCK_FUNCTIONS", DIAGNOSTIC),
    0x4: ("CPU_FUNCTIONS", DIAGNOSTIC),
    0x5: ("SECURITY", SESSION),
    0x6: ("PBC_BSEND_BRECV", OTHER),
    0x7: ("TIME_FUNCTIONS", OTHER),
    0xF: ("NC_PROGRAMMING", PROGRAM),
}
_S7_UD_GROUP_ALIASES = {  # icsnpp-s7comm s7comm_userdata_functions spellings
    "Mode-Transition": 0x0,
    "Programmer Controls": 0x1,
    "Cyclic Services": 0x2,
    "Block Functions": 0x3,
    "CPU Functions": 0x4,
    "Security": 0x5,
    "PBC BSEND-BRECV": 0x6,
    "Time Functions": 0x7,
    "NC Programming": 0xF,
}
_S7_UD_SUBS: dict[int, dict[int, tuple[str, Operation]]] = {
    0x0: {  # mode transitions: the CPU changing run state
        0x00: ("STOP", RESTART_STOP),
        0x01: ("WARM_RESTART", RESTART_STOP),
        0x02: ("RUN", RESTART_STOP),
        0x03: ("HOT_RESTART", RESTART_STOP),
        0x04: ("HOLD", RESTART_STOP),
        0x06: ("COLD_RESTART", RESTART_STOP),
        0x09: ("RUN_R", RESTART_STOP),
        0x0B: ("LINK_UP", RESTART_STOP),
        0x0C: ("UPDATE", RESTART_STOP),
    },
    0x1: {  # programmer commands (online monitoring/debugging from the engineering station)
        0x01: ("BLOCK_STATUS", DIAGNOSTIC),
        0x02: ("VARIABLE_STATUS", READ),
        0x03: ("OUTPUT_ISTACK", DIAGNOSTIC),
        0x04: ("OUTPUT_BSTACK", DIAGNOSTIC),
        0x05: ("OUTPUT_LSTACK", DIAGNOSTIC),
        0x06: ("TIME_MEASUREMENT", DIAGNOSTIC),
        0x07: ("FORCE_SELECTION", OTHER),
        0x08: ("MODIFY_VARIABLE", WRITE),
        # Forcing pins a value regardless of the program; it is still a value write (as
        # Modbus "force coil" is WRITE_SINGLE_COIL), so WRITE.
        0x09: ("FORCE", WRITE),
        0x0A: ("BREAKPOINT", CONTROL),
        0x0B: ("EXIT_HOLD", RESTART_STOP),
        # Memory reset (MRES) wipes the user program and data and restarts the CPU.
        0x0C: ("MEMORY_RESET", RESTART_STOP),
        0x0D: ("DISABLE_JOB", OTHER),
        0x0E: ("ENABLE_JOB", OTHER),
        0x0F: ("DELETE_JOB", OTHER),
        0x10: ("READ_JOB_LIST", DIAGNOSTIC),
        0x11: ("READ_JOB", DIAGNOSTIC),
        0x12: ("REPLACE_JOB", OTHER),
        0x13: ("BLOCK_STATUS_V2", DIAGNOSTIC),
        0x16: ("FLASH_LED", DIAGNOSTIC),
    },
    0x2: {  # cyclic services: subscriptions to process data
        0x01: ("CYCLIC_TRANSFER", READ),
        0x04: ("UNSUBSCRIBE", OTHER),
        0x05: ("CHANGE_DRIVEN_TRANSFER", READ),
        0x07: ("CHANGE_DRIVEN_TRANSFER_MODIFY", READ),
        0x08: ("RDREC", READ),
    },
    0x3: {  # block functions: enumerating the program (reconnaissance)
        0x01: ("LIST_BLOCKS", DIAGNOSTIC),
        0x02: ("LIST_BLOCKS_OF_TYPE", DIAGNOSTIC),
        0x03: ("GET_BLOCK_INFO", DIAGNOSTIC),
    },
    0x4: {
        0x01: ("READ_SZL", DIAGNOSTIC),
        0x02: ("MESSAGE_SERVICE", READ),  # subscribes to alarms/diagnostic messages
        0x03: ("DIAGNOSTIC_MESSAGE", DIAGNOSTIC),
        0x04: ("ALARM_8_INDICATION", RESPONSE),  # indications are CPU-originated reports
        0x05: ("NOTIFY_INDICATION", RESPONSE),
        # Locking/acknowledging alarms changes alarm state (alarm suppression, T0878).
        0x06: ("ALARM_8_LOCK", CONTROL),
        0x07: ("ALARM_8_UNLOCK", CONTROL),
        0x08: ("SCAN_INDICATION", RESPONSE),
        0x0B: ("ALARM_S_INDICATION", RESPONSE),
        0x0C: ("ALARM_SQ_INDICATION", RESPONSE),
        0x0D: ("ALARM_QUERY", READ),
        0x0E: ("ALARM_ACK", CONTROL),
        0x11: ("ALARM_ACK_INDICATION", RESPONSE),
        0x12: ("ALARM_LOCK_INDICATION", RESPONSE),
        0x13: ("ALARM_UNLOCK_INDICATION", RESPONSE),
        0x16: ("NOTIFY_8_INDICATION", RESPONSE),
    },
    0x5: {0x01: ("PLC_PASSWORD", SESSION)},  # authentication to a protected CPU
    0x7: {  # the clock: setting it is a WRITE (as DNP3 does with WRITE g50v1)
        0x01: ("READ_CLOCK", READ),
        0x02: ("SET_CLOCK", WRITE),
        0x03: ("READ_CLOCK_FOLLOWING", READ),
        0x04: ("SET_CLOCK_2", WRITE),
    },
}

_ROSCTR_JOB, _ROSCTR_ACK, _ROSCTR_ACK_DATA, _ROSCTR_USERDATA = 1, 2, 3, 7
_ROSCTR_ALIASES = {
    "JOB": 1,
    "JOB_REQUEST": 1,
    "ACK": 2,
    "ACK_DATA": 3,
    "USER_DATA": 7,
    "USERDATA": 7,
}


def _s7_rosctr(rosctr: object) -> int | None:
    if _is_unset(rosctr):
        return None
    code = _as_code(rosctr)
    if code is None and isinstance(rosctr, str):
        code = _ROSCTR_ALIASES.get(_norm(rosctr))
    return code


_S7_UD_GROUP_CODES = _name_index((), _S7_UD_GROUP_ALIASES)
_S7_UD_DIRECTIONS = {"PUSH": 0x00, "REQUEST": 0x40, "RESPONSE": 0x80}
_S7_UD_SUB_CODES = {
    group: {_norm(name): sub for sub, (name, _op) in subs.items()}
    for group, subs in _S7_UD_SUBS.items()
}


def _s7_user_data_code(function_code: object) -> int | None:
    """A user-data function code from a code or an ICSNPP name like "Request: CPU Functions"."""
    code = _as_code(function_code)
    if code is not None or not isinstance(function_code, str):
        return code
    direction, _, group = function_code.partition(":")
    group_code = _S7_UD_GROUP_CODES.get(_norm(group))
    high = _S7_UD_DIRECTIONS.get(_norm(direction))
    if group_code is None or high is None:
        return None
    return high | group_code


def _s7_sub_code(group: int, sub: object) -> int | None:
    code = _as_code(sub)
    if code is not None or not isinstance(sub, str):
        return code
    return _S7_UD_SUB_CODES.get(group, {}).get(_norm(sub))


def _s7_user_data(function_code: object, sub: object) -> FunctionInfo:
    fc = _s7_user_data_code(function_code)
    if fc is None or not 0 <= fc <= 0xFF or (fc & 0x0F) not in _S7_UD_GROUP_NAMES:
        return _unknown(function_code)
    group = fc & 0x0F
    group_name, group_op = _S7_UD_GROUP_NAMES[group]
    if _is_unset(sub):
        name, op = group_name, group_op
    else:
        sub_code = _s7_sub_code(group, sub)
        row = _S7_UD_SUBS.get(group, {}).get(sub_code) if sub_code is not None else None
        if row is None:
            label = f"0x{sub_code:02x}" if sub_code is not None else str(sub)
            return FunctionInfo(fc, f"{group_name}:{label}", UNKNOWN)
        name, op = f"{group_name}:{row[0]}", row[1]
    direction = fc & 0xF0
    if direction == 0x80:  # response to a request
        return FunctionInfo(fc, f"{name}_RESPONSE", RESPONSE)
    if direction == 0x00:  # push: a CPU-originated report (alarm, mode change, cyclic data)
        return FunctionInfo(fc, f"{name}_PUSH", RESPONSE)
    return FunctionInfo(fc, name, op)


def _s7_job(function_code: object, sub: object, rosctr: int | None) -> FunctionInfo:
    code = _as_code(function_code)
    if code is None and isinstance(function_code, str):
        code = _S7_JOB_NAMES.get(_norm(function_code))
    base = _S7_JOB.get(code) if code is not None else None
    if base is None:
        return _unknown(function_code)
    if rosctr in (_ROSCTR_ACK, _ROSCTR_ACK_DATA):
        # The acknowledgement of a job: it reports the result, it does not act.
        return FunctionInfo(base.code, f"{base.name}_ACK", RESPONSE)
    if base.code == 0x28 and isinstance(sub, str) and not _is_unset(sub):
        service = sub.strip().upper()
        op = _S7_PI_SERVICES.get(service)
        # An unlisted PI service is still a PLC control call: keep CONTROL, name the service.
        return FunctionInfo(base.code, f"PLC_CONTROL:{service}", op or CONTROL)
    return base


def _resolve_s7(function_code: object, sub: object, rosctr: object) -> FunctionInfo:
    if _is_unset(function_code):
        return EMPTY
    ros = _s7_rosctr(rosctr)
    if ros == _ROSCTR_USERDATA:
        return _s7_user_data(function_code, sub)
    if ros is None:
        # Without the ROSCTR, 0x4_/0x8_ can only be user-data requests/responses (no job
        # function lives there); "Request: ..." names are user-data too. 0x00-0x0F is read as
        # a job function (0x00 CPU services, 0x04 Read Var) unless ROSCTR 7 says otherwise.
        code = _s7_user_data_code(function_code)
        if code is not None and code not in _S7_JOB and (code & 0xF0) in (0x40, 0x80):
            return _s7_user_data(function_code, sub)
    return _s7_job(function_code, sub, ros)


_S7_MEMO: dict[object, FunctionInfo] = {}


def s7comm_function(
    function_code: str | int | None,
    subfunction_code: str | int | None = None,
    rosctr: str | int | None = None,
) -> FunctionInfo:
    """An S7comm function from icsnpp-s7comm's s7comm.log fields.

    Job functions ("0x04" READ_VAR, "0x29" PLC_STOP, ...) keep their operation on a Job
    request (ROSCTR 1, or no ROSCTR); their ACK/ACK-Data (ROSCTR 2/3) is ``<NAME>_ACK``
    RESPONSE. For 0x28 PLC Control the PI service in ``subfunction_code`` ("P_PROGRAM") decides.
    User-data (ROSCTR 7) function codes are 0x4_ request / 0x8_ response / 0x0_ push plus a group
    in the low nibble; the name is ``<GROUP>:<SUB>`` (``CPU_FUNCTIONS:READ_SZL``), responses get
    ``_RESPONSE`` and pushes ``_PUSH`` (both RESPONSE), and ``code`` is the logged function code.
    """
    key = (function_code, subfunction_code, rosctr)
    try:
        return _S7_MEMO[key]
    except (KeyError, TypeError):
        info = _resolve_s7(function_code, subfunction_code, rosctr)
        return _remember(_S7_MEMO, key, info)


# --------------------------------------------------------------------------------------------
# S7comm-plus (icsnpp-s7comm s7comm_plus.log: opcode "0x31", function_code "0x04f2")
# --------------------------------------------------------------------------------------------

_S7P = _table(
    {
        0x04B1: ("ERROR", RESPONSE),
        0x04BB: ("EXPLORE", DIAGNOSTIC),  # browses the PLC object tree
        # Used by TIA Portal/HMIs to create the session object at connect time.
        0x04CA: ("CREATE_OBJECT", SESSION),
        0x04D4: ("DELETE_OBJECT", SESSION),  # and to delete it at disconnect
        # Also how the session is set up (ServerSessionVersion) and how a CPU is put into
        # STOP/RUN (a write of the operating-state attribute): WRITE either way.
        0x04F2: ("SET_VARIABLE", WRITE),
        0x04FC: ("GET_VARIABLE", READ),
        0x0506: ("ADD_LINK", OTHER),  # not decoded by any dissector yet
        0x051A: ("REMOVE_LINK", OTHER),
        0x0524: ("GET_LINK", READ),
        0x0542: ("SET_MULTI_VARIABLES", WRITE),
        0x054C: ("GET_MULTI_VARIABLES", READ),
        # Transaction brackets (seen around downloads); the enclosed calls carry the meaning.
        0x0556: ("BEGIN_SEQUENCE", OTHER),
        0x0560: ("END_SEQUENCE", OTHER),
        0x056B: ("INVOKE", CONTROL),  # calls a method on a PLC object
        0x057C: ("SET_VAR_SUB_STREAMED", WRITE),
        0x0586: ("GET_VAR_SUB_STREAMED", READ),
        0x0590: ("GET_VARIABLES_ADDRESS", READ),
        0x059A: ("ABORT", OTHER),
    }
)
_S7P_ALIASES = {  # icsnpp-s7comm s7comm_plus_functions spellings
    "Explore": 0x04BB,
    "Create Object": 0x04CA,
    "Delete Object": 0x04D4,
    "Set Variable": 0x04F2,
    "Get Link": 0x0524,
    "Set Multi Variables": 0x0542,
    "Get Multi Variables": 0x054C,
    "Begin Sequence": 0x0556,
    "End Sequence": 0x0560,
    "Invoke": 0x056B,
    "Get Variable Sub Streamed": 0x0586,
}
_S7P_NAMES = _name_index(_S7P.values(), _S7P_ALIASES)
_S7P_REQUEST, _S7P_RESPONSE, _S7P_NOTIFICATION, _S7P_RESPONSE2 = 0x31, 0x32, 0x33, 0x02
_S7P_OPCODE_ALIASES = {
    "REQUEST": 0x31,
    "RESPONSE": 0x32,
    "NOTIFICATION": 0x33,
    "RESPONSE2": 0x02,
    "CYCLIC": 0x33,
}


def _s7p_opcode(opcode: object) -> int | None:
    if _is_unset(opcode):
        return None
    code = _as_code(opcode)
    if code is None and isinstance(opcode, str):
        code = _S7P_OPCODE_ALIASES.get(_norm(opcode))
    return code


def _resolve_s7p(function_code: object, opcode: object) -> FunctionInfo:
    op_code = _s7p_opcode(opcode)
    if _is_unset(function_code):
        if op_code == _S7P_NOTIFICATION:
            # Notifications carry subscribed data and no function code.
            return FunctionInfo(None, "NOTIFICATION", RESPONSE)
        return EMPTY
    code = _as_code(function_code)
    if code is None and isinstance(function_code, str):
        text = function_code.strip()
        if text.startswith("Unknown s7comm-plus function-"):
            code = _parse_code(text.rsplit("-", 1)[1])
        else:
            code = _S7P_NAMES.get(_norm(text))
    base = _S7P.get(code) if code is not None else None
    if base is None:
        return FunctionInfo(code, str(function_code), UNKNOWN)
    if base.code == 0x04B1:
        return FunctionInfo(base.code, base.name, RESPONSE, True)
    if op_code in (_S7P_RESPONSE, _S7P_RESPONSE2):
        return FunctionInfo(base.code, f"{base.name}_RESPONSE", RESPONSE)
    if op_code == _S7P_NOTIFICATION:
        return FunctionInfo(base.code, f"{base.name}_NOTIFICATION", RESPONSE)
    return base


_S7P_MEMO: dict[object, FunctionInfo] = {}


def s7comm_plus_function(
    function_code: str | int | None, opcode: str | int | None = None
) -> FunctionInfo:
    """An S7comm-plus function ("0x04f2" SET_VARIABLE ...). Requests (opcode 0x31, or no opcode)
    keep the function's operation; responses (0x32, 0x02) are ``<NAME>_RESPONSE`` RESPONSE;
    notifications (0x33, usually with no function code) are RESPONSE."""
    key = (function_code, opcode)
    try:
        return _S7P_MEMO[key]
    except (KeyError, TypeError):
        return _remember(_S7P_MEMO, key, _resolve_s7p(function_code, opcode))


# --------------------------------------------------------------------------------------------
# EtherNet/IP encapsulation (icsnpp-enip enip.log enip_command_code "0x70")
# --------------------------------------------------------------------------------------------

_ENIP = _table(
    {
        0x00: ("NOP", OTHER),
        0x04: ("ListServices", DIAGNOSTIC),
        0x63: ("ListIdentity", DIAGNOSTIC),  # the standard device-discovery broadcast
        0x64: ("ListInterfaces", DIAGNOSTIC),
        0x65: ("RegisterSession", SESSION),
        0x66: ("UnRegisterSession", SESSION),
        # SendRRData/SendUnitData only carry CIP; the CIP service decides (see cip_service).
        0x6F: ("SendRRData", OTHER),
        0x70: ("SendUnitData", OTHER),
        0x72: ("IndicateStatus", OTHER),
        0x73: ("Cancel", OTHER),
        0xC8: ("StartDTLS", SESSION),
    }
)
_ENIP_ALIASES = {  # icsnpp-enip enip_commands spellings
    "List Services": 0x04,
    "List Identity": 0x63,
    "List Interfaces": 0x64,
    "Register Session": 0x65,
    "Unregister Session": 0x66,
    "UnregisterSession": 0x66,
    "Send RR Data": 0x6F,
    "Send Unit Data": 0x70,
    "Indicate Status": 0x72,
}
_ENIP_INDEX = _index(
    _ENIP.values(), extra={alias: _ENIP[code] for alias, code in _ENIP_ALIASES.items()}
)
for _info in _ENIP.values():  # the command is a 16-bit field
    _ENIP_INDEX[f"0x{_info.code:04x}"] = _info
_ENIP_NAMES = _name_index(_ENIP.values(), _ENIP_ALIASES)


def enip_command(value: str | int | None) -> FunctionInfo:
    """An EtherNet/IP encapsulation command ("0x63" ListIdentity, 0x65 RegisterSession, ...)."""
    try:
        return _ENIP_INDEX[value]
    except (KeyError, TypeError):
        info = _resolve_single(value, _ENIP, _ENIP_NAMES)
        return _remember(_ENIP_INDEX, value, info)


# --------------------------------------------------------------------------------------------
# CIP (icsnpp-enip cip.log cip_service_code "0x4c", class_id, direction)
# --------------------------------------------------------------------------------------------

_CIP_COMMON = _table(
    {
        0x01: ("Get_Attributes_All", READ),
        0x02: ("Set_Attributes_All", WRITE),
        0x03: ("Get_Attribute_List", READ),
        0x04: ("Set_Attribute_List", WRITE),
        # Identity object Reset is a device reset (type 1 = back to factory defaults).
        0x05: ("Reset", RESTART_STOP),
        0x06: ("Start", RESTART_STOP),
        0x07: ("Stop", RESTART_STOP),
        # Creating/deleting object instances changes the device's object model: WRITE.
        0x08: ("Create", WRITE),
        0x09: ("Delete", WRITE),
        0x0A: ("Multiple_Service_Packet", OTHER),  # a container: the embedded services decide
        # Makes pending attribute values (e.g. TCP/IP settings) take effect.
        0x0D: ("Apply_Attributes", WRITE),
        0x0E: ("Get_Attribute_Single", READ),
        0x10: ("Set_Attribute_Single", WRITE),
        0x11: ("Find_Next_Object_Instance", DIAGNOSTIC),  # enumeration
        0x14: ("Error_Response", RESPONSE),  # DeviceNet only
        # Restore/Save move one object's attributes to/from non-volatile storage: attribute
        # level, so WRITE (whole-device images are PROGRAM).
        0x15: ("Restore", WRITE),
        0x16: ("Save", WRITE),
        0x17: ("No_Operation", OTHER),
        0x18: ("Get_Member", READ),
        0x19: ("Set_Member", WRITE),
        0x1A: ("Insert_Member", WRITE),
        0x1B: ("Remove_Member", WRITE),
        0x1C: ("GroupSync", OTHER),
        0x1D: ("Get_Connection_Point_Member_List", READ),
    }
)
_CIP_COMMON_ALIASES = {  # icsnpp-enip cip_services and Wireshark GENERIC_SC_LIST spellings
    "Get Attributes All": 0x01,
    "Set Attributes All": 0x02,
    "Get Attribute List": 0x03,
    "Set Attribute List": 0x04,
    "Multiple Service Packet": 0x0A,
    "Apply Attributes": 0x0D,
    "Get Attributes Single": 0x0E,  # icsnpp-enip's spelling
    "Get Attribute Single": 0x0E,
    "Set Attributes Single": 0x10,  # icsnpp-enip's spelling
    "Set Attribute Single": 0x10,
    "Find Next Object Instance": 0x11,
    "No Forward Open": 0x17,  # icsnpp-enip's (mis)label for 0x17
    "Nop": 0x17,
    "No Operation": 0x17,
    "Get Member": 0x18,
    "Set Member": 0x19,
    "Insert Member": 0x1A,
    "Remove Member": 0x1B,
    "Group Sync": 0x1C,
    "Get Connection Point Member List": 0x1D,
}

# Class-specific services (0x4B-0x63) mean different things per class.
_CIP_CLS_IDENTITY, _CIP_CLS_MR, _CIP_CLS_CM, _CIP_CLS_FILE = 0x01, 0x02, 0x06, 0x37
_CIP_CLS_MODBUS, _CIP_CLS_PCCC, _CIP_CLS_SYMBOL, _CIP_CLS_TEMPLATE = 0x44, 0x67, 0x6B, 0x6C
_CIP_CLS_NVS, _CIP_CLS_CCO = 0xA1, 0xF3

# Rockwell Logix services, addressed to tags by symbolic path, so cip.log usually has no
# class_id for them: this is also the table used when the class is unknown.
_CIP_LOGIX = _table(
    {
        0x4B: ("Execute_PCCC", OTHER),  # PCCC carries its own read/write/program commands
        0x4C: ("Read_Tag", READ),
        0x4D: ("Write_Tag", WRITE),
        0x4E: ("Read_Modify_Write_Tag", WRITE),
        0x52: ("Read_Tag_Fragmented", READ),
        0x53: ("Write_Tag_Fragmented", WRITE),
        0x54: ("Forward_Open", SESSION),  # unambiguous: only the Connection Manager has 0x54
        0x55: ("Get_Instance_Attribute_List", DIAGNOSTIC),  # tag enumeration
        0x5B: ("Large_Forward_Open", SESSION),
    }
)
_CIP_CM = _table(
    {
        0x4E: ("Forward_Close", SESSION),
        # Routes an embedded request to another node: the embedded service decides.
        0x52: ("Unconnected_Send", OTHER),
        0x54: ("Forward_Open", SESSION),
        0x56: ("Get_Connection_Data", DIAGNOSTIC),
        0x57: ("Search_Connection_Data", DIAGNOSTIC),
        0x5A: ("Get_Connection_Owner", DIAGNOSTIC),
        0x5B: ("Large_Forward_Open", SESSION),
    }
)
_CIP_BY_CLASS: dict[int, dict[int, FunctionInfo]] = {
    _CIP_CLS_CM: _CIP_CM,
    _CIP_CLS_MR: _CIP_LOGIX,
    _CIP_CLS_SYMBOL: _CIP_LOGIX,
    _CIP_CLS_TEMPLATE: {0x4C: FunctionInfo(0x4C, "Read_Template", READ)},
    _CIP_CLS_PCCC: {0x4B: FunctionInfo(0x4B, "Execute_PCCC", OTHER)},
    _CIP_CLS_FILE: _table(  # File object: EDS files, and vendor firmware/config files
        {
            0x4B: ("Initiate_Upload", FILE_TRANSFER),
            0x4C: ("Initiate_Download", FILE_TRANSFER),
            0x4D: ("Initiate_Partial_Read", FILE_TRANSFER),
            0x4E: ("Initiate_Partial_Write", FILE_TRANSFER),
            0x4F: ("Upload_Transfer", FILE_TRANSFER),
            0x50: ("Download_Transfer", FILE_TRANSFER),
            0x51: ("Clear_File", FILE_TRANSFER),
        }
    ),
    _CIP_CLS_MODBUS: _table(
        {
            0x4B: ("Read_Discrete_Inputs", READ),
            0x4C: ("Read_Coils", READ),
            0x4D: ("Read_Input_Registers", READ),
            0x4E: ("Read_Holding_Registers", READ),
            0x4F: ("Write_Coils", WRITE),
            0x50: ("Write_Holding_Registers", WRITE),
            0x51: ("Modbus_Passthrough", OTHER),
        }
    ),
    _CIP_CLS_CCO: _table(  # Connection Configuration Object: edits the I/O connection setup
        {
            0x4B: ("Kick_Timer", OTHER),
            0x4C: ("Open_Connection", SESSION),
            0x4D: ("Close_Connection", SESSION),
            0x4E: ("Stop_Connection", SESSION),
            0x4F: ("Change_Start", WRITE),
            0x50: ("Get_Status", DIAGNOSTIC),
            0x51: ("Change_Complete", WRITE),
            0x52: ("Audit_Changes", DIAGNOSTIC),
        }
    ),
}

_CIP_CLASSES: dict[int, str] = {
    # ODVA classes as Wireshark's packet-cip.c names them (icsnpp-enip agrees).
    0x01: "Identity",
    0x02: "Message Router",
    0x03: "DeviceNet",
    0x04: "Assembly",
    0x05: "Connection",
    0x06: "Connection Manager",
    0x07: "Register",
    0x08: "Discrete Input Point",
    0x09: "Discrete Output Point",
    0x0A: "Analog Input Point",
    0x0B: "Analog Output Point",
    0x0E: "Presence Sensing",
    0x0F: "Parameter",
    0x10: "Parameter Group",
    0x12: "Group",
    0x1D: "Discrete Input Group",
    0x1E: "Discrete Output Group",
    0x1F: "Discrete Group",
    0x20: "Analog Input Group",
    0x21: "Analog Output Group",
    0x22: "Analog Group",
    0x23: "Position Sensor",
    0x24: "Position Controller Supervisor",
    0x25: "Position Controller",
    0x26: "Block Sequencer",
    0x27: "Command Block",
    0x28: "Motor Data",
    0x29: "Control Supervisor",
    0x2A: "AC/DC Drive",
    0x2B: "Acknowledge Handler",
    0x2C: "Overload",
    0x2D: "Softstart",
    0x2E: "Selection",
    0x30: "S-Device Supervisor",
    0x31: "S-Analog Sensor",
    0x32: "S-Analog Actuator",
    0x33: "S-Single Stage Controller",
    0x34: "S-Gas Calibration",
    0x35: "Trip Point",
    0x37: "File",
    0x38: "S-Partial Pressure",
    0x39: "Safety Supervisor",
    0x3A: "Safety Validator",
    0x3B: "Safety Discrete Output Point",
    0x3C: "Safety Discrete Output Group",
    0x3D: "Safety Discrete Input Point",
    0x3E: "Safety Discrete Input Group",
    0x3F: "Safety Dual Channel Output",
    0x40: "S-Sensor Calibration",
    0x41: "Event Log",
    0x42: "Motion Device Axis",
    0x43: "Time Sync",
    0x44: "Modbus",
    0x45: "Originator Connection List",
    0x46: "Modbus Serial Link",
    0x47: "Device Level Ring (DLR)",
    0x48: "QoS",
    0x49: "Safety Analog Input Point",
    0x4A: "Safety Analog Input Group",
    0x4B: "Safety Dual Channel Analog Input",
    0x4C: "SERCOS III Link",
    0x4D: "Target Connection List",
    0x4E: "Base Energy",
    0x4F: "Electrical Energy",
    0x50: "Non-Electrical Energy",
    0x51: "Base Switch",
    0x52: "SNMP",
    0x53: "Power Management",
    0x54: "RSTP Bridge",
    0x55: "RSTP Port",
    0x56: "PRP/HSR Protocol",
    0x57: "PRP/HSR Nodes Table",
    0x58: "Safety Feedback",
    0x59: "Safety Dual Channel Feedback",
    0x5A: "Safety Stop Functions",
    0x5B: "Safety Limit Functions",
    0x5C: "Power Curtailment",
    0x5D: "CIP Security",
    0x5E: "EtherNet/IP Security",
    0x5F: "Certificate Management",
    0x60: "Authority",
    0x61: "Password Authenticator",
    0x62: "Certificate Authenticator",
    0x63: "Ingress Egress",
    0x67: "PCCC Class",
    0xF0: "ControlNet",
    0xF1: "ControlNet Keeper",
    0xF2: "ControlNet Scheduling",
    0xF3: "Connection Configuration",
    0xF4: "Port",
    0xF5: "TCP/IP Interface",
    0xF6: "Ethernet Link",
    0xF7: "CompoNet",
    0xF8: "CompoNet Repeater",
    0xF9: "HART Master Port",
    0xFA: "I/O Aggregation",
    # Vendor-specific (Rockwell): Logix tag access (pycomm3 object_library), the Micro800 wall
    # clock, and Nonvolatile Storage, the object ControlFLASH writes firmware through.
    0x6B: "Symbol",
    0x6C: "Template",
    0x8B: "Wall Clock Time",
    0xA1: "Nonvolatile Storage",
}
_CIP_CLASS_INDEX: dict[object, str] = {}
for _code, _name in _CIP_CLASSES.items():
    for _key in (_code, str(_code), f"0x{_code:02x}", f"0x{_code:02X}", f"0x{_code:04x}"):
        _CIP_CLASS_INDEX.setdefault(_key, _name)


def cip_class(value: str | int | None) -> str:
    """A CIP class name ("Identity", "Connection Manager", "Symbol", ...); "" when unknown."""
    try:
        return _CIP_CLASS_INDEX[value]
    except (KeyError, TypeError):
        code = _as_code(value)
        return _CIP_CLASSES.get(code, "") if code is not None else ""


_CIP_SERVICE_NAMES = _name_index(
    [*_CIP_COMMON.values(), *_CIP_LOGIX.values(), *_CIP_CM.values()], _CIP_COMMON_ALIASES
)


def _cip_base(code: int, class_id: int | None) -> FunctionInfo | None:
    if code <= 0x31:  # 0x00-0x31: services common to every class
        return _CIP_COMMON.get(code)
    if class_id is not None and class_id in _CIP_BY_CLASS:
        return _CIP_BY_CLASS[class_id].get(code)
    if class_id == _CIP_CLS_NVS:
        # Class-specific services of the Nonvolatile Storage object are the firmware-update
        # sequence (ControlFLASH): changes device firmware, hence PROGRAM.
        return FunctionInfo(code, f"NVS_Update_0x{code:02x}", PROGRAM)
    if class_id is None:
        return _CIP_LOGIX.get(code)
    return None


def _is_response_flag(response: object) -> bool:
    if isinstance(response, str):
        return response.strip().lower() in ("response", "true", "t", "1")
    return bool(response)


def _resolve_cip(value: object, class_id: object, response: object) -> FunctionInfo:
    if _is_unset(value):
        return EMPTY
    cls = None if _is_unset(class_id) else _as_code(class_id)
    code = _as_code(value)
    if code is None and isinstance(value, str):
        code = _CIP_SERVICE_NAMES.get(_norm(value))
    if code is None or not 0 <= code <= 0xFF:
        return _unknown(value)
    # Responses set the high bit on the wire; icsnpp-enip logs the masked code and puts the
    # direction in its own field instead.
    is_response = bool(code & 0x80) or _is_response_flag(response)
    base = _cip_base(code & 0x7F, cls)
    if base is None:
        return FunctionInfo(code, value if isinstance(value, str) else str(value), UNKNOWN)
    if is_response:
        return FunctionInfo((code & 0x7F) | 0x80, f"{base.name}_Response", RESPONSE)
    return base


_CIP_MEMO: dict[object, FunctionInfo] = {}


def cip_service(
    value: str | int | None,
    class_id: str | int | None = None,
    *,
    response: bool | str | None = None,
) -> FunctionInfo:
    """A CIP service code ("0x4c", 0x0E, 0xCC, ...).

    Codes with the high bit set are responses: ``<name>_Response`` RESPONSE. For icsnpp-enip's
    cip.log, which logs the masked code, pass its ``direction`` as ``response`` and its
    ``class_id``: class-specific codes depend on the class (0x52 is Unconnected_Send to the
    Connection Manager 0x06 but Read_Tag_Fragmented to a Logix tag; 0x4E Forward_Close vs
    Read_Modify_Write_Tag). Without a class the Logix meaning is used, because tag services are
    addressed by symbol and carry no class in the log."""
    key = (value, class_id, response)
    try:
        return _CIP_MEMO[key]
    except (KeyError, TypeError):
        return _remember(_CIP_MEMO, key, _resolve_cip(value, class_id, response))


# --------------------------------------------------------------------------------------------
# BACnet (icsnpp-bacnet bacnet.log pdu_type + pdu_service)
# --------------------------------------------------------------------------------------------

_BACNET_CONFIRMED = _table(
    {
        0: ("acknowledge_alarm", CONTROL),  # operator action on alarm state (T0878 if abused)
        # COV/event notifications report data to a subscriber: no operation of their own.
        1: ("confirmed_cov_notification", RESPONSE),
        2: ("confirmed_event_notification", RESPONSE),
        3: ("get_alarm_summary", READ),
        4: ("get_enrollment_summary", READ),
        5: ("subscribe_cov", READ),  # a subscription is how BACnet clients read changes
        6: ("atomic_read_file", FILE_TRANSFER),
        7: ("atomic_write_file", FILE_TRANSFER),
        8: ("add_list_element", WRITE),
        9: ("remove_list_element", WRITE),
        10: ("create_object", WRITE),  # changes the device's object database
        11: ("delete_object", WRITE),
        12: ("read_property", READ),
        13: ("read_property_conditional", READ),
        14: ("read_property_multiple", READ),
        15: ("write_property", WRITE),
        16: ("write_property_multiple", WRITE),
        17: ("device_communication_control", CONTROL),
        18: ("confirmed_private_transfer", OTHER),  # vendor-proprietary payload
        19: ("confirmed_text_message", OTHER),
        20: ("reinitialize_device", RESTART_STOP),
        21: ("vt_open", SESSION),
        22: ("vt_close", SESSION),
        23: ("vt_data", OTHER),
        24: ("authenticate", SESSION),
        25: ("request_key", SESSION),
        26: ("read_range", READ),
        27: ("life_safety_operation", CONTROL),
        28: ("subscribe_cov_property", READ),
        29: ("get_event_information", READ),
        30: ("subscribe_cov_property_multiple", READ),
        31: ("confirmed_cov_notification_multiple", RESPONSE),
    }
)
_BACNET_UNCONFIRMED = _table(
    {
        0: ("i_am", RESPONSE),  # the answer to who_is
        1: ("i_have", RESPONSE),  # the answer to who_has
        2: ("unconfirmed_cov_notification", RESPONSE),
        3: ("unconfirmed_event_notification", RESPONSE),
        4: ("unconfirmed_private_transfer", OTHER),
        5: ("unconfirmed_text_message", OTHER),
        # Sets the receivers' clocks: WRITE, as setting the clock is for DNP3 (WRITE g50v1)
        # and S7 (Set Clock). Periodic broadcasts are normal; rules should baseline them.
        6: ("time_synchronization", WRITE),
        7: ("who_has", DIAGNOSTIC),
        8: ("who_is", DIAGNOSTIC),
        9: ("utc_time_synchronization", WRITE),
        10: ("write_group", WRITE),
        11: ("unconfirmed_cov_notification_multiple", RESPONSE),
        12: ("unconfirmed_audit_notification", RESPONSE),  # not in icsnpp-bacnet's table
        # who_am_i: an unconfigured device asking for its identity; you_are assigns it.
        13: ("who_am_i", OTHER),
        14: ("you_are", WRITE),
    }
)
# NPDU network-layer messages (icsnpp-bacnet logs pdu_type "NPDU").
_BACNET_NPDU = _table(
    {
        0x00: ("who_is_router_to_network", DIAGNOSTIC),
        0x01: ("i_am_router_to_network", RESPONSE),
        0x02: ("i_could_be_router_to_network", RESPONSE),
        0x03: ("reject_message_to_network", RESPONSE),
        0x04: ("router_busy_to_network", RESPONSE),
        0x05: ("router_available_to_network", RESPONSE),
        # Rewrites a router's routing table (an empty one is a query; cannot tell from the log).
        0x06: ("initialize_routing_table", WRITE),
        0x07: ("initialize_routing_table_ack", RESPONSE),
        0x08: ("establish_connection_to_network", SESSION),
        0x09: ("disconnect_connection_to_network", SESSION),
        0x0A: ("challenge_request", SESSION),
        0x0B: ("security_payload", OTHER),
        0x0C: ("security_response", RESPONSE),
        0x0D: ("request_key_update", SESSION),
        0x0E: ("update_key_set", SESSION),
        0x0F: ("update_distribution_key", SESSION),
        0x10: ("request_master_key", SESSION),
        0x11: ("set_master_key", SESSION),
        0x12: ("what_is_networknumber", DIAGNOSTIC),
        0x13: ("networknumber_is", RESPONSE),
    }
)
_BACNET_NAMES: dict[str, FunctionInfo] = {}
for _tbl in (_BACNET_NPDU, _BACNET_UNCONFIRMED, _BACNET_CONFIRMED):
    for _info in _tbl.values():
        _BACNET_NAMES[_norm(_info.name)] = _info

(
    _APDU_CONFIRMED,
    _APDU_UNCONFIRMED,
    _APDU_SIMPLE_ACK,
    _APDU_COMPLEX_ACK,
    _APDU_SEGMENT_ACK,
    _APDU_ERROR,
    _APDU_REJECT,
    _APDU_ABORT,
) = range(8)
_APDU_NPDU = 100  # not an APDU type: icsnpp-bacnet's "NPDU" rows
_BACNET_PDU_TYPES = {
    "CONFIRMED_REQUEST": _APDU_CONFIRMED,
    "UNCONFIRMED_REQUEST": _APDU_UNCONFIRMED,
    "SIMPLE_ACK": _APDU_SIMPLE_ACK,
    "COMPLEX_ACK": _APDU_COMPLEX_ACK,
    "SEGMENT_ACK": _APDU_SEGMENT_ACK,
    "ERROR_PDU": _APDU_ERROR,
    "ERROR": _APDU_ERROR,
    "REJECT_PDU": _APDU_REJECT,
    "REJECT": _APDU_REJECT,
    "ABORT_PDU": _APDU_ABORT,
    "ABORT": _APDU_ABORT,
    "NPDU": _APDU_NPDU,
}


def _bacnet_pdu_type(pdu_type: object) -> int | None:
    if _is_unset(pdu_type):
        return None
    code = _as_code(pdu_type)
    if code is None and isinstance(pdu_type, str):
        code = _BACNET_PDU_TYPES.get(_norm(pdu_type))
    return code


def _bacnet_lookup(
    table: Mapping[int, FunctionInfo] | None, service: object
) -> FunctionInfo | None:
    """A service from ``table`` (or from any table by name when ``table`` is None)."""
    if _is_unset(service):
        return None
    code = _as_code(service)
    if code is None and isinstance(service, str):
        text = service.strip()
        if not text.startswith("Unknown Service Choice-"):
            # Names are unique across the three tables, so a name needs no number space.
            return _BACNET_NAMES.get(_norm(text))
        code = _parse_code(text.rsplit("-", 1)[1])  # icsnpp-bacnet's default, "-0x%02x"
    if code is None or table is None:
        return None
    return table.get(code)


def _bacnet_unknown(service: object) -> FunctionInfo:
    if isinstance(service, str) and service.strip().startswith("Unknown Service Choice-"):
        return FunctionInfo(_parse_code(service.rsplit("-", 1)[1]), service, UNKNOWN)
    return _unknown(service)


def _resolve_bacnet(pdu_type: object, service: object) -> FunctionInfo:
    kind = _bacnet_pdu_type(pdu_type)
    if kind is None and _is_unset(service):
        return EMPTY
    if kind == _APDU_CONFIRMED:
        return _bacnet_lookup(_BACNET_CONFIRMED, service) or _bacnet_unknown(service)
    if kind == _APDU_UNCONFIRMED:
        return _bacnet_lookup(_BACNET_UNCONFIRMED, service) or _bacnet_unknown(service)
    if kind == _APDU_NPDU:
        return _bacnet_lookup(_BACNET_NPDU, service) or _bacnet_unknown(service)
    if kind in (_APDU_SIMPLE_ACK, _APDU_COMPLEX_ACK, _APDU_ERROR):
        # ACKs and errors name the confirmed service they answer.
        is_error = kind == _APDU_ERROR
        suffix = "_error" if is_error else "_ack"
        found = _bacnet_lookup(_BACNET_CONFIRMED, service)
        if found is not None:
            return FunctionInfo(found.code, found.name + suffix, RESPONSE, is_error)
        label = "" if _is_unset(service) else str(service)
        return FunctionInfo(_as_code(service), label + suffix, RESPONSE, is_error)
    if kind == _APDU_SEGMENT_ACK:
        return FunctionInfo(None, "segment_ack", RESPONSE)
    if kind == _APDU_REJECT:
        return FunctionInfo(None, "reject", RESPONSE, True)
    if kind == _APDU_ABORT:
        return FunctionInfo(None, "abort", RESPONSE, True)
    # No or unrecognised pdu_type: a service name is still unambiguous (the tables do not share
    # names); a bare number is not, because confirmed and unconfirmed choices overlap.
    return _bacnet_lookup(None, service) or _bacnet_unknown(service)


_BACNET_MEMO: dict[object, FunctionInfo] = {}


def bacnet_service(pdu_type: str | int | None, service: str | int | None) -> FunctionInfo:
    """A BACnet service from icsnpp-bacnet's ``pdu_type`` and ``pdu_service``.

    The pdu_type picks the number space (confirmed and unconfirmed service choices overlap).
    SIMPLE_ACK/COMPLEX_ACK give ``<service>_ack`` and ERROR_PDU ``<service>_error`` (both
    RESPONSE, errors with ``is_exception``); SEGMENT_ACK, REJECT_PDU and ABORT_PDU are RESPONSE;
    "NPDU" rows are network-layer messages."""
    key = (pdu_type, service)
    try:
        return _BACNET_MEMO[key]
    except (KeyError, TypeError):
        return _remember(_BACNET_MEMO, key, _resolve_bacnet(pdu_type, service))


# --------------------------------------------------------------------------------------------
# OPC UA binary (icsnpp-opcua-binary: msg_type, req/res_identifier(_str))
# --------------------------------------------------------------------------------------------

_OPCUA_MESSAGE_TYPES = {
    "HEL": FunctionInfo(None, "HEL", SESSION),  # Hello: opens the transport connection
    "ACK": FunctionInfo(None, "ACK", RESPONSE),  # the server's answer to HEL
    "RHE": FunctionInfo(None, "RHE", SESSION),  # ReverseHello
    "OPN": FunctionInfo(None, "OPN", SESSION),  # OpenSecureChannel
    "CLO": FunctionInfo(None, "CLO", SESSION),  # CloseSecureChannel
    "ERR": FunctionInfo(None, "ERR", RESPONSE, True),
    "MSG": FunctionInfo(None, "MSG", OTHER),  # carries a service: see the service name
}
# (name, binary encoding node id of the request, of the response, operation of the request)
_OPCUA_SERVICES: tuple[tuple[str, int, int, Operation], ...] = (
    ("FindServers", 422, 425, DIAGNOSTIC),  # discovery
    ("FindServersOnNetwork", 12208, 12209, DIAGNOSTIC),
    ("GetEndpoints", 428, 431, DIAGNOSTIC),
    ("RegisterServer", 437, 440, OTHER),  # a server announcing itself to a discovery server
    ("RegisterServer2", 12211, 12212, OTHER),
    ("OpenSecureChannel", 446, 449, SESSION),
    ("CloseSecureChannel", 452, 455, SESSION),
    ("CreateSession", 461, 464, SESSION),
    ("ActivateSession", 467, 470, SESSION),
    ("CloseSession", 473, 476, SESSION),
    ("Cancel", 479, 482, SESSION),
    # Node management edits the server's address space: WRITE.
    ("AddNodes", 488, 491, WRITE),
    ("AddReferences", 494, 497, WRITE),
    ("DeleteNodes", 500, 503, WRITE),
    ("DeleteReferences", 506, 509, WRITE),
    ("Browse", 527, 530, DIAGNOSTIC),  # address-space enumeration (reconnaissance)
    ("BrowseNext", 533, 536, DIAGNOSTIC),
    ("TranslateBrowsePathsToNodeIds", 554, 557, DIAGNOSTIC),
    ("RegisterNodes", 560, 563, OTHER),  # a performance hint, no data access
    ("UnregisterNodes", 566, 569, OTHER),
    ("QueryFirst", 615, 618, READ),
    ("QueryNext", 621, 624, READ),
    ("Read", 631, 634, READ),
    ("HistoryRead", 664, 667, READ),
    ("Write", 673, 676, WRITE),
    ("HistoryUpdate", 700, 703, WRITE),
    ("Call", 712, 715, CONTROL),  # invokes a method on the server
    # Monitored items and subscriptions are OPC UA's read path (as BACnet subscribe_cov).
    ("CreateMonitoredItems", 751, 754, READ),
    ("ModifyMonitoredItems", 763, 766, READ),
    ("SetMonitoringMode", 769, 772, READ),
    ("SetTriggering", 775, 778, READ),
    ("DeleteMonitoredItems", 781, 784, READ),
    ("CreateSubscription", 787, 790, READ),
    ("ModifySubscription", 793, 796, READ),
    ("SetPublishingMode", 799, 802, READ),
    ("Publish", 826, 829, READ),
    ("Republish", 832, 835, READ),
    ("TransferSubscriptions", 841, 844, SESSION),  # moves subscriptions to another session
    ("DeleteSubscriptions", 847, 850, READ),
    ("TestStack", 410, 413, DIAGNOSTIC),
    ("TestStackEx", 416, 419, DIAGNOSTIC),
)


def _build_opcua_index() -> dict[object, FunctionInfo]:
    idx: dict[object, FunctionInfo] = {marker: EMPTY for marker in _UNSET_MARKERS}
    idx[None] = EMPTY
    idx.update(_OPCUA_MESSAGE_TYPES)
    fault = FunctionInfo(397, "ServiceFault", RESPONSE, True)
    infos = [fault]
    for name, req_id, res_id, op in _OPCUA_SERVICES:
        infos.append(FunctionInfo(req_id, f"{name}Request", op))
        infos.append(FunctionInfo(res_id, f"{name}Response", RESPONSE))
    for info in infos:
        assert info.code is not None
        idx[info.name] = info
        idx[info.code] = info
        idx[str(info.code)] = info
    return idx


_OPCUA_INDEX = _build_opcua_index()
_OPCUA_NAMES = {
    _norm(info.name): info for info in _OPCUA_INDEX.values() if info.name and info.code is not None
}


def _resolve_opcua(value: object) -> FunctionInfo:
    if _is_unset(value):
        return EMPTY
    if isinstance(value, str):
        text = value.strip()
        found = _OPCUA_INDEX.get(text.upper()) or _OPCUA_NAMES.get(_norm(text))
        if found is not None:
            return found
        if text.endswith("Response"):  # an unlisted service's response is still a response
            return FunctionInfo(_parse_code(text), text, RESPONSE)
    return _unknown(value)


def opcua_service(value: str | int | None) -> FunctionInfo:
    """An OPC UA message type (HEL/ACK/OPN/MSG/CLO/ERR/RHE), service name ("ReadRequest") or
    binary encoding node id (631). Requests get the service's operation, "...Response" and
    ServiceFault are RESPONSE."""
    try:
        return _OPCUA_INDEX[value]
    except (KeyError, TypeError):
        return _remember(_OPCUA_INDEX, value, _resolve_opcua(value))


# Module-level loop variables are not part of the API.
del _info, _code, _name, _key, _tbl
