"""Images end to end on the tiny random-weight Qwen3-VL (tests/fixtures/tiny_vision.py): the
llama.cpp backend through mtmd, `qwen run --image`, and `qwen serve` with the openai client.

Random weights: replies are compared token for token (two images differ, one image twice does
not), never read for words. Every bad input is followed by a good request."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import zlib
from pathlib import Path

import pytest

from qwencli.chat import GenerationOptions, Message, collect
from tests.models import SMOLLM2, build_tiny, build_vision, require
from tests.processes import run_qwen, start_server, stop_server

pytestmark = pytest.mark.slow

GREEDY = GenerationOptions(temperature=0, max_tokens=8)


def png(color: str, size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming 10 gigapixels, with almost no data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def vision(request) -> tuple[Path, Path]:
    from tests.models import QWEN_TOKENIZER

    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    return build_vision("gguf", tokenizer), build_vision("mmproj", tokenizer)


@pytest.fixture(scope="module")
def backend(vision):
    from qwencli.backends.llamacpp import LlamaCppBackend
    from qwencli.backends.base import LoadOptions

    model, projector = vision
    b = LlamaCppBackend(model, LoadOptions(context_length=2048), projector=projector)
    yield b
    b.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    out = {}
    for name in ("red", "blue"):
        out[name] = folder / f"{name}.png"
        out[name].write_bytes(png(name))
    return out


def ask(backend, image_bytes: bytes | None, text: str = "What is this?"):
    from qwencli.images import image_from_bytes

    images = (image_from_bytes(image_bytes, "test"),) if image_bytes is not None else ()
    return collect(backend.chat([Message("user", text, images=images)], GREEDY))


# -- the backend -------------------------------------------------------------------------------


def test_two_images_differ_and_one_image_twice_is_identical(backend):
    red, blue = ask(backend, png("red")), ask(backend, png("blue"))
    assert red.usage.completion_tokens == blue.usage.completion_tokens == 8
    assert red.text != blue.text
    assert ask(backend, png("red")).text == red.text
    # And the image is read at all: without it, the reply is a third one.
    assert ask(backend, None).text not in (red.text, blue.text)


def test_text_before_the_image_is_reused_and_the_reply_is_unchanged(backend):
    first = ask(backend, png("red"))
    other = ask(backend, png("blue"))
    again = ask(backend, png("red"))
    assert again.text == first.text != other.text
    # The system-free prompt starts "<|im_start|>user\n" before the image: those tokens stay cached.
    assert 0 < again.usage.cached_tokens < 5


def test_prompt_tokens_count_the_image_tokens_mtmd_reports(backend):
    from qwencli.backends.llama_vision import ImagePart
    from qwencli.images import QWEN_IMAGE_PLACEHOLDER
    from qwencli.images import image_from_bytes

    image = image_from_bytes(png("red"), "test")
    messages = [Message("user", "What is this?", images=(image,))]
    prompt = backend.render(messages, GREEDY)
    projector = backend._projector

    def mtmd_image_tokens() -> int:
        chunks = projector.tokenize(projector.to_marked(prompt, 1), [image])
        try:
            return sum(p.n_tokens for p in chunks.parts if isinstance(p, ImagePart))
        finally:
            chunks.close()

    n_image = backend._engine.call(mtmd_image_tokens)
    assert n_image == 4 * 3  # 64×48 → 128×96 pixels → 8×6 patches → 4×3 after the 2×2 merge
    text_only = len(backend._engine.call(backend._tokenize, prompt.replace(QWEN_IMAGE_PLACEHOLDER, "")))
    expected = text_only + 2 + n_image  # mtmd writes <|vision_start|> and <|vision_end|> itself
    assert backend.count_prompt_tokens(messages, GREEDY) == expected
    assert collect(backend.chat(messages, GREEDY)).usage.prompt_tokens == expected


def test_rendered_prompt_equals_transformers_apply_chat_template(backend):
    import transformers

    from qwencli.images import image_from_bytes
    from tests.models import QWEN_TOKENIZER

    hf = build_vision("hf", QWEN_TOKENIZER)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf)
    two = (image_from_bytes(png("red"), "a"), image_from_bytes(png("blue"), "b"))
    ours = [Message("system", "Be brief."), Message("user", "Compare them.", images=two),
            Message("assistant", "Red and blue."), Message("user", "And now?")]
    theirs = [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                            {"type": "text", "text": "Compare them."}]},
              {"role": "assistant", "content": "Red and blue."},
              {"role": "user", "content": "And now?"}]
    expected = tokenizer.apply_chat_template(theirs, tokenize=False, add_generation_prompt=True)
    assert backend.render(ours, GenerationOptions()) == expected
    assert expected.count("<|vision_start|><|image_pad|><|vision_end|>") == 2


def test_an_image_for_a_backend_without_projector_is_refused(vision):
    from qwencli.backends.base import LoadOptions
    from qwencli.backends.llamacpp import LlamaCppBackend
    from qwencli.errors import NoVision

    text_only = LlamaCppBackend(vision[0], LoadOptions(context_length=512))
    try:
        with pytest.raises(NoVision, match="without a vision projector"):
            ask(text_only, png("red"))
        assert ask(text_only, None).usage.completion_tokens == 8  # and it keeps answering
    finally:
        text_only.close()


# -- qwen run --image --------------------------------------------------------------------------


def _run_json(*args, input=None):
    result = run_qwen("run", *args, "-n", "8", "--temperature", "0", "--json", input=input)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def test_one_shot_image_from_a_path_and_from_stdin(vision, images, backend):
    model, _ = vision  # the projector beside it is found
    red = _run_json(model, "--image", images["red"], "What is this?")
    assert red["text"] == ask(backend, png("red")).text  # the same engine, in process
    from_stdin = _run_json(model, "--image", "-", "What is this?", input=images["red"].read_bytes())
    assert from_stdin["text"] == red["text"]
    blue = _run_json(model, "--image", images["blue"], "What is this?")
    assert blue["text"] != red["text"]
    two = _run_json(model, "--image", images["red"], "--image", images["blue"], "What is this?")
    assert two["usage"]["prompt_tokens"] == red["usage"]["prompt_tokens"] + 14  # 12 image tokens + start/end


def _error_line(result) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.decode().splitlines() if line.strip()]
    assert "Traceback" not in result.stderr.decode()
    return lines[0]


def test_bad_images_and_projectors_give_one_clear_line(vision, images, tmp_path):
    model, projector = vision
    not_image = tmp_path / "notes.png"
    not_image.write_text("just text")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png("red", (256, 256))[:300])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png())
    cases = {
        not_image: "not an image",
        truncated: "truncated",
        bomb: "decompression bomb",
        tmp_path / "missing.png": "no such image file",
    }
    for path, words in cases.items():
        assert words in _error_line(run_qwen("run", model, "--image", path, "hi", "-n", "1"))
    # An image for a model with no projector (none beside SmolLM2).
    result = run_qwen("run", require(SMOLLM2), "--image", images["red"], "hi", "-n", "1")
    assert "without a vision projector" in _error_line(result) and "--mmproj" in result.stderr.decode()
    # A projector for another model (SmolLM2's embeddings are 576 wide, the projector's 64).
    line = _error_line(run_qwen("run", require(SMOLLM2), "--mmproj", projector, "hi", "-n", "1"))
    assert "does not match" in line
    # A model file given as the projector.
    line = _error_line(run_qwen("run", model, "--mmproj", model, "hi", "-n", "1"))
    assert "not a vision projector" in line
    # And the good request still works.
    assert _run_json(model, "--image", images["red"], "hi")["usage"]["completion_tokens"] == 8


# -- qwen serve --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(vision):
    from tests.models import QWEN_TOKENIZER

    text_model = build_tiny("gguf", "qwen2", require(QWEN_TOKENIZER / "tokenizer.json").parent)
    proc, url = start_server(str(vision[0]), str(text_model), "--ctx", "2048")
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    ids = [m.id for m in client.models.list().data]
    vision_id = next(i for i in ids if "qwen3vl" in i)
    text_id = next(i for i in ids if "qwen2" in i)
    yield client, vision_id, text_id
    stop_server(proc)


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def image_message(url: str, text: str = "What is this?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


def test_openai_client_sends_base64_images_to_qwen_serve(served, backend):
    client, model, _ = served

    def reply(data: bytes) -> str:
        out = client.chat.completions.create(model=model, messages=image_message(data_url(data)),
                                             temperature=0, max_tokens=8)
        return out.choices[0].message.content or ""

    red = reply(png("red"))
    assert red == ask(backend, png("red")).text
    assert reply(png("blue")) != red
    assert reply(png("red")) == red


def test_bad_images_get_400_and_the_model_keeps_serving(served):
    import openai

    client, model, text_model = served
    good = image_message(data_url(png("red")))
    expected = client.chat.completions.create(model=model, messages=good, temperature=0, max_tokens=8)
    bad = {
        "not an image": data_url(b"just text"),
        "truncated": data_url(png("red", (256, 256))[:300]),
        "decompression bomb": data_url(bomb_png()),
        "base64": "data:image/png;base64,@@@not-base64@@@",
        "--allow-image-urls": "https://example.com/cat.png",
    }
    for words, url in bad.items():
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=model, messages=image_message(url), max_tokens=8)
        error = caught.value.body
        assert words in error["message"], error
        assert error["type"] == "invalid_request_error"
        again = client.chat.completions.create(model=model, messages=good, temperature=0, max_tokens=8)
        assert again.choices[0].message.content == expected.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=text_model, messages=good, max_tokens=8)
    assert "vision projector" in caught.value.body["message"]
    fine = client.chat.completions.create(model=text_model, messages=[{"role": "user", "content": "hi"}],
                                          temperature=0, max_tokens=8)
    assert fine.choices[0].message.content == "Hello world"


# -- the REPL ----------------------------------------------------------------------------------


def test_repl_image_attaches_to_the_next_message(vision, images, tmp_path):
    import re

    pexpect = pytest.importorskip("pexpect")
    from tests.processes import spawn_repl

    ansi = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
    child = spawn_repl(vision[0], "--temperature", "0", "-n", "8")

    def say(line: str) -> str:
        child.sendline(line)
        child.expect(">>> ")
        return ansi.sub("", child.before)

    try:
        assert "Attached red.png (64×48)" in say(f"/image {images['red']}")
        assert "red.png" in say("/show")
        red = say("What is this?")
        say("/clear")
        not_image = tmp_path / "notes.png"
        not_image.write_text("just text")
        assert "not an image" in say(f"/image {not_image}")
        say(f"/image {images['red']}")
        assert say("What is this?") == red  # the same image, the same greedy reply
        say("/clear")
        say(f"/image {images['blue']}")
        assert say("What is this?").replace("blue", "red") != red
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)


# -- the image-token budget, and images too large for the context --------------------------------


def test_the_image_token_budget_is_an_option_and_verbose_says_what_an_image_cost(vision, tmp_path):
    model, _ = vision
    big = tmp_path / "big.png"
    big.write_bytes(png("red", (448, 336)))
    default = run_qwen("run", model, "--image", big, "What is this?", "-n", "4", "--temperature", "0", "--verbose")
    assert default.returncode == 0, default.stderr.decode()
    capped = run_qwen("run", model, "--image", big, "What is this?", "-n", "4", "--temperature", "0", "--verbose",
                      "--image-max-tokens", "16")
    assert capped.returncode == 0, capped.stderr.decode()
    import re

    def image_cost(result) -> int:
        found = re.search(r"1 image (\d+) tokens", result.stderr.decode())
        assert found, result.stderr.decode()
        return int(found.group(1))

    assert image_cost(default) > 100  # Qwen-VL's own budget: a 448×336 image is ~150 tokens
    assert image_cost(capped) <= 16
    raised = run_qwen("run", model, "--image", big, "What is this?", "-n", "4", "--temperature", "0", "--verbose",
                      "--image-min-tokens", "300")
    assert image_cost(raised) >= 300  # a small image is scaled up to the floor
    as_json = _run_json(model, "--image", big, "What is this?", "--image-max-tokens", "16")
    plain = _run_json(model, "What is this?")
    # The capped image's tokens, plus its vision start and end, are all the prompt grew by.
    assert as_json["usage"]["prompt_tokens"] - plain["usage"]["prompt_tokens"] == image_cost(capped) + 2
    bad = run_qwen("run", model, "--image-min-tokens", "64", "--image-max-tokens", "16", "hi")
    assert "--image-min-tokens 64 is more than --image-max-tokens 16" in _error_line(bad)


def test_images_too_large_for_the_context_are_one_clear_line(vision, tmp_path):
    model, _ = vision
    huge = tmp_path / "huge.png"
    huge.write_bytes(png("red", (1024, 1024)))
    result = run_qwen("run", model, "--ctx", "512", "--image", huge, "What is this?", "-n", "4")
    line = _error_line(result)
    assert re.search(r"the prompt is \d+ tokens, \d+ of them for 1 image\(s\), but the context holds 512", line), line
    assert "--image-max-tokens" in result.stderr.decode()
    # The same image within budget fits.
    ok = run_qwen("run", model, "--ctx", "512", "--image", huge, "--image-max-tokens", "256", "hi", "-n", "4")
    assert ok.returncode == 0, ok.stderr.decode()


def test_a_typed_image_path_in_the_repl_is_attached_and_save_load_keep_it(vision, images, tmp_path):
    import re

    pexpect = pytest.importorskip("pexpect")
    from tests.processes import spawn_repl

    ansi = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
    child = spawn_repl(vision[0], "--temperature", "0", "-n", "8", "--verbose")

    def say(line: str) -> str:
        child.sendline(line)
        child.expect(">>> ")
        return ansi.sub("", child.before)

    try:
        say(f"/image {images['red']}")
        attached = say("What is this?")
        say("/clear")
        typed = say(f"What is this? {images['red']}")
        assert f"Added image {images['red']} (64×48)." in typed
        # The same message and image either way: the same greedy reply, and verbose tells its cost.
        def reply(out: str) -> str:  # the line before the stats line (--verbose also shows mtmd's log)
            lines = [line for line in out.splitlines() if line.strip()]
            stats = next(i for i, line in enumerate(lines) if line.startswith("first token"))
            return lines[stats - 1]

        assert reply(typed) == reply(attached) and "image" not in reply(typed) and len(reply(typed)) > 3
        assert re.search(r"1 image \d+ tokens", typed), typed
        saved = tmp_path / "chat.json"
        say(f"/save {saved}")
        assert len(json.loads(saved.read_text())["messages"][0]["images"]) == 1
        assert "Loaded 1 exchanges" in say(f"/load {saved}") and "with 1 image(s)" in child.before
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)
