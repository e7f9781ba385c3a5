"""Hermes tool calls, as Qwen2.5, Qwen3, Qwen3-2507, QwQ and Qwen3-VL write them.

The model answers `<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>` (its chat template
tells it so when given `tools`): the arguments are JSON already, typed by the model.

A forced choice (`tool_choice: "required"` or a named function) is constrained by a grammar
(`forced_grammar`), so even a weak model produces a call that parses and names a real
function with arguments matching its schema.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from ...chat import ToolCall
from .stream import WAIT, Scan, new_call_id

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def parse_call(body: str) -> ToolCall | None:
    """A `{"name", "arguments"}` object as a ToolCall, or None if it is not one."""
    try:
        # strict=False lets a raw newline stand inside a string: models write code that way, and
        # llama-cpp-python's schema converter writes an enum's "\n" as one (its literals do not
        # escape the backslash), so a forced call could not parse otherwise.
        data = json.loads(body, strict=False)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):  # some models send the arguments already encoded
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(id=new_call_id(), name=data["name"], arguments=json.dumps(arguments, ensure_ascii=False))


class HermesDialect:
    openers: tuple[str, ...] = (OPEN,)

    def reader(self, opener: str) -> _HermesReader:
        return _HermesReader()


class _HermesReader:
    def __init__(self) -> None:
        self._from = 0  # where the closing tag may still start

    def scan(self, body: str, *, final: bool) -> Scan:
        end = body.find(CLOSE, self._from)
        if end < 0:
            self._from = max(0, len(body) - len(CLOSE) + 1)
            if not final:
                return WAIT
            call = parse_call(body.strip())  # a complete object cut off before its closing tag
            return Scan("call" if call else "text", len(body), call)
        call = parse_call(body[:end].strip())
        return Scan("call" if call else "text", end + len(CLOSE), call)


# -- forced calls ---------------------------------------------------------------------------


def call_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of one `{"name", "arguments"}` object calling `tool`."""
    function = tool["function"]
    # A copy: the converter rewrites `$ref`s in place, and the template must see the client's.
    parameters = copy.deepcopy(function.get("parameters") or {"type": "object"})
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def forced_grammar(tools: Sequence[dict[str, Any]], *, several: bool) -> str:
    """GBNF for one (or, with `several`, one or more) `<tool_call>` blocks calling `tools`.

    The JSON-schema converter is llama-cpp-python's pure-Python port of llama.cpp's; it raises
    ValueError for a schema it cannot express, which the caller reports as a bad `tools` field.
    """
    from llama_cpp.llama_grammar import SchemaConverter

    schemas = [call_schema(t) for t in tools]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    converter = SchemaConverter(
        prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    schema = converter.resolve_refs(schema, "tools")
    converter.visit(schema, "tool-call-json")
    rules = converter.format_grammar()
    block = r'"<tool_call>\n" tool-call-json "\n</tool_call>"'
    root = "root ::= tool-call-block" + (r' ("\n" tool-call-block)*' if several else "")
    return f"{root}\ntool-call-block ::= {block}\n{rules}\n"
