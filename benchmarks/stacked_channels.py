"""Where a Stacked MNIST model's KL comes from: each channel's digit frequencies.

    python benchmarks/stacked_channels.py MODEL [-n 26000] [--seed 0]
    python benchmarks/stacked_channels.py --real [--held-out] [-n 26000] [--seed 0]

MODEL is a zoo id or an export directory of a model trained on ``stacked-mnist``. Draws
``n`` samples exactly as ``ganzoo eval --metrics stacked-modes -n N --seed S`` does (with
``--real``: the ``n`` train-split images ``ganzoo eval --real --dataset stacked-mnist`` scores,
the control a model is compared with; with ``--held-out`` as well: ``n`` stacked images drawn
from the evaluator's own test digits, the MNIST digits it was not trained on, a control for a
generator whose digits are new to the classifier),
classifies each channel with the shipped MNIST evaluator (``channel_logits``, the metric's
own classification) and prints

- the metric: modes covered and KL(mode histogram ‖ uniform);
- per channel: its digit histogram, its KL to uniform and the share of its digits the
  classifier labels with confidence < 0.9;
- the three channels pooled, split by that confidence: whether a skew is in the clean digits
  (the generator's mass) or only in the ill-formed ones (which the classifier files anywhere);
- KL(joint ‖ product of the three channel histograms): what the channels' combination adds.
  The metric's KL is exactly the channels' KLs plus this. For independent channels its
  finite-sample bias is about (1000 − 1 − 3·9) / 2n (0.019 at the protocol's 26,000).
- for real images (``--real``), the same KL from their true labels and how often the
  classifier agrees with them: what the digits' class mix gives without classifier errors.
"""
from __future__ import annotations

import argparse
import sys

import torch

from ganzoo import limits
from ganzoo.errors import GanzooError
from ganzoo.evaluation import real_images
from ganzoo.images import to_uint8
from ganzoo.metrics.classes import kl_divergence
from ganzoo.metrics.evaluator import load_evaluator
from ganzoo.metrics.stacked import (NUM_MODES, PROTOCOL_SAMPLES, channel_kls, channel_logits, digit_histograms,
                                    digits_of_modes, modes_of_digits, stacked_mode_statistics)
from ganzoo.references import load_generator
from ganzoo.sampling import generate


def held_out_images(evaluator, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` stacked images (uint8) whose channels are drawn from the digits of the evaluator's
    ``test_split`` (e.g. ``test[8000:]``): digits its classifier never saw in training. Where
    the stacked data come from MNIST's train split and the evaluator from its test split, the
    ``--real`` images are already new to it; here both come from the test split. Returns the
    images, their true modes and a line saying what they are."""
    from ganzoo.data.stacked import stack_digits
    from ganzoo.metrics.training import load_split

    spec = evaluator.card["test_split"]
    digits = load_split("mnist", spec)
    images, modes = stack_digits(digits.data, digits.labels, n, seed)
    return images, modes, f"{n} images stacked from mnist {spec} ({len(digits)} digits the evaluator was not trained on)"


def true_label_lines(modes: torch.Tensor, digits: torch.Tensor) -> list[str]:
    """What real images' own labels score, against what the classifier says: the part of the
    KL that is the digits' class mix, not the classifier's errors."""
    true_digits = digits_of_modes(modes)
    stats = stacked_mode_statistics(modes)
    agreement = float((digits == true_digits).double().mean())
    return [f"true labels: modes {stats['modes']}  kl {stats['kl']:.6f}  sum of the channels' kl "
            f"{sum(channel_kls(true_digits)):.6f}  classifier agrees on {agreement:.4f} of the channels"]


def split_kl(model: str | None, n: int, seed: int, held_out: bool = False) -> list[str]:
    """The report's lines for ``model``, or for real images when it is None (train-split
    stacked images, or with ``held_out`` ones built from the evaluator's test digits)."""
    evaluator = load_evaluator("mnist")
    true_modes = None
    if model is None and held_out:
        images, true_modes, what = held_out_images(evaluator, n, seed)
    elif model is None:
        images, true_modes = real_images("stacked-mnist", n, seed)  # uint8, as `ganzoo eval --real` draws them
        what = f"{n} stacked-mnist train-split images, as `ganzoo eval --real` draws them"
    else:
        G = load_generator(model)
        x, _ = generate(G, n, seed=seed)  # the samples `ganzoo eval` scores for this n and seed
        images = to_uint8(x, G.output_range)
        what = f"{n} samples of {model}"
    logits = channel_logits(images, evaluator)
    digits = logits.argmax(2)
    confidence = logits.softmax(2).max(2).values
    modes = modes_of_digits(digits)
    stats = stacked_mode_statistics(modes)
    lines = [f"images: {what}", f"metric: modes {stats['modes']}  kl {stats['kl']:.6f}"]
    marginals = digit_histograms(digits)
    kls = channel_kls(digits)
    for c, name in enumerate("RGB"):
        lines.append(f"channel {name}: kl {kls[c]:.6f}  digits 0-9: "
                     + " ".join(f"{v:.4f}" for v in marginals[c])
                     + f"  confidence < 0.9: {float((confidence[:, c] < 0.9).double().mean()):.4f}")
    lines.append(f"sum of the channels' kl: {sum(kls):.6f}")
    for name, chosen in (("confidence >= 0.9", confidence >= 0.9), ("confidence < 0.9", confidence < 0.9)):
        pooled = torch.bincount(digits[chosen], minlength=10).double()  # the three channels together
        lines.append(f"pooled channels, {name}: {int(chosen.sum())} digits, 0-9: "
                     + " ".join(f"{v:.4f}" for v in pooled / max(1.0, float(pooled.sum()))))
    joint = torch.bincount(modes, minlength=NUM_MODES).double() / n
    product = (marginals[0][:, None, None] * marginals[1][None, :, None] * marginals[2][None, None, :]).flatten()
    lines.append(f"kl(joint || product of the channels): {kl_divergence(joint, product):.6f}  "
                 f"(finite-sample bias for independent channels ≈ {(NUM_MODES - 1 - 27) / (2 * n):.4f})")
    if true_modes is not None:
        lines += true_label_lines(true_modes.long(), digits)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("model", nargs="?", help="a zoo id or an export directory of a stacked-mnist model")
    ap.add_argument("--real", action="store_true", help="report real train-split images instead of a model")
    ap.add_argument("--held-out", action="store_true",
                    help="with --real: stack the evaluator's test digits, which it was not trained on")
    ap.add_argument("-n", type=int, default=PROTOCOL_SAMPLES)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if (args.model is None) == (not args.real):
        sys.exit("error: give a MODEL or --real (exactly one)")
    if args.held_out and not args.real:
        sys.exit("error: --held-out goes with --real (it chooses which real digits are stacked)")
    try:
        limits.check("n", args.n, "-n")  # the bounds `ganzoo eval` enforces
        limits.check("seed", args.seed)
        print("\n".join(split_kl(args.model, args.n, args.seed, args.held_out)))
    except GanzooError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
