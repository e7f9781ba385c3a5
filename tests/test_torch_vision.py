"""Images on the torch backend, with the tiny random-weight Qwen3-VL's safetensors folder
(tests/fixtures/tiny_vision.py): the reply against transformers' own `generate`, token counts
against the image size, transformers' processor and llama.cpp's mtmd on the GGUF + mmproj
converted from the same weights, the rendered prompt against `apply_chat_template`, prefix reuse
across an image, `qwen run --image` and `qwen serve` with the openai client.

Random weights: replies are compared token for token, never read for words."""

from __future__ import annotations

import base64
import io
import json
import re
import threading

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from qwencli.backends.base import LoadOptions  # noqa: E402
from qwencli.backends.torch_backend import TorchBackend  # noqa: E402
from qwencli.chat import GenerationOptions, Message, collect  # noqa: E402
from qwencli.errors import ContextOverflow, InvalidImage, NoVision  # noqa: E402
from qwencli.images import QWEN_IMAGE_PLACEHOLDER, image_from_bytes  # noqa: E402
from tests.models import QWEN_TOKENIZER, build_vision, require  # noqa: E402
from tests.processes import run_qwen, start_server, stop_server  # noqa: E402

pytestmark = pytest.mark.slow

GREEDY = GenerationOptions(temperature=0, max_tokens=8)
#: mtmd's own image-token budget for Qwen-VL (clip.cpp: set_limit_image_tokens(8, 4096)); the
#: folder's preprocessor_config.json says 64 to 16384 (256² to 4096² pixels).
MTMD_BUDGET = LoadOptions(device="cpu", image_min_tokens=8, image_max_tokens=4096)


def png(color: str | tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def noise_png(size: tuple[int, int], seed: int = 0) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def folder():
    return build_vision("hf", require(QWEN_TOKENIZER / "tokenizer.json").parent)


@pytest.fixture(scope="module")
def backend(folder):
    b = TorchBackend(folder, LoadOptions(device="cpu", context_length=4096))
    yield b
    b.close()


def ask(backend, *images: bytes, text: str = "What is this?", options=GREEDY):
    attached = tuple(image_from_bytes(data, f"image{i}") for i, data in enumerate(images))
    return collect(backend.chat([Message("user", text, images=attached)], options))


def merged_tokens(width: int, height: int, min_tokens: int, max_tokens: int) -> int:
    """Qwen-VL's image-token count worked out by hand: sides rounded to 32 pixels (patch 16 ×
    merge 2), then scaled into [min, max] tokens of 32×32 pixels, as smart_resize does."""
    import math

    h, w = round(height / 32), round(width / 32)
    if h * w > max_tokens:
        beta = math.sqrt(height * width / (max_tokens * 1024))
        h, w = max(1, math.floor(height / beta / 32)), max(1, math.floor(width / beta / 32))
    elif h * w < min_tokens:
        beta = math.sqrt(min_tokens * 1024 / (height * width))
        h, w = math.ceil(height * beta / 32), math.ceil(width * beta / 32)
    return h * w


# -- replies -----------------------------------------------------------------------------------


def test_the_backend_loads_the_vision_tower(backend):
    info = backend.info
    assert info.vision_tower and info.takes_images and info.architecture == "qwen3_vl"
    assert info.describe()["vision"] == "the model's own vision tower"
    assert backend._vision.budget == (64, 16384)  # the folder's preprocessor_config.json


def test_two_images_differ_and_one_image_twice_is_identical(backend):
    red, blue = ask(backend, png("red")), ask(backend, png("blue"))
    assert red.usage.completion_tokens == blue.usage.completion_tokens == 8
    assert red.text != blue.text
    assert ask(backend, png("red")).text == red.text
    assert ask(backend).text not in (red.text, blue.text)  # and without an image, a third reply


def test_the_reply_equals_transformers_generate_on_the_same_inputs(backend, folder):
    """transformers' own path, built here from its parts: apply_chat_template with an image part,
    the PIL image processor, the pads expanded as Qwen3VLProcessor.replace_image_token does."""
    import transformers
    from PIL import Image

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    model = transformers.AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    data = noise_png((100, 70), seed=3)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    pixels = processor(images=[Image.open(io.BytesIO(data))], return_tensors="pt")
    n = int(pixels["image_grid_thw"][0].prod()) // processor.merge_size**2
    ids = tokenizer([text.replace("<|image_pad|>", "<|image_pad|>" * n)], return_tensors="pt")["input_ids"]
    mm = (ids == model.config.image_token_id).int()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=mm, **pixels,
                             max_new_tokens=8, do_sample=False)
    theirs = tokenizer.decode(out[0, ids.shape[1]:])
    ours = ask(backend, data)
    assert ours.usage.prompt_tokens == ids.shape[1]
    assert ours.text == theirs


