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


LOW, MIDDLE, HIGH = "#c44e52", "#8c8c8c", "#4c72b0"  # accuracy 0 (red), 0.5 (grey), 1 (blue)
MIN_BAR = 0.012  # the width a 0% bar is drawn with (a stub, labelled "0%"), in accuracy units


def accuracy_colour(a: float) -> str:
    """A bar's colour by its accuracy on a fixed scale: red at 0%, grey at 50%, blue at 100% (the
    same accuracy has the same colour in every plot, however many classes or how they rank)."""
    a = min(max(float(a), 0.0), 1.0)
    lo, hi, t = (LOW, MIDDLE, a / 0.5) if a <= 0.5 else (MIDDLE, HIGH, (a - 0.5) / 0.5)
    rgb = [
        round(int(lo[i : i + 2], 16) + (int(hi[i : i + 2], 16) - int(lo[i : i + 2], 16)) * t)
        for i in (1, 3, 5)
    ]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def per_class_bars(per_class: dict[str, float | None], n: int = 12) -> dict:
    """What `plot_per_class` draws, decided apart from drawing it: `bars`, lowest accuracy first,
    each (class, accuracy, width, colour) (a 0% bar is `MIN_BAR` wide, so it shows); `gap`, the
    index of the first bar above the classes left out (None: every class is shown); `title`."""
    ranked = sorted(((c, a) for c, a in per_class.items() if a is not None), key=lambda kv: (kv[1], kv[0]))
    split = len(ranked) > 2 * n
    shown = ranked[:n] + ranked[-n:] if split else ranked
    bars = [(c, a, max(a, MIN_BAR), accuracy_colour(a)) for c, a in shown]
    same = bool(ranked) and ranked[0][1] == ranked[-1][1]
    unscored = len(per_class) - len(ranked)
    title, notes = "top-1 accuracy per class", []
    if not split:
        kind = " scored" if unscored else ""
        notes.append(
            {1: f"its one{kind} class", 2: f"both{kind} classes"}.get(
                len(ranked), f"all {len(ranked)}{kind} classes"
            )
            + " shown"
        )
    elif same:
        notes.append(f"{len(shown)} of {len(ranked)} classes shown, all at {ranked[0][1]:.0%}")
    else:
        title = f"top-1 accuracy: the {n} lowest and {n} highest of {len(ranked)} classes"
    if unscored:
        notes.append(f"{unscored} class{'es' if unscored > 1 else ''} with no image of its own left out")
    if notes:
        title += f" ({'; '.join(notes)})"
    return {"bars": bars, "gap": n if split else None, "hidden": len(ranked) - len(shown), "title": title}


def per_class_figure(per_class: dict[str, float | None], n: int = 12):
    """The per-class accuracy plot as a figure (its choices: `per_class_bars`): lowest at the
    bottom, the classes left out as one labelled empty row, colours explained by a scale."""
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.ticker import PercentFormatter

    plt = pyplot()
    spec = per_class_bars(per_class, n)
    bars, gap = spec["bars"], spec["gap"]
    ys = [i + (1 if gap is not None and i >= gap else 0) for i in range(len(bars))]
    rows = len(bars) + (gap is not None)
    fig, ax = plt.subplots(figsize=(6.4, max(2.2, 0.22 * rows + 1.2)))
    ax.barh(ys, [w for _, _, w, _ in bars], color=[c for *_, c in bars], height=min(0.8, 0.25 * rows))
    for y, (_, a, w, _) in zip(ys, bars, strict=True):
        ax.text(w + 0.01, y, f"{a:.0%}", va="center", fontsize=6)
    ax.set_yticks(ys, [c[:40] for c, *_ in bars], fontsize=7)
    if gap is not None:
        ax.axhline(gap, color="#999999", lw=0.6, ls=":")
        ax.text(
            0.5,
            gap,
            f"{spec['hidden']} classes between not shown",
            ha="center",
            va="center",
            fontsize=6,
            color="#555555",
            backgroundcolor="white",
        )
    ax.set_ylim(-0.6, rows - 0.4)
    ax.set_xlim(0, 1.1)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("top-1 accuracy")
    ax.set_title(spec["title"], fontsize=9)
    scale = LinearSegmentedColormap.from_list("accuracy", [LOW, MIDDLE, HIGH])
    bar = fig.colorbar(
        plt.cm.ScalarMappable(cmap=scale, norm=plt.Normalize(0, 1)), ax=ax, pad=0.02, fraction=0.04, aspect=20
    )
    bar.set_ticks([0, 0.5, 1])
    bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    bar.ax.tick_params(labelsize=6)
    bar.set_label("bar colour: accuracy", fontsize=6)
    return fig


def plot_per_class(per_class: dict[str, float | None], path: Path, n: int = 12) -> None:
    plt = pyplot()
    fig = per_class_figure(per_class, n)
    save_png(fig, path)
    plt.close(fig)


