"""Per class: how widely a model's samples spread, against the real images of that class.

    python benchmarks/class_spread.py MODEL [-n 10000] [--seed 0]
    python benchmarks/class_spread.py --real DATASET [-n 10000] [--seed 0]

MODEL is a zoo id or an export directory of a model trained on a labelled image dataset
(fashion-mnist, mnist, cifar10). Draws ``n`` samples exactly as ``ganzoo eval -n N --seed S``
does, embeds them with the dataset's shipped evaluator and groups them by class: a
conditional model's by the label each was drawn for, an unconditional one's (or one whose
labels are not the classes, e.g. k-means cluster ids) by the class the evaluator predicts.
With ``--real``, the samples are ``n`` train-split images drawn as ``ganzoo eval --real``
draws them, grouped by the evaluator's prediction: the control for unconditional models.
The reference is the n test-split images ``ganzoo eval`` scores against, grouped by their
true labels (k-NN figures depend on the set sizes). Prints

- all classes: recall and precision (k = 3; the figures ``ganzoo eval`` reports for this n
  and seed) and each set's spread;
- where the classes sit: the RMS distance of the class means from their mean, for the
  reference and the samples (larger for the samples: classes pushed apart);
- per class: the counts, the spread of the real images and of the samples, their ratio,
  and recall and precision within the class.

Spread is the root-mean-square distance of a set's evaluator features from their mean. A
ratio well below 1 with high precision within the class is a model whose samples of a
class cover only part of it: the low recall of the zoo's conditional models.
"""
from __future__ import annotations

import argparse
import sys

import torch

from ganzoo import limits
from ganzoo.errors import GanzooError
from ganzoo.evaluation import labels_of, real_images, reference_features
from ganzoo.images import to_uint8
from ganzoo.metrics import Precision, Recall
from ganzoo.metrics.evaluator import load_evaluator
from ganzoo.references import load_generator
from ganzoo.sampling import generate
from ganzoo.catalog import create_dataset


def spread(features: torch.Tensor) -> float:
    """Root-mean-square distance of the rows of ``features`` from their mean."""
    return float((features - features.mean(0)).square().sum(1).mean().sqrt())


def class_rows(real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor,
               fake_labels: torch.Tensor, num_classes: int, k: int = 3) -> list[dict]:
    """One row per class holding at least k + 1 real and k + 1 generated feature vectors:
    counts, spreads, their ratio, and recall and precision within the class."""
    rows = []
    for c in range(num_classes):
        r, f = real[real_labels == c], fake[fake_labels == c]
        if min(len(r), len(f)) <= k:
            continue
        rows.append({"class": c, "n_real": len(r), "n_fake": len(f), "spread_real": spread(r),
                     "spread_fake": spread(f), "ratio": spread(f) / spread(r),
                     "recall": Recall(k).compute(r, f)["recall"],
                     "precision": Precision(k).compute(r, f)["precision"]})
    return rows


def centre_spread(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """RMS distance of the class means (of the classes present) from their mean."""
    means = torch.stack([features[labels == c].mean(0) for c in range(num_classes) if (labels == c).any()])
    return spread(means)


def samples(source: str, n: int, seed: int, real: bool):
    """``(dataset name, uint8 images, labels to group by or None, what they are)``."""
    if real:  # what `ganzoo eval --real` draws: n random train-split images
        return source, real_images(source, n, seed)[0], None, f"{n} train-split images"
    G = load_generator(source)
    name = (getattr(G, "export_config", None) or {}).get("dataset")
    x, labels = generate(G, n, seed=seed)  # the samples `ganzoo eval` scores for this n and seed
    if labels_of(getattr(G, "sampling", None)) is not None:
        labels = None  # cluster ids or the like: not the dataset's classes
    return name, to_uint8(x, G.output_range), labels, f"{n} samples"


def report(source: str, n: int, seed: int, real: bool = False) -> list[str]:
    name, images, labels, what = samples(source, n, seed, real)
    data = create_dataset(name, split="test")
    if not getattr(data, "is_image", True) or not data.num_classes or getattr(data, "default_metrics", None):
        raise GanzooError(f"{source} was trained on {name}: this script needs a labelled image dataset "
                          f"scored by FID (fashion-mnist, mnist, cifar10)")
    evaluator = load_evaluator(name)
    fake, logits = evaluator.embed(images, 500)
    grouped_by = "the labels drawn" if labels is not None else "the evaluator's predicted class"
    fake_labels = (labels if labels is not None else logits.argmax(1)).cpu()
    # the n images `ganzoo eval` uses, at the samples' size as it resizes them
    real, real_labels = reference_features(name, n, evaluator, image_size=images.shape[-1])
    lines = [f"{name}, {what}, seed {seed}; grouped by {grouped_by}",
             f"all: recall {Recall().compute(real, fake)['recall']:.4f}  "
             f"precision {Precision().compute(real, fake)['precision']:.4f}  "
             f"spread real {spread(real):.3f}  samples {spread(fake):.3f}",
             f"class centres' spread: real {centre_spread(real, real_labels, data.num_classes):.3f}  "
             f"samples {centre_spread(fake, fake_labels, data.num_classes):.3f}"]
    rows = class_rows(real, real_labels, fake, fake_labels, data.num_classes)
    names = list(getattr(data, "class_names", ()) or ())
    for row in rows:
        label = names[row["class"]] if row["class"] < len(names) else str(row["class"])
        lines.append(f"class {row['class']} ({label}): n {row['n_real']}/{row['n_fake']}  spread real "
                     f"{row['spread_real']:.3f}  samples {row['spread_fake']:.3f}  ratio {row['ratio']:.3f}  "
                     f"recall {row['recall']:.4f}  precision {row['precision']:.4f}")
    if rows:
        mean = sum(r["ratio"] for r in rows) / len(rows)
        lines.append(f"mean spread ratio over {len(rows)} classes: {mean:.3f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("model", help="a zoo id or an export directory (with --real: a dataset name)")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", action="store_true", help="score train-split images instead of a model")
    args = ap.parse_args()
    try:
        limits.check("n", args.n, "-n")  # the bounds `ganzoo eval` enforces
        limits.check("seed", args.seed)
        print("\n".join(report(args.model, args.n, args.seed, args.real)))
    except GanzooError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
