"""JSON Schemas generated from the record types, for sensors and downstream consumers.

`schema_documents` is the single source; ``otsec schema export DIR`` writes it
and the committed copy under ``schemas/json/`` is checked against it in tests.
"""

from __future__ import annotations

import json
import os
from typing import Any

import msgspec

from schemas.dead_letter import DeadLetter
from schemas.event import NormalizedEvent
from schemas.raw import KIND_TYPES

__all__ = ["COMMITTED_DIR", "export_schemas", "schema_documents"]

COMMITTED_DIR = os.path.join(os.path.dirname(__file__), "json")


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, for every raw kind, the event and the dead letter."""
    types: dict[str, type[Any]] = {f"raw.{kind}": t for kind, t in KIND_TYPES.items()}
    types["normalized_event"] = NormalizedEvent
    types["dead_letter"] = DeadLetter
    documents = {}
    for name, record_type in sorted(types.items()):
        schema = msgspec.json.schema(record_type)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://schemas.robotlab.example/otsec/{name}.schema.json"
        documents[f"{name}.schema.json"] = schema
    return documents


def export_schemas(directory: str) -> list[str]:
    """Write every schema document into ``directory``; return the paths written."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, document in schema_documents().items():
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
            handle.write("\n")
        written.append(path)
    return written
