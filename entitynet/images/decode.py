"""The one place where image bytes become pixels, and where every way that can fail becomes a reason.

Pillow recognises some forty formats; its plugins fail in many ways: OSError, SyntaxError and
ValueError mostly, but also RuntimeError (AVIF), NotImplementedError (BLP, DDS), KeyError,
ZeroDivisionError (the BUFR, GRIB and HDF5 stubs), DecompressionBombError, MemoryError. Listing
the types would miss the next plugin's, so `decoding` maps *any* exception raised while an image is
opened or decoded to one of the documented reasons of `REASONS`:

    not_an_image   no plugin recognises the bytes (an HTML error page, a truncated download)
    too_large      more pixels than the reader allows (from the header, before decoding), a
                   decompression bomb, or a decode that ran out of memory (MemoryError: the image
                   needs more memory than the worker has, which is a size problem, not a broken file)
    decode_error   anything else the decoder raised (broken or unsupported data), and a file
                   that cannot be read
    too_small, bad_aspect   the harvest's own filters (`process.process_image`)

KeyboardInterrupt and SystemExit are not exceptions of the decoder and pass through untouched.
Harvest, thumbnails, decontamination hashing, evaluation loading and the training input all decode
through `open_image` / `decode` here, so one garbled 128-byte file is one counted rejection in each,
never a traceback.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, UnidentifiedImageError

from entitynet.images.prepare import prepare

REASONS = ("not_an_image", "decode_error", "too_large", "too_small", "bad_aspect")

# Formats whose decoding runs another program on the bytes: Pillow hands EPS to Ghostscript (an
# interpreter of a programming language) when it is installed. A web image in one of them is not
# an image we read: `not_an_image`, like bytes no plugin recognises.
EXCLUDED_FORMATS = frozenset({"EPS"})
Image.init()
FORMATS = tuple(sorted(f for f in Image.OPEN if f not in EXCLUDED_FORMATS))

# Pillow warns (UserWarning) about damaged metadata it reads past (corrupt EXIF, truncated TIFF
# tags); for a harvest of millions of web images that is noise on the terminal, not news: the image
# decodes or is rejected with a reason either way.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\..*)?$")
# Readers without a limit of their own (evaluation, thumbnails, decontamination) refuse what Pillow
# would warn about as a possible decompression bomb.
MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)

Source = bytes | str | os.PathLike
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class ImageRejected(ValueError):
    """An image that will not be used, with one reason from `REASONS`. A ValueError, so that code
    which already treats a broken image as a bad value keeps doing so."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail

    def __reduce__(self):  # pickled by Beam and process pools: rebuilt from reason and detail
        return type(self), (self.reason, self.detail)


def _detail(e: BaseException) -> str:
    """The exception in one line, without the memory addresses some messages carry (a harvest
    writes it into its outcomes, which a re-run must reproduce byte for byte)."""
    text = _ADDRESS.sub("", " ".join(str(e).split()))
    return f"{type(e).__name__}: {text}"[:200] if text else type(e).__name__


@contextmanager
def decoding() -> Iterator[None]:
    """Inside the block, any exception (not KeyboardInterrupt or SystemExit) becomes ImageRejected
    with its reason (see the module docstring). Keep the block to opening and decoding: what it
    wraps is treated as the decoder."""
    try:
        yield
    except ImageRejected:
        raise
    except UnidentifiedImageError as e:  # its message is the stream's repr: nothing to add
        raise ImageRejected("not_an_image") from e
    except (Image.DecompressionBombError, MemoryError) as e:
        raise ImageRejected("too_large", _detail(e)) from e
    except Exception as e:  # every other decoder failure: one documented outcome, not a traceback
        raise ImageRejected("decode_error", _detail(e)) from e


def open_image(source: Source, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """`source` (encoded bytes, or the path of a local file) opened: its header read, its pixels not
    yet decoded. ImageRejected when no plugin recognises it, it cannot be read, or its header
    promises no pixels or more than `max_pixels`."""
    with decoding():
        if not isinstance(source, bytes):
            with open(source, "rb") as f:  # read whole: nothing stays open while it is decoded
                source = f.read()
        im = Image.open(io.BytesIO(source), formats=FORMATS)
    w, h = im.size
    if w < 1 or h < 1:  # a format Pillow recognises and cannot read (the BUFR, GRIB, HDF5 stubs)
        raise ImageRejected("decode_error", f"{w}x{h}: no pixels to decode")
    if w * h > max_pixels:
        raise ImageRejected("too_large", f"{w}x{h} pixels, more than {max_pixels}")
    return im


def decode(
    source: Source | Image.Image, size: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Upright 8-bit RGB pixels (`prepare.prepare`) of `source`: bytes, a local file, or an image
    `open_image` opened and not yet decoded. With `size` (width, height as displayed), a big image
    may decode at a reduced scale that still covers it. ImageRejected for whatever goes wrong."""
    im = source if isinstance(source, Image.Image) else open_image(source, max_pixels)
    with decoding():
        return prepare(im, size)
