"""The rule condition language (`transforms.ruleexpr`): operators, literals, null semantics,
computed fields and errors, plus properties that it agrees with Python and never executes code.

A detection engineer's rule is only as good as the meaning of its condition: these tests pin
that meaning down, so a rule reviewed on paper behaves the same on the wire.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.errors import ValidationError
from schemas.event import (
    AssetContext,
    CtiMatch,
    DetectionInfo,
    IcsActivity,
    NetworkEndpoint,
    NormalizedEvent,
)
from schemas.records import SourceFormat, SourcePosition
from transforms.ruleexpr import FIELDS, compile_condition, field_getter

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
HMI = AssetContext(name="hmi-01", role="hmi", purdue_level=2, zone="control", criticality=3)
PLC = AssetContext(
    name="plc-a1", role="plc", purdue_level=1, zone="cell-a", criticality=5, vendor="Siemens"
)


def event(
    protocol: str | None = "modbus",
    *,
    src: str = "10.20.0.10",
    dst: str = "10.10.1.10",
    src_port: int | None = 50000,
    dst_port: int | None = 502,
    src_asset: AssetContext | None = HMI,
    dst_asset: AssetContext | None = PLC,
    details: dict[str, str] | None = None,
    cti_matches: tuple[CtiMatch, ...] = (),
    detection: DetectionInfo | None = None,
    **ics: Any,
) -> NormalizedEvent:
    """A normalized event; ``ics`` fields fill its IcsActivity when ``protocol`` is given."""
    return NormalizedEvent(
        event_id="e1",
        time=T0,
        class_uid=4001,
        category_uid=4,
        activity_id=6,
        type_uid=400106,
        severity_id=1,
        source_format=SourceFormat.ZEEK_TSV,
        source_kind=f"zeek.{protocol or 'conn'}",
        observer="zeek",
        message="test",
        src=NetworkEndpoint(ip=src, port=src_port),
        dst=NetworkEndpoint(ip=dst, port=dst_port),
        source=SourcePosition(uri="test.log", line=1),
        transport="tcp",
        ics=IcsActivity(protocol=protocol, **ics) if protocol else None,
        detection=detection,
        details=details or {},
        src_asset=src_asset,
        dst_asset=dst_asset,
        zone_crossing=(
            src_asset is not None and dst_asset is not None and src_asset.zone != dst_asset.zone
        ),
        cti_matches=cti_matches,
    )


WRITE = event(function_code=16, operation="write", is_request=True, unit_id=1)
BARE = event(None, src_asset=None, dst_asset=None, src_port=None)


def match(field: str, confidence: int) -> CtiMatch:
    return CtiMatch(
        field=field,
        type="ipv4",
        value="84.247.157.112",
        confidence=confidence,
        tlp="amber",
        sources=("feodo",),
    )


def holds(condition: str, on: NormalizedEvent = WRITE) -> bool:
    return compile_condition(condition)(on)


def rejected(condition: str) -> str:
    """The message of the ValidationError ``condition`` is rejected with."""
    with pytest.raises(ValidationError) as caught:
        compile_condition(condition)
    assert caught.value.field == "condition"
    return caught.value.message


# --- operators --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('ics.protocol == "modbus"', True),
        ('ics.protocol == "dnp3"', False),
        ('ics.protocol != "dnp3"', True),
        ('ics.protocol != "modbus"', False),
        ("ics.function_code < 17", True),
        ("ics.function_code < 16", False),
        ("ics.function_code <= 16", True),
        ("ics.function_code <= 15", False),
        ("ics.function_code > 15", True),
        ("ics.function_code > 16", False),
        ("ics.function_code >= 16", True),
        ("ics.function_code >= 17", False),
        ('ics.operation in ["write", "program"]', True),
        ('ics.operation in ["read"]', False),
        ('ics.operation not in ["read", "diagnostic"]', True),
        ('ics.operation not in ["write"]', False),
        ("ics.subfunction is null", True),
        ("ics.unit_id is null", False),
        ("ics.unit_id is not null", True),
        ("ics.subfunction is not null", False),
        ('src_asset.name startswith "hmi-"', True),
        ('src_asset.name startswith "ews-"', False),
        ('dst_asset.vendor contains "emen"', True),
        ('dst_asset.vendor contains "Rockwell"', False),
        ('ics.protocol == "modbus" and dst.port == 502', True),
        ('ics.protocol == "modbus" and dst.port == 503', False),
        ('ics.protocol == "dnp3" or dst.port == 502', True),
        ('ics.protocol == "dnp3" or dst.port == 503', False),
        ('not ics.protocol == "dnp3"', True),
        ('not ics.protocol == "modbus"', False),
        ("not not ics.is_request", True),
    ],
)
def test_each_operator_means_what_its_name_says(condition: str, expected: bool) -> None:
    """Every comparison, membership, null, string and boolean operator on a Modbus write."""
    assert holds(condition) is expected


def test_a_compiled_condition_returns_a_real_bool() -> None:
    """Callers count and store the result; it must be a bool, not a truthy field value."""
    for condition in ("ics.unit_id", "src_asset", "dst.port == 502", "ics.subfunction"):
        assert type(holds(condition)) is bool


def test_and_binds_tighter_than_or() -> None:
    """``a or b and c`` is ``a or (b and c)``, as in Python and SQL: a rule reads as written."""
    # a true, b false, c false: (a or b) and c would be false.
    assert holds('ics.protocol == "modbus" or dst.port == 1 and src.port == 1')
    # a false, b true, c false: a or (b and c) is false.
    assert not holds('ics.protocol == "dnp3" or dst.port == 502 and src.port == 1')
    assert not holds('(ics.protocol == "modbus" or dst.port == 1) and src.port == 1')


def test_parentheses_override_precedence() -> None:
    assert holds('(ics.protocol == "dnp3" or dst.port == 502) and ics.is_request')
    assert not holds('ics.protocol == "dnp3" or (dst.port == 502 and not ics.is_request)')


def test_not_binds_tighter_than_and() -> None:
    """``not a and b`` is ``(not a) and b``."""
    assert holds('not ics.protocol == "dnp3" and dst.port == 502')
    assert not holds('not (ics.protocol == "modbus" and dst.port == 503) and dst.port == 503')


def test_not_in_negates_only_the_membership() -> None:
    """``a not in [...]`` is one operator, equal to ``not (a in [...])``."""
    for operations in ('["write"]', '["read"]', "[]"):
        assert holds(f"ics.operation not in {operations}") is not holds(
            f"ics.operation in {operations}"
        )


# --- literals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('details.q == "it\'s"', True),
        ("details.q == 'it\\'s'", True),
        ('details.q == "it\\\'s"', True),
        ("details.say == 'he said \"hi\"'", True),
        ('details.say == "he said \\"hi\\""', True),
        ('details.path == "C:\\\\plc\\\\prog"', True),
        ('details.q == ""', False),
        ('details.empty == ""', True),
        ("details.empty == ''", True),
    ],
)
def test_string_literals_in_both_quotes_with_escapes(condition: str, expected: bool) -> None:
    """Quotes and backslashes are escaped with a backslash, in single and double quotes."""
    on = event(details={"q": "it's", "say": 'he said "hi"', "path": "C:\\plc\\prog", "empty": ""})
    assert holds(condition, on) is expected


def test_numbers_ints_floats_and_negatives() -> None:
    assert holds("ics.function_code == 16")
    assert holds("ics.function_code == 16.0")
    assert holds("ics.function_code > 15.5")
    assert holds("ics.function_code < 16.25")
    assert holds("ics.function_code > -1")
    assert holds("-3 < -2.5")
    assert not holds("ics.function_code == -16")
    # A number directly after a comparison operator, no spaces at all.
    assert holds("ics.function_code>-1")


def test_true_false_and_null_literals() -> None:
    assert holds("ics.is_request == true")
    assert not holds("ics.is_request == false")
    assert holds("ics.is_exception == false")
    assert holds("ics.subfunction == null")
    assert not holds("ics.unit_id == null")
    assert holds("true")
    assert not holds("false")
    assert not holds("null")


def test_lists_of_mixed_literals_and_the_empty_list() -> None:
    assert holds("ics.function_code in [5, 6, 15, 16]")
    assert holds('ics.function_code in ["16", 16]')
    assert holds("ics.subfunction in [null]")
    assert holds("ics.is_exception in [false]")
    assert not holds("ics.function_code in []")
    assert holds("ics.function_code not in []")
    assert holds('ics.operation in [ "read" ,"write" ]')


def test_keywords_are_words_not_prefixes() -> None:
    """A field may begin with a keyword (``details.notes``, ``details.index``) and stay a field."""
    on = event(details={"notes": "x", "index": "1", "nullable": "y"})
    assert holds('details.notes == "x"', on)
    assert holds('details.index == "1"', on)
    assert holds("details.nullable is not null", on)


# --- null semantics ---------------------------------------------------------------------


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_ordering_with_null_is_false_both_ways(op: str) -> None:
    """A missing Purdue level is neither below nor above anything: no alert on no data."""
    assert not holds(f"src_asset.purdue_level {op} 3", BARE)
    assert not holds(f"3 {op} src_asset.purdue_level", BARE)
    assert not holds(f"null {op} null", BARE)
    # ``not`` of an ordering on null is true: negation is plain boolean negation.
    assert holds(f"not src_asset.purdue_level {op} 3", BARE)


def test_ordering_across_types_is_false_not_an_error() -> None:
    """``time < 5`` or ``"a" > 1`` are rule mistakes; they match nothing rather than crash."""
    assert not holds("time < 5")
    assert not holds('dst.port > "500"')
    assert not holds("ics.protocol >= 1")


def test_not_equal_against_a_missing_value_is_true() -> None:
    """An unknown asset is not an engineering workstation: rules like
    ``src_asset.role != "engineering_workstation"`` must fire on unknown sources."""
    assert holds('src_asset.role != "engineering_workstation"', BARE)
    assert not holds('src_asset.role == "engineering_workstation"', BARE)
    assert holds('details.missing != "x"', BARE)


def test_membership_of_a_missing_value() -> None:
    assert not holds('src_asset.role in ["hmi", "engineering_workstation"]', BARE)
    assert holds('src_asset.role not in ["engineering_workstation"]', BARE)
    assert holds("src_asset.role in [null]", BARE)


def test_string_operators_on_a_missing_or_non_string_value_are_false() -> None:
    assert not holds('src_asset.name startswith "hmi"', BARE)
    assert not holds('src_asset.name contains "hmi"', BARE)
    assert not holds('dst.port startswith "5"')


def test_a_bare_field_is_tested_for_truth() -> None:
    """``src.is_global`` and ``ics.is_exception`` read as flags; absence reads as false."""
    assert holds("ics.is_request")
    assert not holds("ics.is_exception")
    assert holds("src_asset")
    assert not holds("src_asset", BARE)
    assert not holds("ics", BARE)
    assert not holds("details.missing")
    assert not holds("unknown_asset")
    assert holds("zone_crossing")
    assert not holds("cti.count")


# --- fields -----------------------------------------------------------------------------


def test_every_listed_field_reads_without_error_on_a_bare_and_a_full_event() -> None:
    """No field in FIELDS may raise on an event that lacks its section (no ics, no assets)."""
    full = event(
        function_code=8,
        subfunction="restart",
        detection=DetectionInfo(rule_uid="2000001", title="t", techniques=("T0836",)),
        cti_matches=(match("dst.ip", 70),),
    )
    for name in FIELDS:
        getter = field_getter(name)
        getter(BARE)
        getter(full)
        assert isinstance(holds(f"{name} is null", BARE), bool)


def test_nested_fields_read_the_event() -> None:
    assert holds('src.ip == "10.20.0.10" and dst.ip == "10.10.1.10"')
    assert holds("src.port == 50000 and dst.port == 502")
    assert holds('transport == "tcp" and observer == "zeek" and source_kind == "zeek.modbus"')
    assert holds('source_format == "zeek_tsv" and class_uid == 4001')
    assert holds('dst_asset.role == "plc" and dst_asset.purdue_level <= 1')
    assert holds("dst_asset.criticality >= 5 and src_asset.criticality == 3")
    assert holds('src_asset.zone == "control" and dst_asset.zone == "cell-a"')
    assert holds("src_asset.vendor is null")
    assert holds("ics.unit_id == 1")


def test_details_key_access() -> None:
    """``details.<key>`` reads any sensor detail; a key the event lacks is null."""
    on = event(details={"query": "evil.example", "status_code": "404"})
    assert holds('details.query == "evil.example"', on)
    assert holds('details.query contains "evil"', on)
    assert holds('details.status_code == "404"', on)
    assert holds("details.nope is null", on)
    assert field_getter("details.query")(on) == "evil.example"


def test_details_with_a_dotted_key() -> None:
    """Everything after ``details.`` is the key, dots included (Zeek names like ``id.orig_h``)."""
    on = event(details={"id.orig_h": "10.0.0.1"})
    assert holds('details.id.orig_h == "10.0.0.1"', on)


def test_detection_fields() -> None:
    on = event(
        None,
        detection=DetectionInfo(
            rule_uid="2024001", title="ET SCAN", category="scan", techniques=("T0846",)
        ),
    )
    assert holds('detection.rule_uid == "2024001"', on)
    assert holds('detection.title startswith "ET "', on)
    assert holds('detection.techniques contains "T0846"', on)
    assert holds("detection.sensor_severity is null", on)


@pytest.mark.parametrize(
    ("address", "is_global"),
    [
        ("84.247.157.112", True),
        ("8.8.8.8", True),
        ("2a00:1450:4001:80b::200e", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.10.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT: neither private nor global
        ("fd00::1", False),
        ("::1", False),
        ("not-an-ip", False),
        ("", False),
    ],
)
def test_is_global_for_public_private_and_invalid_addresses(address: str, is_global: bool) -> None:
    """``src.is_global``/``dst.is_global`` tell internet peers from plant addresses; an
    unparseable address is never "global" (no internet alert on garbage)."""
    assert holds("src.is_global", event(src=address)) is is_global
    assert holds("dst.is_global", event(dst=address)) is is_global
    assert holds("src.is_global == true", event(src=address)) is is_global


def test_cti_count_and_max_confidence() -> None:
    on = event(cti_matches=(match("dst.ip", 40), match("details.query", 85)))
    assert holds("cti.count == 2", on)
    assert holds("cti.max_confidence == 85", on)
    assert holds("cti.max_confidence >= 80 and cti.count > 1", on)
    assert holds('cti.types contains "ipv4"', on)


def test_cti_fields_of_an_event_without_matches() -> None:
    """No match: count 0, max confidence null (so ``>= 50`` is false), no field contained."""
    assert holds("cti.count == 0")
    assert holds("cti.max_confidence is null")
    assert not holds("cti.max_confidence >= 0")
    assert not holds('cti.fields contains "dst.ip"')


def test_cti_fields_contains_names_the_matched_side() -> None:
    """``cti.fields contains "dst.ip"`` separates "we talked to a known C2" from "a known C2
    talked to us"."""
    outbound = event(cti_matches=(match("dst.ip", 80),))
    inbound = event(cti_matches=(match("src.ip", 80),))
    assert holds('cti.fields contains "dst.ip"', outbound)
    assert not holds('cti.fields contains "dst.ip"', inbound)
    assert holds('cti.fields contains "src.ip"', inbound)


