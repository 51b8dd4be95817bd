"""Zero-shot evaluation, retrieval, evaluation sets (ImageFolder, TFDS by name, the held-out split),
reports with plots, comparisons of several runs, and bad input."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from entitynet.errors import ConfigError
from entitynet.sampleweb.render import jpeg_bytes, render
from entitynet.text.templates import read_templates
from entitynet_cli.main import main
from train import eval_data
from train.evaluate import classify, retrieval


def test_zero_shot_and_retrieval_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(50, 8)).astype(np.float32)
    txt = rng.normal(size=(120, 8)).astype(np.float32)
    owner = rng.integers(0, 50, 120)
    owner[:50] = np.arange(50)  # every image has a text
    got = retrieval(img, txt, owner, chunk=16)  # 4 chunks, the last one padded
    s = img @ txt.T
    t2i = [int(np.sum(s[:, j] > s[owner[j], j])) for j in range(120)]
    i2t = [min(int(np.sum(s[i] > s[i, j])) for j in np.flatnonzero(owner == i)) for i in range(50)]
    for k in (1, 5, 10):
        assert got["text_to_image"][f"R@{k}"] == pytest.approx(np.mean(np.array(t2i) < k))
        assert got["image_to_text"][f"R@{k}"] == pytest.approx(np.mean(np.array(i2t) < k))
    assert got["text_to_image"]["median_rank"] == np.median(t2i) + 1
    assert got["image_to_text"]["median_rank"] == np.median(i2t) + 1
    # a duplicate text of another image ties with the true one (whatever the rounding): not above it
    dup_txt, dup_owner = np.concatenate([txt, txt[:1]]), np.concatenate([owner, [7]])
    dup = retrieval(img, dup_txt, dup_owner, chunk=16)
    sd = img @ dup_txt.T
    best = [max(sd[i, j] for j in np.flatnonzero(dup_owner == i)) for i in range(50)]
    i2t_dup = [int(np.sum((sd[i] > best[i] + 1e-6) & (dup_owner != i))) for i in range(50)]
    assert i2t_dup[0] == i2t[0]  # image 0 is not pushed down by the copy of its own text
    for k in (1, 5, 10):
        assert dup["image_to_text"][f"R@{k}"] == pytest.approx(np.mean(np.array(i2t_dup) < k))
    # images without a text are left out of image->text and still compete in text->image
    extra = rng.normal(size=(3, 8)).astype(np.float32)
    more = retrieval(np.concatenate([img, extra]), txt, owner, chunk=16)
    s2 = np.concatenate([img, extra]) @ txt.T
    t2i2 = [int(np.sum(s2[:, j] > s2[owner[j], j])) for j in range(120)]
    assert more["image_to_text"] == got["image_to_text"]
    assert more["text_to_image"]["R@5"] == pytest.approx(np.mean(np.array(t2i2) < 5))

    labels = rng.integers(0, 6, 50)
    labels[:3] = -1  # unlabelled images are left out
    cls = rng.normal(size=(6, 8)).astype(np.float32)
    r = classify(img, cls, labels)
    pred = np.argmax(img @ cls.T, 1)
    keep = labels >= 0
    assert r["top1"] == pytest.approx(np.mean(pred[keep] == labels[keep]))
    top5 = np.argsort(-(img @ cls.T), 1)[:, :5]
    assert r["top5"] == pytest.approx(np.mean([labels[i] in top5[i] for i in np.flatnonzero(keep)]))
    per = [np.mean(pred[keep & (labels == c)] == c) for c in range(6)]
    assert r["per_class"] == pytest.approx(per) and r["macro"] == pytest.approx(np.mean(per))
    # multi-label: a prediction is right when it is any of the image's classes
    correct = np.zeros((50, 6), bool)
    correct[np.arange(50), np.maximum(labels, 0)] = True
    correct[:, 0] = True  # class 0 is right for every image
    m = classify(img, cls, labels, correct)
    assert m["top1"] == pytest.approx(np.mean((pred[keep] == labels[keep]) | (pred[keep] == 0)))


def test_template_sets_and_files(tmp_path):
    openai = read_templates("openai")
    assert len(openai) == 80 == len(set(openai)) and all(t.count("{c}") == 1 for t in openai)
    assert read_templates("bare") == ["{c}"] and len(read_templates("photo")) == 8
    f = tmp_path / "t.txt"
    f.write_text("a drawing of {c}\n\nart of {c}\n")
    assert read_templates(str(f)) == ["a drawing of {c}", "art of {c}"]
    f.write_text("no placeholder here\n")
    with pytest.raises(ConfigError, match="each with"):
        read_templates(str(f))
    with pytest.raises(ConfigError, match="use openai, photo, bare"):
        read_templates(str(tmp_path / "missing.txt"))


def write_folder(root, entities, per_class=3, size=(40, 32)):
    for e in entities:
        (root / e.id).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            (root / e.id / f"{k}.jpg").write_bytes(jpeg_bytes(render(e.lineage_ids, e.id, 500 + k, size)))


def test_image_folder_class_names_from_the_knowledge_graph(sample_entities, tmp_path):
    by_id = {e.id: e for e in sample_entities}
    chosen = [e for e in sample_entities if e.aliases or e.common_names][:3]
    assert len(chosen) == 3
    write_folder(tmp_path / "ev", chosen)
    # folders named by entity id: the entity's label, or all its names with synonyms
    d = eval_data.image_folder(str(tmp_path / "ev"), by_id)
    assert [c for c in d.classes] == [[e.label] for e in sorted(chosen, key=lambda e: e.id)]
    syn = eval_data.image_folder(str(tmp_path / "ev"), by_id, synonyms=True)
    assert [c[0] for c in syn.classes] == [c[0] for c in d.classes]
    assert all(len(c) > 1 for c in syn.classes)
    assert d.size == 9 and list(d.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert d.load(4).size == (40, 32)
    shapes = []

    def encode(x):  # records the batch shapes; "embeds" an image as its mean pixel
        shapes.append(x.shape)
        return x.mean(axis=(1, 2))

    emb = eval_data.image_embeddings(d, encode, 16, batch=4)
    assert emb.shape == (9, 3) and shapes == [(4, 16, 16, 3)] * 3
    whole = eval_data.image_embeddings(d, encode, 16, batch=64)
    assert np.allclose(emb, whole)
    # labels.tsv maps folders to names or to other entity ids (one no other folder names)
    other = next(e for e in sample_entities if e not in chosen)
    (tmp_path / "ev" / "labels.tsv").write_text(f"{chosen[0].id}\tred fox\n{chosen[1].id}\t{other.id}\n")
    m = eval_data.image_folder(str(tmp_path / "ev"), by_id)
    names = dict(zip(sorted(e.id for e in chosen), [c[0] for c in m.classes], strict=True))
    assert names[chosen[0].id] == "red fox" and names[chosen[1].id] == other.label
    # bad input: one line each
    (tmp_path / "ev" / "labels.tsv").write_text(f"{chosen[0].id}\tQ999999999\n")
    with pytest.raises(ConfigError, match="Q999999999 is not an entity"):
        eval_data.image_folder(str(tmp_path / "ev"), by_id)
    (tmp_path / "ev" / "labels.tsv").write_text("no_such_folder\tcat\n")
    with pytest.raises(ConfigError, match="no folder 'no_such_folder'"):
        eval_data.image_folder(str(tmp_path / "ev"), by_id)
    (tmp_path / "ev" / "labels.tsv").write_text("just one column\n")
    with pytest.raises(ConfigError, match="expected folder<TAB>"):
        eval_data.image_folder(str(tmp_path / "ev"), by_id)
    with pytest.raises(ConfigError, match="does not exist"):
        eval_data.image_folder(str(tmp_path / "nope"), by_id)
    (tmp_path / "one" / "a").mkdir(parents=True)
    (tmp_path / "one" / "b").mkdir(parents=True)
    with pytest.raises(ConfigError, match="at least two class folders holding images"):
        eval_data.image_folder(str(tmp_path / "one"), {})
    (tmp_path / "one" / "a" / "x.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "one" / "b" / "y.jpg").write_bytes(b"not a jpeg")
    broken = eval_data.image_folder(str(tmp_path / "one"), {})
    with pytest.raises(ConfigError, match="none of its 2 images can be decoded"):
        eval_data.image_embeddings(broken, lambda x: x.reshape(len(x), -1), 16)


def write_tfds_classification(data_dir, name, entities, per_class=3):
    """A prepared TFDS dataset (ArrayRecord + metadata) with Image and ClassLabel features, found by
    name under `data_dir` as `tfds build` would leave it."""
    import tensorflow_datasets as tfds
    from array_record.python.array_record_module import ArrayRecordWriter

    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=[e.label.replace(" ", "_") for e in entities]),
        }
    )
    d = data_dir / name / "1.0.0"
    d.mkdir(parents=True)
    writer = ArrayRecordWriter(str(d / f"{name}-test.array_record-00000-of-00001"), "group_size:1")
    n = 0
    for label, e in enumerate(entities):
        for k in range(per_class):
            jpeg = jpeg_bytes(render(e.lineage_ids, e.id, 900 + k, (40, 40)))
            writer.write(features.serialize_example(features.encode_example({"image": jpeg, "label": label})))
            n += 1
    writer.close()
    tfds.folder_dataset.write_metadata(
        data_dir=str(d),
        features=features,
        split_infos=[tfds.core.SplitInfo(name="test", shard_lengths=[n], num_bytes=0)],
        version="1.0.0",
        check_data=False,
    )
    return n


@pytest.mark.slow
def test_evaluate_a_run_on_an_imagefolder_tfds_and_its_heldout_split(
    tiny_run, tiny_dataset, tmp_path, capsys
):
    data_dir, entities = tiny_dataset[0], tiny_dataset[1]
    write_folder(tmp_path / "ev", entities[:6], per_class=2)
    assert (
        main(
            [
                "eval",
                "--workdir",
                str(tiny_run),
                "--imagefolder",
                str(tmp_path / "ev"),
                "--templates",
                "photo",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "zero-shot over 6 classes" in out and "chance 16.67%" in out
    # the counting rule, said beside the numbers: exactly the labelled class
    assert f"  counted {eval_data.COUNTING['label']}\n" in out
    res_dir = result_dir(tiny_run, "ev")
    r = json.loads((res_dir / "results.json").read_text())
    zs = r["zero_shot"]
    assert zs["counting"] == "label" and zs["counting_rule"] == eval_data.COUNTING["label"]
    assert "exact" not in zs and "**Counting:** Right only when" in (res_dir / "report.md").read_text()
    assert r["step"] == 3 and r["images"] == 12 and zs["classes"] == 6 and zs["template_count"] == 8
    assert 0 <= zs["fixed_templates"]["top1"] <= zs["fixed_templates"]["top5"] <= 1
    assert zs["best_single_template"]["top1"] >= max(0.0, zs["fixed_templates"]["top1"] - 1)
    assert set(zs["per_class"]) == {e.label for e in entities[:6]}
    report = (res_dir / "report.md").read_text()
    assert "best single template, chosen on this set (optimistic)" in report and "fixed set: photo" in report
    for png in ("curves.png", "per_class.png"):
        with Image.open(res_dir / "plots" / png) as im:
            assert im.format == "PNG" and im.width > 100

    # a prepared TFDS dataset by NAME:SPLIT, class names from its ClassLabel ("_" read as spaces)
    tfds_dir = tmp_path / "tfds"
    n = write_tfds_classification(tfds_dir, "tiny_things", entities[:4])
    args = [
        "eval",
        "--workdir",
        str(tiny_run),
        "--tfds",
        "tiny_things:test",
        "--tfds-data-dir",
        str(tfds_dir),
    ]
    assert main([*args, "--templates", "bare", "--out", str(tmp_path / "t")]) == 0
    t = json.loads((tmp_path / "t" / "results.json").read_text())
    assert t["eval_set"] == "tfds:tiny_things:test" and t["images"] == n
    assert sorted(t["zero_shot"]["per_class"]) == sorted(e.label for e in entities[:4])
    # --class-names: one line per class, names or entity ids
    names = tmp_path / "names.txt"
    names.write_text("".join(f"{e.id}\n" for e in entities[:4]))
    known = {e.id: e for e in entities}
    named = eval_data.tfds_split("tiny_things:test", str(tfds_dir), known, class_names=str(names))
    assert [c[0] for c in named.classes] == [e.label for e in entities[:4]]
    assert list(named.labels) == [i for i in range(4) for _ in range(3)] and named.load(0).size == (40, 40)
    names.write_text("just one\n")
    capsys.readouterr()
    assert main([*args, "--class-names", str(names)]) == 2
    assert "has 1 lines for 4 classes" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                "--workdir",
                str(tiny_run),
                "--tfds",
                "no_such_set:test",
                "--tfds-data-dir",
                str(tfds_dir),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no_such_set:test: cannot open it" in err

    # the held-out split of the run's own shards: zero-shot over its entities, retrieval over alt texts
    assert (
        main(
            ["eval", "--workdir", str(tiny_run), "--heldout", "--split", "validation", "--templates", "bare"]
        )
        == 0
    )
    h = json.loads((result_dir(tiny_run, "heldout-validation") / "results.json").read_text())
    val = [rec for rec in tiny_dataset[2] if rec.key in {x.key for x in held_records(data_dir)}]
    assert h["images"] == len(val) and h["retrieval"]["texts"] == sum(len(x.alt_texts) for x in val)
    assert h["zero_shot"]["classes"] == len({e for x in val for e in x.entity_ids})
    held_report = (result_dir(tiny_run, "heldout-validation") / "report.md").read_text()
    assert "## Retrieval" in held_report
    # any linked entity counts, said so, with exact-entity accuracy beside it (one entity an image
    # here: the same numbers)
    hz = h["zero_shot"]
    assert hz["counting"] == "linked" and hz["counting_rule"] == eval_data.COUNTING["linked"]
    assert hz["exact"]["rule"] == eval_data.EXACT_RULE
    assert hz["exact"]["fixed_templates"] == hz["fixed_templates"]
    assert hz["exact"]["bare_names"] == hz["bare_names"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith(f"  counted {eval_data.COUNTING['linked']}; exact-entity top-1 ")
    assert "| exact entity, fixed set: bare |" in held_report and "**Counting:** Right when" in held_report
    predicted = [
        json.loads(x) for x in (result_dir(tiny_run, "heldout-validation") / "predictions.jsonl").open()
    ]
    assert all(p["exact"] == p["right"] for p in predicted)
    assert main(["eval", "--workdir", str(tiny_run), "--heldout", "--split", "test"]) == 2
    assert "no 'test' split" in capsys.readouterr().err


def result_dir(workdir, name):
    """The one results directory of set `name` under WORKDIR/eval (named <name>-<digest>)."""
    (found,) = (workdir / "eval").glob(f"{name}-????????")
    return found


def held_records(data_dir):
    from entitynet import shards

    return list(shards.iter_records(data_dir, "validation"))


@pytest.mark.slow
def test_an_exported_model_evaluates_like_its_run_and_runs_compare(tiny_run, tiny_dataset, tmp_path, capsys):
    write_folder(tmp_path / "ev", tiny_dataset[1][:5], per_class=2)
    assert main(["export", "--workdir", str(tmp_path / "ev"), "--out", str(tmp_path / "x")]) == 2
    assert "is not a training workdir" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["export", "--workdir", str(tiny_run), "--out", str(tmp_path / "export")]) == 0
    entities = str(tiny_dataset[0] / "entities.jsonl")  # an export knows no knowledge graph
    common = ["--imagefolder", str(tmp_path / "ev"), "--templates", "photo", "--entities", entities]
    assert main(["eval", "--workdir", str(tiny_run), *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["eval", "--workdir", str(tmp_path / "export"), *common]) == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())["zero_shot"]
    b = json.loads((result_dir(tmp_path / "export", "ev") / "results.json").read_text())["zero_shot"]
    assert a["fixed_templates"] == pytest.approx(b["fixed_templates"], abs=1e-6)
    assert a["per_class"] == pytest.approx(b["per_class"], abs=1e-6)
    # several runs side by side
    capsys.readouterr()
    cmp = ["eval", "--workdir", str(tiny_run), "--workdir", str(tmp_path / "export"), *common]
    assert main(cmp) == 2
    assert "say where the comparison goes with --out" in capsys.readouterr().err
    assert main([*cmp, "--label", "only one", "--out", str(tmp_path / "cmp")]) == 2
    assert main([*cmp, "--label", "trained", "--label", "export", "--out", str(tmp_path / "cmp")]) == 0
    report = (tmp_path / "cmp" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith(("| trained |", "| export |"))]
    assert len(rows) == 2 and rows[0].split("|")[3] == rows[1].split("|")[3]  # same top-1
    assert f"{a['fixed_templates']['top1']:.2%}" in rows[0]
    assert len(json.loads((tmp_path / "cmp" / "results.json").read_text())["runs"]) == 2
    assert (tmp_path / "cmp" / "plots" / "compare.png").exists()
    # not a model directory at all
    assert main(["eval", "--workdir", str(tmp_path), *common]) == 2
    assert "neither a training workdir" in capsys.readouterr().err


@pytest.mark.slow
def test_a_checkpoint_or_weights_of_another_model_is_one_clear_error(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["overrides"] = {"vision_width": 48, "vision_heads": 2}  # not what was trained
    (run / "config.json").write_text(json.dumps(cfg))
    folder = ["--imagefolder", str(tmp_path / "nope")]
    assert main(["eval", "--workdir", str(run), *folder]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit the model of" in err
    assert main(["export", "--workdir", str(tiny_run), "--out", str(tmp_path / "export")]) == 0
    oc = json.loads((tmp_path / "export" / "open_clip_config.json").read_text())
    oc["model_cfg"]["vision_cfg"]["width"] = 48
    (tmp_path / "export" / "open_clip_config.json").write_text(json.dumps(oc))
    capsys.readouterr()
    assert main(["eval", "--workdir", str(tmp_path / "export"), *folder]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose the preset the checkpoint was trained with" in err


def test_label_folders_resolve_to_entities_and_class_names_work_for_every_set(sample_entities, tmp_path):
    import dataclasses

    by_id = {e.id: e for e in sample_entities}
    chosen = [e for e in sample_entities if e.aliases or e.common_names][:3]
    root = tmp_path / "labels"
    for e in chosen:  # folders named by label, as a user downloads them
        (root / e.label).mkdir(parents=True)
        (root / e.label / "0.jpg").write_bytes(jpeg_bytes(render(e.lineage_ids, e.id, 1, (40, 32))))
    alias = chosen[0].synonyms()[1]
    (root / chosen[0].label).rename(root / alias.replace(" ", "_"))  # an alias, underscores for spaces
    (root / "no such creature").mkdir()
    (root / "no such creature" / "0.jpg").write_bytes((root / alias.replace(" ", "_") / "0.jpg").read_bytes())

    plain = eval_data.image_folder(str(root), by_id)
    assert all(len(c) == 1 for c in plain.classes) and not plain.unresolved
    syn = eval_data.image_folder(str(root), by_id, synonyms=True)
    folders = sorted(p.name for p in root.iterdir())
    by_folder = dict(zip(folders, syn.classes, strict=True))
    for e in chosen[1:]:
        assert by_folder[e.label][0] == e.label and set(e.synonyms()) <= set(by_folder[e.label])
        assert syn.class_entities[e.label] == e.id
    assert syn.class_entities[alias.replace(" ", "_")] == chosen[0].id
    assert by_folder["no such creature"] == ["no such creature"]
    assert syn.unresolved == ["'no such creature' matches no entity"]
    line = eval_data.unresolved_line(syn.unresolved)
    assert "\n" not in line and "1 class name(s)" in line and "labels.tsv or --class-names" in line

    # two entities sharing a name: ambiguous, reported, the folder keeps its own name
    twin = dataclasses.replace(chosen[1], id="Q990999999", aliases=(), common_names=(), taxon_names=())
    amb = eval_data.image_folder(str(root), {**by_id, twin.id: twin}, synonyms=True)
    assert dict(zip(folders, amb.classes, strict=True))[chosen[1].label] == [chosen[1].label]
    assert any("is ambiguous" in u and twin.id in u for u in amb.unresolved)

    # --class-names for an ImageFolder: one line per folder in sorted order
    names = tmp_path / "names.txt"
    names.write_text("".join(f"class {i}\tsynonym {i}\n" for i in range(len(folders))))
    named = eval_data.image_folder(str(root), by_id, class_names=str(names))
    assert named.classes == [[f"class {i}", f"synonym {i}"] for i in range(len(folders))]
    names.write_text("too few\n")
    with pytest.raises(ConfigError, match=f"has 1 lines for {len(folders)} classes"):
        eval_data.image_folder(str(root), by_id, class_names=str(names))


@pytest.mark.slow
def test_results_of_two_sets_with_one_name_do_not_overwrite_each_other(
    tiny_run, tiny_dataset, tmp_path, capsys
):
    entities = tiny_dataset[1]
    write_folder(tmp_path / "a" / "ev", entities[:3], per_class=1)
    write_folder(tmp_path / "b" / "ev", entities[3:7], per_class=1)
    for where in ("a", "b"):
        assert main(["eval", "--workdir", str(tiny_run), "--imagefolder", str(tmp_path / where / "ev")]) == 0
    found = {}
    for d in (tiny_run / "eval").glob("ev-????????"):  # other tests' sets named "ev" live here too
        r = json.loads((d / "results.json").read_text())
        found[r["eval_source"]] = (d, r["zero_shot"]["classes"])
    a, b = (found[f"imagefolder:{(tmp_path / w / 'ev').resolve()}"] for w in "ab")
    assert a[0] != b[0] and (a[1], b[1]) == (3, 4)  # both kept, each with its own classes


def test_default_templates_are_the_runs_and_bare_names_are_reported(tiny_run, tiny_dataset, tmp_path, capsys):
    from train.evaluate import choose_templates, training_templates

    assert training_templates({"data": {"template_chance": 0.25, "templates": "photo"}}) == "photo"
    assert training_templates({"data": {"template_chance": 0.0, "templates": "photo"}}) is None
    assert training_templates({}) is None
    assert choose_templates(None, {"data": {"template_chance": 0.5, "templates": "photo"}}) == "photo"
    assert choose_templates(None, {}) == "openai"
    assert choose_templates("bare", {"data": {"template_chance": 0.5, "templates": "photo"}}) == "bare"

    write_folder(tmp_path / "ev", tiny_dataset[1][:4], per_class=2)
    out = tmp_path / "res"
    args = ["eval", "--workdir", str(tiny_run), "--imagefolder", str(tmp_path / "ev"), "--out", str(out)]
    assert main([*args, "--synonyms"]) == 0
    zs = json.loads((out / "results.json").read_text())["zero_shot"]
    run_cfg = json.loads((tiny_run / "config.json").read_text())
    assert run_cfg["data"]["template_chance"] > 0  # the shipped configs train with templates
    assert zs["templates"] == run_cfg["data"]["templates"] == zs["training_templates"]
    assert set(zs["bare_names"]) == {"top1", "top5", "macro"}
    assert sorted(zs["class_names"]) == sorted(e.label for e in tiny_dataset[1][:4])
    report = (out / "report.md").read_text()
    assert "| bare class names |" in report and "## Class names" in report
    assert "bare names top-1" in capsys.readouterr().out
    assert main([*args, "--templates", "bare"]) == 0
    zs = json.loads((out / "results.json").read_text())["zero_shot"]
    assert zs["bare_names"] == zs["fixed_templates"] and zs["template_count"] == 1


@pytest.mark.slow
def test_eval_of_an_imagefolder_skips_and_names_images_no_decoder_reads(
    tiny_run, tiny_dataset, tmp_path, capsys
):
    """A 128-byte DDS file Pillow recognises and cannot decode (NotImplementedError) and a truncated
    JPEG: `eval --imagefolder` scores the other images and says which it skipped, in one line."""
    write_folder(tmp_path / "ev", tiny_dataset[1][:3], per_class=2)
    first = sorted((tmp_path / "ev").iterdir())[0]
    dds = bytearray(128)
    dds[:4], dds[4], dds[76] = b"DDS ", 124, 32  # header and pixel-format sizes; no pixel format flag
    (first / "broken.jpg").write_bytes(bytes(dds))
    (first / "cut.jpg").write_bytes((first / "0.jpg").read_bytes()[:300])
    out = tmp_path / "res"
    args = ["eval", "--workdir", str(tiny_run), "--imagefolder", str(tmp_path / "ev"), "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["images"] == 6 and result["zero_shot"]["images"] == 6
    assert sorted(x.split("/")[-1].split(" ")[0] for x in result["unreadable"]) == ["broken.jpg", "cut.jpg"]
    assert "2 image(s) of the set cannot be decoded and were not scored" in (out / "report.md").read_text()
    err = [x for x in capsys.readouterr().err.splitlines() if "cannot be decoded" in x]
    assert len(err) == 1 and "2 image(s) cannot be decoded and were skipped, 6 scored" in err[0]
    assert f"{first.name}/broken.jpg (decode_error)" in err[0] and f"{first.name}/cut.jpg" in err[0]


def test_the_heldout_split_is_streamed_and_scores_as_the_whole_split_in_memory(
    tiny_dataset, tmp_path, capsys
):
    """The held-out set reads each record's entities and alt texts in one pass and each image again
    when its batch is embedded: the same classes, right answers, texts and pixels as the split read
    whole into memory, and the same embeddings batch by batch. An image no decoder reads is skipped
    and named by its record's key, as for any set."""
    from concurrent.futures import ThreadPoolExecutor

    from entitynet import shards
    from entitynet.images.decode import decode
    from entitynet.records import encode_image
    from train.input_pipeline import centre_crop, normalise

    data_dir, entities = tiny_dataset[0], {e.id: e for e in tiny_dataset[1]}
    recs = held_records(data_dir)
    data = eval_data.heldout(str(data_dir), "validation", entities)
    ids = sorted({e for r in recs for e in r.entity_ids if e in entities})
    want = np.array([[e in r.entity_ids for e in ids] for r in recs])
    assert data.size == len(recs) and [c[0] for c in data.classes] == [entities[e].label for e in ids]
    assert np.array_equal(data.correct.dense(), want) and np.array_equal(data.labels, want.argmax(axis=1))
    assert data.counting == "linked" and np.array_equal(data.exact.dense(), want)  # one entity each
    assert data.texts == [t for r in recs for t in r.alt_texts]
    assert list(data.text_image) == [n for n, r in enumerate(recs) for _ in r.alt_texts]
    assert [data.ref(i) for i in (0, 5)] == [recs[0].key, recs[5].key]
    with ThreadPoolExecutor(2) as pool:
        got = eval_data.pixels(data, range(data.size), 32, pool)
    assert np.array_equal(got, np.stack([normalise(centre_crop(decode(r.jpeg), 32)) for r in recs]))

    def encode(x):
        return x.reshape(len(x), -1)[:, :7] * 2

    emb = eval_data.image_embeddings(data, encode, 32, batch=8)  # 5 batches, the last one padded
    assert np.array_equal(emb, encode(got))

    # one record whose image cannot be decoded: skipped, named by its key
    broken = tmp_path / "broken"
    broken.mkdir()
    shards.write_shard(
        broken / shards.shard_filename("test", 0, 1),
        (encode_image(r) for r in [*recs[:3], replace(recs[3], jpeg=b"not a jpeg"), *recs[4:6]]),
    )
    shards.write_metadata(broken, {"test": [6]}, {})
    data = eval_data.heldout(str(broken), "test", entities)
    emb = eval_data.image_embeddings(data, encode, 32, batch=4)
    assert emb.shape == (5, 7) and data.size == 5 and data.unreadable[0].startswith(recs[3].key)
    assert len(data.exact) == len(data.correct) == 5
    assert recs[3].key in capsys.readouterr().err
    assert data.texts == [t for r in [*recs[:3], *recs[4:6]] for t in r.alt_texts]
    with pytest.raises(ConfigError, match="no 'validation' split to evaluate on"):
        eval_data.heldout(str(broken), "validation", entities)


