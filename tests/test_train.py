"""Training: losses against their formulas, the input pipeline's determinism and text sampling,
the same losses on 1 device and an 8-device mesh, bitwise resume after SIGKILL, restore onto
another mesh, a clear error for changed data-loader settings, and the tiny model overfitting."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import ROOT, load_cfg, tiny_overrides
from factories import record

from entitynet.errors import ConfigError


def run_train(workdir, data_dir, env_extra=None, wait=True, **extra):
    env = {**os.environ, **(env_extra or {})}
    cmd = [
        sys.executable,
        "-m",
        "train.train",
        "--config",
        str(ROOT / "configs" / "tiny_cpu.py"),
        "--workdir",
        str(workdir),
        *tiny_overrides(data_dir, **extra),
    ]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def losses_of(workdir) -> dict[int, float]:
    out = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        if "loss" in m:
            out[m["step"]] = m["loss"]
    return out


# ---------------------------------------------------------------- losses


@pytest.mark.slow
def test_losses_equal_their_formulas_and_reach_temperature_and_bias():
    import jax.numpy as jnp

    from train import losses

    rng = np.random.default_rng(0)
    zi = rng.normal(size=(6, 8)).astype(np.float32)
    zt = rng.normal(size=(6, 8)).astype(np.float32)
    zi /= np.linalg.norm(zi, axis=1, keepdims=True)
    zt /= np.linalg.norm(zt, axis=1, keepdims=True)
    t, b = 2.0, -3.0

    logits = np.exp(t) * zi @ zt.T

    def xent(lg):
        lg = lg - lg.max(axis=1, keepdims=True)
        return -np.mean(np.diag(lg) - np.log(np.exp(lg).sum(axis=1)))

    want = (xent(logits) + xent(logits.T)) / 2
    assert float(losses.clip_loss(jnp.asarray(zi), jnp.asarray(zt), t)) == pytest.approx(want, rel=1e-5)
    # the temperature's scale is clamped at 100
    big = losses.clip_loss(jnp.asarray(zi), jnp.asarray(zt), 10.0)
    assert float(big) == pytest.approx(
        float(losses.clip_loss(jnp.asarray(zi), jnp.asarray(zt), np.log(100.0)))
    )
    sig = np.exp(t) * zi @ zt.T + b
    labels = 2 * np.eye(6) - 1
    want_sig = np.mean(np.sum(np.log1p(np.exp(-labels * sig)), axis=1))
    got_sig = losses.siglip_loss(jnp.asarray(zi), jnp.asarray(zt), t, b)
    assert float(got_sig) == pytest.approx(want_sig, rel=1e-5)
    g_t, g_b = jax.grad(lambda t, b: losses.siglip_loss(jnp.asarray(zi), jnp.asarray(zt), t, b), (0, 1))(t, b)
    assert float(g_t) != 0 and float(g_b) != 0
    assert float(jax.grad(lambda t: losses.clip_loss(jnp.asarray(zi), jnp.asarray(zt), t))(t)) != 0


def test_presets_have_open_clip_sizes():
    from flax import nnx

    from train import sharding
    from train.model import CLIP, count_params, preset

    # open_clip ViT-B-32 has 151,277,313 parameters at context 77 (one logit_scale, no bias)
    with jax.set_mesh(sharding.make_mesh({"data": -1})):
        b32 = nnx.eval_shape(lambda: CLIP(preset("B/32", text_context_length=77), rngs=nnx.Rngs(0)))
    assert count_params(b32) - 1 == 151_277_313
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("H/14")


# ---------------------------------------------------------------- input pipeline


def test_input_pipeline_is_deterministic_and_samples_texts_as_asked(tiny_dataset):
    from entitynet.text import tokenizer as tokenizers
    from train.input_pipeline import InputConfig, make_dataset

    data_dir, entities, recs, _ = tiny_dataset
    tok = tokenizers.load(data_dir)

    def batches(seed, n=4, chance=0.5, **kw):
        cfg = InputConfig(
            shards=str(data_dir),
            batch_size=16,
            image_size=32,
            context_length=16,
            seed=seed,
            alt_text_chance=chance,
            **kw,
        )
        it = iter(make_dataset(cfg, entities, tok))
        return [next(it) for _ in range(n)]

    a, b, c = batches(1), batches(1), batches(2)
    assert all(
        np.array_equal(x["image"], y["image"]) and np.array_equal(x["tokens"], y["tokens"])
        for x, y in zip(a, b, strict=True)
    )
    assert not np.array_equal(a[0]["image"], c[0]["image"])
    assert a[0]["image"].shape == (16, 32, 32, 3) and a[0]["tokens"].dtype == np.int32
    # images leave the host as uint8 and are normalised on the device as the host would have
    from PIL import Image

    from train.input_pipeline import normalise, to_model_input

    assert a[0]["image"].dtype == np.uint8
    on_device = np.asarray(jax.jit(to_model_input)(a[0]["image"]))
    on_host = np.stack([normalise(Image.fromarray(x)) for x in a[0]["image"]])
    assert on_device.dtype == np.float32 and np.allclose(on_device, on_host, atol=1e-5)
    for chance in (0.2, 0.8):
        kg = np.concatenate([x["kg_text"] for x in batches(3, n=40, chance=chance)])
        assert abs(kg.mean() - (1 - chance)) < 0.06, (chance, kg.mean())


def _detailed_jpeg(w: int, h: int, exif: bytes | None = None) -> bytes:
    """A JPEG with detail at every scale (noise over gradients), so a coarse decode shows."""
    import io

    from PIL import Image

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], axis=-1)
    a = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=95, **({"exif": exif} if exif else {}))
    return buf.getvalue()


def test_the_training_crop_is_decoded_at_the_crop_scale_not_coarser(monkeypatch):
    """The JPEG is decoded at the smallest DCT scale that still leaves the crop `size` pixels: a
    small crop of a big image is not upsampled from a 1/8 decode (as drafting the whole image to
    the output size did), and a big crop is still decoded reduced. Boxes are in the displayed
    (EXIF-rotated) image."""
    import io

    from PIL import Image, ImageOps

    from train import input_pipeline as ip

    sizes = []
    real_decode = ip.decode

    def spy(im, size=None, **kw):
        out = real_decode(im, size, **kw)
        sizes.append(out.size)
        return out

    monkeypatch.setattr(ip, "decode", spy)
    data = _detailed_jpeg(1024, 768)
    full = Image.open(io.BytesIO(data)).convert("RGB")

    def err(a, b):
        return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())

    small = (100, 50, 200, 200)  # x, y, w, h: 200 px of crop for a 64 px output
    got = ip.decode_crop(data, lambda w, h: small, 64)
    ref = full.resize((64, 64), Image.Resampling.BILINEAR, box=(100, 50, 300, 250))
    assert got.shape == (64, 64, 3) and sizes[-1] == (512, 384)  # 1/2: the crop keeps 100 >= 64 px
    coarse = real_decode(Image.open(io.BytesIO(data)), (64, 64))  # the old draft: the image to 64
    assert coarse.size == (128, 96)
    old = coarse.resize((64, 64), Image.Resampling.BILINEAR, box=(12.5, 6.25, 37.5, 31.25))
    assert err(got, ref) < 0.5 * err(old, ref), (err(got, ref), err(old, ref))
    ip.decode_crop(data, lambda w, h: (0, 0, 1024, 768), 64)
    assert sizes[-1] == (128, 96)  # the whole image to 64 px: 1/8 is enough
    # EXIF orientation 6 (rotated 90 degrees): the box is in the upright image
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _detailed_jpeg(1024, 768, exif.tobytes())
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert upright.size == (768, 1024)
    box = (300, 600, 240, 240)
    got = ip.decode_crop(data, lambda w, h: box if (w, h) == (768, 1024) else None, 64)
    ref = upright.resize((64, 64), Image.Resampling.BILINEAR, box=(300, 600, 540, 840))
    assert err(got, ref) < 6, err(got, ref)


def test_opencv_upsampling_matches_pillows_bilinear(monkeypatch):
    """The fast path (OpenCV, for crops no larger than the output) gives Pillow's bilinear result
    to within rounding of the box to whole pixels; larger crops stay on Pillow (antialiased)."""
    import io

    from PIL import Image

    from train import augment
    from train import input_pipeline as ip

    im = Image.open(io.BytesIO(_detailed_jpeg(320, 256))).convert("RGB")
    box = (40, 30, 200, 190)  # 160 px -> 224: upsampling
    fast = ip.resize_box(im, box, 224)
    slow = np.asarray(im.resize((224, 224), Image.Resampling.BILINEAR, box=box))
    diff = np.abs(fast.astype(int) - slow.astype(int))
    assert fast.shape == slow.shape == (224, 224, 3) and fast.dtype == np.uint8
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4, (diff.mean(), diff.max())
    calls = []
    monkeypatch.setattr(augment, "opencv", lambda: calls.append(1))  # None: no OpenCV
    assert np.array_equal(ip.resize_box(im, box, 224), slow)
    calls.clear()
    down = ip.resize_box(im, (0, 0, 300, 250), 224)  # downscaling: Pillow, whatever is installed
    assert np.array_equal(
        down, np.asarray(im.resize((224, 224), Image.Resampling.BILINEAR, box=(0, 0, 300, 250)))
    )


def test_kg_caption_tokens_are_computed_once_per_caption(tiny_dataset):
    from entitynet.text import tokenizer as tokenizers
    from entitynet.text.tokenizer import encode
    from train.input_pipeline import InputConfig, Prepare, TextChooser

    data_dir, entities, _, _ = tiny_dataset
    tok = tokenizers.load(data_dir)
    prep = Prepare(InputConfig(shards=str(data_dir), context_length=16), TextChooser(entities, 0.5), tok)
    a, b = prep.tokens("red fox", "kg"), prep.tokens("red fox", "kg")
    assert a is b and not a.flags.writeable  # shared, so no batch can change another's
    assert np.array_equal(a, encode(tok, ["red fox"], 16)[0])
    assert prep.tokens("red fox", "alt") is not a  # alt texts are mostly unique: not kept


def test_batches_made_in_the_reader_threads_equal_batches_made_after_a_filter(tiny_dataset, tmp_path):
    """Without a subset, whole batches are made in Grain's reader threads; with one, records are
    filtered first and batched after. A subset that keeps every record gives the same batches,
    so the faster path changes nothing but the loader's speed (and what its state counts)."""
    from entitynet import records
    from entitynet.text import tokenizer as tokenizers
    from train.input_pipeline import InputConfig, make_dataset, state_counts

    data_dir, entities, recs, _ = tiny_dataset
    tok = tokenizers.load(data_dir)
    every = tmp_path / "all.npz"
    np.savez(every, **records.encode_subset({"train": [r.key for r in recs]}))
    base = dict(shards=str(data_dir), batch_size=8, image_size=32, context_length=16, seed=5)
    a = iter(make_dataset(InputConfig(**base), entities, tok))
    b = iter(make_dataset(InputConfig(**base, subset=str(every)), entities, tok))
    for _ in range(6):  # past one epoch of the 108 training records
        x, y = next(a), next(b)
        assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["tokens"], y["tokens"])
    assert a.get_state() != b.get_state()  # batches against records
    assert (state_counts(""), state_counts(str(every))) == ("batches", "records")