def test_field_getter_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError, match=r"unknown field 'src\.mac'"):
        field_getter("src.mac")
    with pytest.raises(ValidationError, match=r"unknown field 'details\.'"):
        field_getter("details.")


# --- errors -----------------------------------------------------------------------------


def test_unknown_field_is_named() -> None:
    """A typo in a field name must stop the rule at load, not silently never match."""
    assert "unknown field 'ics.protocl'" in rejected('ics.protocl == "modbus"')
    assert "unknown field 'src_asset.owner'" in rejected('src_asset.owner == "x"')


def test_unterminated_string_names_the_column() -> None:
    message = rejected('ics.protocol == "modbus')
    assert "cannot read condition at column" in message
    assert '"modbus' in message
    assert "column" in rejected("ics.protocol == 'modbus")


def test_missing_operand_is_named() -> None:
    assert "expected a field or a value, found the end" in rejected("ics.function_code ==")
    assert "expected a field or a value, found 'and'" in rejected("dst.port == and true")
    assert "found the end" in rejected('ics.protocol == "modbus" and')
    assert "found the end" in rejected("not")


def test_trailing_tokens_are_rejected() -> None:
    """Two conditions without ``and`` between them are an error, not the first one alone."""
    message = rejected('ics.protocol == "modbus" dst.port == 502')
    assert "expected 'and', 'or' or the end, found 'dst.port'" in message
    assert "found ')'" in rejected("dst.port == 502)")
    assert "found 1" in rejected("dst.port == 502 1")


