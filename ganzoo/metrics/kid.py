"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic
polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over disjoint subsets.

The literature averages over 100 *overlapping* random subsets of 1000; their
spread then says nothing about the error of the average. We split each set
into disjoint blocks instead (10 or more, at most 1000 samples each): every
block gives an independent unbiased estimate, so the mean is unbiased and
std/sqrt(blocks) is an honest standard error.
"""
from __future__ import annotations

import math

import torch

from .base import Metric


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """The unbiased MMD² estimate between samples ``x`` (m×d) and ``y`` (n×d); m, n ≥ 2."""
    x, y = x.double(), y.double()
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


class KID(Metric):
    """Unbiased MMD² (cubic kernel) between evaluator features, with its standard error (lower is better)."""

    name = "kid"
    better = {"kid": "lower"}
    needs = ("features",)

    def __init__(self, min_blocks: int = 10, max_block_size: int = 1000, seed: int = 0):
        self.min_blocks = min_blocks
        self.max_block_size = max_block_size
        self.seed = seed
        self.min_samples = 2 * min_blocks  # two samples per block at least

    def blocks(self, n_real: int, n_fake: int) -> int:
        return max(self.min_blocks, math.ceil(min(n_real, n_fake) / self.max_block_size))

    def measure(self, real, fake, **ctx):
        xr = self.require(real, "features", "reference")
        xf = self.require(fake, "features")
        g = torch.Generator().manual_seed(self.seed)
        k = self.blocks(len(xr), len(xf))
        size_r, size_f = min(len(xr) // k, self.max_block_size), min(len(xf) // k, self.max_block_size)
        perm_r, perm_f = torch.randperm(len(xr), generator=g), torch.randperm(len(xf), generator=g)
        values = torch.tensor([
            mmd2_unbiased(xr[perm_r[i * size_r:(i + 1) * size_r].to(xr.device)],
                          xf[perm_f[i * size_f:(i + 1) * size_f].to(xf.device)])
            for i in range(k)], dtype=torch.float64)
        return {"kid": values.mean(), "kid_se": values.std() / math.sqrt(k)}
