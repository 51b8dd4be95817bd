"""Zero-shot classification and image-text retrieval of a training run (or an exported model),
written as `results.json`, `report.md` and PNG plots; several runs side by side.

    entitynet eval --workdir runs/tiny --imagefolder demo-out/evalset
    entitynet eval --workdir runs/tiny --tfds oxford_flowers102:test --tfds-data-dir ~/tensorflow_datasets
    entitynet eval --workdir runs/tiny --heldout --split test
    entitynet eval --workdir runs/a --workdir runs/b --label "KG + alt" --label "alt only" \
        --imagefolder demo-out/evalset --out reports/ablation
    python -m train.evaluate ...   (same flags)

A class embedding is the normalised mean of the normalised embeddings of every template (by
default the templates the run was trained with, `data.templates`, else the 80 OpenAI ImageNet
templates), each averaged over the class's names (`--synonyms`: every name of its entity in the
knowledge graph; label folders are matched to entities by their names). Results are given for
that template set, for the bare class names beside it, and, labelled as optimistic, for the best
single template on the set. Retrieval (Recall@1/5/10, median rank, several texts per image) runs
as chunked matrix products on device.

Where the classes map to entities, the accuracy on living classes (animal or plant and below) is
given beside the rest (results.json `living_split`); `--name-style` scores the classes again named
in BioCLIP's name styles (`entitynet.text.names`), side by side, under the fixed template set and,
labelled apart, the best of the prompt sets (results.json `name_styles`, `name_style_protocol`).

How a prediction counts is said beside every number (summary, results.json `counting_rule`,
report.md): on an ImageFolder or TFDS set it is right only when it is the labelled class exactly;
on the held-out split when it is any entity the image is linked to, ancestors included when linked,
and exact-entity accuracy (results.json `exact`) counts the image's most specific linked entity
alone.

Memory stays flat in the number of images evaluated, beyond what each image needs kept: its
embedding (and its texts' embeddings, float32: 4 bytes a dimension), its label, its right answers
as class indices and its texts. Zero-shot scores `SCORE_CHUNK` images at a time, retrieval ranks
blocks of `RETRIEVAL_BLOCK` similarities, texts are tokenised a batch at a time, and the
per-image predictions go to a temporary file until predictions.jsonl is written. Every chunk is
a product of one shape spanning all classes (all texts), so on the CPU each score is bit for bit
the one a single product over all images gives: results do not change with the chunk size.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from entitynet.errors import ConfigError, EntityNetError
from entitynet.files import ensure_writable_dir, write_json
from entitynet.text import tokenizer as tokenizers
from entitynet.text.templates import fill, read_templates


def embed(fn, data, batch: int = 256) -> np.ndarray:
    """`fn` over `data` in batches of one shape (the last one padded), so it compiles once. `data`
    is an array or anything sliced into one (`Tokens`: texts tokenised a batch at a time); the
    output is filled in place, never a list of batches and a copy of them."""
    if len(data) == 0:
        raise ConfigError("nothing to embed")
    batch = min(batch, len(data))
    out = None
    for i in range(0, len(data), batch):
        chunk = data[i : i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        z = np.asarray(fn(chunk))[:n]
        if out is None:
            from train.eval_data import empty_aligned

            out = empty_aligned((len(data), *z.shape[1:]), z.dtype)
        out[i : i + n] = z
    return out


class Tokens:
    """Texts as token ids, tokenised when a slice of them is taken: `embed` holds a batch of token
    ids at a time, not (texts, context) of them."""

    def __init__(self, tokenizer, texts: list[str], context: int):
        self.tokenizer, self.texts, self.context = tokenizer, texts, context

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, rows: slice) -> np.ndarray:
        return tokenizers.encode(self.tokenizer, self.texts[rows], self.context)


def class_embeddings(
    model, tokenizer, names: list[list[str]], templates: list[str], context: int
) -> np.ndarray:
    """(classes, templates, dim): each template's normalised embedding, averaged over the class's
    names and normalised again. Every text of every class goes through the encoder in one pass."""
    texts = [fill(t, s) for synonyms in names for t in templates for s in synonyms]
    z = embed(jax.jit(model.encode_text), Tokens(tokenizer, texts, context))
    out = np.zeros((len(names), len(templates), z.shape[-1]), np.float32)
    start = 0
    for c, synonyms in enumerate(names):
        block = z[start : start + len(templates) * len(synonyms)].reshape(len(templates), len(synonyms), -1)
        out[c] = block.mean(axis=1)
        start += len(templates) * len(synonyms)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


SCORE_CHUNK = 2048  # images scored at a time: their logits and order are (chunk, classes)


def _right(answers, rows: np.ndarray, top: np.ndarray) -> np.ndarray:
    """(rows, k) whether each of the top-k classes is one of the image's answers (`Answers`, or an
    (images, classes) bool array)."""
    dense = answers.dense(rows) if hasattr(answers, "dense") else np.asarray(answers)[rows]
    return np.take_along_axis(dense, top, axis=1)


def classify(
    image_emb: np.ndarray,
    class_emb: np.ndarray,
    labels: np.ndarray,
    correct=None,
    chunk: int = SCORE_CHUNK,
    each: Callable | None = None,
    exact=None,
) -> dict:
    """Top-1, top-5, macro accuracy, per-class accuracy and the most confused pairs. `labels[i]` is
    image i's class (-1: none, left out); with `correct` (the set's `Answers`, or an (images,
    classes) bool array) a prediction is right when it is any of the image's classes (multi-label
    sets); per class counts by `labels`. With `exact` (answers as `correct`: each image's most
    specific classes) the result also holds `exact`: top-1, top-5 and macro counted by those alone.

    Scored `chunk` images at a time (memory: chunk x classes, whatever the number of images), each
    chunk a product of one shape (the last one overlaps the one before), so the scores are those of
    one product over every image. `each(images, top, top_scores, right, exact)` is called per chunk
    with the chunk's image indices, their top-5 class indices best first, their scores, whether the
    first is right and whether it is exactly right (None without `exact`): the per-image
    predictions."""
    classes = len(class_emb)
    kept = np.flatnonzero(labels >= 0)
    k = min(5, classes)
    chunk = min(chunk, len(kept)) or 1
    counts = np.bincount(labels[kept], minlength=classes)
    hits = np.zeros(classes, np.int64)
    hit1_count = hit5_count = 0
    exact_hits = np.zeros(classes, np.int64)
    exact1_count = exact5_count = 0
    confused: dict = {}
    for start in range(0, len(kept), chunk):
        lo = min(start, len(kept) - chunk)  # the last chunk: as wide as the others, overlapping
        logits = (image_emb[kept[lo : lo + chunk]] @ class_emb.T)[start - lo :]
        rows = kept[start : lo + chunk]
        lab = labels[rows]
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        right = top == lab[:, None] if correct is None else _right(correct, rows, top)
        hit1 = right[:, 0]
        hits += np.bincount(lab[hit1], minlength=classes)
        hit1_count += int(hit1.sum())
        hit5_count += int(right.any(axis=1).sum())
        exact1 = None
        if exact is not None:
            right_exact = _right(exact, rows, top)
            exact1 = right_exact[:, 0]
            exact_hits += np.bincount(lab[exact1], minlength=classes)
            exact1_count += int(exact1.sum())
            exact5_count += int(right_exact.any(axis=1).sum())
        pairs, n = np.unique(lab[~hit1].astype(np.int64) * classes + top[~hit1, 0], return_counts=True)
        for pair, c in zip(pairs.tolist(), n.tolist(), strict=True):
            confused[divmod(pair, classes)] = confused.get(divmod(pair, classes), 0) + c
        if each is not None:
            each(rows, top, np.take_along_axis(logits, top, axis=1), hit1, exact1)
    total = len(kept)
    per_class = [h / c if c else float("nan") for h, c in zip(hits.tolist(), counts.tolist(), strict=True)]
    out = {
        "top1": hit1_count / total if total else float("nan"),
        "top5": hit5_count / total if total else float("nan"),
        "macro": float(np.nanmean(per_class)),
        "per_class": per_class,
        "confused": sorted(([a, b, n] for (a, b), n in confused.items()), key=lambda x: (-x[2], x[0], x[1]))[
            :20
        ],
    }
    if exact is not None:
        per_exact = [
            h / c if c else float("nan") for h, c in zip(exact_hits.tolist(), counts.tolist(), strict=True)
        ]
        out["exact"] = {
            "top1": exact1_count / total if total else float("nan"),
            "top5": exact5_count / total if total else float("nan"),
            "macro": float(np.nanmean(per_exact)),
        }
    return out


RETRIEVAL_BLOCK = 2**22  # similarities held at a time (16 MiB of float32): images per block x texts


def retrieval(
    image_emb,
    text_emb,
    text_image: np.ndarray,
    ks=(1, 5, 10),
    chunk: int = 1024,
    tie: float = 1e-6,
    block: int = RETRIEVAL_BLOCK,
) -> dict:
    """Image->text and text->image Recall@k and median rank; `text_image[j]` is the image of text j.

    One pass of similarity blocks (a chunk of images x every text) on the device gives both
    directions: a rank is the number of candidates scoring above the true pair, counted, never
    sorted. The true scores are computed first (one dot product per text); an image's own texts
    never count against it, and a candidate must beat the true score by more than `tie` to count
    (identical texts of different images score the same up to float rounding: a tie, in the pair's
    favour). Images with no text are left out of image->text.

    A chunk is at most `chunk` images and `block` similarities (at least 16 images), so memory
    beyond the embeddings stays flat however many images and texts; every chunk has one shape
    (the last one overlaps the one before) and spans every text, so each similarity is the one of
    a product over all texts."""
    img, txt = _on_device(image_emb), _on_device(text_emb)
    owner = jnp.asarray(text_image, jnp.int32)
    n_img, n_txt, dim = img.shape[0], txt.shape[0], txt.shape[1]
    step = max(1, 2**18 // max(dim, 1))  # each text's score with its own image, a slice at a time
    true_t = jnp.concatenate(
        [jnp.sum(txt[j : j + step] * img[owner[j : j + step]], axis=1) for j in range(0, n_txt, step)]
    )
    best_true = jax.ops.segment_max(true_t, owner, num_segments=n_img)  # -inf: an image with no text
    chunk = min(n_img, chunk, max(16, block // max(n_txt, 1)))
    t_count = jnp.zeros(n_txt, jnp.int32)
    i_ranks = np.zeros(n_img, np.int64)
    for start in range(0, n_img, chunk):
        lo = min(start, n_img - chunk)
        i_rank, t_count = _rank_block(img, txt, owner, best_true, true_t, t_count, lo, start, chunk, tie)
        i_ranks[start : lo + chunk] = np.asarray(i_rank)[start - lo :]
    has_text = np.isfinite(np.asarray(best_true))
    i_ranks = i_ranks[has_text]
    t_ranks = np.asarray(t_count)
    out = {}
    for name, ranks in (("image_to_text", i_ranks), ("text_to_image", t_ranks)):
        out[name] = {f"R@{k}": float(np.mean(ranks < k)) for k in ks}
        out[name]["median_rank"] = float(np.median(ranks) + 1)
    return out


def _on_device(x) -> jax.Array:
    """Embeddings as a float32 array on the default device; on a CPU device the same memory where
    it is aligned (as `embed` and `image_embeddings` allocate it), not a second copy."""
    x = np.ascontiguousarray(x, np.float32) if isinstance(x, np.ndarray) else x
    return jax.device_put(x, may_alias=True) if isinstance(x, np.ndarray) else jnp.asarray(x, jnp.float32)


@functools.partial(jax.jit, static_argnames=("chunk", "tie"))
def _rank_block(img, txt, owner, best_true, true_t, t_count, lo, first, chunk: int, tie: float):
    """Images lo..lo+chunk-1 against every text: their image->text ranks, and `t_count` plus the
    images scoring above each text's own (images before `first` counted already: left out)."""
    rows = lo + jnp.arange(chunk)
    s = jax.lax.dynamic_slice_in_dim(img, lo, chunk) @ txt.T  # (chunk, texts)
    others = (owner[None, :] != rows[:, None]) & (rows >= first)[:, None]
    best = jax.lax.dynamic_slice_in_dim(best_true, lo, chunk)
    i_rank = jnp.sum((s > best[:, None] + tie) & others, axis=1)
    return i_rank, t_count + jnp.sum((s > true_t[None, :] + tie) & others, axis=0)


