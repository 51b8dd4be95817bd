r"""Quality benchmark: the whole EntityNet chain on the Iconify emoji world, scored on held-out styles.

    python benchmarks/quality_iconify.py                                  # full run (about 45 min on 2 cores)
    python benchmarks/quality_iconify.py --limit-classes 20 --steps 50 --seeds 0   # a quick smoke run
    python benchmarks/quality_iconify.py --checkout /work/before --out /tmp/quality-before
    python benchmarks/quality_iconify.py --out /tmp/quality-ablation \
        --arm "today:kg+alt=ema_decay=0.995|--weights raw" --arm "ema:kg+alt=ema_decay=0.995" \
        --arm "aug:kg+alt=data.augment.flip=0.5;data.augment.greyscale=0.2|--weights raw" \
        --main-arm aug                                                    # an ablation over one harvest
    python benchmarks/quality_iconify.py --config configs/small_data.py --mixes kg+alt,alt   # the recipe
    python benchmarks/quality_iconify.py --config configs/small_data.py --mixes kg+alt --steps 900 \
        --bootstrap --out /tmp/quality-bootstrap                       # retrain on the model filters' curation
    python benchmarks/quality_iconify.py --config configs/small_data.py --steps 900 \
        --train-override data.context_length=32 --arm "without:kg+alt=|--name-style all" \
        --arm "with:kg+alt=data.caption_weights.name_styles=0.3|--name-style all"   # taxonomic names

It builds (or reuses) the kit of benchmarks/iconify_world.py (icon sets from the npm registry,
a Wikidata-shaped KG, a web of noisy emoji pictures on 127.0.0.1 that does not honour "-term"
exclusions, held-out ImageFolders of two other emoji styles), then runs the documented chain
through the CLI of a chosen checkout as subprocesses, timing each stage:

    kg expand -> queries -> harvest (searxng backend on the kit's web) -> curate (decontaminated
    against the merged held-out set) -> tokenizer train -> train (arms x seeds) -> eval (bare
    templates and the default ensemble; with --synonyms too where the CLI has it)

and scores the harvest's entity links against the kit's ground truth. Everything goes to
OUT/quality.json and OUT/quality.md, and a table with PASS/FAIL against the targets is printed.

Arms: `--arm NAME:MIX=OVERRIDES[|EVALFLAGS]` (repeatable) trains one arm over the seeds, all arms on
the same harvest and curation. MIX is a text mix (kg+alt, alt, kg: data.alt_text_chance 0.5, 1.0,
0.0), OVERRIDES `;`-separated KEY=VALUE config overrides (`--config.KEY=VALUE`; values may hold
commas and parentheses, e.g. `data.crop_scale=(0.3,1.0)`; may be empty), EVALFLAGS extra flags for
`entitynet eval` (split like a shell line). Arms with the same MIX and OVERRIDES share their runs
(OUT/runs/<slug of the first such arm>-s<seed>). Without --arm there is one arm per --mixes entry,
named by its mix. The targets are checked on `--main-arm` (default: the last --arm, else kg+alt),
and it is compared with the arm of the same OVERRIDES trained on alt texts only, where there is one.

Bootstrapping (`--bootstrap`): after the arms are trained and evaluated, the harvest is embedded
(`entitynet embed`) with the main arm's first-seed run and curated again, with the first curation's
flags plus one model filter each: every `--bootstrap-filter NAME=CURATE_FLAGS` (default
`clip-top90=--clip-score-top 0.9` and `clip-top70=--clip-score-top 0.7`) and each threshold of
`--bootstrap-semdedup` (default 0.99, 0.995, 0.999; semantic deduplication is measured first, and
only the lowest threshold that removes at most `--semdedup-max-share` (10%) of the curated records
is trained on). The main arm is retrained over the same seeds on each such curation (the first
curation's tokenizer) and evaluated as before; the report adds, per filter, what it removed by
reason (and the share of the first curation), the entity links of what it kept and of what it
removed, and zero-shot accuracy against the main arm, paired by seed.

Name styles: where an arm's eval flags hold `--name-style` (the CLI's; see docs/stages/evaluate.md),
the report adds, per evaluation set and style, each arm's top-1 and top-5 under the default template
set, each later arm against the first paired by seed, the same for the best of the prompt sets
(labelled apart, as the reference reports it), and each style's accuracy on living and other classes.

`--checkout DIR` runs that checkout's CLI (PYTHONPATH=DIR, cwd DIR); `--config PATH` the training
config (default DIR/configs/tiny_cpu.py; a relative PATH is taken relative to DIR); `--python PATH`
picks the interpreter (default: this one). `--render OUT` re-writes OUT/quality.md from OUT/quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import iconify_world  # noqa: E402

MIXES = (
    ("kg+alt", 0.5, "KG + alt text (0.5)"),
    ("alt", 1.0, "alt text only (1.0)"),
    ("kg", 0.0, "KG only (0.0)"),
)
MIX_CHANCE = {name: chance for name, chance, _ in MIXES}
MIX_LABEL = {name: label for name, _, label in MIXES}
TARGET_TOP1, TARGET_TOP5 = 0.25, 0.50  # the main arm on each held-out style (ensemble)
TARGET_MERGED_TOP1 = 0.30  # the main arm on the merged set (ensemble)
VARIANT_ORDER = ("bare", "ensemble", "bare-syn", "ensemble-syn")


@dataclass(frozen=True)
class Arm:
    """One arm of an ablation: a text mix and config overrides to train with (over the seeds), and
    extra `entitynet eval` flags to evaluate its runs with."""

    name: str
    mix: str
    overrides: tuple[str, ...] = ()
    eval_flags: tuple[str, ...] = ()

    @property
    def train_key(self) -> tuple[str, tuple[str, ...]]:
        """Arms with the same key share their training runs."""
        return self.mix, self.overrides

    def as_dict(self, runs: list[str]) -> dict:
        return {
            "name": self.name,
            "mix": self.mix,
            "overrides": list(self.overrides),
            "eval_flags": list(self.eval_flags),
            "runs": runs,
        }


ARM_SPEC = re.compile(r"(?P<name>[^:]+):(?P<mix>[^=]+)=(?P<rest>.*)", re.DOTALL)
OVERRIDE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*=")


def parse_arm(spec: str) -> Arm:
    """NAME:MIX=OVERRIDES[|EVALFLAGS]: OVERRIDES `;`-separated KEY=VALUE (values may hold commas and
    parentheses), EVALFLAGS split like a shell line."""
    m = ARM_SPEC.fullmatch(spec)
    if not m:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected NAME:MIX=OVERRIDES or NAME:MIX=OVERRIDES|EVALFLAGS"
        )
    name, mix = m["name"].strip(), m["mix"].strip()
    if not name:
        raise argparse.ArgumentTypeError(f"{spec!r}: the arm has no name")
    if mix not in MIX_CHANCE:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: unknown text mix {mix!r} (one of {', '.join(MIX_CHANCE)})"
        )
    overrides_text, _, flags_text = m["rest"].partition("|")
    overrides = tuple(o.strip() for o in overrides_text.split(";") if o.strip())
    bad = [o for o in overrides if not OVERRIDE.match(o)]
    if bad:
        raise argparse.ArgumentTypeError(f"{spec!r}: overrides must be KEY=VALUE, not {', '.join(bad)}")
    try:
        flags = tuple(shlex.split(flags_text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{spec!r}: eval flags: {e}") from None
    return Arm(name, mix, overrides, flags)


def slug(text: str, taken: set[str]) -> str:
    """A file-name-safe form of text, not in taken (which it joins)."""
    base = re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("._-") or "arm"
    s, i = base, 2
    while s in taken:
        s, i = f"{base}-{i}", i + 1
    taken.add(s)
    return s


def plan_runs(
    arms: list[Arm], seeds: list[int]
) -> tuple[dict[tuple[str, tuple[str, ...]], str], dict[str, list[str]]]:
    """Arms with the same text mix and overrides share their runs: (train key -> the slug of the first
    arm that needs it; its runs are <slug>-s<seed>), and each arm's run labels in seed order."""
    slugs: dict[tuple[str, tuple[str, ...]], str] = {}
    taken: set[str] = set()
    for arm in arms:
        if arm.train_key not in slugs:
            slugs[arm.train_key] = slug(arm.name, taken)
    return slugs, {arm.name: [f"{slugs[arm.train_key]}-s{seed}" for seed in seeds] for arm in arms}