def test_a_subset_filters_the_loader_and_reaches_worker_processes_as_its_path(tiny_dataset, tmp_path):
    """A subset keeps exactly its records, in this process and in Grain's worker processes, which
    receive it as the file's path (and map the file themselves), not as a copy of its keys."""
    import pickle

    from entitynet import records, shards
    from entitynet.text import tokenizer as tokenizers
    from train.input_pipeline import InputConfig, InSubset, make_dataset

    data_dir, entities, _, _ = tiny_dataset
    tok = tokenizers.load(data_dir)
    train_keys = [r.key for r in shards.iter_records(data_dir, "train")]
    half = tmp_path / "half.npz"
    np.savez(half, **records.encode_subset({"train": train_keys[::2]}))
    assert len(pickle.dumps(InSubset(records.read_subset(half, "train")))) < 1000
    base = dict(shards=str(data_dir), batch_size=8, image_size=16, context_length=16, train=False)
    for workers in (0, 2):
        cfg = InputConfig(**base, subset=str(half), num_workers=workers)
        it = iter(make_dataset(cfg, entities, tok))
        try:
            assert sum(len(b["tokens"]) for b in it) == len(train_keys[::2])
        finally:
            getattr(it, "close", lambda: None)()


def test_device_prefetch_checkpoints_the_next_batch_the_step_sees(tiny_dataset):
    """Batches are loaded and sent ahead of the step, so the loader's own state is past batches
    the step never saw; the prefetcher's state is at the next one it hands over, and a loader
    restored there continues exactly where the step was."""
    from entitynet.text import tokenizer as tokenizers
    from train.input_pipeline import DevicePrefetch, InputConfig, make_dataset

    data_dir, entities, _, _ = tiny_dataset
    tok = tokenizers.load(data_dir)
    cfg = InputConfig(shards=str(data_dir), batch_size=8, image_size=32, context_length=16, seed=3)

    def fresh():
        return DevicePrefetch(iter(make_dataset(cfg, entities, tok)), jax.device_put, depth=3)

    it = fresh()
    for _ in range(5):
        first = next(it)
    assert isinstance(first["image"], jax.Array)
    saved, raw = it.get_state(), json.dumps(it.it.get_state(), indent=4).encode()
    assert saved != raw  # the loader is ahead: it has loaded the three queued batches
    expected = [next(it) for _ in range(4)]
    resumed, skipped = fresh(), fresh()
    resumed.set_state(saved)
    skipped.set_state(raw)
    got = [next(resumed) for _ in range(4)]
    assert all(np.array_equal(x["image"], y["image"]) for x, y in zip(expected, got, strict=True))
    assert not np.array_equal(next(skipped)["image"], expected[0]["image"])
    assert it.snapshot().get_state() == it.get_state()


