"""Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017)."""
from __future__ import annotations

import torch

from ..errors import GanzooError
from .base import Metric, SampleSet
from .linalg import mean_and_covariance, trace_sqrt_product


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor,
                     cov2: torch.Tensor) -> float:
    """||mu1 - mu2||² + tr(cov1 + cov2 - 2 sqrt(cov1 cov2))."""
    mu1, mu2, cov1, cov2 = mu1.double(), mu2.double(), cov1.double(), cov2.double()
    value = ((mu1 - mu2) ** 2).sum() + cov1.trace() + cov2.trace() - 2 * trace_sqrt_product(cov1, cov2)
    # Identical sets give 0 up to float64 round-off, which may be a tiny negative number.
    return max(float(value), 0.0)


class FID(Metric):
    """Fréchet distance between evaluator-feature Gaussians of reference and samples (lower is better)."""

    name = "fid"
    better = {"fid": "lower"}
    needs = ("features",)
    min_samples = 2

    def check(self, real: SampleSet, fake: SampleSet) -> None:
        super().check(real, fake)
        dim = self.require(fake, "features").shape[1]
        for which, samples in (("generated", fake), ("reference", real)):
            if len(samples) <= dim:
                raise GanzooError(f"fid needs more samples than feature dimensions ({dim}) for a "
                                  f"full-rank covariance; got {len(samples)} {which} samples")

    def measure(self, real, fake, **ctx):
        mu_r, cov_r = mean_and_covariance(self.require(real, "features", "reference"))
        mu_f, cov_f = mean_and_covariance(self.require(fake, "features"))
        return {"fid": frechet_distance(mu_r, cov_r, mu_f, cov_f)}
