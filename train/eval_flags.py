"""The command-line flags of evaluation, shared by `entitynet eval` and `python -m train.evaluate`
(no heavy imports: the CLI builds its parser from this before anything runs)."""


def add_arguments(ap) -> None:
    """The evaluation flags, shared by `entitynet eval` and `python -m train.evaluate`."""
    ap.add_argument(
        "--workdir",
        required=True,
        action="append",
        metavar="DIR",
        help="a training workdir or an exported model directory; repeat to compare runs side by side",
    )
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--imagefolder",
        metavar="DIR",
        help="class folders of images (labels.tsv: folder<TAB>name or entity id)",
    )
    which.add_argument(
        "--tfds", metavar="NAME:SPLIT", help="a prepared TFDS dataset (or DIR:SPLIT of a dataset directory)"
    )
    which.add_argument(
        "--heldout",
        action="store_true",
        help="a split of the run's shards: zero-shot over its entities, retrieval over its alt texts",
    )
    ap.add_argument("--split", default="test", help="split for --heldout")
    ap.add_argument("--shards", help="shards for --heldout (default: the run's data.shards)")
    ap.add_argument("--tfds-data-dir", help="TFDS data directory for --tfds NAME:SPLIT")
    ap.add_argument(
        "--class-names",
        metavar="FILE",
        help="one line per class in label order (ImageFolder: sorted folder names; TFDS: label ids; "
        "--heldout: sorted entity ids): a name, an entity id, or tab-separated synonyms",
    )
    ap.add_argument(
        "--entities",
        help="entities.jsonl for class names given as entity ids (default: the run's data.entities)",
    )
    ap.add_argument(
        "--synonyms",
        action="store_true",
        help="average each class over all names of its entity (aliases, common and taxon names)",
    )
    ap.add_argument(
        "--templates",
        default=None,
        help="openai (80 ImageNet templates), photo, bare, or a file of templates with {c} "
        "(default: the templates the run trained with, else openai); bare names are always reported too",
    )
    ap.add_argument(
        "--name-style",
        action="append",
        metavar="STYLE",
        help="also score each class named in a name style: common, scientific, scientific+common, "
        "taxonomic, taxonomic+common (repeatable, a comma list, or all); side by side, under the fixed "
        "template set and, labelled apart, the best of the prompt sets",
    )
    ap.add_argument(
        "--tokenizer", help="tokenizer.json or CLIP merges file (default: the run's, or the export's)"
    )
    ap.add_argument(
        "--weights",
        choices=("auto", "ema", "raw"),
        default="auto",
        help="a run's weights: auto (its moving average when it kept one: config ema_decay > 0), ema, or "
        "raw (the trained weights, to compare with the average)",
    )
    ap.add_argument("--label", action="append", help="names of the runs in a comparison (one per --workdir)")
    ap.add_argument(
        "--out",
        metavar="DIR",
        help="where results go (default WORKDIR/eval/<set>-<digest of its path>; with several runs: the comparison)",
    )