def test_not_without_in_is_rejected() -> None:
    assert "expected 'in' after 'not'" in rejected('ics.operation not "write"')
    assert "expected 'in' after 'not'" in rejected("ics.operation not")


def test_empty_condition_is_rejected() -> None:
    for text in ("", "   ", "\n\t"):
        assert rejected(text) == "empty condition"


@pytest.mark.parametrize(
    ("condition", "complaint"),
    [
        ("(dst.port == 502", "expected ')'"),
        ("dst.port in 502", "expected '['"),
        ("dst.port in [502", "expected ',' or ']'"),
        ("dst.port in [502 503]", "expected ',' or ']'"),
        ("dst.port in [dst.port]", "expected a value"),
        ("dst.port in [[1]]", "expected a value"),
        ("ics.subfunction is nothing", "expected 'null'"),
        ("ics.subfunction is not 5", "expected 'null'"),
        ("src_asset.name startswith 5", "a string after 'startswith'"),
        ("src_asset.name startswith src_asset.zone", "expected a value"),
        ("src_asset.name contains src_asset.zone", "expected a value"),
        ("dst.port = 502", "cannot read condition at column"),
        ("dst.port == 502 && true", "cannot read condition at column"),
        ("dst.port == 502 || true", "cannot read condition at column"),
        ("()", "expected a field or a value, found ')'"),
    ],
)
def test_other_syntax_errors_name_what_was_expected(condition: str, complaint: str) -> None:
    message = rejected(condition)
    assert complaint in message
    assert "column" in message or repr(condition) in message


