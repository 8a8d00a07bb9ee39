"""JSON Schema for handlers: inference from type hints, and validation (jsonschema-rs).

Network `$ref`s are never fetched: the retriever refuses them, as the 2026-07-28 spec asks.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

import jsonschema_rs

_PRIMITIVES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dict: {"type": "object"},
    list: {"type": "array"},
    Any: {},
}


class SchemaInferenceError(TypeError):
    """A handler parameter whose type cannot be turned into JSON Schema."""


def type_schema(annotation: Any) -> dict[str, Any]:
    """JSON Schema for a Python type hint (primitives, list, dict, Optional, Literal)."""
    if annotation in _PRIMITIVES:
        return dict(_PRIMITIVES[annotation])
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return type_schema(options[0])
        return {"anyOf": [type_schema(a) for a in options]}
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", "items": type_schema(args[0])} if args else {"type": "array"}
    if origin is dict:
        schema: dict[str, Any] = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = type_schema(args[1])
        return schema
    if origin is typing.Annotated:
        base = type_schema(args[0])
        for extra in args[1:]:
            if isinstance(extra, str):
                base["description"] = extra
            elif isinstance(extra, dict):
                base.update(extra)
        return base
    raise SchemaInferenceError(f"cannot express {annotation!r} in JSON Schema; pass a schema")


def infer_input_schema(fn: Callable[..., Any], skip: set[str]) -> dict[str, Any]:
    """An object schema from a function's keyword parameters (those not in `skip`)."""
    hints = typing.get_type_hints(fn, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, parameter in inspect.signature(fn).parameters.items():
        if name in skip or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        schema = type_schema(hints.get(name, Any))
        if parameter.default is parameter.empty:
            required.append(name)
        elif parameter.default is not None:
            schema["default"] = parameter.default
        properties[name] = schema
    result: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        result["required"] = required
    return result


def _refuse_retrieval(uri: str) -> Any:
    raise ValueError(f"refusing to fetch the external schema {uri!r}")


class SchemaValidator:
    """A compiled validator that reports every error with its JSON path."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._validator = jsonschema_rs.validator_for(schema, retriever=_refuse_retrieval)

    def errors(self, instance: Any) -> list[str]:
        if self._validator.is_valid(instance):
            return []
        messages = []
        for error in self._validator.iter_errors(instance):
            path = "/".join(str(part) for part in error.instance_path)
            messages.append(f"{'/' + path if path else '(root)'}: {error.message}")
        return messages
