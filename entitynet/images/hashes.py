"""Hashes of an image: the exact content hash (SHA-256 of the bytes) and a 64-bit perceptual hash.

The perceptual hash is the classic DCT hash (pHash): the image as 32x32 grey levels, its 2-D
DCT, the 8x8 lowest frequencies compared with their median. Re-encoding, resizing and small edits
flip few of the 64 bits; different images differ in about half of them.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

_N = 32
_K = np.arange(_N)
# DCT-II basis: _DCT[k, n] = cos(pi * (2n + 1) * k / (2N))
_DCT = np.cos(np.pi * (2 * _K[None, :] + 1) * _K[:, None] / (2 * _N))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def phash64(image: Image.Image) -> int:
    """64-bit perceptual hash of a Pillow image, as an unsigned integer."""
    grey = np.asarray(
        image.convert("L").resize((_N, _N), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float64
    )
    low = (_DCT @ grey @ _DCT.T)[:8, :8].ravel()
    median = np.median(low[1:])  # the DC term would dominate the median
    bits = low > median
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