def test_kg_name_captions_are_wrapped_in_training_templates_at_the_asked_rate(sample_entities):
    from entitynet.text.captions import NAMING_SOURCES
    from train.input_pipeline import TextChooser

    entities = [e for e in sample_entities if e.description and e.depth > 1][:20]
    templates = ("a photo of a {c}.", "a drawing of the {c}.")
    records = [record(e.id, entity_ids=(e.id,)) for e in entities]

    def texts(chance, n=3000, seed=0):
        chooser = TextChooser(entities, alt_text_chance=0.0, template_chance=chance, templates=templates)
        rng = np.random.default_rng(seed)
        out = []
        for i in range(n):
            text, source = chooser.choose(records[i % len(records)], rng)
            assert source == "kg"
            out.append(text)
        return out

    def unwrap(t: str) -> str | None:
        """The caption inside a template, or None for a text no template wraps."""
        for prefix, suffix in (("a photo of a ", "."), ("a drawing of the ", ".")):
            if t.startswith(prefix) and t.endswith(suffix):
                return t[len(prefix) : -len(suffix)]
        return None

    plain = texts(0.0)
    assert not any(unwrap(t) for t in plain)
    # off means no extra random draw: the same stream as a chooser without templates
    bare = TextChooser(entities, alt_text_chance=0.0)
    rng = np.random.default_rng(0)
    assert plain[:50] == [bare.choose(records[i % len(records)], rng)[0] for i in range(50)]
    # naming captions (label, synonyms, parents' names) are wrapped at the asked rate; descriptions never
    sources = {c.text: c.source for e in entities for c in bare.candidates(e.id)}
    for chance in (0.25, 1.0):
        got = [(unwrap(t), t) for t in texts(chance)]
        assert all(sources[inner] in NAMING_SOURCES for inner, _ in got if inner)
        naming = [inner is not None for inner, t in got if inner or sources[t] in NAMING_SOURCES]
        assert abs(np.mean(naming) - chance) < 0.04, (chance, np.mean(naming))
        assert any(sources[t] == "description" for inner, t in got if inner is None)
    with pytest.raises(ConfigError, match="needs training templates"):
        from train.input_pipeline import InputConfig, make_dataset

        make_dataset(InputConfig(shards="x", template_chance=0.5), entities, None)


