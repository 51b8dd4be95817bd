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
  16-bit image white);
- everything else (L, 1, P, CMYK, YCbCr, LAB, HSV) goes through Pillow's RGB conversion.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

WHITE = (255, 255, 255)
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1: as stored)."""
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except (ValueError, TypeError, SyntaxError):  # malformed EXIF: show the image as stored
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


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale -> 8-bit L, scaled rather than clipped."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        scaled = a.astype(np.float64) / 257.0
    elif im.mode == "F" and a.size and float(np.nanmax(a)) <= 1.0:
        scaled = a.astype(np.float64) * 255.0  # floats in 0..1
    elif a.size and float(np.nanmax(a)) > 255:
        scaled = a.astype(np.float64) / 257.0  # a 16-bit range stored as 32-bit
    else:
        scaled = a.astype(np.float64)
    return Image.fromarray(np.clip(np.nan_to_num(np.rint(scaled)), 0, 255).astype(np.uint8), "L")


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB with transparency matted on white (see the module docstring)."""
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
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
    """Decode `im` (an opened, not yet loaded image) into upright 8-bit RGB matted on white;
    with `size`, a JPEG may decode at a reduced scale that still covers it. Raises what Pillow
    raises for broken files (OSError, ValueError, SyntaxError) when the pixels are loaded."""
    if size is not None:
        draft(im, size)
    im.load()
    if orientation(im) != 1:  # exif_transpose copies the image even when nothing is to be done
        im = ImageOps.exif_transpose(im)
    return to_rgb(im)
