"""Tests for transforms.ics_protocols: concrete mappings, and every code in the real sensor logs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import ics_protocols as ics
from transforms.ics_protocols import FunctionInfo, Operation

_REPO = Path(__file__).resolve().parents[2]
FIXTURES = _REPO / "tests" / "fixtures" / "zeek" / "tsv"

EMPTY = FunctionInfo(None, "", Operation.UNKNOWN)


def zeek_rows(name: str) -> Iterator[dict[str, str]]:
    """The records of a Zeek TSV log as dicts (header lines skipped)."""
    path = FIXTURES / name
    fields: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("#fields"):
                fields = line.split("\t")[1:]
            elif line and not line.startswith("#"):
                yield dict(zip(fields, line.split("\t"), strict=True))


def column(name: str, field: str) -> set[str]:
    return {row[field] for row in zeek_rows(name)}


# Every lookup, called with one positional value.
SINGLE: dict[str, Callable[..., FunctionInfo]] = {
    "modbus_function": ics.modbus_function,
    "modbus_diagnostic_subfunction": ics.modbus_diagnostic_subfunction,
    "modbus_mei_type": ics.modbus_mei_type,
    "dnp3_function": ics.dnp3_function,
    "s7comm_function": ics.s7comm_function,
    "s7comm_plus_function": ics.s7comm_plus_function,
    "enip_command": ics.enip_command,
    "cip_service": ics.cip_service,
    "opcua_service": ics.opcua_service,
    "bacnet_service": lambda v: ics.bacnet_service(None, v),
}


# ---------------------------------------------------------------------------------- API shape


def test_operation_values_match_the_event_schema() -> None:
    event = pytest.importorskip("schemas.event")
    assert [(op.name, op.value) for op in Operation] == [
        (op.name, op.value) for op in event.Operation
    ]


def test_function_info_is_frozen_and_positional() -> None:
    info = FunctionInfo(6, "WRITE_SINGLE_REGISTER", Operation.WRITE)
    assert info.is_exception is False
    assert info == FunctionInfo(6, "WRITE_SINGLE_REGISTER", Operation.WRITE, False)
    with pytest.raises(AttributeError):
        info.name = "x"  # type: ignore[misc]
    assert ics.EMPTY == EMPTY


@pytest.mark.parametrize("lookup", SINGLE.values(), ids=SINGLE.keys())
@pytest.mark.parametrize("value", [None, "-", "(empty)", ""])
def test_none_and_zeek_unset_give_empty(lookup: Callable[..., FunctionInfo], value: object) -> None:
    assert lookup(value) == EMPTY


def test_none_for_multi_argument_lookups() -> None:
    assert ics.s7comm_function(None, None, None) == EMPTY
    assert ics.s7comm_plus_function(None, None) == EMPTY
    assert ics.bacnet_service(None, None) == EMPTY
    assert ics.cip_service(None, None, response=None) == EMPTY
    assert ics.cip_class(None) == ""


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.none(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.text(max_size=40),
        st.sampled_from(["0x", "0xZZ", "unknown-", "unknown-zz", "unknown-99999", "Request:"]),
        st.floats(allow_nan=True),
        st.booleans(),
        st.binary(max_size=8),
    ),
    other=st.one_of(st.none(), st.integers(-5, 300), st.text(max_size=12)),
)
def test_never_raises(value: object, other: object) -> None:
    for lookup in SINGLE.values():
        assert isinstance(lookup(value), FunctionInfo)
    assert isinstance(ics.s7comm_function(value, other, other), FunctionInfo)  # type: ignore[arg-type]
    assert isinstance(ics.s7comm_function(value, other, 7), FunctionInfo)  # type: ignore[arg-type]
    assert isinstance(ics.s7comm_plus_function(value, other), FunctionInfo)  # type: ignore[arg-type]
    assert isinstance(ics.bacnet_service(other, value), FunctionInfo)  # type: ignore[arg-type]
    assert isinstance(ics.cip_service(value, other, response=other), FunctionInfo)  # type: ignore[arg-type]
    assert isinstance(ics.dnp3_function(value, unknown_hex=True), FunctionInfo)  # type: ignore[arg-type]
    assert isinstance(ics.cip_class(value), str)  # type: ignore[arg-type]


def test_unhashable_values_do_not_raise() -> None:
    weird: object = ["READ_COILS"]
    for lookup in SINGLE.values():
        assert lookup(weird).operation is Operation.UNKNOWN
    assert ics.s7comm_function(weird).operation is Operation.UNKNOWN  # type: ignore[arg-type]
    assert ics.cip_class(weird) == ""  # type: ignore[arg-type]


def test_unknown_keeps_value_as_name_and_code() -> None:
    assert ics.modbus_function("bogus") == FunctionInfo(None, "bogus", Operation.UNKNOWN)
    assert ics.dnp3_function(200) == FunctionInfo(200, "200", Operation.UNKNOWN)
    assert ics.enip_command("0x99") == FunctionInfo(0x99, "0x99", Operation.UNKNOWN)
    assert ics.modbus_function(300) == FunctionInfo(300, "300", Operation.UNKNOWN)
    assert ics.opcua_service("FooRequest") == FunctionInfo(None, "FooRequest", Operation.UNKNOWN)


def test_lookups_are_plain_dict_hits_after_the_first_call() -> None:
    """No timing here: the fast path hands back the same precomputed object every time, and
    a spelling resolved on the slow path is memoised so the next call is a dict hit too."""
    assert ics.modbus_function("READ_COILS") is ics.modbus_function("READ_COILS")
    assert ics.modbus_function(1) is ics.modbus_function("READ_COILS")
    assert ics.modbus_function("0x01") is ics.modbus_function("1")
    first = ics.modbus_function("  read coils ")
    assert first is ics.modbus_function("  read coils ")
    assert first is ics.modbus_function(1)
    assert ics.s7comm_function("0x29", "-", 1) is ics.s7comm_function("0x29", "-", 1)
    assert ics.bacnet_service("X_TYPE", "read_property") is ics.bacnet_service(
        "X_TYPE", "read_property"
    )
    assert ics.cip_service("0x4c") is ics.cip_service("0x4c")


def test_memo_tables_are_bounded() -> None:
    for i in range(ics._MEMO_CAP + 10):
        ics.modbus_function(f"junk-{i}")
    assert len(ics._MODBUS_INDEX) <= ics._MEMO_CAP
    assert ics.modbus_function("junk-last").name == "junk-last"


# ------------------------------------------------------------------------------------- Modbus


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("READ_COILS", FunctionInfo(1, "READ_COILS", Operation.READ)),
        ("READ_FIFO_QUEUE", FunctionInfo(24, "READ_FIFO_QUEUE", Operation.READ)),
        ("WRITE_SINGLE_REGISTER", FunctionInfo(6, "WRITE_SINGLE_REGISTER", Operation.WRITE)),
        ("MASK_WRITE_REGISTER", FunctionInfo(22, "MASK_WRITE_REGISTER", Operation.WRITE)),
        (
            "READ_WRITE_MULTIPLE_REGISTERS",
            FunctionInfo(23, "READ_WRITE_MULTIPLE_REGISTERS", Operation.WRITE),
        ),
        ("DIAGNOSTICS", FunctionInfo(8, "DIAGNOSTICS", Operation.DIAGNOSTIC)),
        ("READ_EXCEPTION_STATUS", FunctionInfo(7, "READ_EXCEPTION_STATUS", Operation.DIAGNOSTIC)),
        ("GET_COMM_EVENT_LOG", FunctionInfo(12, "GET_COMM_EVENT_LOG", Operation.DIAGNOSTIC)),
        ("REPORT_SLAVE_ID", FunctionInfo(17, "REPORT_SLAVE_ID", Operation.DIAGNOSTIC)),
        (
            "ENCAP_INTERFACE_TRANSPORT",
            FunctionInfo(43, "ENCAP_INTERFACE_TRANSPORT", Operation.DIAGNOSTIC),
        ),
        ("READ_FILE_RECORD", FunctionInfo(20, "READ_FILE_RECORD", Operation.FILE_TRANSFER)),
        ("WRITE_FILE_RECORD", FunctionInfo(21, "WRITE_FILE_RECORD", Operation.FILE_TRANSFER)),
        ("PROGRAM_484", FunctionInfo(9, "PROGRAM_484", Operation.PROGRAM)),
        ("PROGRAM_584_984", FunctionInfo(13, "PROGRAM_584_984", Operation.PROGRAM)),
        ("PROGRAM_CONCEPT", FunctionInfo(40, "PROGRAM_CONCEPT", Operation.PROGRAM)),
        ("PROGRAM_UNITY", FunctionInfo(90, "PROGRAM_UNITY", Operation.PROGRAM)),
        ("FIRMWARE_REPLACEMENT", FunctionInfo(125, "FIRMWARE_REPLACEMENT", Operation.PROGRAM)),
        (
            "READ_COILS_EXCEPTION",
            FunctionInfo(0x81, "READ_COILS_EXCEPTION", Operation.READ, True),
        ),
        (
            "WRITE_MULTIPLE_REGISTERS_EXCEPTION",
            FunctionInfo(0x90, "WRITE_MULTIPLE_REGISTERS_EXCEPTION", Operation.WRITE, True),
        ),
        # Suricata function_raw ints, digit and hex strings.
        (6, FunctionInfo(6, "WRITE_SINGLE_REGISTER", Operation.WRITE)),
        (0x86, FunctionInfo(0x86, "WRITE_SINGLE_REGISTER_EXCEPTION", Operation.WRITE, True)),
        ("16", FunctionInfo(16, "WRITE_MULTIPLE_REGISTERS", Operation.WRITE)),
        ("0x0F", FunctionInfo(15, "WRITE_MULTIPLE_COILS", Operation.WRITE)),
        # Other spellings of the names.
        ("ReadHoldingRegisters", FunctionInfo(3, "READ_HOLDING_REGISTERS", Operation.READ)),
        ("Write Single Coil", FunctionInfo(5, "WRITE_SINGLE_COIL", Operation.WRITE)),
    ],
)
def test_modbus_function(value: str | int, expected: FunctionInfo) -> None:
    assert ics.modbus_function(value) == expected


def test_modbus_unknown_n() -> None:
    # Exception (0x80 | code) to a known function: that function's exception.
    assert ics.modbus_function("unknown-171") == FunctionInfo(
        171, "ENCAP_INTERFACE_TRANSPORT_EXCEPTION", Operation.DIAGNOSTIC, True
    )
    assert ics.modbus_function("unknown-218") == FunctionInfo(
        218, "PROGRAM_UNITY_EXCEPTION", Operation.PROGRAM, True
    )
    # Exception to an unassigned code: UNKNOWN, still flagged as an exception.
    assert ics.modbus_function("unknown-156") == FunctionInfo(
        156, "unknown-156", Operation.UNKNOWN, True
    )
    assert ics.modbus_function("unknown-128") == FunctionInfo(
        128, "unknown-128", Operation.UNKNOWN, True
    )
    assert ics.modbus_function(0x9C) == FunctionInfo(0x9C, "156", Operation.UNKNOWN, True)
    # Requests with unassigned codes.
    assert ics.modbus_function("unknown-42") == FunctionInfo(42, "unknown-42", Operation.UNKNOWN)
    assert ics.modbus_function("unknown-29") == FunctionInfo(29, "unknown-29", Operation.UNKNOWN)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, FunctionInfo(0, "RETURN_QUERY_DATA", Operation.DIAGNOSTIC)),
        (1, FunctionInfo(1, "RESTART_COMMUNICATIONS_OPTION", Operation.RESTART_STOP)),
        ("0x0001", FunctionInfo(1, "RESTART_COMMUNICATIONS_OPTION", Operation.RESTART_STOP)),
        ("4", FunctionInfo(4, "FORCE_LISTEN_ONLY_MODE", Operation.CONTROL)),
        (
            "0x000A",
            FunctionInfo(10, "CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER", Operation.DIAGNOSTIC),
        ),
        (
            "Clear Counters and Diagnostic Register",
            FunctionInfo(10, "CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER", Operation.DIAGNOSTIC),
        ),
        (
            "Return Diagnostic Register",
            FunctionInfo(2, "RETURN_DIAGNOSTIC_REGISTER", Operation.DIAGNOSTIC),
        ),
        ("Force Listen Only Mode", FunctionInfo(4, "FORCE_LISTEN_ONLY_MODE", Operation.CONTROL)),
        ("unknown-99", FunctionInfo(99, "unknown-99", Operation.UNKNOWN)),
        (99, FunctionInfo(99, "99", Operation.UNKNOWN)),
    ],
)
def test_modbus_diagnostic_subfunction(value: str | int, expected: FunctionInfo) -> None:
    assert ics.modbus_diagnostic_subfunction(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0x0E, FunctionInfo(14, "READ_DEVICE_IDENTIFICATION", Operation.DIAGNOSTIC)),
        ("0x0e", FunctionInfo(14, "READ_DEVICE_IDENTIFICATION", Operation.DIAGNOSTIC)),
        (
            "Read Device Identification",
            FunctionInfo(14, "READ_DEVICE_IDENTIFICATION", Operation.DIAGNOSTIC),
        ),
        (
            "READ-DEVICE-IDENTIFICATION",
            FunctionInfo(14, "READ_DEVICE_IDENTIFICATION", Operation.DIAGNOSTIC),
        ),
        (13, FunctionInfo(13, "CANOPEN_GENERAL_REFERENCE", Operation.OTHER)),
        ("CANopen", FunctionInfo(13, "CANOPEN_GENERAL_REFERENCE", Operation.OTHER)),
        (
            "CANopen and Read Device Identification",
            FunctionInfo(13, "CANOPEN_GENERAL_REFERENCE", Operation.OTHER),
        ),
        (
            "invalid encapsulated interface transport mei-(0x0f)",
            FunctionInfo(
                15, "invalid encapsulated interface transport mei-(0x0f)", Operation.UNKNOWN
            ),
        ),
        (
            "unknown encapsulated interface transport mei-(ox0e)",
            FunctionInfo(14, "READ_DEVICE_IDENTIFICATION", Operation.DIAGNOSTIC),
        ),
    ],
)
def test_modbus_mei_type(value: str | int, expected: FunctionInfo) -> None:
    assert ics.modbus_mei_type(value) == expected


# Assigned Modbus codes per zeek/zeek scripts/base/protocols/modbus/consts.zeek (public and
# vendor/legacy); anything else is genuinely unassigned.
ASSIGNED_MODBUS = {*range(0x01, 0x19), 0x28, 0x29, 0x2B, 0x5A, 0x5B, 0x7D, 0x7E, 0x7F}


@pytest.mark.parametrize(
    "log", ["zeek_modbus_2016.log", "zeek_modbus_exceptions_current.log", "zeek_modbus_current.log"]
)
def test_every_modbus_func_in_the_zeek_logs(log: str) -> None:
    funcs = column(log, "func") - {"-"}
    assert funcs
    for func in funcs:
        info = ics.modbus_function(func)
        if func.startswith("unknown-"):
            code = int(func.removeprefix("unknown-"))
            assert info.code == code
            assert info.is_exception is (code >= 0x80)
            if (code & 0x7F) in ASSIGNED_MODBUS and code >= 0x80:
                assert info.operation is not Operation.UNKNOWN, func
                assert info.name.endswith("_EXCEPTION")
            else:
                assert info.operation is Operation.UNKNOWN, func
        else:
            assert info.operation is not Operation.UNKNOWN, func
            assert info.name == func
            assert info.is_exception is func.endswith("_EXCEPTION")


def test_modbus_detailed_fixture() -> None:
    rows = list(zeek_rows("icsnpp_modbus_detailed.log"))
    for row in rows:
        assert ics.modbus_function(row["func"]).operation is not Operation.UNKNOWN, row["func"]
        for field in ("request_subfunction_code", "response_subfunction_code"):
            if row[field] != "-":
                sub = ics.modbus_diagnostic_subfunction(row[field])
                assert sub.operation is not Operation.UNKNOWN, row[field]
        if row["mei_type"] != "-":
            assert ics.modbus_mei_type(row["mei_type"]).name == "READ_DEVICE_IDENTIFICATION"
    assert {
        ics.modbus_diagnostic_subfunction(r["request_subfunction_code"]).name for r in rows
    } >= {"RETURN_DIAGNOSTIC_REGISTER"}


# --------------------------------------------------------------------------------------- DNP3


@pytest.mark.parametrize(
    ("value", "code", "operation"),
    [
        ("READ", 1, Operation.READ),
        ("WRITE", 2, Operation.WRITE),
        ("SELECT", 3, Operation.CONTROL),
        ("OPERATE", 4, Operation.CONTROL),
        ("DIRECT_OPERATE", 5, Operation.CONTROL),
        ("DIRECT_OPERATE_NR", 6, Operation.CONTROL),
        ("IMMED_FREEZE", 7, Operation.CONTROL),
        ("FREEZE_AT_TIME_NR", 12, Operation.CONTROL),
        ("COLD_RESTART", 13, Operation.RESTART_STOP),
        ("WARM_RESTART", 14, Operation.RESTART_STOP),
        ("INITIALIZE_DATA", 15, Operation.RESTART_STOP),
        ("INITIALIZE_APPL", 16, Operation.RESTART_STOP),
        ("START_APPL", 17, Operation.RESTART_STOP),
        ("STOP_APPL", 18, Operation.RESTART_STOP),
        ("SAVE_CONFIG", 19, Operation.PROGRAM),
        ("ENABLE_UNSOLICITED", 20, Operation.CONTROL),
        ("DISABLE_UNSOLICITED", 21, Operation.CONTROL),
        ("ASSIGN_CLASS", 22, Operation.WRITE),
        ("DELAY_MEASURE", 23, Operation.OTHER),
        ("RECORD_CURRENT_TIME", 24, Operation.OTHER),
        ("OPEN_FILE", 25, Operation.FILE_TRANSFER),
        ("CLOSE_FILE", 26, Operation.FILE_TRANSFER),
        ("DELETE_FILE", 27, Operation.FILE_TRANSFER),
        ("GET_FILE_INFO", 28, Operation.FILE_TRANSFER),
        ("AUTHENTICATE_FILE", 29, Operation.FILE_TRANSFER),
        ("ABORT_FILE", 30, Operation.FILE_TRANSFER),
        ("ACTIVATE_CONFIG", 31, Operation.PROGRAM),
        ("AUTHENTICATE_REQ", 32, Operation.SESSION),
        ("AUTHENTICATE_REQ_NR", 33, Operation.SESSION),
        ("CONFIRM", 0, Operation.RESPONSE),
        ("RESPONSE", 0x81, Operation.RESPONSE),
        ("UNSOLICITED_RESPONSE", 0x82, Operation.RESPONSE),
        ("AUTHENTICATE_RESP", 0x83, Operation.RESPONSE),
        (13, 13, Operation.RESTART_STOP),
        ("129", 0x81, Operation.RESPONSE),
        ("0x0d", 13, Operation.RESTART_STOP),
        ("cold restart", 13, Operation.RESTART_STOP),
    ],
)
def test_dnp3_function(value: str | int, code: int, operation: Operation) -> None:
    info = ics.dnp3_function(value)
    assert (info.code, info.operation, info.is_exception) == (code, operation, False)


def test_dnp3_unknown_codes() -> None:
    # Zeek's dnp3.log: decimal.
    assert ics.dnp3_function("unknown-50") == FunctionInfo(50, "unknown-50", Operation.UNKNOWN)
    # ICSNPP dnp3_control/dnp3_objects: hex.
    assert ics.dnp3_function("unknown-32", unknown_hex=True) == FunctionInfo(
        0x32, "unknown-32", Operation.UNKNOWN
    )
    assert ics.dnp3_function("unknown-ff", unknown_hex=True).code == 0xFF
    assert ics.dnp3_function("unknown-ff").code is None
    assert ics.dnp3_function("READ", unknown_hex=True).operation is Operation.READ


def test_every_dnp3_code_in_the_fixtures() -> None:
    values = column("zeek_dnp3_current.log", "fc_request") | column(
        "zeek_dnp3_current.log", "fc_reply"
    )
    values |= column("icsnpp_dnp3_control.log", "function_code")
    values -= {"-"}
    assert {"SELECT", "OPERATE", "COLD_RESTART", "UNSOLICITED_RESPONSE"} <= values
    for value in values:
        info = ics.dnp3_function(value)
        assert info.operation is not Operation.UNKNOWN, value
        assert info.name == value
        assert ics.dnp3_function(info.code) is info


# ------------------------------------------------------------------------------------- S7comm


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("0xf0", "-", 1), FunctionInfo(0xF0, "SETUP_COMMUNICATION", Operation.SESSION)),
        (("0x04", None, 1), FunctionInfo(4, "READ_VAR", Operation.READ)),
        (("0x05", None, None), FunctionInfo(5, "WRITE_VAR", Operation.WRITE)),
        (("0x1a", None, 1), FunctionInfo(0x1A, "REQUEST_DOWNLOAD", Operation.PROGRAM)),
        (("0x1b", None, 1), FunctionInfo(0x1B, "DOWNLOAD_BLOCK", Operation.PROGRAM)),
        (("0x1c", None, 1), FunctionInfo(0x1C, "DOWNLOAD_ENDED", Operation.PROGRAM)),
        (("0x1d", None, 1), FunctionInfo(0x1D, "START_UPLOAD", Operation.PROGRAM)),
        (("0x1f", None, 1), FunctionInfo(0x1F, "END_UPLOAD", Operation.PROGRAM)),
        ((0x29, None, 1), FunctionInfo(0x29, "PLC_STOP", Operation.RESTART_STOP)),
        (("0x29",), FunctionInfo(0x29, "PLC_STOP", Operation.RESTART_STOP)),
        (("0x29", "-", 3), FunctionInfo(0x29, "PLC_STOP_ACK", Operation.RESPONSE)),
        (("0x29", None, "ACK-Data"), FunctionInfo(0x29, "PLC_STOP_ACK", Operation.RESPONSE)),
        (
            ("0x28", "P_PROGRAM", 1),
            FunctionInfo(0x28, "PLC_CONTROL:P_PROGRAM", Operation.RESTART_STOP),
        ),
        (("0x28", "_INSE", 1), FunctionInfo(0x28, "PLC_CONTROL:_INSE", Operation.PROGRAM)),
        (
            ("0x28", "_MODU", "Job-Request"),
            FunctionInfo(0x28, "PLC_CONTROL:_MODU", Operation.PROGRAM),
        ),
        (("0x28", "_XYZ", 1), FunctionInfo(0x28, "PLC_CONTROL:_XYZ", Operation.CONTROL)),
        (("0x28", None, 1), FunctionInfo(0x28, "PLC_CONTROL", Operation.CONTROL)),
        (("0x28", "-", 3), FunctionInfo(0x28, "PLC_CONTROL_ACK", Operation.RESPONSE)),
        (("Read Variable",), FunctionInfo(4, "READ_VAR", Operation.READ)),
        # User-data: 0x4_ request, 0x8_ response, 0x0_ push; low nibble is the group.
        (
            ("0x44", "0x01", 7),
            FunctionInfo(0x44, "CPU_FUNCTIONS:READ_SZL", Operation.DIAGNOSTIC),
        ),
        (
            ("0x84", "0x01", 7),
            FunctionInfo(0x84, "CPU_FUNCTIONS:READ_SZL_RESPONSE", Operation.RESPONSE),
        ),
        (("0x44", "0x01"), FunctionInfo(0x44, "CPU_FUNCTIONS:READ_SZL", Operation.DIAGNOSTIC)),
        (
            ("Request: CPU Functions", "Read SZL"),
            FunctionInfo(0x44, "CPU_FUNCTIONS:READ_SZL", Operation.DIAGNOSTIC),
        ),
        (
            ("0x41", "0x0c", 7),
            FunctionInfo(0x41, "PROGRAMMER_COMMANDS:MEMORY_RESET", Operation.RESTART_STOP),
        ),
        (
            ("0x41", "0x09", 7),
            FunctionInfo(0x41, "PROGRAMMER_COMMANDS:FORCE", Operation.WRITE),
        ),
        (
            ("0x42", "0x01", 7),
            FunctionInfo(0x42, "CYCLIC_SERVICES:CYCLIC_TRANSFER", Operation.READ),
        ),
        (
            ("0x43", "0x01", 7),
            FunctionInfo(0x43, "BLOCK_FUNCTIONS:LIST_BLOCKS", Operation.DIAGNOSTIC),
        ),
        (("0x45", "0x01", 7), FunctionInfo(0x45, "SECURITY:PLC_PASSWORD", Operation.SESSION)),
        (("0x47", "0x02", 7), FunctionInfo(0x47, "TIME_FUNCTIONS:SET_CLOCK", Operation.WRITE)),
        (("0x47", "0x01", 7), FunctionInfo(0x47, "TIME_FUNCTIONS:READ_CLOCK", Operation.READ)),
        (("0x44", "0x0e", 7), FunctionInfo(0x44, "CPU_FUNCTIONS:ALARM_ACK", Operation.CONTROL)),
        (
            ("0x00", "0x00", 7),
            FunctionInfo(0x00, "MODE_TRANSITION:STOP_PUSH", Operation.RESPONSE),
        ),
        (
            ("0x04", "0x0b", 7),
            FunctionInfo(0x04, "CPU_FUNCTIONS:ALARM_S_INDICATION_PUSH", Operation.RESPONSE),
        ),
        (("0x44", "0x7f", 7), FunctionInfo(0x44, "CPU_FUNCTIONS:0x7f", Operation.UNKNOWN)),
        (("0x44", None, 7), FunctionInfo(0x44, "CPU_FUNCTIONS", Operation.DIAGNOSTIC)),
        # Unknown job function code.
        (("0x99", None, 1), FunctionInfo(0x99, "0x99", Operation.UNKNOWN)),
        (("0x4a", "0x01", 7), FunctionInfo(0x4A, "0x4a", Operation.UNKNOWN)),
    ],
)
def test_s7comm_function(args: tuple[str | int | None, ...], expected: FunctionInfo) -> None:
    assert ics.s7comm_function(*args) == expected


def test_every_s7comm_code_in_the_fixture() -> None:
    rows = list(zeek_rows("icsnpp_s7comm_snap7.log"))
    assert rows
    for row in rows:
        info = ics.s7comm_function(
            row["function_code"], row["subfunction_code"], int(row["rosctr_code"])
        )
        assert info.operation is not Operation.UNKNOWN, row
        assert info.code == int(row["function_code"], 16)
        expected_response = row["rosctr_code"] == "3" or row["function_code"].startswith("0x8")
        assert (info.operation is Operation.RESPONSE) is expected_response, row
    requests = {
        (row["function_code"], row["subfunction_code"]): ics.s7comm_function(
            row["function_code"], row["subfunction_code"], int(row["rosctr_code"])
        )
        for row in rows
        if row["rosctr_code"] in ("1", "7")
    }
    assert requests[("0x29", "-")].operation is Operation.RESTART_STOP
    assert requests[("0x28", "P_PROGRAM")].operation is Operation.RESTART_STOP
    assert requests[("0x1d", "-")].operation is Operation.PROGRAM
    assert requests[("0x44", "0x01")].operation is Operation.DIAGNOSTIC
    assert requests[("0x47", "0x02")].operation is Operation.WRITE
    assert requests[("0xf0", "-")].operation is Operation.SESSION


# -------------------------------------------------------------------------------- S7comm-plus


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("0x04f2", "0x31"), FunctionInfo(0x04F2, "SET_VARIABLE", Operation.WRITE)),
        (("0x04f2",), FunctionInfo(0x04F2, "SET_VARIABLE", Operation.WRITE)),
        (("0x04fc", "0x31"), FunctionInfo(0x04FC, "GET_VARIABLE", Operation.READ)),
        (("0x0542", "0x31"), FunctionInfo(0x0542, "SET_MULTI_VARIABLES", Operation.WRITE)),
        (("0x054c", "0x31"), FunctionInfo(0x054C, "GET_MULTI_VARIABLES", Operation.READ)),
        (("0x04ca", "0x31"), FunctionInfo(0x04CA, "CREATE_OBJECT", Operation.SESSION)),
        (("0x04d4", "0x31"), FunctionInfo(0x04D4, "DELETE_OBJECT", Operation.SESSION)),
        (("0x04bb", "0x31"), FunctionInfo(0x04BB, "EXPLORE", Operation.DIAGNOSTIC)),
        (("0x0556", "0x31"), FunctionInfo(0x0556, "BEGIN_SEQUENCE", Operation.OTHER)),
        (("0x0560", "0x31"), FunctionInfo(0x0560, "END_SEQUENCE", Operation.OTHER)),
        (("0x056b", "0x31"), FunctionInfo(0x056B, "INVOKE", Operation.CONTROL)),
        (("0x0586", "0x31"), FunctionInfo(0x0586, "GET_VAR_SUB_STREAMED", Operation.READ)),
        (("0x057c", "0x31"), FunctionInfo(0x057C, "SET_VAR_SUB_STREAMED", Operation.WRITE)),
        (("0x04b1", "0x32"), FunctionInfo(0x04B1, "ERROR", Operation.RESPONSE, True)),
        (
            ("0x054c", "0x32"),
            FunctionInfo(0x054C, "GET_MULTI_VARIABLES_RESPONSE", Operation.RESPONSE),
        ),
        (
            ("0x04f2", "Response2"),
            FunctionInfo(0x04F2, "SET_VARIABLE_RESPONSE", Operation.RESPONSE),
        ),
        ((0x04F2, 0x31), FunctionInfo(0x04F2, "SET_VARIABLE", Operation.WRITE)),
        (("Set Variable", "Request"), FunctionInfo(0x04F2, "SET_VARIABLE", Operation.WRITE)),
        (("-", "0x33"), FunctionInfo(None, "NOTIFICATION", Operation.RESPONSE)),
        (
            ("Unknown s7comm-plus function-0x0123", "0x31"),
            FunctionInfo(0x0123, "Unknown s7comm-plus function-0x0123", Operation.UNKNOWN),
        ),
        (("0x0123", "0x31"), FunctionInfo(0x0123, "0x0123", Operation.UNKNOWN)),
    ],
)
def test_s7comm_plus_function(args: tuple[str | int | None, ...], expected: FunctionInfo) -> None:
    assert ics.s7comm_plus_function(*args) == expected


def test_every_s7comm_plus_code_in_the_fixture() -> None:
    rows = list(zeek_rows("icsnpp_s7comm_plus.log"))
    assert rows
    for row in rows:
        info = ics.s7comm_plus_function(row["function_code"], row["opcode"])
        assert info.operation is not Operation.UNKNOWN, row
        if row["function_code"] != "-":
            assert info.code == int(row["function_code"], 16)
        if row["opcode"] in ("0x32", "0x33"):
            assert info.operation is Operation.RESPONSE
    for code in column("icsnpp_s7comm_plus.log", "function_code") - {"-"}:
        assert ics.s7comm_plus_function(code).operation not in (
            Operation.UNKNOWN,
            Operation.RESPONSE,
        )


# ---------------------------------------------------------------------------------- ENIP / CIP


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0x70", FunctionInfo(0x70, "SendUnitData", Operation.OTHER)),
        ("0x6f", FunctionInfo(0x6F, "SendRRData", Operation.OTHER)),
        ("0x63", FunctionInfo(0x63, "ListIdentity", Operation.DIAGNOSTIC)),
        ("0x64", FunctionInfo(0x64, "ListInterfaces", Operation.DIAGNOSTIC)),
        ("0x04", FunctionInfo(0x04, "ListServices", Operation.DIAGNOSTIC)),
        ("0x65", FunctionInfo(0x65, "RegisterSession", Operation.SESSION)),
        ("0x66", FunctionInfo(0x66, "UnRegisterSession", Operation.SESSION)),
        ("0x00", FunctionInfo(0x00, "NOP", Operation.OTHER)),
        (0xC8, FunctionInfo(0xC8, "StartDTLS", Operation.SESSION)),
        (0x63, FunctionInfo(0x63, "ListIdentity", Operation.DIAGNOSTIC)),
        ("0x0065", FunctionInfo(0x65, "RegisterSession", Operation.SESSION)),
        ("List Identity", FunctionInfo(0x63, "ListIdentity", Operation.DIAGNOSTIC)),
        ("Unregister Session", FunctionInfo(0x66, "UnRegisterSession", Operation.SESSION)),
    ],
)
def test_enip_command(value: str | int, expected: FunctionInfo) -> None:
    assert ics.enip_command(value) == expected


def test_every_enip_command_in_the_fixture() -> None:
    codes = column("icsnpp_enip_enip.log", "enip_command_code")
    assert codes == {"0x63", "0x70"}
    for code in codes:
        assert ics.enip_command(code).operation is not Operation.UNKNOWN, code


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("0x01",), FunctionInfo(0x01, "Get_Attributes_All", Operation.READ)),
        (("0x02",), FunctionInfo(0x02, "Set_Attributes_All", Operation.WRITE)),
        (("0x03",), FunctionInfo(0x03, "Get_Attribute_List", Operation.READ)),
        (("0x04",), FunctionInfo(0x04, "Set_Attribute_List", Operation.WRITE)),
        (("0x05",), FunctionInfo(0x05, "Reset", Operation.RESTART_STOP)),
        (("0x06",), FunctionInfo(0x06, "Start", Operation.RESTART_STOP)),
        ((0x07,), FunctionInfo(0x07, "Stop", Operation.RESTART_STOP)),
        (("0x0a",), FunctionInfo(0x0A, "Multiple_Service_Packet", Operation.OTHER)),
        (("0x0e",), FunctionInfo(0x0E, "Get_Attribute_Single", Operation.READ)),
        (("0x10",), FunctionInfo(0x10, "Set_Attribute_Single", Operation.WRITE)),
        (("0x17",), FunctionInfo(0x17, "No_Operation", Operation.OTHER)),
        (("0x1c",), FunctionInfo(0x1C, "GroupSync", Operation.OTHER)),
        # Logix tag services (no class in the log: symbolic path).
        (("0x4c",), FunctionInfo(0x4C, "Read_Tag", Operation.READ)),
        (("0x4d",), FunctionInfo(0x4D, "Write_Tag", Operation.WRITE)),
        (("0x4e",), FunctionInfo(0x4E, "Read_Modify_Write_Tag", Operation.WRITE)),
        (("0x52",), FunctionInfo(0x52, "Read_Tag_Fragmented", Operation.READ)),
        (("0x53",), FunctionInfo(0x53, "Write_Tag_Fragmented", Operation.WRITE)),
        (("0x4b",), FunctionInfo(0x4B, "Execute_PCCC", Operation.OTHER)),
        (("0x54",), FunctionInfo(0x54, "Forward_Open", Operation.SESSION)),
        (("0x5b",), FunctionInfo(0x5B, "Large_Forward_Open", Operation.SESSION)),
        # Connection Manager meanings of the shared codes.
        (("0x52", "0x06"), FunctionInfo(0x52, "Unconnected_Send", Operation.OTHER)),
        (("0x4e", "0x06"), FunctionInfo(0x4E, "Forward_Close", Operation.SESSION)),
        (("0x54", 6), FunctionInfo(0x54, "Forward_Open", Operation.SESSION)),
        (("0x4c", "0x6b"), FunctionInfo(0x4C, "Read_Tag", Operation.READ)),
        (("0x4c", "0x6c"), FunctionInfo(0x4C, "Read_Template", Operation.READ)),
        (("0x4b", "0x67"), FunctionInfo(0x4B, "Execute_PCCC", Operation.OTHER)),
        (("0x4c", "0x37"), FunctionInfo(0x4C, "Initiate_Download", Operation.FILE_TRANSFER)),
        (("0x4f", "0x44"), FunctionInfo(0x4F, "Write_Coils", Operation.WRITE)),
        (("0x4b", "0xa1"), FunctionInfo(0x4B, "NVS_Update_0x4b", Operation.PROGRAM)),
        (("0x0e", "0xa1"), FunctionInfo(0x0E, "Get_Attribute_Single", Operation.READ)),
        (("0x05", "0x01"), FunctionInfo(0x05, "Reset", Operation.RESTART_STOP)),
        # A class-specific code on a class without a table: unknown.
        (("0x4c", "0x01"), FunctionInfo(0x4C, "0x4c", Operation.UNKNOWN)),
        # Responses (high bit on the wire).
        ((0xCC,), FunctionInfo(0xCC, "Read_Tag_Response", Operation.RESPONSE)),
        (("0xd4", "0x06"), FunctionInfo(0xD4, "Forward_Open_Response", Operation.RESPONSE)),
        (("0x81",), FunctionInfo(0x81, "Get_Attributes_All_Response", Operation.RESPONSE)),
        (("0x8e",), FunctionInfo(0x8E, "Get_Attribute_Single_Response", Operation.RESPONSE)),
        # ICSNPP and Wireshark names.
        (("Get Attributes Single",), FunctionInfo(0x0E, "Get_Attribute_Single", Operation.READ)),
        (("Set Attributes Single",), FunctionInfo(0x10, "Set_Attribute_Single", Operation.WRITE)),
        (("No Forward Open",), FunctionInfo(0x17, "No_Operation", Operation.OTHER)),
        (("0x30",), FunctionInfo(0x30, "0x30", Operation.UNKNOWN)),
    ],
)
def test_cip_service(args: tuple[str | int, ...], expected: FunctionInfo) -> None:
    assert ics.cip_service(*args) == expected


def test_cip_service_direction_from_icsnpp() -> None:
    """cip.log logs the masked code and the direction separately."""
    assert ics.cip_service("0x4c", response="response") == FunctionInfo(
        0xCC, "Read_Tag_Response", Operation.RESPONSE
    )
    assert ics.cip_service("0x0e", response=True).name == "Get_Attribute_Single_Response"
    assert ics.cip_service("0x0e", response="request").operation is Operation.READ
    assert ics.cip_service("0x54", "0x06", response="response").name == "Forward_Open_Response"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (0x01, "Identity"),
        ("0x02", "Message Router"),
        ("0x06", "Connection Manager"),
        ("0x6b", "Symbol"),
        ("0x6C", "Template"),
        (0x67, "PCCC Class"),
        ("0xa1", "Nonvolatile Storage"),
        ("0xf5", "TCP/IP Interface"),
        ("0x37", "File"),
        ("0x99", ""),
        ("garbage", ""),
        (None, ""),
    ],
)
def test_cip_class(value: str | int | None, name: str) -> None:
    assert ics.cip_class(value) == name


# ------------------------------------------------------------------------------------- BACnet


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("CONFIRMED_REQUEST", "read_property"), FunctionInfo(12, "read_property", Operation.READ)),
        (
            ("CONFIRMED_REQUEST", "read_property_multiple"),
            FunctionInfo(14, "read_property_multiple", Operation.READ),
        ),
        (
            ("CONFIRMED_REQUEST", "write_property"),
            FunctionInfo(15, "write_property", Operation.WRITE),
        ),
        (
            ("CONFIRMED_REQUEST", "write_property_multiple"),
            FunctionInfo(16, "write_property_multiple", Operation.WRITE),
        ),
        (
            ("CONFIRMED_REQUEST", "reinitialize_device"),
            FunctionInfo(20, "reinitialize_device", Operation.RESTART_STOP),
        ),
        (
            ("CONFIRMED_REQUEST", "device_communication_control"),
            FunctionInfo(17, "device_communication_control", Operation.CONTROL),
        ),
        (
            ("CONFIRMED_REQUEST", "atomic_read_file"),
            FunctionInfo(6, "atomic_read_file", Operation.FILE_TRANSFER),
        ),
        (
            ("CONFIRMED_REQUEST", "atomic_write_file"),
            FunctionInfo(7, "atomic_write_file", Operation.FILE_TRANSFER),
        ),
        (("CONFIRMED_REQUEST", "subscribe_cov"), FunctionInfo(5, "subscribe_cov", Operation.READ)),
        # Number spaces: the same number means different services.
        (
            ("CONFIRMED_REQUEST", 20),
            FunctionInfo(20, "reinitialize_device", Operation.RESTART_STOP),
        ),
        (("CONFIRMED_REQUEST", 12), FunctionInfo(12, "read_property", Operation.READ)),
        (("UNCONFIRMED_REQUEST", 8), FunctionInfo(8, "who_is", Operation.DIAGNOSTIC)),
        (("CONFIRMED_REQUEST", 8), FunctionInfo(8, "add_list_element", Operation.WRITE)),
        ((0, "17"), FunctionInfo(17, "device_communication_control", Operation.CONTROL)),
        ((1, "0x06"), FunctionInfo(6, "time_synchronization", Operation.WRITE)),
        (("UNCONFIRMED_REQUEST", "who_is"), FunctionInfo(8, "who_is", Operation.DIAGNOSTIC)),
        (("UNCONFIRMED_REQUEST", "i_am"), FunctionInfo(0, "i_am", Operation.RESPONSE)),
        (
            ("UNCONFIRMED_REQUEST", "time_synchronization"),
            FunctionInfo(6, "time_synchronization", Operation.WRITE),
        ),
        (
            ("UNCONFIRMED_REQUEST", "Unknown Service Choice-0x0c"),
            FunctionInfo(12, "unconfirmed_audit_notification", Operation.RESPONSE),
        ),
        # Replies.
        (
            ("COMPLEX_ACK", "read_property"),
            FunctionInfo(12, "read_property_ack", Operation.RESPONSE),
        ),
        (
            ("SIMPLE_ACK", "write_property"),
            FunctionInfo(15, "write_property_ack", Operation.RESPONSE),
        ),
        (
            ("ERROR_PDU", "write_property"),
            FunctionInfo(15, "write_property_error", Operation.RESPONSE, True),
        ),
        (
            ("ERROR", "read_property"),
            FunctionInfo(12, "read_property_error", Operation.RESPONSE, True),
        ),
        (("REJECT_PDU", "reject"), FunctionInfo(None, "reject", Operation.RESPONSE, True)),
        (("ABORT_PDU", "abort"), FunctionInfo(None, "abort", Operation.RESPONSE, True)),
        (("SEGMENT_ACK", "-"), FunctionInfo(None, "segment_ack", Operation.RESPONSE)),
        # Network layer.
        (
            ("NPDU", "who_is_router_to_network"),
            FunctionInfo(0, "who_is_router_to_network", Operation.DIAGNOSTIC),
        ),
        (
            ("NPDU", "initialize_routing_table"),
            FunctionInfo(6, "initialize_routing_table", Operation.WRITE),
        ),
        # No pdu_type: names are unambiguous, bare numbers are not.
        ((None, "write_property"), FunctionInfo(15, "write_property", Operation.WRITE)),
        ((None, "who-is"), FunctionInfo(8, "who_is", Operation.DIAGNOSTIC)),
        ((None, 15), FunctionInfo(15, "15", Operation.UNKNOWN)),
        (
            ("CONFIRMED_REQUEST", "Unknown Service Choice-0x40"),
            FunctionInfo(0x40, "Unknown Service Choice-0x40", Operation.UNKNOWN),
        ),
    ],
)
def test_bacnet_service(
    args: tuple[str | int | None, str | int | None], expected: FunctionInfo
) -> None:
    assert ics.bacnet_service(*args) == expected


def test_every_bacnet_pair_in_the_fixture() -> None:
    pairs = {(row["pdu_type"], row["pdu_service"]) for row in zeek_rows("icsnpp_bacnet_basic.log")}
    assert ("CONFIRMED_REQUEST", "read_property") in pairs
    for pdu_type, service in pairs:
        info = ics.bacnet_service(pdu_type, service)
        assert info.operation is not Operation.UNKNOWN, (pdu_type, service)
        if pdu_type.endswith("ACK"):
            assert info.operation is Operation.RESPONSE


# -------------------------------------------------------------------------------------- OPC UA


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("HEL", FunctionInfo(None, "HEL", Operation.SESSION)),
        ("ACK", FunctionInfo(None, "ACK", Operation.RESPONSE)),
        ("OPN", FunctionInfo(None, "OPN", Operation.SESSION)),
        ("CLO", FunctionInfo(None, "CLO", Operation.SESSION)),
        ("MSG", FunctionInfo(None, "MSG", Operation.OTHER)),
        ("ERR", FunctionInfo(None, "ERR", Operation.RESPONSE, True)),
        ("ReadRequest", FunctionInfo(631, "ReadRequest", Operation.READ)),
        ("ReadResponse", FunctionInfo(634, "ReadResponse", Operation.RESPONSE)),
        ("WriteRequest", FunctionInfo(673, "WriteRequest", Operation.WRITE)),
        ("CallRequest", FunctionInfo(712, "CallRequest", Operation.CONTROL)),
        ("BrowseRequest", FunctionInfo(527, "BrowseRequest", Operation.DIAGNOSTIC)),
        ("CreateSessionRequest", FunctionInfo(461, "CreateSessionRequest", Operation.SESSION)),
        ("ActivateSessionRequest", FunctionInfo(467, "ActivateSessionRequest", Operation.SESSION)),
        (
            "OpenSecureChannelRequest",
            FunctionInfo(446, "OpenSecureChannelRequest", Operation.SESSION),
        ),
        ("AddNodesRequest", FunctionInfo(488, "AddNodesRequest", Operation.WRITE)),
        ("ServiceFault", FunctionInfo(397, "ServiceFault", Operation.RESPONSE, True)),
        (631, FunctionInfo(631, "ReadRequest", Operation.READ)),
        ("673", FunctionInfo(673, "WriteRequest", Operation.WRITE)),
        ("hel", FunctionInfo(None, "HEL", Operation.SESSION)),
        ("FooBarResponse", FunctionInfo(None, "FooBarResponse", Operation.RESPONSE)),
    ],
)
def test_opcua_service(value: str | int, expected: FunctionInfo) -> None:
    assert ics.opcua_service(value) == expected


def test_every_opcua_name_in_the_fixture() -> None:
    path = FIXTURES / "icsnpp_opcua_binary_headerless.log"
    tokens: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        tokens.add(fields[6])  # msg_type follows ts, uid and the four id fields
        tokens.update(f for f in fields if f.endswith(("Request", "Response")))
    assert {"HEL", "MSG", "ReadRequest", "CallRequest", "PublishResponse"} <= tokens
    for token in tokens:
        info = ics.opcua_service(token)
        assert info.operation is not Operation.UNKNOWN, token
        if token.endswith("Response"):
            assert info.operation is Operation.RESPONSE
