"""Tokenizers: SentencePiece trained on texts, CLIP's BPE from a merges file, fixed-length ids."""

import gzip

import numpy as np
import pytest

from entitynet.errors import ConfigError
from entitynet.text import tokenizer as tokenizers


def test_sentencepiece_trains_saves_and_loads(tmp_path):
    texts = [f"a photo of the red fox number {i} in the snow" for i in range(300)] + ["grey wolf"] * 20
    tok = tokenizers.SentencePieceTokenizer.train(texts, vocab_size=120)
    ids = tokenizers.encode(tok, ["A photo of the red fox", "x " * 100, ""], 32)
    assert ids.shape == (3, 32) and ids.dtype == np.int32
    assert ids[0, 0] == tok.sot_id and tok.eot_id in ids[0] and ids[0, -1] == tok.pad_id
    assert ids[1, -1] == tok.eot_id  # cut before the end token, never after it
    assert list(ids[2, :3]) == [tok.sot_id, tok.eot_id, tok.pad_id]
    assert tok.decode(ids[0]) == "a photo of the red fox"
    tokenizers.save(tok, tmp_path)
    again = tokenizers.load(tmp_path)
    assert np.array_equal(
        tokenizers.encode(again, ["grey wolf"], 8), tokenizers.encode(tok, ["grey wolf"], 8)
    )


def test_clip_bpe_applies_merges_by_rank(tmp_path):
    merges = tmp_path / "merges.txt.gz"
    with gzip.open(merges, "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\nh e\nl l\nhe ll\nhell o</w>\nw o\nr l\nwo rl\nworl d</w>\n")
    tok = tokenizers.load(merges)
    assert tok.vocab_size == 256 * 2 + 8 + 2 and (tok.sot_id, tok.eot_id) == (520, 521)
    ids = tok.ids("Hello   WORLD!")
    assert [tok.decoder[i] for i in ids] == ["hello</w>", "world</w>", "!</w>"]
    assert tok.decode(ids) == "hello world !"
    row = tokenizers.encode(tok, ["hello world"], 6)[0]
    assert list(row) == [520, tok.encoder["hello</w>"], tok.encoder["world</w>"], 521, 0, 0]
    assert tok.ids("héllo") and tok.decode(tok.ids("héllo")) == "héllo"  # bytes beyond ASCII survive
    (tmp_path / "empty.txt").write_text("#version\n")
    with pytest.raises(ConfigError, match="holds no BPE merges"):
        tokenizers.load(tmp_path / "empty.txt")
    with pytest.raises(ConfigError, match="run `entitynet tokenizer train` first"):
        tokenizers.load(tmp_path / "nothing")


def test_the_hugging_face_file_gives_our_token_ids(tmp_path):
    """A SentencePiece model as tokenizer.json + tokenizer_config.json: the `tokenizers` library
    (what open_clip's HFTokenizer loads through transformers) gives [start] pieces [end] padding as
    `encode` does, lower-casing, NFKC, whitespace runs, unknown characters and truncation included;
    read back as our HfTokenizer it encodes alike."""
    from tokenizers import Tokenizer

    from entitynet.text.hf_tokenizer import write_hf_tokenizer
    from entitynet.text.tokenizer import SentencePieceTokenizer, encode, load

    corpus = ["a photo of a red fox", "the african lion panthera leo", "house cat on a sofa", "tiger"] * 40
    sp = SentencePieceTokenizer.train(corpus, vocab_size=60)
    texts = [
        "a photo of a red fox",
        "Tiger!",
        "the  African   lion,\tPanthera leo ",
        "ﬁne Ⅻ café",  # NFKC: fi ligature, roman numeral
        "日本の狐",  # not in the vocabulary: <unk>
        "red fox " * 30,  # cut before [end]
        "",
    ]
    write_hf_tokenizer(sp.model, 12, tmp_path)
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    ours = encode(sp, texts, 12)
    assert [e.ids for e in hf.encode_batch(texts)] == ours.tolist()
    assert ours[4].tolist().count(SentencePieceTokenizer.unk_id) >= 1 and ours[5][-1] == sp.eot_id
    back = load(tmp_path / "tokenizer.json")
    assert back.kind == "hf" and (back.sot_id, back.eot_id, back.pad_id) == (sp.sot_id, sp.eot_id, sp.pad_id)
    assert encode(back, texts, 12).tolist() == ours.tolist()


