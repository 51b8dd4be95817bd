"""The small-data training recipe: augmentation (statistics, arithmetic, no draws when off),
entity-balanced sampling (MetaCLIP's chance, per-epoch statistics, determinism and resume through
the loader), the KG captions' name weights, the moving average (against a reference computed
step by step), and locked-image-tower training (LiT: the locked tower bitwise equal, the rest
trained, the optimizer state only for what trains, eval and export of the result)."""

import json

import numpy as np
import pytest
from conftest import load_cfg

from entitynet.errors import ConfigError


def _picture(h=16, w=16) -> np.ndarray:
    """A colourful picture that no flip, greyscale or posterize leaves as it was."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x * y) % 256], axis=-1).astype(np.uint8)


# ---------------------------------------------------------------- augmentation


def test_augmentation_off_draws_nothing_and_changes_nothing():
    from train.augment import Augment, apply

    im = _picture()
    rng = np.random.default_rng(3)
    out = apply(im, Augment(), rng)
    assert np.array_equal(out, im)
    assert rng.random() == np.random.default_rng(3).random()  # the generator was not advanced


@pytest.mark.parametrize("field", ["flip", "greyscale", "posterize", "jitter", "blur"])
def test_each_augmentation_happens_at_its_chance(field):
    from train.augment import Augment, apply

    im = _picture()
    rng = np.random.default_rng(0)
    n, chance = 2000, 0.3
    changed = sum(not np.array_equal(apply(im, Augment(**{field: chance}), rng), im) for _ in range(n))
    # binomial(2000, 0.3): sd 20.5; 5 sd either way
    assert abs(changed - n * chance) < 5 * (n * chance * (1 - chance)) ** 0.5, changed


def test_flip_mirrors_and_greyscale_equalises_the_channels():
    from train.augment import Augment, apply, greyscale

    im = _picture()
    rng = np.random.default_rng(1)
    outs = [apply(im, Augment(flip=0.5), rng) for _ in range(50)]
    assert all(np.array_equal(o, im) or np.array_equal(o, im[:, ::-1]) for o in outs)
    assert any(np.array_equal(o, im[:, ::-1]) for o in outs) and outs[0].flags["C_CONTIGUOUS"]
    g = greyscale(im)
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])
    luma = np.round(im.astype(np.float64) @ [0.299, 0.587, 0.114])
    assert np.abs(g[..., 0].astype(int) - luma).max() <= 1


def test_colour_jitter_posterize_and_blur_arithmetic(monkeypatch):
    from train import augment

    im = _picture()
    assert np.array_equal(augment.jitter(im, 1.0, 1.0, 1.0), im)
    brighter = augment.jitter(im, 1.3, 1.0, 1.0)
    assert brighter.astype(int).mean() > im.astype(int).mean()
    assert np.array_equal(augment.jitter(im, 1.0, 1.0, 0.0), augment.greyscale(im)) or (
        np.abs(augment.jitter(im, 1.0, 1.0, 0.0).astype(int) - augment.greyscale(im).astype(int)).max() <= 1
    )
    flat = augment.jitter(im, 1.0, 0.0, 1.0)  # no contrast: every pixel the mean grey
    assert flat.std(axis=(0, 1)).max() < 1.0
    p = augment.posterize(im, 3)
    assert set(np.unique(p) % 32) == {0} and np.abs(p.astype(int) - im).max() < 32
    sharp = np.zeros((16, 16, 3), np.uint8)
    sharp[:, 8:] = 255
    soft = augment.blur(sharp, 1.0)
    assert 0 < soft[0, 7, 0] < 255 and soft[0, 0, 0] == 0 and soft[0, 15, 0] == 255
    monkeypatch.setattr(augment, "opencv", lambda: None)  # Pillow's blur where OpenCV is missing
    pillow = augment.blur(sharp, 1.0)
    assert np.abs(pillow.astype(int) - soft.astype(int)).max() <= 24


# ---------------------------------------------------------------- entity balance


def test_keep_chance_is_metaclips():
    from train.balance import Balancer, median_cap

    b = Balancer({"head": 200, "mid": 20, "tail": 5}, cap=20)
    assert b.keep_chance(["tail"]) == 1.0 and b.keep_chance(["mid"]) == 1.0
    assert b.keep_chance(["head"]) == pytest.approx(0.1)
    assert b.keep_chance(["head", "head2"]) == pytest.approx(0.1)  # an uncounted link changes nothing
    assert b.keep_chance([]) == 1.0  # unlinked records stay
    two = Balancer({"a": 100, "b": 50}, cap=10)
    assert two.keep_chance(["a", "b"]) == pytest.approx(1 - 0.9 * 0.8)
    assert median_cap({"a": 1, "b": 7, "c": 100}) == 7 and Balancer({"a": 1, "b": 7, "c": 100}).cap == 7
    with pytest.raises(ConfigError, match="no entity counts"):
        Balancer({})


class _Rec:
    def __init__(self, entity):
        self.entity_ids = (entity,)


def test_balanced_epochs_see_each_entity_about_cap_times_and_all_of_the_head_over_epochs():
    import grain

    from train.balance import Balancer
    from train.input_pipeline import Balance

    counts = {"head": 400, "mid": 40, "tail": 8}
    recs = [_Rec(e) for e, n in counts.items() for _ in range(n)]
    ids = list(range(len(recs)))

    def stream(seed):
        ds = grain.MapDataset.source(ids).seed(seed).shuffle().repeat(None)
        ds = ds.map(lambda i: (i, recs[i])).random_map(_Keep(Balancer(counts, cap=40)), seed=seed)
        return iter(ds.to_iter_dataset())

    class _Keep(grain.transforms.RandomMap):
        def __init__(self, balancer):
            self.inner = Balance(balancer)

        def random_map(self, item, rng):
            return item if self.inner.random_map(item[1], rng) is not None else None

    epochs = 20
    it = stream(0)
    seen: dict[str, int] = {e: 0 for e in counts}
    head_images = set()
    expected_total = epochs * (40 + 40 + 8)
    for _ in range(expected_total):
        i, r = next(it)
        seen[r.entity_ids[0]] += 1
        if r.entity_ids[0] == "head":
            head_images.add(i)
    per_epoch = {e: n / epochs for e, n in seen.items()}
    assert 32 < per_epoch["head"] < 48 and 32 < per_epoch["mid"] < 48 and 6 < per_epoch["tail"] < 10, (
        per_epoch
    )
    assert len(head_images) > 300  # fresh draws each epoch: most of the head's 400 images used
    # deterministic, and a restored iterator continues the same stream
    a, b = stream(0), stream(0)
    assert [next(a)[0] for _ in range(50)] == [next(b)[0] for _ in range(50)]
    state = a.get_state()
    ahead = [next(a)[0] for _ in range(30)]
    c = stream(0)
    c.set_state(state)
    assert [next(c)[0] for _ in range(30)] == ahead


def test_entity_counts_come_from_a_curation_or_a_pass_over_the_shards(tiny_dataset, tmp_path):
    from entitynet import shards
    from train.balance import entity_counts

    data_dir, entities, recs, _ = tiny_dataset
    truth: dict[str, int] = {}
    for r in shards.iter_records(data_dir, "train"):
        for e in r.entity_ids:
            truth[e] = truth.get(e, 0) + 1
    assert entity_counts(str(data_dir)) == truth and len(truth) == 12
    curated = tmp_path / "curated"
    curated.mkdir()
    (curated / shards.ENTRY_COUNTS).write_text("entity\tlabel\tbefore\tafter\nQ1\tfox\t9\t4\nQ2\tcat\t3\t0\n")
    assert entity_counts(str(curated)) == {"Q1": 4}
    (curated / shards.ENTRY_COUNTS).write_text("entity\tlabel\tbefore\tafter\nQ1\tfox\t9\tmany\n")
    with pytest.raises(ConfigError, match="not a count.*re-run `entitynet curate`"):
        entity_counts(str(curated))


def test_the_balanced_loader_is_deterministic_resumes_exactly_and_drops_the_head(tiny_dataset, tmp_path):
    """Through make_dataset: a curation's counts that make one entity the head; the loader keeps
    its records a fifth of the time, gives the same batches for a seed, and resumes from a saved
    state to the same next batches."""
    import shutil

    from entitynet import shards
    from entitynet.text import tokenizer as tokenizers
    from train.input_pipeline import InputConfig, make_dataset

    src, entities, recs, _ = tiny_dataset
    data_dir = tmp_path / "data"
    shutil.copytree(src, data_dir)
    head = entities[0].id
    rows = "".join(f"{e.id}\t{e.label}\t45\t{45 if e.id == head else 9}\n" for e in entities)
    (data_dir / shards.ENTRY_COUNTS).write_text("entity\tlabel\tbefore\tafter\n" + rows)
    tok = tokenizers.load(data_dir)
    cfg = InputConfig(
        shards=str(data_dir), batch_size=8, image_size=32, context_length=16, seed=2, balance="entity"
    )
    a, b = iter(make_dataset(cfg, entities, tok)), iter(make_dataset(cfg, entities, tok))
    for _ in range(3):
        x, y = next(a), next(b)
        assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["tokens"], y["tokens"])
    state = a.get_state()
    ahead = [next(a) for _ in range(3)]
    c = iter(make_dataset(cfg, entities, tok))
    c.set_state(state)
    for want in ahead:
        got = next(c)
        assert np.array_equal(got["image"], want["image"]) and np.array_equal(got["tokens"], want["tokens"])
    # which records pass: the head's a fifth of the time (cap 9 of 45), the others always
    from train.balance import Balancer

    bal = Balancer({e.id: (45 if e.id == head else 9) for e in entities})
    assert bal.cap == 9 and bal.keep_chance([head]) == pytest.approx(0.2)


# ---------------------------------------------------------------- names in KG captions


def test_caption_weights_move_the_names_distribution(sample_entities):
    from configs.common import base
    from entitynet.text.captions import CaptionWeights
    from train.input_pipeline import TextChooser
    from train.train import caption_weights_of

    e = next(x for x in sample_entities if len(x.synonyms()) >= 3)

    def label_share(weights):
        c = TextChooser(list(sample_entities), 0.0, weights=weights).candidates(e.id)
        return sum(x.weight for x in c if x.text.casefold() == e.label.casefold())

    cfg = base()
    assert caption_weights_of(cfg) == CaptionWeights()  # the config's defaults are the reference's
    cfg.data.caption_weights.noun_query = 0.1
    fewer = caption_weights_of(cfg)
    assert fewer.noun_query == 0.1 and label_share(fewer) < label_share(CaptionWeights()) - 0.1
    chooser = TextChooser(list(sample_entities), 0.0, weights=fewer)
    rng = np.random.default_rng(0)
    names = {c.casefold() for c in e.synonyms()}
    drawn = {chooser.choose(_Linked(e.id), rng)[0].casefold() for _ in range(400)}
    assert len(drawn & names) >= 3  # many names across draws, one per draw


class _Linked:
    def __init__(self, entity_id):
        self.entity_ids, self.alt_texts = (entity_id,), ()


# ---------------------------------------------------------------- the moving average


def test_ema_follows_its_formula_step_by_step(tiny_dataset, jax_cache):
    """The jitted step's EMA against a reference kept in NumPy from the weights after every step:
    e_0 = w_0, e_t = d_t e_(t-1) + (1 - d_t) w_t with d_t = min(decay, (1 + t) / (10 + t))."""
    import jax
    from flax import nnx

    from entitynet.text import tokenizer as tokenizers
    from train import sharding
    from train.train import create_state, make_optimizer, make_steps, model_config, unpack

    data_dir = tiny_dataset[0]
    cfg = load_cfg(data_dir, ema_decay=0.6)
    tok = tokenizers.load(data_dir)
    mcfg = model_config(cfg, tok)
    texts = [r.alt_texts[0] for r in tiny_dataset[2][:16]]
    tx, _ = make_optimizer(cfg)
    mesh = sharding.make_mesh({"data": -1})
    graphdef, state = create_state(mcfg, tx, mesh, 0, ema=True)
    step, _ = make_steps(graphdef, state, mesh, "clip", ema_decay=0.6)

    def weights(s, which):
        parts = unpack(graphdef, s)
        return jax.tree.map(np.asarray, nnx.state(parts[which], nnx.Param))

    ref = weights(state, 0)
    assert jax.tree.all(jax.tree.map(np.array_equal, ref, weights(state, 2)))  # e_0 = w_0
    rng = np.random.default_rng(0)
    with jax.set_mesh(mesh):
        for t in range(1, 5):
            batch = {
                "image": rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
                "tokens": tokenizers.encode(tok, texts[t:] + texts[:t], 16),
            }
            state, _ = step(state, sharding.global_batch(mesh, batch))
            d = min(0.6, (1 + t) / (10 + t))
            ref = jax.tree.map(lambda e, w, d=d: d * e + (1 - d) * w, ref, weights(state, 0))
    got = weights(state, 2)
    assert jax.tree.all(jax.tree.map(lambda a, b: np.allclose(a, b, rtol=1e-5, atol=1e-6), got, ref))
    raw = weights(state, 0)
    assert not jax.tree.all(jax.tree.map(np.array_equal, got, raw))  # the average is not the weights


# ---------------------------------------------------------------- LiT


@pytest.mark.slow
def test_lit_keeps_the_locked_tower_bitwise_and_trains_the_rest(tiny_run, tiny_dataset, tmp_path, capsys):
    """init_from an export, image tower locked but its last group (proj): after training, the locked
    parameters equal the export's bit for bit in the raw weights, the EMA and a new export; the
    text tower and proj moved; the optimizer holds state only for what trains; eval reports the
    EMA by default and the trained weights with --weights raw."""
    import jax
    from flax import nnx
    from safetensors.numpy import load_file

    from entitynet.text import tokenizer as tokenizers
    from entitynet_cli.main import main
    from train import sharding
    from train.export import export_open_clip, load_run
    from train.open_clip_weights import to_open_clip
    from train.train import create_state, make_optimizer, model_config, train, trainable_of, unpack

    pretrained = tmp_path / "pretrained"
    export_open_clip(tiny_run, pretrained)
    before = load_file(str(pretrained / "open_clip_model.safetensors"))
    data_dir = tiny_dataset[0]
    lit = {
        "init_from": str(pretrained),
        "init_towers": "image",
        "model.lock_image": "True",
        "model.unlocked_groups": "1",
        "ema_decay": "0.5",
    }
    with pytest.raises(ConfigError, match="init_from"):
        train(load_cfg(data_dir, total_steps=1, **{"model.lock_image": "True"}), tmp_path / "no-tower")
    with pytest.raises(ConfigError, match="unlocked_groups=9.*0..5"):
        train(load_cfg(data_dir, total_steps=1, **{**lit, "model.unlocked_groups": "9"}), tmp_path / "bad")
    workdir = tmp_path / "lit"
    result = train(load_cfg(data_dir, total_steps=3, **lit), workdir)
    assert 0 < result["trained_params"] < result["params"]
    for weights in ("raw", "ema"):
        after = to_open_clip(load_run(workdir, weights)[0], logit_bias=False)
        visual = [k for k in after if k.startswith("visual.")]
        locked = [k for k in visual if k != "visual.proj"]
        assert len(locked) > 10 and all(np.array_equal(after[k], before[k]) for k in locked), weights
        assert not np.array_equal(after["visual.proj"], before["visual.proj"])
    raw = to_open_clip(load_run(workdir, "raw")[0], logit_bias=False)
    assert not np.array_equal(raw["token_embedding.weight"], before["token_embedding.weight"])
    # optimizer state: only the text tower, proj and the temperature
    cfg = load_cfg(data_dir, **lit)
    mcfg = model_config(cfg, tokenizers.load(data_dir))
    graphdef, state = create_state(
        mcfg, make_optimizer(cfg)[0], sharding.make_mesh({"data": -1}), 0, trainable_of(cfg, mcfg), ema=True
    )
    opt = unpack(graphdef, state)[1]
    paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(opt))}
    assert any("text" in p or "token_embedding" in p for p in paths) and any(
        "visual.proj" in p for p in paths
    )
    assert not any("visual.transformer" in p or "visual.conv1" in p for p in paths)
    # the export carries the frozen tower
    export_open_clip(workdir, tmp_path / "lit-export")
    card = (tmp_path / "lit-export" / "README.md").read_text()
    assert "locked (LiT)" in card and "its last 1 group(s) trained" in card and "moving average" in card
    exported = load_file(str(tmp_path / "lit-export" / "open_clip_model.safetensors"))
    assert all(
        np.array_equal(exported[k], before[k])
        for k in before
        if k.startswith("visual.") and k != "visual.proj"
    )
    # eval: the EMA by default, the trained weights beside it with --weights raw
    folder = tmp_path / "folder"
    _, entities, recs, _ = tiny_dataset
    for e in entities[:4]:
        (folder / e.id).mkdir(parents=True)
        for i, r in enumerate([r for r in recs if r.entity_ids == (e.id,)][:2]):
            (folder / e.id / f"{i}.jpg").write_bytes(r.jpeg)
    argv = ["eval", "--workdir", str(workdir), "--imagefolder", str(folder), "--templates", "bare"]
    assert main(argv) == 0 and main([*argv, "--weights", "raw"]) == 0
    runs = sorted((workdir / "eval").iterdir())
    assert [json.loads((d / "results.json").read_text())["weights"] for d in runs] == ["ema", "raw"]
    assert runs[1].name == runs[0].name + "-raw"
    del jax


def test_recipe_config_values_are_checked():
    from train import config as config_lib

    good = config_lib.load("configs/small_data.py")
    config_lib.check(good)
    assert good.data.balance == "entity" and good.ema_decay > 0 and good.data.augment.flip > 0
    for item, words in [
        ("data.balance=metaclip", "data.balance='metaclip'"),
        ("data.augment.flip=1.5", "data.augment.flip=1.5: must be within 0.0..1.0"),
        ("ema_decay=1.0", "ema_decay=1.0"),
        ("init_towers=text", "init_towers='text'"),
        ("data.augment.blur_sigma=(2.0,1.0)", "blur_sigma"),
    ]:
        cfg = config_lib.load("configs/small_data.py", [f"--config.{item}"])
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(".", r"\.")):
            config_lib.check(cfg)


@pytest.mark.slow
def test_a_workdir_is_not_resumed_with_another_state_layout(tiny_dataset, jax_cache, tmp_path):
    """Turning the EMA (or a locked tower) on or off between runs of one workdir changes what the
    checkpoint holds: one line naming it, before Orbax meets a tree it cannot restore."""
    from train.train import StaleCheckpoint, summary, train

    data_dir = tiny_dataset[0]
    train(load_cfg(data_dir, total_steps=1, **{"checkpoint.every_steps": "1"}), tmp_path / "plain")
    with pytest.raises(StaleCheckpoint, match="state: checkpoint None vs now 'ema'"):
        train(load_cfg(data_dir, total_steps=2, ema_decay=0.9), tmp_path / "plain")
    train(
        load_cfg(data_dir, total_steps=1, ema_decay=0.9, **{"checkpoint.every_steps": "1"}), tmp_path / "ema"
    )
    with pytest.raises(StaleCheckpoint, match="state: checkpoint 'ema' vs now None"):
        train(load_cfg(data_dir, total_steps=2), tmp_path / "ema")
    result = train(load_cfg(data_dir, total_steps=2, ema_decay=0.9), tmp_path / "ema")  # same layout: resumes
    assert result["last_step"] == 2 and min(result["history"]) == 2
    again = summary(train(load_cfg(data_dir, total_steps=2, ema_decay=0.9), tmp_path / "ema"), "W")
    assert again.startswith("already trained to step 2") and "nan" not in again  # nothing ran
