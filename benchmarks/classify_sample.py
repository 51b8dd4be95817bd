"""How well `entitynet kg classify`'s KG rule leaves out what cannot be photographed, on the sample
world, against the truth a person gives (the `visual` column of tools/make_sample_kg.py).

    python benchmarks/classify_sample.py

Expands the shipped sample graph in world mode and in living mode, classifies both with the KG rule
(no LLM: none can run here), and prints, per mode, how many entities the rule leaves out, how many
of those are non-visual by the truth (precision of the drop) and how many of the non-visual ones
it leaves out (recall), with the entities it gets wrong. The truth is a person's judgement; the
graph carries Wikidata-like statements that mislead a rule (a "statistical method" that is a
subclass of "tool", a "book" that is a subclass of a creative work), so the figures say what the
rule can do on a graph like Wikidata's, not a best case.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def truth() -> dict[str, bool]:
    """label -> visual, from the sample graph's source table."""
    spec = importlib.util.spec_from_file_location("make_sample_kg", ROOT / "tools" / "make_sample_kg.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_sample_kg"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return {(it.label or it.key): it.visual for it in module.TABLE}


def measure(mode: str, kg: str, work: Path, known: dict[str, bool]) -> dict:
    from beam_pipelines import expand_kg
    from entitynet.kg import classify
    from entitynet.kg.client import KGSource
    from entitynet.kg.expand import ExpandConfig
    from entitynet.records import Entity, read_jsonl

    source = KGSource(kg_files=(kg,))
    roots = ("Q729", "Q756", "Q764") if mode == "living" else ()
    expand_kg.run(source, ExpandConfig(mode=mode, roots=roots), str(work / mode))
    path = str(work / mode / "entities.jsonl")
    entities = list(read_jsonl(path, Entity))
    classify.run(entities, path, source.open(), kg, str(work / f"{mode}-c"), classify.ClassifyConfig())
    left = {e.label for e in classify.read_left_out(str(work / f"{mode}-c" / "entities.jsonl"))}
    non_visual = {e.label for e in entities if not known.get(e.label, True)}
    hit = left & non_visual
    return {
        "mode": mode,
        "entities": len(entities),
        "non_visual": len(non_visual),
        "left_out": len(left),
        "right": len(hit),
        "precision": len(hit) / len(left) if left else float("nan"),
        "recall": len(hit) / len(non_visual) if non_visual else float("nan"),
        "wrongly_left_out": sorted(left - non_visual),
        "missed": sorted(non_visual - left),
    }


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.0%}"  # nothing left out, or nothing to leave out


def main() -> int:
    kg = str(ROOT / "entitynet" / "data" / "sample_kg.ttl")
    known = truth()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(mode, kg, Path(tmp), known) for mode in ("world", "living")]
    print(
        "| mode | entities | non-visual (truth) | left out by the KG rule | of them non-visual | precision | recall |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['entities']} | {r['non_visual']} | {r['left_out']} | {r['right']} | "
            f"{_pct(r['precision'])} | {_pct(r['recall'])} |"
        )
    for r in rows:
        print(
            f"{r['mode']}: wrongly left out {r['wrongly_left_out'] or 'none'}; missed {r['missed'] or 'none'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
