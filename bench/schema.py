"""The result file's schema (bench/schema.json) and a small validator for it.

The validator knows the subset of JSON Schema that schema.json uses (type, required,
properties, items, enum, minimum), so a device needs no jsonschema package.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.json"
SCHEMA_NAME = "edge-bench-latency"
SCHEMA_VERSION = 2  # 2: `pipeline` became ours vs fer's per-frame pipeline (issue 5)

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate(doc, schema: dict = None, path: str = "$") -> List[str]:
    """Every way `doc` breaks `schema` (default: bench/schema.json), as 'path: problem'."""
    schema = load_schema() if schema is None else schema
    errors: List[str] = []
    wanted = schema.get("type")
    if wanted is not None:
        kinds = wanted if isinstance(wanted, list) else [wanted]
        if not any(_TYPES[k](doc) for k in kinds):
            return [f"{path}: expected {' or '.join(kinds)}, got {type(doc).__name__}"]
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{path}: {doc!r} is not one of {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](doc) and doc < schema["minimum"]:
        errors.append(f"{path}: {doc} is below the minimum {schema['minimum']}")
    if isinstance(doc, dict):
        for key in schema.get("required", []):
            if key not in doc:
                errors.append(f"{path}: missing required key {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in doc:
                errors.extend(validate(doc[key], sub, f"{path}.{key}"))
    if isinstance(doc, list) and "items" in schema:
        for index, item in enumerate(doc):
            errors.extend(validate(item, schema["items"], f"{path}[{index}]"))
    return errors