def confused_figure(confused: list):
    """The most confused pairs (true -> predicted) as bars of image counts, on an integer axis."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    pairs = confused[:10][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(pairs) + 1))
    ax.barh(range(len(pairs)), [n for _, _, n in pairs], color="#dd8452")
    ax.set_yticks(range(len(pairs)), [f"{a[:25]} -> {b[:25]}" for a, b, _ in pairs], fontsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts of images: whole numbers
    ax.set_xlabel("images (true -> predicted)")
    ax.set_title("most confused class pairs", fontsize=9)
    return fig


def plot_confused(confused: list, path: Path) -> bool:
    if not confused:
        return False
    plt = pyplot()
    fig = confused_figure(confused)
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
            *counting_lines(zs),
            "| templates | top-1 | top-5 | macro |",
            "|---|---:|---:|---:|",
            f"| fixed set: {zs['templates']} ({zs['template_count']}, embeddings averaged) | "
            f"{fx['top1']:.2%} | {fx['top5']:.2%} | {fx['macro']:.2%} |",
            f"| bare class names | {bare['top1']:.2%} | {bare['top5']:.2%} | {bare['macro']:.2%} |",
            f"| best single template, chosen on this set (optimistic): `{best['template']}` | "
            f"{best['top1']:.2%} | {best['top5']:.2%} | {best['macro']:.2%} |",
        ]
        ex = zs.get("exact")
        if ex:
            efx, ebare = ex["fixed_templates"], ex["bare_names"]
            lines += [
                f"| exact entity, fixed set: {zs['templates']} | "
                f"{efx['top1']:.2%} | {efx['top5']:.2%} | {efx['macro']:.2%} |",
                f"| exact entity, bare class names | {ebare['top1']:.2%} | {ebare['top5']:.2%} | "
                f"{ebare['macro']:.2%} |",
            ]
        lines.append("")
        plot_per_class(zs["per_class"], plots / "per_class.png")
        lines += ["![accuracy per class](plots/per_class.png)", ""]
        if plot_confused(zs["confused"], plots / "confused.png"):
            lines += ["![most confused pairs](plots/confused.png)", ""]
            lines += ["Most confused (true -> predicted, images): "]
            lines += [", ".join(f"{a} -> {b} ({n})" for a, b, n in zs["confused"][:8]), ""]
        lines += living_report_lines(r.get("living_split"))
        lines += name_style_report_lines(r.get("name_styles"), r.get("name_style_protocol"))
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


def counting_lines(zs: dict) -> list[str]:
    """How the zero-shot numbers count a prediction right, in words (and the exact-entity rule,
    where the set has one), as a paragraph before the table."""
    from train.eval_data import COUNTING

    rule = zs.get("counting_rule") or COUNTING.get(zs.get("counting", ""), "")
    if not rule:
        return []  # results written before the rule was recorded: it is not known here
    out = f"**Counting:** {_sentence(rule)}"
    ex = zs.get("exact")
    if ex:
        out += (
            f" {_sentence(ex['rule'])} Per-class accuracy and the confused pairs group each image by "
            "its most specific entity."
        )
    return [out, ""]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _cells(x: dict) -> str:
    return f"{_pct(x.get('top1'))} | {_pct(x.get('top5'))}"


def living_report_lines(split: dict | None) -> list[str]:
    """Accuracy on the living classes and on the rest (the fixed template set), with the rule."""
    if not split:
        return []
    out = ["## Living and other classes", "", f"{_sentence(split['rule'])}", ""]
    out += ["| classes | count | images | top-1 | top-5 |", "|---|---:|---:|---:|---:|"]
    for g in ("living", "other", "unmapped"):
        x = split[g]
        out.append(f"| {g} | {x['classes']:,} | {x['images']:,} | {_cells(x)} |")
    return [*out, ""]


def name_style_report_lines(styles: dict | None, protocol: dict | None) -> list[str]:
    """Each name style's accuracy under the fixed template set, and apart from it the best of the
    prompt sets, as the reference reports it."""
    if not styles or not protocol:
        return []
    best = protocol["best_of_prompt_sets"]
    out = [
        "## Name styles",
        "",
        f"Names: {_sentence(protocol['names'])} Fixed template set: `{protocol['templates']}` "
        f"({protocol['template_count']} templates, embeddings averaged); apart from it, {best['label']}: "
        f"{', '.join(best['prompt_sets'])}. Cut: texts longer than the model's {protocol['context_length']} "
        "tokens lose their end (names alone; share of the fixed set's class x template texts).",
        "",
        "| style | top-1 | top-5 | living top-1 | other top-1 | fell back | cut names | cut texts | "
        "best-of top-1 | best-of top-5 | best prompt set |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for style, x in styles.items():
        b = x["best_of_prompt_sets"]
        out.append(
            f"| {style} | {_cells(x)} | {_pct(x['living'].get('top1'))} | {_pct(x['other'].get('top1'))} | "
            f"{x['fell_back']} | {x['truncated_names']} | {x['truncated_texts']:.0%} | {_cells(b)} | "
            f"{b['prompt_set']} |"
        )
    return [*out, ""]


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


def comparison_rows(results: list[dict], labels: list[str], exact: bool = False) -> list[list[str]]:
    """One row per run; `exact`: with its exact-entity top-1 last (runs without one: "-")."""
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
            + ([_pct(zs.get("exact", {}).get("fixed_templates", {}).get("top1"))] if exact else [])
        )
    return rows


def write_comparison(results: list[dict], labels: list[str], out_dir: str | Path, title: str = "") -> Path:
    """Side-by-side report of several runs evaluated on the same set."""
    out = Path(out_dir)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    sets = sorted({r["eval_set"] for r in results})
    lines = [f"# {title or 'Comparison'}: {', '.join(sets)}", ""]
    zs = [r["zero_shot"] for r in results if r.get("zero_shot")]
    exact = any(z.get("exact") for z in zs)
    lines += [
        "| run | step | top-1 | top-5 | macro | bare names top-1 | best template top-1 | image->text R@1 | text->image R@1 |"
        + (" exact-entity top-1 |" if exact else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if exact else ""),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in comparison_rows(results, labels, exact)]
    lines.append("")
    if zs:
        seen: list[str] = []
        for z in zs:
            for line in counting_lines(z):
                if line and line not in seen:
                    seen.append(line)
        lines += [x for line in seen for x in (line, "")]
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
