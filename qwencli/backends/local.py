"""What the local engines (llama.cpp one at a time or batched, torch) share: context defaults, the
texts that end a turn, the penalty window, and the checks every reply starts with.

Engine-independent: nothing here imports llama_cpp or torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..chat import GenerationOptions, Message
from ..errors import ContextOverflow, NoVision, UsageError

#: Default context ceiling when the user sets none: enough for long chats, cheap in KV memory.
#: A prompt that needs more raises it (`ensure_context`), up to the trained length.
DEFAULT_CONTEXT = 8192
MIN_CONTEXT = 512
#: Share of free memory (after the weights) the KV cache may take for a context we choose.
KV_SHARE_CHOSEN = 0.5
#: Share of free memory the KV cache may take for a context a client asks for (`num_ctx`): the
#: client asked, so more of the machine may go to it than we would pick ourselves.
KV_SHARE_REQUESTED = 0.8
#: Tokens that end a turn in the families we run, looked up in each model's vocabulary.
END_OF_TURN_TEXTS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
#: Tokens the repetition penalties look back at (llama-cpp-python's `last_n_tokens_size`).
PENALTY_WINDOW = 64


def common_prefix(a: Sequence, b: Sequence) -> int:
    """How many leading items (tokens, or characters) `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def reply_budget(n_prompt: int, n_ctx: int, options: GenerationOptions) -> int:
    """Tokens the reply may take: what the context leaves, at most `max_tokens`; raises
    ContextOverflow when the prompt leaves no room at all, and UsageError for an empty prompt."""
    if n_prompt == 0:
        # Nothing to continue from: llama.cpp would sample from whatever logits the last request
        # left (the end of someone else's reply), so refuse, as vLLM does.
        raise UsageError(
            "the prompt is empty: a completion continues text, so it needs at least one token",
            "send some text (or token ids) to continue",
            param="prompt",
        )
    if n_prompt >= n_ctx:
        raise ContextOverflow(
            f"the prompt is {n_prompt} tokens but the context holds {n_ctx}",
            "shorten the input or raise the context with --ctx (num_ctx over the API)",
        )
    budget = n_ctx - n_prompt
    return budget if options.max_tokens is None else min(budget, options.max_tokens)


def images_overflow(
    n_prompt: int, image_tokens: tuple[int, ...] | int, n_ctx: int, n_images: int = 0
) -> ContextOverflow:
    """The one error for a prompt its images push past the context, with what they cost."""
    spent = image_tokens if isinstance(image_tokens, int) else sum(image_tokens)
    count = n_images or (0 if isinstance(image_tokens, int) else len(image_tokens))
    return ContextOverflow(
        f"the prompt is {n_prompt} tokens, {spent} of them for {count} image(s), but the context holds {n_ctx}",
        "send fewer or smaller images, cap what one costs with --image-max-tokens N, or raise --ctx",
    )


@dataclass(frozen=True)
class OutputRule:
    """What the reply is held to: a raw GBNF grammar, a JSON schema (as JSON text), or any JSON object."""

    kind: Literal["grammar", "schema", "json"]
    text: str = ""


def grammar_rejected(detail: str) -> UsageError:
    """The one error for a response format an engine cannot hold a reply to."""
    return UsageError(f"cannot turn the response format into a grammar: {detail}", param="response_format")


def output_rule(options: GenerationOptions) -> OutputRule | None:
    """The one choice of constraint: a grammar (the server's forced tool call) wins over a
    response format; a schema dict over plain JSON."""
    if options.grammar:
        return OutputRule("grammar", options.grammar)
    if isinstance(options.response_format, dict):
        return OutputRule("schema", json.dumps(options.response_format))
    if options.response_format:
        return OutputRule("json")
    return None


def refuse_images(messages: Sequence[Message], why: str) -> None:
    """NoVision when a message holds images this engine cannot read (rather than dropping them)."""
    if any(m.images for m in messages):
        raise NoVision(f"images are not supported {why} yet", hint="run the model on llama.cpp with its --mmproj")
