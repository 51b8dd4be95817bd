"""`entitynet embed` and `entitynet query`: one embeddings file per shard that holds every record's
image and texts as the model embeds them, a re-run that reuses what still fits, refusals that
keep models apart, and search by text and by image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from entitynet import shards
from entitynet.errors import ConfigError
from entitynet.records import TEXT_KINDS, decode_for_training, read_embeddings
from entitynet_cli.main import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def embedded(tiny_dataset, tiny_run, tmp_path_factory):
    data_dir = tiny_dataset[0]
    out = tmp_path_factory.mktemp("embed") / "emb"
    argv = ["embed", "--shards", str(data_dir), "--model", str(tiny_run), "--out", str(out)]
    argv += ["--entities", str(data_dir / "entities.jsonl"), "--batch-size", "16"]
    assert main(argv) == 0
    return out, argv


def test_every_record_of_every_shard_is_embedded_with_its_texts(embedded, tiny_dataset):
    out, _ = embedded
    data_dir, entities = tiny_dataset[0], tiny_dataset[1]
    labels = {e.id: e.label for e in entities}
    seen = 0
    for split in ("train", "validation", "test"):
        for path in shards.shard_paths(data_dir, split):
            recs = list(shards.read_shard(path, decode=decode_for_training))
            e = read_embeddings(out / split / (Path(path).name + ".npz"))
            assert [k.decode() for k in e.keys] == [r.key for r in recs]
            norms = np.linalg.norm(e.image.astype(np.float32), axis=1)
            assert np.allclose(norms, 1.0, atol=2e-3)
            for row, r in enumerate(recs):
                mine = e.text_kind[e.text_owner == row]
                want_kg = [e_ for e_ in dict.fromkeys(r.entity_ids) if e_ in labels]
                assert list(mine) == [0] * len(r.alt_texts) + [1] * len(want_kg)
            seen += len(recs)
    assert seen == sum(len(list(shards.iter_records(data_dir, s))) for s in ("train", "validation", "test"))
    assert TEXT_KINDS == ("alt", "kg")


def test_an_embedding_is_the_model_s_own(embedded, tiny_dataset, tiny_run):
    """The image row of a record equals what the evaluator's model makes of it."""
    import jax

    from entitynet.images.decode import decode
    from train.evaluate import load_model
    from train.input_pipeline import centre_crop, normalise

    out, _ = embedded
    path = shards.shard_paths(tiny_dataset[0], "train")[0]
    r = next(iter(shards.read_shard(path, decode=decode_for_training)))
    loaded = load_model(tiny_run)
    x = normalise(centre_crop(decode(r.jpeg), loaded["config"].vision.image_size))[None]
    want = np.asarray(jax.jit(loaded["model"].encode_image)(x))[0]
    got = read_embeddings(out / "train" / (Path(path).name + ".npz")).image[0].astype(np.float32)
    assert float(got @ want) > 0.999


def test_on_a_four_device_mesh_the_batch_is_split_and_the_embeddings_are_the_same(
    embedded, tiny_dataset, tiny_run, tmp_path
):
    """The same shards embedded on four host devices (a batch of 6 becomes 8, split over them)."""
    import os
    import subprocess
    import sys

    data_dir = tiny_dataset[0]
    out = tmp_path / "emb4"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    cmd = [sys.executable, "-m", "entitynet_cli", "embed", "--shards", str(data_dir), "--model", str(tiny_run),
           "--out", str(out), "--entities", str(data_dir / "entities.jsonl"), "--batch-size", "6"]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    for split in ("train", "validation"):
        for path in shards.shard_paths(data_dir, split):
            name = Path(path).name + ".npz"
            one, four = read_embeddings(embedded[0] / split / name), read_embeddings(out / split / name)
            assert list(one.keys) == list(four.keys)
            assert np.allclose(one.image.astype(np.float32), four.image.astype(np.float32), atol=2e-3)
            assert np.allclose(one.text.astype(np.float32), four.text.astype(np.float32), atol=2e-3)


def test_a_re_run_reuses_what_fits_and_makes_the_rest(embedded, capsys):
    out, argv = embedded
    files = sorted(out.glob("*/*.npz"))
    n = len(files)
    code, printed, _ = run(capsys, *argv)
    assert code == 0 and f"(embedded 0 shards, reused {n} from an earlier run)" in printed
    files[0].unlink()
    code, printed, _ = run(capsys, *argv)
    assert code == 0 and f"(embedded 1 shard, reused {n - 1} from an earlier run)" in printed
    files[-1].write_bytes(files[-1].read_bytes()[:100])  # a file cut short by a killed run
    code, printed, _ = run(capsys, *argv)
    assert code == 0 and f"(embedded 1 shard, reused {n - 1} from an earlier run)" in printed
    assert all(read_embeddings(f) for f in files)


