"""Validate emitted messages against the official MCP JSON schemas (Draft 2020-12).

Every test in the project that builds or relays a message checks it here:

    validate_message(message, "2025-11-25")                    # any JSONRPCMessage
    validate_message(message, "2026-07-28", "JSONRPCRequest")  # one envelope kind
    validate_def(result, "2026-07-28", "DiscoverResult")      # any `$defs` type

The schemas are read from the shared spec folder next to the repository (never copied into
it). Versions older than 2025-11-25 are checked against the 2025-11-25 schema, the only
legacy schema we have. A failure is an AssertionError that names the version, the type, the
JSON path of each problem and the offending instance.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import relevance

SPEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "spec"

#: Versions without a schema of their own, and the schema they are checked against.
SCHEMA_ALIASES = {
    "2024-11-05": "2025-11-25",
    "2025-03-26": "2025-11-25",
    "2025-06-18": "2025-11-25",
}

_MAX_REPORTED_ERRORS = 5


def schema_versions() -> tuple[str, ...]:
    """The versions that have a schema file in the spec folder, oldest first."""
    return tuple(sorted(path.parent.name for path in SPEC_DIR.glob("*/schema.json")))


def schema_version_for(version: str) -> str:
    """The schema a protocol version is checked against."""
    resolved = SCHEMA_ALIASES.get(version, version)
    if resolved not in schema_versions():
        raise ValueError(
            f"no MCP schema for version {version!r}; have {', '.join(schema_versions())} "
            f"(looked in {SPEC_DIR})"
        )
    return resolved


@cache
def _root(schema_version: str) -> dict[str, Any]:
    with (SPEC_DIR / schema_version / "schema.json").open(encoding="utf-8") as handle:
        root = json.load(handle)
    Draft202012Validator.check_schema(root)  # once per file: it is slow on 150 defs
    return root


def load_schema(version: str) -> dict[str, Any]:
    """The whole schema document a version is checked against (shared; do not mutate)."""
    return _root(schema_version_for(version))


def def_names(version: str) -> frozenset[str]:
    """The `$defs` names of a version's schema."""
    return frozenset(_root(schema_version_for(version))["$defs"])


@cache
def _validator(schema_version: str, def_name: str) -> Draft202012Validator:
    root = _root(schema_version)
    if def_name not in root["$defs"]:
        raise ValueError(f"the {schema_version} schema has no $defs/{def_name}")
    # The defs refer to each other as "#/$defs/...", so keep them beside the $ref.
    schema = {
        "$schema": root.get("$schema", "https://json-schema.org/draft/2020-12/schema"),
        "$defs": root["$defs"],
        "$ref": f"#/$defs/{def_name}",
    }
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _excerpt(value: Any, limit: int = 300) -> str:
    try:
        text = json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_def(instance: Any, version: str, def_name: str) -> None:
    """Assert that `instance` is a valid `$defs/<def_name>` of `version`'s schema."""
    schema_version = schema_version_for(version)
    validator = _validator(schema_version, def_name)
    errors = sorted(validator.iter_errors(instance), key=relevance, reverse=True)
    if not errors:
        return
    shown = version if schema_version == version else f"{version} (schema {schema_version})"
    lines = [f"not a valid {def_name} for MCP {shown}: {len(errors)} problem(s)"]
    for error in errors[:_MAX_REPORTED_ERRORS]:
        lines.append(f"  at {error.json_path}: {error.message[:300]}")
        # anyOf/oneOf failures hide the useful part in the sub-errors; the deepest say most.
        context = sorted(error.context or (), key=lambda e: len(e.absolute_path), reverse=True)
        details = dict.fromkeys(f"{sub.json_path}: {sub.message[:200]}" for sub in context)
        lines.extend(f"      - {detail}" for detail in list(details)[:4])
    if len(errors) > _MAX_REPORTED_ERRORS:
        lines.append(f"  ... and {len(errors) - _MAX_REPORTED_ERRORS} more")
    lines.append(f"  instance: {_excerpt(instance)}")
    raise AssertionError("\n".join(lines))


def validate_message(message: dict[str, Any], version: str, kind: str | None = None) -> None:
    """Assert that `message` is a valid MCP message (`kind`, default JSONRPCMessage)."""
    if not isinstance(message, dict):
        raise AssertionError(f"an MCP message is a JSON object, not {type(message).__name__}")
    validate_def(message, version, kind or "JSONRPCMessage")


def is_valid(instance: Any, version: str, def_name: str) -> bool:
    """Whether `instance` validates (for tests that expect a rejection)."""
    return _validator(schema_version_for(version), def_name).is_valid(instance)
