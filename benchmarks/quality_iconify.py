"""Quality benchmark: the whole EntityNet chain on the Iconify emoji world, scored on held-out styles.

    python benchmarks/quality_iconify.py                                  # full run (about 45 min on 2 cores)
    python benchmarks/quality_iconify.py --limit-classes 20 --steps 50 --seeds 0   # a quick smoke run
    python benchmarks/quality_iconify.py --checkout /work/before --out /tmp/quality-before

It builds (or reuses) the kit of benchmarks/iconify_world.py (icon sets from the npm registry,
a Wikidata-shaped KG, a web of noisy emoji pictures on 127.0.0.1 that does not honour "-term"
exclusions, held-out ImageFolders of two other emoji styles), then runs the documented chain
through the CLI of a chosen checkout as subprocesses, timing each stage:

    kg expand -> queries -> harvest (searxng backend on the kit's web) -> curate (decontaminated
    against the merged held-out set) -> tokenizer train -> train (3 text mixes x seeds) -> eval
    (bare templates and the default ensemble; with --synonyms too where the CLI has it)

and scores the harvest's entity links against the kit's ground truth. Everything goes to
OUT/quality.json and OUT/quality.md, and a table with PASS/FAIL against the targets is printed.

`--checkout DIR` runs that checkout's CLI (PYTHONPATH=DIR, cwd DIR, DIR/configs/tiny_cpu.py);
`--python PATH` picks the interpreter (default: this one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import iconify_world  # noqa: E402

MIXES = (
    ("kg+alt", 0.5, "KG + alt text (0.5)"),
    ("alt", 1.0, "alt text only (1.0)"),
    ("kg", 0.0, "KG only (0.0)"),
)
TARGET_TOP1, TARGET_TOP5 = 0.25, 0.50


class Runner:
    """Runs `PYTHON -m entitynet_cli ...` of one checkout, logging and timing every call."""

    def __init__(self, python: str, checkout: Path, out: Path):
        self.python = python
        self.checkout = checkout
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = str(checkout) + (
            os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else ""
        )
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.times: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of the subprocess (user + system)
        self.last_cpu = 0.0
        self.n = 0

    def cli(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        self.n += 1
        cmd = [self.python, "-m", "entitynet_cli", *map(str, args)]
        log = self.logs / f"{self.n:03d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.log"
        print(f"  $ {' '.join(cmd[2:])}", flush=True)
        started = time.time()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(log, "w") as f:
            f.write(" ".join(cmd) + "\n\n")
            f.flush()
            p = subprocess.run(
                cmd, cwd=self.checkout, env=self.env, stdout=subprocess.PIPE, stderr=f, text=True
            )
            f.write("\n--- stdout\n" + (p.stdout or ""))
        took = time.time() - started
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        self.times[name] = self.times.get(name, 0.0) + took
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu
        self.last_cpu = cpu
        print(f"    {name}: {took:.1f} s wall, {cpu:.1f} s CPU (rc {p.returncode}; log {log})", flush=True)
        if check and p.returncode != 0:
            tail = log.read_text()[-3000:]
            raise SystemExit(f"{name} failed with status {p.returncode}:\n{tail}")
        return p

    def has_flag(self, *words: str) -> bool:
        p = subprocess.run(
            [self.python, "-m", "entitynet_cli", *words[:-1], "--help"],
            cwd=self.checkout, env=self.env, capture_output=True, text=True,
        )  # fmt: skip
        return words[-1] in p.stdout


# ---------------------------------------------------------------- link precision

DUMP_LINKS = r"""
import json, sys
from pathlib import Path
from entitynet import shards
d = sys.argv[1]
info = json.loads((Path(d) / "dataset_info.json").read_text())
out = open(sys.argv[2], "w")
for s in info.get("splits", []):
    for r in shards.iter_records(d, s["name"]):
        out.write(json.dumps({"split": s["name"], "urls": list(r.urls or (r.url,)), "entities": list(r.entity_ids),
                              "alt": list(r.alt_texts)[:6]}) + "\n")
