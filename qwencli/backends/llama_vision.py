"""Images through llama.cpp's mtmd, on the llama.cpp backend's own engine thread.

The model's template renders each image as `<|vision_start|><|image_pad|><|vision_end|>`; mtmd
wants its own marker there (`mtmd_default_marker()`) and writes the vision start/end tokens
itself, so the whole placeholder is swapped for the marker. `mtmd_tokenize` splits the prompt
into text chunks (tokens) and image chunks; `Projector.evaluate` puts an image chunk into the KV
cache (`mtmd_helper_eval_chunk_single`: encode, then decode the embeddings with M-RoPE
positions). An image takes `n_tokens` cells but only `n_pos` positions, which is why the
backends keep positions, not tokens, in their cache lists.

Prefix reuse across turns, as llama-server's `server_tokens` does it: a context's cache list (its
*layout*) holds a token id at each text position and, at each of an image's positions, an
`ImageKey` (the image's sha256 and its token count). A new prompt's layout is compared with it
position by position; the shared prefix, cut back to the start of any image it ends inside, stays
in the KV cache, and only what follows is evaluated: the same image in the same place is not
encoded again.

Every function here runs on the engine thread; mtmd is not thread-safe with its llama context.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chat import Image, Message
from ..errors import InvalidImage, InvalidModelFile, NoVision
from ..formats.gguf import projector_arch
from ..images import QWEN_IMAGE_PLACEHOLDER, rgb_pixels
from .llama_load import last_log_error, route_mtmd_log

#: The part of QWEN_IMAGE_PLACEHOLDER an image chunk stands for; mtmd tokenizes the rest as text around the image.
IMAGE_PAD = b"<|image_pad|>"


@dataclass(frozen=True)
class ImageKey:
    """What a layout holds at each of an image's positions: which image, and what it cost
    (the same file under another token budget is another image to the cache)."""

    sha256: str
    n_tokens: int


#: One position of a context's layout: a text token, or a position of an image.
Cell = int | ImageKey


@dataclass(frozen=True)
class TextPart:
    tokens: list[int]

    @property
    def n_pos(self) -> int:
        return len(self.tokens)


@dataclass
class ImagePart:
    chunk: Any  # an mtmd_input_chunk_p owned by the `Chunks` it came from
    n_tokens: int  # KV cells it fills (what usage counts)
    n_pos: int  # positions it advances (M-RoPE: fewer than its tokens)
    key: ImageKey


Part = TextPart | ImagePart


class Chunks:
    """One prompt's mtmd chunks, freed with `close()` (its image parts point into them)."""

    def __init__(self, handle: Any, parts: list[Part]):
        self._handle = handle
        self.parts = parts

    @property
    def n_tokens(self) -> int:
        return sum(len(p.tokens) if isinstance(p, TextPart) else p.n_tokens for p in self.parts)

    @property
    def image_tokens(self) -> tuple[int, ...]:
        return tuple(p.n_tokens for p in self.parts if isinstance(p, ImagePart))

    def layout(self) -> list[Cell]:
        """What a cache list holds once this prompt is evaluated: one cell a position."""
        cells: list[Cell] = []
        for p in self.parts:
            cells += p.tokens if isinstance(p, TextPart) else [p.key] * p.n_pos
        return cells

    def resume_at(self, common: int) -> int:
        """Where evaluation resumes when the cache holds the first `common` positions of this
        layout: never inside an image (its cells go together), and at least one position short
        of the end (the last position's logits give the first reply token)."""
        keep = min(common, sum(p.n_pos for p in self.parts) - 1)
        at = 0
        for p in self.parts:
            if isinstance(p, ImagePart) and at < keep < at + p.n_pos:
                return at
            at += p.n_pos
        return max(keep, 0)

    def tokens_before(self, position: int) -> int:
        """The prompt tokens (image tokens counted as cells, as usage counts them) before `position`."""
        n = at = 0
        for p in self.parts:
            if at >= position:
                break
            n += p.n_tokens if isinstance(p, ImagePart) else min(p.n_pos, position - at)
            at += p.n_pos
        return n

    def after(self, position: int) -> list[Part]:
        """The parts still to evaluate when the cache holds the first `position` positions
        (`resume_at` keeps that off an image's inside): a text part cut there, the rest whole."""
        out: list[Part] = []
        at = 0
        for p in self.parts:
            end = at + p.n_pos
            if end > position:
                out.append(TextPart(p.tokens[position - at :]) if isinstance(p, TextPart) and at < position else p)
            at = end
        return out

    def close(self) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        if self._handle is not None:
            mtmd.mtmd_input_chunks_free(self._handle)
            self._handle = None


