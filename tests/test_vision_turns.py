"""Images across turns on the llama.cpp backends (tiny random-weight Qwen3-VL, tests/fixtures/
tiny_vision.py): the same image in the same place is not encoded again on the next turn, and
the reply equals a fresh context's reading the whole prompt.

Random weights: replies are compared token for token between two paths of the same engine (a
warm cache against a fresh load), never read for words. Encoder calls are counted at the one
seam that encodes an image, `Projector.evaluate`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from qwencli.chat import GenerationOptions, Message, collect

pytestmark = pytest.mark.slow

GREEDY = GenerationOptions(temperature=0, max_tokens=8)


def png(color: str, size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def image(color: str, size: tuple[int, int] = (64, 48)):
    from qwencli.images import image_from_bytes

    return image_from_bytes(png(color, size), color)


@pytest.fixture(scope="module")
def vision() -> tuple[Path, Path]:
    from tests.models import QWEN_TOKENIZER, build_vision, require

    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    return build_vision("gguf", tokenizer), build_vision("mmproj", tokenizer)


def load(vision):
    from qwencli.backends.base import LoadOptions
    from qwencli.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(vision[0], LoadOptions(context_length=2048), projector=vision[1])


@pytest.fixture(scope="module")
def backend(vision):
    b = load(vision)
    yield b
    b.close()


@pytest.fixture
def encodes(backend, monkeypatch) -> list[int]:
    """The image tokens of every image the backend encodes, in order."""
    calls: list[int] = []
    evaluate = backend._projector.evaluate

    def counted(lctx, part, *args, **kwargs):
        calls.append(part.n_tokens)
        return evaluate(lctx, part, *args, **kwargs)

    monkeypatch.setattr(backend._projector, "evaluate", counted)
    return calls


def fresh(vision, messages) -> str:
    """The reply of a new load of the same files: nothing cached, the whole prompt read."""
    other = load(vision)
    try:
        reply = collect(other.chat(messages, GREEDY))
        assert reply.usage.cached_tokens == 0
        return reply.text
    finally:
        other.close()


def test_a_second_turn_with_the_first_turns_image_encodes_nothing(backend, vision, encodes):
    red = image("red", (256, 256))  # 64 image tokens on 8 positions (M-RoPE)
    first = [Message("user", "What is this?", images=(red,))]
    one = collect(backend.chat(first, GREEDY))
    assert encodes == [64] and one.usage.image_tokens == (64,)
    second = [*first, Message("assistant", one.text), Message("user", "And what colour is it?")]
    two = collect(backend.chat(second, GREEDY))
    assert encodes == [64]  # the image is still in the KV cache: not encoded again
    assert two.usage.image_tokens == (64,)
    # What was reused: the first turn's prompt, image included, and the reply up to its last token.
    assert two.usage.cached_tokens >= one.usage.prompt_tokens
    assert two.usage.prompt_tokens > two.usage.cached_tokens
    assert two.text == fresh(vision, second)
    assert two.text != one.text  # the second question moved the reply (not an echo of a cache)


def test_only_the_image_that_changed_is_encoded_again(backend, vision, encodes):
    red, blue, green = image("red"), image("blue"), image("green")
    two_images = [Message("user", "Compare them.", images=(red, blue))]
    collect(backend.chat(two_images, GREEDY))
    assert encodes == [12, 12]
    swapped = [Message("user", "Compare them.", images=(red, green))]
    reply = collect(backend.chat(swapped, GREEDY))
    assert encodes == [12, 12, 12]  # red was kept; green replaced blue
    # The head, red and the text between the images were kept; green and after were read.
    assert 12 < reply.usage.cached_tokens < reply.usage.prompt_tokens - 12
    assert reply.text == fresh(vision, swapped)
    # The same image in another place is another prompt from there on: encoded again.
    moved = [Message("user", "Compare them.", images=(green, red))]
    assert collect(backend.chat(moved, GREEDY)).usage.cached_tokens < 5
    assert encodes == [12, 12, 12, 12, 12]


def test_a_cancel_between_images_stops_before_the_next_is_encoded(backend, monkeypatch):
    stream = backend.chat([Message("user", "Compare them.", images=(image("red"), image("navy")))], GREEDY)
    calls: list[int] = []
    evaluate = backend._projector.evaluate

    def cancelling(lctx, part, *args, **kwargs):
        calls.append(part.n_tokens)
        stream.cancel()  # as a client that goes away while the first image is read
        return evaluate(lctx, part, *args, **kwargs)

    monkeypatch.setattr(backend._projector, "evaluate", cancelling)
    chunks = list(stream)
    assert calls == [12]
    assert chunks[-1].finish_reason == "cancelled" and chunks[-1].usage.completion_tokens == 0
    # The engine serves on, and what it kept (up to the first image) is reused.
    monkeypatch.undo()
    reply = collect(backend.chat([Message("user", "Compare them.", images=(image("red"), image("navy")))], GREEDY))
    assert reply.usage.completion_tokens == 8 and reply.usage.cached_tokens > 12


def test_the_same_prompt_again_keeps_its_image_and_a_text_prompt_only_its_head(vision):
    backend = load(vision)
    try:
        messages = [Message("user", "What is this?", images=(image("red", (448, 336)),))]
        first = collect(backend.chat(messages, GREEDY))
        again = collect(backend.chat(messages, GREEDY))
        # The whole prompt but its last token was kept, the image inside it.
        assert again.usage.cached_tokens == first.usage.prompt_tokens - 1
        assert again.text == first.text
        # A text-only prompt after it shares only the text before the image.
        text = collect(backend.chat([Message("user", "What is this?")], GREEDY))
        assert text.usage.cached_tokens < 5 and text.text != first.text
    finally:
        backend.close()


# -- images under serve --parallel (the batched engine) ------------------------------------------


@pytest.fixture(scope="module")
def batched(vision):
    from qwencli.backends.base import LoadOptions
    from qwencli.backends.llamacpp_batched import BatchedLlamaCppBackend

    b = BatchedLlamaCppBackend(vision[0], LoadOptions(context_length=2048), slots=2, projector=vision[1])
    yield b
    b.close()


def questions() -> dict[str, list[Message]]:
    """Two requests that differ only in their image (of different sizes: 64 and 12 image tokens)."""
    return {
        "red": [Message("user", "What is this?", images=(image("red", (256, 256)),))],
        "blue": [Message("user", "What is this?", images=(image("blue"),))],
    }


def test_two_requests_with_different_images_run_together_and_answer_as_alone(backend, batched):
    alone = {name: collect(backend.chat(messages, GREEDY)) for name, messages in questions().items()}
    assert alone["red"].text != alone["blue"].text
    running: list[int] = []
    step = batched._stepper.step

    def counted() -> bool:
        more = step()
        running.append(len(batched._running))
        return more

    batched._stepper.step = counted
    try:
        # Both submitted from the engine thread: no step runs between them, so they share the steps.
        def submitted(stream):
            stream._start()  # a batched stream goes to the engine at its first next(): now, here
            return stream

        streams = batched._engine.call(lambda: [submitted(batched.chat(m, GREEDY)) for m in questions().values()])
        together = dict(zip(questions(), (collect(s) for s in streams)))
    finally:
        batched._stepper.step = step
    assert max(running) == 2  # both slots were busy in one step
    for name in alone:
        assert together[name].text == alone[name].text
        assert together[name].usage.prompt_tokens == alone[name].usage.prompt_tokens
        assert together[name].usage.image_tokens == alone[name].usage.image_tokens


def test_a_slot_keeps_its_image_for_the_next_turn(batched, vision, monkeypatch):
    encodes: list[int] = []
    evaluate = batched._projector.evaluate

    def counted(lctx, part, *args, **kwargs):
        encodes.append(part.n_tokens)
        return evaluate(lctx, part, *args, **kwargs)

    monkeypatch.setattr(batched._projector, "evaluate", counted)
    first = [Message("user", "Describe it.", images=(image("green", (256, 256)),))]  # in no slot yet
    one = collect(batched.chat(first, GREEDY))
    second = [*first, Message("assistant", one.text), Message("user", "And what colour is it?")]
    two = collect(batched.chat(second, GREEDY))
    assert encodes == [64]  # the second turn went to the slot holding the image, and read on after it
    assert two.usage.cached_tokens >= one.usage.prompt_tokens
    assert two.text == fresh(vision, second)


def test_qwen_serve_parallel_answers_concurrent_image_requests_as_the_plain_engine(vision, backend):
    import base64
    import threading

    import openai

    from tests.processes import start_server, stop_server

    alone = {name: collect(backend.chat(messages, GREEDY)).text for name, messages in questions().items()}
    proc, url = start_server(str(vision[0]), "--ctx", "2048", "--parallel", "2")
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        model = client.models.list().data[0].id
        sizes = {"red": (256, 256), "blue": (64, 48)}
        start = threading.Barrier(2)
        answers: dict[str, str] = {}

        def user(name: str) -> dict:
            data = "data:image/png;base64," + base64.b64encode(png(name, sizes[name])).decode()
            content = [{"type": "image_url", "image_url": {"url": data}}, {"type": "text", "text": "What is this?"}]
            return {"role": "user", "content": content}

        def ask(name: str) -> None:
            start.wait()
            out = client.chat.completions.create(model=model, messages=[user(name)], temperature=0, max_tokens=8)
            answers[name] = out.choices[0].message.content or ""

        threads = [threading.Thread(target=ask, args=(name,)) for name in sizes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == alone
        # A follow-up turn goes to the slot holding its image: the usage says the image was kept.
        follow_up = [user("red"), {"role": "assistant", "content": answers["red"]},
                     {"role": "user", "content": "And what colour is it?"}]
        out = client.chat.completions.create(model=model, messages=follow_up, temperature=0, max_tokens=8)
        assert out.usage.prompt_tokens_details.cached_tokens > 64
    finally:
        stop_server(proc)


# -- a hybrid model (recurrent memory) with images ------------------------------------------------


@pytest.fixture(scope="module")
def hybrid_vision() -> tuple[Path, Path]:
    from tests.models import QWEN_TOKENIZER, build_vision35, require

    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    return build_vision35("gguf", tokenizer), build_vision35("mmproj", tokenizer)


HYBRID = GenerationOptions(temperature=0, max_tokens=8, think=False)


def load_hybrid(files, slots: int = 0):
    from qwencli.backends.base import LoadOptions

    if slots:
        from qwencli.backends.llamacpp_batched import BatchedLlamaCppBackend

        return BatchedLlamaCppBackend(files[0], LoadOptions(context_length=2048), slots=slots, projector=files[1])
    from qwencli.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(files[0], LoadOptions(context_length=2048), projector=files[1])


def count_encodes(backend, monkeypatch) -> list[int]:
    calls: list[int] = []
    evaluate = backend._projector.evaluate

    def counted(lctx, part, *args, **kwargs):
        calls.append(part.n_tokens)
        return evaluate(lctx, part, *args, **kwargs)

    monkeypatch.setattr(backend._projector, "evaluate", counted)
    return calls


def fresh_hybrid(files, messages) -> str:
    other = load_hybrid(files)
    try:
        return collect(other.chat(messages, HYBRID)).text
    finally:
        other.close()


@pytest.mark.parametrize("slots", [0, 2], ids=["plain", "parallel"])
def test_a_hybrid_model_resumes_after_the_image_from_a_checkpoint(hybrid_vision, monkeypatch, slots):
    backend = load_hybrid(hybrid_vision, slots)
    try:
        encodes = count_encodes(backend, monkeypatch)
        first = [Message("user", "What is this?", images=(image("red", (256, 256)),))]
        one = collect(backend.chat(first, HYBRID))
        second = [*first, Message("assistant", one.text), Message("user", "And again?")]
        two = collect(backend.chat(second, HYBRID))
        # The recurrent state was put back where the first turn's history ended, past its image.
        assert encodes == [64]
        assert two.usage.cached_tokens > 64
        assert two.text == fresh_hybrid(hybrid_vision, second)
    finally:
        backend.close()


def test_a_hybrid_model_whose_state_cannot_be_restored_reads_the_image_again(hybrid_vision, monkeypatch):
    """A prompt with another image in between leaves the attention cells on the other branch: the
    first turn's checkpoint would pair its state with the wrong cells, so it is not used."""
    backend = load_hybrid(hybrid_vision)
    try:
        encodes = count_encodes(backend, monkeypatch)
        first = [Message("user", "What is this?", images=(image("red", (256, 256)),))]
        one = collect(backend.chat(first, HYBRID))
        collect(backend.chat([Message("user", "What is this?", images=(image("blue"),))], HYBRID))
        second = [*first, Message("assistant", one.text), Message("user", "And again?")]
        two = collect(backend.chat(second, HYBRID))
        assert encodes == [64, 12, 64]
        assert two.usage.cached_tokens == 0
        assert two.text == fresh_hybrid(hybrid_vision, second)
    finally:
        backend.close()