def test_each_process_reads_its_own_slice(tiny_dataset):
    from entitynet.text import tokenizer as tokenizers
    from train.input_pipeline import InputConfig, make_dataset

    data_dir, entities, recs, _ = tiny_dataset
    tok = tokenizers.load(data_dir)
    cfg = InputConfig(shards=str(data_dir), batch_size=1, image_size=32, context_length=16, train=False)
    seen = []
    for pid in range(2):
        seen.append({bytes(b["image"].tobytes()) for b in make_dataset(cfg, entities, tok, pid, 2)})
    assert seen[0] and seen[1] and not (seen[0] & seen[1])
    total = len(list(make_dataset(cfg, entities, tok, 0, 1)))
    assert len(seen[0]) + len(seen[1]) == total


# ---------------------------------------------------------------- the trainer


@pytest.mark.slow
def test_tiny_model_overfits_a_fixed_batch():
    import optax

    from train import sharding
    from train.model import preset
    from train.train import create_state, make_steps

    mesh = sharding.make_mesh({"data": -1})
    mcfg = preset("tiny", text_vocab_size=64, text_context_length=8)
    graphdef, state = create_state(mcfg, optax.adam(3e-3), mesh, 0)
    train_step, eval_step = make_steps(graphdef, state, mesh, "clip")
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, 64, (16, 8)).astype(np.int32)
    tokens[:, -1] = mcfg.text.eot_id
    batch = sharding.global_batch(
        mesh, {"image": rng.normal(size=(16, 32, 32, 3)).astype(np.float32), "tokens": tokens}
    )
    with jax.set_mesh(mesh):
        for _ in range(150):
            state, m = train_step(state, batch)
    assert float(m["accuracy"]) >= 0.95 and float(m["loss"]) < 0.5


