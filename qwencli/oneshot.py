"""One prompt in, one answer out: the mode for scripts and pipes.

stdout gets the answer and one final newline, nothing else; notes and statistics go to stderr.
"""

from __future__ import annotations

import json
import sys

from .backends.base import Backend
from .chat import Chunk, GenerationOptions, Image, collect
from .console import AnswerWriter, notice, stats_line
from .session import Conversation


def run_once(
    backend: Backend,
    prompt: str,
    *,
    system: str | None = None,
    options: GenerationOptions = GenerationOptions(),
    json_output: bool = False,
    show_thinking: bool = False,
    verbose: bool = False,
    images: tuple[Image, ...] = (),
) -> None:
    conversation = Conversation(backend, system=system, options=options, notice=notice)
    writer = AnswerWriter(show_thinking=show_thinking)
    chunks: list[Chunk] = []
    stream = conversation.ask(prompt, images)
    try:
        for chunk in stream:
            chunks.append(chunk)
            if not json_output:
                writer.write(chunk)
    finally:
        stream.close()
    completion = collect(chunks)
    if json_output:
        usage = completion.usage
        record = {
            "model": backend.info.name,
            "text": completion.text,
            "reasoning": completion.reasoning or None,
            "finish_reason": completion.finish_reason,
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
                "cached_tokens": usage.cached_tokens,
            },
            "timings": {
                "load_seconds": round(backend.info.load_seconds, 4),
                "first_token_seconds": round(completion.timings.first_token_seconds, 4),
                "prompt_seconds": round(completion.timings.prompt_seconds, 4),
                "generation_seconds": round(completion.timings.generation_seconds, 4),
                **completion.timings.rates(usage),
                **({"threads": completion.timings.threads} if completion.timings.threads else {}),
            },
        }
        writer.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        writer.out.flush()
    else:
        writer.finish()
    if verbose:
        notice(stats_line(completion, backend.info.load_seconds))
    if completion.finish_reason == "length" and not json_output and sys.stderr.isatty():
        notice("(stopped at the token limit; raise it with -n)")
