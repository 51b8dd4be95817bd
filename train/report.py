"""Evaluation reports: `report.md` with PNG plots for one run's results, and a side-by-side report
for several runs (an ablation: one row per run, training curves overlaid).

    write_report(result, out_dir)             # report.md, plots/{curves,per_class,confused}.png
    write_comparison(results, labels, out)    # report.md, results.json, plots/{curves,compare}.png
"""

from __future__ import annotations

import json
from pathlib import Path

from entitynet.datacard import pyplot, save_png
from entitynet.files import write_json, write_lines


def read_metrics(workdir: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (empty when it has none)."""
    path = Path(workdir) / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a killed run
    return rows


def _curves(ax, rows: list[dict], label: str = "") -> None:
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if train:
        line = ax.plot(*zip(*train, strict=True), label=f"{label} train".strip())[0]
        if val:
            ax.plot(
                *zip(*val, strict=True), "o--", color=line.get_color(), label=f"{label} validation".strip()
            )


def plot_curves(runs: list[tuple[str, str | Path]], path: Path) -> bool:
    """Training (and validation) loss against step for each (label, workdir); False: no metrics."""
    metrics = [(label, read_metrics(w)) for label, w in runs]
    if not any(rows for _, rows in metrics):
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, rows in metrics:
        _curves(ax, rows, label if len(runs) > 1 else "")
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_png(fig, path)
    plt.close(fig)
    return True


def plot_per_class(per_class: dict[str, float], path: Path, n: int = 12) -> None:
    plt = pyplot()
    ranked = sorted(((c, a) for c, a in per_class.items() if a is not None), key=lambda kv: (kv[1], kv[0]))
    shown = ranked if len(ranked) <= 2 * n else ranked[:n] + ranked[-n:]
    fig, ax = plt.subplots(figsize=(6, 0.22 * len(shown) + 1))
    colours = ["#c44e52" if i < min(n, len(shown) // 2) else "#4c72b0" for i in range(len(shown))]
    ax.barh(range(len(shown)), [a for _, a in shown], color=colours)
    for i, (_, a) in enumerate(shown):
        ax.text(a + 0.01, i, f"{a:.0%}", va="center", fontsize=6)
    ax.set_yticks(range(len(shown)), [c[:40] for c, _ in shown], fontsize=7)
    ax.set_xlabel("top-1 accuracy")
    ax.set_xlim(0, 1)
    ax.set_title(f"worst (red) and best (blue) of {len(ranked)} classes", fontsize=9)
    save_png(fig, path)
    plt.close(fig)


def plot_confused(confused: list, path: Path) -> bool:
    if not confused:
        return False
    plt = pyplot()
    pairs = confused[:10][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(pairs) + 1))
    ax.barh(range(len(pairs)), [n for _, _, n in pairs], color="#dd8452")
    ax.set_yticks(range(len(pairs)), [f"{a[:25]} -> {b[:25]}" for a, b, _ in pairs], fontsize=7)
    ax.set_xlabel("images (true -> predicted)")
    ax.set_title("most confused class pairs", fontsize=9)
    save_png(fig, path)
    plt.close(fig)
    return True


def _pct(x) -> str:
    return f"{x:.2%}" if isinstance(x, float) else "-"


def write_report(r: dict, out_dir: str | Path) -> Path:
    """report.md and its plots for one evaluation's results (as `train.evaluate.evaluate` makes)."""
    out = Path(out_dir)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Zero-shot evaluation: {r['eval_set']}",
        "",
        f"Run `{r['workdir']}` at step {r['step']}; {r['images']:,} images.",
        "",
    ]
    if r.get("unreadable"):
        shown = "; ".join(r["unreadable"][:10]) + ("; ..." if len(r["unreadable"]) > 10 else "")
        lines += [
            f"{len(r['unreadable']):,} image(s) of the set cannot be decoded and were not scored: {shown}.",
            "",
        ]
    if plot_curves([("", r["workdir"])], plots / "curves.png"):
        lines += ["![training curves](plots/curves.png)", ""]
    zs = r.get("zero_shot")
    if zs:
        fx, best = zs["fixed_templates"], zs["best_single_template"]
        bare = zs.get("bare_names", fx)
        trained = zs.get("training_templates")
        lines += [
            "## Zero-shot classification",
            "",
            f"{zs['classes']:,} classes (chance top-1 {zs['chance_top1']:.2%}), {zs['images']:,} labelled images; "
            f"class names: {zs['names']}. The run trained "
            + (
                f"with the `{trained}` templates on part of its KG captions."
                if trained
                else "on bare names (no templates)."
            ),
            "",
            "| templates | top-1 | top-5 | macro |",
            "|---|---:|---:|---:|",
            f"| fixed set: {zs['templates']} ({zs['template_count']}, embeddings averaged) | "
            f"{fx['top1']:.2%} | {fx['top5']:.2%} | {fx['macro']:.2%} |",
            f"| bare class names | {bare['top1']:.2%} | {bare['top5']:.2%} | {bare['macro']:.2%} |",
            f"| best single template, chosen on this set (optimistic): `{best['template']}` | "
            f"{best['top1']:.2%} | {best['top5']:.2%} | {best['macro']:.2%} |",
            "",
        ]
        plot_per_class(zs["per_class"], plots / "per_class.png")
        lines += ["![accuracy per class](plots/per_class.png)", ""]
        if plot_confused(zs["confused"], plots / "confused.png"):
            lines += ["![most confused pairs](plots/confused.png)", ""]
            lines += ["Most confused (true -> predicted, images): "]
            lines += [", ".join(f"{a} -> {b} ({n})" for a, b, n in zs["confused"][:8]), ""]
        lines += class_name_lines(zs)
    rt = r.get("retrieval")
    if rt:
        lines += [
            "## Retrieval",
            "",
            f"{rt['images']:,} images, {rt['texts']:,} texts ({rt['texts'] / max(rt['images'], 1):.2f} per image); "
            "a hit for image->text is any of the image's texts.",
            "",
            "| direction | R@1 | R@5 | R@10 | median rank |",
            "|---|---:|---:|---:|---:|",
        ]
        for d in ("image_to_text", "text_to_image"):
            m = rt[d]
            lines.append(
                f"| {d.replace('_', ' ')} | {m['R@1']:.2%} | {m['R@5']:.2%} | {m['R@10']:.2%} | {m['median_rank']:g} |"
            )
        lines.append("")
    write_lines(out / "report.md", lines)
    return out / "report.md"