def test_scoring_in_chunks_is_scoring_at_once():
    """Zero-shot scoring a chunk of images at a time (right answers as class indices, not rows over
    the classes) and retrieval in blocks of a few images gives what one pass over every image gives:
    the same metrics, confused pairs and per-image top-5, for any chunk size."""
    rng = np.random.default_rng(3)
    img = rng.normal(size=(203, 16)).astype(np.float32)
    cls = rng.normal(size=(9, 16)).astype(np.float32)
    dense = rng.random((203, 9)) > 0.8
    dense[:, 4] |= rng.random(203) > 0.5
    dense[:7] = False  # unlabelled images: left out
    answers = eval_data.Answers.from_dense(dense)
    labels = answers.first()
    assert np.array_equal(labels, np.where(dense.any(axis=1), dense.argmax(axis=1), -1))
    logits = img @ cls.T
    top = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    kept = labels >= 0
    hit1 = dense[np.arange(203), top[:, 0]]
    want_top1 = float(hit1[kept].mean())
    for chunk in (2048, 203, 196, 50, 17):
        seen = []
        got = classify(img, cls, labels, answers, chunk=chunk, each=lambda *a, seen=seen: seen.append(a))
        assert got == classify(img, cls, labels, dense, chunk=chunk)
        assert got["top1"] == want_top1
        rows = np.concatenate([s[0] for s in seen])
        assert np.array_equal(rows, np.flatnonzero(kept))
        assert np.array_equal(np.concatenate([s[1] for s in seen]), top[kept])
        assert np.array_equal(np.concatenate([s[2] for s in seen]), np.take_along_axis(logits, top, 1)[kept])
        assert np.array_equal(np.concatenate([s[3] for s in seen]), hit1[kept])
        if chunk == 2048:
            whole = got
        assert got == whole
    txt = rng.normal(size=(311, 16)).astype(np.float32)
    owner = rng.integers(0, 203, 311)
    whole = retrieval(img, txt, owner)
    for block in (311 * 16, 311 * 40, 311 * 203):
        assert retrieval(img, txt, owner, block=block) == whole


