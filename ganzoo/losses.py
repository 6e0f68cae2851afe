"""Adversarial losses and discriminator regularisers, all computed from logits.

Every formula works on raw discriminator outputs (logits) through
``softplus``/``logsigmoid``, never ``log(sigmoid(x))``, so it stays finite for
confident discriminators. With D(x) = sigmoid(l):
``-log D(x) = softplus(-l)`` and ``-log(1 - D(x)) = softplus(l)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .interfaces import AdversarialLoss, Regularizer, pack_of


class Minimax(AdversarialLoss):
    """The original GAN objective min_G max_D E[log D(x)] + E[log(1 - D(G(z)))] (saturating G loss)."""

    def d_loss(self, real_logits, fake_logits):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits, real_logits=None):
        # G minimises E[log(1 - D(G(z)))] = -E[softplus(l_fake)].
        return -F.softplus(fake_logits).mean()


class NonSaturating(Minimax):
    """Goodfellow's non-saturating variant: G maximises E[log D(G(z))]."""

    def g_loss(self, fake_logits, real_logits=None):
        return F.softplus(-fake_logits).mean()


class Hinge(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D on max(0, 1 ∓ l), G = -E[l_fake]."""

    recommended = {"lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.0, 0.9)}

    def d_loss(self, real_logits, fake_logits):
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()


class Wasserstein(AdversarialLoss):
    """Wasserstein critic loss (Arjovsky et al. 2017); use with the ``gp`` regulariser (WGAN-GP)."""

    recommended = {"lr_g": 1e-4, "lr_d": 1e-4, "betas": (0.0, 0.9), "d_steps": 5,
                   "regularizers": ("gp:10",)}
    decision_threshold = None  # a critic: D + c is the same critic

    def d_loss(self, real_logits, fake_logits):
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()


class LeastSquares(AdversarialLoss):
    """LSGAN (Mao et al. 2017) with a-b-c = 0-1-1: D = ½E(l_r-1)² + ½E l_f², G = ½E(l_f-1)²."""

    decision_threshold = 0.5  # midway between the fake and real targets

    def d_loss(self, real_logits, fake_logits):
        return 0.5 * (real_logits - 1).pow(2).mean() + 0.5 * fake_logits.pow(2).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return 0.5 * (fake_logits - 1).pow(2).mean()


class RelativisticAverage(AdversarialLoss):
    """Relativistic average GAN (Jolicoeur-Martineau 2018), RaSGAN form."""

    needs_real_for_g = True
    decision_threshold = None  # only differences of logits count

    @staticmethod
    def _pair(a, b):
        # -E log σ(a - E b) - E log(1 - σ(b - E a))
        return F.softplus(-(a - b.mean())).mean() + F.softplus(b - a.mean()).mean()

    def d_loss(self, real_logits, fake_logits):
        return self._pair(real_logits, fake_logits)

    def g_loss(self, fake_logits, real_logits=None):
        if real_logits is None:
            raise ValueError("the relativistic loss needs real logits for the generator step")
        return self._pair(fake_logits, real_logits)


def _grad_norm_sq(discriminator, x, labels) -> torch.Tensor:
    """Per-sample squared norm of dD(x)/dx, keeping the graph for the backward pass; per pack
    for a discriminator that scores packs of k samples (its logits repeat each pack's k times,
    so the gradient of their sum is k times the pack's)."""
    x = x.detach().requires_grad_(True)
    out = discriminator(x, labels)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    k = pack_of(discriminator)
    return grad.reshape(len(x) // k, -1).pow(2).sum(1) / (k * k)


class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017): λ·E(‖∇D(x̂)‖ - 1)² on real/fake interpolates, λ = 10."""

    default_weight = 10.0
    per_sample_critic = True  # Gulrajani et al. §4: "no critic batch normalization"

    def __call__(self, discriminator, real, fake, labels):
        k = pack_of(discriminator)  # one ε per pack: a packed interpolate lies between two packs
        shape = (real.shape[0] // k,) + (1,) * (real.dim() - 1)
        eps = torch.rand(shape, device=real.device, dtype=real.dtype).repeat_interleave(k, 0)
        x_hat = eps * real.detach() + (1 - eps) * fake.detach()
        norm = (_grad_norm_sq(discriminator, x_hat, labels) + 1e-12).sqrt()
        return self.weight * (norm - 1).pow(2).mean()


class R1(Regularizer):
    """R1 (Mescheder et al. 2018): γ/2 · E‖∇D(x_real)‖², γ = 10."""

    default_weight = 10.0

    def __call__(self, discriminator, real, fake, labels):
        return 0.5 * self.weight * _grad_norm_sq(discriminator, real, labels).mean()


class R2(Regularizer):
    """R2 (Mescheder et al. 2018): γ/2 · E‖∇D(x_fake)‖², γ = 10."""

    default_weight = 10.0

    def __call__(self, discriminator, real, fake, labels):
        return 0.5 * self.weight * _grad_norm_sq(discriminator, fake, labels).mean()


LOSSES = {
    "minimax": Minimax,
    "non-saturating": NonSaturating,
    "hinge": Hinge,
    "wasserstein": Wasserstein,
    "least-squares": LeastSquares,
    "relativistic": RelativisticAverage,
}
REGULARIZERS = {"gp": GradientPenalty, "r1": R1, "r2": R2}