def load_model(path: str | Path, tokenizer: str | None = None, weights: str = "auto") -> dict:
    """A training workdir's latest checkpoint (`weights`: train.export.load_run's choice between its
    moving average and its trained weights), or an exported open_clip directory."""
    from train.export import load_exported, load_run

    path = Path(path)
    if (path / "config.json").exists():
        model, mcfg, step = load_run(path, weights)
        cfg = json.loads((path / "config.json").read_text())
        tok = tokenizers.load(tokenizer or cfg["data"]["tokenizer"])
        kept = float(cfg.get("ema_decay", 0.0)) > 0
        used = "ema" if kept and weights != "raw" else "raw"
        return {"model": model, "config": mcfg, "step": step, "tokenizer": tok, "run": cfg, "weights": used}
    if (path / "open_clip_config.json").exists():
        model, mcfg, tok = load_exported(path, tokenizer)
        return {"model": model, "config": mcfg, "step": None, "tokenizer": tok, "run": {}}
    raise ConfigError(
        f"{path} is neither a training workdir (config.json) nor an exported model (open_clip_config.json)"
    )


@functools.cache  # several runs compared on one set read the same file once
def read_entities(path: str | None) -> dict:
    from entitynet.records import Entity, read_jsonl

    if not path:
        return {}
    try:
        return {e.id: e for e in read_jsonl(path, Entity)}
    except EntityNetError as e:
        raise ConfigError(f"{e}; give --entities (the entities.jsonl of `entitynet kg expand`)") from None


