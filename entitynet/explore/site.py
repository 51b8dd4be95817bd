"""The explorer site's layout and its data files.

    SITE/index.html, entity.html, eval.html, explorer.js, explorer.css   the pages (copied assets)
    SITE/explorer.json                     what the site was built from (marks the directory as a site)
    SITE/data/index.js                     the entity index and the dataset's summary
    SITE/data/e/<entity>/<status>-<n>.js   one page of an entity's images ("kept" or "removed")
    SITE/data/e/<entity>/map.js            the entity's images placed in 2-D (with --embeddings)
    SITE/data/evals.js, data/eval/<set>.js the evaluations
    SITE/thumbs-<size>/<ab>/<key>.jpg      one thumbnail per record (content keyed: a re-run reuses them)
    SITE/eval/<set>/<i>.jpg                the evaluation images shown

A data file is a script calling `EXPLORER.data(name, {...})`: browsers refuse `fetch()` of local
files, not scripts, so the site works opened from disk as well as served.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from entitynet.errors import OutputError
from entitynet.storage import STORE

MARKER = "explorer.json"
BUILDING = ".building"  # written first, removed last: the site of a build that did not finish
ASSETS = ("index.html", "entity.html", "eval.html", "explorer.js", "explorer.css")
PAGE_SIZE = 60  # images per page of an entity
STATUSES = ("kept", "removed")


def slug(name: str) -> str:
    """A file name for an entity id or an evaluation set name: the id itself when it is plain
    (Q140), else its readable part and a digest (never two names on one file)."""
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", name) and not name.startswith("."):
        return name
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:40]
    return f"{readable}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"


def thumb_path(key: str, size: int) -> str:
    """A record's thumbnail, relative to the site."""
    return f"thumbs-{size}/{key[:2]}/{key}.jpg"


def page_path(entity: str, status: str, page: int) -> str:
    return f"data/e/{slug(entity)}/{status}-{page}.js"


def map_path(entity: str) -> str:
    return f"data/e/{slug(entity)}/map.js"


def pages_of(count: int, page_size: int) -> int:
    return max(1, -(-count // page_size)) if count else 0


def page_of(key: str, pages: int) -> int:
    """The page a record goes to among an entity's `pages`: by its key's digest, so each page is
    written from its own group of rows (no worker holds an entity's whole list) and a re-run puts
    every record on the same page. Pages hold about the page size each; one the digests leave
    empty is written empty afterwards (`fill_pages`)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % pages


def script(name: str, obj: Any) -> bytes:
    """A data file: `EXPLORER.data(name, obj)`. `</` is escaped so no string closes the script."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).replace("</", "<\\/")
    return f"EXPLORER.data({json.dumps(name)},{text});\n".encode()


def read_script(data: bytes) -> tuple[str, Any]:
    """(name, object) of a data file (tests and tools)."""
    m = re.fullmatch(rb'EXPLORER\.data\(("[^"]*"),(.*)\);\n', data, re.S)
    if not m:
        raise ValueError("not an explorer data file")
    return json.loads(m.group(1)), json.loads(m.group(2).replace(b"<\\/", b"</"))


def write_data(store, site: str, name: str, obj: Any) -> None:
    store.write(store.join(site, name), script(name, obj))


def check_target(site: str) -> None:
    """Refuse to build into anything but a new or empty directory or an earlier site."""
    root = Path(site)
    ours = (root / MARKER).exists() or (root / BUILDING).exists()  # a site, or a build that was killed
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not ours)):
        raise OutputError(
            f"{site} exists and is not an explorer site (no {MARKER}); give an empty or new --out directory"
        )
    root.mkdir(parents=True, exist_ok=True)


def prepare(site: str, built_from: dict) -> None:
    """Make the (checked, locked) `site` ready for a build: an earlier site's data and evaluation
    pages go, its thumbnails stay for reuse."""
    root = Path(site)
    STORE.write(str(root / BUILDING), json.dumps(built_from, indent=2, sort_keys=True).encode())
    (root / MARKER).unlink(missing_ok=True)  # written again last: a killed build is not a site
    for sub in ("data", "eval"):
        shutil.rmtree(root / sub, ignore_errors=True)
    for name in ASSETS:
        STORE.write(
            str(root / name), resources.files("entitynet.explore").joinpath("assets", name).read_bytes()
        )


def fill_pages(store, site: str, index: list[dict]) -> int:
    """Write the pages the key digests left empty (an entity's images spread over its pages by
    digest, so a page of a small entity may get none): every page an index row counts exists.
    Returns how many were empty."""
    empty = 0
    for row in index:
        for status in STATUSES:
            for page in range(row["pages"][status]):
                name = page_path(row["id"], status, page)
                if not store.exists(store.join(site, name)):
                    write_data(
                        store, site, name, {"entity": row["id"], "status": status, "page": page, "rows": []}
                    )
                    empty += 1
    return empty


def finish(site: str, built_from: dict) -> None:
    """The marker first, then `.building` goes: a kill between them leaves a site that is still
    recognised as one (and rebuilt); then thumbnails of another size are pruned."""
    root = Path(site)
    STORE.write(str(root / MARKER), json.dumps(built_from, indent=2, sort_keys=True).encode())
    (root / BUILDING).unlink(missing_ok=True)
    for old in root.glob("thumbs-*"):  # thumbnails of another size are never shown again
        if old.name != f"thumbs-{built_from['thumb_size']}":
            shutil.rmtree(old, ignore_errors=True)