out.close()
"""

IMG_ID = re.compile(r"/img/([0-9a-f]{16})\.(?:png|jpg)")


def link_stats(runner: Runner, shards_dir: Path, kit, dump: Path) -> dict:
    p = subprocess.run(
        [runner.python, "-c", DUMP_LINKS, str(shards_dir), str(dump)],
        cwd=runner.checkout, env=runner.env, capture_output=True, text=True,
    )  # fmt: skip
    if p.returncode != 0:
        return {"error": p.stderr[-2000:]}
    anc = {k: set(v) for k, v in kit.ancestors.items()}
    kinds = {}
    for line in (kit.web / "index.jsonl").read_text().splitlines():
        d = json.loads(line)
        kinds[d["id"]] = d["kind"]
    records = links = right = 0
    taxon_images = taxon_recalled = taxon_exact = 0
    distractor_records = collage_records = 0
    heavy_links = 0
    per_record = []
    for line in dump.read_text().splitlines():
        r = json.loads(line)
        ids = [m.group(1) for u in r["urls"] for m in [IMG_ID.search(u)] if m]
        truth: set[str] = set()
        kind = "distractor"
        for i in ids:
            truth |= set(kit.truth.get(i, []))
            k = kinds.get(i, "distractor")
            if k == "taxon" or (k == "collage" and kind != "taxon"):
                kind = k
        ok_ids = set(truth)
        for t in truth:
            ok_ids |= anc.get(t, set())
        ents = r["entities"]
        n_right = sum(1 for e in ents if e in ok_ids)
        records += 1
        links += len(ents)
        right += n_right
        per_record.append(len(ents))
        if len(ents) >= 10:
            heavy_links += len(ents)
        if kind == "taxon":
            taxon_images += 1
            taxon_recalled += n_right > 0
            taxon_exact += any(e in truth for e in ents)
        elif kind == "collage":
            collage_records += 1
        else:
            distractor_records += 1
    per_record.sort()
    return {
        "records": records,
        "taxon_images": taxon_images,
        "distractor_images": distractor_records,
        "collage_images": collage_records,
        "links": links,
        "links_per_image": links / records if records else 0.0,
        "links_per_image_median": per_record[len(per_record) // 2] if per_record else 0,
        "link_precision": right / links if links else 0.0,
        "recall": taxon_recalled / taxon_images if taxon_images else 0.0,
        "recall_exact": taxon_exact / taxon_images if taxon_images else 0.0,
        "share_of_links_on_images_with_10_plus": heavy_links / links if links else 0.0,
        "images_with_10_plus": sum(1 for n in per_record if n >= 10),
        "distractor_share_of_images": distractor_records / records if records else 0.0,
    }


# ---------------------------------------------------------------- evaluation


def eval_variants(runner: Runner) -> list[tuple[str, list[str]]]:
    """(name, extra flags): bare and the default ensemble; with --synonyms too where the CLI has it."""
    out = [("bare", ["--templates", "bare"]), ("ensemble", [])]
    if runner.has_flag("eval", "--synonyms"):
        out += [("bare-syn", ["--templates", "bare", "--synonyms"]), ("ensemble-syn", ["--synonyms"])]
    return out


def evaluate_runs(runner: Runner, runs: dict[str, Path], kit, out: Path, mode: str) -> dict:
    """results[run][set][variant] = {top1, top5, macro, ...}. grouped: one CLI call per (set, variant)
    for all runs (a side-by-side comparison, fewer process starts); single: one call per run."""
    results: dict = {r: {} for r in runs}
    variants = eval_variants(runner)
    for set_name, folder in kit.eval_sets.items():
        if not folder.is_dir():
            continue
        for variant, flags in variants:
            tag = f"{set_name}-{variant}"
            done = False
            if mode == "grouped" and len(runs) > 1:
                dest = out / "eval" / tag
                args = ["eval"]
                for name, w in runs.items():
                    args += ["--workdir", str(w), "--label", name]
                args += ["--imagefolder", str(folder), *flags, "--out", str(dest)]
                p = runner.cli(f"eval {tag}", *args, check=False)
                res = dest / "results.json"
                if p.returncode == 0 and res.exists():
                    for r in json.loads(res.read_text())["runs"]:
                        results[r["label"]].setdefault(set_name, {})[variant] = _scores(r)
                        w = runs[r["label"]] / f"eval-{tag}"
                        w.mkdir(parents=True, exist_ok=True)
                        (w / "results.json").write_text(json.dumps(r, indent=1))
                    done = True
                else:
                    print(
                        f"    grouped evaluation failed (rc {p.returncode}); evaluating run by run",
                        flush=True,
                    )
            if not done:
                for name, w in runs.items():
                    dest = w / f"eval-{tag}"
                    runner.cli(f"eval {tag}", "eval", "--workdir", str(w), "--imagefolder", str(folder), *flags,
                               "--out", str(dest))  # fmt: skip
                    r = json.loads((dest / "results.json").read_text())
                    results[name].setdefault(set_name, {})[variant] = _scores(r)
    return results


def _scores(r: dict) -> dict:
    z = r.get("zero_shot", {})
    fx = z.get("fixed_templates", {})
    return {
        "top1": fx.get("top1"),
        "top5": fx.get("top5"),
        "macro": fx.get("macro"),
        "classes": z.get("classes"),
        "images": z.get("images"),
        "templates": z.get("template_count"),
        "step": r.get("step"),
    }


def mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def pct(m: float, s: float | None = None) -> str:
    if m != m:  # nan
        return "n/a"
    return f"{m:6.2%}" if s is None else f"{m:6.2%} ± {s:5.2%}"


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(iconify_world.DEFAULT_CACHE), help="icon sets and built kits")
    ap.add_argument("--out", default="quality-iconify-out", help="where every stage writes (fresh each run)")
    ap.add_argument("--checkout", default=str(HERE.parent), help="the EntityNet checkout whose CLI runs")
    ap.add_argument("--python", default=sys.executable, help="interpreter with EntityNet's dependencies")
    ap.add_argument(
        "--steps", type=int, default=1200, help="training steps per run (tiny_cpu config; 3-5 min each)"
    )
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    ap.add_argument("--mixes", default="kg+alt,alt,kg", help="text mixes to train: kg+alt, alt, kg")
    ap.add_argument("--limit-classes", type=int, default=0, help="a smaller kit (smoke runs)")
    ap.add_argument("--kit-seed", type=int, default=0)
    ap.add_argument(
        "--train-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more --config.KEY=VALUE for every training run (e.g. data.image_size=64)",
    )
    ap.add_argument("--eval-mode", choices=("grouped", "single"), default="grouped")
    ap.add_argument(
        "--search-rate", default="0", help="harvest --search-rate (0: unthrottled; the web is local)"
    )
    ap.add_argument("--vocab-size", type=int, default=0, help="tokenizer --vocab-size (0: the CLI's default)")
    ap.add_argument("--render", metavar="OUT", help="only re-write OUT/quality.md from OUT/quality.json")
    args = ap.parse_args(argv)
    if args.render:
        report = json.loads((Path(args.render) / "quality.json").read_text())
        kit = iconify_world.load(Path(report["kit"]["root"]))
        mixes = [m for m in MIXES if m[0] in report["summary"]]
        md = render_markdown(report, kit, mixes, report["seeds"])
        (Path(args.render) / "quality.md").write_text(md)
        print(md)
        return 0

    checkout = Path(args.checkout).resolve()
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)  # every stage starts afresh
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    mixes = [m for m in MIXES if m[0] in args.mixes.split(",")]
    report: dict = {
        "checkout": str(checkout),
        "python": args.python,
        "steps": args.steps,
        "seeds": seeds,
        "train_overrides": args.train_override,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        report["commit"] = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        report["commit"] = ""
    wall = time.time()

    print("== kit", flush=True)
    t0 = time.time()
    try:
        kit = iconify_world.build(Path(args.cache), args.limit_classes, args.kit_seed)
    except iconify_world.KitError as e:
        print(f"quality_iconify: error: {e}", file=sys.stderr)
        return 2
    report["kit"] = dict(kit.stats, root=str(kit.root))
    kit_seconds = time.time() - t0
    s = kit.stats
    print(f"kit {kit.root}: {s['classes_in_kg']} KG classes, {s['classes_with_web_images']} with web images, "
          f"{s['eval_classes']} evaluation classes; web {s['web_images']:,} images ({s['web_taxon_images']:,} of taxa, "
          f"{s['web_distractor_images']:,} distractors, {s['web_collages']} collages); evaluation images "
          f"{s['eval_images_per_set']}", flush=True)  # fmt: skip

    run = Runner(args.python, checkout, out)
    run.times["kit (build or reuse)"] = kit_seconds
    print("== kg expand", flush=True)
    kg = out / "kg"
    run.cli("kg expand", "kg", "expand", "--kg-file", kit.kg, "--root", "Q729", "--root", "Q756", "--root", "Q764",
            "--out", kg)  # fmt: skip
    ents = [json.loads(x) for x in (kg / "entities.jsonl").read_text().splitlines() if x.strip()]
    got = {e["id"] for e in ents}
    missing = sorted(kit.labels[q] for q in kit.labels if q not in got)
    report["kg"] = {"entities": len(ents), "kit_classes": len(kit.labels), "missing": missing}
    print(f"  {len(ents)} entities expanded; kit classes missing: {missing or 'none'}", flush=True)
    entities = kg / "entities.jsonl"

    print("== queries", flush=True)
    run.cli("queries", "queries", "--entities", entities, "--out", out / "queries")
    queries = [
        json.loads(x) for x in (out / "queries" / "queries.jsonl").read_text().splitlines() if x.strip()
    ]
    report["queries"] = {"queries": len(queries)}
    print(f"  {len(queries):,} queries", flush=True)

    print("== harvest from the kit's web", flush=True)
    with iconify_world.IconifyWeb(kit.web) as web:
        print(f"  web: {len(web.docs):,} images at {web.base_url}", flush=True)
        run.cli("harvest", "harvest", "--queries", out / "queries" / "queries.jsonl", "--backend", "searxng",
                "--searxng-url", web.base_url, "--entities", entities, "--allow-loopback",
                "--search-rate", args.search_rate, "--out", out / "shards")  # fmt: skip
        report["harvest"] = {"searches": web.searches, "image_requests": web.fetches}
    hs = json.loads((out / "shards" / "harvest_stats.json").read_text())
    report["harvest"].update({k: hs.get(k) for k in ("candidates", "written", "success_rate", "per_split")})
    print("== link precision against the kit's ground truth", flush=True)
    report["links_harvest"] = link_stats(run, out / "shards", kit, out / "links-harvest.jsonl")
    print(f"  {json.dumps(report['links_harvest'])}", flush=True)

    print("== curate", flush=True)
    run.cli("curate", "curate", "--shards", out / "shards", "--entities", entities,
            "--decontaminate", kit.eval_sets["merged"], "--out", out / "curated")  # fmt: skip
    cs = json.loads((out / "curated" / "curation_stats.json").read_text())
    report["curate"] = {k: cs.get(k) for k in ("read", "kept", "removed", "contamination")}
    report["links_curated"] = link_stats(run, out / "curated", kit, out / "links-curated.jsonl")

    print("== tokenizer", flush=True)
    tok_args = ["tokenizer", "train", "--shards", out / "curated", "--entities", entities]
    if args.vocab_size:
        tok_args += ["--vocab-size", str(args.vocab_size)]
    p = run.cli("tokenizer train", *tok_args, check=False)
    if p.returncode != 0 and not args.vocab_size:
        print("  the default vocabulary failed on this corpus; retrying with --vocab-size 2000", flush=True)
        p = run.cli("tokenizer train (2000)", *tok_args, "--vocab-size", "2000")
        report["tokenizer_vocab_retry"] = 2000
    tokenizer = out / "curated" / "tokenizer.json"
    m = re.search(r":\s*(\S+tokenizer\.json)\s*$", p.stdout.strip())
    if m:
        tokenizer = Path(m.group(1))
    if not tokenizer.exists():
        raise SystemExit(f"no tokenizer.json found ({p.stdout.strip()})")

    print(f"== train: {len(mixes)} text mixes x {len(seeds)} seeds, {args.steps} steps each", flush=True)
    config = checkout / "configs" / "tiny_cpu.py"
    runs: dict[str, Path] = {}
    train_times: dict[str, float] = {}
    train_cpu: dict[str, float] = {}
    for name, chance, _ in mixes:
        for seed in seeds:
            label = f"{name}-s{seed}"
            w = out / "runs" / label
            started = time.time()
            run.cli(f"train {label}", "train", "--config", config, "--workdir", w,
                    f"--config.data.shards={out / 'curated'}", f"--config.data.entities={entities}",
                    f"--config.data.tokenizer={tokenizer}", f"--config.total_steps={args.steps}",
                    f"--config.seed={seed}", f"--config.data.alt_text_chance={chance}",
                    *[f"--config.{o}" for o in args.train_override])  # fmt: skip
            train_times[label] = time.time() - started
            train_cpu[label] = run.last_cpu
            runs[label] = w
    report["train_seconds"] = train_times
    report["train_cpu_seconds"] = train_cpu

    print("== evaluate on the held-out styles", flush=True)
    results = evaluate_runs(run, runs, kit, out, args.eval_mode)
    report["results"] = results

    # ---- summary
    summary: dict = {}
    for name, _, _ in mixes:
        for set_name in kit.eval_sets:
            for variant in {v for r in results.values() for s_ in r.values() for v in s_}:
                vals = [results[f"{name}-s{sd}"].get(set_name, {}).get(variant) for sd in seeds]
                vals = [v for v in vals if v]
                if not vals:
                    continue
                t1 = mean_std([v["top1"] for v in vals])
                t5 = mean_std([v["top5"] for v in vals])
                summary.setdefault(name, {}).setdefault(set_name, {})[variant] = {
                    "top1_mean": t1[0], "top1_std": t1[1], "top5_mean": t5[0], "top5_std": t5[1],
                    "seeds": len(vals), "classes": vals[0]["classes"], "images": vals[0]["images"],
                }  # fmt: skip
    report["summary"] = summary
    checks = []
    main_mix = "kg+alt" if "kg+alt" in summary else next(iter(summary), None)
    if main_mix:
        for set_name in iconify_world.HELD_OUT_STYLES:
            e = summary[main_mix].get(set_name, {}).get("ensemble")
            if e:
                checks.append(
                    (
                        f"{main_mix} top-1 on {set_name} (ensemble) >= {TARGET_TOP1:.0%}",
                        e["top1_mean"],
                        e["top1_mean"] >= TARGET_TOP1,
                    )
                )
                checks.append(
                    (
                        f"{main_mix} top-5 on {set_name} (ensemble) >= {TARGET_TOP5:.0%}",
                        e["top5_mean"],
                        e["top5_mean"] >= TARGET_TOP5,
                    )
                )
    if "kg+alt" in summary and "alt" in summary:
        for set_name in ("merged",):
            for variant in ("ensemble", "bare"):
                a = summary["kg+alt"].get(set_name, {}).get(variant)
                b = summary["alt"].get(set_name, {}).get(variant)
                if a and b:
                    spread = max(a["top1_std"], b["top1_std"])
                    diff = a["top1_mean"] - b["top1_mean"]
                    checks.append(
                        (
                            f"KG+alt above alt-only on {set_name} ({variant}) top-1 by > seed spread "
                            f"({spread:.2%})",
                            diff,
                            diff > spread,
                        )
                    )
    report["checks"] = [{"check": c, "value": v, "pass": ok} for c, v, ok in checks]
    report["stage_seconds"] = run.times
    report["stage_cpu_seconds"] = run.cpu
    report["total_seconds"] = time.time() - wall
    (out / "quality.json").write_text(json.dumps(report, indent=1, default=str))
    md = render_markdown(report, kit, mixes, seeds)
    (out / "quality.md").write_text(md)
    print("\n" + md)
    print(f"wrote {out / 'quality.json'} and {out / 'quality.md'}")
    return 0


def render_markdown(report: dict, kit, mixes, seeds) -> str:
    s = report["kit"]
    lines = [
        f"# Quality on the Iconify emoji world: {report['checkout']} ({report.get('commit', '')})",
        "",
        f"Kit: {s['classes_in_kg']} KG classes ({s['classes_with_web_images']} with web pictures, "
        f"{s['eval_classes']} evaluation classes); web {s['web_images']:,} images: {s['web_taxon_images']:,} of taxa "
        f"in {', '.join(s['train_styles'])}, {s['web_distractor_images']:,} distractors, {s['web_collages']} "
        f"collages. Held-out images: "
        + ", ".join(f"{k} {v}" for k, v in s["eval_images_per_set"].items())
        + " (classes: "
        + ", ".join(f"{k} {v}" for k, v in s["eval_classes_per_set"].items())
        + ").",
        "",
        f"Training: configs/tiny_cpu.py, {report['steps']} steps, seeds {', '.join(map(str, seeds))}"
        + (f", overrides {', '.join(report['train_overrides'])}" if report["train_overrides"] else "")
        + ".",
        f"KG expansion: {report['kg']['entities']} entities, missing kit classes: "
        f"{', '.join(report['kg']['missing']) or 'none'}. Queries: {report['queries']['queries']:,}.",
        "",
        "## Zero-shot accuracy on held-out styles (mean ± std over seeds)",
        "",
    ]
    summary = report["summary"]
    variants = sorted(
        {v for m in summary.values() for st in m.values() for v in st},
        key=lambda v: (
            ["bare", "ensemble", "bare-syn", "ensemble-syn"].index(v)
            if v in ["bare", "ensemble", "bare-syn", "ensemble-syn"]
            else 9
        ),
    )
    head = "| text mix | eval set | " + " | ".join(f"{v} top-1 | {v} top-5" for v in variants) + " |"
    lines += [head, "|---|---|" + "---:|---:|" * len(variants)]
    for name, _, label in mixes:
        for set_name in kit.eval_sets:
            st = summary.get(name, {}).get(set_name)
            if not st:
                continue
            cells = []
            for v in variants:
                e = st.get(v)
                cells += (
                    [pct(e["top1_mean"], e["top1_std"]), pct(e["top5_mean"], e["top5_std"])]
                    if e
                    else ["", ""]
                )
            lines.append(
                f"| {label} | {set_name} ({st[next(iter(st))]['classes']} cl.) | " + " | ".join(cells) + " |"
            )
    lines += ["", "## Targets", "", "| check | value | result |", "|---|---:|---|"]
    for c in report["checks"]:
        lines.append(f"| {c['check']} | {c['value']:.2%} | {'PASS' if c['pass'] else 'FAIL'} |")
    lines += ["", "## Entity links against the kit's ground truth", "",
              "| shards | images | of taxa | distractors | collages | links/image (median) | link precision | "
              "recall (entity or ancestor) | recall (exact) | links on images with >= 10 entities |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for key, name in (("links_harvest", "harvest"), ("links_curated", "curated")):
        x = report.get(key, {})
        if "records" not in x:
            lines.append(f"| {name} | error: {x.get('error', '')[:200]} |")
            continue
        lines.append(
            f"| {name} | {x['records']:,} | {x['taxon_images']:,} | {x['distractor_images']:,} | "
            f"{x['collage_images']:,} | {x['links_per_image']:.2f} ({x['links_per_image_median']}) | "
            f"{x['link_precision']:.2%} | {x['recall']:.2%} | {x['recall_exact']:.2%} | "
            f"{x['share_of_links_on_images_with_10_plus']:.2%} ({x['images_with_10_plus']:,} images) |"
        )
    h = report.get("harvest", {})
    lines += [
        "",
        f"Harvest: {h.get('candidates', 0):,} candidates, {h.get('written', 0):,} written; "
        f"{h.get('searches', 0):,} searches and {h.get('image_requests', 0):,} image requests served. "
        f"Curation kept {sum((report['curate'].get('kept') or {}).values()):,} of "
        f"{sum((report['curate'].get('read') or {}).values()):,} (removed: {report['curate'].get('removed')}; "
        f"contamination: {report['curate'].get('contamination')}).",
        "",
    ]
    lines += ["## Stage times", "", "| stage | wall s | CPU s |", "|---|---:|---:|"]
    cpu = report.get("stage_cpu_seconds", {})
    for k, v in report["stage_seconds"].items():
        c = f"{cpu[k]:.1f}" if k in cpu else ""
        lines.append(f"| {k} | {v:.1f} | {c} |")
    tt = list(report.get("train_seconds", {}).values())
    tc = list(report.get("train_cpu_seconds", {}).values())
    if tt:
        c = f"{statistics.fmean(tc):.1f}, {max(tc):.1f}" if tc else ""
        lines.append(f"| one training run (mean, max) | {statistics.fmean(tt):.1f}, {max(tt):.1f} | {c} |")
    lines.append(f"| total | {report['total_seconds']:.1f} | |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
