"""Residual blocks of the ResNet GANs (SNGAN, BigGAN), for architecture plugins to share.

``ganzoo-sngan`` and ``ganzoo-biggan`` build their networks from these; a third-party ResNet
GAN can too (``from ganzoo.layers import ResidualUp, ResidualDown``). Written here rather
than taken from timm: timm's residual blocks are a classifier's (batch norm inside, no
upsampling, no condition), where a GAN's generator block upsamples and passes a condition
to its normalisation, and its discriminator block must not batch-normalise. The blocks take the convolution and normalisation they use
as factories, so that each architecture keeps its own initialisation and spectral norm.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

# Image size -> (the generator's first feature map size, its up-blocks, the discriminator's
# down-blocks) of the SNGAN/BigGAN CIFAR-style layout; the discriminator adds two blocks
# without pooling after its down-blocks.
RESNET_SIZES = {28: (7, 2, 2), 32: (4, 3, 2), 64: (4, 4, 3)}

ConvFactory = Callable[[int, int, int], nn.Module]
"""``conv(in_channels, out_channels, kernel_size)``: a 'same' convolution (padding k // 2)."""

NormFactory = Callable[[int], nn.Module]
"""``norm(channels)``: a module called as ``norm(x, cond)`` (cond: class labels, a vector, None)."""


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class ResidualUp(nn.Module):
    """Generator block: norm → ReLU → nearest ×2 → conv3×3 → norm → ReLU → conv3×3, plus a
    shortcut nearest ×2 → conv1×1 (Miyato et al. 2018; BigGAN's block).
    ``cond`` goes to both norms: labels for conditional batch norm, a vector for BigGAN's."""

    def __init__(self, cin: int, cout: int, conv: ConvFactory, norm: NormFactory):
        super().__init__()
        self.bn1, self.conv1 = norm(cin), conv(cin, cout, 3)
        self.bn2, self.conv2 = norm(cout), conv(cout, cout, 3)
        self.shortcut = conv(cin, cout, 1)

    def forward(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        h = _upsample(F.relu(self.bn1(x, cond)))
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + self.shortcut(_upsample(x))


class ResidualDown(nn.Module):
    """Discriminator block, no normalisation: ReLU → conv3×3 → ReLU → conv3×3 (→ 2×2 average
    pool), shortcut conv1×1 (→ pool), or the identity when the shape does not change.
    ``first``: SNGAN's "optimised" input block, without the pre-activation ReLU (it would
    clip the image) and with the shortcut pooling before its conv (the same result, a
    quarter of the cost)."""

    def __init__(self, cin: int, cout: int, conv: ConvFactory, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1, self.conv2 = conv(cin, cout, 3), conv(cout, cout, 3)
        self.shortcut = conv(cin, cout, 1) if (cin != cout or down) else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._pool(self.conv2(F.relu(self.conv1(x if self.first else F.relu(x)))))
        if self.shortcut is None:
            return h + x
        return h + (self.shortcut(self._pool(x)) if self.first else self._pool(self.shortcut(x)))


def projection_logits(h: torch.Tensor, linear: nn.Module, embed: Optional[nn.Embedding] = None,
                      labels: Optional[torch.Tensor] = None, class_logits: bool = False):
    """A ResNet discriminator's head on pooled features ``h`` (N, C): ``ψ(h)``, plus the
    projection ``<embed(y), h>`` with an embedding (Miyato & Koyama 2018). With
    ``class_logits`` it returns ``(logits, h @ embedᵀ)``: the logit of every class k is
    ``<embed(k), h>``, the class head ``--method class-loss`` trains (P2GAN, Han et al. 2021).
    The embedding's weight is read once: under spectral norm every read is a power iteration."""
    logits = linear(h).squeeze(1)
    if embed is None:
        return logits
    if labels is None:
        raise ValueError("a projection discriminator needs class labels")
    weight = embed.weight
    logits = logits + (weight[labels] * h).sum(1)
    return (logits, h @ weight.t()) if class_logits else logits