def test_right_answers_and_texts_are_compact_and_read_as_before():
    answers = eval_data.Answers.from_pairs(np.array([2, 0, 2, 2, 0]), np.array([5, 1, 0, 5, 3]), 4, 6)
    assert [list(answers[i]) for i in range(4)] == [[1, 3], [], [0, 5], []]  # a pair given twice: once
    assert list(answers.first()) == [1, -1, 0, -1] and answers.indices.dtype == np.int32
    assert [list(answers[np.array([2, 0])][i]) for i in range(2)] == [[0, 5], [1, 3]]
    assert answers.dense(np.array([2])).tolist() == [[True, False, False, False, False, True]]
    texts = eval_data.Texts(["a fox", "", "Füchse im Schnee"])
    texts.extend(["last"])
    assert texts == ["a fox", "", "Füchse im Schnee", "last"] and texts != ["a fox"]
    assert len(texts) == 4 and texts[2] == "Füchse im Schnee" and texts[-1] == "last"
    assert texts[1:3] == ["", "Füchse im Schnee"] and list(texts) == texts[:]
    with pytest.raises(IndexError):
        texts[4]


def test_examples_are_chosen_from_predictions_read_back_as_they_were_from_a_list():
    """Predictions spilled to a file and read back twice choose the same examples as the whole list
    in memory did (per class its misclassified images first; one image per confused pair unless
    one is chosen already), also when two classes share a display name."""
    from train.evaluate import Predictions, choose_examples

    def reference(predictions, confused, per_class):  # the choice over the list, as it was
        by_class: dict = {}
        for p in predictions:
            by_class.setdefault(p["label"], []).append(p)
        chosen = set()
        for rows in by_class.values():
            chosen.update(p["i"] for p in sorted(rows, key=lambda p: (p["right"], p["i"]))[:per_class])
        for a, b, _ in confused:
            taken = [p["i"] for p in by_class.get(a, []) if not p["right"] and p["top5"][0][0] == b]
            if taken and not chosen & set(taken):
                chosen.add(taken[0])
        return sorted(chosen)

    rng = np.random.default_rng(5)
    names = ["lion", "tiger", "lion", "fox", "owl", "ffox"]  # two classes named "lion"
    preds = []
    for i in range(400):
        label, top = rng.integers(0, 6), rng.permutation(6)[:5]
        right = bool(top[0] == label or rng.random() < 0.3)
        preds.append({"i": i, "label": names[label], "right": right, "top5": [[names[c], 0.5] for c in top]})
    confused: dict = {}
    for p in preds:
        if not p["right"]:
            key = (p["label"], p["top5"][0][0])
            confused[key] = confused.get(key, 0) + 1
    pairs = [[a, b, n] for (a, b), n in sorted(confused.items(), key=lambda x: -x[1])]
    pairs.insert(3, pairs[0])  # a pair named twice
    with Predictions() as spilled:
        for p in preds:
            spilled.append(p)
        assert len(spilled) == 400 and list(spilled) == preds
        for per_class in (1, 3, 12, 200):
            want = reference(preds, pairs, per_class)
            assert (
                choose_examples(spilled, pairs, per_class) == want == choose_examples(preds, pairs, per_class)
            )
        path = spilled.path
    assert not __import__("os").path.exists(path)
