"""How evaluation counts a prediction right, said where the numbers are (summary, results.json,
report.md), exact-entity accuracy beside the linked-entity one on the held-out split, and the
choices the report's plots make (colours by accuracy, visible 0% bars, integer count axes)."""

from __future__ import annotations

import numpy as np
import pytest
from factories import rendered

from entitynet import shards
from entitynet.records import Entity, encode_image
from train import eval_data, report
from train.evaluate import classify, counting, summary

# felid sorts before lion: the label of an image linked to both was felid (the first class) before
CARNIVORE = Entity(id="Q50", label="carnivore")
FELID = Entity(id="Q100", label="felid", parents=("Q50",), lineage_ids=("Q50",))
LION = Entity(id="Q200", label="lion", parents=("Q100",), lineage_ids=("Q100", "Q50"))
ZEBRA = Entity(id="Q300", label="zebra", parents=("Q50",), lineage_ids=("Q50",))
GRAPH = {e.id: e for e in (CARNIVORE, FELID, LION, ZEBRA)}
FEL, LIO, ZEB = 0, 1, 2  # the classes of the set: its linked entities, by id

# (linked entities, predicted class, right counting any linked entity, right counting exactly)
CASES = [
    (("Q100", "Q200"), FEL, True, False),  # a lion (linked to felid too) taken for felid
    (("Q200",), LIO, True, True),
    (("Q100", "Q200"), LIO, True, True),
    (("Q300",), FEL, False, False),  # a zebra taken for felid: wrong either way
    (("Q100",), FEL, True, True),  # an image of a felid, no more specific: felid is exact
    (("Q200", "Q300"), ZEB, True, True),  # lion and zebra in one picture: both are most specific
]


def test_ancestors_and_the_most_specific_of_an_images_entities():
    above = eval_data.Ancestors(GRAPH)
    assert above("Q200") == {"Q100", "Q50"} and above("Q50") == frozenset() and above("Q999") == frozenset()
    assert eval_data.most_specific(["Q100", "Q200"], above) == ["Q200"]
    assert eval_data.most_specific(["Q200", "Q300"], above) == ["Q200", "Q300"]
    assert eval_data.most_specific(["Q50", "Q100", "Q300"], above) == ["Q100", "Q300"]
    assert eval_data.most_specific(["Q100"], above) == ["Q100"] and eval_data.most_specific([], above) == []
    # parents beyond the lineage count too (a second parent), and a cycle leaves every entity
    two = {**GRAPH, "Q400": Entity(id="Q400", label="liger", parents=("Q200", "Q300"), lineage_ids=("Q200",))}
    assert eval_data.Ancestors(two)("Q400") == {"Q200", "Q100", "Q50", "Q300"}
    loop = {
        "Q1": Entity(id="Q1", label="a", parents=("Q2",)),
        "Q2": Entity(id="Q2", label="b", parents=("Q1",)),
    }
    assert eval_data.most_specific(["Q1", "Q2"], eval_data.Ancestors(loop)) == ["Q1", "Q2"]


def heldout_set(tmp_path):
    """The held-out split of shards whose images are linked as CASES say."""
    recs = [rendered(LION, k, entity_ids=ids) for k, (ids, *_) in enumerate(CASES)]
    shards.write_shard(tmp_path / shards.shard_filename("test", 0, 1), (encode_image(r) for r in recs))
    shards.write_metadata(tmp_path, {"test": [len(recs)]}, {})
    return eval_data.heldout(str(tmp_path), "test", GRAPH)


