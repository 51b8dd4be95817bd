"""The `entitynet` command: summaries on success, one clear line and exit 2 on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_KG

from entitynet.records import Entity, Query, read_jsonl, write_jsonl
from entitynet.text.queries import EXCLUDE_TERMS
from entitynet_cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("entitynet: error: ")
    return lines[0]


def test_kg_expand_and_queries(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "kg",
        "expand",
        "--kg-file",
        str(SAMPLE_KG),
        "--root",
        "Q729",
        "--root",
        "Q756",
        "--root",
        "Q764",
        "--max-depth",
        "10",
        "--out",
        str(tmp_path / "kg"),
    )
    assert code == 0
    assert "expanded 240 entities" in out and "entities per natural type:" in out and "mammal" in out
    entities = list(read_jsonl(tmp_path / "kg" / "entities.jsonl", Entity))
    assert len(entities) == 240
    code, out, _ = run(
        capsys, "queries", "--entities", str(tmp_path / "kg" / "entities.jsonl"), "--out", str(tmp_path / "q")
    )
    assert code == 0 and "queries per kind:" in out
    queries = list(read_jsonl(tmp_path / "q" / "queries.jsonl", Query))
    saved = json.loads((tmp_path / "q" / "queries_config.json").read_text())
    assert saved["stats"]["queries"] == len(queries) > len(entities)
    assert all(q.exclude_terms == EXCLUDE_TERMS and q.photo_type == "photo" for q in queries)
    assert "modifiers: photo type photo; exclude terms drawing clipart" in out
    code, out, _ = run(
        capsys, "captions", "--entities", str(tmp_path / "kg" / "entities.jsonl"), "--entity", "Q140"
    )
    assert code == 0 and "Panthera leo" in out and "query" in out
    # the search modifiers are the user's to set
    ents = str(tmp_path / "kg" / "entities.jsonl")
    for flags, check in (
        (["--no-exclude-terms"], lambda q: q.exclude_terms == () and q.photo_type == "photo"),
        (["--exclude-terms", "sketch, logo"], lambda q: q.exclude_terms == ("sketch", "logo")),
        (["--photo-type", "none", "--no-or-terms"], lambda q: q.photo_type is None and q.or_terms == ()),
        (["--photo-type", "clipart"], lambda q: q.photo_type == "clipart"),
    ):
        code, out, _ = run(capsys, "queries", "--entities", ents, "--out", str(tmp_path / "m"), *flags)
        assert code == 0 and all(check(q) for q in read_jsonl(tmp_path / "m" / "queries.jsonl", Query)), flags
    code, _, err = run(
        capsys, "queries", "--entities", ents, "--out", str(tmp_path / "m"), "--exclude-terms=-x"
    )
    assert code == 2 and "comma-separated single words" in one_error_line(err)


def test_malformed_kg_file_gives_its_line(capsys, tmp_path):
    bad = tmp_path / "bad.ttl"
    bad.write_text(SAMPLE_KG.read_text().replace("wd:Q140 rdfs:label", "wd:Q140 rdfs:label rdfs:label", 1))
    line_no = next(i for i, x in enumerate(bad.read_text().splitlines(), 1) if "rdfs:label rdfs:label" in x)
    code, _, err = run(capsys, "kg", "expand", "--kg-file", str(bad), "--out", str(tmp_path / "o"))
    assert code == 2
    line = one_error_line(err)
    assert "bad.ttl" in line and f"line {line_no}" in line
    assert not (tmp_path / "o" / "entities.jsonl").exists()


@pytest.mark.parametrize(
    "root,message", [("X729", "malformed root 'X729'"), ("Q123456789", "root Q123456789 not found")]
)
def test_bad_roots(capsys, tmp_path, root, message):
    code, _, err = run(
        capsys, "kg", "expand", "--kg-file", str(SAMPLE_KG), "--root", root, "--out", str(tmp_path)
    )
    assert code == 2 and message in one_error_line(err)


def test_unreachable_endpoint(capsys, tmp_path):
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/sparql"
    code, _, err = run(
        capsys,
        "kg",
        "expand",
        "--endpoint",
        url,
        "--retries",
        "1",
        "--connect-timeout",
        "0.5",
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2 and f"SPARQL endpoint {url} failed after 2 attempts" in one_error_line(err)
    assert not (tmp_path / "o" / "entities.jsonl").exists()


def test_queries_bad_input_and_unwritable_output(capsys, tmp_path):
    code, _, err = run(capsys, "queries", "--entities", str(SAMPLE_KG), "--out", str(tmp_path / "q"))
    assert code == 2 and "sample_kg.ttl:1: not a valid Entity" in one_error_line(err)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = run(capsys, "queries", "--entities", str(empty), "--out", str(tmp_path / "q"))
    assert code == 2 and "holds no entities" in one_error_line(err)
    one = tmp_path / "one.jsonl"
    write_jsonl(one, [Entity(id="Q140", label="lion", sitelinks=10)])
    (tmp_path / "f").write_text("")
    code, _, err = run(capsys, "queries", "--entities", str(one), "--out", str(tmp_path / "f" / "x"))
    assert code == 2 and "cannot create output directory" in one_error_line(err)


def test_console_script_exit_code():
    exe = Path(sys.executable).parent / "entitynet"
    r = subprocess.run(
        [str(exe), "kg", "expand", "--kg-file", str(SAMPLE_KG), "--root", "Q1 }", "--out", "/tmp/x"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.strip() == (
        "entitynet: error: malformed root 'Q1 }': expected a Wikidata item id like Q729"
    )


@pytest.mark.slow
def test_demo_prints_the_summary(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "demo",
        "--out",
        str(tmp_path),
        "--limit-entities",
        "12",
        "--train-steps",
        "12",
        "--ablation-steps",
        "4",
        "--templates",
        "bare",
    )
    assert code == 0
    assert "expanded 240 entities from the sample graph" in out and "queries per kind:" in out
    assert "candidate images" in out and "records per split:" in out and "demo finished in" in out
    assert (tmp_path / "kg" / "entities.jsonl").exists() and (tmp_path / "queries" / "queries.jsonl").exists()
    assert (tmp_path / "shards" / "dataset_info.json").exists()
    assert (
        "== 4/10 curate" in out
        and "balancing at t=12" in out
        and "harvested images within the threshold" in out
    )
    assert (tmp_path / "curated" / "dataset_info.json").exists() and (
        tmp_path / "evalset" / "labels.tsv"
    ).exists()
    assert "== 5/10 train" in out and "trained to step 12" in out and "== 6/10 evaluate" in out
    assert "zero-shot over" in out and "chance" in out
    (report,) = (tmp_path / "train" / "eval").glob("evalset-*/report.md")
    assert report.exists() and (report.parent / "plots" / "per_class.png").exists()
    # the ablation: three text mixes on the same shards, side by side
    assert "== 7/10 ablation" in out and (tmp_path / "train-alt" / "checkpoints" / "4").is_dir()
    ablation = (tmp_path / "ablation" / "report.md").read_text()
    for label in ("KG + alt text (0.5)", "alt text only", "KG text only"):
        assert f"| {label} |" in ablation and label in out
    assert (tmp_path / "ablation" / "plots" / "curves.png").exists()
    assert (tmp_path / "train" / "checkpoints" / "12").is_dir()
    assert (tmp_path / "curated" / "tokenizer.json").exists()
    # the explorer of the curated set and the run's evaluations, its path printed
    site = (tmp_path / "explorer").resolve()
    assert "== 10/10 explore" in out and f"explorer: {site / 'index.html'}" in out
    # the model filters: the harvest embedded with the run, curated again, its removals explored
    assert "== 9/10 look at the pixels" in out and (tmp_path / "embeddings" / "embed_config.json").is_file()
    model_stats = json.loads((tmp_path / "curated-model" / "curation_stats.json").read_text())
    assert model_stats["removed"].get("clip_score", 0) > 0
    assert model_stats["amended"]["alt_text_score"]["dropped"] > 0 and "amended by alt_text_score" in out
    # the embeddings' index, each image's neighbours and each entity's map in the explorer
    assert (
        tmp_path / "embeddings" / "index" / "index.json"
    ).is_file() and "with their nearest neighbours" in out
    assert list((site / "data" / "e").glob("*/map.js"))
    # the export, and the lines that load it with open_clip
    export = (tmp_path / "export").resolve()
    assert "== 8/10 export" in out and f'open_clip.create_model_and_transforms("local-dir:{export}")' in out
    assert (export / "open_clip_config.json").is_file() and (export / "README.md").is_file()
    # the curated set as WebDataset, and the open_clip command that trains on it from the export
    wds_stats = json.loads((tmp_path / "wds" / "export_stats.json").read_text())
    curated_train = json.loads((tmp_path / "curated" / "curation_stats.json").read_text())["kept"]["train"]
    assert wds_stats["records"] == curated_train and (tmp_path / "wds" / "00000.tar").is_file()
    assert set(wds_stats["text_sources"]) == {"alt", "kg"}
    assert (
        "python -m open_clip_train.main --dataset-type webdataset --train-data" in out
        and f"--model local-dir:{tmp_path / 'export'}" in out
    )
    assert (site / "explorer.json").is_file() and len(list((site / "data" / "eval").glob("*.js"))) == 2
    # kg classify: the living expansion keeps every taxon; the world part loses its abstract classes,
    # which the explorer's index lists with who decided and why
    assert "240 kept, 0 left out as not visual" in out and "35 kept, 5 left out as not visual" in out
    from entitynet.explore.site import read_script

    left = read_script((site / "data" / "index.js").read_bytes())[1]["left_out"]
    assert {r["label"] for r in left} >= {"software", "service", "video game"}
    assert all(r["by"] == "kg-rule" and r["reason"] for r in left)
    assert "5 left out as not visual" in out.split("== 10/10 explore")[1]
    # the curate command on the demo's harvest: a key subset, and one clear line for a missing eval set
    argv = [
        "curate",
        "--shards",
        str(tmp_path / "shards"),
        "--entities",
        str(tmp_path / "kg" / "entities.jsonl"),
    ]
    code, out, _ = run(capsys, *argv, "--t", "5", "--output", "subset", "--out", str(tmp_path / "subset"))
    assert code == 0 and "records read" in out and (tmp_path / "subset" / "subset.npz").exists()
    code, _, err = run(capsys, *argv, "--decontaminate", str(tmp_path / "nope"), "--out", str(tmp_path / "x"))
    assert code == 2 and "evaluation set" in one_error_line(err) and "does not exist" in err
    code, _, err = run(capsys, *argv[:2], str(tmp_path / "kg"), *argv[3:], "--out", str(tmp_path / "x"))
    assert code == 2 and "holds no harvest shards" in one_error_line(err)
    assert not (tmp_path / "x").exists()


def test_malformed_endpoint_response(capsys, tmp_path, faulty_endpoint):
    faulty_endpoint.script = ["malformed"] * 50
    code, _, err = run(
        capsys,
        "kg",
        "expand",
        "--endpoint",
        faulty_endpoint.url,
        "--retries",
        "1",
        "--out",
        str(tmp_path / "o"),
    )
    line = one_error_line(err)
    assert code == 2 and f"malformed SPARQL response from {faulty_endpoint.url}" in line
    assert not (tmp_path / "o" / "entities.jsonl").exists()