def test_the_first_reply_token_moves_with_the_image_by_a_clear_margin(backend):
    """Logits of the first reply token for two images: different argmax, each by a wide margin."""
    logits = {}
    for color in ("red", "blue"):
        prompt = backend.render([Message("user", "What is this?", images=(image_from_bytes(png(color)),))], GREEDY)
        vision = backend._with_images(prompt, [image_from_bytes(png(color))])

        def first_row(vision=vision):
            extra, _ = backend._vision.first_forward(vision, 0, "cpu")
            with torch.inference_mode():
                return backend.model(input_ids=torch.tensor([vision.ids]), logits_to_keep=1, **extra).logits[0, -1]

        logits[color] = backend._engine.call(first_row)
    for row in logits.values():
        top = torch.topk(row, 2).values
        assert top[0] - top[1] > 1.0
    assert int(logits["red"].argmax()) != int(logits["blue"].argmax())


def test_prefix_reuse_keeps_an_image_in_place_and_the_reply_unchanged(backend):
    red, blue = image_from_bytes(png("red")), image_from_bytes(png("blue"))
    first = collect(backend.chat([Message("user", "What is this?", images=(red,))], GREEDY))
    history = [Message("user", "What is this?", images=(red,)), Message("assistant", first.text),
               Message("user", "And now?")]
    warm = collect(backend.chat(history, GREEDY))
    assert warm.usage.cached_tokens > 70  # the image's 70 tokens were not encoded again
    collect(backend.chat([Message("user", "What is this?", images=(blue,))], GREEDY))  # same size, other pixels
    other = collect(backend.chat([Message("user", "What is this?", images=(red,))], GREEDY))
    assert other.text == first.text and other.usage.cached_tokens < 5  # only "<|im_start|>user\n" before it
    backend._cache, backend._cached_ids = None, []  # from nothing: the same reply
    cold = collect(backend.chat(history, GREEDY))
    assert cold.usage.cached_tokens == 0 and cold.text == warm.text


def test_cancelling_and_stop_strings_work_as_for_text(backend):
    data = png("red")
    full = ask(backend, data, options=GREEDY.replace(max_tokens=6))
    cancel = threading.Event()
    chunks = []

    def emit(chunk):
        chunks.append(chunk)
        if len(chunks) == 2:
            cancel.set()

    prompt = backend.render([Message("user", "What is this?", images=(image_from_bytes(data),))], GREEDY)
    vision = backend._with_images(prompt, [image_from_bytes(data)])
    options = backend._options(GREEDY.replace(max_tokens=1000))
    backend._engine.call(backend._generate, vision.ids, options, "text", cancel, emit, vision)
    assert chunks[-1].finish_reason == "cancelled" and 2 <= chunks[-1].usage.completion_tokens <= 4
    assert chunks[-1].usage.prompt_tokens == len(vision.ids)
    stop = full.text[len(full.text) // 2 :][:2]
    stopped = ask(backend, data, options=GREEDY.replace(max_tokens=6, stop=(stop,)))
    assert stopped.finish_reason == "stop" and stopped.text == full.text[: full.text.index(stop)]


# -- token counts ------------------------------------------------------------------------------

#: Sizes that scale up to the floor, round, round half to even, hit neither bound, and shrink to the cap.
SIZES = [(64, 48), (100, 70), (448, 336), (1500, 600), (5000, 4000)]


@pytest.mark.parametrize("size", SIZES)
def test_prompt_tokens_count_the_image_tokens_as_its_size_says(backend, size):
    image = image_from_bytes(png("green", size))
    messages = [Message("user", "What is this?", images=(image,))]
    with_placeholder = len(backend.tokenize(backend.render(messages, GREEDY)))  # start, one pad, end
    expected = with_placeholder - 1 + merged_tokens(*size, 64, 16384)
    assert backend.count_prompt_tokens(messages, GREEDY) == expected
    if expected < backend.info.context_length:
        assert collect(backend.chat(messages, GREEDY.replace(max_tokens=1))).usage.prompt_tokens == expected


@pytest.mark.parametrize("size", SIZES[:4])
def test_image_grids_and_pixel_values_equal_transformers_processor(backend, folder, size):
    import transformers
    from PIL import Image

    data = noise_png(size)
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    theirs = processor(images=[Image.open(io.BytesIO(data))], return_tensors="pt")
    image = image_from_bytes(data)
    prompt = backend.render([Message("user", "hi", images=(image,))], GREEDY)
    vision = backend._with_images(prompt, [image])
    extra, _ = backend._engine.call(backend._vision.first_forward, vision, 0, "cpu")
    assert vision.grids == (tuple(int(x) for x in theirs["image_grid_thw"][0]),)
    assert torch.equal(extra["pixel_values"], theirs["pixel_values"])


def test_pixel_values_of_a_small_case_worked_by_hand(folder):
    """A 32×32 image with a one-token floor is not resized: one merge block of 2×2 patches, each
    row = 3 channels × 2 (the frame twice) × 16 × 16 values, (x/255 − 0.5) / 0.5."""
    import numpy as np
    from PIL import Image

    backend = TorchBackend(folder, LoadOptions(device="cpu", image_min_tokens=1, image_max_tokens=1))
    try:
        data = noise_png((32, 32), seed=7)
        pixels = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64)  # (32, 32, 3)
        normalised = (pixels / 255 - 0.5) / 0.5
        rows = []
        for ph in range(2):
            for pw in range(2):
                patch = normalised[ph * 16 : ph * 16 + 16, pw * 16 : pw * 16 + 16].transpose(2, 0, 1)  # C, 16, 16
                rows.append(np.stack([patch, patch], axis=1).reshape(-1))  # C, T, 16, 16
        image = image_from_bytes(data)
        vision = backend._with_images(backend.render([Message("user", "hi", images=(image,))], GREEDY), [image])
        extra, _ = backend._engine.call(backend._vision.first_forward, vision, 0, "cpu")
        assert vision.grids == ((1, 2, 2),) and vision.image_tokens == (1,)
        assert extra["pixel_values"].shape == (4, 1536)
        assert np.allclose(extra["pixel_values"].numpy(), np.stack(rows), atol=1e-6)
    finally:
        backend.close()