def training_templates(run: dict) -> str | None:
    """The template set a run wrapped its KG captions in (None: it trained on bare names)."""
    data = run.get("data", {}) if isinstance(run, dict) else {}
    if float(data.get("template_chance", 0) or 0) <= 0:
        return None
    return str(data.get("templates") or "") or None


def choose_templates(templates: str | None, run: dict) -> str:
    """--templates, or by default the run's training templates, else the 80 OpenAI templates."""
    return templates or training_templates(run) or "openai"


def zero_shot(
    model,
    tokenizer,
    mcfg,
    data,
    images: np.ndarray,
    templates: str,
    predictions=None,
    keep: dict | None = None,
) -> dict:
    """Zero-shot accuracy with the template ensemble `templates` and, beside it, with the bare
    class names (what a model trained without prompts has seen); each labelled image's top-5 under
    the ensemble is appended to `predictions` (a list, or `Predictions`), as it is scored. `keep`,
    when given, receives the ensemble's class embeddings as keep["class_emb"] (for `living_split`)."""
    tpl = read_templates(templates)
    context = mcfg.text.context_length
    names = [c[0] for c in data.classes]

    def predict(rows, tops, scores, rights, exacts) -> None:
        exacts = [None] * len(rows) if exacts is None else exacts.tolist()
        for i, top, score, ok, exactly in zip(
            rows.tolist(), tops.tolist(), scores.tolist(), rights.tolist(), exacts, strict=True
        ):
            p = {
                "i": i,
                "label": names[int(data.labels[i])],
                "right": ok,
                "top5": [[names[c], round(v, 4)] for c, v in zip(top, score, strict=True)],
            }
            if exactly is not None:
                p["exact"] = exactly  # the top-1 is the image's most specific entity
            predictions.append(p)

    exact = getattr(data, "exact", None)
    per_template = class_embeddings(model, tokenizer, data.classes, tpl, context)
    fixed_emb = per_template.mean(axis=1)
    fixed_emb /= np.linalg.norm(fixed_emb, axis=-1, keepdims=True)
    if keep is not None:
        keep["class_emb"] = fixed_emb
    fixed = classify(
        images,
        fixed_emb,
        data.labels,
        data.correct,
        each=None if predictions is None else predict,
        exact=exact,
    )
    singles = [classify(images, per_template[:, t], data.labels, data.correct) for t in range(len(tpl))]
    best = int(np.argmax([m["top1"] for m in singles]))
    if tpl == ["{c}"]:
        bare = fixed
    else:
        bare = classify(
            images,
            class_embeddings(model, tokenizer, data.classes, ["{c}"], context)[:, 0],
            data.labels,
            data.correct,
            exact=exact,
        )
    return {
        **counting(getattr(data, "counting", "label"), fixed, bare),
        "classes": len(names),
        "images": int(np.sum(data.labels >= 0)),
        "chance_top1": 1.0 / len(names),
        "templates": templates,
        "template_count": len(tpl),
        "names": "averaged over synonyms" if any(len(c) > 1 for c in data.classes) else "one name per class",
        "fixed_templates": {k: fixed[k] for k in ("top1", "top5", "macro")},
        "bare_names": {k: bare[k] for k in ("top1", "top5", "macro")},
        "best_single_template": {
            "template": tpl[best],
            **{k: singles[best][k] for k in ("top1", "top5", "macro")},
        },
        # classes no image is labelled with (multi-label sets) have no accuracy of their own: None
        "per_class": {
            n: (None if np.isnan(a) else a) for n, a in zip(names, fixed["per_class"], strict=True)
        },
        "confused": [[names[a], names[b], n] for a, b, n in fixed["confused"]],
        "class_names": {n: list(c) for n, c in zip(names, data.classes, strict=True)},
        "class_entities": dict(data.class_entities),
        "unresolved": list(data.unresolved),
    }


