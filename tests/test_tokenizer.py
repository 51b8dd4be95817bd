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
