"""Images through llama.cpp's mtmd, on the llama.cpp backend's own engine thread.

The model's template renders each image as `<|vision_start|><|image_pad|><|vision_end|>`; mtmd
wants its own marker there (`mtmd_default_marker()`) and writes the vision start/end tokens
itself, so the whole placeholder is swapped for the marker. `mtmd_tokenize` splits the prompt
into text chunks (tokens) and image chunks; `Projector.evaluate` puts an image chunk into the KV
cache (`mtmd_helper_eval_chunk_single`: encode, then decode the embeddings with M-RoPE
positions). An image takes `n_tokens` cells but only `n_pos` positions, which is why the
backend keeps positions, not tokens, in its cache list.

Every function here runs on the engine thread; mtmd is not thread-safe with its llama context.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chat import Image
from ..errors import InvalidImage, InvalidModelFile
from ..formats.gguf import projector_arch
from ..images import QWEN_IMAGE_PLACEHOLDER, rgb_pixels
from .llama_load import last_log_error, route_mtmd_log

#: What `_cached` holds at an image's positions: no token id is negative, so no prefix reuse
#: crosses an image (a prompt with images is evaluated again from its first image on).
IMAGE_POSITION = -1


@dataclass(frozen=True)
class TextPart:
    tokens: list[int]


@dataclass
class ImagePart:
    chunk: Any  # an mtmd_input_chunk_p owned by the `Chunks` it came from
    n_tokens: int  # KV cells it fills (what usage counts)
    n_pos: int  # positions it advances (M-RoPE: fewer than its tokens)


Part = TextPart | ImagePart


class Chunks:
    """One prompt's mtmd chunks, freed with `close()` (its image parts point into them)."""

    def __init__(self, handle: Any, parts: list[Part]):
        self._handle = handle
        self.parts = parts

    @property
    def n_tokens(self) -> int:
        return sum(len(p.tokens) if isinstance(p, TextPart) else p.n_tokens for p in self.parts)

    def close(self) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        if self._handle is not None:
            mtmd.mtmd_input_chunks_free(self._handle)
            self._handle = None


class Projector:
    """A vision projector (mmproj GGUF) bound to one loaded llama model."""

    def __init__(
        self,
        path: Path,
        model: Any,
        *,
        threads: int,
        use_gpu: bool,
        verbose: bool,
        min_tokens: int | None = None,
        max_tokens: int | None = None,
    ):
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        self.path = path
        kind = projector_arch(path)
        if kind is None:
            raise InvalidModelFile(
                f"{path} is not a vision projector (an mmproj GGUF with general.architecture = clip)",
                hint="pass the projector that came with the model: --mmproj mmproj-….gguf",
            )
        self.kind = kind
        route_mtmd_log(verbose)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.print_timings = verbose
        params.n_threads = threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.warmup = False  # the first image pays it; a text-only session never does
        # -1 keeps the projector's own budget (clip.cpp: 8 to 4096 tokens for Qwen-VL).
        params.image_min_tokens = min_tokens or -1
        params.image_max_tokens = max_tokens or -1
        self._ctx = mtmd.mtmd_init_from_file(str(path).encode(), model, params)
        if not self._ctx:
            why = last_log_error()
            raise InvalidModelFile(
                f"the projector {path.name} ({kind}) does not match this model"
                + (f": {why.removeprefix('mtmd_init_from_file: error: ')}" if why else ""),
                hint="a projector works only with the model it was converted with (same embedding size)",
            )
        if not mtmd.mtmd_support_vision(self._ctx):
            self.close()
            raise InvalidModelFile(f"{path.name} has no vision encoder (an audio-only projector)")
        self.marker = mtmd.mtmd_default_marker().decode()

    def to_marked(self, prompt: str, n_images: int) -> str:
        """`prompt` with each rendered image placeholder swapped for mtmd's marker."""
        found = prompt.count(QWEN_IMAGE_PLACEHOLDER)
        if found != n_images:
            raise InvalidImage(
                f"the chat template placed {found} image(s) for {n_images} attached; "
                "this model's template does not take images"
            )
        return prompt.replace(QWEN_IMAGE_PLACEHOLDER, self.marker)

    def tokenize(self, prompt: str, images: Sequence[Image]) -> Chunks:
        """Text and image chunks for a marked prompt (see `to_marked`)."""
        import llama_cpp.mtmd_cpp as mtmd

        bitmaps = [self._bitmap(image) for image in images]
        handle = mtmd.mtmd_input_chunks_init()
        try:
            text = mtmd.mtmd_input_text()
            encoded = prompt.encode()
            text.text = encoded
            text.text_len = len(encoded)
            text.add_special = True
            text.parse_special = True
            array = (mtmd.mtmd_bitmap_p_ctypes * max(len(bitmaps), 1))(*bitmaps)
            status = mtmd.mtmd_tokenize(self._ctx, handle, ctypes.byref(text), array, len(bitmaps))
            if status != 0:
                # 1: marker and image counts differ; 2: an image failed preprocessing.
                raise InvalidImage(f"llama.cpp could not prepare the image(s) (mtmd_tokenize returned {status})")
            parts: list[Part] = []
            for i in range(mtmd.mtmd_input_chunks_size(handle)):
                chunk = mtmd.mtmd_input_chunks_get(handle, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t()
                    ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    parts.append(TextPart([ptr[j] for j in range(n.value)]))
                else:
                    n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                    parts.append(ImagePart(chunk, n_tokens, mtmd.mtmd_input_chunk_get_n_pos(chunk)))
        except BaseException:
            mtmd.mtmd_input_chunks_free(handle)
            raise
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
        return Chunks(handle, parts)

    def _bitmap(self, image: Image) -> Any:
        import llama_cpp.mtmd_cpp as mtmd

        width, height, rgb = rgb_pixels(image)
        bitmap = mtmd.mtmd_bitmap_init(width, height, (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb))
        if not bitmap:
            raise InvalidImage(f"llama.cpp could not take {image.source or 'the image'} ({width}×{height})")
        mtmd.mtmd_bitmap_set_id(bitmap, image.sha256.encode())
        return bitmap

    def evaluate(self, lctx: Any, part: ImagePart, n_past: int, n_batch: int, *, logits_last: bool) -> int:
        """Encode the image and decode its embeddings at `n_past`; the next position."""
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        new_n_past = llama_cpp.llama_pos(0)
        status = mtmd.mtmd_helper_eval_chunk_single(
            self._ctx, lctx, part.chunk, n_past, 0, n_batch, logits_last, ctypes.byref(new_n_past)
        )
        if status != 0:
            raise InvalidModelFile(f"llama.cpp failed to evaluate an image (mtmd returned {status})")
        return int(new_n_past.value)

    def close(self) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        if self._ctx:
            mtmd.mtmd_free(self._ctx)
            self._ctx = None
