"""Where a Stacked MNIST model's KL comes from: each channel's digit frequencies.

    python benchmarks/stacked_channels.py MODEL [-n 26000] [--seed 0]

MODEL is a zoo id or an export directory of a model trained on ``stacked-mnist``. Draws
``n`` samples (as ``ganzoo eval --metrics stacked-modes`` does), classifies each channel
with the shipped MNIST evaluator and prints the joint KL to uniform (the metric), each
channel's digit histogram and its KL to uniform, the KL of the joint to the product of the
three channel histograms (what the channels' combination adds; its finite-sample bias is
about 999 / 2n), and the share of channels the classifier labels with confidence < 0.9.
The metric itself is ``ganzoo/metrics/stacked.py``; this only splits its figure up.
"""
from __future__ import annotations

import argparse

import torch

from ganzoo.images import to_uint8
from ganzoo.metrics.classes import kl_divergence
from ganzoo.metrics.evaluator import load_evaluator
from ganzoo.metrics.stacked import NUM_MODES, modes_of_digits, stacked_mode_statistics
from ganzoo.references import load_generator
from ganzoo.sampling import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("-n", type=int, default=26_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    G = load_generator(args.model)
    with torch.no_grad():
        x, _ = generate(G, args.n, seed=args.seed)
    images = to_uint8(x, G.output_range)
    n, _, h, w = images.shape
    _, logits = load_evaluator("mnist").embed(images.reshape(n * 3, 1, h, w), 1000)
    digits = logits.argmax(1).reshape(n, 3)
    confidence = logits.softmax(1).max(1).values.reshape(n, 3)

    print(f"joint: {stacked_mode_statistics(modes_of_digits(digits))}")
    uniform = torch.full((10,), 0.1, dtype=torch.double)
    marginals = []
    for c, name in enumerate("RGB"):
        p = torch.bincount(digits[:, c], minlength=10).double() / n
        marginals.append(p)
        print(f"channel {name}: KL {kl_divergence(p, uniform):.4f}  digits 0-9: "
              + " ".join(f"{v:.3f}" for v in p)
              + f"  confidence < 0.9: {float((confidence[:, c] < 0.9).double().mean()):.1%}")
    print(f"sum of the channels' KLs: {sum(kl_divergence(p, uniform) for p in marginals):.4f}")
    joint = torch.bincount(modes_of_digits(digits), minlength=NUM_MODES).double() / n
    product = (marginals[0][:, None, None] * marginals[1][None, :, None] * marginals[2][None, None, :]).flatten()
    print(f"KL(joint || product of the channels): {kl_divergence(joint, product):.4f} "
          f"(finite-sample bias ≈ {(NUM_MODES - 1) / (2 * n):.4f})")


if __name__ == "__main__":
    main()
