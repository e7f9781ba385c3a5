"""Raw parameter text → the JSON value the tool's schema asks for.

Qwen3-Coder XML carries every value as text: the template wrote strings as they are and
everything else through `tojson` (or Python's `str`: `True`, `None`). So a value is typed by
its parameter's schema, as llama.cpp's parser and transformers' `parse_response` do: a string
parameter keeps its text exactly (newlines, quotes, digits and all); other types are read as
JSON (`true`/`True`, `null`/`None` too); a union tries its non-string types first and falls
back to the text; a parameter the schema does not describe is JSON if it parses, else text.
A value that does not fit its type stays text rather than failing the call.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

JsonType = str  # "string", "integer", "number", "boolean", "null", "object", "array"

#: The order non-string types are tried in: the narrowest reading first.
_ORDER = ("null", "boolean", "integer", "number", "array", "object")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def json_type(value: Any) -> JsonType:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def resolve(schema: Any, root: dict[str, Any]) -> Any:
    """`schema` with a local `$ref` (`#/$defs/x`) followed; anything else as it is."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return {}
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        schema = target if isinstance(target, dict) else {}
        seen += 1
    return schema


def schema_types(schema: Any, root: dict[str, Any]) -> set[JsonType] | None:
    """The JSON types `schema` allows, or None when it does not say (anything goes)."""
    schema = resolve(schema, root)
    if not isinstance(schema, dict):
        return None
    declared = schema.get("type")
    types: set[JsonType] | None
    if isinstance(declared, str):
        types = {declared}
    elif isinstance(declared, list):
        types = {t for t in declared if isinstance(t, str)}
    elif "anyOf" in schema or "oneOf" in schema:
        types = set()
        for option in schema.get("anyOf") or schema.get("oneOf") or ():
            inner = schema_types(option, root)
            if inner is None:
                return None
            types |= inner
    elif isinstance(schema.get("enum"), list):
        types = {json_type(v) for v in schema["enum"]}
    elif "const" in schema:
        types = {json_type(schema["const"])}
    elif "properties" in schema:
        types = {"object"}
    elif "items" in schema:
        types = {"array"}
    else:
        return None
    if schema.get("nullable") is True:
        types.add("null")
    return types or None


def _as(kind: JsonType, text: str) -> tuple[bool, Any]:
    if kind == "null":
        return (True, None) if text in ("null", "None") else (False, None)
    if kind == "boolean":
        lowered = text.lower()
        return (True, lowered == "true") if lowered in ("true", "false") else (False, None)
    if kind in ("integer", "number"):
        match = _NUMBER.fullmatch(text)
        if match is None:
            return False, None
        if match.group(1) is None and match.group(2) is None:
            return True, int(text)
        number = float(text)
        if not math.isfinite(number):
            return False, None
        if kind == "integer":
            return (True, int(number)) if number.is_integer() else (False, None)
        return True, number
    if kind in ("array", "object"):
        try:
            value = json.loads(text)
        except ValueError:
            return False, None
        return (True, value) if json_type(value) == kind else (False, None)
    return False, None


def typed_value(raw: str, schema: Any, root: dict[str, Any]) -> Any:
    types = schema_types(schema, root)
    if types is None:
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        return raw if isinstance(value, float) and not math.isfinite(value) else value
    if types == {"string"}:
        return raw
    text = raw.strip()
    for kind in _ORDER:
        if kind in types:
            ok, value = _as(kind, text)
            if ok:
                return value
    # Around a number or an object, whitespace is layout; a string keeps every character.
    return raw if "string" in types else text


def typed_arguments(params: Iterable[tuple[str, str]], parameters: Any) -> dict[str, Any]:
    """Raw `(name, text)` pairs as the arguments object of a function with schema `parameters`."""
    root = parameters if isinstance(parameters, dict) else {}
    properties = root.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    return {name: typed_value(raw, properties.get(name), root) for name, raw in params}
