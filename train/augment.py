"""Image augmentation for small data, on the loader's uint8 crops (after RandomResizedCrop).

    aug = Augment(flip=0.5, jitter=0.8, greyscale=0.2, blur=0.2)
    image = apply(image, aug, rng)          # (s, s, 3) uint8 -> (s, s, 3) uint8

Each field is the chance that one transform is applied to an image, in this order: horizontal flip;
colour jitter (brightness, contrast and saturation each scaled by a factor drawn from
[1 - jitter_strength, 1 + jitter_strength], in that order, SimCLR's recipe without the hue
shift, which renames colours that name species); greyscale (ITU-R 601 luma in all three
channels); Gaussian blur (sigma drawn from `blur_sigma`, in pixels of the crop); posterize (the
top 3 to 5 bits of each channel kept). The defaults are all off, so a run without augmentation
draws no random numbers here and keeps the stream of earlier versions; configs/small_data.py
turns on what measured better on drawings in styles the model never saw (benchmarks/README.md, "Model quality").

Every draw uses the generator the loader hands the record's transform, so a seed fixes the stream
and a resumed run continues it. At 64 px the whole chain costs about a tenth of decoding and
cropping one record (benchmarks/input_pipeline.py prints both).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class Augment:
    flip: float = 0.0
    jitter: float = 0.0
    jitter_strength: float = 0.3
    greyscale: float = 0.0
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.4, 1.2)
    posterize: float = 0.0

    def active(self) -> bool:
        return any((self.flip, self.jitter, self.greyscale, self.blur, self.posterize))


CHANCES = ("flip", "jitter", "greyscale", "blur", "posterize")


def apply(image: np.ndarray, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """`image` (h, w, 3) uint8 with the transforms `aug` draws; a transform at chance 0 draws nothing."""
    if aug.flip and rng.random() < aug.flip:
        image = image[:, ::-1]
    if aug.jitter and rng.random() < aug.jitter:
        low, high = 1.0 - aug.jitter_strength, 1.0 + aug.jitter_strength
        image = jitter(image, *rng.uniform(low, high, size=3))
    if aug.greyscale and rng.random() < aug.greyscale:
        image = greyscale(image)
    if aug.blur and rng.random() < aug.blur:
        image = blur(image, float(rng.uniform(*aug.blur_sigma)))
    if aug.posterize and rng.random() < aug.posterize:
        image = posterize(image, int(rng.integers(3, 6)))
    return np.ascontiguousarray(image)


def jitter(image: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """torchvision's ColorJitter arithmetic with fixed factors: brightness scales the pixels,
    contrast blends with the image's mean grey, saturation with each pixel's grey (clipped to
    0..255 after each; in place on one float32 copy)."""
    x = image.astype(np.float32)
    flat = x.reshape(-1, 3)
    x *= brightness
    np.clip(x, 0, 255, out=x)
    mean = float(np.dot(flat, LUMA).mean())
    x -= mean
    x *= contrast
    x += mean
    np.clip(x, 0, 255, out=x)
    grey = np.dot(flat, LUMA).reshape(*x.shape[:2], 1)
    x -= grey
    x *= saturation
    x += grey
    np.clip(x, 0, 255, out=x)
    return np.rint(x, out=x).astype(np.uint8)


def greyscale(image: np.ndarray) -> np.ndarray:
    grey = (image.astype(np.float32) @ LUMA).round().clip(0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of `sigma` pixels (OpenCV when installed, else Pillow; edges reflected)."""
    cv2 = opencv()
    if cv2 is not None:
        frame = np.ascontiguousarray(image)
        return cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).filter(ImageFilter.GaussianBlur(sigma)))


def posterize(image: np.ndarray, bits: int) -> np.ndarray:
    """Keep the top `bits` bits of every channel (PIL's ImageOps.posterize)."""
    return image & np.uint8((0xFF << (8 - bits)) & 0xFF)


@functools.cache
def opencv():
    """cv2, single-threaded (the loader's threads and workers are the parallelism), or None."""
    try:
        import cv2
    except ImportError:
        return None
    cv2.setNumThreads(1)
    return cv2
