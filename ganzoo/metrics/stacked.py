"""Mode counting on Stacked MNIST, as in VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018, Table 2).

Protocol: draw 26,000 samples (3-channel images). Classify each channel, as a
1-channel image, with an MNIST classifier (here the shipped MNIST evaluator,
``registry/evaluators/mnist``; images of another size are resized to its
28×28 first). A sample's mode is ``100·d_R + 10·d_G + d_B``. Report

- ``modes``: modes with at least one sample (out of 1,000);
- ``modes_fraction``: ``modes / 1000``;
- ``kl``: KL(p ‖ u) = Σ_k p_k log(1000 p_k), p the samples' mode histogram
  (counts / n), u uniform over the 1,000 modes, empty modes contributing 0.
  This is the direction of PacGAN's code (``KLD(p, q)`` with p the normalised
  histogram and q = 1/1000): 0 for a perfectly balanced histogram, log 1000 ≈
  6.908 when every sample falls in one mode.

Real data does not score KL = 0 at 26,000 samples: a multinomial histogram over
K = 1,000 bins has E[KL] ≈ (K − 1) / (2n) ≈ 0.019, and MNIST's digit classes are
not exactly balanced (3·KL(p_digit ‖ u_10), a few thousandths). Published
figures (PacGAN Table 2): DCGAN 99 modes / KL 3.40, VEEGAN 150 / 2.95,
PacDCGAN2 1,000 / 0.06.

The metric needs only the samples' uint8 ``images`` (it runs the classifier
itself, per channel), so :func:`ganzoo.evaluation.evaluate` loads no
evaluator for it and it has no reference set. It applies to any 3-channel
image model; it is meaningful for models trained on ``stacked-mnist``.
"""
from __future__ import annotations

import math

import torch

from ..errors import GanzooError
from .base import Metric
from .classes import kl_divergence

NUM_MODES = 1000
PROTOCOL_SAMPLES = 26_000  # VEEGAN / PacGAN
CHANNEL_WEIGHTS = (100, 10, 1)
MAX_KL = math.log(NUM_MODES)  # a fully collapsed model: every sample in one mode


def _checked_digits(digits: torch.Tensor, nonempty: bool = False) -> torch.Tensor:
    """``digits`` as a long CPU tensor after checking it is N×3 (N ≥ 1 with ``nonempty``)."""
    if digits.dim() != 2 or digits.shape[1] != 3 or (nonempty and len(digits) == 0):
        need = "N×3 channel digits (N ≥ 1)" if nonempty else "N×3 channel digits"
        raise GanzooError(f"stacked-modes: expected {need}, got shape {tuple(digits.shape)}")
    return digits.long().cpu()


def modes_of_digits(digits: torch.Tensor) -> torch.Tensor:
    """N×3 per-channel digits (R, G, B) → N mode ids ``100·d_R + 10·d_G + d_B``."""
    return (_checked_digits(digits) * torch.tensor(CHANNEL_WEIGHTS)).sum(1)