def counting(rule: str, fixed: dict, bare: dict) -> dict:
    """How a zero-shot prediction was counted right, for results.json: `counting` ("label": the
    labelled class exactly; "linked": any entity the image is linked to), `counting_rule` (that in
    words) and, for "linked" sets, `exact`: top-1, top-5 and macro counted by the image's most
    specific linked entity alone (`exact.rule` says so), for the fixed template set and bare names."""
    from train.eval_data import COUNTING, EXACT_RULE

    out: dict = {"counting": rule, "counting_rule": COUNTING[rule]}
    if "exact" in fixed:
        out["exact"] = {
            "rule": EXACT_RULE,
            "fixed_templates": dict(fixed["exact"]),
            "bare_names": dict(bare.get("exact", fixed["exact"])),
        }
    return out


# ---------------------------------------------------------------- name styles and living classes

LIVING_ROOTS = {"Q729": "animal", "Q756": "plant"}
LIVING_RULE = (
    "living: classes whose entity is animal (Q729) or plant (Q756) or lies under one of them (its root "
    "or lineage); other: the rest of the classes matched to an entity; unmapped: classes matched to "
    "none. Each image is grouped by its labelled class and scored against every class of the set"
)
PROMPT_SETS = ("openai", "photo", "bare")  # the prompt sets "best of" also tries
BEST_OF_LABEL = "best of {n} prompt sets, as the reference reports it (chosen on this set: optimistic)"


def is_living(entity) -> bool:
    """Whether `entity` is an animal or a plant: Q729 or Q756 itself, its root, or in its lineage."""
    return any(x in LIVING_ROOTS for x in (entity.id, entity.root, *entity.lineage_ids))


def class_groups(data, entities: dict) -> list[str]:
    """Per class of `data`: "living", "other" (matched to an entity that is neither animal nor
    plant) or "unmapped" (matched to no entity of `entities`)."""
    out = []
    for names in data.classes:
        e = entities.get(data.class_entities.get(names[0], ""))
        out.append("unmapped" if e is None else "living" if is_living(e) else "other")
    return out


def _metrics(m: dict) -> dict:
    return {k: (None if np.isnan(m[k]) else m[k]) for k in ("top1", "top5", "macro")}


