"""Entities without images: the entities of the curation's entities.jsonl (under the subset roots,
when given) that no image of the curated dataset is linked to, each with why: no search result
named it, its candidates gave no image linked to it, or curation removed every image it had.

The pipeline sums these per-entity counts (bounded by the entities, never by the records):

    ("candidates", e)        the harvest's candidate URLs that named e (its candidates/ files)
    ("harvested", e)         input records linked to e
    ("kept", e)              kept records linked to e (a near-duplicate's representative carries
                             its copies' entities)
    ("named", e)             kept records not linked to e whose alt texts name it (a balancing
                             match, not a link)
    ("removed", e, reason)   removed records linked to e, by reason (a merged image counts under
                             every reason it met: its copy's near_duplicate and, say, its
                             representative's balanced_out)

`unimaged` turns them and the entities into the rows of `unimaged_entities.tsv` and the card's
list; the explorer gives `why` its own counts, so both say the same thing in the same words.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping

from entitynet.records import Entity

UNIMAGED = "unimaged_entities.tsv"
SHOWN = 50  # entities the data card lists; the file has them all
KINDS = {  # kind -> its words, in the order lists show them
    "no_candidates": "no candidates",
    "none_harvested": "candidates but no image",
    "not_in_input": "no image in the input",
    "all_removed": "all images removed by curation",
}


def _n(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _by_count(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def why(
    candidates: int | None,
    harvested: int,
    removed: Mapping[str, int] | None = None,
    outcomes: Mapping[str, int] | None = None,
    named: int = 0,
) -> tuple[str, str]:
    """(kind, text): why an entity has no image. `candidates`: the candidate URLs that named it
    (None: not known, the input is no harvest with candidates files); `harvested`: input images
    linked to it; `removed`: reason -> how many of those curation removed; `outcomes`: outcome ->
    how many of its candidates ended so; `named`: kept images whose alt texts name it unlinked."""
    if harvested:
        reasons = f" ({_by_count(removed)})" if removed else ""
        if harvested == 1:
            kind, text = "all_removed", f"its only harvested image was removed by curation{reasons}"
        else:
            kind, text = (
                "all_removed",
                f"all {harvested:,} harvested images were removed by curation{reasons}",
            )
    elif candidates is None:
        kind, text = "not_in_input", "no image in the input is linked to it"
    elif not candidates:
        kind, text = "no_candidates", "no candidates: no search result named it"
    else:
        detail = f" (outcomes: {_by_count(outcomes)})" if outcomes else ""
        kind, text = (
            "none_harvested",
            f"{_n(candidates, 'candidate URL')} named it, no harvested image is linked to it{detail}",
        )
    if named:
        text += f"; its name occurs in the alt texts of {_n(named, 'kept image')}"
    return kind, text


def unimaged(
    entities: Iterable[Entity],
    counts: Mapping[tuple, int],
    candidates_known: bool,
    selected: Container[str] | None = None,
) -> list[tuple[str, str, str, str]]:
    """(id, label, kind, why) of every entity (in `selected`, when given) that no kept record is
    linked to, by kind (`KINDS`' order), then label. `counts`: the module docstring's."""
    removed: dict[str, dict[str, int]] = {}
    for key, n in counts.items():
        if key[0] == "removed":
            removed.setdefault(key[1], {})[key[2]] = n
    rows, seen = [], set()
    for e in entities:
        if e.id in seen or (selected is not None and e.id not in selected):
            continue
        seen.add(e.id)
        if counts.get(("kept", e.id), 0):
            continue
        kind, text = why(
            counts.get(("candidates", e.id), 0) if candidates_known else None,
            counts.get(("harvested", e.id), 0),
            removed.get(e.id),
            named=counts.get(("named", e.id), 0),
        )
        rows.append((e.id, e.label, kind, text))
    order = list(KINDS)
    return sorted(rows, key=lambda r: (order.index(r[2]), r[1].casefold(), r[0]))


def _cell(text: str) -> str:
    return " ".join(text.split())


def tsv_lines(rows: Iterable[tuple[str, str, str, str]]) -> list[str]:
    """`unimaged_entities.tsv`: entity, label, kind (`KINDS`), why."""
    return ["entity\tlabel\tkind\twhy"] + ["\t".join(_cell(x) for x in row) for row in rows]


def summary(rows: list[tuple[str, str, str, str]], considered: int, subset: bool = False) -> dict:
    """The stats' `unimaged`: how many of the `considered` entities have no image, per kind, the
    file, and one line saying so."""
    per_kind = {KINDS[k]: n for k in KINDS if (n := sum(1 for r in rows if r[2] == k))}
    whose = "entities under the subset roots" if subset else "entities"
    if rows:
        line = (
            f"entities without images: {len(rows):,} of {considered:,} {whose} "
            f"({_by_count_in_order(per_kind)}); each with why: {UNIMAGED}"
        )
    else:
        line = f"entities without images: none of the {considered:,} {whose}"
    return {
        "count": len(rows),
        "of": considered,
        "subset": subset,
        "per_kind": per_kind,
        "file": UNIMAGED,
        "summary": line,
    }


def _by_count_in_order(per_kind: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in per_kind.items())


def _md(text: str) -> str:
    return _cell(text).replace("|", "\\|")


def card_lines(info: dict, rows: list[tuple[str, str, str, str]], shown: int = SHOWN) -> list[str]:
    """The data card's section: the count, the first `shown` entities with why, where the rest are."""
    n, of = info["count"], info["of"]
    whose = "entities under the subset roots" if info.get("subset") else "entities of entities.jsonl"
    lines = [f"## Entities without images: {n:,}", ""]
    if not n:
        return lines + [f"Every one of the {of:,} {whose} has at least one image in the curated dataset.", ""]
    lines += [
        f"{n:,} of the {of:,} {whose} {'has' if n == 1 else 'have'} no image in the curated dataset "
        f"(no kept image is linked to {'it' if n == 1 else 'them'}): {_by_count_in_order(info['per_kind'])}. "
        f"The full list, with why: `{info['file']}`.",
        "",
        "| entity | label | why |",
        "|---|---|---|",
        *(f"| {_md(e)} | {_md(label)} | {_md(text)} |" for e, label, _, text in rows[:shown]),
        "",
    ]
    if n > shown:
        lines += [f"The first {shown:,} are shown; {n - shown:,} more are in `{info['file']}`.", ""]
    return lines
