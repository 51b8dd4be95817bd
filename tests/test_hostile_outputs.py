"""Whose output a directory is: a stage writes only into a new or empty directory or an earlier
output of its own, never into a directory of the user's or of another stage, where it would mix its
files with theirs or replace them. A refused run writes nothing there."""

from __future__ import annotations

import json

import pytest
from conftest import SAMPLE_KG
from hostile import tried

from entitynet.locks import OUTPUT_MARKER, output_refusal
from entitynet_cli import main as cli


def _snapshot(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _one_error(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip() and not x.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("entitynet: error: "), lines
    return lines[0]


def test_the_decision():
    tried("output directory", 6)
    assert output_refusal("d", [], "harvest", None) is None
    assert output_refusal("d", [".entitynet.lock", OUTPUT_MARKER], "harvest", None) is None
    assert output_refusal("d", ["shards"], "harvest", {"stage": "harvest"}) is None
    assert (
        output_refusal("d", ["harvest_config.json", "x"], "harvest", None, ("harvest_config.json",)) is None
    )
    why = output_refusal("d", ["README.md", "tokenizer.json"], "harvest", None, ("harvest_config.json",))
    assert why and "not an earlier `entitynet harvest` output (it holds README.md, tokenizer.json)" in why
    why = output_refusal("d", ["entities.jsonl"], "curate", {"stage": "kg expand"})
    assert why and "is the output of `entitynet kg expand`, not of `entitynet curate`" in why


def test_a_users_directory_is_refused_and_left_as_it_was(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    (mine / "entities.jsonl").write_text("my own entities\n")
    before = _snapshot(mine)
    tried("output directory")
    assert cli.main(["kg", "expand", "--kg-file", str(SAMPLE_KG), "--out", str(mine)]) == 2
    assert "not an earlier `entitynet kg expand` output (it holds README.md, entities.jsonl)" in _one_error(
        capsys
    )
    assert _snapshot(mine) == before and sorted(p.name for p in mine.iterdir()) == [
        "README.md",
        "entities.jsonl",
    ]


def test_stages_do_not_write_into_each_others_outputs(tmp_path, capsys):
    kg = tmp_path / "kg"
    assert cli.main(["kg", "expand", "--kg-file", str(SAMPLE_KG), "--out", str(kg)]) == 0
    capsys.readouterr()
    assert json.loads((kg / OUTPUT_MARKER).read_text()) == {"stage": "kg expand"}
    before = _snapshot(kg)
    tried("output directory", 3)
    assert cli.main(["queries", "--entities", str(kg / "entities.jsonl"), "--out", str(kg)]) == 2
    assert "is the output of `entitynet kg expand`, not of `entitynet queries`" in _one_error(capsys)
    assert _snapshot(kg) == before
    # its own stage re-runs into it (resumes or replaces), and so do outputs made before the marker
    assert cli.main(["kg", "expand", "--kg-file", str(SAMPLE_KG), "--out", str(kg)]) == 0
    (kg / OUTPUT_MARKER).unlink()
    assert cli.main(["kg", "expand", "--kg-file", str(SAMPLE_KG), "--out", str(kg)]) == 0
    q = tmp_path / "q"
    assert cli.main(["queries", "--entities", str(kg / "entities.jsonl"), "--out", str(q)]) == 0
    capsys.readouterr()
    assert cli.main(["kg", "expand", "--kg-file", str(SAMPLE_KG), "--out", str(q)]) == 2
    assert "is the output of `entitynet queries`" in _one_error(capsys)


def test_a_failed_run_leaves_an_empty_directory_empty(tmp_path, capsys):
    tried("output directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        cli.main(["kg", "expand", "--kg-file", str(SAMPLE_KG), "--root", "Q999999", "--out", str(empty)]) == 2
    )
    _one_error(capsys)
    assert list(empty.iterdir()) == []


def test_a_remote_output_is_judged_the_same_way(bucket, object_store_server):
    from beam_pipelines.common import PipelineOutput
    from entitynet.errors import OutputError
    from entitynet.storage import STORE

    tried("output directory", 2)
    STORE.write(f"{bucket}/out/README.md", b"mine")
    with pytest.raises(
        OutputError, match=r"not an earlier `entitynet harvest` output \(it holds README.md\)"
    ):
        with PipelineOutput(f"{bucket}/out", "entitynet-harvest-", "harvest"):
            pass
    assert object_store_server.keys(bucket) == ["out/README.md"]
    with PipelineOutput(f"{bucket}/new", "entitynet-harvest-", "harvest"):
        assert json.loads(STORE.read(f"{bucket}/new/{OUTPUT_MARKER}")) == {"stage": "harvest"}
