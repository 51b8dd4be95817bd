"""The curation data card: markdown with PNG plots (entry counts before and after balancing on
log-log axes, what was removed and why, images per natural type), written next to the output."""

from __future__ import annotations

import os
from pathlib import Path

from entitynet.curation import unimaged as unimaged_lib
from entitynet.datacard import license_lines, pyplot, save_png
from entitynet.files import atomic_open


def write_card(
    directory: str | os.PathLike,
    stats: dict,
    before: dict[str, int],
    after: dict[str, int],
    labels: dict[str, str] | None = None,
    unimaged: list[tuple[str, str, str, str]] | None = None,
) -> Path:
    """`DATACARD.md` and `plots/*.png` in `directory`. `before` / `after`: matches per entry;
    `unimaged`: the rows of `unimaged.unimaged` (its count and kinds are `stats["unimaged"]`)."""
    plt = pyplot()
    out = Path(directory)
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    labels = labels or {}
    t = stats["balance"]["t"]

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for counts, name, colour in ((before, "before", "#bbbbbb"), (after, "after", "#4477aa")):
        ranked = sorted(counts.values(), reverse=True)
        if ranked:
            ax.loglog(range(1, len(ranked) + 1), ranked, label=name, color=colour, lw=2)
    ax.axhline(t, color="#aa3377", ls="--", lw=1, label=f"t = {t:,}")
    ax.set_xlabel("entry rank")
    ax.set_ylabel("matched records")
    ax.set_title("records per entry, before and after balancing")
    ax.legend()
    save_png(fig, plots / "entry_counts.png")
    plt.close(fig)

    removed = stats["removed"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(removed) or ["(nothing)"]
    ax.barh(names, [removed.get(n, 0) for n in names], color="#aa3377")
    ax.set_title("records removed, by reason")
    save_png(fig, plots / "removed.png")
    plt.close(fig)

    types = stats["types"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    shown = list(types.items())[:20]
    ax.barh([n for n, _ in reversed(shown)], [c for _, c in reversed(shown)], color="#228833")
    ax.set_title("kept records per natural type (top 20)")
    save_png(fig, plots / "natural_types.png")
    plt.close(fig)

    b, a = stats["balance"]["before"], stats["balance"]["after"]

    def frac(x, y):
        return f"{x / y:.1%}" if y else "n/a"

    top = sorted(before.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    lines = [
        "# EntityNet curation",
        "",
        f"Input: `{stats['input']}`. Output: {stats['output']}.",
        "",
        "| split | read | kept |",
        "|---|---:|---:|",
        *(f"| {s} | {stats['read'].get(s, 0):,} | {n:,} |" for s, n in stats["kept"].items()),
        "",
        "## Balancing (MetaCLIP, entries = knowledge-graph entities)",
        "",
        f"t = {t:,}: an entry matched by n records keeps each with probability t / max(n, t).",
        "",
        *([stats["balance"]["explained"], ""] if stats["balance"].get("explained") else []),
        "| | entries | head entries (n > t) | matches | head share of matches |",
        "|---|---:|---:|---:|---:|",
        f"| before | {b['entries']:,} | {b['head_entries']:,} | {b['matches']:,} | {frac(b['head_matches'], b['matches'])} |",
        f"| after | {a['entries']:,} | {a['head_entries']:,} | {a['matches']:,} | {frac(a['head_matches'], a['matches'])} |",
        "",
        "![entry counts](plots/entry_counts.png)",
        "",
        "Largest entries before balancing: "
        + ", ".join(f"{labels.get(e, e)} ({n:,} → {after.get(e, 0):,})" for e, n in top),
        "",
        "## Removed",
        "",
        "| reason | records |",
        "|---|---:|",
        *(f"| {r} | {n:,} |" for r, n in removed.items()),
        "",
        "![removed](plots/removed.png)",
        "",
        *amended_lines(stats.get("amended") or {}),
        *(unimaged_lib.card_lines(stats["unimaged"], unimaged or []) if "unimaged" in stats else []),
        "## Evaluation-set decontamination",
        "",
    ]
    if stats["eval_sets"]:
        lines += ["| evaluation set | its images | harvested images removed |", "|---|---:|---:|"]
        lines += [
            f"| {name} | {info['images']:,} | {stats['contamination'].get(name, 0):,} |"
            for name, info in stats["eval_sets"].items()
        ]
    else:
        lines.append("No evaluation set was given (`--decontaminate`): zero-shot numbers may be inflated.")
    lines += ["", "## Natural types", "", "![natural types](plots/natural_types.png)", ""]
    lines += license_lines(stats.get("per_license"), stats.get("per_source"))
    card = out / "DATACARD.md"
    with atomic_open(card) as f:
        f.write("\n".join(lines))
    return card


def amended_lines(amended: dict[str, dict[str, int]]) -> list[str]:
    """The records the filters kept changed (an alt text dropped, say), per filter."""
    if not amended:
        return []
    return [
        "Kept, amended by a filter (the texts it dropped):",
        "",
        "| filter | records | dropped |",
        "|---|---:|---:|",
        *(f"| {f} | {a.get('records', 0):,} | {a.get('dropped', 0):,} |" for f, a in amended.items()),
        "",
    ]
