"""The hand-over from an engine thread: `EngineStream` (pull or push) and the server's `Generation`.

Fakes stand in for the engine's token loop; the real engines run through these paths in the
backend and server tests.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from qwencli.backends.engine_thread import EngineThread
from qwencli.chat import Chunk
from qwencli.server.generation import END, GONE, Generation


def counting(n: int, *, fail_at: int | None = None, pause_after: int | None = None, pause: float = 0.0):
    """A producer like the token loop: checks `cancel` between items; records what happened."""
    seen = {"produced": 0, "cancelled": False, "thread": None, "stopped": threading.Event()}

    def produce(cancel: threading.Event):
        seen["thread"] = threading.current_thread().name
        try:
            for i in range(n):
                if cancel.is_set():
                    seen["cancelled"] = True
                    return
                if i == fail_at:
                    raise ValueError("engine failed")
                seen["produced"] += 1
                yield Chunk(f"t{i} ")
                if i == pause_after:
                    time.sleep(pause)
            yield Chunk(finish_reason="stop")
        finally:
            seen["stopped"].set()

    return produce, seen


@pytest.fixture
def engine():
    engine = EngineThread("test engine")
    yield engine
    engine.close(timeout=5)


def test_iterating_yields_in_order_and_raises_the_engine_error(engine):
    produce, seen = counting(3)
    assert [c.text for c in engine.stream(produce)] == ["t0 ", "t1 ", "t2 ", ""]
    assert seen["thread"] == "test engine"
    produce, _ = counting(5, fail_at=2)
    stream = engine.stream(produce)
    assert next(stream).text == "t0 "
    with pytest.raises(ValueError, match="engine failed"):
        list(stream)


def test_dropping_a_half_read_stream_stops_the_producer_before_the_next_call(engine):
    produce, seen = counting(10_000)
    stream = engine.stream(produce)
    next(stream)
    del stream  # like a generator left by `break`
    assert seen["stopped"].is_set() and seen["cancelled"]
    assert seen["produced"] < 10_000
    assert engine.call(lambda: threading.current_thread().name) == "test engine"


def test_a_fast_stream_wakes_the_reader_a_few_times_not_once_an_item(engine, monkeypatch):
    """Iterating is paced: 1,000 items produced in quick succession reach the reader in order,
    and the producer wakes it only for the first one, the end, and after a lull (engine_thread.PACE)."""
    from qwencli.backends import engine_thread

    wakes = []

    class CountingEvent(threading.Event):
        def set(self):
            if not self.is_set():  # setting a set event wakes nobody
                wakes.append(1)
            super().set()

    def produce(cancel):
        for i in range(1000):
            time.sleep(0.0005)  # like a decode, which lets go of the GIL
            yield i

    monkeypatch.setattr(engine_thread.threading, "Event", CountingEvent)
    assert list(engine.stream(produce)) == list(range(1000))
    assert len(wakes) < 100, len(wakes)


def test_an_item_after_a_pause_reaches_the_reader_at_once(engine):
    """After a lull (a slow model's next token), an item is not held back until the next pace."""
    arrived = []

    def produce(cancel):
        for i in range(4):
            time.sleep(0.3)
            yield (i, time.perf_counter())

    for _, produced in engine.stream(produce):
        arrived.append(time.perf_counter() - produced)
    assert len(arrived) == 4 and max(arrived) < 0.015, arrived


def test_nothing_runs_before_it_is_consumed(engine):
    produce, seen = counting(3)
    stream = engine.stream(produce)
    engine.call(lambda: None)  # the engine has drained its queue
    assert seen["thread"] is None
    stream.close()
    assert seen["thread"] is None


def test_push_delivers_on_the_engine_thread_then_ends(engine):
    produce, _ = counting(3)
    items, ends, threads = [], [], set()
    done = threading.Event()

    def on_item(item):
        threads.add(threading.current_thread().name)
        items.append(item.text)

    def on_end(error):
        ends.append(error)
        done.set()

    engine.stream(produce).push_to(on_item, on_end)
    assert done.wait(5)
    assert items == ["t0 ", "t1 ", "t2 ", ""] and ends == [None] and threads == {"test engine"}

    produce, _ = counting(5, fail_at=1)
    done.clear()
    engine.stream(produce).push_to(lambda item: None, on_end)
    assert done.wait(5) and isinstance(ends[-1], ValueError)


async def drain(generation: Generation) -> list:
    events = []
    while True:
        event = await asyncio.wait_for(generation.next(), 10)
        events.append(event)
        if event is END or event is GONE:
            return events


@pytest.mark.parametrize("push", [True, False], ids=["pushed", "pulled"])
def test_generation_delivers_every_chunk_in_order_then_end_then_frees(engine, push):
    async def main():
        produce, _ = counting(500)
        done = asyncio.Event()

        def stream():
            s = engine.stream(produce)
            return s if push else iter(s)  # a plain iterator has no push_to: the worker pulls it

        generation = Generation(stream, on_done=done.set).start()
        events = await drain(generation)
        await asyncio.wait_for(done.wait(), 5)
        return events

    events = asyncio.run(main())
    assert [e.text for e in events[:-2]] == [f"t{i} " for i in range(500)]
    assert events[-2].finish_reason == "stop" and events[-1] is END


def test_a_slow_next_token_does_not_hold_back_the_one_before(engine):
    """Chunks are collected on a pace, not only when the next one arrives."""
    async def main():
        produce, _ = counting(3, pause_after=1, pause=2.0)
        generation = Generation(lambda: engine.stream(produce)).start()
        started = time.monotonic()
        got = [await generation.next(), await generation.next()]
        return got, time.monotonic() - started, await drain(generation)

    (first, second), waited, rest = asyncio.run(main())
    assert (first.text, second.text) == ("t0 ", "t1 ")
    assert waited < 1.5, "t1 waited for t2"
    assert rest[-1] is END


def test_interrupt_answers_gone_at_once_and_stops_the_engine(engine):
    async def main():
        produce, seen = counting(10**9)
        stopped = asyncio.Event()
        generation = Generation(lambda: engine.stream(produce), on_done=stopped.set).start()
        await generation.next()
        generation.interrupt()
        assert await asyncio.wait_for(generation.next(), 1) is GONE
        await asyncio.wait_for(stopped.wait(), 5)  # the slot frees only once the engine stopped
        return seen

    seen = asyncio.run(main())
    assert seen["cancelled"] and seen["stopped"].is_set()


def test_an_error_building_the_stream_reaches_the_loop():
    async def main():
        def broken():
            raise RuntimeError("no such model")

        return await drain(Generation(broken).start())

    error, end = asyncio.run(main())
    assert isinstance(error, RuntimeError) and end is END


def test_the_in_place_argmax_picks_what_llama_cpps_greedy_sampler_picks(tiny_qwen2_gguf):
    """Greedy replies skip llama.cpp's sampler (it fills a candidate per vocabulary entry every
    token); the token must be the sampler's own, on a 152K-vocabulary model."""
    import llama_cpp

    from qwencli.backends.base import LoadOptions
    from qwencli.backends.llama_sampler import GreedyPicker, in_place_greedy, sampler_chain
    from qwencli.backends.llamacpp import LlamaCppBackend
    from qwencli.chat import GenerationOptions, collect

    assert in_place_greedy(GenerationOptions(temperature=0))
    assert in_place_greedy(GenerationOptions(temperature=0, presence_penalty=1.5))
    assert not in_place_greedy(GenerationOptions(temperature=0, response_format={"type": "json_object"}))
    assert not in_place_greedy(GenerationOptions(temperature=0.7))
    backend = LlamaCppBackend(tiny_qwen2_gguf, LoadOptions(context_length=512))
    try:
        for prompt in ("Loop", "Hello", "\n"):
            collect(backend.complete(prompt, GenerationOptions(temperature=0, max_tokens=1)))

            def both():
                ctx = backend._handles.ctx.ctx
                chain = sampler_chain(GenerationOptions(temperature=0), backend._vocab)
                try:
                    return GreedyPicker(ctx, backend._vocab.size, GenerationOptions(temperature=0))(), llama_cpp.llama_sampler_sample(chain.sampler, ctx, -1)
                finally:
                    chain.close()

            picked, sampled = backend._engine.call(both)
            assert picked == sampled, prompt

        def every_row():
            # The batched backend reads the row of each sequence's last token (index i, not -1).
            tokens = backend._vocab.tokenize("The quick brown fox jumps over the lazy dog")
            ctx, batch = backend._handles.ctx.ctx, backend._handles.batch.batch
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, 0, -1)
            backend._cached = []
            for i, token in enumerate(tokens):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, i, 1, True
                batch.seq_id[i][0] = 0
            batch.n_tokens = len(tokens)
            assert llama_cpp.llama_decode(ctx, batch) == 0
            pick = GreedyPicker(ctx, backend._vocab.size, GenerationOptions(temperature=0))
            pairs = []
            for i in range(len(tokens)):
                chain = sampler_chain(GenerationOptions(temperature=0), backend._vocab)
                try:
                    pairs.append((pick(i), llama_cpp.llama_sampler_sample(chain.sampler, ctx, i)))
                finally:
                    chain.close()
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, 0, -1)
            return pairs

        pairs = backend._engine.call(every_row)
        assert len(pairs) > 5 and all(picked == sampled for picked, sampled in pairs), pairs
        assert len({picked for picked, _ in pairs}) > 1  # rows really differ
    finally:
        backend.close()