def test_heldout_counts_any_linked_entity_and_exact_entity_accuracy_beside_it(tmp_path):
    data = heldout_set(tmp_path)
    assert [c[0] for c in data.classes] == ["felid", "lion", "zebra"] and data.counting == "linked"
    assert [list(data.correct[i]) for i in range(6)] == [[0, 1], [1], [0, 1], [2], [0], [1, 2]]
    assert [list(data.exact[i]) for i in range(6)] == [[1], [1], [1], [2], [0], [1, 2]]
    assert list(data.labels) == [LIO, LIO, LIO, ZEB, FEL, LIO]  # grouped by the most specific entity

    predicted = np.array([p for _, p, *_ in CASES])
    images = np.eye(3, dtype=np.float32)[predicted] + 0.01  # each image's top-1: its predicted class
    flags = []
    got = classify(
        images,
        np.eye(3, dtype=np.float32),
        data.labels,
        data.correct,
        exact=data.exact,
        each=lambda rows, top, scores, right, exact: flags.append((right, exact)),
    )
    linked, exact = [r for *_, r, _ in CASES], [e for *_, e in CASES]
    assert got["top1"] == pytest.approx(5 / 6) and got["exact"]["top1"] == pytest.approx(4 / 6)
    assert got["top1"] == np.mean(linked) and got["exact"]["top1"] == np.mean(exact)
    assert got["per_class"] == [1.0, 1.0, 0.0]  # felid 1/1, lion 4/4, zebra 0/1
    assert got["exact"]["macro"] == pytest.approx((1.0 + 0.75 + 0.0) / 3)
    assert got["confused"] == [[ZEB, FEL, 1]]  # the lion taken for felid is not "confused"
    ((right, exactly),) = flags
    assert right.tolist() == linked and exactly.tolist() == exact
    # without the exact answers: no exact block, and the callback is told so
    plain = classify(
        images, np.eye(3, dtype=np.float32), data.labels, data.correct, each=lambda *a: flags.append(a[4])
    )
    assert "exact" not in plain and flags[-1] is None and plain["top1"] == got["top1"]

    # images dropped (unreadable) take their exact answers with them
    eval_data.drop_images(data, np.array([0, 3]))
    assert [list(data.exact[i]) for i in range(2)] == [[1], [2]] and list(data.labels) == [LIO, ZEB]


def zero_shot_result(rule: str, fixed: dict, bare: dict, name: str) -> dict:
    keep = ("top1", "top5", "macro")
    return {
        "workdir": "runs/tiny",
        "eval_set": name,
        "images": 6,
        "report": "runs/tiny/eval/x/report.md",
        "step": 3,
        "zero_shot": {
            "classes": 3,
            "images": 6,
            "chance_top1": 1 / 3,
            "templates": "photo",
            "template_count": 8,
            "names": "one name per class",
            "fixed_templates": {k: fixed[k] for k in keep},
            "bare_names": {k: bare[k] for k in keep},
            "best_single_template": {"template": "a photo of {c}.", **{k: fixed[k] for k in keep}},
            "per_class": {"felid": 1.0, "lion": 1.0, "zebra": 0.0},
            "confused": [["zebra", "felid", 1]],
            **counting(rule, fixed, bare),
        },
    }


def test_the_counting_rule_is_said_in_the_summary_results_and_report(tmp_path):
    fixed = {"top1": 5 / 6, "top5": 1.0, "macro": 2 / 3, "exact": {"top1": 4 / 6, "top5": 1.0, "macro": 0.58}}
    bare = {"top1": 0.5, "top5": 1.0, "macro": 0.5, "exact": {"top1": 1 / 3, "top5": 5 / 6, "macro": 0.4}}
    held = zero_shot_result("linked", fixed, bare, "heldout:test")
    zs = held["zero_shot"]
    assert zs["counting"] == "linked" and zs["counting_rule"] == eval_data.COUNTING["linked"]
    assert "ancestors included" in zs["counting_rule"]
    assert zs["exact"] == {
        "rule": eval_data.EXACT_RULE,
        "fixed_templates": fixed["exact"],
        "bare_names": bare["exact"],
    }
    lines = summary([held])
    assert lines[1] == (
        "  counted right when the prediction is any entity the image is linked to, ancestors included "
        "(felid for a lion image linked to both lion and felid); exact-entity top-1 66.67% / top-5 "
        "100.00% (right only when it is the image's most specific linked entity)"
    )
    assert "top-1 83.33%" in lines[0] and lines[2].startswith("  report: ")

    folder = zero_shot_result("label", {k: v for k, v in fixed.items() if k != "exact"}, bare, "evalset")
    assert "exact" not in folder["zero_shot"] and folder["zero_shot"]["counting"] == "label"
    lines = summary([folder])
    assert lines[1] == (
        "  counted right only when the prediction is exactly the image's labelled class "
        "(a broader class, e.g. felid for a lion image, is wrong)"
    )

    held["workdir"] = folder["workdir"] = str(tmp_path / "no-run")  # no metrics: no curves
    md = report.write_report(held, tmp_path / "held").read_text()
    assert "**Counting:** Right when the prediction is any entity the image is linked to" in md
    assert "Exact entity: right only when the prediction is the image's most specific" in md
    assert "| exact entity, fixed set: photo | 66.67% | 100.00% | 58.00% |" in md
    assert "| exact entity, bare class names | 33.33% | 83.33% | 40.00% |" in md
    md = report.write_report(folder, tmp_path / "folder").read_text()
    assert "**Counting:** Right only when the prediction is exactly the image's labelled class" in md
    assert "exact entity" not in md
    # a comparison says each rule once and adds exact-entity top-1 where a run has it
    cmp = report.write_comparison([held, folder], ["held", "folder"], tmp_path / "cmp").read_text()
    assert cmp.count("**Counting:**") == 2 and "exact-entity top-1 |" in cmp
    rows = {
        line.split("|")[1].strip(): line
        for line in cmp.splitlines()
        if line.startswith("| held") or line.startswith("| folder")
    }
    assert rows["held"].rstrip(" |").endswith("66.67%") and rows["folder"].rstrip(" |").endswith("-")


