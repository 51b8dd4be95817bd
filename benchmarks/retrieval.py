"""Benchmark: retrieval metrics at evaluation scale (25k images x 125k texts in minutes
on a CPU), against the way open_clip's training loop computes them.

    .venv/bin/python benchmarks/retrieval.py
    .venv/bin/python benchmarks/retrieval.py --images 25000 --texts-per-image 5 --dim 512

Ours (`train/evaluate.py: retrieval`): chunked similarity blocks and ranks counted on the device
(how many candidates score above the true one), never a sort. The peer, open_clip's
`get_clip_metrics` generalised to several texts per image: the full similarity matrix, an argsort of
every row, and the position of the true pair. The full matrix of the full set (12.5 GB at 25k x
125k) does not fit the peer's approach here, so the peer runs on a 1/`--peer-fraction` sample of
images and texts, its time is scaled by the number of similarity entries (a lower bound: the
argsort is n log n per row), and both must give the same metrics on that sample.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.evaluate import retrieval


def embeddings(images: int, per_image: int, dim: int, seed: int = 0):
    """Unit image vectors and, for each, `per_image` noisy unit copies as its texts."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(images, dim)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    owner = np.repeat(np.arange(images), per_image)
    txt = img[owner] + rng.normal(scale=1.2 / np.sqrt(dim) * 8, size=(len(owner), dim)).astype(np.float32)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    return img, txt, owner


def peer(img: np.ndarray, txt: np.ndarray, owner: np.ndarray, ks=(1, 5, 10)) -> dict:
    """Full matrix + argsort per row (open_clip's get_clip_metrics, several texts per image)."""
    logits = img @ txt.T  # (images, texts)
    order = np.argsort(-logits, axis=1)  # every row sorted
    i_ranks = np.array([np.flatnonzero(owner[order[i]] == i)[0] for i in range(len(img))])
    order_t = np.argsort(-logits.T, axis=1)
    t_ranks = np.array([np.flatnonzero(order_t[j] == owner[j])[0] for j in range(len(txt))])
    out = {}
    for name, ranks in (("image_to_text", i_ranks), ("text_to_image", t_ranks)):
        out[name] = {f"R@{k}": float(np.mean(ranks < k)) for k in ks}
        out[name]["median_rank"] = float(np.median(ranks) + 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=25_000)
    ap.add_argument("--texts-per-image", type=int, default=5)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument(
        "--peer-fraction", type=int, default=10, help="the peer runs on 1/N of the images and texts"
    )
    args = ap.parse_args()

    img, txt, owner = embeddings(args.images, args.texts_per_image, args.dim)
    print(f"{len(img):,} images x {len(txt):,} texts, dim {args.dim}")
    retrieval(img[:64], txt[:320], owner[:320])  # compile outside the timing
    t0 = time.perf_counter()
    ours = retrieval(img, txt, owner)
    ours_s = time.perf_counter() - t0
    print(
        f"ours: {ours_s:.1f} s  image->text R@1 {ours['image_to_text']['R@1']:.2%}, "
        f"text->image R@1 {ours['text_to_image']['R@1']:.2%}, median ranks "
        f"{ours['image_to_text']['median_rank']:g} / {ours['text_to_image']['median_rank']:g}"
    )

    n = len(img) // args.peer_fraction
    s_img, s_txt, s_owner = embeddings(n, args.texts_per_image, args.dim, seed=1)
    t0 = time.perf_counter()
    theirs = peer(s_img, s_txt, s_owner)
    peer_sample_s = time.perf_counter() - t0
    mine = retrieval(s_img, s_txt, s_owner)
    same = all(
        abs(mine[d][m] - theirs[d][m]) < 1e-9 for d in ("image_to_text", "text_to_image") for m in theirs[d]
    )
    scale = (len(img) * len(txt)) / (n * len(s_txt))
    peer_s = peer_sample_s * scale
    print(
        f"peer (full matrix + argsort): {peer_sample_s:.1f} s on {n:,} x {len(s_txt):,}, "
        f"scaled x{scale:.0f} to the full set: >= {peer_s:.0f} s; same metrics on the sample: {same}"
    )
    print(f"ratio: ours is {peer_s / ours_s:.1f}x faster ({ours_s / 60:.1f} min for the full set)")
    if not same:
        sys.exit("the two implementations disagree")


if __name__ == "__main__":
    main()