def test_embeddings_of_another_model_are_never_mixed(embedded, tmp_path, capsys):
    out, argv = embedded
    config = json.loads((out / "embed_config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "embed_config.json").write_text(json.dumps({**config, "model_digest": "0123456789abcdef"}))
    code, _, err = run(capsys, *[other.as_posix() if a == str(out) else a for a in argv])
    assert code == 2 and "holds embeddings of another model (0123456789abcdef); give a new --out" in err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, _, err = run(capsys, *[mine.as_posix() if a == str(out) else a for a in argv])
    assert code == 2 and "is not empty and holds no embeddings" in err
    code, _, err = run(capsys, *["gs://bucket/emb" if a == str(out) else a for a in argv])
    assert code == 2 and "embed into a local directory" in err and not Path("gs:").exists()


def test_a_tokenizer_the_model_cannot_take_is_one_line():
    from types import SimpleNamespace

    from train.embed import check_fit

    loaded = {
        "tokenizer": SimpleNamespace(vocab_size=9000),
        "config": SimpleNamespace(text=SimpleNamespace(vocab_size=8000)),
    }
    with pytest.raises(ConfigError, match="the tokenizer has 9,000 pieces, the model's text tower 8,000"):
        check_fit(loaded)


def test_query_by_image_finds_the_image_and_by_text_ranks_by_score(embedded, tiny_dataset, tmp_path, capsys):
    out, _ = embedded
    path = shards.shard_paths(tiny_dataset[0], "train")[0]
    r = list(shards.read_shard(path, decode=decode_for_training))[7]
    (tmp_path / "q.jpg").write_bytes(r.jpeg)
    code, printed, _ = run(
        capsys, "query", "--image", str(tmp_path / "q.jpg"), "--embeddings", str(out), "-k", "3"
    )
    assert code == 0
    lines = printed.strip().splitlines()
    assert len(lines) == 3 and lines[0].split()[2] == r.key and float(lines[0].split()[0]) > 0.99
    code, printed, _ = run(capsys, "query", tiny_dataset[1][0].label, "--embeddings", str(out), "-k", "5")
    scores = [float(x.split()[0]) for x in printed.strip().splitlines()]
    assert code == 0 and len(scores) == 5 and scores == sorted(scores, reverse=True)
    code, _, err = run(capsys, "query", "--embeddings", str(tmp_path), "-k", "2", "lion")
    assert code == 2 and "is not an `entitynet embed` output" in err


def _hits(printed: str) -> list[tuple[str, str]]:
    """(score, key) of each line `entitynet query` printed."""
    return [(line.split()[0], line.split()[2]) for line in printed.strip().splitlines()]


def test_query_through_the_index_finds_what_the_exact_scan_finds(embedded, tiny_dataset, tmp_path, capsys):
    import shutil

    from entitynet import embedindex

    out, argv = embedded
    emb = tmp_path / "emb"
    shutil.copytree(out, emb)  # the other tests' embeddings stay without an index
    argv = [str(emb) if a == str(out) else a for a in argv]
    code, printed, _ = run(capsys, *argv, "--index")
    n = sum(len(read_embeddings(f).keys) for f in emb.glob("*/*.npz"))
    assert code == 0 and f"index: flat over {n:,} records, built: {emb}/index/" in printed
    assert embedindex.read_manifest(emb)["kind"] == "flat" and embedindex.staleness(emb) is None
    path = shards.shard_paths(tiny_dataset[0], "train")[0]
    r = list(shards.read_shard(path, decode=decode_for_training))[3]
    (tmp_path / "q.jpg").write_bytes(r.jpeg)
    searches = [[tiny_dataset[1][2].label, "-k", "7"], ["--image", str(tmp_path / "q.jpg"), "-k", "5"]]
    for what in searches:
        code, indexed, err = run(capsys, "query", *what, "--embeddings", str(emb))
        assert code == 0 and not err
        code, exact, _ = run(capsys, "query", *what, "--embeddings", str(emb), "--exact")
        assert code == 0 and indexed == exact and len(_hits(indexed)) == int(what[-1])
    assert _hits(indexed)[0][1] == r.key
    # an HNSW index (approximate) finds the same at this size
    code, printed, _ = run(capsys, *argv, "--index", "hnsw")
    assert code == 0 and f"index: hnsw over {n:,} records, built" in printed
    code, hnsw, _ = run(capsys, "query", *searches[0], "--embeddings", str(emb))
    code, exact, _ = run(capsys, "query", *searches[0], "--embeddings", str(emb), "--exact")
    assert code == 0 and [k for _, k in _hits(hnsw)] == [k for _, k in _hits(exact)]


def test_a_stale_index_is_built_again_with_one_line(embedded, tmp_path, capsys):
    import os
    import shutil

    from entitynet import embedindex

    out, argv = embedded
    emb = tmp_path / "emb"
    shutil.copytree(out, emb)
    argv = [str(emb) if a == str(out) else a for a in argv]
    assert run(capsys, *argv, "--index")[0] == 0
    built = embedindex.read_manifest(emb)
    # `embed` makes a shard's file again: the index it keeps is built again, and says why
    files = sorted(emb.glob("*/*.npz"))
    files[0].unlink()
    code, printed, err = run(capsys, *argv)
    assert code == 0 and "(embedded 1 shard, reused" in printed and "index: flat over" in printed
    assert (
        f"the index of {emb} is stale (1 embeddings file(s) re-made, 0 new, 0 gone since it was built): building it again"
        in err
    )
    assert embedindex.staleness(emb) is None and embedindex.read_manifest(emb) != built
    # re-made behind its back: `query` builds it again before searching, with the same line
    st = files[-1].stat()
    os.utime(files[-1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    code, printed, err = run(capsys, "query", "lion", "--embeddings", str(emb), "-k", "3")
    assert code == 0 and len(printed.strip().splitlines()) == 3
    assert [line for line in err.splitlines() if "stale" in line] == [
        f"the index of {emb} is stale (1 embeddings file(s) re-made, 0 new, 0 gone since it was built): "
        "building it again"
    ]
    assert embedindex.staleness(emb) is None
    # a run of another model can never be searched through an old index
    config = json.loads((emb / "embed_config.json").read_text())
    (emb / "embed_config.json").write_text(json.dumps({**config, "model_digest": "0123456789abcdef"}))
    assert embedindex.staleness(emb) == "the embeddings are of another model now"
