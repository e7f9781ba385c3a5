"""Token log-probabilities in OpenAI's two wire shapes.

Completions (legacy, what lm-eval-harness reads): parallel lists `tokens`, `token_logprobs`,
`top_logprobs` (a {token: logprob} dict per position) and `text_offset` (where each token starts
in the choice's text), the first prompt token's entries null. Chat: `content`, one object per
token with its UTF-8 `bytes` and a list of alternatives. A token that is part of a UTF-8
character shows what of it decodes (U+FFFD for the rest), as its `bytes` say exactly.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any

from ..chat import TokenLogprob


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


def joined_text(tokens: Sequence[TokenLogprob]) -> tuple[str, list[int]]:
    """The text `tokens` spell, and where each one starts in it (UTF-8 decoded across tokens)."""
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    parts: list[str] = []
    offsets = []
    at = 0
    for token in tokens:
        offsets.append(at)
        part = decode(token.piece)
        parts.append(part)
        at += len(part)
    parts.append(decode(b"", final=True))
    return "".join(parts), offsets


def completion_logprobs(tokens: Sequence[TokenLogprob], offsets: Sequence[int]) -> dict[str, Any]:
    return {
        "tokens": [_text(t.piece) for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [None if t.logprob is None else {_text(p): lp for _, p, lp in t.top} for t in tokens],
        "text_offset": list(offsets),
    }


def chat_logprobs(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": _text(t.piece),
                "logprob": t.logprob,
                "bytes": list(t.piece),
                "top_logprobs": [{"token": _text(p), "logprob": lp, "bytes": list(p)} for _, p, lp in t.top],
            }
            for t in tokens
        ],
        "refusal": None,
    }
