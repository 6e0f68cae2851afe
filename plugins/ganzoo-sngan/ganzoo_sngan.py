"""ganzoo-sngan: the ResNet GAN of SNGAN (Miyato et al. 2018), unconditional (``sngan``) and
class-conditional with a projection discriminator (``csngan``, Miyato & Koyama 2018).

Generator: a linear map from z to a 4×4 (7×7 for 28 px) map of ``ngf`` channels, residual
up-blocks (BN → ReLU → nearest ×2 → conv3×3 → BN → ReLU → conv3×3, plus a nearest ×2 →
conv1×1 shortcut), then BN → ReLU → conv3×3 → tanh. ``csngan``'s block BatchNorms are
conditional: per-class gains and biases (de Vries et al. 2017), the last one stays plain.
Discriminator: every layer spectrally normalised, no BatchNorm. The "optimised" first block
(conv3×3 → ReLU → conv3×3 → avg-pool, shortcut avg-pool → conv1×1), residual blocks with
pre-activation ReLU (the first ones with 2×2 average pooling down to 8×8 or 7×7, then two
without), ReLU, global sum pooling to ``h`` and an SN linear ψ; ``csngan`` adds the projection
``<embed(y), h>`` and a class head ``<embed(k), h>`` for every class k (usable by
``--method class-loss``). Widths are constant: ``ngf`` in every G block, ``ndf`` in every D
block (the paper's CIFAR-10 model: ngf=256, ndf=128). Train with the hinge loss,
Adam(2e-4, β=(0, 0.9)), 5 D steps per G step and a linear lr decay.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ganzoo import ArchOptions, Discriminator, GanzooError, Generator, hookimpl
from ganzoo.layers import RESNET_SIZES, ResidualDown, ResidualUp, projection_logits


@dataclass
class SNGANOptions(ArchOptions):
    """Options of ``sngan`` and ``csngan``."""

    latent_dim: int = 128
    ngf: int = 256  # channels of every generator block
    ndf: int = 128  # channels of every discriminator block

    def __post_init__(self):
        self.data_shape = tuple(self.data_shape)
        c, *hw = self.data_shape if len(self.data_shape) == 3 else (0, 0, 0)
        if hw[0] != hw[1] or hw[0] not in RESNET_SIZES or c < 1:
            raise GanzooError("sngan takes square images of size 28, 32 or 64 (data_shape C,H,W), "
                              f"got data_shape={self.data_shape}")
        if min(self.ngf, self.ndf, self.latent_dim) < 1:
            raise GanzooError(f"sngan options ngf, ndf and latent_dim must be >= 1, "
                              f"got {self.ngf}, {self.ndf} and {self.latent_dim}")


def conv(cin: int, cout: int, k: int = 3, gain: float = 1.0) -> nn.Conv2d:
    """A k×k 'same' convolution, Glorot-uniform initialised with ``gain`` (the SNGAN code's)."""
    m = nn.Conv2d(cin, cout, k, 1, k // 2)
    nn.init.xavier_uniform_(m.weight, gain)
    nn.init.zeros_(m.bias)
    return m


class Norm(nn.Module):
    """BatchNorm2d; with ``num_classes`` its per-channel gain and bias are looked up per class."""

    def __init__(self, channels: int, num_classes: int = 0):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=not num_classes)
        self.embed = nn.Embedding(num_classes, 2 * channels) if num_classes else None
        if self.embed is not None:  # gains N(1, 0.02) (so classes differ from the start), biases 0
            with torch.no_grad():
                nn.init.normal_(self.embed.weight[:, :channels], 1.0, 0.02)
                nn.init.zeros_(self.embed.weight[:, channels:])

    def forward(self, x, labels=None):
        if self.embed is None:
            return self.bn(x)
        gain, bias = self.embed(labels)[:, :, None, None].chunk(2, dim=1)
        return self.bn(x) * gain + bias


def block_conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    """The residual blocks' convolutions: gain √2 on the 3×3s (each feeds a ReLU), 1 on the 1×1 shortcuts."""
    return conv(cin, cout, k, math.sqrt(2) if k == 3 else 1.0)


class SNGANGenerator(Generator):
    """SNGAN ResNet generator: residual up-blocks with (conditional) BatchNorm, ReLU, tanh."""

    def __init__(self, options: SNGANOptions):
        super().__init__(options)
        c, size = options.data_shape[0], options.data_shape[1]
        self.start, n_up, _ = RESNET_SIZES[size]
        ch, k = options.ngf, options.num_classes
        self.linear = nn.Linear(options.latent_dim, ch * self.start ** 2)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.blocks = nn.ModuleList(ResidualUp(ch, ch, block_conv, lambda c: Norm(c, k)) for _ in range(n_up))
        self.bn = nn.BatchNorm2d(ch)
        self.out = conv(ch, c, 3)

    def forward(self, z, labels=None):
        if self.num_classes and labels is None:
            raise ValueError("the csngan generator needs class labels")
        h = self.linear(z).view(len(z), -1, self.start, self.start)
        for block in self.blocks:
            h = block(h, labels)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class SNGANDiscriminator(Discriminator):
    """Spectrally normalised ResNet discriminator, global sum pooling, SN linear (+ projection).

    With classes, the class head reuses the projection embeddings (P2GAN, Han et al. 2021): the
    logit of class k is <embed(k), h>.
    """

    def __init__(self, options: SNGANOptions):
        super().__init__(options)
        c, size = options.data_shape[0], options.data_shape[1]
        _, _, n_down = RESNET_SIZES[size]
        ch = options.ndf
        blocks = [ResidualDown(c, ch, block_conv, down=True, first=True)]
        blocks += [ResidualDown(ch, ch, block_conv, down=i < n_down - 1) for i in range(n_down + 1)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(ch, 1)  # ψ
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.embed = nn.Embedding(options.num_classes, ch) if options.num_classes else None
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)
        for m in [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]:
            spectral_norm(m)

    def forward(self, x, labels=None, class_logits=False):
        if self.embed is not None and labels is None:
            raise ValueError("the csngan discriminator needs class labels")
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return projection_logits(h, self.linear, self.embed, labels, class_logits)


class CSNGANDiscriminator(SNGANDiscriminator):
    """SNGAN ResNet discriminator with a projection head and a class head."""

    has_class_head = True  # read on the class: class-loss checks an architecture before building it


@hookimpl
def register_architectures(register):
    register("sngan", generator=SNGANGenerator, discriminator=SNGANDiscriminator,
             options=SNGANOptions, conditional=False,
             description="SNGAN ResNet (Miyato et al. 2018): BN ResNet G, spectrally normalised ResNet D")
    register("csngan", generator=SNGANGenerator, discriminator=CSNGANDiscriminator,
             options=SNGANOptions, conditional=True,
             description="Conditional SNGAN ResNet: conditional BN G, SN projection D with a class head "
                         "(Miyato & Koyama 2018)")


@hookimpl
def register_recipes(register):
    # The zoo model's: hinge, Adam β=(0, 0.9), one D step, generator EMA, at widths 64 (1.2-2 steps/s
    # on one CPU thread). Adam 8e-4, 4x the paper's 2e-4 (which needs 5 D steps per G step): the
    # same 7,000 steps score FID 32.2 at 2e-4 and 21.0 at 8e-4; DiffAugment's translation on
    # every image D reads (0.3.0) then 17.7; bf16 on a CPU that has it (0.4.0): 2.1x the steps/s,
    # the 7,000 steps in 63 CPU-minutes, FID 16.9 (docs/benchmarks.md, "bf16 on CPU").
    register("sngan-fashion-mnist",
             dict(arch="sngan", arch_options={"ngf": 64, "ndf": 64}, dataset="fashion-mnist", loss="hinge",
                  methods=("diffaugment:policy=translation",),
                  lr_g=8e-4, lr_d=8e-4, betas_g=(0.0, 0.9), betas_d=(0.0, 0.9), d_steps=1, cpu_amp="auto",
                  ema=True, ema_decay=0.999, steps=7000, sample_every=1000, checkpoint_every=1000),
             default_for=[("sngan", "fashion-mnist")],
             description="SNGAN-ResNet (widths 64) on fashion-mnist: hinge, Adam 8e-4, DiffAugment "
                         "translation, bf16 on CPUs that have it, 7,000 steps (zoo sngan-fashion-mnist)")
