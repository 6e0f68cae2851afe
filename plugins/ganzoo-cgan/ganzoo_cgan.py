"""ganzoo-cgan: a class-conditional GAN on a DCGAN backbone, for 28, 32 or 64 pixel images.

Generator: DCGAN transposed convolutions whose BatchNorms are conditional: the
gain and bias of each channel are looked up per class (de Vries et al. 2017);
``label_input`` (off by default) also feeds a learned class embedding next to
z: label accuracy rises much sooner (0.26 -> 0.79 after 1500 steps) but on
Fashion-MNIST the samples of each class collapsed (recall 0.00 at 5000 steps).
Discriminator: strided convs + LeakyReLU(0.2), global sum pooling to ``h``, and
a projection head (Miyato & Koyama 2018): ``logit = ψ(h) + <embed(y), h>``.
With ``spectral_norm`` (the default) every D layer is spectrally normalised
and D has no BatchNorm; without it D uses BatchNorm as in DCGAN. The class
head for ``--class-weight`` is ``<embed(k), h>`` for every class k (P2GAN).
``minibatch_std`` (off by default) adds ProGAN's minibatch-stddev feature to
ψ; it did not stop ``label_input``'s within-class collapse (recall 0.00 at
4600 steps).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ganzoo import ArchOptions, Discriminator, GanzooError, Generator, hookimpl

SIZES = {28: (7, 2), 32: (4, 3), 64: (4, 4)}  # image size: (first feature map size, stride-2 layers)


@dataclass
class CGANOptions(ArchOptions):
    """Options of the ``cgan`` architecture (``num_classes`` >= 1 is required)."""

    ngf: int = 64  # generator width: channels of its last hidden layer
    ndf: int = 64  # discriminator width: channels of its first layer
    spectral_norm: bool = True  # spectral norm on every D layer (instead of BatchNorm)
    label_input: bool = False  # G also sees a learned class embedding next to z at its input
    minibatch_std: int = 0  # D group size for a minibatch-stddev feature (Karras et al. 2018); 0 = off

    def __post_init__(self):
        self.data_shape = tuple(self.data_shape)
        c, *hw = self.data_shape if len(self.data_shape) == 3 else (0, 0, 0)
        if hw[0] != hw[1] or hw[0] not in SIZES or c < 1:
            raise GanzooError("cgan takes square images of size 28, 32 or 64 (data_shape C,H,W), "
                              f"got data_shape={self.data_shape}")
        if min(self.ngf, self.ndf) < 1:
            raise GanzooError("cgan options ngf and ndf must be >= 1")
        if self.minibatch_std < 0:
            raise GanzooError(f"cgan option minibatch_std must be 0 (off) or a group size >= 1, "
                              f"got {self.minibatch_std}")

    def widths(self, base: int) -> tuple[int, list[int]]:
        """First feature map size and hidden widths, deepest first: 64px, base 64 → 4, [512, 256, 128, 64]."""
        start, n = SIZES[self.data_shape[1]]
        return start, [base * 2 ** i for i in reversed(range(n))]


def _init(m: nn.Module) -> None:  # DCGAN init: weights N(0, 0.02), BatchNorm gains N(1, 0.02), biases 0
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d) and m.affine:
        nn.init.normal_(m.weight, 1.0, 0.02)
    if isinstance(getattr(m, "bias", None), torch.Tensor):
        nn.init.zeros_(m.bias)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d whose per-channel gain and bias are embeddings of the class label."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.embed = nn.Embedding(num_classes, 2 * channels)
        self.channels = channels

    def reset_parameters(self) -> None:  # gain N(1, 0.02), bias 0 for every class
        nn.init.normal_(self.embed.weight[:, :self.channels], 1.0, 0.02)
        nn.init.zeros_(self.embed.weight[:, self.channels:])

    def forward(self, x, labels):
        gain, bias = self.embed(labels)[:, :, None, None].chunk(2, dim=1)
        return self.bn(x) * gain + bias


class CGANGenerator(Generator):
    """Conditional DCGAN generator: ConvTranspose → conditional BatchNorm → ReLU blocks, tanh output."""

    def __init__(self, options: CGANOptions):
        super().__init__(options)
        start, ch = options.widths(options.ngf)
        extra = options.latent_dim if options.label_input else 0
        self.label_embed = nn.Embedding(options.num_classes, extra) if extra else None
        self.convs = nn.ModuleList(
            [nn.ConvTranspose2d(options.latent_dim + extra, ch[0], start, 1, 0, bias=False)]
            + [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False) for a, b in zip(ch, ch[1:])])
        self.norms = nn.ModuleList(ConditionalBatchNorm2d(c, options.num_classes) for c in ch)
        self.out = nn.ConvTranspose2d(ch[-1], options.data_shape[0], 4, 2, 1)
        self.apply(_init)
        for norm in self.norms:
            norm.reset_parameters()
        if self.label_embed is not None:  # on the scale of z, not DCGAN's 0.02
            nn.init.normal_(self.label_embed.weight)

    def forward(self, z, labels=None):
        if labels is None:
            raise ValueError("the cgan generator needs class labels")
        if self.label_embed is not None:  # the class shapes the first feature map, not only its gains
            z = torch.cat((z, self.label_embed(labels)), dim=1)
        h = z[:, :, None, None]
        for conv, norm in zip(self.convs, self.norms):
            h = F.relu(norm(conv(h), labels))
        return torch.tanh(self.out(h))


class CGANDiscriminator(Discriminator):
    """Conv discriminator with a projection head: logit = ψ(h) + <embed(y), h>.

    Its class head reuses the projection embeddings (P2GAN, Han et al. 2021): the
    logit of class k is <embed(k), h>, so ``--class-weight`` adds no parameters.
    """

    has_class_head = True

    def __init__(self, options: CGANOptions):
        super().__init__(options)
        _, ch = options.widths(options.ndf)
        ch, bn = ch[::-1], not options.spectral_norm
        layers = [nn.Conv2d(options.data_shape[0], ch[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for a, b in zip(ch, ch[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=not bn)] + ([nn.BatchNorm2d(b)] if bn else [])
            layers.append(nn.LeakyReLU(0.2, True))
        self.features = nn.Sequential(*layers)
        self.group = options.minibatch_std
        self.per_sample = False if self.group else None  # the stddev feature mixes a group's samples
        self.linear = nn.Linear(ch[-1] + (1 if self.group else 0), 1)  # ψ
        self.embed = nn.Embedding(options.num_classes, ch[-1])  # class projection
        self.apply(_init)
        if options.spectral_norm:
            for m in [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]:
                nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x, labels=None, class_logits=False):
        if labels is None:
            raise ValueError("the cgan discriminator needs class labels")
        f = self.features(x)
        h = f.sum(dim=(2, 3))
        psi_in = torch.cat((h, minibatch_stddev(f, self.group)), 1) if self.group else h
        embed = self.embed.weight  # read once: under spectral norm each read is a power iteration
        logits = self.linear(psi_in).squeeze(1) + (embed[labels] * h).sum(1)
        return (logits, h @ embed.t()) if class_logits else logits


def minibatch_stddev(f: torch.Tensor, group: int) -> torch.Tensor:
    """Per sample, the mean over features of the stddev across its group of samples (B, 1).

    Lets D see the diversity of a batch, so a generator that collapses within a class is penalised.
    Groups have ``group`` samples, or the largest size <= ``group`` that divides the batch.
    """
    g = next(k for k in range(min(group, f.shape[0]), 0, -1) if f.shape[0] % k == 0)
    s = f.float().view(g, -1, *f.shape[1:]).var(0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    return s.repeat(g)[:, None].to(f.dtype)


@hookimpl
def register_architectures(register):
    register("cgan", generator=CGANGenerator, discriminator=CGANDiscriminator,
             options=CGANOptions, conditional=True,
             description="Class-conditional DCGAN: conditional BatchNorm G, projection D (Miyato & Koyama 2018)")


@hookimpl
def register_recipes(register):
    # the zoo model's settings: hinge loss and the auxiliary class loss, 12k steps
    zoo = dict(arch="cgan", loss="hinge", methods=["class-loss:weight=1.0"], steps=12000)
    register("cgan-fashion-mnist", dict(zoo, dataset="fashion-mnist"),
             description="Conditional DCGAN on fashion-mnist: hinge + class loss, 12,000 steps (zoo cgan-fashion-mnist)")
    register("cgan-mnist", dict(zoo, dataset="mnist"), default_for=[("cgan", "mnist")],
             description="Conditional DCGAN on mnist: hinge + class loss, 12,000 steps (as zoo cgan-fashion-mnist)")
    # The best measured in about 300 s on a 2-core CPU (docs/benchmarks.md, "300 s"): half the
    # widths cost a quarter of the FLOPs per step and buy about twice the steps, which is worth
    # more than the width at this budget. The rate: 2e-4 → 4e-4 took a fast CPU's 300 s from
    # FID 35.7 to 14.7 (10,000 steps), but a CPU with half that speed (5,800 steps) stayed at 35.0;
    # 1.6e-3 gives it 13.4 (docs/benchmarks.md, "The default commands on a CPU at half the speed").
    quick = dict(zoo, dataset="fashion-mnist", arch_options={"ngf": 32, "ndf": 32}, lr_g=1.6e-3, lr_d=1.6e-3,
                 log_every=100, sample_every=2000, checkpoint_every=2000)
    register("cgan-fashion-mnist-quick", dict(quick, steps=10000), default_for=[("cgan", "fashion-mnist")],
             description="Conditional DCGAN widths 32, hinge + class loss, Adam 1.6e-3, 10,000 steps: 300 s "
                         "on a fast 2-core CPU, the best measured at that budget (docs/benchmarks.md)")
    register("cgan-fashion-mnist-300s",
             dict(zoo, dataset="fashion-mnist", steps=10**9, max_seconds=300, log_every=100,
                  sample_every=10**9, checkpoint_every=10**9),
             description="Conditional DCGAN (widths 64) for 300 s (the docs/benchmarks.md 300-s rows)")