def group_accuracy(images: np.ndarray, class_emb: np.ndarray, data, groups: list[str]) -> dict:
    """Zero-shot accuracy of the images of each group's classes ("living", "other", "unmapped"),
    each scored against every class (one classification, split by the image's labelled class):
    {group: {classes, images, top1, top5, macro}}; a group without images has None for accuracy."""
    member = np.asarray(groups)
    out = {}
    for g in ("living", "other", "unmapped"):
        inside = member == g
        labels = np.where((data.labels >= 0) & inside[np.maximum(data.labels, 0)], data.labels, -1)
        entry: dict = {"classes": int(inside.sum()), "images": int(np.sum(labels >= 0))}
        if entry["images"]:
            entry.update(_metrics(classify(images, class_emb, labels, data.correct)))
        else:
            entry.update(top1=None, top5=None, macro=None)
        out[g] = entry
    return out


def living_split(images: np.ndarray, class_emb: np.ndarray, data, entities: dict) -> dict | None:
    """results.json's `living_split`: accuracy on the living classes and on the rest, side by side
    (`group_accuracy`), with the rule in words; None when no class of the set maps to an entity."""
    groups = class_groups(data, entities)
    if all(g == "unmapped" for g in groups):
        return None
    return {"rule": LIVING_RULE, **group_accuracy(images, class_emb, data, groups)}


def parse_name_styles(values: list[str] | None) -> tuple[str, ...]:
    """--name-style values (each a style, a comma list, or "all") -> the styles in STYLES order; an
    unknown one is a ConfigError naming the styles there are."""
    from entitynet.text.names import STYLES

    asked: set[str] = set()
    for value in values or ():
        for part in (x.strip() for x in value.split(",")):
            if part == "all":
                asked.update(STYLES)
            elif part in STYLES:
                asked.add(part)
            elif part:
                raise ConfigError(f"--name-style {part}: unknown name style; use {', '.join(STYLES)} or all")
    return tuple(x for x in STYLES if x in asked)


def style_classes(data, entities: dict, style: str) -> tuple[list[list[str]], dict]:
    """Each class's name in `style` (one name a class) and the counts: `fell_back` (classes not named
    in the style: their entity has no such name, or they are `unmapped` and keep the set's own names)
    and `used` (classes by the style their name is really in)."""
    from collections import Counter

    from entitynet.text.names import styled_name

    classes, used = [], Counter()
    unmapped = fell_back = 0
    for names in data.classes:
        e = entities.get(data.class_entities.get(names[0], ""))
        if e is None:
            classes.append(list(names))
            unmapped += 1
            fell_back += 1
            used["unmapped"] += 1
            continue
        n = styled_name(e, style)
        classes.append([n.text])
        fell_back += n.fell_back
        used[n.used] += 1
    return classes, {"fell_back": fell_back, "unmapped": unmapped, "used": dict(sorted(used.items()))}


def name_styles(
    model, tokenizer, mcfg, data, images: np.ndarray, entities: dict, styles: tuple[str, ...], templates: str
) -> tuple[dict, dict]:
    """Zero-shot accuracy with each class named in each of `styles` (`entitynet.text.names`, one name
    a class, no synonyms), under the fixed template set `templates` and, labelled apart, the best of
    the prompt sets (`templates` and PROMPT_SETS), as the reference reports it; with the living/other
    split of the fixed set's figure. (results.json's `name_styles`, its protocol)."""
    sets = {templates: read_templates(templates)}
    sets.update({name: read_templates(name) for name in PROMPT_SETS if name not in sets})
    union = list(dict.fromkeys(t for tpl in sets.values() for t in tpl))
    where = {name: [union.index(t) for t in tpl] for name, tpl in sets.items()}
    context = mcfg.text.context_length
    groups = class_groups(data, entities)
    best_label = BEST_OF_LABEL.format(n=len(sets))
    out = {}
    for style in styles:
        classes, counts = style_classes(data, entities, style)
        per_template = class_embeddings(model, tokenizer, classes, union, context)
        scored = {}
        for name, idx in where.items():
            emb = per_template[:, idx].mean(axis=1)
            emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
            scored[name] = (classify(images, emb, data.labels, data.correct), emb)
        fixed, fixed_emb = scored[templates]
        best = max(scored, key=lambda name: (scored[name][0]["top1"], name == templates))
        fits = context - 2  # tokens a text keeps between the start and end tokens
        cut_names = sum(any(len(tokenizer.ids(n)) > fits for n in names) for names in classes)
        texts = [fill(t, n) for names in classes for t in sets[templates] for n in names]
        cut_texts = sum(len(tokenizer.ids(t)) > fits for t in texts) / len(texts)
        split = group_accuracy(images, fixed_emb, data, groups)
        out[style] = {
            **_metrics(fixed),
            "classes": len(classes),
            **counts,
            "truncated_names": cut_names,  # classes whose name alone is longer than the context
            "truncated_texts": cut_texts,  # share of the fixed set's texts (class x template) cut
            "names": {c[0]: n[0] for c, n in zip(data.classes, classes, strict=True)},
            "best_of_prompt_sets": {"label": best_label, "prompt_set": best, **_metrics(scored[best][0])},
            "living": {k: split["living"][k] for k in ("classes", "images", "top1", "top5")},
            "other": {k: split["other"][k] for k in ("classes", "images", "top1", "top5")},
        }
    protocol = {
        "templates": templates,
        "template_count": len(sets[templates]),
        "names": "one name a class, its entity's name in the style, no synonyms; a class with no name "
        "in the style keeps its entity's common name, and one matched to no entity its own names in the "
        "set (both: fell_back)",
        "best_of_prompt_sets": {"label": best_label, "prompt_sets": list(sets)},
        "context_length": context,
    }
    return out, protocol


