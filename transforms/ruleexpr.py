"""The condition language of detection rules: small, safe, compiled once.

A rule's ``condition`` is parsed by a recursive-descent parser into a tree of
Python closures; nothing is ever passed to ``eval``, and only the fields listed
in `FIELDS` (plus ``details.<key>``) can be read. Grammar::

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | compare
    compare  := operand [ ("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                        | ["not"] "in" list
                        | "is" ["not"] "null"
                        | "startswith" string
                        | "contains" literal ]
    operand  := field | string | number | "true" | "false" | "null" | list | "(" expr ")"
    list     := "[" [literal ("," literal)*] "]"

Examples: ``ics.protocol == "modbus" and ics.operation in ["write", "program"]``,
``src_asset.role != "engineering_workstation"``, ``dst_asset.purdue_level <= 1``,
``src.is_global and ics.protocol is not null``, ``cti.fields contains "dst.ip"``.

Semantics: a missing value is ``null``; ordering comparisons with ``null`` are
false; ``!=`` against a missing value is true (an unknown asset is not an
engineering workstation); a bare field is tested for truth.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from schemas.errors import ValidationError

__all__ = ["FIELDS", "Condition", "compile_condition", "condition_facts", "field_getter"]

Condition = Callable[[Any], bool]
Getter = Callable[[Any], Any]


@lru_cache(maxsize=65536)
def _is_global(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def _attr(*names: str) -> Getter:
    """A None-safe attribute path getter, specialised for the one and two levels events have."""
    if len(names) == 1:
        (name,) = names
        return lambda event: getattr(event, name, None)
    if len(names) == 2:
        outer, inner = names

        def get2(event: Any) -> Any:
            value = getattr(event, outer, None)
            return None if value is None else getattr(value, inner, None)

        return get2

    def get(event: Any) -> Any:
        value = event
        for name in names:
            value = getattr(value, name, None)
            if value is None:
                return None
        return value

    return get


def _max_confidence(event: Any) -> int | None:
    matches = event.cti_matches
    return max(m.confidence for m in matches) if matches else None


# Every field a condition can read, with how to read it from a `NormalizedEvent`.
FIELDS: dict[str, Getter] = {
    "time": _attr("time"),
    "class_uid": _attr("class_uid"),
    "activity_id": _attr("activity_id"),
    "severity_id": _attr("severity_id"),
    "source_format": _attr("source_format"),
    "source_kind": _attr("source_kind"),
    "observer": _attr("observer"),
    "sensor": _attr("sensor"),
    "transport": _attr("transport"),
    "app_protocol": _attr("app_protocol"),
    "src.ip": _attr("src", "ip"),
    "src.port": _attr("src", "port"),
    "dst.ip": _attr("dst", "ip"),
    "dst.port": _attr("dst", "port"),
    "src.is_global": lambda e: _is_global(e.src.ip),
    "dst.is_global": lambda e: _is_global(e.dst.ip),
    "zone_crossing": _attr("zone_crossing"),
    "src_asset": _attr("src_asset"),
    "dst_asset": _attr("dst_asset"),
    "ics": _attr("ics"),
    "detection": _attr("detection"),
    "unknown_asset": _attr("unknown_asset"),
    "cti.count": lambda e: len(e.cti_matches),
    "cti.max_confidence": _max_confidence,
    "cti.fields": lambda e: [m.field for m in e.cti_matches],
    "cti.types": lambda e: [m.type for m in e.cti_matches],
    **{
        f"ics.{name}": _attr("ics", name)
        for name in (
            "protocol",
            "function_code",
            "function_name",
            "operation",
            "is_request",
            "is_exception",
            "subfunction",
            "unit_id",
            "address_start",
            "address_count",
            "status",
        )
    },
    **{
        f"detection.{name}": _attr("detection", name)
        for name in ("rule_uid", "title", "category", "sensor_severity", "techniques")
    },
    **{
        f"{side}.{name}": _attr(side, name)
        for side in ("src_asset", "dst_asset")
        for name in (
            "name",
            "role",
            "purdue_level",
            "zone",
            "criticality",
            "vendor",
            "model",
            "firmware",
        )
    },
}


def field_getter(path: str) -> Getter:
    """How to read ``path`` (a name in `FIELDS` or ``details.<key>``) from an event.

    Raises:
        ValidationError: On a field that does not exist.
    """
    if path.startswith("details.") and len(path) > len("details."):
        key = path[len("details.") :]
        return lambda event: event.details.get(key)
    getter = FIELDS.get(path)
    if getter is None:
        raise ValidationError(f"unknown field {path!r}", field="condition")
    return getter


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    )""",
    re.VERBOSE,
)
_MAX_DEPTH = 32  # parentheses and `not`s; deeper is a mistake, not a rule
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_ESCAPE = re.compile(r"\\(.)")
_KEYWORDS = {
    "and",
    "or",
    "not",
    "in",
    "is",
    "null",
    "true",
    "false",
    "startswith",
    "contains",
}


