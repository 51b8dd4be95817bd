"""ImageRecords for the tests, made in one place: `record()` with the fields a test cares about
(the rest are the smallest valid values), `rendered()` with a real JPEG of a sample-web render."""

from __future__ import annotations

import hashlib

from entitynet.records import Entity, ImageRecord, image_key


def record(key: str = "k", url: str = "u", **fields) -> ImageRecord:
    """A record with no real image unless `jpeg` is given; `urls` defaults to (url,)."""
    fields.setdefault("jpeg", b"")
    fields.setdefault("width", 1)
    fields.setdefault("height", 1)
    fields.setdefault("urls", (url,))
    return ImageRecord(key=key, url=url, **fields)


def rendered(entity: Entity, k: int, size: tuple[int, int] = (64, 48), **fields) -> ImageRecord:
    """The `k`-th sample-web render of `entity` as a harvested record: its JPEG, content key,
    SHA-256 and perceptual hash, an alt text naming the entity, linked to it."""
    from entitynet.images.hashes import phash64
    from entitynet.sampleweb.render import jpeg_bytes, render

    im = render(entity.lineage_ids, entity.id, k, size)
    data = jpeg_bytes(im)
    sha = hashlib.sha256(data).hexdigest()
    url = fields.pop("url", f"http://t/{entity.id}/{k}.jpg")
    fields.setdefault("alt_texts", (f"a photo of a {entity.label}",))
    fields.setdefault("entity_ids", (entity.id,))
    return record(
        image_key(sha), url, jpeg=data, width=size[0], height=size[1], sha256=sha, phash=phash64(im), **fields
    )
