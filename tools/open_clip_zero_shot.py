"""Zero-shot top-1 of an export with nothing but open_clip's API (its loaders, preprocessing,
tokenizer and towers), on an `entitynet eval` result's ImageFolder, beside what `entitynet eval`
reported: the two numbers should be equal.

    .venv/bin/python tools/open_clip_zero_shot.py demo-out/export demo-out/train/eval/evalset-*/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(export: str, results: str) -> None:
    import open_clip
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from entitynet.text.templates import fill, read_templates

    r = json.loads(Path(results).read_text())
    zs = r["zero_shot"]
    # the set's classes and labels as `entitynet eval` read them (folders, labels.tsv, entity names);
    # everything that touches the model below is open_clip's
    from train.eval_data import image_folder
    from train.evaluate import read_entities

    run = json.loads((Path(r["workdir"]) / "config.json").read_text())
    data = image_folder(r["eval_source"].removeprefix("imagefolder:"), read_entities(run["data"]["entities"]))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{export}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{export}")
    model.eval()
    templates = read_templates(zs["templates"])
    with torch.no_grad():
        weights = []
        for synonyms in data.classes:
            z = model.encode_text(
                tokenizer([fill(t, n) for t in templates for n in synonyms]), normalize=True
            )
            z = z.reshape(len(templates), len(synonyms), -1).mean(1)
            z = z / z.norm(dim=-1, keepdim=True)
            weights.append(z.mean(0) / z.mean(0).norm())
        weights = torch.stack(weights)
        right = total = 0
        for start in range(0, data.size, 64):
            idx = range(start, min(start + 64, data.size))
            x = torch.stack([preprocess(data.load(i)) for i in idx])
            pred = (model.encode_image(x, normalize=True) @ weights.T).argmax(1).numpy()
            right += int(sum(int(p) == int(data.labels[i]) for p, i in zip(pred, idx, strict=True)))
            total += sum(int(data.labels[i]) >= 0 for i in idx)  # unlabelled images are left out, as ours
    print(
        f"open_clip API: top-1 {right / total:.2%} over {total} images; entitynet eval: "
        f"{zs['fixed_templates']['top1']:.2%} over {zs['images']} images ({zs['templates']} templates)"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
