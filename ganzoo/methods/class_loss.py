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
    # G's term alone (default: weight); g_weight=0 keeps the head's training on real labels
    # and drops G's term. The loss narrows each class (benchmarks/class_spread.py), mostly
    # through D's head: on cgan, g_weight=0 kept most of the narrowing (docs/benchmarks.md).
    g_weight: float | None = None
    needs_class_logits = True

    def __post_init__(self):
        for name in ("weight", "g_weight"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                label = "class-weight" if name == "weight" else "class-loss g_weight"
                raise GanzooError(f"{label} must be >= 0, got {value}")

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
        weight = self.weight if self.g_weight is None else self.g_weight
        if weight == 0:
            return None
        return weight * F.cross_entropy(ctx.fake_class_logits.float(), ctx.labels)
