"""`qwen serve --parallel N`: the batched llama.cpp backend, against the one-at-a-time backend.

Greedy replies must equal the plain backend's (same prompts, same model); concurrent requests
must each get their own reply; stops, limits, grammars, cancellation, errors and unloading must
behave as they do one at a time. The prompts are ones whose greedy answers have a clear margin:
batching changes the order of float sums, which may flip a near tie (llama-server has the same).
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from qwencli.backends.base import LoadOptions
from qwencli.backends.llamacpp import LlamaCppBackend
from qwencli.backends.llamacpp_batched import STEP_TOKENS, BatchedLlamaCppBackend
from qwencli.chat import GenerationOptions, Message, collect
from qwencli.errors import BackendUnavailable, ContextOverflow, UsageError
from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.static_source import StaticSource
from tests.greedy import LONG_FACTS, PARIS, ROME, TOKYO
from tests.greedy import SYSTEM as SYSTEM_PROMPT
from tests.models import SMOLLM2, require
from tests.serving import RunningServer

pytestmark = pytest.mark.slow

SYSTEM = Message("system", SYSTEM_PROMPT)
# Batching changes the order of float sums, and llama.cpp is not batch-invariant: a greedy reply
# that rests on a near-tie may fork between batch shapes (llama-server has the same). So texts are
# compared only for prompts whose greedy path has a clear margin at every step (tests/greedy.py
# checks it); a reply without one ("Count from 1 to 10.") is compared by what cannot flip.
QUESTIONS = [PARIS.question, ROME.question, TOKYO.question]
# Long enough to be read in several slices (~860 tokens of prompt); a difference means a misread prompt.
LONG = LONG_FACTS.question
RUNNING = "Count from 1 to 10."
GREEDY = GenerationOptions(temperature=0, max_tokens=24)


def chat(backend, question: str, options: GenerationOptions = GREEDY):
    return collect(backend.chat([SYSTEM, Message("user", question)], options))


@pytest.fixture(scope="module")
def reference():
    backend = LlamaCppBackend(require(SMOLLM2), LoadOptions(context_length=2048))
    try:
        yield {q: chat(backend, q).text for q in [*QUESTIONS, LONG]}
    finally:
        backend.close()


@pytest.fixture(scope="module")
def batched():
    backend = BatchedLlamaCppBackend(require(SMOLLM2), LoadOptions(context_length=2048), slots=3)
    yield backend
    backend.close()


def run_concurrently(fn, args_list):
    results: list = [None] * len(args_list)

    def run(i, args):
        try:
            results[i] = fn(*args)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    return results


def test_one_at_a_time_equals_the_plain_backend(batched, reference):
    for question in [*QUESTIONS, LONG]:
        assert chat(batched, question).text == reference[question]


def test_concurrent_requests_each_get_their_own_greedy_reply(batched, reference):
    questions = [*QUESTIONS, QUESTIONS[0], LONG]  # more requests than slots: some wait
    results = run_concurrently(lambda q: chat(batched, q), [(q,) for q in questions])
    assert [r.text for r in results[:-1]] == [reference[q] for q in questions[:-1]]
    assert results[-1].text == reference[LONG] and "Paris" in reference[LONG]
    for result in results:
        assert result.usage.completion_tokens > 0 and result.finish_reason in ("stop", "length")


def test_a_long_prompt_is_read_in_slices_beside_a_running_reply(batched, reference):
    n = batched.count_prompt_tokens([SYSTEM, Message("user", LONG)], GREEDY)
    assert n > STEP_TOKENS * 2  # it really takes several steps
    results = run_concurrently(lambda q: chat(batched, q), [(RUNNING,), (LONG,)])
    assert results[0].finish_reason in ("stop", "length") and results[0].usage.completion_tokens > 0
    assert results[1].text == reference[LONG] and "Paris" in reference[LONG]
    assert results[1].usage.prompt_tokens == n


def test_stops_limits_and_usage(batched):
    stopped = chat(batched, QUESTIONS[0], GREEDY.replace(stop=("ital o",)))
    assert stopped.text == "The cap" and stopped.finish_reason == "stop"
    limited = chat(batched, "Write a long story.", GREEDY.replace(max_tokens=5))
    assert limited.finish_reason == "length" and limited.usage.completion_tokens == 5
    full = chat(batched, QUESTIONS[0])
    assert full.usage.completion_tokens == 7 and full.usage.prompt_tokens == batched.count_prompt_tokens(
        [SYSTEM, Message("user", QUESTIONS[0])], GREEDY)


def test_json_grammars_constrain_the_output(batched):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
    results = run_concurrently(lambda fmt: chat(batched, QUESTIONS[0], GREEDY.replace(response_format=fmt,
                                                                                       max_tokens=40)),
                               [(schema,), ("json",)])
    assert isinstance(json.loads(results[0].text)["city"], str)
    if results[1].finish_reason == "stop":
        json.loads(results[1].text)
    assert results[1].text.lstrip().startswith("{")


def test_a_prompt_too_long_fails_alone(batched, reference):
    huge = "word " * 2100  # the per-slot context is 2048

    def ask(question):
        return chat(batched, question)

    results = run_concurrently(ask, [(huge,), (QUESTIONS[0],)])
    assert isinstance(results[0], ContextOverflow)
    assert results[1].text == reference[QUESTIONS[0]]


@pytest.mark.parametrize("backend", ["plain", "batched"])
def test_an_empty_completion_prompt_is_refused_and_the_next_reply_is_its_own(batched, reference, backend):
    # Without a prompt token there is nothing to continue: sampling would read the logits the
    # last request left, and go on with the end of its reply.
    engine = batched if backend == "batched" else LlamaCppBackend(require(SMOLLM2), LoadOptions(context_length=2048))
    try:
        assert collect(engine.complete("The capital of France is", GREEDY.replace(max_tokens=4))).text
        with pytest.raises(UsageError, match="empty") as err:
            collect(engine.complete("", GREEDY))
        assert err.value.param == "prompt" and err.value.http_status == 400
        assert chat(engine, QUESTIONS[0]).text == reference[QUESTIONS[0]]
    finally:
        if engine is not batched:
            engine.close()


def test_closing_a_stream_stops_it_and_frees_the_slot(batched, reference):
    stream = batched.chat([SYSTEM, Message("user", "Count from 1 to 1000.")], GREEDY.replace(max_tokens=2000))
    for _ in range(5):
        next(stream)
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 1.0
    assert len(batched._free) == batched.slots and not batched._running
    assert chat(batched, QUESTIONS[0]).text == reference[QUESTIONS[0]]


def test_cancel_before_admission_and_a_failing_step_do_not_hang(batched, reference):
    stream = batched.chat([SYSTEM, Message("user", "hi")], GREEDY)
    stream.cancel()
    ended = run_concurrently(lambda: list(stream), [()])[0]  # ends (bounded), whatever it had time to say
    assert isinstance(ended, list)
    original = batched._emit

    def broken(slot, token):
        raise RuntimeError("boom")

    batched._emit = broken
    try:
        with pytest.raises(RuntimeError, match="boom"):
            chat(batched, QUESTIONS[0])
    finally:
        batched._emit = original
    assert chat(batched, QUESTIONS[0]).text == reference[QUESTIONS[0]]


def test_unloading_ends_running_requests_with_an_error():
    backend = BatchedLlamaCppBackend(require(SMOLLM2), LoadOptions(context_length=512), slots=2)
    stream = backend.chat([SYSTEM, Message("user", "Count from 1 to 1000.")], GREEDY.replace(max_tokens=400))
    next(stream)
    closer = threading.Thread(target=backend.close)
    closer.start()
    with pytest.raises(BackendUnavailable):
        for _ in stream:
            pass
    closer.join(10)
    assert not closer.is_alive()


def test_server_with_parallel_slots_runs_requests_together(reference):
    app = create_app(ServerConfig(parallel=2, keep_alive=None), StaticSource({"smollm2": require(SMOLLM2)}))
    with RunningServer(app) as server:
        client = openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0, timeout=60)
        seen_running: list[int] = []

        def ask(question):
            stream = client.chat.completions.create(
                model="smollm2", temperature=0, max_tokens=24, stream=True,
                messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}])
            text = ""
            for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    loaded = server.registry.loaded()
                    seen_running.append(loaded[0].scheduler.running if loaded else 0)
            return text

        results = run_concurrently(ask, [(q,) for q in QUESTIONS])
        assert results == [reference[q] for q in QUESTIONS]
        assert max(seen_running) == 2  # two at once, never more
        ps = httpx.get(server.base + "/api/ps").json()["models"][0]
        assert ps["parallel"] == 2 and ps["context"] == server.registry.loaded()[0].info.context_length