def eval_key(run: str, flags: tuple[str, ...] | list[str]) -> str:
    """The key of a run's results evaluated with an arm's extra eval flags."""
    return f"{run} [{shlex.join(flags)}]" if flags else run


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
    """The entity links of a shard directory (every split) scored against the kit's truth; the
    records are dumped to `dump` (JSONL) on the way."""
    p = subprocess.run(
        [runner.python, "-c", DUMP_LINKS, str(shards_dir), str(dump)],
        cwd=runner.checkout, env=runner.env, capture_output=True, text=True,
    )  # fmt: skip
    if p.returncode != 0:
        return {"error": p.stderr[-2000:]}
    return score_links([json.loads(line) for line in dump.read_text().splitlines()], kit)


def record_key(r: dict) -> tuple[str, ...]:
    """A dumped record's identity across curations of one harvest: its split and URLs."""
    return (r["split"], *sorted(r["urls"]))


def removed_links(before: Path, after: Path, kit) -> dict:
    """The links of the records in dump `before` that dump `after` lacks (what a filter removed)."""
    kept = {record_key(json.loads(line)) for line in after.read_text().splitlines()}
    rows = [json.loads(line) for line in before.read_text().splitlines()]
    return score_links([r for r in rows if record_key(r) not in kept], kit)


def score_links(rows: list[dict], kit) -> dict:
    """Link precision (an entity right when the picture is of it or of a descendant), recall of the
    taxon pictures, and the share of distractors and collages, over dumped records."""
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
    for r in rows:
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


EvalJob = tuple[str, Path, tuple[str, ...]]  # a run's label and workdir, and an arm's extra eval flags


def evaluate_runs(
    runner: Runner,
    jobs: list[EvalJob],
    kit,
    out: Path,
    mode: str,
    variants: list[tuple[str, list[str]]],
    eval_dir: str = "eval",
) -> dict:
    """results[eval_key(run, flags)][set][variant] = {top1, top5, macro, ...} for each (run, an arm's
    eval flags) pair. grouped: one CLI call per (set, variant, eval flags) for all the runs evaluated
    with those flags (a side-by-side comparison, fewer process starts; written to OUT/eval_dir);
    single: one call per pair."""
    groups: dict[tuple[str, ...], dict[str, Path]] = {}
    for run, w, flags in jobs:
        groups.setdefault(tuple(flags), {})[run] = w
    taken: set[str] = set()
    suffixes = {flags: "-" + slug(" ".join(flags), taken) if flags else "" for flags in groups}
    results: dict = {eval_key(run, flags): {} for flags, runs in groups.items() for run in runs}
    for set_name, folder in kit.eval_sets.items():
        if not folder.is_dir():
            continue
        for variant, variant_flags in variants:
            for flags, runs in groups.items():
                tag = f"{set_name}-{variant}{suffixes[flags]}"
                all_flags = [*flags, *variant_flags]
                got = None
                if mode == "grouped" and len(runs) > 1:
                    got = _eval_grouped(runner, runs, folder, all_flags, tag, out / eval_dir)
                if got is None:
                    got = {name: _eval_single(runner, w, folder, all_flags, tag) for name, w in runs.items()}
                for name, scores in got.items():
                    results[eval_key(name, flags)].setdefault(set_name, {})[variant] = scores
    return results


def _eval_grouped(
    runner: Runner, runs: dict[str, Path], folder: Path, flags: list[str], tag: str, eval_dir: Path
) -> dict[str, dict] | None:
    """One `entitynet eval` call over all runs, into eval_dir/tag (each run's results are also written
    to its workdir); None when it fails."""
    dest = eval_dir / tag
    args = ["eval"]
    for name, w in runs.items():
        args += ["--workdir", str(w), "--label", name]
    args += ["--imagefolder", str(folder), *flags, "--out", str(dest)]
    p = runner.cli(f"eval {tag}", *args, check=False)
    res = dest / "results.json"
    if p.returncode != 0 or not res.exists():
        print(f"    grouped evaluation failed (rc {p.returncode}); evaluating run by run", flush=True)
        return None
    got = {}
    for r in json.loads(res.read_text())["runs"]:
        got[r["label"]] = _scores(r)
        w = runs[r["label"]] / f"eval-{tag}"
        w.mkdir(parents=True, exist_ok=True)
        (w / "results.json").write_text(json.dumps(r, indent=1))
    return got


def _eval_single(runner: Runner, w: Path, folder: Path, flags: list[str], tag: str) -> dict:
    dest = w / f"eval-{tag}"
    runner.cli(f"eval {tag}", "eval", "--workdir", str(w), "--imagefolder", str(folder), *flags,
               "--out", str(dest))  # fmt: skip
    return _scores(json.loads((dest / "results.json").read_text()))


