"""Tool calls, Hermes style as Qwen2.5 and Qwen3 write them.

The model answers `<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>` (its chat template
tells it so when given `tools`). `ToolCallStream` pulls those blocks out of a stream of text
pieces — a tag may straddle two pieces, so a possible tag start is held back — and turns each
into a `ToolCall` with arguments as JSON text, as the OpenAI API carries them.

A forced choice (`tool_choice: "required"` or a named function) is constrained by a grammar
(`forced_call_grammar`), so even a weak model produces a call that parses and names a real
function with arguments matching its schema.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..chat import ToolCall
from ..stops import partial_suffix

OPEN, CLOSE = "<tool_call>", "</tool_call>"


@dataclass(frozen=True)
class Text:
    text: str


Event = Text | ToolCall


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def parse_call(body: str) -> ToolCall | None:
    """A `{"name", "arguments"}` object as a ToolCall, or None if it is not one."""
    try:
        data = json.loads(body)
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


class ToolCallStream:
    """Text pieces in; text and tool calls out, in order.

    Whitespace between calls is layout: it is held until real text follows and dropped when a
    call follows or the reply ends after calls. A block that does not parse stays text.
    """

    def __init__(self, *, first_only: bool = False):
        self._buf = ""
        self._in_call = False
        self._space = ""
        self._first_only = first_only
        self.calls: list[ToolCall] = []

    def feed(self, piece: str) -> Iterator[Event]:
        self._buf += piece
        while self._buf:
            if self._in_call:
                end = self._buf.find(CLOSE)
                if end < 0:
                    return
                body, self._buf = self._buf[:end], self._buf[end + len(CLOSE) :]
                self._in_call = False
                yield from self._block(body, closed=True)
                continue
            start = self._buf.find(OPEN)
            if start >= 0:
                before, self._buf = self._buf[:start], self._buf[start + len(OPEN) :]
                self._in_call = True
                yield from self._text(before)
                continue
            hold = partial_suffix(self._buf, OPEN)
            out = self._buf[: len(self._buf) - hold]
            self._buf = self._buf[len(self._buf) - hold :]
            yield from self._text(out)
            return

    def finish(self) -> Iterator[Event]:
        rest, self._buf = self._buf, ""
        if self._in_call:
            self._in_call = False
            yield from self._block(rest, closed=False)  # cut off at EOS or by max_tokens
        else:
            yield from self._text(rest)
        if self._space and not self.calls:
            yield Text(self._space)
        self._space = ""

    def _block(self, body: str, *, closed: bool) -> Iterator[Event]:
        call = parse_call(body.strip())
        if call is None:
            raw = OPEN + body + (CLOSE if closed else "")
            yield from self._text(raw)
            return
        self._space = ""
        if self._first_only and self.calls:
            return
        self.calls.append(call)
        yield call

    def _text(self, text: str) -> Iterator[Event]:
        # Trailing whitespace is held whatever the split of the pieces, so "text <tool_call>"
        # gives the same content streamed token by token as collected.
        if not text:
            return
        body = text.rstrip()
        if not body:
            self._space += text
            return
        lead, self._space = self._space, text[len(body) :]
        yield Text(lead + body)


# -- forced calls ---------------------------------------------------------------------------


def call_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of one `{"name", "arguments"}` object calling `tool`."""
    function = tool["function"]
    parameters = function.get("parameters") or {"type": "object"}
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def forced_call_grammar(tools: Sequence[dict[str, Any]], *, several: bool) -> str:
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
