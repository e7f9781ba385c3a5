"""The one scoring primitive: `score(context, continuation)` → the continuation's summed
log-probability given the context, whether greedy decoding would have produced it, and its
token count — lm-eval-harness's `loglikelihood`, on a llama.cpp model in this process.

Tokenized as lm-eval does it (`TemplateLM._encode_pair`): trailing spaces of the context move to
the continuation, the pair is tokenized whole and the context alone, and the continuation is
what the whole has past the context; an empty context is the BOS token (else EOS). The engine
keeps the log-probabilities of the last scored prompt, so the choices of one question read
their shared context once (`LlamaCppBackend._keep_for_scoring`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..backends.base import ChunkStream, Evaluating
from ..chat import Chunk, GenerationOptions
from ..errors import UsageError

#: Prompt-only scoring: no token is generated, one alternative (the top one) per position.
SCORING = GenerationOptions(max_tokens=0, temperature=0.0, logprobs=1, prompt_logprobs=True)


@dataclass(frozen=True)
class Score:
    logprob: float
    greedy: bool
    tokens: int


class Scorer:
    def __init__(self, backend: Evaluating, context_length: int):
        self._backend = backend
        # What the engine can read at once (the last position is the first reply token's).
        self._max_tokens = context_length - 1
        info: dict[str, Any] = backend.tokenizer_info()
        prefix = info.get("bos_token") or info.get("eos_token")
        self._prefix = self._encode(prefix) if prefix else []

    def _encode(self, text: str) -> list[int]:
        return self._backend.tokenize_text(text, add_special=False)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if not context:
            if not self._prefix:
                raise UsageError("an empty context needs a BOS or EOS token, and this model has neither")
            return self._prefix[:1], self._encode(continuation)
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self._encode(context + continuation)
        context_ids = self._encode(context)
        return whole[: len(context_ids)], whole[len(context_ids) :]

    def encode(self, text: str) -> list[int]:
        """A whole text as the other harnesses tokenize a prompt: BOS first if the vocabulary asks."""
        return self._backend.tokenize_text(text, add_special=True)

    def token_logprobs(self, tokens: Sequence[int], start: int) -> list[float]:
        """The log-probability of each of `tokens[start:]` given the tokens before it: what
        OpenCompass's and llama-perplexity's scores are made of (no left cut: they do not cut)."""
        if not 1 <= start < len(tokens):
            raise UsageError(f"nothing to score: token {start} of a {len(tokens)}-token text")
        if len(tokens) > self._max_tokens:
            raise UsageError(
                f"a {len(tokens)}-token prompt does not fit the {self._max_tokens + 1}-token context", "a larger --ctx"
            )
        last = _last_chunk(self._backend.complete(list(tokens), SCORING))
        entries = last.prompt_logprobs[start:]
        assert len(entries) == len(tokens) - start, "the engine scored every prompt token"
        return [e.logprob if e.logprob is not None else math.nan for e in entries]

    def score(self, context: str, continuation: str) -> Score:
        context_ids, continuation_ids = self.encode_pair(context, continuation)
        return self.score_tokens(context_ids, continuation_ids)

    def score_tokens(self, context: Sequence[int], continuation: Sequence[int]) -> Score:
        if not continuation:
            raise UsageError("a continuation to score has no tokens")
        tokens = [*context, *continuation][-self._max_tokens :]  # lm-eval cuts the context on the left
        n_context = len(tokens) - len(continuation)
        if n_context < 1:
            raise UsageError(f"a continuation of {len(continuation)} tokens does not fit the context")
        last = _last_chunk(self._backend.complete(tokens, SCORING))
        entries = last.prompt_logprobs[n_context:]
        assert len(entries) == len(continuation), "the engine scored every prompt token"
        total = sum(e.logprob for e in entries if e.logprob is not None)
        greedy = all(e.top and e.logprob == e.top[0][2] for e in entries)
        return Score(total, greedy, len(entries))


def _last_chunk(stream: ChunkStream) -> Chunk:
    last = Chunk()
    try:
        for chunk in stream:
            last = chunk
    finally:
        stream.close()
    return last
