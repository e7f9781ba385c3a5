"""Images as they arrive (a file, stdin, a request's base64): checked before llama.cpp sees them.

Pillow reads the header first, so a decompression bomb (a tiny file that claims billions of
pixels) is refused before anything is decoded; then the whole image is decoded, so a truncated
file fails here with one clear line instead of inside the engine. Pillow is imported lazily:
`qwen --help` does not pay for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

from .chat import Image
from .errors import InvalidImage

if TYPE_CHECKING:
    import PIL.Image

#: The most pixels an image may claim (64 MP, 16× Qwen-VL's own 4096² budget): larger ones are
#: refused as decompression bombs before they are decoded. llama.cpp shrinks what it encodes anyway.
MAX_PIXELS = 8192 * 8192
#: The most bytes an image file may have.
MAX_BYTES = 64 * 2**20
#: What Qwen-VL templates (Qwen2-VL through Qwen3.8) render for one image; both engines swap it
#: for their own form (mtmd's marker; transformers' run of `<|image_pad|>` tokens).
QWEN_IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


def image_from_bytes(data: bytes, source: str | None = None) -> Image:
    """`data` as an `Image`, or `InvalidImage` saying why it is not one."""
    import PIL.Image

    name = source or "the image"
    if not data:
        raise InvalidImage(f"{name} is empty")
    if len(data) > MAX_BYTES:
        raise InvalidImage(f"{name} is {len(data) // 2**20} MiB; images are limited to {MAX_BYTES // 2**20} MiB")
    try:
        with PIL.Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > MAX_PIXELS:
                raise InvalidImage(
                    f"{name} claims {width}×{height} pixels, over the {MAX_PIXELS // 10**6} MP limit "
                    "(a decompression bomb, or far larger than a model can see)"
                )
            probe.load()  # decodes every byte: a truncated image fails here
    except InvalidImage:
        raise
    except PIL.Image.DecompressionBombError as exc:
        raise InvalidImage(f"{name} is a decompression bomb: {exc}") from None
    except PIL.UnidentifiedImageError:
        raise InvalidImage(f"{name} is not an image (or not a format Pillow reads)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"{name} is damaged or truncated: {exc}") from None
    return Image(data=data, sha256=hashlib.sha256(data).hexdigest(), source=source, width=width, height=height)


def image_from_file(path: Path) -> Image:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidImage(f"{path}: no such image file") from None
    except OSError as exc:
        raise InvalidImage(f"{path}: {exc.strerror or exc}") from None
    return image_from_bytes(data, str(path))


def image_from_data_url(url: str) -> Image:
    """A `data:image/…;base64,…` URL (OpenAI's `image_url`), or bare base64 (Ollama's `images`)."""
    payload = url
    if url.startswith("data:"):
        head, sep, payload = url.partition(",")
        if not sep or ";base64" not in head:
            raise InvalidImage("an image data: URL must be base64 (data:image/png;base64,…)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage("the image's base64 does not decode") from None
    return image_from_bytes(data, "data:" if url.startswith("data:") else "base64")


def rgb_image(image: Image) -> PIL.Image.Image:
    """The image decoded to RGB, by the decoder that validated it: any format Pillow reads works
    (WebP, TIFF…), not only the ones llama.cpp's stb_image knows."""
    import PIL.Image

    with PIL.Image.open(io.BytesIO(image.data)) as img:
        return img.convert("RGB")


def rgb_pixels(image: Image) -> tuple[int, int, bytes]:
    """Width, height and packed RGB bytes: what mtmd's bitmap takes."""
    rgb = rgb_image(image)
    return rgb.width, rgb.height, rgb.tobytes()
