"""An evaluation set for the sample web, as an ImageFolder directory (one folder per entity id, and
`labels.tsv` with their names): fresh renders the web never served (held out, for zero-shot
evaluation) plus, for some entities, a near copy of an image the web does serve (re-encoded and
resized, as evaluation images found on the web are), which curation must find and remove."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from entitynet.files import write_bytes, write_lines
from entitynet.sampleweb.corpus import WebImage
from entitynet.sampleweb.render import jpeg_bytes, render
from entitynet.sampleweb.server import SampleWeb


def near_copy(jpeg: bytes) -> bytes:
    """The image re-encoded at another quality and scaled by 90%."""
    im = Image.open(io.BytesIO(jpeg)).convert("RGB")
    im = im.resize((im.width * 9 // 10, im.height * 9 // 10), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=75)
    return out.getvalue()


def write_eval_folder(
    web: SampleWeb, out_dir: str | os.PathLike, per_entity: int = 3, plant_every: int = 4
) -> dict:
    """Write the ImageFolder; returns {"images": n, "held_out": n, "planted": n, "entities": n}."""
    out = Path(out_dir)
    served: dict[str, WebImage] = {}
    for im in web.corpus:
        if im.entity_id and not im.fault:
            served.setdefault(im.entity_id, im)
    entity_ids = sorted(served)
    held = planted = 0
    labels = []
    for i, eid in enumerate(entity_ids):
        folder = out / eid
        folder.mkdir(parents=True, exist_ok=True)
        first = served[eid]
        for k in range(per_entity):
            rendered = render(
                web.lineage.get(eid, ()), eid, 10_000_000 + 7919 * i + k, (first.width, first.height)
            )
            write_bytes(folder / f"heldout-{k}.jpg", jpeg_bytes(rendered))
            held += 1
        if plant_every and i % plant_every == 0:
            write_bytes(folder / "webcopy.jpg", near_copy(web.jpeg(first.id)))
            planted += 1
        labels.append(f"{eid}\t{web.labels.get(eid, eid)}")
    write_lines(out / "labels.tsv", labels)
    return {"images": held + planted, "held_out": held, "planted": planted, "entities": len(entity_ids)}