@pytest.fixture(scope="module")
def mtmd_pair(folder):
    """The same weights on llama.cpp (GGUF + mmproj) and on torch with mtmd's budget."""
    from qwencli.backends.llamacpp import LlamaCppBackend

    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    llama = LlamaCppBackend(build_vision("gguf", tokenizer), LoadOptions(context_length=4096),
                            projector=build_vision("mmproj", tokenizer))
    torch_side = TorchBackend(folder, MTMD_BUDGET)
    yield llama, torch_side
    llama.close()
    torch_side.close()


@pytest.mark.parametrize("size", [(64, 48), (100, 200), (1024, 1024), (4000, 3000), (500, 60)])
def test_prompt_tokens_equal_llama_cpp_mtmd_with_the_same_budget(mtmd_pair, size):
    llama, torch_side = mtmd_pair
    messages = [Message("user", "What is this?", images=(image_from_bytes(png("red", size)),))]
    counted = torch_side.count_prompt_tokens(messages, GREEDY)
    assert counted == llama.count_prompt_tokens(messages, GREEDY)
    assert counted - len(torch_side.tokenize(torch_side.render(messages, GREEDY))) + 1 == merged_tokens(*size, 8, 4096)


def test_mtmd_rounds_half_sides_up_where_transformers_rounds_them_to_even(mtmd_pair):
    """448×336: 336 / 32 = 10.5 rows of merged patches. transformers' smart_resize uses Python's
    round() (half to even: 10), clip.cpp's calc_size_preserved_ratio std::round (half away from
    zero: 11); so mtmd gives 11 × 14 = 154 tokens where transformers gives 10 × 14 = 140."""
    llama, torch_side = mtmd_pair
    messages = [Message("user", "What is this?", images=(image_from_bytes(png("red", (448, 336))),))]
    assert llama.count_prompt_tokens(messages, GREEDY) - torch_side.count_prompt_tokens(messages, GREEDY) == 14


def test_the_image_budget_is_held_on_torch(folder):
    capped = TorchBackend(folder, LoadOptions(device="cpu", image_max_tokens=16))
    try:
        reply = ask(capped, png("red", (448, 336)), options=GREEDY.replace(max_tokens=1))
        plain = ask(capped, options=GREEDY.replace(max_tokens=1))
        assert reply.usage.prompt_tokens - plain.usage.prompt_tokens == merged_tokens(448, 336, 16, 16) + 2 == 14
    finally:
        capped.close()


# -- the prompt, and bad input -----------------------------------------------------------------


def test_rendered_prompt_equals_transformers_apply_chat_template(backend, folder):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
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
    assert expected.count(QWEN_IMAGE_PLACEHOLDER) == 2
    # Two images, their pads in order: 70 + 70 tokens in place of two placeholders' one pad each.
    assert backend.count_prompt_tokens(ours, GREEDY) == len(backend.tokenize(expected)) + 2 * 69


