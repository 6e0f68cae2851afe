"""Top-k training (Sinha et al. 2020): the G step learns from the fakes D scores highest."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GanzooError
from .base import StepContext, TrainingMethod


def top_k_logits(fake_logits: torch.Tensor, share: float, pack: int = 1) -> torch.Tensor:
    """The ``⌊share·N⌋`` highest of N fake logits (whole packs of ``pack`` repeated logits, at
    least one pack). Selection is by D's score, as in the paper, whatever the loss. The loss
    sees only the kept logits, so the others get no direct gradient (a batch-norm D still
    couples them through its batch statistics); for the relativistic loss the fake baseline
    becomes the mean of the kept fakes."""
    if share >= 1.0:
        return fake_logits
    n = len(fake_logits)
    k = max(pack, int(share * n + 1e-9) // pack * pack)  # + 1e-9: 0.29 * 100 is 28.999...
    return fake_logits.topk(k, dim=0).values


@dataclass
class TopK(TrainingMethod):
    """Top-k training (Sinha et al. 2020): G's loss sees only the highest-scored share of the fakes."""

    fraction: float = 0.5  # share of the fake batch G learns from (1 = all: off)

    def __post_init__(self):
        if not 0.0 < self.fraction <= 1.0:
            raise GanzooError(f"top-k must be a share of the batch in (0, 1] (0.5 keeps the "
                              f"top half), got {self.fraction}")

    def g_logits(self, fake_logits: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        return top_k_logits(fake_logits, self.fraction, ctx.pack)
