"""The one piece of linear algebra FID needs, in float64 torch.

scipy's ``sqrtm`` (what pytorch-fid uses) works on a general matrix and can
return complex noise; here both covariances are symmetric PSD, so
tr sqrt(S1 S2) = tr sqrt(A S2 A) with A = sqrt(S1), and A S2 A is symmetric
PSD: its square-root trace is the sum of the square roots of its eigenvalues.
Two symmetric eigendecompositions, no scipy, no complex numbers.
"""
from __future__ import annotations

import torch


def sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues → 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """tr sqrt(s1 @ s2) for symmetric PSD ``s1``, ``s2`` (computed in float64)."""
    s1, s2 = s1.double(), s2.double()
    root = sqrt_psd(s1)
    middle = root @ s2 @ root
    middle = (middle + middle.T) / 2  # exact symmetry for eigvalsh
    return torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()


def mean_and_covariance(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean and unbiased covariance of the rows of ``x``, in float64."""
    x = x.double()
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)