def digits_of_modes(modes: torch.Tensor) -> torch.Tensor:
    """N mode ids → N×3 per-channel digits (R, G, B): the inverse of :func:`modes_of_digits`."""
    modes = modes.long().cpu().flatten()
    if len(modes) and (int(modes.min()) < 0 or int(modes.max()) >= NUM_MODES):
        raise GanzooError(f"stacked-modes: mode ids must lie in 0..{NUM_MODES - 1}")
    return torch.stack([modes // w % 10 for w in CHANNEL_WEIGHTS], 1)


def digit_histograms(digits: torch.Tensor) -> list[torch.Tensor]:
    """N×3 per-channel digits (N ≥ 1, each 0..9) → one normalised 10-bin histogram (float64)
    per channel."""
    digits = _checked_digits(digits, nonempty=True)
    if int(digits.min()) < 0 or int(digits.max()) > 9:
        raise GanzooError("stacked-modes: channel digits must lie in 0..9")
    return [torch.bincount(digits[:, c], minlength=10).double() / len(digits) for c in range(3)]


def channel_kls(digits: torch.Tensor) -> list[float]:
    """KL(channel's digit histogram ‖ uniform over 10) for each channel of N×3 digits."""
    uniform = torch.full((10,), 0.1, dtype=torch.double)
    return [kl_divergence(p, uniform) for p in digit_histograms(digits)]


def stacked_mode_statistics(modes: torch.Tensor, num_modes: int = NUM_MODES) -> dict[str, float]:
    """``modes`` covered (count ≥ 1), ``modes_fraction`` and ``kl`` = KL(histogram ‖ uniform)
    of a vector of mode ids."""
    modes = modes.long().cpu().flatten()
    if len(modes) == 0:
        raise GanzooError("stacked-modes needs at least 1 sample")
    if int(modes.min()) < 0 or int(modes.max()) >= num_modes:
        raise GanzooError(f"stacked-modes: mode ids must lie in 0..{num_modes - 1}")
    counts = torch.bincount(modes, minlength=num_modes).double()
    p = counts / counts.sum()
    covered = int((counts > 0).sum())
    return {"modes": covered, "modes_fraction": covered / num_modes,
            "kl": kl_divergence(p, torch.full_like(p, 1.0 / num_modes))}


def classify_channels(images: torch.Tensor, evaluator, batch_size: int = 1000) -> torch.Tensor:
    """N×3×H×W uint8 images → N×3 digits: each channel classified as a 1-channel image."""
    return channel_logits(images, evaluator, batch_size).argmax(2)


def channel_logits(images: torch.Tensor, evaluator, batch_size: int = 1000) -> torch.Tensor:
    """N×3×H×W uint8 images → N×3×10 digit logits, each channel classified as a 1-channel image."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise GanzooError(f"stacked-modes takes 3-channel images (Stacked MNIST), got samples of "
                          f"shape {tuple(images.shape[1:])}")
    if images.dtype != torch.uint8:
        raise GanzooError(f"stacked-modes takes uint8 images, got {images.dtype}")
    opts = evaluator.options
    if opts.in_channels != 1 or opts.num_classes != 10:
        raise GanzooError(f"stacked-modes needs a 1-channel 10-class digit classifier; the "
                          f"{evaluator.dataset} evaluator takes {opts.in_channels} channels and "
                          f"has {opts.num_classes} classes")
    n, _, h, w = images.shape
    singles = images.reshape(n * 3, 1, h, w)  # sample-major: R, G, B of sample 0, then sample 1 ...
    _, logits = evaluator.embed(singles, batch_size)
    return logits.reshape(n, 3, opts.num_classes)


class StackedModes(Metric):
    """Stacked MNIST: modes covered of 1,000 and KL(mode histogram ‖ uniform) (VEEGAN/PacGAN).

    Each channel is classified by the MNIST evaluator; the protocol draws 26,000 samples."""

    name = "stacked-modes"
    better = {"modes": "higher", "modes_fraction": "higher", "kl": "lower"}
    needs = ("images",)
    min_samples = 1
    uses_reference = False
    protocol_samples = PROTOCOL_SAMPLES  # the sample count published figures use

    def __init__(self, evaluator="mnist", batch_size: int = 1000):
        self.evaluator = evaluator  # a dataset with a shipped evaluator, a directory, or an Evaluator
        self.batch_size = int(batch_size)
        self._loaded = None

    def _classifier(self, device: str):
        from .evaluator import Evaluator, load_evaluator

        if isinstance(self.evaluator, Evaluator):
            return self.evaluator.to(device)
        if self._loaded is None or self._loaded[0] != device:
            self._loaded = (device, load_evaluator(self.evaluator, device=device))
        return self._loaded[1]

    def measure(self, real, fake, device: str = "cpu", **ctx):
        images = self.require(fake, "images")
        digits = classify_channels(images, self._classifier(device), self.batch_size)
        return stacked_mode_statistics(modes_of_digits(digits))
