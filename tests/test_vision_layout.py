"""The layout a llama.cpp context's cache is compared with (backends/llama_vision.py): text tokens
and images by sha256, where a prompt resumes, what it still reads, how many tokens it kept, and
where a hybrid model's checkpoints fall. Pure functions over parts; the chunks are never touched."""

from __future__ import annotations

from qwencli.backends.llama_vision import (
    Chunks,
    ImageKey,
    ImagePart,
    TextPart,
    checkpoint_positions_with_images,
)
from qwencli.backends.local import common_prefix

RED, BLUE = ImageKey("a" * 64, 12), ImageKey("b" * 64, 12)


def prompt(*parts) -> Chunks:
    """Text parts as token lists; images as keys (12 tokens on 4 positions, as a 64×48 image)."""
    return Chunks(None, [TextPart(list(p)) if isinstance(p, (list, tuple)) else ImagePart(None, 12, 4, p)
                         for p in parts])


def test_a_layout_has_a_cell_a_position():
    chunks = prompt([1, 2, 3], RED, [4, 5])
    assert chunks.layout() == [1, 2, 3, RED, RED, RED, RED, 4, 5]
    assert chunks.n_tokens == 3 + 12 + 2 and chunks.image_tokens == (12,)


def test_reuse_stops_at_the_first_difference_and_never_inside_an_image():
    cached = prompt([1, 2, 3], RED, [4, 5, 6]).layout()
    same_image = prompt([1, 2, 3], RED, [4, 9])
    assert same_image.resume_at(common_prefix(cached, same_image.layout())) == 8  # text after the image
    other_image = prompt([1, 2, 3], BLUE, [4, 5, 6])
    assert other_image.resume_at(common_prefix(cached, other_image.layout())) == 3  # the image's start
    # A cache that ends inside an image (cut there) holds none of it.
    assert same_image.resume_at(5) == 3
    # The whole prompt cached: its last position is read again, for the reply's first logits.
    assert same_image.resume_at(len(same_image.layout())) == 8
    ends_with_image = prompt([1, 2], RED)
    assert ends_with_image.resume_at(6) == 2  # an image last: read again whole
    assert prompt([1]).resume_at(0) == 0


def test_what_is_read_after_the_kept_prefix_and_the_tokens_it_kept():
    chunks = prompt([1, 2, 3], RED, [4, 5, 6], BLUE, [7])
    assert [p.tokens if isinstance(p, TextPart) else p.key for p in chunks.after(8)] == [[5, 6], BLUE, [7]]
    assert [p.tokens if isinstance(p, TextPart) else p.key for p in chunks.after(2)] == [[3], RED, [4, 5, 6], BLUE, [7]]
    assert [p.tokens if isinstance(p, TextPart) else p.key for p in chunks.after(10)] == [BLUE, [7]]
    # Kept tokens count an image by its cells (12), not its positions (4), as usage does.
    assert chunks.tokens_before(0) == 0
    assert chunks.tokens_before(3) == 3
    assert chunks.tokens_before(8) == 3 + 12 + 1
    assert chunks.tokens_before(14) == 3 + 12 + 3 + 12


def test_checkpoint_prefixes_map_onto_the_layout_through_the_prompt_bytes():
    pieces = {1: b"<|im_start|>", 2: b"user\n", 3: b"<|vision_start|>", 4: b"<|vision_end|>", 5: b"Hi",
              6: b"<|im_end|>\n", 7: b"<|im_start|>assistant\n"}
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n"
    chunks = prompt([1, 2, 3], RED, [4, 5, 6, 7])
    history = text[: text.index("<|im_start|>assistant")]
    head = "<|im_start|>user\n"
    assert checkpoint_positions_with_images(chunks, text, [history, head], pieces.__getitem__) == [2, 10]
    # A prefix that ends inside a token, or inside the image, is no checkpoint.
    assert checkpoint_positions_with_images(chunks, text, [text[:20], text[:40]], pieces.__getitem__) == []
    # Pieces that do not spell the prompt (another template's placeholder): no checkpoints at all.
    assert checkpoint_positions_with_images(chunks, text + "x", [history], pieces.__getitem__) == []