def test_a_text_sample_is_bounded_seeded_uniform_and_in_stream_order():
    from collections import Counter

    texts = [f"text {i}" for i in range(1000)]
    assert tokenizers.sample_texts(iter(texts), 1000) == (texts, 1000)  # covers all: all, in order
    assert tokenizers.sample_texts(iter(texts), 5000) == (texts, 1000)
    assert tokenizers.sample_texts(iter([]), 10) == ([], 0)
    kept, total = tokenizers.sample_texts(iter(texts), 100, seed=1)
    assert total == 1000 and len(kept) == 100 == len(set(kept))
    assert kept == sorted(kept, key=lambda t: int(t.split()[1]))  # in the order they came
    assert tokenizers.sample_texts(iter(texts), 100, seed=1)[0] == kept  # seeded
    assert tokenizers.sample_texts(iter(texts), 100, seed=2)[0] != kept
    # uniform: over many seeds every tenth of the stream is drawn about equally often
    tenths = Counter(
        int(t.split()[1]) // 100 for s in range(200) for t in tokenizers.sample_texts(texts, 50, s)[0]
    )
    assert all(abs(tenths[d] - 1000) < 150 for d in range(10)), tenths
    with pytest.raises(ConfigError, match="at least one text"):
        tokenizers.sample_texts(texts, 0)


def test_sentencepiece_learns_from_a_bounded_sample_and_from_all_when_it_covers_them():
    """A sample that covers every text changes nothing, byte for byte; a smaller one trains on
    that many (seeded: the same model twice)."""
    texts = [f"a photo of the {c} fox number {i}" for i, c in enumerate(["red", "grey", "arctic"] * 100)]
    whole = tokenizers.SentencePieceTokenizer.train(texts, vocab_size=80, sample=None)
    assert tokenizers.SentencePieceTokenizer.train(texts, vocab_size=80).model == whole.model
    assert (
        tokenizers.SentencePieceTokenizer.train(texts + ["  "], vocab_size=80, sample=300).model
        == whole.model
    )
    small = tokenizers.SentencePieceTokenizer.train(texts, vocab_size=60, sample=100, seed=3)
    assert (
        small.model == tokenizers.SentencePieceTokenizer.train(texts, vocab_size=60, sample=100, seed=3).model
    )
    assert small.model != tokenizers.SentencePieceTokenizer.train(texts, vocab_size=60, sample=None).model


def test_train_tokenizer_streams_the_shards_into_its_sample(tmp_path, sample_entities):
    """`train_tokenizer` reads the shards' alt texts record by record (not whole records, not all
    at once): with a sample that covers them the model is the one trained on the full list, as
    before there was a bound; with a smaller one it counts every text and trains on the sample."""
    from factories import record

    from entitynet import shards
    from entitynet.records import encode_image
    from entitynet.text.captions import captions

    entities = [e for e in sample_entities if e.depth > 0][:10]
    recs = [
        record(f"{i:032x}", f"http://t/{i}.jpg", alt_texts=(f"photo {i} of a {entities[i % 10].label}", ""))
        for i in range(300)
    ]
    for split, part in (("train", recs[:200]), ("test", recs[200:])):
        shards.write_shard(tmp_path / shards.shard_filename(split, 0, 1), (encode_image(r) for r in part))
    shards.write_metadata(tmp_path, {"train": [200], "test": [100]}, {})
    by_id = {e.id: e for e in entities}
    kg = [c.text for e in entities for c in captions(e, None, [by_id[p] for p in e.parents if p in by_id])]
    listed = [t for r in recs for t in r.alt_texts] + kg  # what it read before streaming

    path, n = tokenizers.train_tokenizer(str(tmp_path), entities, 120, str(tmp_path / "all"))
    assert (
        tokenizers.load(path).model == tokenizers.SentencePieceTokenizer.train(listed, vocab_size=120).model
    )
    assert (n["alt_texts"], n["kg_captions"], n["sampled"], n["of"]) == (
        600,
        len(kg),
        300 + len(kg),
        300 + len(kg),
    )

    path, n = tokenizers.train_tokenizer(str(tmp_path), entities, 120, str(tmp_path / "some"), sample=100)
    assert (n["alt_texts"], n["sampled"], n["of"]) == (600, 100, 300 + len(kg))
    kept, _ = tokenizers.sample_texts((t for t in listed if t.strip()), 100)
    assert tokenizers.load(path).model == tokenizers.SentencePieceTokenizer.train(kept, vocab_size=120).model