# --- safety -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        "__import__('os')",
        "__import__('os').system('id')",
        "().__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "lambda: 1",
        "lambda e: e",
        "open('/etc/passwd')",
        "eval('1')",
        "exec('1')",
        "src.ip.__class__",
        "event.__dict__",
        "dst.port.real",
        "src_asset.__class__ == 1",
        "[x for x in []]",
        "{}",
        "getattr(src, 'ip')",
        "dst.port == 502; import os",
        "f'{1}'",
        "1 if true else 0",
    ],
)
def test_conditions_cannot_call_or_reach_python_objects(condition: str) -> None:
    """The language has no calls, attributes beyond FIELDS, or comprehensions: a rule file
    is data, and a malicious or careless one can never run code in the pipeline."""
    with pytest.raises(ValidationError):
        compile_condition(condition)


def test_details_dunder_keys_are_plain_dictionary_keys() -> None:
    """``details.__class__`` is a key lookup in the details map, never an attribute."""
    assert holds("details.__class__ is null")
    assert holds('details.__class__ == "x"', event(details={"__class__": "x"}))


# --- properties -------------------------------------------------------------------------


def _string_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=200, deadline=None)
@given(port=st.one_of(st.none(), st.integers(0, 65535)), literal=st.integers(-70000, 70000))
def test_integer_comparisons_agree_with_python(port: int | None, literal: int) -> None:
    """For any port and any integer literal, every comparison is Python's (false with null)."""
    on = event(dst_port=port)
    assert holds(f"dst.port == {literal}", on) is (port == literal)
    assert holds(f"dst.port != {literal}", on) is (port != literal)
    assert holds(f"dst.port < {literal}", on) is (port is not None and port < literal)
    assert holds(f"dst.port >= {literal}", on) is (port is not None and port >= literal)
    assert holds(f"{literal} > dst.port", on) is (port is not None and literal > port)


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=20), other=st.text(max_size=20))
def test_string_equality_agrees_with_python(value: str, other: str) -> None:
    """Any text, quoted and escaped, compares equal to itself and as Python compares it."""
    on = event(details={"k": value})
    assert holds(f"details.k == {_string_literal(value)}", on)
    assert holds(f"details.k == {_string_literal(other)}", on) is (value == other)
    assert holds(f"details.k != {_string_literal(other)}", on) is (value != other)
    assert holds(f"details.k startswith {_string_literal(other)}", on) is value.startswith(other)
    assert holds(f"details.k contains {_string_literal(other)}", on) is (other in value)
    single = "'" + other.replace("\\", "\\\\").replace("'", "\\'") + "'"
    assert holds(f"details.k == {single}", on) is (value == other)


