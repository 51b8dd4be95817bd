"""`entitynet tokenizer train`, `train`, `eval` and `export`: the trainer's commands (train/)."""

from __future__ import annotations

from entitynet.errors import ConfigError
from entitynet.text.tokenizer import train_tokenizer
from entitynet_cli.common import compilation_cache, load_entities


def cmd_tokenizer_train(args, _) -> int:
    entities = load_entities(args.entities)
    path, n = train_tokenizer(args.shards, entities, args.vocab_size, args.out)
    print(
        f"SentencePiece tokenizer ({n['vocab_size']:,} pieces) from {n['alt_texts']:,} alt texts and "
        f"{n['kg_captions']:,} KG captions: {path}"
    )
    return 0


def cmd_train(args, overrides) -> int:
    from train import config as config_lib
    from train.train import summary, train

    compilation_cache()

    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        raise ConfigError(f"unrecognized arguments: {' '.join(bad)} (overrides look like --config.key=value)")
    cfg = config_lib.load(args.config, overrides)
    print(summary(train(cfg, args.workdir), args.workdir))
    return 0


def cmd_eval(args, _) -> int:
    from train.evaluate import run_from_args, summary

    compilation_cache()

    for line in summary(run_from_args(args)):
        print(line)
    return 0


def cmd_export(args, _) -> int:
    from train.export import export_open_clip

    r = export_open_clip(args.workdir, args.out)
    print(
        f"exported step {r['step']} ({r['tensors']} tensors) to {r['out']}/open_clip_model.safetensors "
        "and open_clip_config.json"
    )
    return 0
