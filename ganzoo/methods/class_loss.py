"""The auxiliary class loss of AC-GAN (Odena et al. 2017) and P2GAN (Han et al. 2021)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch.nn import functional as F

from ..errors import GanzooError
from .base import StepContext, TrainingMethod


def has_class_head(arch) -> bool:
    return arch.conditional and getattr(arch.discriminator, "has_class_head", False)


@dataclass
class ClassLoss(TrainingMethod):
    """Auxiliary class loss (AC-GAN, Odena et al. 2017; P2GAN, Han et al. 2021): D's class head learns real labels, G makes fakes it classifies as theirs."""

    weight: float = 1.0
    needs_class_logits = True

    def __post_init__(self):
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise GanzooError(f"class-weight must be >= 0, got {self.weight}")

    def check(self, arch) -> None:
        if not has_class_head(arch):
            from ..catalog import get_catalog

            heads = [e.name for e in get_catalog().entries("architecture") if has_class_head(e.obj)]
            raise GanzooError(f"--class-weight needs a conditional discriminator with a class "
                              f"head; {arch.name} has none (architectures with one: "
                              f"{', '.join(heads) or 'none'})")

    def d_terms(self, ctx: StepContext):
        return self.weight * F.cross_entropy(ctx.real_class_logits.float(), ctx.labels)

    def g_terms(self, ctx: StepContext):
        return self.weight * F.cross_entropy(ctx.fake_class_logits.float(), ctx.labels)
