"""Our SentencePiece tokenizer as a Hugging Face `tokenizers` file (`tokenizer.json` with its
`tokenizer_config.json`), so that tools which load tokenizers the Hugging Face way (open_clip's
`get_tokenizer("local-dir:...")`, `transformers.AutoTokenizer`) produce exactly our token ids:

    [start] pieces [end] padding         (entitynet.text.tokenizer.encode)

The pipeline is SentencePiece's own: lower case (our `ids()` lowers the text first), the model's
precompiled normalisation (NFKC by default), runs of spaces as one, "▁" before every word, the
unigram pieces and scores, unknown characters as <unk>; a post-processor adds <s> ... </s>, and
truncation keeps room for both (the pieces are cut, as ours are).
"""

from __future__ import annotations

from pathlib import Path

from entitynet.errors import ConfigError

HF_TOKENIZER_FILE = "tokenizer.json"  # the name Hugging Face loaders look for
HF_TOKENIZER_CONFIG = "tokenizer_config.json"


def _fields(buf: bytes):
    """(field number, value) of a protobuf message: ints for varints and fixed widths, bytes for
    length-delimited fields (the three wire types a SentencePiece model uses, plus fixed64)."""
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7

    while i < len(buf):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            n = varint()
            yield number, buf[i : i + n]
            i += n
        elif wire == 5:
            yield number, buf[i : i + 4]
            i += 4
        elif wire == 1:
            yield number, buf[i : i + 8]
            i += 8
        else:
            raise ConfigError(f"not a SentencePiece model (protobuf wire type {wire})")


class _Spec:
    """What the conversion needs of a SentencePiece ModelProto (sentencepiece_model.proto):
    pieces (1: piece, 2: score), trainer_spec.model_type (2.3), normalizer_spec (3: 2 the
    precompiled charsmap, 3 add_dummy_prefix, 4 remove_extra_whitespaces; both default true)."""

    def __init__(self, model: bytes):
        import struct

        self.pieces: list[tuple[str, float]] = []
        self.model_type = 1  # unigram, the default
        self.charsmap, self.dummy_prefix, self.extra_whitespace = b"", True, True
        for number, value in _fields(model):
            if number == 1:
                piece = dict(_fields(value))
                self.pieces.append(
                    (piece[1].decode("utf-8"), struct.unpack("<f", piece.get(2, b"\0" * 4))[0])
                )
            elif number == 2:
                self.model_type = dict(_fields(value)).get(3, 1)
            elif number == 3:
                spec = dict(_fields(value))
                self.charsmap = spec.get(2, b"")
                self.dummy_prefix = bool(spec.get(3, 1))
                self.extra_whitespace = bool(spec.get(4, 1))


def sentencepiece_to_hf(model: bytes, context_length: int):
    """A `tokenizers.Tokenizer` that tokenizes as our SentencePieceTokenizer + `encode` do."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    m = _Spec(model)
    if m.model_type != 1:  # 1: unigram (the only kind `tokenizer train` makes)
        raise ConfigError("only unigram SentencePiece models convert to a Hugging Face tokenizer")
    from entitynet.text.tokenizer import SentencePieceTokenizer as Ours

    pieces = m.pieces
    tok = Tokenizer(models.Unigram(pieces, unk_id=Ours.unk_id, byte_fallback=False))
    steps: list[normalizers.Normalizer] = [normalizers.Lowercase()]
    if m.charsmap:
        steps.append(normalizers.Precompiled(m.charsmap))
    if m.extra_whitespace:
        steps += [normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    scheme = "always" if m.dummy_prefix else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
    start, end, pad = (pieces[i][0] for i in (Ours.sot_id, Ours.eot_id, Ours.pad_id))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{start} $A {end}", special_tokens=[(start, Ours.sot_id), (end, Ours.eot_id)]
    )
    tok.add_special_tokens([AddedToken(t, special=True) for t in (pieces[Ours.unk_id][0], start, end, pad)])
    tok.enable_truncation(context_length)
    tok.enable_padding(pad_id=Ours.pad_id, pad_token=pad, length=context_length)
    return tok


def write_hf_tokenizer(model: bytes, context_length: int, directory: str | Path) -> list[str]:
    """`tokenizer.json` and `tokenizer_config.json` in `directory`; returns the names written."""
    from entitynet.files import atomic_open, write_json
    from entitynet.text.tokenizer import SentencePieceTokenizer as Ours

    tok = sentencepiece_to_hf(model, context_length)
    d = Path(directory)
    with atomic_open(d / HF_TOKENIZER_FILE, "w") as f:
        f.write(tok.to_str(pretty=True))

    write_json(
        d / HF_TOKENIZER_CONFIG,
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": context_length,
            "bos_token": tok.id_to_token(Ours.sot_id),
            "eos_token": tok.id_to_token(Ours.eot_id),
            "pad_token": tok.id_to_token(Ours.pad_id),
            "unk_token": tok.id_to_token(Ours.unk_id),
            "padding_side": "right",
            "truncation_side": "right",
            "clean_up_tokenization_spaces": False,
        },
    )
    return [HF_TOKENIZER_FILE, HF_TOKENIZER_CONFIG]
