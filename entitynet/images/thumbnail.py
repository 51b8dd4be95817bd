"""Small JPEG thumbnails for looking at data (the explorer's grids, evaluation examples)."""

from __future__ import annotations

import io

from PIL import Image

from entitynet.images.decode import decode

THUMB_SIZE = 160  # the longer side, in pixels


def thumbnail(image: bytes | Image.Image, size: int = THUMB_SIZE, quality: int = 80) -> bytes:
    """`image` (encoded bytes, or an image opened and not yet decoded) upright, in RGB, its longer
    side at most `size`, as JPEG bytes. ImageRejected (a ValueError) for an image that cannot be
    decoded, whatever its decoder raises."""
    im = decode(image, (size, size))
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()
