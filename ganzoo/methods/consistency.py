"""Balanced consistency regularisation, bCR (Zhao et al., AAAI 2021): D should not care about
a small translation (or flip) of what it reads, real or fake.

Zhao, Zhang, Chen, Singh & Zhang, "Improved Consistency Regularization for GANs"
(arXiv:2002.04724), Eq. 2: in every D step

    L_D += λ_real · E_x‖D(x) − D(T(x))‖² + λ_fake · E_z‖D(G(z)) − D(T(G(z)))‖²

with T a random augmentation and λ_real = λ_fake = 10 in the paper. CR-GAN (Zhang et al.
2020) had only the real term; on reals alone D learns that *augmented* images are real, and
the augmentation leaks into G's samples; the fake term balances it. T in the paper's CIFAR-10
runs is a horizontal flip and a translation of a few pixels; here T is
:func:`ganzoo.methods.diffaugment.diff_augment`'s translation (the same integer shift DiffAugment uses,
up to ``translation_ratio`` of the size, the border filled with the middle of the range) and,
with ``flip``, a horizontal flip with probability ½.

Unlike DiffAugment, bCR does not change what D's adversarial loss reads, and G's step is
untouched: the term only asks D to give an image and its shifted copy the same score. Both
sides of each difference carry gradient, as in the paper (no stop-gradient). The term reads
D's inputs as the step prepared them (``ctx.real``, ``ctx.fake``): with DiffAugment or ADA in
the stack, in any order, those are the augmented images D scored. It has no state: T is drawn
from torch's default generator, which the trainer seeds per step, so resume is bit-exact.

Cost: two more D forwards and backwards per D update (one on T(real), one on T(fake)). The
default ``flip`` follows the paper's CIFAR-10 runs; a mirrored digit is not data, so use
``flip=false`` on MNIST-like sets. The shifted-in border is mid-grey (DiffAugment's default
fill), which MNIST-like images, black around the object, never show.

Precision: the extra D calls run in float32 on float32 copies of the inputs (a bf16 fake from
an autocast G included), as the trainer's regularisers do; the difference is taken against
D's logits of the step, which under autocast carry bf16 rounding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import GanzooError
from .base import StepContext, TrainingMethod
from .diffaugment import (TRANSLATION_RATIO, diff_augment, keep_memory_format, model_range,
                          require_image_dataset, require_images)


def consistency_transform(x: torch.Tensor, ratio: float = TRANSLATION_RATIO, flip: bool = True,
                          mid: float = 0.0) -> torch.Tensor:
    """bCR's T: each image flipped left-right with probability ½ (``flip``), then shifted by up
    to ``ratio`` of its size, the uncovered border filled with ``mid``."""
    if flip:  # a mirror does not depend on where the range is centred
        flipped = torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5
        x = keep_memory_format(torch.where(flipped, x.flip(3), x), x)
    # DiffAugment's shift, centring on mid and keeping the memory format as it does there
    return diff_augment(x, ("translation",), mid, options={"translation": {"ratio": ratio}}) if ratio else x


@dataclass
class BalancedConsistency(TrainingMethod):
    """bCR (Zhao et al. 2021): D's loss + λ_real·E(D(x) − D(T(x)))² + λ_fake·E(D(G(z)) − D(T(G(z))))², T a random flip and translation."""

    real_weight: float = 10.0  # λ_real (the paper: 10)
    fake_weight: float = 10.0  # λ_fake (the paper: 10)
    translation_ratio: float = TRANSLATION_RATIO  # T's largest shift, a share of the size
    flip: bool = True  # T also flips left-right with probability 1/2

    def __post_init__(self):
        for name in ("real_weight", "fake_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise GanzooError(f"bcr {name} must be a number >= 0 (10 in the paper), got {value}")
        if not 0.0 <= self.translation_ratio <= 0.5:
            raise GanzooError(f"bcr translation_ratio must be in [0, 0.5], got {self.translation_ratio}")
        if not self.translation_ratio and not self.flip:
            raise GanzooError("bcr needs a transform: translation_ratio > 0 or flip=true")
        if not self.real_weight and not self.fake_weight:
            raise GanzooError("bcr with real_weight = fake_weight = 0 does nothing; leave the method out instead")

    def wrap_dataset(self, data, seed: int):
        require_image_dataset(data, "bcr")
        return data

    def d_terms(self, ctx: StepContext):
        if ctx.phase != "d":
            return None
        D, mid = ctx.discriminator, model_range(ctx)[0]
        term = None
        for weight, x, logits in ((self.real_weight, ctx.real, ctx.real_logits),
                                  (self.fake_weight, ctx.fake, ctx.fake_logits)):
            if not weight:
                continue
            require_images(x, "bcr")
            self._check_shift(x)
            moved = D(consistency_transform(x.float(), self.translation_ratio, self.flip, mid), ctx.labels)
            gap = weight * (logits.float() - moved.float()).pow(2).mean()
            term = gap if term is None else term + gap
        return term

    def _check_shift(self, x: torch.Tensor) -> None:
        """A ratio that rounds to a 0-px shift at this size, with no flip, would leave T the
        identity and the term 0 for the whole run: refuse it on the first step."""
        if not self.flip and max(int(x.shape[-2] * self.translation_ratio + 0.5),
                                 int(x.shape[-1] * self.translation_ratio + 0.5)) == 0:
            raise GanzooError(f"bcr translation_ratio {self.translation_ratio} shifts {tuple(x.shape[-2:])} "
                              f"images by 0 px and flip is off, so T does nothing; raise the ratio "
                              f"(>= {1 / (2 * max(x.shape[-2:])):.3g}) or set flip=true")