class Predictions:
    """Each labelled image's prediction, one JSON line in a temporary file as it is scored (memory
    stays flat however many images); iterating reads them back in order, as often as needed.
    Close it (or use it in a `with`) to remove the file."""

    def __init__(self):
        import os
        import tempfile

        fd, self.path = tempfile.mkstemp(prefix="entitynet-predictions-", suffix=".jsonl")
        self._file = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0

    def append(self, prediction: dict) -> None:
        self._file.write(json.dumps(prediction, ensure_ascii=False) + "\n")
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        self._file.flush()
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    def close(self) -> None:
        import os

        if not self._file.closed:
            self._file.close()
            os.remove(self.path)

    def __enter__(self) -> Predictions:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


EXAMPLES_PER_CLASS = 12  # images per class kept as thumbnails beside the results (the explorer's)


def choose_examples(predictions, confused: list, per_class: int = EXAMPLES_PER_CLASS) -> list[int]:
    """The images to keep thumbnails of: per class its misclassified images first, then right
    ones, `per_class` in all; and for each confused pair (a, b) one image of a taken for b (the
    first), unless one is chosen already.

    Two passes over `predictions` (a list, or `Predictions` read back from its file), holding
    `per_class` images per class and one per confused pair: memory is bounded by the classes."""

    def order(row: tuple) -> tuple:
        return row[0], row[1]  # misclassified first, then by image

    first: dict[str, list[tuple[bool, int, str | None]]] = {}  # per class: (right, image, top-1)
    for p in predictions:
        rows = first.setdefault(p["label"], [])
        rows.append((p["right"], p["i"], None if p["right"] else p["top5"][0][0]))
        if len(rows) > 2 * per_class:
            rows.sort(key=order)
            del rows[per_class:]
    chosen = set()
    for rows in first.values():
        rows.sort(key=order)
        del rows[per_class:]
        chosen.update(i for _, i, _ in rows)
    pairs = {(a, b) for a, b, _ in confused}
    taken: dict[tuple[str, str], int] = {}  # (a, b) -> the first image of a taken for b
    if pairs:
        for p in predictions:
            key = (p["label"], p["top5"][0][0])
            if not p["right"] and key in pairs and key not in taken:
                taken[key] = p["i"]
    done = set()
    for a, b, _ in confused:
        if (a, b) in done or (a, b) not in taken:
            continue  # a pair named twice (two classes of one name) is served by its first
        done.add((a, b))
        if not any(not right and top == b for right, _, top in first.get(a, [])):
            chosen.add(taken[(a, b)])
    return sorted(chosen)


def write_examples(data, predictions, chosen: list[int], out_dir: Path) -> None:
    """predictions.jsonl (one line per labelled image, from a list or `Predictions`; `example`
    names its thumbnail when it has one) and the thumbnails, examples/<i>.jpg."""
    from concurrent.futures import ThreadPoolExecutor

    from entitynet.files import write_bytes, write_lines
    from entitynet.images.thumbnail import thumbnail

    def one(i: int) -> None:
        try:
            with data.load(i) as im:
                write_bytes(out_dir / "examples" / f"{i}.jpg", thumbnail(im))
        except (OSError, ValueError, SyntaxError) as e:
            raise ConfigError(f"{data.name}: image {i} is not readable: {e}") from None

    import shutil

    shutil.rmtree(out_dir / "examples", ignore_errors=True)  # an earlier evaluation's choice
    (out_dir / "examples").mkdir(parents=True)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, chosen))
    keep = set(chosen)
    write_lines(
        out_dir / "predictions.jsonl",
        (
            json.dumps(
                {**p, "example": f"examples/{p['i']}.jpg" if p["i"] in keep else ""}, ensure_ascii=False
            )
            for p in predictions
        ),
    )


def evaluate(
    model_path: str | Path,
    data_fn,
    templates: str | None = None,
    out: str | Path | None = None,
    tokenizer: str | None = None,
    weights: str = "auto",
    styles: tuple[str, ...] = (),
    entities_fn: Callable[[dict], dict] | None = None,
) -> dict:
    """Evaluate a run (or an exported model) on the evaluation set `data_fn(run_config)` returns;
    writes results.json, report.md and plots to `out` (default MODEL/eval/<set>-<digest of its
    source>, so two sets of one name never share a directory; a run's trained weights evaluated
    beside its moving average: <set>-<digest>-raw). `templates`: None picks the run's training
    templates, else the OpenAI ones. `entities_fn(run_config)`: the knowledge graph's entities by
    id, for the living/other split and the name `styles` (`name_styles`)."""
    m = load_model(model_path, tokenizer, weights)
    return evaluate_model(m, model_path, data_fn, templates, out, styles, entities_fn)


