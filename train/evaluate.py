"""Zero-shot evaluation of a training run: classification over an ImageFolder and image-text
retrieval, written as `results.json` and a markdown report.

    entitynet eval --workdir runs/tiny --imagefolder demo-out/evalset
    python -m train.evaluate --workdir runs/tiny --imagefolder eval/cub200 --templates bare

Class names come from the folder names, or from `labels.tsv` (folder<TAB>name, as the demo's
evaluation set writes: folders named by entity id). A class embedding is the normalised mean of the
normalised embeddings of every template applied to every name of the class. Results are given for
the fixed template set and, separately and labelled as such, for the best single template.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from entitynet.curation.evalsets import IMAGE_SUFFIXES
from entitynet.errors import ConfigError, EntityNetError
from entitynet.files import write_json, write_lines
from entitynet.text import tokenizer as tokenizers
from train.input_pipeline import centre_crop, normalise

TEMPLATES = {
    "bare": ["{c}"],
    "photo": [
        "a photo of a {c}.",
        "a photo of the {c}.",
        "a close-up photo of a {c}.",
        "a good photo of a {c}.",
        "a photo of a small {c}.",
        "a photo of a large {c}.",
        "a picture of a {c}.",
        "an image of a {c}.",
    ],
}


def read_templates(name_or_path: str) -> list[str]:
    if name_or_path in TEMPLATES:
        return TEMPLATES[name_or_path]
    try:
        lines = [x.strip() for x in Path(name_or_path).read_text().splitlines() if x.strip()]
    except OSError as e:
        raise ConfigError(
            f"templates {name_or_path}: {e.strerror}; use bare, photo or a file of lines with {{c}}"
        ) from None
    if not lines or any("{c}" not in x for x in lines):
        raise ConfigError(f"templates file {name_or_path} needs one template per line, each with {{c}}")
    return lines


def image_folder(path: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """(files, labels, class names) of an ImageFolder; names from labels.tsv when present."""
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"evaluation folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    names = dict.fromkeys(classes)
    mapping = root / "labels.tsv"
    if mapping.exists():
        for n, line in enumerate(mapping.read_text().splitlines(), 1):
            parts = line.split("\t")
            if len(parts) != 2:
                raise ConfigError(f"{mapping}:{n}: expected folder<TAB>class name")
            if parts[0] in names:
                names[parts[0]] = parts[1]
    files, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(i)
    if len(classes) < 2 or not files:
        raise ConfigError(f"{root} is not an ImageFolder with at least two class folders of images")
    return files, np.asarray(labels), [names[c] or c for c in classes]


def load_images(files: list[Path], size: int) -> np.ndarray:
    out = np.zeros((len(files), size, size, 3), np.float32)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im.draft("RGB", (size, size))
                out[i] = normalise(centre_crop(im.convert("RGB"), size))
        except OSError as e:
            raise ConfigError(f"evaluation image {f} is not readable: {e}") from None
    return out


def embed(fn, data: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([np.asarray(fn(data[i : i + batch])) for i in range(0, len(data), batch)])


def class_embeddings(
    model, tokenizer, names: list[list[str]], templates: list[str], context: int
) -> np.ndarray:
    """(classes, templates, dim): each template's normalised embedding, averaged over the names."""
    encode = jax.jit(model.encode_text)
    out = []
    for synonyms in names:
        texts = [t.format(c=s) for t in templates for s in synonyms]
        z = embed(encode, tokenizers.encode(tokenizer, texts, context)).reshape(
            len(templates), len(synonyms), -1
        )
        z = z.mean(axis=1)
        out.append(z / np.linalg.norm(z, axis=-1, keepdims=True))
    return np.stack(out)