@settings(max_examples=100, deadline=None)
@given(
    value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    literal=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
def test_float_literals_compare_as_their_decimal_value(value: float, literal: float) -> None:
    text = f"{literal:.4f}"
    on = event(src_port=int(value))
    assert holds(f"src.port < {text}", on) is (int(value) < float(text))
    assert holds(f"src.port == {text}", on) is (int(value) == float(text))


_FRAGMENTS = st.sampled_from(
    [
        "__import__",
        "'os'",
        '"x"',
        "(",
        ")",
        "[",
        "]",
        ",",
        ".",
        "__class__",
        "lambda",
        ":",
        "src.ip",
        "dst.port",
        "details.q",
        "==",
        "!=",
        "<",
        ">=",
        "and",
        "or",
        "not",
        "in",
        "is",
        "null",
        "true",
        "startswith",
        "contains",
        "1",
        "-2.5",
        "system",
        "eval",
        "e",
        ";",
        "\\",
        "'",
        '"',
        "{",
        "}",
        "+",
        "*",
        "@",
    ]
)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_FRAGMENTS, min_size=1, max_size=12))
def test_any_condition_text_compiles_or_is_a_validation_error(parts: list[str]) -> None:
    """Fragments of Python and of the language, in any order: the compiler either rejects the
    text with ValidationError or returns a predicate that yields a bool; nothing is executed
    (a call would need a callable field, and no field is one)."""
    text = " ".join(parts)
    try:
        condition = compile_condition(text)
    except ValidationError:
        return
    try:
        result = condition(event(details={"q": "abc"}))
    except TypeError:
        return
    assert type(result) is bool


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40))
def test_arbitrary_text_never_raises_anything_but_validation_error(text: str) -> None:
    with contextlib.suppress(ValidationError):
        compile_condition(text)


# --- odd rules and odd data: false or a clear error, never a crash ---


def test_contains_with_mismatched_types_is_false_not_an_error() -> None:
    on = event(details={"query": "evil.example"})
    assert not holds("details.query contains 5", on)
    assert not holds("ics.function_code contains 1", on)
    assert not holds('src_asset contains "hmi"', on)


def test_in_on_a_list_field_is_false_not_an_error() -> None:
    on = event(cti_matches=(match("dst.ip", 80),))
    assert not holds('cti.fields in ["dst.ip"]', on)
    assert holds('cti.fields not in ["dst.ip"]', on)


def test_deep_nesting_is_a_validation_error_not_a_recursion_error() -> None:
    # Either answer is fine (compile it, or reject it as too deep); a RecursionError is not.
    for text in ("(" * 2000 + "true" + ")" * 2000, "not " * 2000 + "true"):
        with contextlib.suppress(ValidationError):
            compile_condition(text)
