"""One image preparation for every reader: an RGBA PNG with garbage under its transparent pixels,
a palette image with a transparent index, an LA image, a 16-bit greyscale PNG and a rotated JPEG
give exactly the pixels of their clean equivalent (an RGB image matted on white, upright, 8 bits)
in harvest, decontamination, evaluation and the training input alike."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from factories import record
from PIL import Image

from entitynet.curation import evalsets
from entitynet.images.prepare import prepare
from entitynet.images.process import ImageOptions, process_image, target_size
from train import eval_data
from train.input_pipeline import InputConfig, Prepare, TextChooser

W, H = 96, 80


def _png(im: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, format="PNG", **kw)
    return out.getvalue()


def _subject(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Opaque colourful pixels and a mask of where the subject is (the rest is transparent)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    mask = (xx - W / 2) ** 2 / (W / 3) ** 2 + (yy - H / 2) ** 2 / (H / 3) ** 2 < 1
    colour = np.stack([xx * 255 // W, yy * 255 // H, (xx + yy) % 256], -1).astype(np.uint8)
    colour[mask] //= 2
    colour[::7] = rng.integers(0, 255, colour[::7].shape, dtype=np.uint8)
    return colour, mask


def rgba_with_garbage() -> tuple[bytes, np.ndarray]:
    colour, mask = _subject()
    garbage = np.random.default_rng(1).integers(0, 255, colour.shape, dtype=np.uint8)
    rgb = np.where(mask[..., None], colour, garbage)  # hidden colour under alpha 0
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    clean = np.where(mask[..., None], colour, 255).astype(np.uint8)
    return _png(Image.fromarray(np.dstack([rgb, alpha]), "RGBA")), clean


def palette_with_transparency() -> tuple[bytes, np.ndarray]:
    colour, mask = _subject()
    im = Image.fromarray(colour).quantize(colors=64, dither=Image.Dither.NONE)
    index = np.asarray(im).copy()
    index[~mask] = 64  # a spare palette entry, shown as transparent
    palette = im.getpalette()[: 64 * 3] + [200, 0, 200]  # garbage colour of the transparent index
    p = Image.fromarray(index, "P")
    p.putpalette(palette)
    look = np.asarray(palette, np.uint8).reshape(-1, 3)[index]
    clean = np.where(mask[..., None], look, 255).astype(np.uint8)
    return _png(p, transparency=64), clean


def la_image() -> tuple[bytes, np.ndarray]:
    colour, mask = _subject()
    grey = colour[..., 1]
    garbage = np.random.default_rng(2).integers(0, 255, grey.shape, dtype=np.uint8)
    la = np.dstack([np.where(mask, grey, garbage), np.where(mask, 255, 0)]).astype(np.uint8)
    clean = np.repeat(np.where(mask, grey, 255)[..., None], 3, -1).astype(np.uint8)
    return _png(Image.fromarray(la, "LA")), clean


def sixteen_bit_grey() -> tuple[bytes, np.ndarray]:
    values = (np.arange(W * H, dtype=np.uint32).reshape(H, W) * 65535 // (W * H - 1)).astype(np.uint16)
    eight = np.rint(values / 257).astype(np.uint8)
    clean = np.repeat(eight[..., None], 3, -1)
    return _png(Image.fromarray(values)), clean  # mode I;16


def rotated_jpeg() -> tuple[bytes, np.ndarray]:
    """A JPEG stored sideways with EXIF orientation 6 (rotate 90° clockwise to display)."""
    colour, _ = _subject()
    stored = Image.fromarray(colour).transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, format="JPEG", quality=95, exif=exif)
    decoded = Image.open(io.BytesIO(out.getvalue()))
    decoded.load()
    clean = np.asarray(decoded.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    return out.getvalue(), clean


CASES = {
    "rgba-garbage": rgba_with_garbage,
    "palette-transparent": palette_with_transparency,
    "la": la_image,
    "16-bit-grey": sixteen_bit_grey,
    "exif-rotated-jpeg": rotated_jpeg,
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request) -> tuple[bytes, bytes, np.ndarray]:
    hostile, clean = CASES[request.param]()
    assert clean.shape == (H, W, 3)
    return hostile, _png(Image.fromarray(clean, "RGB")), clean


def test_prepare_mattes_on_white_and_scales_bit_depth(case):
    hostile, _, clean = case
    got = np.asarray(prepare(Image.open(io.BytesIO(hostile))))
    assert got.dtype == np.uint8 and got.shape == clean.shape
    assert np.array_equal(got, clean)


def test_partial_alpha_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128  # half-transparent red over garbage-free black
    got = np.asarray(prepare(Image.open(io.BytesIO(_png(Image.fromarray(rgba, "RGBA"))))))
    expected = np.rint(np.array([200, 0, 0]) * 128 / 255 + 255 * (1 - 128 / 255))
    assert np.abs(got.astype(int) - expected).max() <= 1


@pytest.mark.parametrize(
    "opts", [ImageOptions(resize_mode="none", min_side=8), ImageOptions(size=48, min_side=8)]
)
def test_harvest_sees_the_clean_pixels(case, opts):
    hostile, clean_png, _ = case
    a, b = process_image(hostile, opts), process_image(clean_png, opts)
    assert (a.width, a.height) == (b.width, b.height) == target_size(W, H, opts)
    assert a.jpeg == b.jpeg and a.phash == b.phash


def _folder(root: Path, data: bytes) -> str:
    for name in ("one", "two"):
        (root / name).mkdir(parents=True)
        (root / name / "image.png").write_bytes(data)
    return str(root)


def test_decontamination_and_evaluation_see_the_clean_pixels(case, tmp_path):
    hostile, clean_png, _ = case
    bad, good = _folder(tmp_path / "hostile", hostile), _folder(tmp_path / "clean", clean_png)
    harvested = process_image(hostile, ImageOptions(min_side=8))
    for folder in (bad, good):  # decontamination hashes what harvest would store
        assert evalsets.load(folder).hashes.tolist() == [harvested.phash] * 2
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        # 64 px: no reduced-scale JPEG decoding, which a PNG of the same pixels could not match
        x, y = (eval_data.pixels(eval_data.image_folder(f, {}), range(2), 64, pool) for f in (bad, good))
    assert np.array_equal(x, y)


class _Bytes:
    """A byte-level tokenizer: enough for the input pipeline to run."""

    pad_id, sot_id, eot_id = 0, 1, 2

    def ids(self, text: str) -> list[int]:
        return [3 + b for b in text.encode()]


@pytest.mark.parametrize("train", [True, False])
def test_training_input_sees_the_clean_pixels(case, train):
    hostile, clean_png, _ = case
    cfg = InputConfig(shards="unused", image_size=64, context_length=8, train=train)
    prep = Prepare(cfg, TextChooser([], 0.5), _Bytes())
    out = []
    for data in (hostile, clean_png):
        rec = record(jpeg=data, width=W, height=H, alt_texts=("a fox",))
        out.append(prep.random_map(rec, np.random.default_rng(7))["image"])
    assert np.array_equal(out[0], out[1])
