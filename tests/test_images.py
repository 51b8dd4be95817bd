"""Image processing: every kind of web image either becomes a valid JPEG or gets its reason."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from entitynet.errors import ConfigError
from entitynet.images.hashes import hamming, phash64, sha256
from entitynet.images.process import ImageOptions, ImageRejected, process_image


def pattern(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)


def encode(im: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **kw)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def test_large_jpeg_is_resized_on_the_shorter_side():
    data = encode(pattern(1600, 1200))
    r = process_image(data)
    assert (r.width, r.height) == (341, 256) and (r.original_width, r.original_height) == (1600, 1200)
    out = decode(r.jpeg)
    assert out.format == "JPEG" and out.mode == "RGB" and out.size == (341, 256)
    assert r.sha256 == sha256(data)


@pytest.mark.parametrize(
    "mode,size,expected",
    [
        ("longer", 256, (256, 192)),
        ("center_crop", 256, (256, 256)),
        ("none", 256, (1600, 1200)),
        ("shorter", 512, (683, 512)),
    ],
)
def test_resize_modes(mode, size, expected):
    r = process_image(encode(pattern(1600, 1200)), ImageOptions(resize_mode=mode, size=size))
    assert (r.width, r.height) == expected == decode(r.jpeg).size


def test_small_images_are_not_upscaled_unless_asked():
    data = encode(pattern(200, 100))
    assert (process_image(data).width, process_image(data).height) == (200, 100)
    r = process_image(data, ImageOptions(only_if_bigger=False))
    assert (r.width, r.height) == (512, 256)


def test_filters():
    with pytest.raises(ImageRejected) as e:
        process_image(encode(pattern(8, 8)))
    assert e.value.reason == "too_small"
    with pytest.raises(ImageRejected) as e:
        process_image(encode(pattern(1000, 100)))
    assert e.value.reason == "bad_aspect"
    assert process_image(encode(pattern(1000, 100)), ImageOptions(max_aspect=12)).height == 100


def test_not_an_image_and_truncated():
    with pytest.raises(ImageRejected) as e:
        process_image(b"<html><body>not found</body></html>")
    assert e.value.reason == "not_an_image"
    data = encode(pattern(800, 600))
    with pytest.raises(ImageRejected) as e:
        process_image(data[: len(data) // 2])
    assert e.value.reason == "decode_error"


def bomb_png(width: int, height: int) -> bytes:
    """A real PNG whose header claims width x height: only the header is ever read."""
    png = bytearray(encode(Image.new("L", (4, 4)), "PNG"))
    ihdr = png.index(b"IHDR")
    png[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(png[ihdr : ihdr + 17]))
    png[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(png)


def test_decompression_bomb_is_refused_from_the_header():
    with pytest.raises(ImageRejected) as e:
        process_image(bomb_png(30000, 30000))
    assert e.value.reason == "too_large"
    with pytest.raises(ImageRejected) as e:
        process_image(bomb_png(5000, 5000), ImageOptions(max_pixels=1_000_000))
    assert e.value.reason == "too_large"


def test_alpha_and_palette_transparency_are_matted_on_white():
    rgba = Image.new("RGBA", (300, 300), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (0, 0, 150, 300))  # left half fully transparent (blue underneath)
    out = np.asarray(decode(process_image(encode(rgba, "PNG")).jpeg))
    assert out[128, 20].min() > 240  # white, not blue
    assert out[128, 230, 0] > 200 and out[128, 230, 2] < 60  # red stays red
    pal = rgba.convert("P", palette=Image.Palette.ADAPTIVE)
    pal.info["transparency"] = pal.getpixel((10, 10))
    out = np.asarray(decode(process_image(encode(pal, "PNG", transparency=pal.info["transparency"])).jpeg))
    assert out[128, 20].min() > 240


def test_cmyk_and_greyscale_become_rgb():
    for im in (pattern(400, 300).convert("CMYK"), pattern(400, 300).convert("L")):
        out = decode(process_image(encode(im)).jpeg)
        assert out.mode == "RGB" and out.size == (341, 256)


def test_exif_orientation_is_applied():
    im = pattern(400, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    r = process_image(encode(im, exif=exif.tobytes()), ImageOptions(size=128))
    assert (r.original_width, r.original_height) == (400, 200)
    assert (r.width, r.height) == (128, 256)  # portrait after rotation


def test_perceptual_hash_survives_reencoding_and_resizing():
    a = pattern(640, 480, seed=1)
    h1 = phash64(a)
    h2 = phash64(decode(encode(a.resize((320, 240)), quality=40)))
    h3 = phash64(pattern(640, 480, seed=2))
    assert 0 <= h1 < 2**64
    assert hamming(h1, h2) <= 6
    assert hamming(h1, h3) > 16


def test_bad_options():
    with pytest.raises(ConfigError):
        ImageOptions(resize_mode="border")
    with pytest.raises(ConfigError):
        ImageOptions(quality=0)


def test_resample_filters_all_work_and_unknown_is_refused():
    data = encode(pattern(800, 600))
    sizes = {
        f: process_image(data, ImageOptions(resample=f)).width
        for f in ("bilinear", "bicubic", "lanczos", "box")
    }
    assert set(sizes.values()) == {341}
    with pytest.raises(ConfigError, match="unknown resample"):
        ImageOptions(resample="nearest-ish")