def evaluate_model(
    m: dict,
    model_path: str | Path,
    data_fn,
    templates: str | None = None,
    out: str | Path | None = None,
    styles: tuple[str, ...] = (),
    entities_fn: Callable[[dict], dict] | None = None,
) -> dict:
    """`evaluate` with the model loaded already (`load_model`'s model, config, step, tokenizer and
    run). Memory beyond the model grows with the set by its embeddings (images and texts, float32),
    its texts, labels and right answers; scores and predictions are made a chunk at a time, the
    predictions spilled to a temporary file until they are written."""
    from train import report
    from train.eval_data import image_embeddings, result_dir

    model, mcfg = m["model"], m["config"]
    data = data_fn(m["run"])
    images = image_embeddings(data, jax.jit(model.encode_image), mcfg.vision.image_size)
    result = {
        "workdir": str(model_path),
        "step": m["step"],
        "eval_set": data.name,
        "eval_source": data.origin,
        "images": data.size,
        "weights": m.get("weights", "raw"),  # a run's moving average (ema) or its trained weights
        # images of the set no decoder reads: skipped, not scored ("path (reason)")
        "unreadable": list(data.unreadable),
    }
    predictions = None
    try:
        if data.labels is not None and len(data.classes) >= 2 and np.any(data.labels >= 0):
            chosen = choose_templates(templates, m["run"])
            predictions = Predictions()
            kept: dict = {}
            result["zero_shot"] = zero_shot(
                model, m["tokenizer"], mcfg, data, images, chosen, predictions, keep=kept
            )
            result["zero_shot"]["training_templates"] = training_templates(m["run"])
            entities = entities_fn(m["run"]) if entities_fn else {}
            split = living_split(images, kept.pop("class_emb"), data, entities)
            if split:
                result["living_split"] = split
            if styles:
                if not entities:
                    raise ConfigError(
                        "--name-style names classes by their entities: give --entities "
                        "(the entities.jsonl of `entitynet kg expand`)"
                    )
                result["name_styles"], result["name_style_protocol"] = name_styles(
                    model, m["tokenizer"], mcfg, data, images, entities, styles, chosen
                )
        elif styles:
            raise ConfigError(f"{data.name}: --name-style needs a set with classes (zero-shot)")
        if data.texts:
            tokens = Tokens(m["tokenizer"], data.texts, mcfg.text.context_length)
            texts = embed(jax.jit(model.encode_text), tokens)
            result["retrieval"] = {
                "images": data.size,
                "texts": len(data.texts),
                **retrieval(images, texts, data.text_image),
            }
            del texts
        if "zero_shot" not in result and "retrieval" not in result:
            raise ConfigError(f"{data.name}: nothing to evaluate (fewer than two classes and no texts)")
        raw_beside_ema = m.get("weights") == "raw" and float(m["run"].get("ema_decay", 0.0)) > 0
        out_dir = Path(
            out or Path(model_path) / "eval" / (result_dir(data) + ("-raw" if raw_beside_ema else ""))
        )
        ensure_writable_dir(out_dir)
        if predictions is not None:
            write_examples(
                data, predictions, choose_examples(predictions, result["zero_shot"]["confused"]), out_dir
            )
    finally:
        if predictions is not None:
            predictions.close()
    write_json(out_dir / "results.json", result)
    report.write_report(result, out_dir)
    result["report"] = str(out_dir / "report.md")
    return result


def entities_source(args) -> Callable[[dict], dict]:
    """A function of the run's config giving the entities by id (--entities, else the run's
    data.entities; {} with neither). Each file is read once: the evaluation set and the
    living/other split and name styles ask for the same one."""
    read: dict[str, dict] = {}

    def of(run: dict) -> dict:
        path = args.entities or run.get("data", {}).get("entities")
        if not path:
            return {}
        if path not in read:
            read[path] = read_entities(path)
        return read[path]

    return of


def data_source(args, entities_of: Callable[[dict], dict] | None = None) -> Callable:
    """A function of the run's config giving the evaluation set the command line names
    (`entities_of`: the entities' source to share, else `entities_source(args)`)."""
    from train import eval_data

    entities_of = entities_of or entities_source(args)

    def make(run: dict):
        entities = entities_of(run)
        if args.imagefolder:
            data = eval_data.image_folder(args.imagefolder, entities, args.synonyms, args.class_names)
        elif args.tfds:
            data = eval_data.tfds_split(
                args.tfds, args.tfds_data_dir, entities, args.synonyms, args.class_names
            )
        else:
            shards = args.shards or run.get("data", {}).get("shards")
            if not shards:
                raise ConfigError(
                    "--heldout needs the shards: give --shards (the model is not a training run)"
                )
            data = eval_data.heldout(shards, args.split, entities, args.synonyms, args.class_names)
        if data.unresolved:
            print(f"entitynet: {data.name}: {eval_data.unresolved_line(data.unresolved)}", file=sys.stderr)
        return data

    return make