def classify(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1, top-5, macro accuracy, per-class accuracy and the most confused pairs."""
    logits = image_emb @ class_emb.T
    k = min(5, class_emb.shape[0])
    top = np.argsort(-logits, axis=1)[:, :k]
    hit1 = top[:, 0] == labels
    per_class = [
        float(hit1[labels == c].mean()) if np.any(labels == c) else float("nan")
        for c in range(len(class_emb))
    ]
    confused: dict = {}
    for t, p in zip(labels[~hit1], top[~hit1, 0], strict=True):
        confused[(int(t), int(p))] = confused.get((int(t), int(p)), 0) + 1
    return {
        "top1": float(hit1.mean()),
        "top5": float(np.any(top == labels[:, None], axis=1).mean()),
        "macro": float(np.nanmean(per_class)),
        "per_class": per_class,
        "confused": sorted(([a, b, n] for (a, b), n in confused.items()), key=lambda x: -x[2])[:10],
    }


def retrieval(image_emb, text_emb, text_image: np.ndarray, ks=(1, 5, 10), chunk: int = 4096) -> dict:
    """Image->text and text->image Recall@k and median rank; `text_image[j]` is the image of text j.
    Chunked matrix products and ranks by counting on the device (no per-row Python loop)."""
    img = jnp.asarray(image_emb)
    txt = jnp.asarray(text_emb)
    owner = jnp.asarray(text_image)

    @jax.jit
    def t2i_rank(t, own):  # rank of the true image for each text: images scoring higher than it
        s = t @ img.T
        true = jnp.take_along_axis(s, own[:, None], axis=1)
        return jnp.sum(s > true, axis=1)

    @jax.jit
    def i2t_rank(i, first):  # best rank over the image's texts
        s = i @ txt.T
        mine = owner[None, :] == first[:, None]
        best_true = jnp.max(jnp.where(mine, s, -jnp.inf), axis=1, keepdims=True)
        return jnp.sum((s > best_true) & ~mine, axis=1)

    t_ranks = np.concatenate(
        [
            np.asarray(t2i_rank(txt[i : i + chunk], owner[i : i + chunk]))
            for i in range(0, len(text_image), chunk)
        ]
    )
    ids = jnp.arange(len(image_emb))
    i_ranks = np.concatenate(
        [
            np.asarray(i2t_rank(img[i : i + chunk], ids[i : i + chunk]))
            for i in range(0, len(image_emb), chunk)
        ]
    )
    out = {}
    for name, ranks in (("image_to_text", i_ranks), ("text_to_image", t_ranks)):
        out[name] = {f"R@{k}": float(np.mean(ranks < k)) for k in ks}
        out[name]["median_rank"] = float(np.median(ranks) + 1)
    return out


def evaluate_folder(workdir: str, folder: str, templates: str = "photo", out: str | None = None) -> dict:
    from train.export import load_run

    model, mcfg, step = load_run(workdir)
    cfg = json.loads((Path(workdir) / "config.json").read_text())
    tokenizer = tokenizers.load(cfg["data"]["tokenizer"])
    files, labels, names = image_folder(folder)
    tpl = read_templates(templates)
    images = embed(jax.jit(model.encode_image), load_images(files, mcfg.vision.image_size), 64)
    per_template = class_embeddings(model, tokenizer, [[n] for n in names], tpl, mcfg.text.context_length)
    fixed_emb = per_template.mean(axis=1)
    fixed_emb /= np.linalg.norm(fixed_emb, axis=-1, keepdims=True)
    fixed = classify(images, fixed_emb, labels)
    singles = [classify(images, per_template[:, t], labels)["top1"] for t in range(len(tpl))]
    best = int(np.argmax(singles))
    result = {
        "workdir": str(workdir),
        "step": step,
        "eval_set": str(folder),
        "images": len(files),
        "classes": len(names),
        "chance_top1": 1.0 / len(names),
        "templates": templates,
        "fixed_templates": {k: fixed[k] for k in ("top1", "top5", "macro")},
        "best_single_template": {"template": tpl[best], "top1": singles[best]},
        "per_class": dict(zip(names, fixed["per_class"], strict=True)),
        "confused": [[names[a], names[b], n] for a, b, n in fixed["confused"]],
    }
    out_dir = Path(out or Path(workdir) / "eval")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", result)
    write_lines(out_dir / "report.md", report_lines(result))
    return result


def report_lines(r: dict) -> list[str]:
    per = sorted(r["per_class"].items(), key=lambda kv: kv[1])
    fx, best = r["fixed_templates"], r["best_single_template"]
    return [
        f"# Zero-shot evaluation: {r['eval_set']}",
        "",
        f"Run `{r['workdir']}` at step {r['step']}; {r['images']:,} images, {r['classes']:,} classes "
        f"(chance top-1 {r['chance_top1']:.2%}).",
        "",
        "| | top-1 | top-5 | macro |",
        "|---|---:|---:|---:|",
        f"| fixed templates ({r['templates']}, averaged) | {fx['top1']:.2%} | {fx['top5']:.2%} | {fx['macro']:.2%} |",
        f"| best single template (chosen on this set: optimistic) `{best['template']}` | {best['top1']:.2%} | | |",
        "",
        "Worst classes: " + ", ".join(f"{n} {a:.0%}" for n, a in per[:5]),
        "",
        "Best classes: " + ", ".join(f"{n} {a:.0%}" for n, a in per[-5:]),
        "",
        "Most confused (true -> predicted, count): "
        + ", ".join(f"{a} -> {b} ({n})" for a, b, n in r["confused"][:5]),
    ]


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--imagefolder", required=True)
    ap.add_argument("--templates", default="photo", help="bare, photo, or a file of templates with {c}")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    try:
        r = evaluate_folder(args.workdir, args.imagefolder, args.templates, args.out)
    except EntityNetError as e:
        print(f"entitynet: error: {e}", file=sys.stderr)
        return 2
    print(summary(r))
    return 0


def summary(r: dict) -> str:
    return (
        f"zero-shot on {r['images']:,} images of {r['classes']:,} classes: top-1 {r['fixed_templates']['top1']:.2%} "
        f"(chance {r['chance_top1']:.2%}), top-5 {r['fixed_templates']['top5']:.2%}, "
        f"best single template {r['best_single_template']['top1']:.2%}"
    )


if __name__ == "__main__":
    sys.exit(main())
