"""Synthetic photographs whose look follows an entity's lineage.

Every level of the lineage contributes something visible, so a model can learn entities and
knowing the hierarchy helps: the root sets the background palette, the class level (two below
the root) the body shape, the next the texture, then the body colour, the accent colour, and
the entity itself the
exact pattern scale and the accent's placement. Each rendering adds its own pose, size, lighting
and noise from a seed, so no two images of an entity are alike.
"""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("ellipse", "triangle", "diamond", "star", "blob", "bar")
TEXTURES = ("plain", "stripes", "dots", "checks", "rings")


def _u(*parts: str) -> float:
    """A stable number in [0, 1) from strings."""
    h = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _hue_rgb(hue: float, sat: float, val: float) -> tuple[int, int, int]:
    i = int(hue * 6) % 6
    f = hue * 6 - int(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    r, g, b = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)


def traits(lineage_ids: tuple[str, ...], entity_id: str) -> dict:
    """The visual traits of an entity from its lineage, root first (`lineage_ids` is parent-first)."""
    chain = list(reversed(lineage_ids)) + [entity_id]  # root ... parent, self

    def level(k: int) -> str:
        return chain[min(k, len(chain) - 1)]

    return {
        "background": _u("bg", level(0)),
        "shape": SHAPES[int(_u("shape", level(2)) * len(SHAPES))],  # class (animal > phylum > class)
        "texture": TEXTURES[int(_u("texture", level(3)) * len(TEXTURES))],  # order
        # family, shifted a little per entity so that species of one genus differ in colour too
        "body_hue": (_u("hue", level(4)) + (_u("shift", entity_id) - 0.5) * 0.12) % 1.0,
        "accent_hue": _u("accent", level(5)),  # genus
        "scale": 4 + int(_u("scale", entity_id) * 10),
        "accent_angle": _u("angle", entity_id) * 2 * math.pi,
        "accent_size": 0.1 + 0.15 * _u("accent-size", entity_id),
    }


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        pts = [(0, -1), (0.9, 0.7), (-0.9, 0.7)]
    elif shape == "diamond":
        pts = [(0, -1), (0.7, 0), (0, 1), (-0.7, 0)]
    elif shape == "star":
        pts = [
            (
                (1 if i % 2 == 0 else 0.45) * math.sin(i * math.pi / 5),
                -(1 if i % 2 == 0 else 0.45) * math.cos(i * math.pi / 5),
            )
            for i in range(10)
        ]
    elif shape == "bar":
        pts = [(-1, -0.35), (1, -0.35), (1, 0.35), (-1, 0.35)]
    else:  # blob: an irregular octagon
        pts = [
            (
                (0.8 + 0.2 * math.sin(3 * i)) * math.cos(i * math.pi / 4),
                (0.8 + 0.2 * math.cos(5 * i)) * math.sin(i * math.pi / 4),
            )
            for i in range(8)
        ]
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def render(
    lineage_ids: tuple[str, ...], entity_id: str, seed: int, size: tuple[int, int] = (500, 400)
) -> Image.Image:
    """One photograph of the entity; `seed` picks pose, size, light and noise.

    Drawn at a third of the size and scaled up: cheap (a few ms), and soft like a photo.
    """
    t = traits(lineage_ids, entity_id)
    rng = np.random.default_rng(int(_u("seed", entity_id, str(seed)) * 2**63))
    full = size
    size = (max(8, size[0] // 3), max(8, size[1] // 3))
    w, h = size
    bg = np.array(_hue_rgb(t["background"], 0.35, 0.55 + 0.3 * rng.random()), dtype=np.float32)
    # light: a gradient at a random angle and a soft bright spot somewhere (varies per photo)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xx / w - 0.5) * math.cos(angle) + (yy / h - 0.5) * math.sin(angle)
    sx, sy, sr = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.25, 0.6) * max(w, h)
    spot = np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * sr * sr))
    grad = (0.8 + 0.5 * ramp + 0.35 * spot)[:, :, None]
    noise = rng.integers(-8, 9, (h, w, 3)).astype(np.float32)
    canvas = np.clip(bg[None, None, :] * grad + noise, 0, 255).astype(np.uint8)
    im = Image.fromarray(canvas)
    body = _hue_rgb(t["body_hue"], 0.75, 0.9)
    accent = _hue_rgb(t["accent_hue"], 0.9, 0.75)
    r = min(w, h) * (0.22 + 0.12 * rng.random())
    cx, cy = w * (0.25 + 0.5 * rng.random()), h * (0.25 + 0.5 * rng.random())
    rot = rng.normal(0, 0.35)
    mask = Image.new("L", size, 0)
    md = ImageDraw.Draw(mask)
    if t["shape"] == "ellipse":
        md.ellipse((cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r), fill=255)
    else:
        md.polygon(_polygon(t["shape"], cx, cy, r, rot), fill=255)
    fill = Image.new("RGB", size, body)
    fd = ImageDraw.Draw(fill)
    step = max(2, t["scale"] * 2 // 3)
    if t["texture"] == "stripes":
        for x in range(-h, w, step * 2):
            fd.polygon([(x, 0), (x + step, 0), (x + step + h, h), (x + h, h)], fill=accent)
    elif t["texture"] == "dots":
        for y in range(0, h, step * 2):
            for x in range(0, w, step * 2):
                fd.ellipse((x, y, x + step, y + step), fill=accent)
    elif t["texture"] == "checks":
        for y in range(0, h, step):
            for x in range((y // step) % 2 * step, w, step * 2):
                fd.rectangle((x, y, x + step - 1, y + step - 1), fill=accent)
    elif t["texture"] == "rings":
        for rr in range(int(r), 0, -step):
            fd.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), outline=accent, width=max(1, step // 3))
    im.paste(fill, (0, 0), mask)
    d = ImageDraw.Draw(im)
    ax, ay = (
        cx + 0.6 * r * math.cos(t["accent_angle"] + rot),
        cy + 0.6 * r * math.sin(t["accent_angle"] + rot),
    )
    a = r * t["accent_size"]
    d.ellipse((ax - a, ay - a, ax + a, ay + a), fill=accent, outline=(20, 20, 20))
    return im.resize(full, Image.Resampling.BILINEAR)


def jpeg_bytes(im: Image.Image, quality: int = 88) -> bytes:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=quality)
    return out.getvalue()
