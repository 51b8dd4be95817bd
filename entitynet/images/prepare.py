"""The one way an image becomes 8-bit RGB pixels, for every reader: harvest, decontamination,
evaluation and the training input all call `prepare`.

A model only sees what its inputs share: if evaluation converted an RGBA PNG with `convert("RGB")`
while harvest matted it on white, the colour hidden under transparent pixels (often black, often
garbage) would make evaluation images look nothing like training images. So orientation, mode,
transparency, palettes, CMYK and high bit depths are handled here, once:

- EXIF orientation is applied;
- transparency (RGBA, LA, PA, palette or RGB/L images with a transparent colour, premultiplied
  modes) is matted on white, so whatever colour sits under a fully transparent pixel is gone;
- 16-bit and 32-bit greyscale are scaled to 8 bits (not clipped: `convert` would turn most of a
  16-bit image white), a block of rows at a time, and first reduced when the reader wants a much
  smaller image, so such an image costs no more memory than an 8-bit one of its size;
- everything else (L, 1, P, CMYK, YCbCr, LAB, HSV) goes through Pillow's RGB conversion.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

WHITE = (255, 255, 255)
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_TRANSPOSE = {  # EXIF orientation -> the transposition that shows the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_BLOCK_PIXELS = 1 << 20  # pixels converted at a time from a high bit depth (8 MiB as float64)


def orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1: as stored)."""
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - malformed EXIF, whatever its parser raises: show the image as stored
        return 1


def display_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) as shown, after EXIF orientation; from the header alone."""
    w, h = im.size
    return (h, w) if orientation(im) in _TRANSPOSED else (w, h)


def draft(im: Image.Image, size: tuple[int, int]) -> None:
    """Let a JPEG decode at a reduced scale that still covers `size` (width, height as displayed,
    i.e. after orientation); a no-op for other formats. Call before the pixels are loaded."""
    if im.format != "JPEG":
        return
    w, h = size
    im.draft("RGB", (h, w) if orientation(im) in _TRANSPOSED else (w, h))


def reduction(stored: tuple[int, int], size: tuple[int, int] | None, turn: int) -> int:
    """The largest whole factor by which an image of `stored` size (width, height before orientation
    `turn`) can shrink and still cover `size` (as displayed); 1 without a size."""
    if size is None:
        return 1
    w, h = size
    if turn in _TRANSPOSED:
        w, h = h, w
    return max(1, min(stored[0] // max(1, w), stored[1] // max(1, h)))


def _high_depth_to_l(im: Image.Image, factor: int = 1) -> Image.Image:
    """16/32-bit integer or float greyscale -> 8-bit L, scaled rather than clipped; with `factor`,
    also reduced by it (the mean of each factor x factor box, partial boxes at the edges).

    Done in blocks of rows: the extra memory is one block, whatever the image's size (a whole-image
    float64 copy would cost 8 bytes a pixel, four times the 16-bit image itself)."""
    w, h = im.size
    rows = max(factor, _BLOCK_PIXELS // max(1, w) // factor * factor)  # whole boxes per block

    def blocks() -> Iterator[tuple[int, np.ndarray]]:
        for top in range(0, h, rows):
            yield top, np.asarray(im.crop((0, top, w, min(h, top + rows))))

    top_value = -np.inf  # nanmax over the image, block by block
    for _, a in blocks():
        if a.size and not (a.dtype.kind == "f" and np.isnan(a).all()):
            top_value = max(top_value, float(np.nanmax(a)))
    if im.mode.startswith("I;16"):
        scale = 1 / 257
    elif im.mode == "F" and top_value <= 1.0:
        scale = 255.0  # floats in 0..1
    elif top_value > 255:
        scale = 1 / 257  # a 16-bit range stored as 32-bit
    else:
        scale = 1.0
    out = Image.new("L", (-(-w // factor), -(-h // factor)))
    for top, a in blocks():
        block = a.astype(np.float64)
        if factor > 1:  # box sums, divided by each box's pixel count (smaller at the edges)
            starts = [np.arange(0, n, factor) for n in block.shape]
            counts = [np.minimum(s + factor, n) - s for s, n in zip(starts, block.shape, strict=True)]
            block = np.add.reduceat(np.add.reduceat(block, starts[0], 0), starts[1], 1)
            block /= np.outer(*counts)
        block *= scale
        eight = np.clip(np.nan_to_num(np.rint(block)), 0, 255).astype(np.uint8)
        out.paste(Image.fromarray(eight, "L"), (0, top // factor))
    return out


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB with transparency matted on white (see the module docstring)."""
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode in HIGH_DEPTH:
        im = _high_depth_to_l(im)  # Pillow keeps no transparency for these modes
    if "transparency" in im.info and im.mode in ("P", "L", "RGB", "1"):
        im = im.convert("RGBA")  # a transparent palette index or colour becomes an alpha channel
    if im.mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")  # un-premultiplies RGBa / La
        out = Image.new("RGB", rgba.size, WHITE)
        out.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def prepare(im: Image.Image, size: tuple[int, int] | None = None) -> Image.Image:
    """Decode `im` (an opened, not yet loaded image) into upright 8-bit RGB matted on white.
    With `size` (width, height as displayed), a JPEG may decode at a reduced scale that still
    covers it, and a high-bit-depth image is reduced by a whole factor that still covers it while
    its depth is converted. Raises whatever the decoder raises for a broken file: readers call it
    through `decode.decode`, which turns that into a reason."""
    if size is not None:
        draft(im, size)
    im.load()
    turn = orientation(im)
    if im.mode in HIGH_DEPTH:  # to 8 bits first, so nothing below handles 2-4 bytes a pixel
        im = _high_depth_to_l(im, reduction(im.size, size, turn))
    if turn in _TRANSPOSE:
        im = im.transpose(_TRANSPOSE[turn])
    return to_rgb(im)
