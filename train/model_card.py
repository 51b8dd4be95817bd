"""The model card of an export: `README.md` in the Hugging Face Hub's format (a YAML header the Hub
reads: library, licence, tags, pipeline), with the one-line open_clip loading, what the model was
trained on (from the dataset's own stats files: entities, images, sources and licences), the
training config, and the results of the run's evaluations (`WORKDIR/eval/*/results.json`)."""

from __future__ import annotations

import json
from pathlib import Path


def _read(path: str | Path) -> dict:
    """A JSON object from a local or bucket path; {} when missing or unreadable."""
    from entitynet.errors import StorageError
    from entitynet.storage import STORE

    try:
        data = json.loads(STORE.read(path) or b"null")
    except (ValueError, StorageError):
        return {}
    return data if isinstance(data, dict) else {}


def _counts(counts: dict | None, limit: int = 8) -> str:
    if not counts:
        return "not recorded"
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} {v:,}" for k, v in top[:limit])
    return shown + (f", and {len(top) - limit} more" if len(top) > limit else "")


def data_lines(shards: str) -> list[str]:
    """What the training data was, from the stats files beside its shards (local or in a bucket)."""
    from entitynet.storage import STORE

    curation = _read(STORE.join(shards, "curation_stats.json"))
    harvest = _read(STORE.join(shards, "harvest_stats.json"))
    lines = [f"- Shards: `{shards}`"]
    if curation:
        from entitynet.shards import harvest_of

        source = harvest_of(shards, str(curation.get("input", "")))
        harvest = _read(STORE.join(source, "harvest_stats.json")) if source else harvest
        kept = sum((curation.get("kept") or {}).values())
        lines.append(
            f"- Curated with MetaCLIP balancing over the knowledge graph's entities (t = "
            f"{(curation.get('balance') or {}).get('t', '?')}), near-duplicate merging and "
            f"evaluation-set decontamination: {kept:,} of {sum((curation.get('read') or {}).values()):,} "
            "harvested images kept"
        )
        lines.append(f"- Images per licence: {_counts(curation.get('per_license'))}")
        lines.append(f"- Images per source: {_counts(curation.get('per_source'))}")
    if harvest:
        lines.append(
            f"- Harvested: {harvest.get('written', 0):,} images of {len(harvest.get('per_entity') or {}):,} "
            f"entities from {harvest.get('candidates', 0):,} candidate URLs"
        )
        if not curation:
            lines.append(f"- Images per licence: {_counts(harvest.get('per_license'))}")
            lines.append(f"- Images per source: {_counts(harvest.get('per_source'))}")
    return lines


def eval_lines(workdir: Path) -> list[str]:
    rows = []
    for path in sorted((workdir / "eval").glob("*/results.json")):
        r = _read(path)
        zs, rt = r.get("zero_shot"), r.get("retrieval")
        if zs:
            fx = zs["fixed_templates"]
            rows.append(
                f"| {r.get('eval_set', path.parent.name)} | zero-shot, {zs['classes']} classes, {zs['images']} images "
                f"({zs['templates']} templates) | top-1 {fx['top1']:.2%}, top-5 {fx['top5']:.2%} |"
            )
        if rt:
            rows.append(
                f"| {r.get('eval_set', path.parent.name)} | retrieval, {rt['texts']} texts | image→text R@1 "
                f"{rt['image_to_text']['R@1']:.2%}, text→image R@1 {rt['text_to_image']['R@1']:.2%} |"
            )
    if not rows:
        return ["No evaluation was run before the export (`entitynet eval --workdir ...`)."]
    return ["| set | task | result |", "|---|---|---|", *rows]


