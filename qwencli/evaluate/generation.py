"""`qwen eval gen`'s driver: each question prompted, generated, graded and journaled, in order.

A task (`GenTask`: GSM8K in one style, or HumanEval) says what to ask and how to grade; the
driver asks a backend — the engine in this process, as `qwen run` drives it, or a server through
the remote backend — and writes each finished question to the journal before the next starts,
so Ctrl-C loses at most the question in flight. Prompting is named, never guessed silently:
`chat` renders messages with the model's own template, `base` sends plain text to completions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..backends.base import Backend
from ..chat import GenerationOptions, Message
from .journal import Journal

Prompting = Literal["chat", "base"]


@dataclass(frozen=True)
class Prompt:
    messages: tuple[Message, ...] = ()  # chat prompting
    text: str = ""  # base prompting


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str
    tokens: int


class GenTask(Protocol):
    name: str
    style: str
    max_tokens: int
    stop: tuple[str, ...]

    def ids(self) -> list[str]: ...

    def prompt(self, index: int, prompting: Prompting) -> Prompt: ...

    def grade(self, index: int, replies: Sequence[Reply], prompting: Prompting) -> dict[str, Any]:
        """The journal record of one question (JSON values only)."""
        ...

    def metrics(self, records: Sequence[dict[str, Any]]) -> dict[str, float | None]: ...


def ask(backend: Backend, prompt: Prompt, options: GenerationOptions) -> Reply:
    stream = backend.chat(list(prompt.messages), options) if prompt.messages else backend.complete(prompt.text, options)
    text: list[str] = []
    finish, tokens = "stop", 0
    try:
        for chunk in stream:
            if chunk.kind == "text":
                text.append(chunk.text)
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
                tokens = chunk.usage.completion_tokens if chunk.usage else 0
    finally:
        stream.close()
    return Reply("".join(text), finish, tokens)


def sample_options(task: GenTask, samples: int, sample: int, *, local: bool = True) -> GenerationOptions:
    """Greedy for one sample; for pass@k, Codex's sampling (temperature 0.8, top-p 0.95) with a
    seed per sample, so a resumed run draws what the first would have. No penalties: a family's
    default repeat or presence penalty would change what greedy decoding writes. (A server gets
    only the OpenAI fields: others may refuse llama.cpp's.)"""
    base = GenerationOptions(max_tokens=task.max_tokens, stop=task.stop, presence_penalty=0.0, frequency_penalty=0.0)
    if local:
        base = base.replace(top_k=0, min_p=0.0, repeat_penalty=1.0)
    if samples == 1:
        return base.replace(temperature=0.0)
    return base.replace(temperature=0.8, top_p=0.95, seed=1000 + sample)


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...

    def advance(self, record: dict[str, Any]) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Run:
    task: GenTask
    prompting: Prompting
    samples: int = 1
    #: The records of this run's questions, in question order (journaled earlier ones included).
    records: list[dict[str, Any]] = field(default_factory=list)


def run(
    task: GenTask,
    backend: Backend,
    journal: Journal,
    *,
    prompting: Prompting,
    samples: int = 1,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Run:
    local = backend.info.backend != "remote"
    ids = task.ids()
    pending = [i for i, q in enumerate(ids) if q not in journal.done]
    if progress is not None:
        progress.start(len(ids), len(ids) - len(pending))
    try:
        for index in pending:
            prompt = task.prompt(index, prompting)
            started = clock()
            replies = [ask(backend, prompt, sample_options(task, samples, s, local=local)) for s in range(samples)]
            record = task.grade(index, replies, prompting)
            record["seconds"] = round(clock() - started, 3)
            journal.record(ids[index], record)
            if progress is not None:
                progress.advance(record)
    finally:
        if progress is not None:
            progress.stop()
    return Run(task, prompting, samples, [journal.done[q] for q in ids])
