"""ganzoo-biggan: BigGAN (Brock et al. 2019), class-conditional, for 28, 32 or 64 px images.

Generator: a shared class embedding y; with ``hierarchical`` (the default) z is split into
one chunk per generator block plus one for the input: the first chunk goes through a linear
layer to a 4×4 (7×7 for 28 px) map of ``ngf`` channels, and chunk i+1 is concatenated with
y into block i's conditioning vector, which two linear maps per BatchNorm turn into that
block's gains (1 + …) and biases. Residual up-blocks (cBN → ReLU → nearest ×2 → conv3×3 →
cBN → ReLU → conv3×3, shortcut nearest ×2 → conv1×1), one self-attention block (SAGAN,
Zhang et al. 2019) after the block at resolution ``attention``, then BN → ReLU → conv3×3 →
tanh. Discriminator: residual down-blocks as in SNGAN (optimised first block, then
pre-activation blocks, two of them without pooling), the same attention block, ReLU, global
sum pooling to h, and a projection head ``ψ(h) + <embed(y), h>`` (Miyato & Koyama 2018) whose
embeddings double as a class head (``--method class-loss``). Every layer of G and D but the
shared embedding and the BatchNorms is spectrally normalised; weights start orthogonal.

Differences from the paper: constant widths (``ngf`` in every G block, ``ndf`` in every D
block), the attention gain γ starts at 1e-3 instead of 0 (so that every parameter gets a
gradient from the first step), no "standing statistics" at sampling. Truncation is the
base-class one, the paper's: ``--truncation t`` draws z from N(0, I) truncated to [-t, t].

Registers the ``orthogonal`` training method (``--method orthogonal:beta=1e-4``): the
paper's orthogonal regularisation of G.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ganzoo import ArchOptions, Discriminator, GanzooError, Generator, hookimpl
from ganzoo.layers import RESNET_SIZES, ResidualDown, ResidualUp, projection_logits
from ganzoo.methods import StepContext, TrainingMethod


@dataclass
class BigGANOptions(ArchOptions):
    """Options of ``biggan`` (``num_classes`` >= 1 is required)."""

    latent_dim: int = 128
    ngf: int = 256  # channels of every generator block
    ndf: int = 256  # channels of every discriminator block
    shared_dim: int = 128  # size of the shared class embedding
    hierarchical: bool = True  # z split across the blocks (else all of z goes to the input layer)
    attention: int = -1  # resolution of the self-attention block in G and D: -1 = half the image size, 0 = none

    def __post_init__(self):
        self.data_shape = tuple(self.data_shape)
        c, *hw = self.data_shape if len(self.data_shape) == 3 else (0, 0, 0)
        if hw[0] != hw[1] or hw[0] not in RESNET_SIZES or c < 1:
            raise GanzooError("biggan takes square images of size 28, 32 or 64 (data_shape C,H,W), "
                              f"got data_shape={self.data_shape}")
        if min(self.ngf, self.ndf, self.shared_dim) < 1:
            raise GanzooError(f"biggan options ngf, ndf and shared_dim must be >= 1, "
                              f"got {self.ngf}, {self.ndf} and {self.shared_dim}")
        chunks = RESNET_SIZES[hw[0]][1] + 1 if self.hierarchical else 1
        if self.latent_dim < chunks:
            raise GanzooError(f"biggan latent_dim must be >= {chunks} (one z chunk per generator block "
                              f"and one for the input at {hw[0]} px), got {self.latent_dim}")
        allowed = sorted(set(self.g_resolutions()) & set(self.d_resolutions()))
        if self.attention not in (-1, 0, *allowed):
            raise GanzooError(f"biggan option attention must be -1 (half the image size), 0 (none) or "
                              f"one of {', '.join(map(str, allowed))} at {hw[0]} px, got {self.attention}")

    def g_resolutions(self) -> list[int]:
        """Output resolution of each generator block: 32 px → [8, 16, 32]."""
        start, n_up, _ = RESNET_SIZES[self.data_shape[1]]
        return [start * 2 ** (i + 1) for i in range(n_up)]

    def d_resolutions(self) -> list[int]:
        """Output resolution of each discriminator block: 32 px → [16, 8, 8, 8]."""
        size, (_, _, n_down) = self.data_shape[1], RESNET_SIZES[self.data_shape[1]]
        return [size // 2 ** min(i + 1, n_down) for i in range(n_down + 2)]

    @property
    def attention_resolution(self) -> int:
        return self.data_shape[1] // 2 if self.attention == -1 else self.attention


def sn(module: nn.Module) -> nn.Module:
    """``module`` with an orthogonal initial weight (the paper's init) and spectral norm."""
    nn.init.orthogonal_(module.weight)
    return spectral_norm(module)


def sn_conv(cin: int, cout: int, k: int = 3, bias: bool = True) -> nn.Module:
    return sn(nn.Conv2d(cin, cout, k, 1, k // 2, bias=bias))


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose gain ``1 + W_g c`` and bias ``W_b c`` are linear in a conditioning vector c."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = sn(nn.Linear(cond_dim, channels, bias=False))
        self.bias = sn(nn.Linear(cond_dim, channels, bias=False))

    def forward(self, x, cond):
        return self.bn(x) * (1 + self.gain(cond))[:, :, None, None] + self.bias(cond)[:, :, None, None]


class Attention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019), as in BigGAN: ``x + γ·o(g·softmax(θᵀφ))`` with
    φ and g max-pooled 2×2, spectral norm on the four 1×1 convs."""

    def __init__(self, ch: int):
        super().__init__()
        self.k, self.v = max(1, ch // 8), max(1, ch // 2)
        self.theta, self.phi = sn_conv(ch, self.k, 1, False), sn_conv(ch, self.k, 1, False)
        self.g, self.o = sn_conv(ch, self.v, 1, False), sn_conv(self.v, ch, 1, False)
        self.gamma = nn.Parameter(torch.tensor(1e-3))  # the paper's 0 would leave θ, φ, g, o without gradient

    def forward(self, x):
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2)  # (N, k, HW)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # (N, k, HW/4)
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # (N, v, HW/4)
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (N, HW, HW/4)
        return x + self.gamma * self.o((g @ beta.transpose(1, 2)).view(n, self.v, h, w))


class BigGANGenerator(Generator):
    """BigGAN generator: shared class embedding, hierarchical z, conditional BN, self-attention."""

    def __init__(self, options: BigGANOptions):
        super().__init__(options)
        o = options
        self.start, n_up, _ = RESNET_SIZES[o.data_shape[1]]
        ch = o.ngf
        chunks = [len(c) for c in torch.arange(o.latent_dim).tensor_split(n_up + 1 if o.hierarchical else 1)]
        self.chunks = chunks  # z's split: the input layer's chunk, then one per block
        self.shared = nn.Embedding(o.num_classes, o.shared_dim)
        nn.init.orthogonal_(self.shared.weight)
        self.linear = sn(nn.Linear(chunks[0], ch * self.start ** 2))
        conds = [o.shared_dim + (chunks[i + 1] if o.hierarchical else 0) for i in range(n_up)]
        self.blocks = nn.ModuleList(ResidualUp(ch, ch, sn_conv, partial(ConditionalBatchNorm, cond_dim=c))
                                    for c in conds)
        self.attention_after = o.g_resolutions().index(o.attention_resolution) if o.attention else None
        self.attention = Attention(ch) if o.attention else None
        self.bn = nn.BatchNorm2d(ch)
        self.out = sn_conv(ch, o.data_shape[0])

    def conditions(self, z, labels):
        """``(input chunk, [conditioning vector of each block])`` for latents ``z`` and ``labels``."""
        y = self.shared(labels)
        if not self.options.hierarchical:
            return z, [y] * len(self.blocks)
        zs = z.split(self.chunks, dim=1)
        return zs[0], [torch.cat((y, zi), dim=1) for zi in zs[1:]]

    def forward(self, z, labels=None):
        if labels is None:
            raise ValueError("the biggan generator needs class labels")
        z0, conds = self.conditions(z, labels)
        h = self.linear(z0).view(len(z), -1, self.start, self.start)
        for i, (block, cond) in enumerate(zip(self.blocks, conds)):
            h = block(h, cond)
            if i == self.attention_after:
                h = self.attention(h)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class BigGANDiscriminator(Discriminator):
    """BigGAN discriminator: SN residual down-blocks, self-attention, sum pooling, projection head.

    The class head reuses the projection embeddings (P2GAN, Han et al. 2021): the logit of
    class k is <embed(k), h>.
    """

    has_class_head = True

    def __init__(self, options: BigGANOptions):
        super().__init__(options)
        o = options
        _, _, n_down = RESNET_SIZES[o.data_shape[1]]
        ch = o.ndf
        blocks = [ResidualDown(o.data_shape[0], ch, sn_conv, down=True, first=True)]
        blocks += [ResidualDown(ch, ch, sn_conv, down=i < n_down - 1) for i in range(n_down + 1)]
        if o.attention:
            blocks.insert(o.d_resolutions().index(o.attention_resolution) + 1, Attention(ch))
        self.blocks = nn.Sequential(*blocks)
        self.linear = sn(nn.Linear(ch, 1))  # ψ
        self.embed = sn(nn.Embedding(o.num_classes, ch))

    def forward(self, x, labels=None, class_logits=False):
        if labels is None:
            raise ValueError("the biggan discriminator needs class labels")
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return projection_logits(h, self.linear, self.embed, labels, class_logits)


# -- orthogonal regularisation ------------------------------------------------------------
def orthogonal_penalty(module: nn.Module, beta: float = 1.0) -> torch.Tensor:
    """β · Σ_W ‖W Wᵀ ⊙ (1 − I)‖²_F over every weight W of ``module`` with two or more dimensions,
    each viewed as a matrix with one row per output filter (``W.reshape(out, -1)``), except the
    weights of embeddings (BigGAN leaves its shared class embedding out). For spectrally
    normalised layers W is the raw parameter, not the normalised weight."""
    skip = {id(p) for m in module.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    total = None
    for p in module.parameters():
        if p.dim() < 2 or id(p) in skip or not p.requires_grad:
            continue
        w = p.reshape(p.shape[0], -1).float()
        gram = w @ w.t()
        term = gram.pow(2).sum() - gram.diagonal().pow(2).sum()  # off-diagonal entries only
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return beta * total


@dataclass
class Orthogonal(TrainingMethod):
    """Orthogonal regularisation (Brock et al. 2019, BigGAN): adds β·Σ_W ‖WWᵀ ⊙ (1 − I)‖²_F over G's weights to G's loss."""

    beta: float = 1e-4  # the paper's β; BigGAN-PyTorch adds the gradient of β/2 times this

    def __post_init__(self):
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise GanzooError(f"orthogonal beta must be a finite number >= 0, got {self.beta}")

    def g_terms(self, ctx: StepContext):
        return orthogonal_penalty(ctx.generator, self.beta) if self.beta else None


@hookimpl
def register_architectures(register):
    register("biggan", generator=BigGANGenerator, discriminator=BigGANDiscriminator,
             options=BigGANOptions, conditional=True,
             description="BigGAN (Brock et al. 2019): shared embedding, hierarchical z, self-attention, "
                         "SN G and projection D")


@hookimpl
def register_methods(register):
    register("orthogonal", Orthogonal)


@hookimpl
def register_recipes(register):
    # The zoo model's: cgan-fashion-mnist's settings (hinge, Adam 2e-4 β=(0, 0.9), one D step, EMA)
    # with the auxiliary class loss at a tenth of its weight, plus the paper's orthogonal
    # regularisation, at widths 64. The class-loss weight trades label accuracy for recall:
    # 1 → FID 10.0, recall 0.22, accuracy 0.9999; 0.1 → 5.1, 0.47, 0.960; 0 → 7.4, 0.49, 0.926 (one seed each)
    # (docs/benchmarks.md, "The class-loss weight of biggan").
    register("biggan-fashion-mnist",
             dict(arch="biggan", arch_options={"ngf": 64, "ndf": 64}, dataset="fashion-mnist", loss="hinge",
                  lr_g=2e-4, lr_d=2e-4, betas_g=(0.0, 0.9), betas_d=(0.0, 0.9), d_steps=1,
                  methods=["class-loss:weight=0.1", "orthogonal:beta=0.0001"],
                  ema=True, ema_decay=0.999, steps=5500, sample_every=1000, checkpoint_every=1000),
             default_for=[("biggan", "fashion-mnist")],
             description="BigGAN (widths 64) on fashion-mnist: hinge, class loss 0.1, orthogonal reg., "
                         "5,500 steps (zoo biggan-fashion-mnist)")