@pytest.mark.parametrize("penalties", [
    dict(repeat_penalty=1.05),  # Qwen2.5's default
    dict(presence_penalty=1.5),  # Qwen3.5's
    dict(repeat_penalty=1.3, frequency_penalty=0.4, presence_penalty=0.2),
])
def test_greedy_with_penalties_read_in_place_equals_llama_cpps_chain(tiny_qwen2_gguf, monkeypatch, penalties):
    """The in-place greedy picker keeps llama.cpp's penalty window itself: 200 tokens (past the
    64-token window) must be the chain's, token for token, on a prompt where the penalties change
    the reply (with these random weights "1 2 3" does; "Loop" repeats itself whatever the penalty)."""
    PROMPT = "1 2 3"
    from qwencli.backends import llama_sampler, llamacpp
    from qwencli.backends.base import LoadOptions
    from qwencli.chat import GenerationOptions, collect

    options = GenerationOptions(temperature=0, max_tokens=200, **penalties)
    backend = llamacpp.LlamaCppBackend(tiny_qwen2_gguf, LoadOptions(context_length=512))
    try:
        texts = {}
        for fast in (True, False):
            monkeypatch.setattr(llama_sampler, "in_place_greedy", lambda o, fast=fast: fast)
            reply = collect(backend.complete(PROMPT, options))
            assert reply.usage.completion_tokens == 200
            texts[fast] = reply.text
        assert texts[True] == texts[False]
        monkeypatch.setattr(llama_sampler, "in_place_greedy", lambda o: True)
        unpenalized = collect(backend.complete(PROMPT, GenerationOptions(temperature=0, max_tokens=200,
                                                                          repeat_penalty=1.0)))
        assert unpenalized.text != texts[True]  # the penalties really changed the reply
    finally:
        backend.close()


