"""`entitynet kg classify`: natural type and visuality by an LLM (a scripted chat-completions server
on 127.0.0.1 playing a real server's faults) or by the KG rule, on the sample world."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chatserver import ScriptedChat, classify_responder
from hostile import tried

from entitynet.errors import EntityNetError
from entitynet.kg import classify
from entitynet.kg.client import KGSource
from entitynet.records import Entity, read_jsonl
from entitynet.text.llm import LLMClient
from entitynet_cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
# what a person says of the sample world's world-mode entities (tools/make_sample_kg.py's `visual`)
NON_VISUAL = {
    "statistical method",
    "software",
    "service",
    "video game",
    "nutrition",
    "cuisine",
    "border",
    "climate",
}


@pytest.fixture(scope="session")
def world(tmp_path_factory, sample_kg):
    """The sample graph expanded in world mode: (entities.jsonl path, entities, facts)."""
    from beam_pipelines import expand_kg
    from entitynet.kg.expand import ExpandConfig

    out = tmp_path_factory.mktemp("world")
    expand_kg.run(KGSource(kg_files=(str(sample_kg),)), ExpandConfig(mode="world"), str(out))
    path = out / "entities.jsonl"
    entities = list(read_jsonl(path, Entity))
    facts = classify.fetch_facts(
        KGSource(kg_files=(str(sample_kg),)).open(), entities, classify.ClassifyConfig(mode="world"), ("en",)
    )
    return path, entities, facts


def ids_of(entities, labels) -> set[str]:
    return {e.id for e in entities if e.label in labels}


def test_the_kg_rule_decides_from_the_graph_alone(world, sample_kg, tmp_path, capsys):
    path, entities, facts = world
    by_label = {e.label: e for e in entities}
    # candidates: super-types within three steps, most sitelinks first, with labels
    assert [label for _, label in facts[by_label["video game"].id].candidates] == [
        "information", "software", "product", "creative work", "abstract object",
    ]  # fmt: skip
    assert facts[by_label["hammer"].id].physical and not facts[by_label["hammer"].id].abstract
    rc = cli.main(
        ["kg", "classify", "--entities", str(path), "--kg-file", str(sample_kg), "--out", str(tmp_path)]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    kept = list(read_jsonl(tmp_path / "entities.jsonl", Entity))
    left = list(read_jsonl(tmp_path / "left_out.jsonl", Entity))
    assert {e.id for e in kept} | {e.id for e in left} == {e.id for e in entities}
    assert all(e.visual is True and e.visual_by == "kg-rule" for e in kept)
    assert {e.label for e in left} == {"book", "software", "video game", "product", "service"}
    assert all(e.visual is False and e.visual_by == "kg-rule" and e.visual_reason for e in left)
    # under physical object wins over abstract object; an image counts only where nothing is abstract
    assert {"hammer", "bicycle", "smartphone", "mountain", "bread"} <= {e.label for e in kept}
    st = json.loads((tmp_path / "classify_stats.json").read_text())
    assert st["left_out"] == 5 and st["decided_by"] == {"kg-rule": 40} and st["requests"] == 0
    assert (
        "5 left out as not visual" in printed
        and "left out  " in printed
        and "kg-rule: under abstract object" in printed
    )
    assert "next: entitynet queries --entities" in printed
    # the entities go a chunk at a time (memory does not grow with the graph): the same files
    st7 = classify.run(
        read_jsonl(path, Entity), str(path), KGSource(kg_files=(str(sample_kg),)).open(), "kg",
        str(tmp_path / "chunked"), classify.ClassifyConfig(), chunk=7,
    )  # fmt: skip
    for name in ("entities.jsonl", "left_out.jsonl"):
        assert (tmp_path / "chunked" / name).read_bytes() == (tmp_path / name).read_bytes()
    assert {k: v for k, v in st7.items() if k != "seconds"} == {k: v for k, v in st.items() if k != "seconds"}


def test_the_kg_rule_keeps_every_taxon_in_living_mode(sample_entities, sample_entities_dir):
    facts = {e.id: classify.Facts() for e in sample_entities}
    decided, _ = classify.classify(sample_entities, facts, classify.ClassifyConfig(mode="living"))
    kept = [e for e in sample_entities if decided[e.id].visual]
    assert all(decided[e.id].visual for e in sample_entities if e.kind in ("taxon", "fruit"))
    assert len(kept) >= len(sample_entities) - 2


def llm(srv, **kw) -> LLMClient:
    kw.setdefault("max_retries", 2)
    return LLMClient(srv.url, "scripted-7b", temperature=0.0, **kw)


def run(entities, facts, client, tmp_path, **cfg):
    cfg.setdefault("batch_size", 8)
    cache = classify.AnswerCache(str(tmp_path / "cache"))
    return classify.classify(entities, facts, classify.ClassifyConfig(mode="world", **cfg), client, cache)


def test_the_llm_decides_with_a_schema_and_its_answers_are_checked(world, tmp_path):
    _, entities, facts = world
    srv = ScriptedChat(classify_responder(ids_of(entities, NON_VISUAL), natural=1))
    try:
        decided, tally = run(entities, facts, llm(srv), tmp_path, concurrency=3)
        assert tally.requests == 5 and tally.invalid == 0  # 40 entities, 8 a request
        fmt = srv.requests[0]["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
        item = fmt["json_schema"]["schema"]["properties"]["entities"]["items"]
        assert item["required"] == ["id", "natural_type", "visual", "reason"]
        left = {e.label for e in entities if not decided[e.id].visual}
        assert left == NON_VISUAL
        assert all(d.by == "llm:scripted-7b" for d in decided.values())
        # the natural type is the model's choice among the entity's candidates
        game = next(e for e in entities if e.label == "video game")
        assert decided[game.id].natural_type_label == "software"
        # a re-run asks nothing: every answer is cached under a digest of the model and the request
        again, tally2 = run(entities, facts, llm(srv), tmp_path, concurrency=3)
        assert again == decided and tally2.requests == 0 and tally2.cached == 5 and len(srv.requests) == 5
    finally:
        srv.close()


@pytest.mark.parametrize(
    "fault, requests",
    [("malformed", 2), ("schema", 2), (("429", 1), 2), ("500", 2), ("stall", 2)],
)
def test_each_fault_of_the_server_is_retried(world, tmp_path, fault, requests):
    tried("llm-classify")
    _, entities, facts = world
    batch = entities[:6]
    srv = ScriptedChat(classify_responder(ids_of(batch, NON_VISUAL)), [fault])
    try:
        started = time.monotonic()
        decided, tally = run(batch, facts, llm(srv, timeout=0.5), tmp_path)
        assert len(srv.requests) == requests
        assert all(d.by == "llm:scripted-7b" for d in decided.values())
        if fault in ("malformed", "schema"):
            assert tally.invalid == 1 and tally.requests == 2  # asked again by us
        if fault == ("429", 1):
            assert time.monotonic() - started >= 0.9  # Retry-After was honoured
    finally:
        srv.close()


def test_a_refusal_or_answers_that_stay_invalid_fall_back_to_the_kg_rule(world, tmp_path):
    tried("llm-classify", 2)
    _, entities, facts = world
    batch = entities[:6]
    srv = ScriptedChat(classify_responder(set()), ["refusal"])
    try:
        decided, tally = run(batch, facts, llm(srv), tmp_path)
        assert tally.refused == 1 and len(srv.requests) == 1
        assert {d.by for d in decided.values()} == {"kg-rule (the model refused)"}
        assert decided == {e.id: classify.kg_rule(e, facts[e.id], "world", decided[e.id].by) for e in batch}
        # the refusal is an answer too: a re-run does not ask again
        assert run(batch, facts, llm(srv), tmp_path)[0] == decided and len(srv.requests) == 1
    finally:
        srv.close()
    srv = ScriptedChat(classify_responder(set()), ["malformed", "schema", "malformed"])
    try:
        decided, tally = run(batch, facts, llm(srv), tmp_path / "other", tries=3)
        assert tally.invalid == 3 and len(srv.requests) == 3
        assert {d.by for d in decided.values()} == {"kg-rule (no valid answer from scripted-7b)"}
    finally:
        srv.close()


def test_an_endpoint_that_never_answers_ends_in_one_line_and_writes_nothing(
    world, sample_kg, tmp_path, capsys
):
    tried("llm-classify", 2)
    path, entities, _ = world
    base = [
        "kg",
        "classify",
        "--entities",
        str(path),
        "--kg-file",
        str(sample_kg),
        "--llm-model",
        "scripted-7b",
    ]
    srv = ScriptedChat(classify_responder(set()), ["500"] * 20)
    try:
        capsys.readouterr()
        rc = cli.main(
            [
                *base,
                "--llm-endpoint",
                srv.url,
                "--out",
                str(tmp_path / "a"),
                "--llm-concurrency",
                "1",
                "--llm-retries",
                "1",
            ]
        )
        err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("entitynet:")]
        assert rc != 0 and len(err) == 1 and "failed after 2 attempts, last: HTTP 500" in err[0], err
        assert not (tmp_path / "a" / "entities.jsonl").exists()
    finally:
        srv.close()
    srv = ScriptedChat(classify_responder(set()), ["stall"] * 20)
    try:
        client = llm(srv, timeout=0.3, total_timeout=1.0)
        with pytest.raises(EntityNetError, match="gave no whole answer within the total timeout of 1 s"):
            run(entities[:4], world[2], client, tmp_path)
    finally:
        srv.close()


def test_a_killed_run_resumes_and_asks_nothing_twice(world, sample_kg, tmp_path):
    tried("llm-classify")
    path, entities, _ = world
    truth = ids_of(entities, NON_VISUAL)
    srv = ScriptedChat(classify_responder(truth), [None, None, None, "hold"])
    out = tmp_path / "out"
    argv = [
        sys.executable, "-m", "entitynet_cli", "kg", "classify", "--entities", str(path),
        "--kg-file", str(sample_kg), "--llm-endpoint", srv.url, "--llm-model", "scripted-7b",
        "--llm-batch-size", "4", "--llm-concurrency", "1", "--out", str(out),
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert srv.held.wait(120), proc.stderr.read() if proc.poll() is not None else "no 4th request"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert len(srv.requests) == 4 and not (out / "entities.jsonl").exists()
        assert len(list((out / "llm_cache").glob("*.json"))) == 3
        srv.release()
        rc = cli.main(argv[3:])
        assert rc == 0
        assert len(srv.requests) == 4 + 7  # 10 batches: 3 answered before the kill are not asked again
        left = {e.label for e in read_jsonl(out / "left_out.jsonl", Entity)}
        assert left == NON_VISUAL
        assert cli.main(argv[3:]) == 0 and len(srv.requests) == 11  # and a third run asks nothing
    finally:
        srv.close()


def test_in_living_mode_the_model_checks_the_kingdom(sample_entities, sample_kg, tmp_path):
    tried("llm-classify")
    entities = sample_entities[:12]
    cfg = classify.ClassifyConfig(mode="living", batch_size=6)
    facts = classify.fetch_facts(KGSource(kg_files=(str(sample_kg),)).open(), entities, cfg, ("en",))
    odd = entities[3]
    srv = ScriptedChat(classify_responder(set(), not_in_kingdom={odd.id}))
    try:
        decided, _ = classify.classify(entities, facts, cfg, llm(srv))
        assert "in_kingdom" in json.dumps(srv.requests[0]["response_format"])
        assert "[kingdom: an animal]" in srv.requests[0]["messages"][1]["content"] or odd.root != "Q729"
        assert [e.id for e in entities if not decided[e.id].visual] == [odd.id]
        assert decided[odd.id].reason.startswith("not ") and decided[odd.id].by == "llm:scripted-7b"
    finally:
        srv.close()


def test_the_data_card_lists_what_was_left_out(tmp_path):
    from entitynet import datacard

    left = [
        Entity(id=f"Q{i}", label=f"thing {i}", visual=False, visual_by="kg-rule", visual_reason="abstract")
        for i in range(1, 56)
    ]
    summary = classify.left_out_summary(left)
    assert summary is not None and summary["count"] == 55 and len(summary["entities"]) == 50
    card = datacard.write_card(tmp_path, {"left_out": summary}).read_text()
    assert "## Entities left out before the search: 55 (55 by kg-rule)" in card
    assert "| Q1 | thing 1 | kg-rule | abstract |" in card and "| … | 5 more in left_out.jsonl | | |" in card
    assert classify.left_out_summary([]) is None


def test_entities_judged_not_visual_get_no_queries(world, tmp_path):
    import dataclasses

    from entitynet.text.queries import QueryConfig, make_queries

    _, entities, _ = world
    judged = [dataclasses.replace(e, visual=e.label not in NON_VISUAL) for e in entities]
    queries, stats = make_queries(judged, str(tmp_path), QueryConfig())
    asked = {e for q in queries for e in q.entity_ids}
    assert stats["not_visual"] == len(NON_VISUAL) and stats["entities"] == len(entities) - len(NON_VISUAL)
    assert asked and not asked & ids_of(entities, NON_VISUAL)
