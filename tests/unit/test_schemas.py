"""Record types: every raw kind is defined, and the committed JSON Schemas match them."""

from __future__ import annotations

import json
import os

from schemas.errors import ERROR_CLASSES, DatabaseError, OtsecError, ValidationError
from schemas.export import COMMITTED_DIR, export_schemas, schema_documents
from schemas.raw import KIND_TYPES


def test_every_required_kind_is_defined() -> None:
    required = {
        *(
            f"zeek.{log}"
            for log in (
                "conn",
                "modbus",
                "dnp3",
                "s7comm",
                "s7comm_plus",
                "enip",
                "cip",
                "bacnet",
                "modbus_detailed",
                "dnp3_control",
            )
        ),
        *(f"suricata.{kind}" for kind in ("alert", "flow", "modbus", "dnp3")),
        "platform.v1",
    }
    assert required <= set(KIND_TYPES)


def test_committed_json_schemas_have_not_drifted(tmp_path) -> None:
    export_schemas(str(tmp_path))
    fresh = sorted(os.listdir(tmp_path))
    committed = sorted(f for f in os.listdir(COMMITTED_DIR) if f.endswith(".json"))
    assert fresh == committed, "run `otsec schema export schemas/json` and commit the result"
    for name in fresh:
        with open(tmp_path / name) as new, open(os.path.join(COMMITTED_DIR, name)) as old:
            assert json.load(new) == json.load(old), (
                f"{name} drifted: run `otsec schema export schemas/json` and commit the result"
            )


def test_schemas_carry_constraints() -> None:
    modbus = schema_documents()["raw.zeek.modbus.schema.json"]
    props = modbus["$defs"]["ZeekModbus"]["properties"]
    assert props["id.orig_p"] == {"type": "integer", "minimum": 0, "maximum": 65535}
    assert set(modbus["$defs"]["ZeekModbus"]["required"]) >= {"ts", "uid", "id.orig_h", "func"}


def test_error_hierarchy() -> None:
    assert set(ERROR_CLASSES) == {
        "ValidationError",
        "AuthenticationError",
        "AuthorizationError",
        "NotFoundError",
        "DatabaseError",
        "ExternalAPIError",
        "UnexpectedError",
    }
    assert all(issubclass(cls, OtsecError) for cls in ERROR_CLASSES.values())
    assert DatabaseError.retriable and not ValidationError.retriable
    error = ValidationError("bad port", stage="validate", field="id.orig_p", source="modbus.log:12")
    assert str(error) == "bad port (stage=validate, field=id.orig_p, source=modbus.log:12)"
    assert (error.status, error.error_class) == (400, "ValidationError")
