"""From downloaded bytes to a training-ready JPEG, or a reason why not.

Checks run cheapest first: the pixel count comes from the header before anything is decoded
(decompression bombs never reach the decoder), JPEGs are decoded at reduced size when they are
much bigger than the target (`draft`), EXIF orientation is applied, transparency is matted on
white, and the result is resized and re-encoded. Every rejection carries one reason from
`REASONS`, the vocabulary of the harvest's accounting; whatever a decoder raises is mapped to one
of them in `decode.decoding`, so no served file can end a harvest.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from PIL import Image

from entitynet.errors import ConfigError
from entitynet.images.decode import MAX_PIXELS, REASONS, ImageRejected, decode, open_image
from entitynet.images.hashes import phash64, sha256
from entitynet.images.prepare import display_size
from entitynet.options import option

__all__ = ["REASONS", "ImageOptions", "ImageRejected", "ProcessedImage", "perceptual_hash", "process_image"]

RESIZE_MODES = ("shorter", "longer", "center_crop", "none")
# Pillow's filters scale their support when downscaling (antialiased); bilinear is ~40% cheaper than
# bicubic at web sizes and close to what OpenCV's INTER_AREA (img2dataset's default) gives.
RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


@dataclass(frozen=True)
class ImageOptions:
    resize_mode: str = option(
        "shorter",
        "the shorter side to --image-size, the longer, a centre crop, or none",
        choices=("shorter", "longer", "center_crop", "none"),
    )
    size: int = option(256, "side of the stored images (see --resize-mode)", flag="--image-size")
    only_if_bigger: bool = True  # never upscale
    min_side: int = option(64, "images whose shorter side is smaller are left out", flag="--min-image-size")
    max_aspect: float = option(
        3.0, "images whose longer / shorter side is larger are left out", flag="--max-aspect-ratio"
    )
    max_pixels: int = 50_000_000  # from the header, before decoding
    quality: int = option(90, "JPEG quality of the stored images", flag="--jpeg-quality")
    resample: str = option(
        "bilinear",
        "resize filter (antialiased when downscaling)",
        choices=("bilinear", "bicubic", "lanczos", "box"),
    )

    def __post_init__(self):
        if self.resample not in RESAMPLE:
            raise ConfigError(f"unknown resample filter {self.resample!r}: use one of {', '.join(RESAMPLE)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(
                f"unknown resize mode {self.resize_mode!r}: use one of {', '.join(RESIZE_MODES)}"
            )
        if self.size < 8 or not 1 <= self.quality <= 100 or self.max_aspect < 1 or self.min_side < 1:
            raise ConfigError(f"image options out of range: {self}")


@dataclass(frozen=True)
class ProcessedImage:
    jpeg: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    sha256: str  # of the downloaded bytes
    phash: int  # 64-bit perceptual hash of the processed image


def target_size(width: int, height: int, opts: ImageOptions) -> tuple[int, int]:
    """Output size before any centre crop."""
    if opts.resize_mode == "none":
        return width, height
    side = max(width, height) if opts.resize_mode == "longer" else min(width, height)
    if opts.only_if_bigger and side <= opts.size:
        return width, height
    scale = opts.size / side
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize(im: Image.Image, opts: ImageOptions) -> Image.Image:
    """The resize (and centre crop) of `opts.resize_mode`, never upscaling when `only_if_bigger`."""
    tw, th = target_size(*im.size, opts) if opts.resize_mode != "none" else im.size
    if (tw, th) != im.size:
        im = im.resize((tw, th), RESAMPLE[opts.resample], reducing_gap=None)
    if opts.resize_mode == "center_crop" and im.width != im.height:
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side))
    return im


def perceptual_hash(
    image: bytes | str | os.PathLike | Image.Image, opts: ImageOptions = ImageOptions()
) -> int:
    """The 64-bit perceptual hash a harvest would store for this image (bytes, a local file, or an
    image `decode.open_image` opened): the same preparation and resize, e.g. for an evaluation
    image to compare against harvested ones. ImageRejected when it cannot be decoded; no size
    filter applies (an evaluation image of any size is hashed, up to `decode.MAX_PIXELS`)."""
    im = image if isinstance(image, Image.Image) else open_image(image, MAX_PIXELS)
    return phash64(resize(decode(im, target_size(*display_size(im), opts)), opts))


def process_image(data: bytes, opts: ImageOptions = ImageOptions()) -> ProcessedImage:
    """Decode, validate, resize and re-encode; raises ImageRejected with a reason, whatever the
    decoder raises."""
    im = open_image(data, opts.max_pixels)
    w0, h0 = im.size
    if min(w0, h0) < opts.min_side:
        raise ImageRejected("too_small", f"{w0}x{h0}")
    if max(w0, h0) / min(w0, h0) > opts.max_aspect:
        raise ImageRejected("bad_aspect", f"{w0}x{h0}")
    shown = display_size(im)
    target = target_size(*shown, opts)
    # a big JPEG decodes at a reduced scale (DCT domain), a big high-depth image is reduced while
    # its depth is converted: both still cover the target
    im = resize(decode(im, target if target != shown else None), opts)
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=opts.quality)
    return ProcessedImage(out.getvalue(), im.width, im.height, w0, h0, sha256(data), phash64(im))
