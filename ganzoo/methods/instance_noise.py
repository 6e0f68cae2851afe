"""Instance noise (Sønderby et al. 2016): Gaussian noise on every input of D, fading out."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import GanzooError
from .base import StepContext, TrainingMethod


def noise_std(std: float, until: float, step: int, total: int) -> float:
    """``std`` decayed linearly to 0 at the ``until`` share of ``total`` steps (pure: resume
    needs no state)."""
    if std == 0 or total <= 0:
        return 0.0
    end = until * total
    return std * (1.0 - min(step / end, 1.0)) if end > 0 else std


@dataclass
class InstanceNoise(TrainingMethod):
    """Instance noise (Sønderby et al. 2016): N(0, std²) added to D's real and fake inputs in both steps, decaying linearly to 0."""

    std: float = 0.1  # in data units
    until: float = 0.5  # share of the run after which the noise is gone

    def __post_init__(self):
        if not (math.isfinite(self.std) and self.std >= 0):
            raise GanzooError(f"instance-noise must be a finite std >= 0 in data units (0 = off), got {self.std}")
        if not 0.0 < self.until <= 1.0:
            raise GanzooError(f"instance-noise-until must be a share of the run in (0, 1] (0.5: the noise "
                              f"is gone halfway), got {self.until}")

    def transform(self, x: torch.Tensor, ctx: StepContext, which: str) -> torch.Tensor:
        std = noise_std(self.std, self.until, ctx.step, ctx.total)
        # float32 noise whatever x is: a bf16 fake gets the same noise as a float32 real
        return x + std * torch.randn_like(x, dtype=torch.float32) if std > 0 else x