def _scores(r: dict) -> dict:
    z = r.get("zero_shot", {})
    fx = z.get("fixed_templates", {})
    out = {
        "top1": fx.get("top1"),
        "top5": fx.get("top5"),
        "macro": fx.get("macro"),
        "classes": z.get("classes"),
        "images": z.get("images"),
        "templates": z.get("template_count"),
        "step": r.get("step"),
    }
    split = r.get("living_split")
    if split:  # accuracy on the living classes and the rest (where the CLI reports it)
        out["living"] = {
            g: {k: split[g][k] for k in ("classes", "images", "top1", "top5")} for g in LIVING_GROUPS
        }
    if r.get("name_styles"):  # `entitynet eval --name-style` (where the CLI has it)
        out["name_styles"] = {
            style: {
                "top1": x["top1"],
                "top5": x["top5"],
                "best_top1": x["best_of_prompt_sets"]["top1"],
                "best_top5": x["best_of_prompt_sets"]["top5"],
                "best_prompt_set": x["best_of_prompt_sets"]["prompt_set"],
                "living_top1": x["living"]["top1"],
                "other_top1": x["other"]["top1"],
                "fell_back": x["fell_back"],
                "truncated_texts": x.get("truncated_texts"),
            }
            for style, x in r["name_styles"].items()
        }
        out["name_style_protocol"] = r.get("name_style_protocol")
    return out


LIVING_GROUPS = ("living", "other", "unmapped")
STYLE_METRICS = ("top1", "top5", "best_top1", "best_top5", "living_top1", "other_top1")


def mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def pct(m: float, s: float | None = None) -> str:
    if m != m:  # nan
        return "n/a"
    return f"{m:6.2%}" if s is None else f"{m:6.2%} ± {s:5.2%}"


# ---------------------------------------------------------------- arguments

DEFAULT_BOOTSTRAP_FILTERS = (
    ("clip-top90", ["--clip-score-top", "0.9"]),
    ("clip-top70", ["--clip-score-top", "0.7"]),
)


def parse_bootstrap_filter(spec: str) -> tuple[str, list[str]]:
    """NAME=CURATE_FLAGS, e.g. 'clip-min0.3=--clip-score-min 0.3'."""
    name, eq, flags = spec.partition("=")
    name = name.strip()
    if not eq or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected NAME=CURATE_FLAGS (NAME of letters, digits, ._+-)"
        )
    try:
        return name, shlex.split(flags)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{spec!r}: {e}") from None


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(iconify_world.DEFAULT_CACHE), help="icon sets and built kits")
    ap.add_argument("--out", default="quality-iconify-out", help="where every stage writes (fresh each run)")
    ap.add_argument("--checkout", default=str(HERE.parent), help="the EntityNet checkout whose CLI runs")
    ap.add_argument("--python", default=sys.executable, help="interpreter with EntityNet's dependencies")
    ap.add_argument(
        "--config",
        default="configs/tiny_cpu.py",
        metavar="PATH[:ARG]",
        help="the training config (a relative PATH is taken relative to --checkout; default: %(default)s)",
    )
    ap.add_argument(
        "--steps", type=int, default=1200, help="training steps per run (tiny_cpu config: 3-5 min each)"
    )
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    ap.add_argument(
        "--mixes",
        default="kg+alt,alt,kg",
        help="without --arm: one arm per text mix, named by it (kg+alt, alt, kg)",
    )
    ap.add_argument(
        "--arm",
        action="append",
        default=[],
        type=parse_arm,
        metavar="NAME:MIX=OVERRIDES[|EVALFLAGS]",
        help="an arm of an ablation, trained over the seeds (repeatable; replaces --mixes): MIX one of "
        f"{', '.join(MIX_CHANCE)}; OVERRIDES ';'-separated KEY=VALUE config overrides (may be empty); "
        "EVALFLAGS extra flags for `entitynet eval`, e.g. 'ema:kg+alt=data.flip=0.5|--weights raw'",
    )
    ap.add_argument(
        "--main-arm",
        metavar="NAME",
        help="the arm the targets are checked on (default: the last --arm, else kg+alt)",
    )
    ap.add_argument("--limit-classes", type=int, default=0, help="a smaller kit (smoke runs)")
    ap.add_argument("--kit-seed", type=int, default=0)
    ap.add_argument(
        "--train-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more --config.KEY=VALUE for every training run of every arm (e.g. data.image_size=64)",
    )
    ap.add_argument("--eval-mode", choices=("grouped", "single"), default="grouped")
    ap.add_argument(
        "--search-rate", default="0", help="harvest --search-rate (0: unthrottled; the web is local)"
    )
    ap.add_argument("--vocab-size", type=int, default=0, help="tokenizer --vocab-size (0: the CLI's default)")
    ap.add_argument(
        "--bootstrap",
        action="store_true",
        help="after the arms: embed the harvest with the main arm's first-seed run, curate it again with "
        "the model filters, retrain the main arm on each filtered curation and evaluate it the same way",
    )
    ap.add_argument(
        "--bootstrap-filter",
        action="append",
        default=[],
        type=parse_bootstrap_filter,
        metavar="NAME=CURATE_FLAGS",
        help="a filtered curation to retrain on (repeatable; default: "
        + ", ".join(f"'{n}={shlex.join(f)}'" for n, f in DEFAULT_BOOTSTRAP_FILTERS)
        + ")",
    )
    ap.add_argument(
        "--bootstrap-semdedup",
        default="0.99,0.995,0.999",
        metavar="COSINE[,...]",
        help="semantic-deduplication thresholds to curate with; the lowest that removes at most "
        "--semdedup-max-share of the records is retrained on ('' for none; default: %(default)s)",
    )
    ap.add_argument("--semdedup-max-share", type=float, default=0.10, metavar="FRACTION")
    ap.add_argument("--render", metavar="OUT", help="only re-write OUT/quality.md from OUT/quality.json")
    args = ap.parse_args(argv)
    if args.render:
        return args
    args.bootstrap_filters = args.bootstrap_filter or list(DEFAULT_BOOTSTRAP_FILTERS)
    args.bootstrap_semdedup = [t.strip() for t in args.bootstrap_semdedup.split(",") if t.strip()]
    names = [n for n, _ in args.bootstrap_filters] + [f"semdedup-{t}" for t in args.bootstrap_semdedup]
    if len(set(names)) != len(names):
        ap.error(f"--bootstrap-filter: repeated names: {', '.join(names)}")
    if args.arm:
        args.arms = args.arm
    else:
        names = [m.strip() for m in args.mixes.split(",") if m.strip()]
        unknown = [m for m in names if m not in MIX_CHANCE]
        if unknown or not names:
            ap.error(
                f"--mixes: unknown text mix {', '.join(unknown) or '(none given)'} (one of {', '.join(MIX_CHANCE)})"
            )
        args.arms = [Arm(name, name) for name in MIX_CHANCE if name in names]
    arm_names = [a.name for a in args.arms]
    repeated = sorted({n for n in arm_names if arm_names.count(n) > 1})
    if repeated:
        ap.error(f"--arm: repeated arm names: {', '.join(repeated)}")
    if args.main_arm is None:
        args.main_arm = (
            args.arms[-1].name if args.arm else ("kg+alt" if "kg+alt" in arm_names else arm_names[0])
        )
    elif args.main_arm not in arm_names:
        ap.error(f"--main-arm {args.main_arm!r} is not an arm ({', '.join(arm_names)})")
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not args.seed_list:
        ap.error("--seeds: no seeds")
    checkout = Path(args.checkout).resolve()
    config = Path(args.config).expanduser()
    args.config_path = config if config.is_absolute() else checkout / config
    if not config_file(args.config_path).is_file():
        ap.error(f"--config: no such file: {config_file(args.config_path)}")
    return args


