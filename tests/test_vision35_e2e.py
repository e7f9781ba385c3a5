"""Images on the tiny Qwen3.5 with vision (tests/fixtures/tiny_vision35.py), the natively
multimodal hybrid: llama.cpp through mtmd (GGUF + `qwen3vl_merger` projector, as converted from
the same weights) and torch on the safetensors folder, checked as tests/test_vision_e2e.py checks
Qwen3-VL, and the two engines against each other.

Random weights: replies are compared token for token, never read for words. Qwen3.5's template
thinks by default; these ask with thinking off so the reply is the text."""

from __future__ import annotations

import io
import json

import pytest

from qwencli.backends.base import LoadOptions
from qwencli.chat import GenerationOptions, Message, collect
from qwencli.images import QWEN_IMAGE_PLACEHOLDER, image_from_bytes
from tests.models import QWEN_TOKENIZER, build_vision35, require
from tests.processes import run_qwen

pytestmark = pytest.mark.slow

GREEDY = GenerationOptions(temperature=0, max_tokens=8, think=False)


def png(color: str, size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def files() -> dict[str, object]:
    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    return {kind: build_vision35(kind, tokenizer) for kind in ("hf", "gguf", "mmproj")}


@pytest.fixture(scope="module")
def llama(files):
    from qwencli.backends.llamacpp import LlamaCppBackend

    b = LlamaCppBackend(files["gguf"], LoadOptions(context_length=2048), projector=files["mmproj"])
    yield b
    b.close()


@pytest.fixture(scope="module")
def torch_side(files):
    pytest.importorskip("torch")
    from qwencli.backends.torch_backend import TorchBackend

    # mtmd's own budget for Qwen-VL (8 to 4096 tokens), so both engines see the same grid.
    b = TorchBackend(files["hf"], LoadOptions(device="cpu", image_min_tokens=8, image_max_tokens=4096))
    yield b
    b.close()


def ask(backend, image: bytes | None, text: str = "What is this?"):
    images = (image_from_bytes(image, "test"),) if image is not None else ()
    return collect(backend.chat([Message("user", text, images=images)], GREEDY))


def test_llama_cpp_two_images_differ_and_one_image_twice_is_identical(llama):
    assert llama.info.architecture == "qwen35" and llama.info.projector is not None
    red, blue = ask(llama, png("red")), ask(llama, png("blue"))
    assert red.usage.completion_tokens == blue.usage.completion_tokens == 8
    assert red.text != blue.text
    assert ask(llama, png("red")).text == red.text
    assert ask(llama, None).text not in (red.text, blue.text)


def test_llama_cpp_prompt_tokens_count_the_image_tokens_mtmd_reports(llama):
    from qwencli.backends.llama_vision import ImagePart

    image = image_from_bytes(png("red"), "test")
    messages = [Message("user", "What is this?", images=(image,))]
    prompt = llama.render(messages, GREEDY)
    projector = llama._projector

    def mtmd_image_tokens() -> int:
        chunks = projector.tokenize(projector.to_marked(prompt, 1), [image])
        try:
            return sum(p.n_tokens for p in chunks.parts if isinstance(p, ImagePart))
        finally:
            chunks.close()

    assert projector.kind == "qwen3vl_merger"
    n_image = llama._engine.call(mtmd_image_tokens)
    assert n_image == 4 * 3  # 64×48 → 128×96 pixels → 8×6 patches → 4×3 after the 2×2 merge
    text_only = len(llama._engine.call(llama._tokenize, prompt.replace(QWEN_IMAGE_PLACEHOLDER, "")))
    expected = text_only + 2 + n_image  # mtmd writes <|vision_start|> and <|vision_end|> itself
    assert llama.count_prompt_tokens(messages, GREEDY) == expected
    assert collect(llama.chat(messages, GREEDY)).usage.prompt_tokens == expected


def test_rendered_prompt_equals_transformers_apply_chat_template(llama, files):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(files["hf"])
    two = (image_from_bytes(png("red"), "a"), image_from_bytes(png("blue"), "b"))
    ours = [Message("system", "Be brief."), Message("user", "Compare them.", images=two),
            Message("assistant", "Red and blue."), Message("user", "And now?")]
    theirs = [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                            {"type": "text", "text": "Compare them."}]},
              {"role": "assistant", "content": "Red and blue."},
              {"role": "user", "content": "And now?"}]
    expected = tokenizer.apply_chat_template(theirs, tokenize=False, add_generation_prompt=True)
    assert llama.render(ours, GenerationOptions()) == expected
    assert expected.count(QWEN_IMAGE_PLACEHOLDER) == 2


def test_torch_reads_the_same_images_as_llama_cpp_token_for_token(llama, torch_side):
    """Same weights, same budget, a flat image (resizing it is exact in both engines): the same
    prompt count and the same greedy reply."""
    assert torch_side.info.vision_tower and torch_side.info.architecture == "qwen3_5"
    for color in ("red", "blue"):
        messages = [Message("user", "What is this?", images=(image_from_bytes(png(color)),))]
        assert torch_side.count_prompt_tokens(messages, GREEDY) == llama.count_prompt_tokens(messages, GREEDY)
        theirs, ours = ask(llama, png(color)), ask(torch_side, png(color))
        assert ours.usage.prompt_tokens == theirs.usage.prompt_tokens
        assert ours.text == theirs.text
    assert ask(torch_side, png("red")).text != ask(torch_side, png("blue")).text


def test_one_shot_image_with_the_projector_found_beside_the_model(files, llama, tmp_path):
    red = tmp_path / "red.png"
    red.write_bytes(png("red"))
    result = run_qwen("run", files["gguf"], "--image", red, "--no-think", "-n", "8", "--temperature", "0", "--json",
                      "What is this?")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["text"] == ask(llama, png("red")).text


def test_the_first_reply_token_moves_with_the_image_by_a_clear_margin(torch_side):
    """What makes the token-for-token comparisons above safe: for each image the top logit of the
    first reply token leads the next by more than 1 (f32 engines differ by far less)."""
    import torch

    firsts = {}
    for color in ("red", "blue"):
        image = image_from_bytes(png(color))
        vision = torch_side._with_images(torch_side.render([Message("user", "What is this?", images=(image,))],
                                                           GREEDY), [image])

        def first_row(vision=vision):
            extra, _ = torch_side._vision.first_forward(vision, 0, "cpu")
            with torch.inference_mode():
                return torch_side.model(input_ids=torch.tensor([vision.ids]), logits_to_keep=1, **extra).logits[0, -1]

        row = torch_side._engine.call(first_row)
        top = torch.topk(row, 2).values
        assert top[0] - top[1] > 1.0, (color, float(top[0] - top[1]))
        firsts[color] = int(row.argmax())
    assert firsts["red"] != firsts["blue"]