def prompt_images(messages: Sequence[Message], projector: Path | None, name: str) -> list[Image]:
    """The images of a conversation, in prompt order; NoVision if a load without a projector
    was sent any (an image is refused, never dropped)."""
    images = [image for m in messages for image in m.images]
    if images and projector is None:
        raise NoVision(
            f"{name} was loaded without a vision projector and cannot read images",
            hint="give the model's projector: --mmproj mmproj-….gguf (or put it beside the model)",
        )
    return images


def checkpoint_positions_with_images(
    chunks: Chunks, prompt: str, prefixes: Sequence[str], piece: Callable[[int], bytes]
) -> list[int]:
    """The layout positions where `prefixes` of the rendered `prompt` end on a token boundary
    (pipeline.checkpoint_prefixes; hybrid models checkpoint there): each text token's piece
    (`piece`, special tokens spelled out) is laid along the prompt's bytes, and each image over
    the `<|image_pad|>` its placeholder renders (mtmd writes the start and end tokens as text)."""
    if not prefixes:
        return []
    ends: dict[int, int] = {}  # a byte offset in the prompt → the position after it
    offset = position = 0
    for part in chunks.parts:
        if isinstance(part, TextPart):
            for token in part.tokens:
                offset += len(piece(token))
                position += 1
                ends[offset] = position
        else:
            offset += len(IMAGE_PAD)
            position += part.n_pos
            ends[offset] = position
    if offset != len(prompt.encode()):
        return []  # the pieces do not spell the prompt: no checkpoints, which is only slower
    return sorted({ends[n] for prefix in prefixes if (n := len(prefix.encode())) in ends})


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
                    # The id is the sha256 `_bitmap` gave the image: it names the image in layouts.
                    key = ImageKey((mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode(), n_tokens)
                    parts.append(ImagePart(chunk, n_tokens, mtmd.mtmd_input_chunk_get_n_pos(chunk), key))
        except BaseException:
            mtmd.mtmd_input_chunks_free(handle)
            raise
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
        return Chunks(handle, parts)

    def count_tokens(self, prompt: str, images: Sequence[Image]) -> int:
        """The prompt's tokens, each image counted by the KV cells it fills (a rendered prompt)."""
        chunks = self.tokenize(self.to_marked(prompt, len(images)), images)
        try:
            return chunks.n_tokens
        finally:
            chunks.close()

    def _bitmap(self, image: Image) -> Any:
        import llama_cpp.mtmd_cpp as mtmd

        width, height, rgb = rgb_pixels(image)
        bitmap = mtmd.mtmd_bitmap_init(width, height, (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb))
        if not bitmap:
            raise InvalidImage(f"llama.cpp could not take {image.source or 'the image'} ({width}×{height})")
        mtmd.mtmd_bitmap_set_id(bitmap, image.sha256.encode())
        return bitmap

    def evaluate(
        self, lctx: Any, part: ImagePart, n_past: int, n_batch: int, *, logits_last: bool, seq_id: int = 0
    ) -> int:
        """Encode the image and decode its embeddings into sequence `seq_id` at `n_past`; the
        next position. The one place an image is encoded (tests count the calls here)."""
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        new_n_past = llama_cpp.llama_pos(0)
        status = mtmd.mtmd_helper_eval_chunk_single(
            self._ctx, lctx, part.chunk, n_past, seq_id, n_batch, logits_last, ctypes.byref(new_n_past)
        )
        if status != 0:
            raise InvalidModelFile(f"llama.cpp failed to evaluate an image (mtmd returned {status})")
        return int(new_n_past.value)

    def close(self) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        if self._ctx:
            mtmd.mtmd_free(self._ctx)
            self._ctx = None


def load_projector(path: Path, model: Any, load: Any, *, threads: int, gpu_layers: int) -> Projector:
    """The projector a llama.cpp load opens beside its model (both engines): the load's own
    threads, GPU use and image-token budget (`LoadOptions`)."""
    return Projector(
        path,
        model,
        threads=threads,
        use_gpu=gpu_layers != 0,
        verbose=load.verbose,
        min_tokens=load.image_min_tokens,
        max_tokens=load.image_max_tokens,
    )
