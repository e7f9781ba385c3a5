"""Qwen3-Coder XML tool calls, as Qwen3-Coder, Qwen3-Coder-Next and Qwen3.5/3.6/3.8 write them:

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>
    </tool_call>

The template writes `<parameter=KEY>\\n` VALUE `\\n</parameter>`, so exactly one newline is
stripped on each side of a value (as llama.cpp's and vLLM's parsers do) and the rest is kept as
written; `arguments.py` types it by the tool's schema. A value ends at the first
`</parameter>`, so it may hold `</tool_call>` or `</function>` (code about tool calls).
Whitespace between tags is layout. Like llama.cpp, a call whose `<tool_call>` the model left
out (Qwen3-Coder sometimes does) is still one when it opens with a known `<function=NAME>`.

The body is read from its start each time a piece arrives; the reading only ever says "not
yet", "a call ending here" or "not a call from here on", and never takes either back, so the
outcome does not depend on how the reply was split.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...chat import ToolCall
from .arguments import typed_arguments
from .stream import WAIT, Scan, new_call_id

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
FUNCTION_OPEN, FUNCTION_CLOSE = "<function=", "</function>"
PARAMETER_OPEN, PARAMETER_CLOSE = "<parameter=", "</parameter>"
_SPACE = " \t\r\n"
#: A function or parameter name longer than this is not one (and is not held back for ever).
_MAX_NAME = 256


class _Incomplete(Exception):
    """The body so far is the start of a call: wait for more."""


class _Bad(Exception):
    """The body is no call from `at` on, whatever follows."""

    def __init__(self, at: int):
        self.at = at


def _space(body: str, pos: int) -> int:
    while pos < len(body) and body[pos] in _SPACE:
        pos += 1
    return pos


def _literal(body: str, pos: int, literal: str) -> int:
    got = body[pos : pos + len(literal)]
    if got == literal:
        return pos + len(literal)
    if len(got) < len(literal) and literal.startswith(got):
        raise _Incomplete()
    raise _Bad(pos)


def _name(body: str, pos: int) -> tuple[str, int]:
    """The name up to `>` at `pos`, and where it ends."""
    end = body.find(">", pos, pos + _MAX_NAME + 1)
    segment = body[pos:end] if end >= 0 else body[pos : pos + _MAX_NAME + 1]
    if "<" in segment or "\n" in segment or (end < 0 and len(segment) > _MAX_NAME):
        raise _Bad(pos)
    if end < 0:
        raise _Incomplete()
    name = segment.strip()
    if not name:
        raise _Bad(pos)
    return name, end + 1


def _value(raw: str) -> str:
    raw = raw[1:] if raw.startswith("\n") else raw
    return raw[:-1] if raw.endswith("\n") else raw


class XmlDialect:
    def __init__(self, tools: Sequence[dict[str, Any]] = ()):
        self._parameters: dict[str, Any] = {}
        for tool in tools:
            function = tool.get("function") or {}
            if isinstance(function.get("name"), str):
                self._parameters[function["name"]] = function.get("parameters")
        bare = tuple(f"{FUNCTION_OPEN}{name}>" for name in self._parameters)
        self.openers: tuple[str, ...] = (TOOL_OPEN, *bare)

    def reader(self, opener: str) -> _XmlReader:
        name = "" if opener == TOOL_OPEN else opener[len(FUNCTION_OPEN) : -1]
        return _XmlReader(name, self._parameters)


class _XmlReader:
    """One call's reading, resumed after the last whole element (the header, a parameter)."""

    def __init__(self, name: str, parameters: dict[str, Any]):
        self._parameters = parameters
        self._name = name  # "" until the header is read (a bare `<function=NAME>` opener gives it)
        self._pos = 0
        self._params: list[tuple[str, str]] = []
        self._value_from = 0  # where `</parameter>` may still start in the value being read

    def scan(self, body: str, *, final: bool) -> Scan:
        closed = False  # past </function>, looking for </tool_call>
        try:
            if not self._name:
                pos = _literal(body, _space(body, 0), FUNCTION_OPEN)
                self._name, self._pos = _name(body, pos)
            while True:
                pos = _space(body, self._pos)
                if body.startswith(PARAMETER_OPEN, pos):
                    key, start = _name(body, pos + len(PARAMETER_OPEN))
                    end = body.find(PARAMETER_CLOSE, max(start, self._value_from))
                    if end < 0:
                        self._value_from = max(start, len(body) - len(PARAMETER_CLOSE) + 1)
                        raise _Incomplete()
                    self._params.append((key, _value(body[start:end])))
                    self._pos, self._value_from = end + len(PARAMETER_CLOSE), 0
                    continue
                if body.startswith(FUNCTION_CLOSE, pos):
                    pos += len(FUNCTION_CLOSE)
                    break
                rest = body[pos : pos + len(PARAMETER_OPEN)]
                if PARAMETER_OPEN.startswith(rest) or FUNCTION_CLOSE.startswith(rest):
                    raise _Incomplete()
                raise _Bad(pos)
            closed = True
            pos = _literal(body, _space(body, pos), TOOL_CLOSE)
        except _Incomplete:
            if not final:
                return WAIT
            if not closed:
                return Scan("text", len(body))
            pos = len(body)  # the reply ended after </function>: the call is whole
        except _Bad as bad:
            # Only the text up to the fault is settled: what follows may hold a real call.
            return Scan("text", bad.at)
        return Scan("call", pos, self._call())

    def _call(self) -> ToolCall:
        arguments = typed_arguments(self._params, self._parameters.get(self._name))
        return ToolCall(id=new_call_id(), name=self._name, arguments=json.dumps(arguments, ensure_ascii=False))
