"""Images on the torch backend: a Qwen-VL folder's own image processor, the prompt's image
tokens and their M-RoPE positions.

Without torchvision, transformers 5 gives `AutoImageProcessor` as `Qwen2VLImageProcessorPil`
(PIL and numpy: resize, normalise, patchify); its `Qwen3VLProcessor` cannot be built at all (the
video processor it requires needs torchvision). So the two things that processor adds are done
here the way it does them (transformers/models/qwen3_vl/processing_qwen3_vl.py,
`replace_image_token`): each rendered `<|image_pad|>` becomes grid_t·grid_h·grid_w / merge²
pads, and the model's forward puts the image's embeddings at those pads.

Positions go into every forward with an image, never left to the model: its own `rope_deltas`
are set only on a forward from an empty cache, and would be stale for new images after a kept
prefix. `get_rope_index` gives the (t, h, w) positions of the whole prompt; the cell index is the
fourth row, which the decoder wants first (as `generate` builds it:
`Qwen3VLForConditionalGeneration._prepare_position_ids_for_generation`). After the prompt,
cell c sits at position c + delta on all three axes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..chat import Image
from ..errors import InvalidImage, InvalidModelFile
from ..images import QWEN_IMAGE_PLACEHOLDER, rgb_image
from .base import LoadOptions

IMAGE_PAD = "<|image_pad|>"
VISION_START, VISION_END = QWEN_IMAGE_PLACEHOLDER.split(IMAGE_PAD)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The size Qwen-VL's processor resizes an image to: both sides multiples of `factor`
    (patch × merge), the area within [min_pixels, max_pixels], the aspect ratio kept.
    transformers/models/qwen2_vl/image_processing_pil_qwen2_vl.py, `smart_resize`, unchanged
    (Python's round() rounds halves to even; llama.cpp's std::round does not: mtmd can differ)."""
    if max(height, width) / min(height, width) > 200:
        raise InvalidImage(f"the image is {width}×{height}; Qwen-VL takes aspect ratios up to 200:1")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class VisionPrompt:
    """A rendered prompt with its images: token ids with every image's pads in place."""

    ids: list[int]
    #: What prefix reuse compares: `ids`, each image's pads replaced by its sha256, so the same
    #: image in the same place is kept in the cache and a different one (same size) is not.
    keys: list[int | str]
    images: tuple[Image, ...]
    grids: tuple[tuple[int, int, int], ...]  # (t, h, w) in patches, as the processor's image_grid_thw
    starts: tuple[int, ...]  # where each image's pads begin in `ids`
    image_tokens: tuple[int, ...]

    def cut(self, keep: int) -> int:
        """`keep` moved back to the start of an image it would split (a cache holds whole images)."""
        for start, n in zip(self.starts, self.image_tokens):
            if start < keep < start + n:
                return start
        return keep


class TorchVision:
    """A Qwen-VL model's image side: the processor from its folder, the image-token budget."""

    def __init__(self, folder: Path, model: Any, load: LoadOptions):
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self._processor = processor
        self.patch, self.merge = int(processor.patch_size), int(processor.merge_size)
        self.factor = self.patch * self.merge
        area = self.factor**2  # pixels per image token
        self.min_pixels = load.image_min_tokens * area if load.image_min_tokens else int(processor.size.shortest_edge)
        self.max_pixels = load.image_max_tokens * area if load.image_max_tokens else int(processor.size.longest_edge)
        self.min_pixels = min(self.min_pixels, self.max_pixels)  # a cap below the default floor wins (as in mtmd)
        self.pad_id = int(model.config.image_token_id)
        self._rope_index = model.model.get_rope_index

    @property
    def budget(self) -> tuple[int, int]:
        """The fewest and most tokens one image costs."""
        area = self.factor**2
        return -(-self.min_pixels // area), self.max_pixels // area

    def grid(self, image: Image) -> tuple[int, int, int]:
        """The image's (t, h, w) in patches, from its size alone (one frame: t = 1)."""
        height, width = smart_resize(image.height, image.width, self.factor, self.min_pixels, self.max_pixels)
        return 1, height // self.patch, width // self.patch

    def prepare(self, prompt: str, images: Sequence[Image], tokenize: Callable[[str], list[int]]) -> VisionPrompt:
        parts = prompt.split(QWEN_IMAGE_PLACEHOLDER)
        if len(parts) - 1 != len(images):
            raise InvalidImage(
                f"the chat template placed {len(parts) - 1} image(s) for {len(images)} attached; "
                "this model's template does not take images"
            )
        grids = tuple(self.grid(image) for image in images)
        counts = tuple(t * h * w // self.merge**2 for t, h, w in grids)
        text = parts[0] + "".join(
            VISION_START + IMAGE_PAD * n + VISION_END + part for n, part in zip(counts, parts[1:])
        )
        ids = tokenize(text)
        starts = [i for i, token in enumerate(ids) if token == self.pad_id and (i == 0 or ids[i - 1] != self.pad_id)]
        keys: list[int | str] = list(ids)
        if len(starts) != len(images) or sum(token == self.pad_id for token in ids) != sum(counts):
            raise InvalidImage(f"the prompt holds {IMAGE_PAD} outside its {len(images)} image(s)")
        for start, n, image in zip(starts, counts, images):
            keys[start : start + n] = [image.sha256] * n
        return VisionPrompt(ids, keys, tuple(images), grids, tuple(starts), counts)

    def first_forward(self, prompt: VisionPrompt, keep: int, device: str) -> tuple[dict[str, Any], int]:
        """The prompt forward's extra arguments from cell `keep` on (the images not in the cache,
        every position), and the delta that places the reply's cells."""
        ids = torch.tensor([prompt.ids])
        grids = torch.tensor(prompt.grids, dtype=torch.long)
        rope, delta = self._rope_index(ids, mm_token_type_ids=(ids == self.pad_id).int(), image_grid_thw=grids)
        cells = torch.arange(len(prompt.ids)).view(1, 1, -1)
        extra: dict[str, Any] = {"position_ids": torch.cat([cells, rope], dim=0)[:, :, keep:].to(device)}
        new = [i for i, start in enumerate(prompt.starts) if start >= keep]
        if new:
            out = self._processor(
                images=[rgb_image(prompt.images[i]) for i in new],
                size={"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
                return_tensors="pt",
            )
            made = [tuple(int(x) for x in row) for row in out["image_grid_thw"]]
            if made != [prompt.grids[i] for i in new]:  # the counts the prompt was built with must hold
                raise InvalidModelFile(
                    f"transformers' image processor made grids {made}, not the {[prompt.grids[i] for i in new]} "
                    "Qwen-VL's smart_resize gives",
                    "the folder's preprocessor_config.json is not a Qwen-VL image processor's",
                )
            extra["pixel_values"] = out["pixel_values"].to(device)
            extra["image_grid_thw"] = out["image_grid_thw"].to(device)
        return extra, int(delta.view(-1)[0])


def reply_positions(cell: int, delta: int, device: str) -> dict[str, Any]:
    """The position arguments for one reply token at `cell`."""
    return {"position_ids": torch.tensor([cell] + [cell + delta] * 3, device=device).view(4, 1, 1)}
