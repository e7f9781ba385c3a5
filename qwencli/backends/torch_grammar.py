"""Output held to a grammar on the torch backend, through xgrammar.

llama.cpp brings its own grammar sampler; transformers brings none. xgrammar (what vLLM and
SGLang use) compiles the same three constraints the llama.cpp path takes — any JSON
(`--format json`, `json_object`), a JSON schema (`json_schema`) and the server's GBNF for
forced tool calls — against the model's own tokenizer, and gives, token by token, the mask of
what may come next. Once the grammar is complete only an end-of-turn token is allowed, so the
reply ends there. It ships with the torch extra (`pip install 'qwencli[torch]'`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..chat import GenerationOptions
from ..errors import BackendUnavailable
from .local import grammar_rejected, output_rule


class Constraint:
    """One reply's grammar state: mask the logits, then accept the token sampled from them."""

    def __init__(self, matcher: Any, vocab_size: int):
        import xgrammar

        self._xgr = xgrammar
        self._matcher = matcher
        self._bitmask = xgrammar.allocate_token_bitmask(1, vocab_size)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` (one row) with every token the grammar forbids at -inf."""
        logits = logits.float().unsqueeze(0)  # masked in place: the row is not used again
        self._matcher.fill_next_token_bitmask(self._bitmask)
        self._xgr.apply_token_bitmask_inplace(logits, self._bitmask.to(logits.device))
        return logits[0]

    def accept(self, token: int) -> None:
        if not self._matcher.accept_token(token):  # the mask allowed it, so this is a bug
            raise RuntimeError(f"the grammar rejected token {token} it had allowed")


class Grammars:
    """Compiles constraints for one model's tokenizer (compiled once, on first use)."""

    def __init__(self, tokenizer: Any, vocab_size: int, end_tokens: Iterable[int]):
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._end_tokens = sorted(end_tokens)
        self._compiler: Any = None

    def constraint(self, options: GenerationOptions) -> Constraint | None:
        """The constraint `options` ask for, or None. Raises UsageError for a grammar or schema
        that cannot be compiled, BackendUnavailable without xgrammar."""
        rule = output_rule(options)
        if rule is None:
            return None
        compiler = self._compiler_or_raise()
        import xgrammar

        try:
            if rule.kind == "grammar":
                compiled = compiler.compile_grammar(rule.text)
            elif rule.kind == "schema":
                compiled = compiler.compile_json_schema(rule.text, any_whitespace=False)
            else:  # any JSON object, as llama.cpp's JSON grammar (and OpenAI's json_object) allows
                compiled = compiler.compile_json_schema('{"type": "object"}', any_whitespace=False)
        except (RuntimeError, ValueError) as exc:
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise grammar_rejected(detail) from None
        return Constraint(xgrammar.GrammarMatcher(compiled), self._vocab_size)

    def _compiler_or_raise(self) -> Any:
        if self._compiler is None:
            try:
                import xgrammar
            except ImportError:
                raise BackendUnavailable(
                    "constraining output (--format json, response_format, forced tool calls) on the torch "
                    "backend needs xgrammar",
                    "pip install 'qwencli[torch]' (or run the GGUF build: --backend llama)",
                ) from None
            info = xgrammar.TokenizerInfo.from_huggingface(
                self._tokenizer, vocab_size=self._vocab_size, stop_token_ids=self._end_tokens
            )
            self._compiler = xgrammar.GrammarCompiler(info)
        return self._compiler
