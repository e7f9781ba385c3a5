"""Images through Ollama's and Anthropic's APIs on a real `qwen serve` app (uvicorn on 127.0.0.1,
real llama.cpp with the tiny Qwen3-VL and its projector), called with the official `ollama` and
`anthropic` clients: Ollama's `images` on /api/chat and /api/generate, Anthropic's base64 `image`
blocks on /v1/messages. Random weights: each API's reply is compared with the OpenAI endpoint's
for the same image (one engine, two doors), never read for words. Every bad image gets a 400 in
that API's own error shape, and the next good request still gets the same answer."""

from __future__ import annotations

import base64
import io

import httpx
import pytest

from qwencli.backends.base import LoadOptions
from qwencli.resolved import ResolvedModel
from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.static_source import StaticSource
from tests.models import QWEN_TOKENIZER, build_tiny, build_vision, require
from tests.serving import RunningServer, wait_until

anthropic = pytest.importorskip("anthropic")
ollama = pytest.importorskip("ollama")
openai = pytest.importorskip("openai")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOKENS = 8
QUESTION = "What is this?"


def png(color: str, size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bomb_png() -> bytes:
    from tests.test_vision_e2e import bomb_png as bomb

    return bomb()


@pytest.fixture(scope="module")
def server():
    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    model, projector = build_vision("gguf", tokenizer), build_vision("mmproj", tokenizer)
    source = StaticSource({
        "tiny-vl": ResolvedModel(name="tiny-vl", format="gguf", path=model, projector=projector),
        "tiny-text": build_tiny("gguf", "qwen2", tokenizer),
    })
    config = ServerConfig(startup_models=("tiny-vl",), max_queue=8, load=LoadOptions(context_length=2048))
    app = create_app(config, source)
    with RunningServer(app) as running:
        assert wait_until(lambda: httpx.get(running.base + "/health").status_code == 200, timeout=120)
        yield running


@pytest.fixture(scope="module")
def expected(server) -> dict[str, str]:
    """The OpenAI endpoint's greedy reply for each image: what every other door must match."""
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=120)

    def reply(data: bytes) -> str:
        content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(data)}},
                   {"type": "text", "text": QUESTION}]
        out = client.chat.completions.create(model="tiny-vl", messages=[{"role": "user", "content": content}],
                                             temperature=0, max_tokens=TOKENS)
        return out.choices[0].message.content or ""

    found = {color: reply(png(color)) for color in ("red", "blue")}
    assert found["red"] != found["blue"]  # the image reaches the model
    return found


@pytest.fixture
def ollama_client(server):
    return ollama.Client(host=server.base, timeout=120)


@pytest.fixture
def anthropic_client(server):
    return anthropic.Anthropic(base_url=server.base, api_key="unused", max_retries=0, timeout=120)


GREEDY = {"temperature": 0, "num_predict": TOKENS}


def test_ollama_images_on_chat_and_generate_are_the_openai_answer(ollama_client, expected):
    for color in ("red", "blue"):
        # The client takes raw bytes and sends them base64, as `ollama run` does with a file.
        chat = ollama_client.chat(model="tiny-vl", messages=[{"role": "user", "content": QUESTION,
                                                               "images": [png(color)]}], options=GREEDY)
        assert chat.message.content == expected[color]
        generated = ollama_client.generate(model="tiny-vl", prompt=QUESTION, images=[b64(png(color))],
                                           options=GREEDY)
        assert generated.response == expected[color]
    streamed = "".join(part.message.content for part in ollama_client.chat(
        model="tiny-vl", messages=[{"role": "user", "content": QUESTION, "images": [png("red")]}],
        options=GREEDY, stream=True))
    assert streamed == expected["red"]
    # An image and no words is a question too (not Ollama's "load the model" empty request).
    alone = ollama_client.chat(model="tiny-vl", messages=[{"role": "user", "content": "", "images": [png("red")]}],
                               options=GREEDY)
    assert alone.eval_count == TOKENS and alone.prompt_eval_count > 12


def test_ollama_show_says_vision_for_the_model_with_a_projector(ollama_client):
    assert "vision" in ollama_client.show("tiny-vl").capabilities
    assert "vision" not in ollama_client.show("tiny-text").capabilities