@pytest.mark.parametrize("few", [0, 64])  # the window penalized float by float, or through numpy
def test_penalized_greedy_leaves_the_row_as_it_was_for_log_probs(tiny_qwen2_gguf, monkeypatch, few):
    """A penalty is written into llama.cpp's row for the argmax; when log-probs are asked, they
    are read from that row afterwards and must be the model's, as with llama.cpp's chain."""
    from qwencli.backends import llama_sampler, llamacpp
    from qwencli.backends.base import LoadOptions
    from qwencli.chat import GenerationOptions

    monkeypatch.setattr(llama_sampler, "FEW", few)
    options = GenerationOptions(temperature=0, max_tokens=80, repeat_penalty=1.3, logprobs=3)
    backend = llamacpp.LlamaCppBackend(tiny_qwen2_gguf, LoadOptions(context_length=512))
    try:
        replies = {}
        for fast in (True, False):
            monkeypatch.setattr(llama_sampler, "in_place_greedy", lambda o, fast=fast: fast)
            replies[fast] = collect_with_logprobs(backend.complete("1 2 3", options))
        assert replies[True] == replies[False]
        assert len(replies[True][1]) == 80
    finally:
        backend.close()


def collect_with_logprobs(stream):
    chunks = list(stream)
    return "".join(c.text for c in chunks), chunks[-1].logprobs


def test_prompt_seconds_start_after_tokenizing_and_first_token_seconds_before(tiny_qwen2_gguf, monkeypatch):
    """As llama-server's `prompt_ms`: the prompt rate is the engine's (tokenizing is not in it), while
    the time to first token counts everything from the request's start."""
    import time

    from qwencli.backends import llamacpp
    from qwencli.backends.base import LoadOptions
    from qwencli.chat import GenerationOptions, collect

    backend = llamacpp.LlamaCppBackend(tiny_qwen2_gguf, LoadOptions(context_length=512))
    try:
        tokenize = backend._vocab.prompt_tokens

        def slow(prompt):
            time.sleep(0.3)
            return tokenize(prompt)

        monkeypatch.setattr(backend._vocab, "prompt_tokens", slow)
        reply = collect(backend.complete("Loop", GenerationOptions(temperature=0, max_tokens=3)))
        assert reply.timings.first_token_seconds >= 0.3
        assert reply.timings.prompt_seconds < 0.2
        assert reply.timings.first_token_seconds - reply.timings.prompt_seconds >= 0.3
    finally:
        backend.close()