@pytest.mark.slow
def test_one_device_and_an_eight_device_mesh_give_the_same_losses(tiny_dataset, jax_cache, tmp_path):
    data_dir = tiny_dataset[0]
    no_ckpt = {"checkpoint.every_steps": 100}
    run_train(tmp_path / "one", data_dir, total_steps=7, **no_ckpt)
    eight = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    run_train(
        tmp_path / "mesh", data_dir, eight, total_steps=5, **{"mesh.data": 4, "mesh.fsdp": 2}, **no_ckpt
    )
    one, mesh = losses_of(tmp_path / "one"), losses_of(tmp_path / "mesh")
    assert sorted(one) == [1, 2, 3, 4, 5, 6, 7] and sorted(mesh) == [1, 2, 3, 4, 5]
    assert max(abs(one[s] - mesh[s]) for s in mesh) < 1e-5, (one, mesh)
    # restore the (4, 2) run's final checkpoint onto a (2, 4) mesh and go on: the 1-device losses
    run_train(
        tmp_path / "mesh", data_dir, eight, total_steps=7, **{"mesh.data": 2, "mesh.fsdp": 4}, **no_ckpt
    )
    moved = losses_of(tmp_path / "mesh")
    assert max(abs(moved[s] - one[s]) for s in (6, 7)) < 1e-4, (moved, one)


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_is_bitwise_identical(tiny_dataset, jax_cache, tmp_path):
    import orbax.checkpoint as ocp

    data_dir = tiny_dataset[0]
    steps = 40
    run_train(tmp_path / "straight", data_dir, total_steps=steps)
    proc = run_train(tmp_path / "killed", data_dir, wait=False, total_steps=steps)
    ckpt = tmp_path / "killed" / "checkpoints" / "8"
    deadline = time.time() + 300
    while not (ckpt.is_dir() and (ckpt / "_CHECKPOINT_METADATA").exists()) and time.time() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = max(losses_of(tmp_path / "killed"))
    assert 8 <= killed_at < steps
    run_train(tmp_path / "killed", data_dir, total_steps=steps)
    a, b = losses_of(tmp_path / "straight"), losses_of(tmp_path / "killed")
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    assert all(a[s] == b[s] for s in a), (a, b)  # bitwise: exact float equality, resumed steps included
    rows = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in rows if "loss" in r]
    assert logged == list(range(1, steps + 1))  # the killed run's rows after its checkpoint were dropped

    def params(workdir):
        with ocp.StandardCheckpointer() as c:
            return c.restore((workdir / "checkpoints" / str(steps) / "state").absolute())

    pa, pb = params(tmp_path / "straight"), params(tmp_path / "killed")
    leaves_a, leaves_b = jax.tree.leaves(pa), jax.tree.leaves(pb)
    assert len(leaves_a) == len(leaves_b) > 10
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(leaves_a, leaves_b, strict=True))


