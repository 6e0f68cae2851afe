"""ganzoo-mlp: the classic fully connected GAN (Goodfellow et al. 2014).

Works on 2-D points (``data_shape=(2,)``, unbounded linear output) and on
flattened images (tanh output). The options express the well-known PyTorch
reference MLP GAN exactly: ``g_hidden=128,256,512,1024 bn_first=false bn_eps=0.8``
(G 100→128→256→512→1024→784, BatchNorm1d after every hidden layer but the
first; D 784→512→256→1 is the default).

``cmlp`` is the same networks conditioned on class labels: G reads a learned embedding of
the label next to z, D adds a projection term ``<embed(y), h>`` to its logit (Miyato &
Koyama 2018). With ``--cluster-labels K`` the labels are k-means cluster ids, which is what
solves the 25-mode grid (docs/benchmarks.md). Its G has no batch norm by default and a
small initial label embedding: with batch norm, or with the embedding at the scale of z,
the samples of each label collapsed to nearly a point (docs/benchmarks.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ganzoo import ArchOptions, Discriminator, GanzooError, Generator, hookimpl, pack_samples

_OUTPUTS = {"tanh": (nn.Tanh, (-1.0, 1.0)), "sigmoid": (nn.Sigmoid, (0.0, 1.0)), "none": (None, None)}


@dataclass
class MLPOptions(ArchOptions):
    """Options of the ``mlp`` architecture."""

    g_hidden: tuple[int, ...] = (128, 128, 100)
    d_hidden: tuple[int, ...] = (512, 256)
    g_batchnorm: bool = True  # BatchNorm1d after the generator's hidden layers...
    bn_first: bool = True  # ...including the first one
    bn_eps: float = 1e-5
    output_activation: Literal["auto", "tanh", "sigmoid", "none"] = "auto"  # auto: tanh for images
    d_dropout: float = 0.0
    leak: float = 0.2  # LeakyReLU negative slope (G and D)
    pack: int = 1  # PacGAN (Lin et al. 2018): D scores packs of this many samples of one kind
    # (the batch size must divide by it; R1/R2/GP take each pack's gradient norm)

    def __post_init__(self):
        self.data_shape, self.g_hidden, self.d_hidden = (
            tuple(self.data_shape), tuple(self.g_hidden), tuple(self.d_hidden))
        if not 0.0 <= self.d_dropout < 1.0:
            raise GanzooError(f"mlp option d_dropout must be in [0, 1), got {self.d_dropout}")
        if self.pack < 1:
            raise GanzooError(f"mlp option pack must be >= 1, got {self.pack}")
        if self.pack > 1 and self.num_classes:
            raise GanzooError("mlp option pack works unconditionally only: cmlp scores each sample "
                              "against its own label")
        if any(h < 1 for h in self.g_hidden + self.d_hidden):
            raise GanzooError("mlp options g_hidden and d_hidden take positive layer widths")
        if not 0.0 <= self.leak < 1.0:  # torch's in-place LeakyReLU has no backward for a negative slope
            raise GanzooError(f"mlp option leak (LeakyReLU's negative slope) must be in [0, 1), got {self.leak}")
        if not self.bn_eps > 0.0:  # 0 divides by a batch's zero variance
            raise GanzooError(f"mlp option bn_eps must be > 0, got {self.bn_eps}")

    @property
    def activation(self) -> str:
        if self.output_activation == "auto":
            return "tanh" if len(self.data_shape) == 3 else "none"
        return self.output_activation


@dataclass
class CMLPOptions(MLPOptions):
    """Options of ``cmlp``: those of ``mlp``, but no batch norm in G by default. Batch statistics
    mix the labels of a batch, and the samples of each label collapsed (grid25: spread 0.09σ)."""

    g_batchnorm: bool = False
    label_dim: int = 16  # size of the class embedding G reads next to z...
    label_init_std: float = 0.1  # ...and its initial std: small, so z drives G's variation

    def __post_init__(self):
        super().__post_init__()
        if self.label_dim < 1 or not self.label_init_std >= 0:
            raise GanzooError(f"cmlp options label_dim must be >= 1 and label_init_std >= 0, "
                              f"got {self.label_dim} and {self.label_init_std}")


class MLPGenerator(Generator):
    """Fully connected generator: Linear → BatchNorm1d → LeakyReLU blocks, then a linear output layer."""

    def __init__(self, options: MLPOptions):
        super().__init__(options)
        o, layers, width = options, [], options.latent_dim
        self.label_embed = None
        if o.num_classes:  # cmlp (CMLPOptions); a plain MLPOptions gets cmlp's defaults
            self.label_embed = nn.Embedding(o.num_classes, getattr(o, "label_dim", 16))
            nn.init.normal_(self.label_embed.weight, 0.0, getattr(o, "label_init_std", 0.1))
            width += self.label_embed.embedding_dim
        for i, h in enumerate(o.g_hidden):
            layers.append(nn.Linear(width, h))
            if o.g_batchnorm and (i > 0 or o.bn_first):
                layers.append(nn.BatchNorm1d(h, eps=o.bn_eps))
            layers.append(nn.LeakyReLU(o.leak, inplace=True))
            width = h
        layers.append(nn.Linear(width, math.prod(o.data_shape)))
        act, self.output_range = _OUTPUTS[o.activation]
        if act is not None:
            layers.append(act())
        self.net = nn.Sequential(*layers)

    def forward(self, z, labels=None):
        if self.label_embed is not None:
            if labels is None:
                raise ValueError("the cmlp generator needs class labels")
            z = torch.cat((z, self.label_embed(labels)), dim=1)
        return self.net(z).view(z.shape[0], *self.data_shape)


class MLPDiscriminator(Discriminator):
    """Fully connected discriminator: Linear → LeakyReLU (→ Dropout) blocks, then one logit.

    With ``pack = k`` it reads k consecutive samples concatenated and gives each of them
    their pack's logit (so losses average over packs, as in PacGAN).
    """

    def __init__(self, options: MLPOptions):
        super().__init__(options)
        self.pack = options.pack  # the trainer and the penalties read it (ganzoo.Discriminator)
        layers, width = [nn.Flatten()], math.prod(options.data_shape) * self.pack
        for h in options.d_hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(options.leak, inplace=True)]
            if options.d_dropout:
                layers.append(nn.Dropout(options.d_dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.embed = nn.Embedding(options.num_classes, width) if options.num_classes else None

    def forward(self, x, labels=None):
        if self.embed is not None:  # projection discriminator: ψ(h) + <embed(y), h>
            if labels is None:
                raise ValueError("the cmlp discriminator needs class labels")
            h = self.net[:-1](x)
            return self.net[-1](h).squeeze(1) + (self.embed(labels) * h).sum(1)
        if self.pack == 1:
            return self.net(x).squeeze(1)
        return self.net(pack_samples(x, self.pack, "mlp")).squeeze(1).repeat_interleave(self.pack)


@hookimpl
def register_architectures(register):
    register("mlp", generator=MLPGenerator, discriminator=MLPDiscriminator, options=MLPOptions,
             conditional=False,
             description="Classic fully connected GAN (Goodfellow et al. 2014), for points or flattened images")
    register("cmlp", generator=MLPGenerator, discriminator=MLPDiscriminator, options=CMLPOptions,
             conditional=True,
             description="The mlp GAN conditioned on class labels: label embedding in G, projection D")


# -- recipes: the settings behind the zoo cards and docs/benchmarks.md ----------------------------
# G fed 2-D noise as in PacGAN, a 512-wide batch, Adam at 1e-3 decayed linearly to 0 (precision
# matters at σ = 0.01 and 0.05), EMA; the conditional ones on 50 k-means cluster labels.
_POINTS = dict(loss="non-saturating", batch_size=512, lr_g=1e-3, lr_d=1e-3, lr_schedule="linear",
               ema_decay=0.999, arch_options={"latent_dim": 2})
_SELF_CONDITIONED = dict(_POINTS, arch="cmlp", steps=6000, methods=["cluster-labels:k=50"],
                         log_every=500, sample_every=500)


@hookimpl
def register_recipes(register):
    register("mlp-ring8", dict(_POINTS, arch="mlp", dataset="ring8", steps=48000),
             description="Unconditional mlp on ring8, 48k steps (zoo mlp-ring8: 8 modes, 99.4 % high quality)",
             default_for=[("mlp", "ring8")])
    register("mlp-grid25", dict(_POINTS, arch="mlp", dataset="grid25", steps=48000),
             description="Unconditional mlp on grid25, the mlp-ring8 settings: drops modes on some seeds "
                         "(docs/benchmarks.md); cmlp-grid25 covers all 25",
             default_for=[("mlp", "grid25")])
    for data in ("ring8", "grid25"):
        register(f"cmlp-{data}", dict(_SELF_CONDITIONED, dataset=data),
                 description=f"cmlp on 50 cluster labels of {data}, 6,000 steps (docs/benchmarks.md"
                             + ("; zoo cmlp-grid25)" if data == "grid25" else ")"),
                 default_for=[("cmlp", data)])
    register("mlp-fashion-mnist", dict(arch="mlp", dataset="fashion-mnist", steps=10000, sample_every=2000,
                                       checkpoint_every=2000,
                                       arch_options={"g_hidden": [128, 256, 512, 1024], "bn_first": False,
                                                     "bn_eps": 0.8}),
             description="The classic MLP GAN on Fashion-MNIST, 10k steps (zoo mlp-fashion-mnist)",
             default_for=[("mlp", "fashion-mnist")])
