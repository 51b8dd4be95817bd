"""An evaluation's pages in the explorer: per class its accuracy and its example images with their
top-5 predictions, and the most confused pairs as image pairs.

Reads what `entitynet eval` writes: `results.json`, `predictions.jsonl` (one labelled image a
line) and `examples/<i>.jpg` (a few thumbnails per class). What the site holds of it is bounded
by the classes (the examples), not by the size of the set.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from entitynet.errors import ConfigError
from entitynet.explore.site import slug, write_data
from entitynet.storage import STORE


def eval_dirs(path: str) -> list[Path]:
    """The evaluation result directories under `path`: itself when it holds results.json, else
    its subdirectories that do (a run's `eval/`, or a workdir)."""
    root = Path(path)
    if (root / "results.json").is_file():
        return [root]
    for base in (root, root / "eval"):
        found = sorted(p.parent for p in base.glob("*/results.json"))
        if found:
            return found
    raise ConfigError(
        f"--eval {path}: no results.json in it or its subdirectories; run `entitynet eval` first, "
        "and give its output directory or the run's workdir"
    )


def add_evaluation(site: str, result_dir: Path) -> dict:
    """Copy one evaluation into the site; returns its row in the list of evaluations."""
    try:
        result = json.loads((result_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{result_dir}/results.json is not readable ({e}); evaluate again") from None
    zs = result.get("zero_shot")
    name = f"{result.get('eval_set', result_dir.name)} ({result_dir.name})"
    # readable, and unique per results directory (two runs named alike, one set, never share a page)
    digest = hashlib.sha1(str(result_dir.resolve()).encode()).hexdigest()[:8]
    key = slug(f"{Path(str(result.get('workdir', ''))).name}-{result_dir.name}-{digest}")
    row = {
        "slug": key,
        "name": name,
        "workdir": result.get("workdir", ""),
        "step": result.get("step"),
        "images": result.get("images"),
        "zero_shot": {k: zs["fixed_templates"][k] for k in ("top1", "top5", "macro")} if zs else None,
        # how a prediction counted right (older results do not say: ""), and the exact-entity
        # accuracy of a set whose images are linked to several entities (held-out splits)
        "counting": (zs.get("counting_rule") or "") if zs else "",
        "exact": (zs.get("exact") or {}).get("fixed_templates") if zs else None,
        "retrieval": result.get("retrieval"),
    }
    classes: dict[str, dict] = {}
    confused_imgs: dict[tuple[str, str], str] = {}
    dest = Path(site) / "eval" / key
    predictions = result_dir / "predictions.jsonl"
    if zs:  # every class with its accuracy; the examples from predictions.jsonl when there is one
        names = list(zs["per_class"])
        for n in names:
            classes[n] = {
                "name": n,
                "entity": zs.get("class_entities", {}).get(n, ""),
                "accuracy": zs["per_class"][n],
                "images": None,  # counted from predictions.jsonl (evaluations before it have none)
                "examples": [],
            }
    if zs and predictions.is_file():
        for each in classes.values():
            each["images"] = 0
        pairs = {(a, b) for a, b, _ in zs.get("confused", [])}
        with predictions.open(encoding="utf-8") as f:
            for line in f:  # one image at a time; only the ones with thumbnails are kept
                p = json.loads(line)
                found = classes.get(p["label"])
                if found is None:
                    continue
                c = found
                c["images"] += 1
                if not p.get("example"):
                    continue
                src = result_dir / p["example"]
                if not src.is_file():
                    continue
                img = f"eval/{key}/{p['i']}.jpg"
                STORE.write(str(dest / f"{p['i']}.jpg"), src.read_bytes())
                c["examples"].append({"img": img, "right": p["right"], "top5": p["top5"]})
                pair = (p["label"], p["top5"][0][0])
                if not p["right"] and pair in pairs:
                    confused_imgs.setdefault(pair, img)
        for c in classes.values():
            c["examples"].sort(key=lambda x: (x["right"], x["img"]))
    # a confused pair shows an image of a taken for b beside an image of b (a right one if any)
    firsts = {
        n: next((x["img"] for x in sorted(c["examples"], key=lambda x: not x["right"])), "")
        for n, c in classes.items()
    }
    confused = [
        {"a": a, "b": b, "count": n, "a_img": confused_imgs.get((a, b), ""), "b_img": firsts.get(b, "")}
        for a, b, n in (zs or {}).get("confused", [])
    ]
    write_data(
        STORE,
        site,
        f"data/eval/{key}.js",
        {**row, "classes": list(classes.values()), "confused": confused},
    )
    return row