def test_bad_images_are_clear_errors_and_the_model_keeps_answering(backend, tiny_qwen2_hf):
    good = ask(backend, png("red"))
    with pytest.raises(InvalidImage, match="aspect ratios up to 200:1"):
        ask(backend, png("red", (2000, 8)))
    with pytest.raises(InvalidImage, match=re.escape("<|image_pad|> outside")):
        ask(backend, png("red"), text="a literal <|image_pad|> here")
    with pytest.raises(ContextOverflow, match=r"of them for 1 image\(s\), but the context holds 4096"):
        ask(backend, png("red", (4000, 4000)))  # 16384 tokens at the folder's own budget
    assert ask(backend, png("red")).text == good.text
    text_only = TorchBackend(tiny_qwen2_hf, LoadOptions(device="cpu"))
    try:
        with pytest.raises(NoVision, match="no vision tower"):
            ask(text_only, png("red"))
        assert not text_only.info.takes_images
        assert collect(text_only.chat([Message("user", "hi")], GREEDY)).text == "Hello world"
    finally:
        text_only.close()


# -- qwen run --image, qwen serve ----------------------------------------------------------------


def _run_json(*args, input=None):
    result = run_qwen("run", *args, "-n", "8", "--temperature", "0", "--json", input=input)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def test_one_shot_image_on_torch_from_a_path_and_from_stdin(folder, backend, tmp_path):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    red.write_bytes(png("red"))
    blue.write_bytes(png("blue"))
    one = _run_json(folder, "--backend", "torch", "--image", red, "What is this?")
    assert one["text"] == ask(backend, png("red")).text
    assert _run_json(folder, "--image", "-", "What is this?", input=red.read_bytes())["text"] == one["text"]
    assert _run_json(folder, "--image", blue, "What is this?")["text"] != one["text"]
    both = _run_json(folder, "--image", red, "--image", blue, "What is this?")
    assert both["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"] + 72  # 70 image tokens + start/end
    verbose = run_qwen("run", folder, "--image", red, "hi", "-n", "1", "--verbose")
    assert "1 image 70 tokens" in verbose.stderr.decode()
    capped = run_qwen("run", folder, "--image", red, "hi", "-n", "1", "--verbose", "--image-min-tokens", "8")
    assert "1 image 12 tokens" in capped.stderr.decode()


def test_one_shot_bad_image_and_too_large_image_are_one_clear_line(folder, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("just text")
    result = run_qwen("run", folder, "--image", not_image, "hi", "-n", "1")
    assert result.returncode != 0 and "not an image" in result.stderr.decode()
    huge = tmp_path / "huge.png"
    huge.write_bytes(png("red", (1024, 1024)))
    result = run_qwen("run", folder, "--ctx", "512", "--image", huge, "hi", "-n", "1")
    err = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" not in err
    # The session counts what the images added: 1024 tokens, their start and end.
    assert "1026 of them for 1 image(s), but the context holds 512" in err and "--image-max-tokens" in err


def test_openai_client_sends_a_base64_image_to_qwen_serve_on_torch(folder, backend):
    import openai

    proc, url = start_server(str(folder), "--backend", "torch")
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        model = client.models.list().data[0].id

        def reply(url: str) -> str:
            content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is this?"}]
            out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                                 temperature=0, max_tokens=8)
            return out.choices[0].message.content or ""

        red = reply("data:image/png;base64," + base64.b64encode(png("red")).decode())
        assert red == ask(backend, png("red")).text
        with pytest.raises(openai.BadRequestError) as caught:
            reply("data:image/png;base64," + base64.b64encode(b"just text").decode())
        assert "not an image" in caught.value.body["message"]
        with pytest.raises(openai.BadRequestError) as caught:
            reply("data:image/png;base64," + base64.b64encode(png("red", (2000, 8))).decode())
        assert "aspect ratios up to 200:1" in caught.value.body["message"]
        assert reply("data:image/png;base64," + base64.b64encode(png("red")).decode()) == red
    finally:
        stop_server(proc)


