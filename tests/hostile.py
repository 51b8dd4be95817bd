"""The hostile-input suite's tally: each hostile case a test feeds is counted by `tried(kind)`, and
the session ends by printing how many cases of each kind were tried (summed over xdist workers:
each process appends to a file in a directory the controller made)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

ENV = "ENTITYNET_TEST_HOSTILE_DIR"


def tried(kind: str, n: int = 1) -> None:
    directory = os.environ.get(ENV)
    if not directory:
        return
    with open(Path(directory) / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps([kind, n]) + "\n")


def tally(directory: str | os.PathLike) -> Counter:
    counts: Counter = Counter()
    for path in Path(directory).glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            kind, n = json.loads(line)
            counts[kind] += n
    return counts
