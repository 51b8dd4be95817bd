"""A data card for a harvest: markdown with PNG plots (images per entity, outcomes, success rate
per host, image sizes), written next to the shards so the dataset explains itself."""

from __future__ import annotations

import os
from pathlib import Path

from entitynet.files import atomic_open


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90, bbox_inches="tight")


def pool_balance_lines(pb: dict | None) -> list[str]:
    if not pb:
        return []
    b, a = pb["before"], pb["after"]
    return [
        f"- pool balanced before fetching (MetaCLIP, t={pb['t']:,}, seed {pb['seed']}): "
        f"{b['entries']:,} entries, {b['head_entries']:,} above t; matches {b['matches']:,} -> "
        f"{a['matches']:,}; {pb['fetches_saved']:,} fetches saved (per entry: pool_balance.tsv)",
    ]


def by_count(counts: dict[str, int]) -> dict[str, int]:
    """Largest first, then by name (stats files store their keys sorted by name)."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def license_lines(per_license: dict | None, per_source: dict | None) -> list[str]:
    """Records per licence and per source, and where the attribution rows are."""
    if not per_license and not per_source:
        return []
    per_license, per_source = by_count(per_license or {}), by_count(per_source or {})
    total = sum(per_license.values())
    lines = ["## Licences and sources", "", "| licence | records | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {n:,} | {n / max(total, 1):.1%} |" for k, n in per_license.items()]
    lines += ["", "| source | records |", "|---|---:|"]
    lines += [f"| {k} | {n:,} |" for k, n in per_source.items()]
    return lines + [
        "",
        "`unknown`: no licence was given (web search results): ask the rights holder before publishing. "
        "Every record's URL, page, licence and whom to credit: `attribution/*.tsv` (one file per shard). "
        "An image found by two sources counts in both source rows.",
        "",
    ]


def link_lines(links: dict, unlinked: int) -> list[str]:
    """The entity-link statistics of the written records (see `entitynet.links`)."""
    images = links.get("images", 0)
    if not images:
        return []

    def per(n: int) -> str:
        return f"{n / images:.2f}"

    found, kept = links.get("links_found", 0), links.get("links_kept", 0)
    return [
        "## Entity links",
        "",
        "Every entity whose query found an image is a candidate link; a link is kept when the source",
        "links the image to the entity by identifier, when the alt text names the entity, or when the entity's own name query found the image near the top of its",
        "results, unless the image was found by so many entities that it is generic or its alt texts",
        "name other entities instead.",
        "",
        "| | links | per image |",
        "|---|---:|---:|",
        f"| found by queries | {found:,} | {per(found)} |",
        f"| kept | {kept:,} | {per(kept)} |",
        f"| kept, the source links it by identifier (taxon id, category) | {links.get('kept_identifier', 0):,} | |",
        f"| kept, the alt text names the entity | {links.get('kept_alt_text', 0):,} | |",
        f"| kept, own name query near the top | {links.get('kept_name_query', 0):,} | |",
        f"| dropped, image found by too many entities (generic) | {links.get('dropped_generic', 0):,} | |",
        f"| dropped, the alt text names other entities (contradicted) | {links.get('dropped_contradicted', 0):,} | |",
        f"| dropped, weak evidence | {links.get('dropped_weak', 0):,} | |",
        "",
        f"Share of kept links the alt text supports: {links.get('kept_alt_text', 0) / max(kept, 1):.1%}. "
        f"Generic images written (some links dropped): {links.get('generic_images', 0):,}; "
        f"images dropped with no link kept (outcome `unlinked`): {unlinked:,}.",
        "",
    ]


def left_out_lines(left: dict | None) -> list[str]:
    """The entities `entitynet kg classify` judged not visual (they got no queries), with why."""
    if not left:
        return []
    by = ", ".join(f"{n:,} by {who}" for who, n in left["by"].items())
    lines = [
        f"## Entities left out before the search: {left['count']:,} ({by})",
        "",
        "Judged not visual by `entitynet kg classify` (kg-rule: the deterministic rule from the graph; "
        "llm:MODEL: the model's answer), so no queries were made for them.",
        "",
        "| entity | label | decided by | why |",
        "|---|---|---|---|",
        *[f"| {e} | {label} | {who} | {why} |" for e, label, who, why in left["entities"]],
    ]
    if left["count"] > len(left["entities"]):
        lines.append(f"| … | {left['count'] - len(left['entities']):,} more in left_out.jsonl | | |")
    return [*lines, ""]


def write_card(
    directory: str | os.PathLike,
    stats: dict,
    labels: dict[str, str] | None = None,
    title: str = "EntityNet harvest",
) -> Path:
    """`DATACARD.md` and `plots/*.png` in `directory`; returns the card's path."""
    plt = pyplot()
    out = Path(directory)
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    labels = labels or {}
    per_entity = stats.get("per_entity", {})
    top = sorted(per_entity.items(), key=lambda kv: (-kv[1], kv[0]))

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    shown = top[:25]
    a.barh([labels.get(e, e) for e, _ in reversed(shown)], [n for _, n in reversed(shown)], color="#4477aa")
    a.set_title("images per entity (top 25)")
    a.tick_params(axis="y", labelsize=7)
    b.hist([n for _, n in top] or [0], bins=30, color="#4477aa")
    b.set_title("entities by number of images")
    b.set_xlabel("images")
    save_png(fig, plots / "images_per_entity.png")
    plt.close(fig)

    outcomes = stats.get("per_outcome", {})
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(outcomes)
    ax.bar(
        names,
        [outcomes[n] for n in names],
        color=["#228833" if n == "written" else "#aa3377" if n != "duplicate" else "#bbbbbb" for n in names],
    )
    ax.set_title("outcome of every candidate")
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    save_png(fig, plots / "outcomes.png")
    plt.close(fig)

    hosts = sorted(stats.get("per_host", {}).items(), key=lambda kv: -kv[1]["urls"])[:20]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.3 * len(hosts))))
    ax.barh([h for h, _ in reversed(hosts)], [v["success_rate"] for _, v in reversed(hosts)], color="#66ccee")
    ax.set_xlim(0, 1)
    ax.set_title("success rate per host (20 hosts with most URLs)")
    save_png(fig, plots / "success_per_host.png")
    plt.close(fig)

    bins = (stats.get("size_bins") or {}).get("counts", [])
    fig, ax = plt.subplots(figsize=(5, 4))
    if bins:
        most = max(n for _, _, n in bins)
        ax.scatter(
            [w for w, _, _ in bins],
            [h for _, h, _ in bins],
            s=[4 + 120 * n / most for _, _, n in bins],
            alpha=0.5,
            color="#4477aa",
        )
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title(
        f"stored image sizes (bins of {(stats.get('size_bins') or {}).get('bin', 16)} px; area: images)"
    )
    save_png(fig, plots / "image_sizes.png")
    plt.close(fig)

    lines = [
        f"# {title}",
        "",
        f"- candidates: {stats.get('candidates', 0):,}; fetched: {stats.get('fetched', stats.get('candidates', 0)):,}; "
        f"written: {stats.get('written', 0):,} ({stats.get('success_rate', 0):.1%} of fetched)",
        *pool_balance_lines(stats.get("pool_balance")),
        "- records per split: " + ", ".join(f"{k} {v:,}" for k, v in stats.get("per_split", {}).items()),
        f"- entities with at least one image: {len(per_entity):,}",
        "",
        "| outcome | candidates |",
        "|---|---|",
        *[f"| {k} | {v:,} |" for k, v in outcomes.items()],
        "",
        *link_lines(stats.get("links") or {}, outcomes.get("unlinked", 0)),
        *license_lines(stats.get("per_license"), stats.get("per_source")),
        *left_out_lines(stats.get("left_out")),
        "![images per entity](plots/images_per_entity.png)",
        "",
        "![outcomes](plots/outcomes.png)",
        "",
        "![success rate per host](plots/success_per_host.png)",
        "",
        "![image sizes](plots/image_sizes.png)",
        "",
    ]
    card = out / "DATACARD.md"
    with atomic_open(card) as f:
        f.write("\n".join(lines))
    return card
