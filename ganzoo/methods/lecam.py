"""LeCam regularisation (Tseng et al., CVPR 2021): D's outputs held near their own history.

Tseng, Jiang, Zhang, Yang & Lu, "Regularizing Generative Adversarial Networks under Limited
Data" (arXiv:2104.03310), Eq. 3:

    R_LC = E_x[(D(x) - α_F)²] + E_z[(D(G(z)) - α_R)²]

where α_R and α_F are exponential moving averages of D's mean output on real and on fake
images. ``weight · R_LC`` is added to D's loss in every D step (never to G's). The paper shows
that it bounds the LeCam divergence that the GAN then minimises, and that it helps most with
limited data, combined with DiffAugment or ADA.

Details, from the official code (github.com/google/lecam-gan):

- the anchors are updated from the current batch's detached mean logits *before* R is
  computed (``biggan_cifar/losses.py`` and ``stylegan2/lecam_loss.py`` both do so);
- the moving averages start at 0 and are bias-corrected (``α = m / (1 - decay^t)`` after ``t``
  updates), as the StyleGAN2 version's ``assign_moving_average(..., zero_debias=True)``: the
  first step's anchors are that batch's means;
- the official code squares ``relu(D(x) - α_F)`` and ``relu(α_R - D(G(z)))``, penalising only a
  real scored above the fake anchor and a fake scored below the real anchor; the paper's
  Eq. 3 squares the plain differences. ``one_sided=false`` (the default) is the paper's,
  ``one_sided=true`` the code's; they differ only while D scores a real below α_F or a fake
  above α_R;
- ``weight`` depends on the loss and on the scale of D's logits: 0.3 in the official BigGAN
  CIFAR-10/100 scripts (hinge loss, ``--LC 0.3``), the default here; the StyleGAN2 scripts
  use far smaller values.

The issue asked for a *regulariser*; it is a training method because the regulariser
interface (``reg(D, real, fake, labels)``) holds no state, and the anchors are state: they
are saved in checkpoints (``state_dict``) so a resumed run goes on with the same anchors.
Under data parallelism the batch means are averaged over ranks first, so every rank holds
the same anchors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import GanzooError
from .base import StepContext, TrainingMethod


def lecam_term(real_logits: torch.Tensor, fake_logits: torch.Tensor, alpha_real, alpha_fake,
               one_sided: bool = False) -> torch.Tensor:
    """``E[(D(x) - α_F)²] + E[(D(G(z)) - α_R)²]`` (with ``one_sided``, each difference through a
    ReLU first: ``relu(D(x) - α_F)``, ``relu(α_R - D(G(z)))``)."""
    real_gap = real_logits.float() - alpha_fake
    fake_gap = alpha_real - fake_logits.float()
    if one_sided:
        real_gap, fake_gap = real_gap.relu(), fake_gap.relu()
    return real_gap.pow(2).mean() + fake_gap.pow(2).mean()


@dataclass
class LeCam(TrainingMethod):
    """LeCam regularisation (Tseng et al. 2021): D's loss + weight · (E[(D(real) − α_F)²] + E[(D(fake) − α_R)²]), α_R, α_F moving averages of D's mean outputs."""

    weight: float = 0.3  # the official BigGAN CIFAR setting (hinge loss)
    decay: float = 0.99  # of the moving averages α_R, α_F
    one_sided: bool = False  # the official code's relu variant instead of the paper's Eq. 3

    def __post_init__(self):
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise GanzooError(f"lecam weight must be a number >= 0 (0.3 in the paper's CIFAR runs), "
                              f"got {self.weight}")
        if not 0.0 <= self.decay < 1.0:
            raise GanzooError(f"lecam decay must be in [0, 1) (0.99 in the paper), got {self.decay}")
        self._ema: torch.Tensor | None = None  # biased moving averages (real, fake), from 0
        self._updates = 0

    def anchors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(α_R, α_F)``: the bias-corrected moving averages (0-dim tensors)."""
        if self._ema is None:
            zero = torch.zeros(())
            return zero, zero
        alpha = self._ema / (1.0 - self.decay ** self._updates)
        return alpha[0], alpha[1]

    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        """One step of the moving averages towards these logits' means (detached)."""
        means = torch.stack((real_logits.detach().float().mean(), fake_logits.detach().float().mean()))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(means)  # the same anchors on every rank
            means = means / torch.distributed.get_world_size()
        ema = torch.zeros_like(means) if self._ema is None else self._ema.to(means.device)
        self._ema = ema * self.decay + means * (1.0 - self.decay)
        self._updates += 1

    def d_terms(self, ctx: StepContext):
        if ctx.phase != "d" or ctx.real_logits is None or ctx.fake_logits is None:
            return None
        self.update(ctx.real_logits, ctx.fake_logits)
        alpha_real, alpha_fake = self.anchors()
        return self.weight * lecam_term(ctx.real_logits, ctx.fake_logits, alpha_real, alpha_fake,
                                        self.one_sided)

    def log(self) -> dict[str, float]:
        if self._ema is None:
            return {}
        alpha_real, alpha_fake = self.anchors()
        return {"alpha_real": float(alpha_real), "alpha_fake": float(alpha_fake)}

    def state_dict(self) -> dict:
        if self._ema is None:
            return {}
        alpha_real, alpha_fake = self.anchors()
        return {"ema": self._ema.detach().cpu().clone(), "updates": self._updates,
                # the anchors themselves, for a reader of the checkpoint (not read back)
                "alpha_real": alpha_real.detach().cpu().clone(),
                "alpha_fake": alpha_fake.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self._ema = state["ema"].detach().clone().float()
        self._updates = int(state["updates"])