def recipe_lines(cfg: dict) -> list[str]:
    """What the run's recipe adds to plain training: the weights exported, a locked image tower,
    augmentation, balanced sampling."""
    out = []
    decay = float(cfg.get("ema_decay", 0.0) or 0.0)
    if decay > 0:
        out.append(f"- Weights: the moving average of the trained weights (decay {decay:g})")
    model = cfg.get("model", {})
    if model.get("lock_image"):
        groups = int(model.get("unlocked_groups", 0) or 0)
        kept = f", its last {groups} group(s) trained" if groups else ""
        out.append(f"- Image tower: locked (LiT) from {cfg.get('init_from', '?')}{kept}")
    data = cfg.get("data", {})
    aug = {
        k: v
        for k, v in (data.get("augment") or {}).items()
        if k in ("flip", "jitter", "greyscale", "blur", "posterize") and v
    }
    if aug:
        out.append("- Augmentation: " + ", ".join(f"{k} {v:g}" for k, v in aug.items()))
    if data.get("balance"):
        cap = int(data.get("balance_cap", 0) or 0)
        out.append(f"- Sampling: entity-balanced (MetaCLIP's chance, cap {cap or 'the median entity count'})")
    return out


def card(
    workdir: Path, cfg: dict, out: Path, config: dict, step: int, repo_id: str | None, license: str
) -> str:
    model_cfg, pre = config["model_cfg"], config["preprocess_cfg"]
    v, t = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    name = repo_id or out.resolve().name
    where = f"hf-hub:{repo_id}" if repo_id else "local-dir:PATH"  # no repository named: where it lies
    data = cfg.get("data", {})
    tokenizer = "SentencePiece (Hugging Face `tokenizer.json`)" if t.get("hf_tokenizer_name") else "CLIP BPE"
    header = [
        "---",
        "library_name: open_clip",
        f"license: {license}",
        "pipeline_tag: zero-shot-image-classification",
        "tags:",
        "  - clip",
        "  - open_clip",
        "  - zero-shot-image-classification",
        "  - entitynet",
        "---",
    ]
    body = [
        f"# {name}",
        "",
        "A CLIP model trained with EntityNet on images harvested and curated for the entities of a "
        "knowledge graph.",
        "",
        "## Use",
        "",
        "```python",
        "import open_clip",
        "",
        f'model, _, preprocess = open_clip.create_model_and_transforms("{where}")',
        f'tokenizer = open_clip.get_tokenizer("{where}")',
        *(
            []
            if repo_id
            else ["# PATH: this directory; once uploaded to the Hub, hf-hub:ORG/NAME (export with --repo-id)"]
        ),
        "```",
        "",
        "## Training data",
        "",
        *data_lines(str(data.get("shards", ""))),
        f"- Texts: alt texts with probability {data.get('alt_text_chance', '?')}, otherwise captions made "
        "from the knowledge graph",
        "",
        "## Training",
        "",
        f"- Steps: {step:,}, batch size {cfg.get('batch_size', '?')}, loss {cfg.get('loss', 'clip')}",
        *recipe_lines(cfg),
        f"- Image tower: ViT, {v['layers']} layers, width {v['width']}, patch {v['patch_size']}, "
        f"{v['image_size']} px",
        f"- Text tower: {t['layers']} layers, width {t['width']}, context {t['context_length']} tokens, "
        f"vocabulary {t['vocab_size']:,} ({tokenizer})",
        f"- Embedding: {model_cfg['embed_dim']}, QuickGELU: {model_cfg.get('quick_gelu', False)}",
        f"- Preprocessing: shorter side to {pre['size']} px ({pre['interpolation']}), centre crop, CLIP mean/std",
        "",
        "## Evaluation",
        "",
        *eval_lines(workdir),
        "",
    ]
    return "\n".join(header + [""] + body)


def write_card(
    workdir: Path,
    cfg: dict,
    out: Path,
    config: dict,
    step: int,
    repo_id: str | None,
    license: str,
    into: Path | None = None,
) -> str:
    """README.md for the export `out`, written in `into` (default: `out`; an export is made in a
    temporary directory and renamed into place)."""
    from entitynet.files import atomic_open

    path = (into or out) / "README.md"
    with atomic_open(path, "w") as f:
        f.write(card(workdir, cfg, out, config, step, repo_id, license))
    return str(path)
