"""Names in BioCLIP's styles (entitynet/text/names.py): on the expanded sample graph, their
fallbacks, the training captions that mix them in, `entitynet eval --name-style` side by side, and
accuracy on living and other classes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from entitynet.errors import ConfigError
from entitynet.records import Entity, write_jsonl
from entitynet.sampleweb.render import jpeg_bytes, render
from entitynet.text.captions import STYLE_SOURCES, CaptionWeights, captions
from entitynet.text.names import STYLES, common_name, fallback_counts, styled_name, styled_names
from entitynet_cli.main import main
from train.evaluate import class_groups, classify, group_accuracy, parse_name_styles, style_classes


@pytest.fixture(scope="session")
def by_label(sample_entities):
    return {e.label: e for e in sample_entities}


def test_each_style_names_an_expanded_sample_entity(by_label):
    fox = styled_names(by_label["red fox"])
    assert {s: n.text for s, n in fox.items()} == {
        "common": "red fox",
        "scientific": "Vulpes vulpes",
        "scientific+common": "Vulpes vulpes with common name red fox",
        "taxonomic": "Animalia Chordata Mammalia Carnivora Canidae Vulpes vulpes",
        "taxonomic+common": "Animalia Chordata Mammalia Carnivora Canidae Vulpes vulpes with common name red fox",
    }
    assert not any(n.fell_back for n in fox.values())
    # the genus ends the lineage and begins the binomial: written once, as BioCLIP does
    assert by_label["lion"].lineage_taxa[-1] == "Panthera"
    assert (
        styled_name(by_label["lion"], "taxonomic").text
        == "Animalia Chordata Mammalia Carnivora Felidae Panthera leo"
    )
    # a family is its lineage and its own name; a kingdom (a root) is its name alone
    assert styled_name(by_label["felid"], "taxonomic").text == "Animalia Chordata Mammalia Carnivora Felidae"
    assert styled_name(by_label["animal"], "taxonomic").text == "Animalia"
    # a label that is the scientific name: the common name comes from P1843
    human = by_label["Homo sapiens"]
    assert common_name(human) == "human"
    assert styled_name(human, "scientific+common").text == "Homo sapiens with common name human"


def test_entities_without_taxon_data_fall_back_and_are_counted(by_label, sample_entities):
    apple = by_label["apple"]  # a fruit: a lineage of taxa, but no taxon name of its own
    assert apple.lineage_taxa and not apple.taxon_names
    for style in STYLES:
        n = styled_name(apple, style)
        assert (n.text, n.used, n.fell_back) == ("apple", "common", style != "common")
    # an entities.jsonl expanded before lineage_taxa: taxonomic is the scientific name, said so
    fox = replace(by_label["red fox"], lineage_taxa=())
    n = styled_name(fox, "taxonomic+common")
    assert (n.text, n.used) == ("Vulpes vulpes with common name red fox", "scientific+common")
    # no common name other than the scientific one: "+common" says nothing more
    bare = Entity(id="Q1", label="Quercus robur", taxon_names=("Quercus robur",), lineage_taxa=("Plantae",))
    n = styled_name(bare, "taxonomic+common")
    assert (n.text, n.used, n.fell_back) == ("Plantae Quercus robur", "taxonomic", True)
    counts = fallback_counts(sample_entities, "taxonomic")
    no_taxon = sum(not e.taxon_names for e in sample_entities)
    assert counts["common"] == no_taxon > 0 and counts["taxonomic"] == len(sample_entities) - no_taxon
    with pytest.raises(ValueError, match="unknown name style 'latin'"):
        styled_name(apple, "latin")


def test_the_training_mix_draws_styled_captions_only_with_the_weight(sample_entities, by_label, tmp_path):
    from configs.common import base
    from train import config as config_lib
    from train.input_pipeline import TextChooser
    from train.train import caption_weights_of

    cfg = base()
    assert cfg.data.caption_weights.name_styles == 0.0 and caption_weights_of(cfg) == CaptionWeights()
    cfg.data.caption_weights.name_styles = 0.3
    weights = caption_weights_of(cfg)
    fox, apple = by_label["red fox"], by_label["apple"]
    parents = [e for e in sample_entities if e.id in fox.parents]
    mixed = captions(fox, None, parents, weights)
    styled = {c.source: c.weight for c in mixed if c.source in STYLE_SOURCES}
    # the scientific name is a synonym already: the share goes to the three other styles
    assert set(styled) == {"style:scientific+common", "style:taxonomic", "style:taxonomic+common"}
    assert sum(styled.values()) == pytest.approx(0.3) and sum(c.weight for c in mixed) == pytest.approx(1.0)
    assert captions(apple, None, [], weights) == captions(apple, None, [])  # no taxon name: unchanged

    def drawn(w, n=300):
        chooser = TextChooser(list(sample_entities), 0.0, weights=w)
        rng = np.random.default_rng(0)
        return Counter(chooser.choose(_Linked(fox.id), rng)[0] for _ in range(n))

    texts = {c.text: c.source for c in mixed}
    with_styles = drawn(weights)
    share = sum(n for t, n in with_styles.items() if texts.get(t, "").startswith("style:")) / 300
    assert 0.2 < share < 0.4
    assert not any(texts.get(t, "").startswith("style:") for t in drawn(CaptionWeights()))
    cfg.data.caption_weights.name_styles = 1.5
    with pytest.raises(ConfigError, match="name_styles=1.5"):
        config_lib.check(cfg)


def test_captions_command_shows_the_styled_names(sample_entities_dir, capsys):
    entities = str(sample_entities_dir[0] / "entities.jsonl")
    assert main(["captions", "--entities", entities, "--entity", "Q140"]) == 0
    out = capsys.readouterr().out
    assert "style:taxonomic           Animalia Chordata Mammalia Carnivora Felidae Panthera leo\n" in out
    assert main(["captions", "--entities", entities, "--entity", "Q89"]) == 0
    assert "none: 'apple' has no taxon name" in capsys.readouterr().out


class _Linked:
    def __init__(self, entity_id):
        self.entity_ids, self.alt_texts = (entity_id,), ()


# ---------------------------------------------------------------- evaluation


def test_living_and_other_accuracy_is_counted_per_group_against_brute_force(by_label):
    teapot = Entity(id="Q990999001", label="teapot", root="Q2424752", kind="class")
    ents = {e.id: e for e in (by_label["red fox"], by_label["apple"], teapot)}
    data = SimpleNamespace(
        classes=[["red fox"], ["apple"], ["teapot"], ["mystery object"]],
        class_entities={
            "red fox": by_label["red fox"].id,
            "apple": by_label["apple"].id,
            "teapot": teapot.id,
        },
        labels=np.array([0, 0, 1, 1, 1, 2, 2, 3, -1]),
        correct=None,
    )
    groups = class_groups(data, ents)
    assert groups == ["living", "living", "other", "unmapped"]
    rng = np.random.default_rng(1)
    images, cls = rng.normal(size=(9, 6)), rng.normal(size=(4, 6))
    got = group_accuracy(images, cls, data, groups)
    top1 = np.argmax(images @ cls.T, axis=1) == data.labels
    for g, rows in (("living", [0, 1, 2, 3, 4]), ("other", [5, 6]), ("unmapped", [7])):
        assert got[g]["images"] == len(rows) and got[g]["top1"] == pytest.approx(top1[rows].mean())
    assert (got["living"]["classes"], got["other"]["classes"], got["unmapped"]["classes"]) == (2, 1, 1)
    assert got["living"]["top1"] == pytest.approx(
        classify(images, cls, np.where(data.labels < 2, data.labels, -1))["top1"]
    )
    # a class's name in a style, and what fell back
    names, counts = style_classes(data, ents, "taxonomic")
    assert names[0] == ["Animalia Chordata Mammalia Carnivora Canidae Vulpes vulpes"]
    assert names[1:] == [["apple"], ["teapot"], ["mystery object"]]
    assert counts == {"fell_back": 3, "unmapped": 1, "used": {"common": 2, "taxonomic": 1, "unmapped": 1}}


def test_name_style_flags_parse_and_refuse_unknown_styles():
    assert parse_name_styles(["taxonomic,common", "common"]) == ("common", "taxonomic")
    assert parse_name_styles(["all"]) == STYLES and parse_name_styles(None) == ()
    with pytest.raises(ConfigError, match="--name-style latin: unknown name style"):
        parse_name_styles(["common,latin"])


def test_eval_with_two_name_styles_reports_them_side_by_side(tiny_run, sample_entities, tmp_path, capsys):
    """One run, classes that are living (red fox, apple), not (a teapot) and of no entity: every
    style's figures beside each other, and the living/other split with its counts."""
    teapot = Entity(id="Q990999001", label="teapot", root="Q2424752", kind="class")
    entities = tmp_path / "entities.jsonl"
    write_jsonl(entities, [*sample_entities, teapot])
    by_label = {e.label: e for e in sample_entities}
    folder = tmp_path / "ev"
    for e, n in ((by_label["red fox"], 3), (by_label["apple"], 2), (teapot, 2)):
        (folder / e.id).mkdir(parents=True)
        for k in range(n):
            (folder / e.id / f"{k}.jpg").write_bytes(
                jpeg_bytes(render(e.lineage_ids, e.id, 700 + k, (40, 32)))
            )
    (folder / "mystery object").mkdir()
    (folder / "mystery object" / "0.jpg").write_bytes(jpeg_bytes(render((), "mystery", 1, (40, 32))))
    common = ["eval", "--workdir", str(tiny_run), "--imagefolder", str(folder), "--entities", str(entities)]
    args = [*common, "--templates", "photo", "--out", str(tmp_path / "out")]
    assert main([*args, "--name-style", "taxonomic", "--name-style", "common"]) == 0
    out = capsys.readouterr().out
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    ns = r["name_styles"]
    assert list(ns) == ["common", "taxonomic"]
    assert ns["taxonomic"]["names"]["red fox"] == "Animalia Chordata Mammalia Carnivora Canidae Vulpes vulpes"
    assert (ns["common"]["fell_back"], ns["taxonomic"]["fell_back"], ns["taxonomic"]["unmapped"]) == (1, 3, 1)
    for x in ns.values():
        assert 0 <= x["top1"] <= x["top5"] <= 1 and x["best_of_prompt_sets"]["top1"] >= x["top1"]
    protocol = r["name_style_protocol"]
    assert protocol["templates"] == "photo" and protocol["template_count"] == 8
    assert protocol["best_of_prompt_sets"]["prompt_sets"] == ["photo", "openai", "bare"]
    lines = out.splitlines()
    fixed = next(x for x in lines if x.startswith("  name styles, fixed set photo (8 templates"))
    assert fixed.index("common top-1") < fixed.index("taxonomic top-1") and "(3 fell back)" in fixed
    best = next(x for x in lines if x.startswith("  name styles, best of 3 prompt sets, as the reference"))
    assert "common top-1" in best and "taxonomic top-1" in best
    split = r["living_split"]
    assert [split[g]["classes"] for g in ("living", "other", "unmapped")] == [2, 1, 1]
    assert [split[g]["images"] for g in ("living", "other", "unmapped")] == [5, 2, 1]
    assert any(x.startswith("  living classes (animal Q729 or plant Q756 and below) top-1 ") for x in lines)
    assert "## Name styles" in (tmp_path / "out" / "report.md").read_text()
    # the zero_shot key keeps its shape: the same keys with the new flag as without it
    assert main([*common, "--templates", "photo", "--out", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert set(plain["zero_shot"]) == set(r["zero_shot"]) and "name_styles" not in plain
    assert plain["zero_shot"]["fixed_templates"] == r["zero_shot"]["fixed_templates"]
    capsys.readouterr()
    assert main([*args, "--name-style", "latin"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--name-style latin: unknown name style" in err