@pytest.mark.slow
def test_changed_data_loader_settings_on_restore_are_a_clear_error(tiny_dataset, jax_cache, tmp_path):
    from train.train import train

    data_dir = tiny_dataset[0]
    train(load_cfg(data_dir, total_steps=4), tmp_path)
    with pytest.raises(
        ConfigError, match=r"data-loader settings or state layout \(batch_size: checkpoint 16 vs now 8\)"
    ):
        train(load_cfg(data_dir, total_steps=6, batch_size=8), tmp_path)
    with pytest.raises(ConfigError, match="num_workers: checkpoint 0 vs now 1"):
        train(load_cfg(data_dir, total_steps=6, **{"data.num_workers": 1}), tmp_path)


@pytest.mark.slow
def test_a_workdir_is_not_resumed_on_data_or_a_tokenizer_that_changed_under_the_same_path(
    tiny_dataset, jax_cache, tmp_path
):
    """The same --workdir and data path, but the data was curated again (another fingerprint) or
    the tokenizer retrained: resuming would train the old model on other records or token ids."""
    import shutil

    from entitynet import shards
    from train.train import StaleCheckpoint, train

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset[0], data)
    digests = {p.name: "a" * 32 for p in data.iterdir() if shards.is_shard_name(p.name)}
    shards.write_fingerprint(data, digests)
    cfg = lambda steps: load_cfg(data, total_steps=steps, **{"data.tokenizer": str(data / "tokenizer.json")})  # noqa: E731
    train(cfg(2), tmp_path / "run")
    assert train(cfg(4), tmp_path / "run")["last_step"] == 4  # the same data: resumes
    shards.write_fingerprint(data, {**digests, sorted(digests)[0]: "b" * 32})
    with pytest.raises(StaleCheckpoint, match="data_fingerprint: checkpoint"):
        train(cfg(6), tmp_path / "run")
    shards.write_fingerprint(data, digests)
    with open(data / "tokenizer.json", "ab") as f:
        f.write(b" ")
    with pytest.raises(StaleCheckpoint, match="tokenizer_digest: checkpoint"):
        train(cfg(6), tmp_path / "run")


def test_bad_training_config(tiny_dataset, tmp_path):
    from train import config as config_lib

    data_dir = tiny_dataset[0]
    with pytest.raises(ConfigError, match="does not exist"):
        config_lib.load(str(tmp_path / "nope.py"))
    with pytest.raises(ConfigError, match="unknown config field 'optim.lrr'"):
        load_cfg(data_dir, **{"optim.lrr": 1})
    with pytest.raises(ConfigError, match="expected int"):
        load_cfg(data_dir, total_steps="many")
    with pytest.raises(ConfigError, match="templates no-such-file: No such file"):
        from train.train import train as _train

        _train(load_cfg(data_dir, **{"data.templates": "no-such-file"}), tmp_path / "t")
    from train.train import train

    with pytest.raises(ConfigError, match="needs 3 devices"):
        train(load_cfg(data_dir, **{"mesh.data": 3}), tmp_path / "w")