def run_from_args(args) -> list[dict]:
    """Evaluate every --workdir; with several, also write the comparison to --out."""
    from train import report

    if len(args.workdir) > 1 and not args.out:
        raise ConfigError("several --workdir given: say where the comparison goes with --out")
    labels = args.label or [Path(w).name for w in args.workdir]
    if len(labels) != len(args.workdir):
        raise ConfigError(
            f"{len(labels)} --label for {len(args.workdir)} --workdir; give one per run or none"
        )
    entities_of = entities_source(args)
    make = data_source(args, entities_of)
    styles = parse_name_styles(getattr(args, "name_style", None))
    single = len(args.workdir) == 1
    results = [
        evaluate(
            w,
            make,
            args.templates,
            args.out if single else None,
            args.tokenizer,
            args.weights,
            styles,
            entities_of,
        )
        for w in args.workdir
    ]
    if not single:
        path = report.write_comparison(results, labels, args.out)
        results.append({"comparison": str(path)})
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    from train.eval_flags import add_arguments

    ap = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        results = run_from_args(args)
    except EntityNetError as e:
        print(f"entitynet: error: {e}", file=sys.stderr)
        return 2
    for line in summary(results):
        print(line)
    return 0


def summary(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        if "comparison" in r:
            lines.append(f"comparison: {r['comparison']}")
            continue
        parts = []
        zs = r.get("zero_shot")
        if zs:
            fx, bare = zs["fixed_templates"], zs["bare_names"]
            parts.append(
                f"zero-shot over {zs['classes']:,} classes (chance {zs['chance_top1']:.2%}): "
                f"{zs['templates']} templates top-1 {fx['top1']:.2%} / top-5 {fx['top5']:.2%}, "
                f"bare names top-1 {bare['top1']:.2%} / top-5 {bare['top5']:.2%}, "
                f"best single template {zs['best_single_template']['top1']:.2%}"
            )
        rt = r.get("retrieval")
        if rt:
            parts.append(
                f"retrieval over {rt['texts']:,} texts: image->text R@1 {rt['image_to_text']['R@1']:.2%}, "
                f"text->image R@1 {rt['text_to_image']['R@1']:.2%}"
            )
        lines.append(f"{r['workdir']} on {r['eval_set']} ({r['images']:,} images): " + "; ".join(parts))
        if zs:
            lines.append("  " + counting_line(zs))
        lines += ["  " + x for x in living_lines(r.get("living_split"))]
        lines += ["  " + x for x in name_style_lines(r.get("name_styles"), r.get("name_style_protocol"))]
        lines.append(f"  report: {r['report']} (results.json and plots/ beside it)")
    return lines


def _acc(x: dict) -> str:
    if x.get("top1") is None:
        return "no images"
    return f"top-1 {x['top1']:.2%} / top-5 {x['top5']:.2%}"


def living_lines(split: dict | None) -> list[str]:
    """One line: accuracy on the living classes and on the rest, side by side, and the unmapped."""
    if not split:
        return []
    lv, ot, un = split["living"], split["other"], split["unmapped"]
    line = (
        f"living classes (animal Q729 or plant Q756 and below) {_acc(lv)} ({lv['classes']} classes, "
        f"{lv['images']:,} images); other classes {_acc(ot)} ({ot['classes']} classes, {ot['images']:,} images)"
    )
    if un["classes"]:
        line += f"; unmapped (no entity) {un['classes']} classes, {un['images']:,} images, {_acc(un)}"
    return [line]


def name_style_lines(styles: dict | None, protocol: dict | None) -> list[str]:
    """Two lines: each name style's accuracy under the fixed template set (with how many classes
    fell back), then, labelled apart, the best over the prompt sets."""
    if not styles or not protocol:
        return []
    fixed = "; ".join(
        f"{s} {_acc(x)}" + (f" ({x['fell_back']} fell back)" if x["fell_back"] else "")
        for s, x in styles.items()
    )
    best = "; ".join(
        f"{s} {_acc(x['best_of_prompt_sets'])} ({x['best_of_prompt_sets']['prompt_set']})"
        for s, x in styles.items()
    )
    return [
        f"name styles, fixed set {protocol['templates']} ({protocol['template_count']} templates, one "
        f"name a class): {fixed}",
        f"name styles, {protocol['best_of_prompt_sets']['label']}: {best}",
    ]


def counting_line(zs: dict) -> str:
    """One line: how zero-shot predictions were counted right and, for a set whose images are
    linked to several entities, the exact-entity accuracy beside it."""
    from train.eval_data import COUNTING

    line = f"counted {zs.get('counting_rule') or COUNTING[zs.get('counting', 'label')]}"
    ex = zs.get("exact")
    if ex:
        fx = ex["fixed_templates"]
        line += (
            f"; exact-entity top-1 {fx['top1']:.2%} / top-5 {fx['top5']:.2%} "
            "(right only when it is the image's most specific linked entity)"
        )
    return line


if __name__ == "__main__":
    sys.exit(main())
