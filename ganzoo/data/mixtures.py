"""The 2-D Gaussian mixtures of the mode-collapse benchmarks (PacGAN, Lin et al. 2018)."""
from __future__ import annotations

import math

import torch

from ..limits import fold_seed
from .base import Dataset


class GaussianMixture(Dataset):
    """Equal-weight isotropic Gaussians at ``centers`` with std ``sigma``, sampled on the fly."""

    is_image = False
    num_classes = 0

    def __init__(self, centers: torch.Tensor, sigma: float, name: str, epoch_size: int = 100_000):
        self.centers = centers.float()
        self.sigma = float(sigma)
        self.name = name
        self.shape = (centers.shape[1],)
        self.epoch_size = epoch_size  # nominal, only for "epochs" bookkeeping

    def __len__(self) -> int:
        return self.epoch_size

    def to(self, device) -> "GaussianMixture":
        self.centers = self.centers.to(device)
        return self

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` points and the index of the mode each came from."""
        dev = self.centers.device
        modes = torch.randint(0, len(self.centers), (n,), generator=generator, device=dev)
        noise = torch.randn(n, self.centers.shape[1], generator=generator, device=dev)
        return self.centers[modes] + self.sigma * noise, modes

    def batch(self, step, batch_size, seed, rank=0, world_size=1):
        g = torch.Generator(device=self.centers.device)
        g.manual_seed(fold_seed((seed * 1_000_003 + step) * 1009 + rank))
        x, _ = self.sample(batch_size, g)
        return x, None


def ring8(sigma: float = 0.01, radius: float = 1.0) -> GaussianMixture:
    """8 modes at angles k·2π/8 (k = 0..7, all distinct) on a circle of radius 1, σ = 0.01."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    centers = torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], dim=1)
    return GaussianMixture(centers, sigma, "ring8")


def grid25(sigma: float = 0.05) -> GaussianMixture:
    """25 modes at {-4, -2, 0, 2, 4}², σ = 0.05."""
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    centers = torch.cartesian_prod(axis, axis)
    return GaussianMixture(centers, sigma, "grid25")