@pytest.mark.slow
def test_two_processes_on_loopback_train_one_model(tiny_dataset, jax_cache, tmp_path):
    """jax.distributed over 127.0.0.1 (CPU collectives through gloo): each process feeds its own slice
    of the data, both see the same global loss, and the checkpoint holds both iterators' states."""
    from conftest import free_port

    data_dir = tiny_dataset[0]
    port = free_port()
    procs = [
        run_train(
            tmp_path,
            data_dir,
            {
                "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                "JAX_NUM_PROCESSES": "2",
                "JAX_PROCESS_ID": str(i),
            },
            wait=False,
            total_steps=4,
            distributed=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    curves = [next(line for line in o.splitlines() if line.startswith("loss curve")) for o in outs]
    assert curves[0] == curves[1]
    assert sorted(losses_of(tmp_path)) == [1, 2, 3, 4]  # written once, by process 0
    data = tmp_path / "checkpoints" / "4" / "data"
    assert {p.name for p in data.iterdir()} >= {"process_0-of-2.json", "process_1-of-2.json"}


@pytest.mark.parametrize(
    "spec",
    [
        "tiny_cpu.py",
        "tiny_cpu.py:siglip",
        "tiny_cpu.py:loss=siglip",
        "vit_b32_entitynet.py",
        "vit_b32_entitynet.py:images=2e6",
        "vit_b32_entitynet.py:runlocal=True",
        "vit_b16_livingthings.py:1e6",
        "vit_b16_livingthings.py:images=1e6,runlocal=true",
    ],
)
def test_shipped_configs_load(spec):
    from train import config as config_lib
    from train.model import preset

    cfg = config_lib.load(str(ROOT / "configs" / spec))
    assert cfg.total_steps > 0 and cfg.optim.warmup_steps < cfg.total_steps and cfg.loss in ("clip", "siglip")
    preset(cfg.model.preset, **dict(cfg.model.overrides))


def test_configs_share_a_base_not_the_demo_and_read_named_arguments():
    import ast

    from train import config as config_lib

    for path in (ROOT / "configs").glob("*.py"):  # no recipe derives from the demo's config
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "configs.tiny_cpu" not in imported, path.name
    b32 = config_lib.load(str(ROOT / "configs" / "vit_b32_entitynet.py") + ":images=8192000")
    assert b32.total_steps == 18 * 1000 and b32.optim.warmup_steps == 2 * 1000
    assert not any(str(v).startswith("gs://") for v in b32.data.values())  # the trainer reads files
    local = config_lib.load(str(ROOT / "configs" / "vit_b32_entitynet.py") + ":runlocal=True")
    assert (local.total_steps, local.batch_size, local.model.preset) == (10, 8, "tiny")
    assert local.optim.lr == b32.optim.lr and local.data.context_length == b32.data.context_length
    for bad, message in (
        ("imgs=5", "unknown config argument 'imgs'"),
        ("runlocal=maybe", "not true or false"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_lib.load(str(ROOT / "configs" / "vit_b32_entitynet.py") + ":" + bad)


@pytest.mark.slow
def test_open_clip_weights_round_trip_and_initialise_training(tiny_dataset, jax_cache, tmp_path):
    """Export to open_clip's layout and back is exact; a run initialised from such a file starts from
    those weights (checked after one step at learning rate 0). open_clip itself reproduces our
    embeddings from these weights (checked against open_clip 3.3 by hand: max |diff| 2e-7)."""
    import orbax.checkpoint as ocp
    from flax import nnx
    from safetensors.numpy import save_file

    from entitynet.text import tokenizer as tokenizers
    from train import sharding
    from train.model import CLIP
    from train.open_clip_weights import load_open_clip, read_state_dict, to_open_clip
    from train.train import model_config

    data_dir = tiny_dataset[0]
    cfg = load_cfg(data_dir, total_steps=1, **{"optim.warmup_steps": 5, "optim.weight_decay": 0.0})
    mcfg = model_config(cfg, tokenizers.load(data_dir))
    with jax.set_mesh(sharding.make_mesh({"data": -1})):
        source = CLIP(mcfg, rngs=nnx.Rngs(7))
        other = CLIP(mcfg, rngs=nnx.Rngs(8))
    sd = to_open_clip(source)
    assert (
        sd["visual.conv1.weight"].shape == (32, 3, 8, 8)
        and "transformer.resblocks.0.attn.in_proj_weight" in sd
    )
    save_file(sd, str(tmp_path / "weights.safetensors"))
    assert load_open_clip(other, read_state_dict(str(tmp_path / "weights.safetensors"))) == []
    assert all(np.array_equal(sd[k], v) for k, v in to_open_clip(other).items())

    from train.train import train

    cfg.init_from = str(tmp_path / "weights.safetensors")
    train(cfg, tmp_path / "run")
    with ocp.StandardCheckpointer() as c:
        restored = c.restore((tmp_path / "run" / "checkpoints" / "1" / "state").absolute())
    kernel = restored["0"]["visual"]["conv1"]["kernel"]
    kernel = kernel["value"] if isinstance(kernel, dict) else kernel
    assert np.array_equal(np.asarray(kernel).transpose(3, 2, 0, 1), sd["visual.conv1.weight"])
    with pytest.raises(ConfigError, match="lack visual.proj|has shape"):
        load_open_clip(other, {k: v for k, v in sd.items() if k != "visual.proj"})


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tiny_dataset, jax_cache, tmp_path):
    data_dir = tiny_dataset[0]
    proc = run_train(
        tmp_path, data_dir, wait=False, total_steps=100_000, **{"checkpoint.every_steps": 100_000}
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (tmp_path / "metrics.jsonl").exists() and len(losses_of(tmp_path)) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, out
    saved = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert saved and max(saved) >= 3 and max(saved) == max(losses_of(tmp_path))


@pytest.mark.slow
def test_bf16_compute_keeps_float32_parameters():
    import optax

    from train import sharding
    from train.model import preset
    from train.train import create_state, make_steps

    mesh = sharding.make_mesh({"data": -1})
    mcfg = preset("tiny", dtype="bfloat16")
    graphdef, state = create_state(mcfg, optax.adamw(1e-3), mesh, 0)
    train_step, _ = make_steps(graphdef, state, mesh, "siglip")
    rng = np.random.default_rng(0)
    batch = sharding.global_batch(
        mesh,
        {
            "image": rng.normal(size=(8, 32, 32, 3)).astype(np.float32),
            "tokens": rng.integers(3, 500, (8, 16)).astype(np.int32),
        },
    )
    with jax.set_mesh(mesh):
        state, m = train_step(state, batch)
    assert np.isfinite(float(m["loss"]))
    assert {x.dtype for x in jax.tree.leaves(state)} <= {
        np.dtype("float32"),
        np.dtype("int32"),
        np.dtype("uint32"),
    }


@pytest.mark.slow
def test_loader_worker_processes_start_from_a_plain_script(tiny_dataset):
    """Grain's worker processes read absl flags, which a plain script (not the trainer) never
    parsed: the loader with workers must still run there (it raised UnparsedFlagAccessError)."""
    import subprocess
    import sys

    data_dir = tiny_dataset[0]
    script = (
        "import sys; sys.path.insert(0, sys.argv[2])\n"
        "from entitynet.records import Entity, read_jsonl\n"
        "from entitynet.text import tokenizer as tokenizers\n"
        "from train.input_pipeline import InputConfig, make_dataset\n"
        "d = sys.argv[1]\n"
        "cfg = InputConfig(shards=d, batch_size=8, image_size=32, context_length=16, num_workers=1)\n"
        "it = iter(make_dataset(cfg, list(read_jsonl(d + '/entities.jsonl', Entity)), tokenizers.load(d)))\n"
        "b = next(it)\n"
        "print(b['image'].shape, b['image'].dtype)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script, str(data_dir), str(ROOT)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "(8, 32, 32, 3) uint8"


@pytest.mark.slow
def test_the_accelerator_check_runs_on_the_cpu():
    """benchmarks/train_accelerator.py --smoke: the device check, kept from rotting while no device
    is lent: a tiny model's step on synthetic and on loader-fed batches, and its summary line."""
    import re

    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_accelerator.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    m = re.fullmatch(
        r"accelerator: tiny on cpu: (\d+) img/s \(synthetic\), (\d+) img/s \(fed\), MFU n/a, input-bound (\d+)%",
        last,
    )
    assert m, r.stdout
    assert int(m[1]) > 0 and int(m[2]) > 0 and 0 <= int(m[3]) <= 100
    assert "host->device copy of a batch" in r.stdout
