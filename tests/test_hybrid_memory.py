"""Multi-turn reuse on hybrid models (qwen35, qwen35moe, qwen3next): a warm backend answers every
turn exactly as a fresh process given the same conversation — after a second turn, /regen, /undo,
a reply stopped half-way, and requests that branch off one history on a server.

The Gated DeltaNet layers keep a running state, not per-token cells, so llama.cpp cannot drop the
tail of a sequence; a backend that reused a prefix it did not really have would answer from the
wrong state. The models are random (tests/fixtures/tiny_hybrid.py), so only equalities are
asserted; their greedy margins are wide, so rounding between batch shapes cannot flip a token.
"""

from __future__ import annotations

import pytest

from qwencli.backends.base import LoadOptions
from qwencli.backends.llamacpp import LlamaCppBackend
from qwencli.backends.llamacpp_batched import BatchedLlamaCppBackend
from qwencli.chat import Completion, GenerationOptions, Message, collect
from qwencli.session import Conversation

pytestmark = pytest.mark.slow

CTX = 2048
GREEDY = GenerationOptions(temperature=0, max_tokens=8)
SYSTEM = "You are a helpful assistant. " * 20  # a history worth reusing


def fresh(gguf, messages, options=GREEDY) -> Completion:
    """What a new process answers: a backend that has read nothing yet."""
    backend = LlamaCppBackend(gguf, LoadOptions(context_length=CTX))
    try:
        return collect(backend.chat(messages, options))
    finally:
        backend.close()


def same(a: Completion, b: Completion) -> bool:
    return (a.text, a.reasoning, a.finish_reason) == (b.text, b.reasoning, b.finish_reason)


def turn(conversation: Conversation, text: str | None) -> tuple[list[Message], Completion]:
    """One REPL turn (`text` None: /regen): the messages it was asked with and its reply."""
    chunks = conversation.ask(text) if text is not None else conversation.regenerate()
    reply = collect(chunks)
    return conversation.messages()[:-1], reply


@pytest.fixture
def warm(tiny_hybrid_gguf):
    backend = LlamaCppBackend(tiny_hybrid_gguf, LoadOptions(context_length=CTX))
    yield backend
    backend.close()


@pytest.mark.parametrize("think", [None, False], ids=["template default (thinking)", "no-think"])
def test_every_repl_turn_answers_as_a_fresh_process(tiny_hybrid_gguf, warm, think):
    conversation = Conversation(warm, system=SYSTEM, options=GREEDY.replace(think=think))
    asked, first = turn(conversation, "Hello there, who are you?")
    assert same(first, fresh(tiny_hybrid_gguf, asked, conversation.options))

    asked, second = turn(conversation, "Tell me more.")
    assert same(second, fresh(tiny_hybrid_gguf, asked, conversation.options))
    assert second.usage.cached_tokens > 0  # the history was not read again

    asked, again = turn(conversation, None)  # /regen
    assert same(again, second)
    assert again.usage.cached_tokens > 0

    assert conversation.undo()  # /undo, then a different second turn
    asked, other = turn(conversation, "Something else, please.")
    assert same(other, fresh(tiny_hybrid_gguf, asked, conversation.options))


def test_a_reply_stopped_half_way_leaves_a_usable_memory(tiny_hybrid_gguf, warm):
    conversation = Conversation(warm, system=SYSTEM, options=GREEDY.replace(max_tokens=40, think=False))
    stream = conversation.ask("Write a long story.")
    for _ in zip(range(3), stream):  # Ctrl-C after three pieces
        pass
    stream.close()
    assert conversation.turns[-1].role == "assistant"  # the partial reply is kept, as the REPL does
    conversation.options = GREEDY.replace(think=False)
    asked, reply = turn(conversation, "Go on.")
    assert same(reply, fresh(tiny_hybrid_gguf, asked, conversation.options))


def _branches() -> list[list[Message]]:
    history = [Message("system", SYSTEM), Message("user", "Pick a colour."), Message("assistant", "Blue.")]
    return [history + [Message("user", "Why blue?")], history + [Message("user", "Pick another.")],
            history[:2], history + [Message("user", "Why blue?")]]


def test_served_branches_of_one_conversation_answer_as_fresh(tiny_hybrid_gguf, warm):
    """A server sees branches of one history, in any order: each must be answered from its own prefix."""
    expected = [fresh(tiny_hybrid_gguf, m) for m in _branches()]
    batched = BatchedLlamaCppBackend(tiny_hybrid_gguf, LoadOptions(context_length=CTX), slots=2)
    try:
        for backend in (warm, batched):
            replies = [collect(backend.chat(messages, GREEDY)) for messages in _branches()]
            assert all(same(got, want) for got, want in zip(replies, expected)), backend
            # A sibling question and a repeat restart from a checkpoint, not from the top.
            assert replies[1].usage.cached_tokens > 0 and replies[3].usage.cached_tokens > 0, backend
    finally:
        batched.close()


def _evaluated(backend) -> int:
    """Tokens llama.cpp has decoded in this context so far (prompt and reply)."""
    import llama_cpp

    data = backend._engine.call(lambda: llama_cpp.llama_perf_context(backend._handles.ctx.ctx))
    return data.n_p_eval + data.n_eval


def test_the_second_turn_reads_only_the_last_exchange_and_says_so(warm):
    conversation = Conversation(warm, system=SYSTEM, options=GREEDY)
    turn(conversation, "Hello there, who are you?")
    before = _evaluated(warm)
    _, second = turn(conversation, "Tell me more.")
    read = _evaluated(warm) - before
    history = warm.count_prompt_tokens([Message("system", SYSTEM), Message("user", "Hello there, who are you?")],
                                       GREEDY)
    assert second.usage.cached_tokens >= history - 8  # all but the generation prompt of the first turn
    # What was decoded is the uncached prompt plus the reply (±2 for llama.cpp's own counting).
    assert read <= second.usage.prompt_tokens - second.usage.cached_tokens + second.usage.completion_tokens + 2


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_served_conversation_that_branches_answers_as_fresh(tiny_hybrid_gguf, parallel):
    """Through `qwen serve` and the openai SDK: branches of one history, also two at once."""
    import threading

    import openai

    from qwencli.server.app import create_app
    from qwencli.server.config import ServerConfig
    from qwencli.server.static_source import StaticSource
    from tests.serving import RunningServer

    branches = _branches()
    expected = [fresh(tiny_hybrid_gguf, m).reasoning for m in branches]  # the template opens <think>
    app = create_app(ServerConfig(parallel=parallel, keep_alive=None), StaticSource({"tiny": tiny_hybrid_gguf}))
    with RunningServer(app) as server:
        client = openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0, timeout=60)

        def ask(messages):
            reply = client.chat.completions.create(
                model="tiny", temperature=0, max_tokens=GREEDY.max_tokens,
                messages=[{"role": m.role, "content": m.content} for m in messages])
            message = reply.choices[0].message
            return getattr(message, "reasoning_content", None) or (message.model_extra or {}).get("reasoning_content")

        assert all(expected) and [ask(m) for m in branches] == expected
        got: dict[int, str | None] = {}
        threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, ask(branches[i]))) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert [got.get(0), got.get(1)] == expected[:2]
