"""Mode coverage on the 2-D mixtures, exactly as in PacGAN (Lin et al. 2018, Table 1).

Protocol: draw 2,500 samples. A sample is *high-quality* when it lies within
3σ of its nearest mode centre. A mode is *covered* when it has at least one
high-quality sample. ``kl`` is the reverse KL divergence KL(p || u) between
p, the histogram of the high-quality samples over their nearest modes, and
u, the uniform distribution over the K modes:

    kl = Σ_k p_k log(p_k K),   empty modes (p_k = 0) contribute 0.

This direction (the samples' distribution first) stays finite when modes are
missing; it is 0 for a perfectly balanced model and log K when every
high-quality sample sits in one mode. With no high-quality sample at all p
is undefined and ``kl`` is reported as log K, its largest possible value.

``spread`` is not PacGAN's: the root-mean-square offset, per axis and in units
of σ, of the high-quality samples from their nearest centre,

    spread = sqrt(mean ‖x − c(x)‖² / D) / σ   over high-quality x (0 when there is none).

Samples of the mixture itself score sqrt(E[χ²₂ | χ²₂ ≤ 9] / 2) ≈ 0.974 (the 3σ
cut trims the tails). A generator whose modes are narrower than the data's
scores less, down to 0 for modes collapsed to points, which the three
figures above do not see: such a model covers every mode with 100 % of its
samples high-quality.
"""
from __future__ import annotations

import math

import torch

from ..errors import GanzooError
from .base import Metric
from .classes import kl_divergence

PACGAN_SAMPLES = 2500


def mode_statistics(points: torch.Tensor, centers: torch.Tensor, sigma: float,
                    radius_in_sigmas: float = 3.0) -> dict[str, float]:
    """``modes`` covered, ``hq_fraction`` of high-quality samples, reverse ``kl`` to uniform and
    the ``spread`` of the high-quality samples about their centres (in σ)."""
    if points.dim() != 2 or points.shape[1] != centers.shape[1]:
        raise GanzooError(f"modes: samples of shape {tuple(points.shape[1:])} do not match "
                          f"{centers.shape[1]}-D mode centres")
    distance, nearest = torch.cdist(points.double(), centers.double().to(points.device)).min(1)
    high_quality = distance <= radius_in_sigmas * sigma
    counts = torch.bincount(nearest[high_quality].cpu(), minlength=len(centers)).double()
    inside = distance[high_quality]
    spread = float(inside.square().mean().div(points.shape[1]).sqrt() / sigma) if len(inside) else 0.0
    if counts.sum() > 0:
        kl = kl_divergence(counts / counts.sum(), torch.full_like(counts, 1 / len(centers)))
    else:
        kl = math.log(len(centers))
    return {"modes": int((counts > 0).sum()), "hq_fraction": float(high_quality.double().mean()),
            "kl": kl, "spread": spread}


class Modes(Metric):
    """2-D mixtures: modes covered, share of samples within 3σ of a mode, reverse KL to uniform (PacGAN)."""

    name = "modes"
    better = {"modes": "higher", "hq_fraction": "higher", "kl": "lower"}
    needs = ("points",)
    min_samples = 1
    uses_reference = False

    def __init__(self, radius_in_sigmas: float = 3.0):
        self.radius_in_sigmas = float(radius_in_sigmas)

    def measure(self, real, fake, centers=None, sigma=None, **ctx):
        if centers is None or sigma is None:
            raise GanzooError("modes needs a mixture dataset with mode centres (ring8, grid25)")
        return mode_statistics(self.require(fake, "points"), centers, sigma, self.radius_in_sigmas)