def class_name_lines(zs: dict) -> list[str]:
    """The names each class was embedded with (and its entity), and the names no entity matched."""
    names, entities = zs.get("class_names") or {}, zs.get("class_entities") or {}
    if not names:
        return []
    out = ["## Class names", "", "| class | entity | names used |", "|---|---|---|"]
    out += [
        f"| {c} | {entities.get(c, '-')} | {'; '.join(ns)} |".replace("\n", " ") for c, ns in names.items()
    ]
    out.append("")
    if zs.get("unresolved"):
        out += [f"Not matched to one entity (own name only): {'; '.join(zs['unresolved'])}.", ""]
    return out


def comparison_rows(results: list[dict], labels: list[str]) -> list[list[str]]:
    rows = []
    for label, r in zip(labels, results, strict=True):
        zs, rt = r.get("zero_shot") or {}, r.get("retrieval") or {}
        fx = zs.get("fixed_templates", {})
        rows.append(
            [
                label,
                "-" if r["step"] is None else str(r["step"]),
                _pct(fx.get("top1")),
                _pct(fx.get("top5")),
                _pct(fx.get("macro")),
                _pct(zs.get("bare_names", {}).get("top1")),
                _pct(zs.get("best_single_template", {}).get("top1")),
                _pct(rt.get("image_to_text", {}).get("R@1")),
                _pct(rt.get("text_to_image", {}).get("R@1")),
            ]
        )
    return rows


def write_comparison(results: list[dict], labels: list[str], out_dir: str | Path, title: str = "") -> Path:
    """Side-by-side report of several runs evaluated on the same set."""
    out = Path(out_dir)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    sets = sorted({r["eval_set"] for r in results})
    lines = [f"# {title or 'Comparison'}: {', '.join(sets)}", ""]
    lines += [
        "| run | step | top-1 | top-5 | macro | bare names top-1 | best template top-1 | image->text R@1 | text->image R@1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in comparison_rows(results, labels)]
    lines.append("")
    zs = [r["zero_shot"] for r in results if r.get("zero_shot")]
    if zs:
        chance = sorted({z["chance_top1"] for z in zs})
        sets = sorted({f"{z['templates']} ({z['template_count']})" for z in zs})
        lines += [
            f"Chance top-1: {', '.join(f'{c:.2%}' for c in chance)}. Top-1/top-5/macro use the fixed "
            f"template set {', '.join(sets)}; the best single template is chosen on the evaluation set "
            "itself (optimistic).",
            "",
        ]
    lines += [f"- {label}: `{r['workdir']}`" for label, r in zip(labels, results, strict=True)]
    lines.append("")
    if plot_curves(list(zip(labels, [r["workdir"] for r in results], strict=True)), plots / "curves.png"):
        lines += [
            "![training curves](plots/curves.png)",
            "",
            "Each run's losses are measured on its own texts (its own text mix), so the curves show "
            "how each trained, not which is better: the table above compares them.",
            "",
        ]
    if all(r.get("zero_shot") for r in results):
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3))
        x = range(len(results))
        ax.bar(
            [i - 0.2 for i in x],
            [r["zero_shot"]["fixed_templates"]["top1"] for r in results],
            0.4,
            label="top-1",
        )
        ax.bar(
            [i + 0.2 for i in x],
            [r["zero_shot"]["fixed_templates"]["top5"] for r in results],
            0.4,
            label="top-5",
        )
        ax.set_xticks(list(x), labels, fontsize=8)
        ax.set_ylabel("zero-shot accuracy")
        ax.legend(fontsize=8)
        save_png(fig, plots / "compare.png")
        plt.close(fig)
        lines += ["![zero-shot accuracy per run](plots/compare.png)", ""]
    write_json(
        out / "results.json",
        {"runs": [dict(r, label=label) for label, r in zip(labels, results, strict=True)]},
    )
    write_lines(out / "report.md", lines)
    return out / "report.md"