def test_ollama_bad_images_are_400_in_ollamas_shape_and_the_model_keeps_serving(server, ollama_client, expected):
    bad = {
        "not an image": b64(b"just text"),
        "truncated": b64(png("red", (256, 256))[:300]),
        "decompression bomb": b64(bomb_png()),
        "does not decode": "@@@not-base64@@@",
    }
    for words, data in bad.items():
        body = {"model": "tiny-vl", "stream": False,
                "messages": [{"role": "user", "content": QUESTION, "images": [data]}]}
        raw = httpx.post(server.base + "/api/chat", json=body, timeout=60)
        assert raw.status_code == 400 and list(raw.json()) == ["error"], raw.text  # Ollama's {"error": "…"}
        assert words in raw.json()["error"] and "messages[0].images[0]" in raw.json()["error"]
        if words != "does not decode":  # the client itself refuses a string that is not base64
            with pytest.raises(ollama.ResponseError) as caught:
                ollama_client.generate(model="tiny-vl", prompt=QUESTION, images=[base64.b64decode(data)],
                                       options=GREEDY)
            assert caught.value.status_code == 400 and words in caught.value.error
        good = ollama_client.chat(model="tiny-vl", messages=[{"role": "user", "content": QUESTION,
                                                               "images": [png("red")]}], options=GREEDY)
        assert good.message.content == expected["red"]
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.chat(model="tiny-text", messages=[{"role": "user", "content": QUESTION,
                                                          "images": [png("red")]}], options=GREEDY)
    assert caught.value.status_code == 400 and "vision projector" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.chat(model="tiny-vl", messages=[{"role": "assistant", "content": "x", "images": [png("red")]},
                                                      {"role": "user", "content": QUESTION}], options=GREEDY)
    assert caught.value.status_code == 400 and "only user messages carry images" in caught.value.error


def image_block(data: bytes | str, media_type: str = "image/png") -> dict:
    payload = data if isinstance(data, str) else b64(data)
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": payload}}


def test_anthropic_image_blocks_are_the_openai_answer(anthropic_client, expected):
    for color in ("red", "blue"):
        reply = anthropic_client.messages.create(
            model="tiny-vl", max_tokens=TOKENS, extra_body={"temperature": 0},
            messages=[{"role": "user", "content": [image_block(png(color)), {"type": "text", "text": QUESTION}]}])
        assert [b.type for b in reply.content] == ["text"]
        assert reply.content[0].text == expected[color]
        assert reply.usage.input_tokens > 12  # the image's tokens are counted
    with anthropic_client.messages.stream(
            model="tiny-vl", max_tokens=TOKENS, extra_body={"temperature": 0},
            messages=[{"role": "user", "content": [image_block(png("red")), {"type": "text", "text": QUESTION}]}],
    ) as stream:
        assert "".join(stream.text_stream) == expected["red"]


def test_anthropic_bad_images_are_400_in_anthropics_shape_and_the_model_keeps_serving(anthropic_client, expected):
    bad = {
        "not an image": image_block(b"just text"),
        "truncated": image_block(png("red", (256, 256))[:300]),
        "decompression bomb": image_block(bomb_png()),
        "does not decode": image_block("@@@not-base64@@@"),
        "media_type": image_block(png("red"), "image/bmp"),
        "--allow-image-urls": {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    }
    good = [{"role": "user", "content": [image_block(png("red")), {"type": "text", "text": QUESTION}]}]
    for words, block in bad.items():
        with pytest.raises(anthropic.BadRequestError) as caught:
            anthropic_client.messages.create(model="tiny-vl", max_tokens=TOKENS, messages=[
                {"role": "user", "content": [block, {"type": "text", "text": QUESTION}]}])
        body = caught.value.body
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        assert words in body["error"]["message"] and "messages[0].content[0].source" in body["error"]["message"]
        again = anthropic_client.messages.create(model="tiny-vl", max_tokens=TOKENS, messages=good,
                                                 extra_body={"temperature": 0})
        assert again.content[0].text == expected["red"]
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.messages.create(model="tiny-text", max_tokens=TOKENS, messages=good)
    assert "vision projector" in caught.value.body["error"]["message"]


def test_images_too_large_for_the_context_are_one_400_and_the_model_keeps_serving(server, expected):
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=120)
    # 2048×2048 is Qwen-VL's 4096-token maximum: over this server's fixed 2048-token context.
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(png("red", (2048, 2048)))}},
               {"type": "text", "text": QUESTION}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny-vl", messages=[{"role": "user", "content": content}],
                                       max_tokens=TOKENS)
    message = caught.value.body["message"]
    assert "of them for 1 image(s), but the context holds 2048" in message and "--image-max-tokens" in message
    good = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(png("red"))}},
        {"type": "text", "text": QUESTION}]}]
    again = client.chat.completions.create(model="tiny-vl", messages=good, temperature=0, max_tokens=TOKENS)
    assert again.choices[0].message.content == expected["red"]