def config_file(config: Path) -> Path:
    """The file of a config given as PATH[:ARG]."""
    if config.exists() or ":" not in config.name:
        return config
    return config.with_name(config.name.rsplit(":", 1)[0])


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        out = Path(args.render)
        md = render_markdown(json.loads((out / "quality.json").read_text()))
        (out / "quality.md").write_text(md)
        print(md)
        return 0

    checkout = Path(args.checkout).resolve()
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)  # every stage starts afresh
    out.mkdir(parents=True, exist_ok=True)
    seeds: list[int] = args.seed_list
    arms: list[Arm] = args.arms
    slugs, arm_runs = plan_runs(arms, seeds)
    report: dict = {
        "checkout": str(checkout),
        "python": args.python,
        "config": str(args.config_path),
        "steps": args.steps,
        "seeds": seeds,
        "train_overrides": args.train_override,
        "arms": [arm.as_dict(arm_runs[arm.name]) for arm in arms],
        "main_arm": args.main_arm,
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

    print(f"== train: {len(slugs)} configurations for {len(arms)} arms x {len(seeds)} seeds, "
          f"{args.steps} steps each", flush=True)  # fmt: skip
    common = [f"--config.data.shards={out / 'curated'}", f"--config.data.entities={entities}",
              f"--config.data.tokenizer={tokenizer}", f"--config.total_steps={args.steps}"]  # fmt: skip
    runs, train_times, train_cpu = train_runs(
        run, slugs, seeds, args.config_path, common, args.train_override, out / "runs"
    )
    report["train_seconds"] = train_times
    report["train_cpu_seconds"] = train_cpu

    print("== evaluate on the held-out styles", flush=True)
    variants = eval_variants(run)
    jobs = list(dict.fromkeys((r, runs[r], arm.eval_flags) for arm in arms for r in arm_runs[arm.name]))
    results = evaluate_runs(run, jobs, kit, out, args.eval_mode, variants)
    report["results"] = results
    summary = summarize(arms, arm_runs, results, list(kit.eval_sets), [v for v, _ in variants])
    report["summary"] = summary
    report["name_styles"] = name_style_summary(
        arms, arm_runs, results, list(kit.eval_sets), [v for v, _ in variants]
    )
    checks = quality_checks(summary, arms, args.main_arm)
    report["checks"] = [{"check": c, "value": v, "pass": ok} for c, v, ok in checks]
    report["stage_seconds"] = run.times
    report["stage_cpu_seconds"] = run.cpu
    report["total_seconds"] = time.time() - wall
    write_report(report, out)  # the arms' figures stand even if the bootstrap fails

    if args.bootstrap:
        main_arm = next(a for a in arms if a.name == args.main_arm)
        report["bootstrap"] = bootstrap(
            run, args, kit, out, report, runs, main_arm, slugs[main_arm.train_key], common, variants
        )
        report["stage_seconds"] = run.times
        report["stage_cpu_seconds"] = run.cpu
        report["total_seconds"] = time.time() - wall
        write_report(report, out)
    print("\n" + render_markdown(report))
    print(f"wrote {out / 'quality.json'} and {out / 'quality.md'}")
    return 0


def write_report(report: dict, out: Path) -> None:
    (out / "quality.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "quality.md").write_text(render_markdown(report))


# ---------------------------------------------------------------- bootstrapping

MODEL_FILTER_REASONS = ("clip_score", "semantic_duplicate", "not_embedded")


def bootstrap(
    run: Runner,
    args: argparse.Namespace,
    kit,
    out: Path,
    report: dict,
    runs: dict[str, Path],
    main_arm: Arm,
    arm_slug: str,
    common: list[str],
    variants: list[tuple[str, list[str]]],
) -> dict:
    """harvest -> train -> embed -> curate with the model filters -> retrain: embeds the harvest with
    the main arm's first-seed run, curates it again (same flags as the first curation) with each
    --bootstrap-filter and each semantic-deduplication probe, retrains the main arm over the seeds
    on each filtered curation that is kept for training (the first curation's tokenizer), and
    evaluates those runs as the main arm's. Each curation's removals beyond the first curation's,
    and the entity links of what it keeps and of what it removed, are scored against the kit."""
    seeds: list[int] = args.seed_list
    model = runs[f"{arm_slug}-s{seeds[0]}"]
    emb = out / "embeddings"
    print(f"== bootstrap: embed the harvest with {model.name}", flush=True)
    run.cli("embed", "embed", "--shards", out / "shards", "--model", model, "--out", emb)
    ec = json.loads((emb / "embed_config.json").read_text())
    base_removed = report["curate"].get("removed") or {}
    base_kept = sum((report["curate"].get("kept") or {}).values())

    def curate_with(name: str, flags: list[str]) -> dict:
        dest = out / f"curated-{name}"
        run.cli(f"curate {name}", "curate", "--shards", out / "shards", "--entities", out / "kg" / "entities.jsonl",
                "--decontaminate", kit.eval_sets["merged"], "--embeddings", emb, *flags, "--out", dest)  # fmt: skip
        cs = json.loads((dest / "curation_stats.json").read_text())
        removed = cs.get("removed") or {}
        extra = {k: removed.get(k, 0) - base_removed.get(k, 0) for k in {*removed, *base_removed}}
        extra = {k: v for k, v in sorted(extra.items()) if v}
        dump = out / f"links-curated-{name}.jsonl"
        got = {
            "flags": flags,
            "dir": str(dest),
            "read": cs.get("read"),
            "kept": cs.get("kept"),
            "removed": removed,
            "filter_removed": extra,  # beyond the first curation's removals, by reason
            "filter_share": {k: v / base_kept for k, v in extra.items()} if base_kept else {},
            "filter_share_total": sum(extra.values()) / base_kept if base_kept else 0.0,
            "links": link_stats(run, dest, kit, dump),
        }
        if dump.exists() and (out / "links-curated.jsonl").exists():
            got["links_removed"] = removed_links(out / "links-curated.jsonl", dump, kit)
        print(f"  {name}: kept {sum((cs.get('kept') or {}).values()):,} of {base_kept:,} curated; removed {extra}; "
              f"link precision {got['links'].get('link_precision', float('nan')):.2%} "
              f"(removed: {got.get('links_removed', {}).get('link_precision', float('nan')):.2%})", flush=True)  # fmt: skip
        return got

    curations: dict[str, dict] = {}
    for name, flags in args.bootstrap_filters:
        curations[name] = curate_with(name, flags)
        curations[name]["trained"] = True
    # Semantic deduplication is probed first: the tiny model's space puts an entity's renders close
    # together, so a threshold can take most of the data for copies. Only the lowest threshold that
    # removes at most --semdedup-max-share of the curated records is trained on.
    passing = []
    for t in args.bootstrap_semdedup:
        name = f"semdedup-{t}"
        c = curations[name] = curate_with(name, ["--semdedup-threshold", t])
        c["trained"] = False
        if c["filter_share_total"] <= args.semdedup_max_share:
            passing.append((float(t), name))
        else:
            c["note"] = (f"removes {c['filter_share_total']:.1%} of the curated records "
                         f"(> --semdedup-max-share {args.semdedup_max_share:.0%}): not trained on")  # fmt: skip
    if passing:
        _, name = min(passing)
        curations[name]["trained"] = True
        for _, other in passing:
            if other != name:
                curations[other]["note"] = f"not trained on: {name} removes more and is within the limit"

    boot_arms: list[Arm] = []
    boot_runs: dict[str, list[str]] = {}
    workdirs: dict[str, Path] = {}
    train_times: dict[str, float] = {}
    train_cpu: dict[str, float] = {}
    taken = {f"{arm_slug}"}
    for name, c in curations.items():
        if not c["trained"]:
            continue
        label = slug(f"{arm_slug}-{name}", taken)
        print(f"== bootstrap: train {main_arm.name} on curated-{name}, seeds {seeds}", flush=True)
        shards = [
            f"--config.data.shards={c['dir']}",
            *[x for x in common if not x.startswith("--config.data.shards=")],
        ]
        r, t, cpu = train_runs(run, {main_arm.train_key: label}, seeds, args.config_path, shards,
                               args.train_override, out / "runs")  # fmt: skip
        workdirs.update(r)
        train_times.update(t)
        train_cpu.update(cpu)
        arm = Arm(f"{main_arm.name} after {name}", main_arm.mix, main_arm.overrides, main_arm.eval_flags)
        boot_arms.append(arm)
        boot_runs[arm.name] = [f"{label}-s{seed}" for seed in seeds]
        c["arm"] = arm.name

    results: dict = {}
    summary: dict = {}
    if boot_arms:
        print("== bootstrap: evaluate on the held-out styles", flush=True)
        jobs = [(r, workdirs[r], a.eval_flags) for a in boot_arms for r in boot_runs[a.name]]
        results = evaluate_runs(run, jobs, kit, out, args.eval_mode, variants, eval_dir="eval-bootstrap")
        summary = summarize(boot_arms, boot_runs, results, list(kit.eval_sets), [v for v, _ in variants])
    # Paired by seed: each filtered run against the main arm's run of the same seed.
    before_keys = [eval_key(f"{arm_slug}-s{seed}", main_arm.eval_flags) for seed in seeds]
    paired: dict = {}
    for a in boot_arms:
        keys = [eval_key(r, a.eval_flags) for r in boot_runs[a.name]]
        for set_name in kit.eval_sets:
            for variant, _ in variants:
                diffs = []
                for kb, ka in zip(before_keys, keys, strict=True):
                    b = report["results"].get(kb, {}).get(set_name, {}).get(variant)
                    x = results.get(ka, {}).get(set_name, {}).get(variant)
                    if b and x and b["top1"] is not None and x["top1"] is not None:
                        diffs.append(x["top1"] - b["top1"])
                if diffs:
                    m, sd = mean_std(diffs)
                    paired.setdefault(a.name, {}).setdefault(set_name, {})[variant] = {
                        "top1_diff_mean": m, "top1_diff_std": sd, "per_seed": diffs}  # fmt: skip
    return {
        "model": str(model),
        "embed": {k: ec.get(k) for k in ("weights", "dim", "step", "digest", "model") if k in ec},
        "base_kept": base_kept,
        "semdedup_max_share": args.semdedup_max_share,
        "curations": curations,
        "arms": [a.as_dict(boot_runs[a.name]) for a in boot_arms],
        "before_arm": main_arm.name,
        "results": results,
        "summary": summary,
        "paired_top1": paired,
        "train_seconds": train_times,
        "train_cpu_seconds": train_cpu,
    }


def train_runs(
    runner: Runner,
    slugs: dict[tuple[str, tuple[str, ...]], str],
    seeds: list[int],
    config: Path,
    common: list[str],
    train_overrides: list[str],
    runs_dir: Path,
) -> tuple[dict[str, Path], dict[str, float], dict[str, float]]:
    """Trains each (text mix, overrides) of the arms once per seed, in runs_dir/<slug>-s<seed>: the
    workdirs, wall and CPU seconds by run label. Overrides: the mix's, --train-override, the arm's."""
    runs: dict[str, Path] = {}
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for (mix, overrides), name in slugs.items():
        for seed in seeds:
            label = f"{name}-s{seed}"
            w = runs_dir / label
            started = time.time()
            runner.cli(f"train {label}", "train", "--config", config, "--workdir", w, *common,
                       f"--config.seed={seed}", f"--config.data.alt_text_chance={MIX_CHANCE[mix]}",
                       *[f"--config.{o}" for o in (*train_overrides, *overrides)])  # fmt: skip
            times[label] = time.time() - started
            cpu[label] = runner.last_cpu
            runs[label] = w
    return runs, times, cpu


# ---------------------------------------------------------------- summary and checks


def summarize(
    arms: list[Arm], arm_runs: dict[str, list[str]], results: dict, set_names: list[str], variants: list[str]
) -> dict:
    """summary[arm][set][variant] = top-1 and top-5 mean and std over the arm's seeds, seeds, classes, images."""
    summary: dict = {}
    for arm in arms:
        keys = [eval_key(r, arm.eval_flags) for r in arm_runs[arm.name]]
        for set_name in set_names:
            for variant in variants:
                vals = [results.get(k, {}).get(set_name, {}).get(variant) for k in keys]
                vals = [v for v in vals if v]
                if not vals:
                    continue
                t1 = mean_std([v["top1"] for v in vals])
                t5 = mean_std([v["top5"] for v in vals])
                summary.setdefault(arm.name, {}).setdefault(set_name, {})[variant] = {
                    "top1_mean": t1[0], "top1_std": t1[1], "top5_mean": t5[0], "top5_std": t5[1],
                    "seeds": len(vals), "classes": vals[0]["classes"], "images": vals[0]["images"],
                }  # fmt: skip
    return summary


def quality_checks(summary: dict, arms: list[Arm], main: str) -> list[tuple[str, float, bool]]:
    """(check, value, pass): the targets on the main arm (ensemble), and the main arm above the arm of
    the same overrides trained on alt texts only by more than the seeds' spread (merged set)."""
    checks: list[tuple[str, float, bool]] = []
    st = summary.get(main, {})
    for set_name in iconify_world.HELD_OUT_STYLES:
        e = st.get(set_name, {}).get("ensemble")
        if e:
            checks.append((f"{main} top-1 on {set_name} (ensemble) >= {TARGET_TOP1:.0%}", e["top1_mean"],
                           e["top1_mean"] >= TARGET_TOP1))  # fmt: skip
            checks.append((f"{main} top-5 on {set_name} (ensemble) >= {TARGET_TOP5:.0%}", e["top5_mean"],
                           e["top5_mean"] >= TARGET_TOP5))  # fmt: skip
    e = st.get("merged", {}).get("ensemble")
    if e:
        checks.append((f"{main} top-1 on merged (ensemble) >= {TARGET_MERGED_TOP1:.0%}", e["top1_mean"],
                       e["top1_mean"] >= TARGET_MERGED_TOP1))  # fmt: skip
    alt = alt_only_twin(arms, main)
    if alt:
        for variant in ("ensemble", "bare"):
            a = st.get("merged", {}).get(variant)
            b = summary.get(alt.name, {}).get("merged", {}).get(variant)
            if a and b:
                spread = max(a["top1_std"], b["top1_std"])
                diff = a["top1_mean"] - b["top1_mean"]
                checks.append((f"{main} above {alt.name} (alt text only) on merged ({variant}) top-1 by > seed "
                               f"spread ({spread:.2%})", diff, diff > spread))  # fmt: skip
    return checks


def alt_only_twin(arms: list[Arm], main: str) -> Arm | None:
    """The arm with the main arm's overrides trained on alt texts only (one with the same eval flags
    first); None where there is none or the main arm is one."""
    m = next((a for a in arms if a.name == main), None)
    if m is None or m.mix == "alt":
        return None
    twins = [a for a in arms if a.mix == "alt" and a.overrides == m.overrides]
    twins.sort(key=lambda a: a.eval_flags != m.eval_flags)
    return twins[0] if twins else None


def name_style_summary(
    arms: list[Arm], arm_runs: dict[str, list[str]], results: dict, set_names: list[str], variants: list[str]
) -> dict:
    """Where the runs were evaluated with --name-style: per arm, set, variant and style, each metric's
    mean and std over the seeds (STYLE_METRICS), the classes that fell back and the protocol; and
    each arm against the first one, paired by seed (`paired`: the differences' mean, std, per seed)."""
    out: dict = {"arms": {}, "paired": {}, "reference": arms[0].name if arms else ""}
    per_seed: dict = {}  # arm -> set -> variant -> style -> metric -> [value per seed or None]
    for arm in arms:
        keys = [eval_key(r, arm.eval_flags) for r in arm_runs[arm.name]]
        for set_name in set_names:
            for variant in variants:
                got = [results.get(k, {}).get(set_name, {}).get(variant) or {} for k in keys]
                styles = [g.get("name_styles") or {} for g in got]
                if not any(styles):
                    continue
                names = list(dict.fromkeys(s for x in styles for s in x))
                entry: dict = {
                    "protocol": next(g["name_style_protocol"] for g in got if g.get("name_styles"))
                }
                for style in names:
                    vals = [x.get(style) for x in styles]
                    stats: dict = {"seeds": sum(v is not None for v in vals)}
                    for metric in STYLE_METRICS:
                        seq = [v.get(metric) if v else None for v in vals]
                        per_seed.setdefault(arm.name, {}).setdefault(set_name, {}).setdefault(
                            variant, {}
                        ).setdefault(style, {})[metric] = seq
                        stats[f"{metric}_mean"], stats[f"{metric}_std"] = mean_std(seq)
                    stats["fell_back"] = next((v["fell_back"] for v in vals if v), None)
                    stats["best_prompt_sets"] = sorted({v["best_prompt_set"] for v in vals if v})
                    entry[style] = stats
                out["arms"].setdefault(arm.name, {}).setdefault(set_name, {})[variant] = entry
    ref = out["reference"]
    for arm in arms[1:]:
        for set_name, by_variant in per_seed.get(arm.name, {}).items():
            for variant, by_style in by_variant.items():
                for style, metrics in by_style.items():
                    base = per_seed.get(ref, {}).get(set_name, {}).get(variant, {}).get(style)
                    if not base:
                        continue
                    for metric in ("top1", "top5", "best_top1", "best_top5"):
                        diffs = [
                            a - b
                            for a, b in zip(metrics[metric], base[metric], strict=False)
                            if a is not None and b is not None
                        ]
                        if diffs:
                            m, sd = mean_std(diffs)
                            out["paired"].setdefault(arm.name, {}).setdefault(set_name, {}).setdefault(
                                variant, {}
                            ).setdefault(style, {})[metric] = {"mean": m, "std": sd, "per_seed": diffs}
    return out


# ---------------------------------------------------------------- the report


def report_arms(report: dict) -> list[dict]:
    """The report's arms; for a report from before arms, one per text mix of its summary."""
    if report.get("arms"):
        return report["arms"]
    return [{"name": m, "mix": m, "overrides": [], "eval_flags": [], "runs": []} for m in report["summary"]]


def arm_label(arm: dict) -> str:
    if arm["name"] == arm["mix"] and arm["mix"] in MIX_LABEL:
        return MIX_LABEL[arm["mix"]]
    return f"{arm['name']} ({arm['mix']})"


def eval_set_names(report: dict) -> list[str]:
    """The kit's evaluation sets (the held-out styles and merged), then any other in the summary."""
    names = list(report["kit"].get("eval_images_per_set") or (*iconify_world.HELD_OUT_STYLES, "merged"))
    for st in report["summary"].values():
        names += [s for s in st if s not in names]
    return names


def config_label(report: dict) -> str:
    config = report.get("config", "configs/tiny_cpu.py")
    try:
        return str(Path(config).relative_to(report["checkout"]))
    except ValueError:
        return config


def arm_lines(arms: list[dict]) -> list[str]:
    lines = ["Arms (the runs of arms with the same text mix and overrides are shared):", ""]
    for a in arms:
        overrides = f"`{'; '.join(a['overrides'])}`" if a["overrides"] else "none"
        flags = f"`{shlex.join(a['eval_flags'])}`" if a["eval_flags"] else "none"
        runs = f"; runs {', '.join(a['runs'])}" if a.get("runs") else ""
        lines.append(f"- {a['name']}: text mix {MIX_LABEL.get(a['mix'], a['mix'])}; overrides {overrides}; "
                     f"eval flags {flags}{runs}")  # fmt: skip
    return lines + [""]


def ablation_lines(summary: dict, arms: list[dict], set_names: list[str]) -> list[str]:
    """One row per arm: merged top-1 and top-5, each style's top-1 (ensemble), and the merged top-1
    against the first arm's (percentage points)."""
    if not arms:
        return []
    styles = [s for s in set_names if s != "merged"]
    first = arms[0]["name"]

    def stat(arm: str, set_name: str) -> dict:
        return summary.get(arm, {}).get(set_name, {}).get("ensemble") or {}

    nan = float("nan")
    base = stat(first, "merged").get("top1_mean", nan)
    lines = [
        "## Ablation (ensemble, mean ± std over seeds)",
        "",
        "| arm | merged top-1 | merged top-5 | "
        + "".join(f"{s} top-1 | " for s in styles)
        + f"Δ merged top-1 vs {first} |",
        "|---|---:|---:|" + "---:|" * len(styles) + "---:|",
    ]
    for a in arms:
        m = stat(a["name"], "merged")
        cells = [
            pct(m.get("top1_mean", nan), m.get("top1_std", nan)),
            pct(m.get("top5_mean", nan), m.get("top5_std", nan)),
        ]
        for s in styles:
            e = stat(a["name"], s)
            cells.append(pct(e.get("top1_mean", nan), e.get("top1_std", nan)))
        diff = m.get("top1_mean", nan) - base
        cells.append(
            "reference" if a["name"] == first else "n/a" if diff != diff else f"{diff * 100:+.2f} pp"
        )
        lines.append(f"| {arm_label(a)} | " + " | ".join(cells) + " |")
    return lines + [""]


def accuracy_lines(summary: dict, arms: list[dict], set_names: list[str]) -> list[str]:
    """One row per arm and evaluation set: top-1 and top-5 of each eval variant."""
    variants = sorted(
        {v for m in summary.values() for st in m.values() for v in st},
        key=lambda v: (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else len(VARIANT_ORDER), v),
    )
    head = "| arm | eval set | " + " | ".join(f"{v} top-1 | {v} top-5" for v in variants) + " |"
    lines = [head, "|---|---|" + "---:|---:|" * len(variants)]
    for arm in arms:
        for set_name in set_names:
            st = summary.get(arm["name"], {}).get(set_name)
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
                f"| {arm_label(arm)} | {set_name} ({st[next(iter(st))]['classes']} cl.) | "
                + " | ".join(cells)
                + " |"
            )
    return lines + [""]


def pp(d: dict | None) -> str:
    """A paired difference in percentage points: mean ± std over the seeds."""
    return f"{d['mean'] * 100:+.2f} ± {d['std'] * 100:.2f} pp" if d else "n/a"


def name_style_report(
    ns: dict, arms: list[dict], set_names: list[str], variant: str = "ensemble"
) -> list[str]:
    """Per evaluation set and name style: each arm's top-1 and top-5 (mean ± std over seeds) under the
    fixed template set, each later arm against the first paired by seed; then, apart, the best of
    the prompt sets, as the reference reports it; then the living/other split of each style."""
    by_arm = ns.get("arms") or {}
    shown = [a for a in arms if any(variant in by_arm.get(a["name"], {}).get(s, {}) for s in set_names)]
    if not shown:
        return []
    ref, nan = ns.get("reference", shown[0]["name"]), float("nan")
    others = [a for a in shown if a["name"] != ref]
    protocol = next(
        by_arm[a["name"]][s][variant]["protocol"]
        for a in shown
        for s in set_names
        if variant in by_arm[a["name"]].get(s, {})
    )
    best = protocol["best_of_prompt_sets"]
    lines = [
        "## Name styles (mean ± std over seeds; Δ paired by seed)",
        "",
        f"Names: {protocol['names']}. Fixed template set: `{protocol['templates']}` ({protocol['template_count']} templates, the run's training "
        f"templates); context {protocol['context_length']} tokens. The second table is the "
        f"{best['label']} ({', '.join(best['prompt_sets'])}), never mixed with the first.",
        "",
    ]

    def table(metrics: tuple[str, str], title: str) -> list[str]:
        head = "| set | style | fell back | " + "".join(
            f"{arm_label(a)} top-1 | {arm_label(a)} top-5 | " for a in shown
        )
        head += "".join(f"Δ top-1 {a['name']} − {ref} | Δ top-5 |" for a in others)
        out = [title, "", head, "|---|---|---:|" + "---:|---:|" * len(shown) + "---:|---:|" * len(others)]
        for s in set_names:
            styles = list(dict.fromkeys(
                st for a in shown for st in by_arm.get(a["name"], {}).get(s, {}).get(variant, {}) if st != "protocol"
            ))  # fmt: skip
            for style in styles:
                cells, fell = [], None
                for a in shown:
                    x = by_arm.get(a["name"], {}).get(s, {}).get(variant, {}).get(style) or {}
                    fell = x.get("fell_back", fell)
                    cells += [pct(x.get(f"{metrics[0]}_mean", nan), x.get(f"{metrics[0]}_std", nan)),
                              pct(x.get(f"{metrics[1]}_mean", nan), x.get(f"{metrics[1]}_std", nan))]  # fmt: skip
                for a in others:
                    d = ns.get("paired", {}).get(a["name"], {}).get(s, {}).get(variant, {}).get(style, {})
                    cells += [pp(d.get(metrics[0])), pp(d.get(metrics[1]))]
                out.append(
                    f"| {s} | {style} | {fell if fell is not None else ''} | " + " | ".join(cells) + " |"
                )
        return [*out, ""]

    lines += table(("top1", "top5"), f"Fixed template set `{protocol['templates']}`:")
    lines += table(("best_top1", "best_top5"), f"{best['label'][:1].upper()}{best['label'][1:]}:")
    lines += ["Living and other classes, fixed template set, top-1:", ""]
    lines += ["| set | style | " + " | ".join(f"{arm_label(a)} living | {arm_label(a)} other" for a in shown) + " |",
              "|---|---|" + "---:|---:|" * len(shown)]  # fmt: skip
    for s in set_names:
        styles = list(dict.fromkeys(
            st for a in shown for st in by_arm.get(a["name"], {}).get(s, {}).get(variant, {}) if st != "protocol"
        ))  # fmt: skip
        for style in styles:
            cells = []
            for a in shown:
                x = by_arm.get(a["name"], {}).get(s, {}).get(variant, {}).get(style) or {}
                cells += [pct(x.get("living_top1_mean", nan), x.get("living_top1_std", nan)),
                          pct(x.get("other_top1_mean", nan), x.get("other_top1_std", nan))]  # fmt: skip
            lines.append(f"| {s} | {style} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def links_row(name: str, x: dict) -> str:
    if "records" not in x:
        return f"| {name} | error: {x.get('error', '')[:200]} |"
    return (
        f"| {name} | {x['records']:,} | {x['taxon_images']:,} | {x['distractor_images']:,} | "
        f"{x['collage_images']:,} | {x['links_per_image']:.2f} ({x['links_per_image_median']}) | "
        f"{x['link_precision']:.2%} | {x['recall']:.2%} | {x['recall_exact']:.2%} | "
        f"{x['share_of_links_on_images_with_10_plus']:.2%} ({x['images_with_10_plus']:,} images) |"
    )


LINKS_HEAD = [
    "| shards | images | of taxa | distractors | collages | links/image (median) | link precision | "
    "recall (entity or ancestor) | recall (exact) | links on images with >= 10 entities |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def bootstrap_lines(report: dict, set_names: list[str]) -> list[str]:
    """The bootstrap: each filtered curation's removals and links, and the main arm retrained on it
    against the main arm trained on the first curation (same seeds, same evaluation)."""
    b = report.get("bootstrap")
    if not b:
        return []
    main = b["before_arm"]
    before = report["summary"].get(main, {})
    e = b.get("embed") or {}
    lines = [
        "## Bootstrap: curate with the model filters, retrain",
        "",
        f"The harvest embedded with {Path(b['model']).name} (weights {e.get('weights', '?')}, step "
        f"{e.get('step', '?')}), curated again with the first curation's flags plus each filter; the main arm "
        f"({main}) retrained on each with the same seeds and the first curation's tokenizer. Shares are of "
        f"the {b['base_kept']:,} records the first curation kept.",
        "",
        "| curation | removed by the filter | share | kept | link precision kept | recall kept | "
        "link precision of the removed | taxon pictures removed | distractors removed | trained on |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lc = report.get("links_curated", {})
    lines.append(f"| before (no model filter) | | | {b['base_kept']:,} | {lc.get('link_precision', float('nan')):.2%} | "
                 f"{lc.get('recall', float('nan')):.2%} | | | | yes |")  # fmt: skip
    for name, c in b["curations"].items():
        x, r = c.get("links", {}), c.get("links_removed", {})
        removed = ", ".join(f"{k} {v:,}" for k, v in c["filter_removed"].items()) or "none"
        trained = "yes" if c.get("trained") else f"no ({c.get('note', '')})"
        nan = float("nan")
        lines.append(
            f"| {name} (`{shlex.join(c['flags'])}`) | {removed} | {c['filter_share_total']:.1%} | "
            f"{sum((c.get('kept') or {}).values()):,} | {x.get('link_precision', nan):.2%} | {x.get('recall', nan):.2%} | "
            f"{r.get('link_precision', nan):.2%} | {r.get('taxon_images', 0):,} | {r.get('distractor_images', 0):,} | "
            f"{trained} |"
        )
    lines += ["", *LINKS_HEAD, links_row("before", lc)]
    for name, c in b["curations"].items():
        lines.append(links_row(name, c.get("links", {})))
        if "links_removed" in c:
            lines.append(links_row(f"{name}: removed", c["links_removed"]))
    lines += ["", "Zero-shot, default template ensemble (mean ± std over seeds; Δ paired by seed):", ""]
    styles = [s for s in set_names]
    lines.append("| arm | " + " | ".join(f"{s} top-1 | {s} top-5" for s in styles) + " | Δ merged top-1 |")
    lines.append("|---|" + "---:|---:|" * len(styles) + "---:|")
    nan = float("nan")

    def cells(st: dict) -> list[str]:
        out = []
        for s in styles:
            x = st.get(s, {}).get("ensemble") or {}
            out += [pct(x.get("top1_mean", nan), x.get("top1_std", nan)),
                    pct(x.get("top5_mean", nan), x.get("top5_std", nan))]  # fmt: skip
        return out

    lines.append(f"| {main} (before) | " + " | ".join(cells(before)) + " | reference |")
    for a in b["arms"]:
        d = b["paired_top1"].get(a["name"], {}).get("merged", {}).get("ensemble")
        diff = f"{d['top1_diff_mean'] * 100:+.2f} ± {d['top1_diff_std'] * 100:.2f} pp" if d else "n/a"
        lines.append(
            f"| {a['name']} | " + " | ".join(cells(b["summary"].get(a["name"], {}))) + f" | {diff} |"
        )
    lines += ["", "Every eval variant:", ""]
    arms = [x for x in report_arms(report) if x["name"] == main] + b["arms"]
    lines += accuracy_lines({**report["summary"], **b["summary"]}, arms, set_names)
    return lines


def render_markdown(report: dict) -> str:
    s = report["kit"]
    summary = report["summary"]
    arms = report_arms(report)
    set_names = eval_set_names(report)
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
        f"Training: {config_label(report)}, {report['steps']} steps, seeds {', '.join(map(str, report['seeds']))}"
        + (
            f", overrides for every arm {', '.join(report['train_overrides'])}"
            if report["train_overrides"]
            else ""
        )
        + ".",
        f"KG expansion: {report['kg']['entities']} entities, missing kit classes: "
        f"{', '.join(report['kg']['missing']) or 'none'}. Queries: {report['queries']['queries']:,}.",
        "",
        *arm_lines(arms),
        "## Zero-shot accuracy on held-out styles (mean ± std over seeds)",
        "",
        *accuracy_lines(summary, arms, set_names),
    ]
    lines += ablation_lines(summary, arms, set_names)
    lines += name_style_report(report.get("name_styles") or {}, arms, set_names)
    main = report.get("main_arm")
    lines += [f"## Targets (main arm: {main})" if main else "## Targets", "",
              "| check | value | result |", "|---|---:|---|"]  # fmt: skip
    for c in report["checks"]:
        lines.append(f"| {c['check']} | {c['value']:.2%} | {'PASS' if c['pass'] else 'FAIL'} |")
    lines += ["", "## Entity links against the kit's ground truth", "", *LINKS_HEAD]
    for key, name in (("links_harvest", "harvest"), ("links_curated", "curated")):
        lines.append(links_row(name, report.get(key, {})))
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
    lines += bootstrap_lines(report, set_names)
    lines += ["## Stage times", "", "| stage | wall s | CPU s |", "|---|---:|---:|"]
    cpu = report.get("stage_cpu_seconds", {})
    for k, v in report["stage_seconds"].items():
        c = f"{cpu[k]:.1f}" if k in cpu else ""
        lines.append(f"| {k} | {v:.1f} | {c} |")
    boot = report.get("bootstrap") or {}
    tt = [*report.get("train_seconds", {}).values(), *boot.get("train_seconds", {}).values()]
    tc = [*report.get("train_cpu_seconds", {}).values(), *boot.get("train_cpu_seconds", {}).values()]
    if tt:
        c = f"{statistics.fmean(tc):.1f}, {max(tc):.1f}" if tc else ""
        lines.append(f"| one training run (mean, max) | {statistics.fmean(tt):.1f}, {max(tt):.1f} | {c} |")
    lines.append(f"| total | {report['total_seconds']:.1f} | |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
