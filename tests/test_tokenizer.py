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
