"""Tool calls in the two dialects Qwen models write, chosen by the model's chat template
(`ChatTemplate.tool_dialect`): Hermes JSON (`hermes.py`) and Qwen3-Coder XML (`xml_calls.py`,
typed by `arguments.py`, forced by `xml_grammar.py`); `stream.py` finds them in a reply."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...chat import ToolDialect
from . import hermes, xml_grammar
from .stream import CallInReasoning, Dialect, Event, Text, ToolCallStream
from .xml_calls import XmlDialect

__all__ = ["CallInReasoning", "Event", "Text", "ToolCallStream", "call_stream", "forced_grammar"]


def call_stream(dialect: ToolDialect, tools: Sequence[dict[str, Any]], *, first_only: bool = False) -> ToolCallStream:
    """A parser for one reply of a model that writes `dialect`, offered `tools`."""
    reader: Dialect = XmlDialect(tools) if dialect == "xml" else hermes.HermesDialect()
    return ToolCallStream(reader, first_only=first_only)


def forced_grammar(dialect: ToolDialect, tools: Sequence[dict[str, Any]], *, several: bool) -> str:
    """GBNF for one (`several`: one or more) calls of `tools` in `dialect`."""
    build = xml_grammar.forced_grammar if dialect == "xml" else hermes.forced_grammar
    return build(tools, several=several)