def _tokens(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValidationError(
                f"cannot read condition at column {position + 1}: {text[position:][:20]!r}",
                field="condition",
            )
        position = match.end()
        kind = match.lastgroup
        value = match.group(kind or "")
        if kind == "number":
            tokens.append(("literal", float(value) if "." in value else int(value)))
        elif kind == "string":
            tokens.append(("literal", _ESCAPE.sub(r"\1", value[1:-1])))
        elif kind == "name" and value in _KEYWORDS:
            if value in ("true", "false"):
                tokens.append(("literal", value == "true"))
            else:
                tokens.append(("keyword", value))
        else:
            tokens.append((kind or "", value))
    return tokens


def _compare(op: str, left: Getter, right: Getter) -> Condition:
    if op == "==":
        return lambda e: bool(left(e) == right(e))
    if op == "!=":
        return lambda e: bool(left(e) != right(e))

    def ordered(e: Any) -> bool:
        a, b = left(e), right(e)
        if a is None or b is None:
            return False
        try:
            if op == "<":
                return bool(a < b)
            if op == "<=":
                return bool(a <= b)
            if op == ">":
                return bool(a > b)
            return bool(a >= b)
        except TypeError:
            return False

    return ordered


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0
        self.depth = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, kind: str, value: Any = None) -> bool:
        token = self.peek()
        if token is not None and token[0] == kind and (value is None or token[1] == value):
            self.position += 1
            return True
        return False

    def fail(self, expected: str) -> ValidationError:
        token = self.peek()
        found = "the end" if token is None else repr(token[1])
        return ValidationError(
            f"condition {self.text!r}: expected {expected}, found {found}", field="condition"
        )

    def parse(self) -> Condition:
        condition = self.expr()
        if self.peek() is not None:
            raise self.fail("'and', 'or' or the end")
        return condition

    def expr(self) -> Condition:
        parts = [self.and_expr()]
        while self.take("keyword", "or"):
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        alternatives = tuple(parts)

        def any_of(e: Any) -> bool:
            # A plain loop: any() over a generator costs a generator per event.
            for part in alternatives:  # noqa: SIM110
                if part(e):
                    return True
            return False

        return any_of

    def and_expr(self) -> Condition:
        parts = [self.not_expr()]
        while self.take("keyword", "and"):
            parts.append(self.not_expr())
        if len(parts) == 1:
            return parts[0]
        conjuncts = tuple(parts)

        def all_of(e: Any) -> bool:
            for part in conjuncts:  # noqa: SIM110 (as in any_of)
                if not part(e):
                    return False
            return True

        all_of.facts = [  # type: ignore[attr-defined]
            fact for part in conjuncts if (fact := getattr(part, "fact", None)) is not None
        ]
        return all_of

    def nested(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ValidationError(
                f"condition nests deeper than {_MAX_DEPTH} levels", field="condition"
            )

    def not_expr(self) -> Condition:
        if self.take("keyword", "not"):
            self.nested()
            inner = self.not_expr()
            self.depth -= 1
            return lambda e: not inner(e)
        return self.compare()

    def compare(self) -> Condition:
        token = self.peek()
        if token == ("op", "("):
            self.position += 1
            self.nested()
            inner = self.expr()
            if not self.take("op", ")"):
                raise self.fail("')'")
            self.depth -= 1
            return inner
        field = self.peek()
        left = self.operand()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in _COMPARISONS:
            self.position += 1
            right_token = self.peek()
            compared = _compare(token[1], left, self.operand())
            if (
                field is not None
                and field[0] == "name"
                and right_token is not None
                and right_token[0] == "literal"
            ):
                compared.fact = (token[1], field[1], right_token[1])  # type: ignore[attr-defined]
            return compared
        negate = False
        if token == ("keyword", "not"):
            self.position += 1
            negate = True
            if self.peek() != ("keyword", "in"):
                raise self.fail("'in' after 'not'")
        if self.take("keyword", "in"):
            values = frozenset(self.literal_list())
            fact = None
            if field is not None and field[0] == "name":
                fact = ("not in" if negate else "in", field[1], values)

            def member(e: Any) -> bool:
                try:
                    return left(e) in values
                except TypeError:  # a list-valued field is not one of the values
                    return False

            if negate:

                def not_member(e: Any) -> bool:
                    return not member(e)

                not_member.fact = fact  # type: ignore[attr-defined]
                return not_member
            member.fact = fact  # type: ignore[attr-defined]
            return member
        if self.take("keyword", "is"):
            is_not = self.take("keyword", "not")
            if not self.take("keyword", "null"):
                raise self.fail("'null'")
            if is_not:

                def present(e: Any) -> bool:
                    return left(e) is not None

                if field is not None and field[0] == "name":
                    present.fact = ("is not null", field[1], None)  # type: ignore[attr-defined]
                return present
            return lambda e: left(e) is None
        if self.take("keyword", "startswith"):
            prefix = self.literal()
            if not isinstance(prefix, str):
                raise self.fail("a string after 'startswith'")
            return lambda e: isinstance(value := left(e), str) and value.startswith(prefix)
        if self.take("keyword", "contains"):
            item = self.literal()

            def contains(e: Any) -> bool:
                value = left(e)
                if value is None:
                    return False
                try:
                    return item in value
                except TypeError:  # a number does not contain anything
                    return False

            if field is not None and field[0] == "name":
                contains.fact = ("contains", field[1], item)  # type: ignore[attr-defined]
            return contains
        return lambda e: bool(left(e))

    def operand(self) -> Getter:
        token = self.peek()
        if token is None:
            raise self.fail("a field or a value")
        if token[0] == "name":
            self.position += 1
            return field_getter(token[1])
        if token == ("keyword", "null") or token[0] == "literal":
            value = self.literal()
            return lambda e: value
        raise self.fail("a field or a value")

    def literal(self) -> Any:
        token = self.peek()
        if token is not None and token[0] == "literal":
            self.position += 1
            return token[1]
        if self.take("keyword", "null"):
            return None
        raise self.fail("a value")

    def literal_list(self) -> list[Any]:
        if not self.take("op", "["):
            raise self.fail("'['")
        values: list[Any] = []
        if self.take("op", "]"):
            return values
        while True:
            values.append(self.literal())
            if self.take("op", "]"):
                return values
            if not self.take("op", ","):
                raise self.fail("',' or ']'")


def condition_facts(condition: Condition) -> list[tuple[str, str, Any]]:
    """What every event the condition accepts must satisfy, as far as it is simple to tell:
    ``(op, field, value)`` for the top-level ``and`` terms that compare a field with a value
    (``("==", "ics.protocol", "modbus")``, ``("in", "ics.function_code", frozenset(...))``,
    ``("is not null", "ics.protocol", None)``, ``("contains", "cti.fields", "dst.ip")``).
    Used to skip rules that cannot match."""
    facts = getattr(condition, "facts", None)
    if facts is not None:
        return list(facts)
    fact = getattr(condition, "fact", None)
    return [fact] if fact is not None else []


def compile_condition(text: str) -> Condition:
    """Compile a rule condition into a predicate over events.

    Raises:
        ValidationError: On a syntax error or an unknown field, naming the position.
    """
    if not text or not text.strip():
        raise ValidationError("empty condition", field="condition")
    return _Parser(text).parse()