def test_repl_image_on_torch_attaches_to_the_next_message(folder, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    from tests.processes import spawn_repl

    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    red.write_bytes(png("red"))
    blue.write_bytes(png("blue"))
    ansi = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
    child = spawn_repl(folder, "--temperature", "0", "-n", "8")

    def say(line: str) -> str:
        child.sendline(line)
        child.expect(">>> ")
        return ansi.sub("", child.before)

    try:
        assert "Attached red.png (64×48)" in say(f"/image {red}")
        first = say("What is this?")
        say("/clear")
        say(f"/image {red}")
        assert say("What is this?") == first  # the same image, the same greedy reply
        say("/clear")
        typed = say(f"What is this? {blue}")
        assert f"Added image {blue} (64×48)." in typed
        last = lambda out: out.strip().splitlines()[-1]  # noqa: E731  (the reply, after the echo)
        assert len(last(first)) > 3 and last(typed) != last(first)  # another image, another reply
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_ollama_and_anthropic_images_on_torch_are_the_in_process_answer(folder, backend):
    """Ollama's `images` and Anthropic's base64 `image` block reach the torch backend too, and
    /api/show says `vision` for the folder (its vision tower, no projector)."""
    import httpx

    anthropic = pytest.importorskip("anthropic")
    ollama = pytest.importorskip("ollama")
    from qwencli.resolved import ResolvedModel
    from qwencli.server.app import create_app
    from qwencli.server.config import ServerConfig
    from qwencli.server.static_source import StaticSource
    from tests.serving import RunningServer, wait_until

    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    from tests.models import build_tiny

    source = StaticSource({
        "tiny-vl": ResolvedModel(name="tiny-vl", format="safetensors", path=folder),
        "tiny-text": ResolvedModel(name="tiny-text", format="safetensors", path=build_tiny("hf", "qwen2", tokenizer)),
    })
    config = ServerConfig(startup_models=("tiny-vl",), max_queue=8, load=LoadOptions(device="cpu"))
    expected = ask(backend, png("red")).text
    with RunningServer(create_app(config, source)) as running:
        assert wait_until(lambda: httpx.get(running.base + "/health").status_code == 200, timeout=120)
        client = ollama.Client(host=running.base, timeout=120)
        assert "vision" in client.show("tiny-vl").capabilities
        assert "vision" not in client.show("tiny-text").capabilities
        chat = client.chat(model="tiny-vl", messages=[{"role": "user", "content": "What is this?",
                                                       "images": [png("red")]}],
                           options={"temperature": 0, "num_predict": 8})
        assert chat.message.content == expected
        messages = anthropic.Anthropic(base_url=running.base, api_key="unused", max_retries=0, timeout=120)
        block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": base64.b64encode(png("red")).decode()}}
        out = messages.messages.create(model="tiny-vl", max_tokens=8, extra_body={"temperature": 0}, messages=[
            {"role": "user", "content": [block, {"type": "text", "text": "What is this?"}]}])
        assert out.content[0].text == expected
        raw = httpx.post(running.base + "/api/chat", timeout=120, json={
            "model": "tiny-text", "stream": False,
            "messages": [{"role": "user", "content": "hi", "images": [base64.b64encode(png("red")).decode()]}]})
        assert raw.status_code == 400 and "no vision tower" in raw.json()["error"], raw.text


def test_pull_backend_torch_of_a_vision_repo_fetches_its_image_processor_and_reads_images(hub, folder, backend,
                                                                                         tmp_path):
    """As Qwen3-VL repos are laid out: the template in chat_template.json (not in
    tokenizer_config.json), the image processor in preprocessor_config.json."""
    repo = "test/Tiny-Qwen3-VL"
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "chat_template.jinja"}
    tok_config = json.loads(files["tokenizer_config.json"])
    template = tok_config.pop("chat_template")
    files["tokenizer_config.json"] = json.dumps(tok_config).encode()
    files["chat_template.json"] = json.dumps({"chat_template": template}).encode()
    files["video_preprocessor_config.json"] = b"{}"  # not needed for images
    hub.add_repo(repo, files)
    out = run_qwen("pull", "--backend", "torch", repo, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    fetched = {r.path.rsplit("/", 1)[-1] for r in hub.log if r.status == 200}
    assert {"preprocessor_config.json", "chat_template.json"} <= fetched
    assert "video_preprocessor_config.json" not in fetched
    listed = run_qwen("list", timeout=30)
    row = next(line for line in listed.stdout.decode().splitlines() if repo in line)
    assert "safetensors" in row and "vision" in row, listed.stdout.decode()
    shown = run_qwen("show", repo, timeout=30).stdout.decode()
    assert "yes, its own vision tower" in shown and re.search(r"^capabilities +vision", shown, re.M), shown
    red = tmp_path / "red.png"
    red.write_bytes(png("red"))
    ran = run_qwen("run", repo, "--backend", "torch", "--image", red, "-n", "8", "--temperature", "0", "--json",
                   "What is this?", env={"HF_HUB_OFFLINE": "1"})
    assert ran.returncode == 0, ran.stderr.decode()
    assert json.loads(ran.stdout)["text"] == ask(backend, png("red")).text
