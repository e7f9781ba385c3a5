"""The GBNF grammar llama.cpp holds a reply to, for both llama.cpp backends."""

from __future__ import annotations

from ..chat import GenerationOptions
from .local import grammar_rejected, output_rule


def gbnf(options: GenerationOptions) -> str | None:
    """GBNF text for what the options hold the reply to (`local.output_rule`), or None."""
    rule = output_rule(options)
    if rule is None:
        return None
    if rule.kind == "grammar":
        return rule.text
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if rule.kind == "json":
        return JSON_GBNF
    try:
        return json_schema_to_gbnf(rule.text)
    except Exception as exc:
        raise grammar_rejected(str(exc)) from None
