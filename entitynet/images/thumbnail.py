"""Small JPEG thumbnails for looking at data (the explorer's grids)."""

from __future__ import annotations

import io

from PIL import Image

from entitynet.images.prepare import prepare

THUMB_SIZE = 160  # the longer side, in pixels


def thumbnail(image: bytes | Image.Image, size: int = THUMB_SIZE, quality: int = 80) -> bytes:
    """`image` (encoded bytes or an opened image) upright, in RGB, its longer side at most `size`,
    as JPEG bytes. Raises what Pillow raises for a broken image."""
    if isinstance(image, bytes):
        with Image.open(io.BytesIO(image)) as opened:
            return thumbnail(opened, size, quality)
    im = prepare(image, (size, size))
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()
