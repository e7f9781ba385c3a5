"""Image checks without a model: what `qwencli.images` accepts and the one line it gives otherwise."""

from __future__ import annotations

import base64
import io

import pytest

from qwencli.errors import InvalidImage
from qwencli.images import image_from_bytes, image_from_data_url, image_from_file, rgb_pixels
from tests.test_vision_e2e import bomb_png, png


def test_a_png_is_read_with_its_size_hash_and_pixels():
    data = png("red", (5, 3))
    image = image_from_bytes(data, "x.png")
    assert (image.width, image.height, image.source) == (5, 3, "x.png")
    assert image_from_bytes(data).sha256 == image.sha256 != image_from_bytes(png("blue", (5, 3))).sha256
    width, height, rgb = rgb_pixels(image)
    assert (width, height, rgb[:3], len(rgb)) == (5, 3, b"\xff\x00\x00", 5 * 3 * 3)


def test_other_formats_decode_to_rgb():
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 255, 128)).save(out, "WEBP")
    assert rgb_pixels(image_from_bytes(out.getvalue()))[:2] == (4, 4)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"just some text", "not an image"),
        (png("red", (256, 256))[:300], "truncated"),
        (bomb_png(), "decompression bomb"),
    ],
)
def test_bad_images_are_one_clear_error(data, words):
    with pytest.raises(InvalidImage, match=words) as caught:
        image_from_bytes(data, "pic.png")
    assert "pic.png" in caught.value.message and "\n" not in caught.value.message
    assert caught.value.http_status == 400


def test_data_urls_and_files(tmp_path):
    data = png("red")
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert image_from_data_url(url).data == data
    assert image_from_data_url(base64.b64encode(data).decode()).data == data  # Ollama's bare base64
    with pytest.raises(InvalidImage, match="base64"):
        image_from_data_url("data:image/png;base64,@@@")
    with pytest.raises(InvalidImage, match="must be base64"):
        image_from_data_url("data:image/png,rawbytes")
    with pytest.raises(InvalidImage, match="no such image file"):
        image_from_file(tmp_path / "missing.png")
    (tmp_path / "ok.png").write_bytes(data)
    assert image_from_file(tmp_path / "ok.png").source == str(tmp_path / "ok.png")