def test_per_class_bars_are_coloured_by_accuracy_and_zero_is_visible():
    two = report.per_class_bars({"lion": 1.0, "tiger": 1.0})
    assert [(c, a) for c, a, _, _ in two["bars"]] == [("lion", 1.0), ("tiger", 1.0)]
    assert {colour for *_, colour in two["bars"]} == {report.HIGH}  # 100% is never "worst" red
    assert (
        "worst" not in two["title"] and "lowest" not in two["title"] and "both classes shown" in two["title"]
    )
    assert two["gap"] is None

    acc = {f"class {i:02d}": (0.0 if i < 5 else round(i / 30, 2)) for i in range(30)}
    many = report.per_class_bars(acc, n=12)
    bars = many["bars"]
    assert len(bars) == 24 and many["gap"] == 12 and many["hidden"] == 6
    assert "the 12 lowest and 12 highest of 30 classes" in many["title"]
    zeros = [b for b in bars if b[1] == 0.0]
    assert len(zeros) == 5 and all(w == report.MIN_BAR > 0 and c == report.LOW for _, _, w, c in zeros)
    assert all(w == a for _, a, w, _ in bars if a > 0)  # other bars: exactly their accuracy
    # the scale is fixed and monotonic: more accurate is bluer, less red
    reds = [int(c[1:3], 16) for *_, c in bars]
    blues = [int(c[5:7], 16) for *_, c in bars]
    assert reds == sorted(reds, reverse=True) and blues == sorted(blues)
    assert report.accuracy_colour(0.5) == report.MIDDLE and report.accuracy_colour(1.0) == report.HIGH

    same = report.per_class_bars({f"c{i}": 1.0 for i in range(30)})
    assert "lowest" not in same["title"] and "all at 100%" in same["title"]
    unscored = report.per_class_bars({"lion": 0.0, "felid": None, "fox": 1.0})
    assert [c for c, *_ in unscored["bars"]] == ["lion", "fox"] and "1 class with no image" in unscored[
        "title"
    ]


def test_the_plots_draw_what_their_helpers_chose_on_integer_count_axes(tmp_path):
    from matplotlib.colors import to_hex

    plt = report.pyplot()
    acc = {"lion": 0.0, "tiger": 0.5, "fox": 1.0}
    fig = report.per_class_figure(acc)
    ax = fig.axes[0]
    want = report.per_class_bars(acc)["bars"]
    assert [p.get_width() for p in ax.patches] == [w for _, _, w, _ in want]
    assert [to_hex(p.get_facecolor()) for p in ax.patches] == [c for *_, c in want]
    assert ax.patches[0].get_width() > 0 and "0%" in [t.get_text() for t in ax.texts]
    assert ax.get_title() == report.per_class_bars(acc)["title"]
    plt.close(fig)

    for counts in ([3, 2, 1], [1], [7, 5, 5, 2]):
        fig = report.confused_figure([[f"a{i}", f"b{i}", n] for i, n in enumerate(counts)])
        fig.canvas.draw()
        ticks = fig.axes[0].get_xticks()
        lo, hi = fig.axes[0].get_xlim()
        shown = [t for t in ticks if lo <= t <= hi]
        assert len(shown) >= 2 and all(float(t).is_integer() for t in shown), (counts, ticks)
        plt.close(fig)
    assert report.plot_confused([["a", "b", 2]], tmp_path / "c.png") and (tmp_path / "c.png").stat().st_size
    assert not report.plot_confused([], tmp_path / "none.png")
