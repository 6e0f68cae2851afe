"""ganzoo-dcgan: DCGAN (Radford et al. 2016) for square 28×28, 32×32 and 64×64 images.

Generator: a transposed convolution from the latent vector to a 4×4 (7×7 for
28×28) map, then stride-2 ConvTranspose → BatchNorm → ReLU blocks halving the
width each time, and a last ConvTranspose to the image channels with tanh.
Discriminator: the mirror image, strided Conv → BatchNorm → LeakyReLU(0.2)
(no BatchNorm after the first conv) down to one logit (no sigmoid). Convs
followed by BatchNorm have no bias; weights start from N(0, 0.02), BatchNorm
gains from N(1, 0.02). ``spectral_norm`` swaps D's BatchNorm for spectral
norm on every conv (the SNGAN "standard CNN" recipe; off by default). ``pack = k``
makes D a PacGAN discriminator (Lin et al. 2018, "PacDCGAN"): k samples of one kind
stacked along the channels score one logit, which each of them receives.
``extra_layers = n`` adds n stride-1 3×3 Conv → BatchNorm → ReLU (LeakyReLU in D) blocks at the
largest hidden resolution of both networks: G's before its output layer, D's after its first
conv (the ``n_extra_layers`` of the WGAN paper's DCGAN, Arjovsky et al. 2017).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ganzoo import ArchOptions, Discriminator, GanzooError, Generator, hookimpl, pack_samples

SIZES = {28: (7, 2), 32: (4, 3), 64: (4, 4)}  # image size: (first feature map size, stride-2 layers)


@dataclass
class DCGANOptions(ArchOptions):
    """Options of the ``dcgan`` architecture."""

    ngf: int = 64  # generator width: channels of its last hidden layer
    ndf: int = 64  # discriminator width: channels of its first layer
    spectral_norm: bool = False  # D: spectral norm on every conv instead of BatchNorm (Miyato et al. 2018)
    pack: int = 1  # PacGAN: D scores packs of this many samples (the batch size must divide by it)
    extra_layers: int = 0  # 3×3 stride-1 conv blocks at the largest hidden resolution, in G and in D

    def __post_init__(self):
        self.data_shape = tuple(self.data_shape)
        c, *hw = self.data_shape if len(self.data_shape) == 3 else (0, 0, 0)
        if hw[0] != hw[1] or hw[0] not in SIZES or c < 1:
            raise GanzooError("dcgan takes square images of size 28, 32 or 64 (data_shape C,H,W), "
                              f"got data_shape={self.data_shape}")
        if min(self.ngf, self.ndf) < 1:
            raise GanzooError("dcgan options ngf and ndf must be >= 1")
        if self.pack < 1:
            raise GanzooError(f"dcgan option pack must be >= 1, got {self.pack}")
        if self.extra_layers < 0:
            raise GanzooError(f"dcgan option extra_layers must be >= 0, got {self.extra_layers}")

    def widths(self, base: int) -> tuple[int, list[int]]:
        """First feature map size and hidden widths, deepest first: 64px, base 64 → 4, [512, 256, 128, 64]."""
        start, n = SIZES[self.data_shape[1]]
        return start, [base * 2 ** i for i in reversed(range(n))]


def dcgan_init(m: nn.Module) -> None:
    """The DCGAN initialisation: conv weights N(0, 0.02), BatchNorm gains N(1, 0.02), biases 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class DCGANGenerator(Generator):
    """DCGAN generator: ConvTranspose → BatchNorm → ReLU blocks, tanh output."""

    def __init__(self, options: DCGANOptions):
        super().__init__(options)
        start, ch = options.widths(options.ngf)
        layers = [nn.ConvTranspose2d(options.latent_dim, ch[0], start, 1, 0, bias=False),
                  nn.BatchNorm2d(ch[0]), nn.ReLU(True)]
        for a, b in zip(ch, ch[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        for _ in range(options.extra_layers):
            layers += [nn.Conv2d(ch[-1], ch[-1], 3, 1, 1, bias=False), nn.BatchNorm2d(ch[-1]), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(ch[-1], options.data_shape[0], 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z, labels=None):
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(Discriminator):
    """DCGAN discriminator: strided Conv → BatchNorm → LeakyReLU(0.2) blocks, one logit per image."""

    def __init__(self, options: DCGANOptions):
        super().__init__(options)
        start, ch = options.widths(options.ndf)
        ch = ch[::-1]
        bn = not options.spectral_norm
        self.pack = options.pack  # the trainer and the penalties read it (ganzoo.Discriminator)
        layers = [nn.Conv2d(options.data_shape[0] * self.pack, ch[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for _ in range(options.extra_layers):
            layers += [nn.Conv2d(ch[0], ch[0], 3, 1, 1, bias=not bn)] + ([nn.BatchNorm2d(ch[0])] if bn else [])
            layers.append(nn.LeakyReLU(0.2, True))
        for a, b in zip(ch, ch[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=not bn)] + ([nn.BatchNorm2d(b)] if bn else [])
            layers.append(nn.LeakyReLU(0.2, True))
        layers.append(nn.Conv2d(ch[-1], 1, start, 1, 0))
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)
        if options.spectral_norm:
            for conv in [m for m in self.modules() if isinstance(m, nn.Conv2d)]:
                nn.utils.parametrizations.spectral_norm(conv)

    def forward(self, x, labels=None):
        if self.pack == 1:
            return self.net(x).view(x.shape[0])
        packs = pack_samples(x, self.pack, "dcgan")  # k consecutive images, channels stacked
        return self.net(packs).view(len(packs)).repeat_interleave(self.pack)


@hookimpl
def register_architectures(register):
    register("dcgan", generator=DCGANGenerator, discriminator=DCGANDiscriminator,
             options=DCGANOptions, conditional=False,
             description="DCGAN (Radford et al. 2016) for 28, 32 or 64 pixel images, any channel count")


@hookimpl
def register_recipes(register):
    # The DCGAN paper's settings (non-saturating, Adam 2e-4, β1 0.5), 8k steps: the lineage, and
    # the zoo dcgan-fashion-mnist until ganzoo-dcgan 0.5 (FID 53.3 there).
    paper = dict(arch="dcgan", steps=8000, sample_every=1000, checkpoint_every=1000, eval_samples=2000)
    register("dcgan-fashion-mnist-paper", dict(paper, dataset="fashion-mnist"),
             description="DCGAN on fashion-mnist, the paper's settings, 8,000 steps (the zoo model until ganzoo-dcgan 0.5)")
    register("dcgan-mnist", dict(paper, dataset="mnist"), default_for=[("dcgan", "mnist")],
             description="DCGAN on mnist, the paper's settings, 8,000 steps")
    # The best measured in about 300 s on a 2-core CPU (docs/benchmarks.md, "300 s"): half the
    # widths cost a quarter of the FLOPs per step and buy about twice the steps, which is worth
    # more than the width at this budget; hinge with 8× the paper's learning rate and no top-k;
    # two extra 3×3 layers at 14×14 in G and D triple a step's FLOPs (2.8× fewer steps in the
    # same time) and are worth far more than the steps: quiet 300 s, FID 36.8 → 22.2 and
    # precision 0.623 → 0.705 (0.3.1's recipe, 12,000 steps without them, against 0.4.0's two layers, 4,600 steps).
    # A third extra layer (ganzoo-dcgan 0.6.0) buys precision at the same 300 s: quiet, two
    # seeds, 2026-12-04, 5,800 steps against two layers' 7,200 (uncapped): precision
    # 0.714/0.716 → 0.737/0.734, FID 15.4/13.6 → 15.1/11.6, recall 0.758/0.713 → 0.666/0.679.
    # 5,800 steps: where that quiet run stopped (about 500 s at 2026-12-02's slower speed, where
    # --max-seconds 300 stops earlier; at 3,500 steps, one thread, precision was 0.718/0.722).
    hinge32 = dict(arch="dcgan", dataset="fashion-mnist", loss="hinge", lr_g=1.6e-3, lr_d=1.6e-3,
                   log_every=100, sample_every=1000, checkpoint_every=1000)
    # ganzoo-dcgan 0.11: bf16 where the CPU has it (cpu_amp auto): 1.43x the steps/s; 300 s of one
    # thread beside another run made 3,300 steps against fp32's 2,200, FID 35.0 -> 19.9.
    register("dcgan-fashion-mnist-quick",
             dict(hinge32, arch_options={"ngf": 32, "ndf": 32, "extra_layers": 3}, steps=5800, cpu_amp="auto"),
             default_for=[("dcgan", "fashion-mnist")],
             description="DCGAN widths 32 with 3 extra layers, hinge, Adam 1.6e-3, bf16 on CPUs that have it, 5,800 "
                         "steps: 300 s on 2 cores of a fast CPU, about 13 min on an AVX2-only one (--max-seconds 300 caps it); "
                         "the best measured at 300 s (docs/benchmarks.md)")
    # Limited data (docs/benchmarks.md, "Limited data"): 10 % of the train split, the quick
    # recipe with no extra layers and a D twice as wide, which overfits the 6,000 images within
    # 30,000 steps (its hinge loss 0.34 at the end) where widths 32 barely did. The baseline
    # of the with/without-augmentation table; add --method diffaugment:policy=translation,...
    register("dcgan-fashion-mnist-10pct",
             dict(hinge32, arch_options={"ngf": 32, "ndf": 64, "extra_layers": 0}, subset="0.1",
                  steps=30000, checkpoint_every=5000),
             description="DCGAN (G widths 32, D 64) on a seeded 10 % of fashion-mnist, 30,000 steps: the "
                         "limited-data baseline (docs/benchmarks.md; add a --method to compare)")
    # zoo dcgan-fashion-mnist: the 0.4–0.5 quick recipe (two extra layers) for 24,000 steps (47 min
    # on one thread): FID 5.4 against the paper settings' 53.3; widths 64 for 8,000 steps in the
    # same time scored 5.8.
    register("dcgan-fashion-mnist",
             dict(hinge32, arch_options={"ngf": 32, "ndf": 32, "extra_layers": 2}, steps=24000,
                  checkpoint_every=2000),
             description="DCGAN widths 32 with 2 extra layers, hinge, Adam 1.6e-3, 24,000 steps: "
                         "about 47 min on one CPU thread with in-training evaluation (zoo dcgan-fashion-mnist)")
    # zoo dcgan-stacked-mnist (ganzoo-dcgan 0.10): the best Stacked MNIST settings measured in 30
    # minutes of one thread (docs/benchmarks.md, "Stacked MNIST"): hinge, widths 64 for G and D,
    # Adam 8e-4, a spectrally normalised D instead of batch norm (the SNGAN standard CNN's D: D's
    # hinge loss stays near 1.8 where the batch-norm D's fell to 0.3; KL 0.078 / 0.085 / 0.079 on
    # seeds 1 / 0 / 2 against that D's 0.127 / 0.144), and one extra 3x3 layer at 14x14 in G and D:
    # 0.071 / 0.074 / 0.076 on seeds 1 / 0 / 2 in 7,200 / 7,000 / 6,700 steps. ganzoo-dcgan 0.11: the
    # step in bf16 on a CPU with native bf16 (cpu_amp auto; 1.7x the steps/s), so 30 minutes of one
    # thread stopped at 12,700 / 12,700 / 12,400 steps: KL 0.064 / 0.063 / 0.065 on seeds 1 / 0 / 2.
    # Elsewhere it trains in fp32 and the same steps take about 1.7x the time. ganzoo-dcgan 0.12: the
    # least-squares loss instead of hinge, and with it DCGAN's Adam betas (0.5, 0.999) (hinge's loss
    # recommends (0, 0.9); the recipe sets none), the same 12,700 steps: KL 0.060 / 0.060 / 0.061 on
    # seeds 1 / 0 / 2 (non-saturating: 0.079 / 0.075; relativistic: 0.102; docs/benchmarks.md
    # separates the loss from the betas). ganzoo-dcgan 0.13: least squares with hinge's betas
    # (0, 0.9), set here: 0.056 / 0.053 / 0.055 on seeds 1 / 0 / 2.
    stacked = dict(hinge32, dataset="stacked-mnist", arch_options={"ngf": 64, "ndf": 64, "extra_layers": 0},
                   lr_g=8e-4, lr_d=8e-4, seed=1)
    spectral = dict(stacked, arch_options=dict(stacked["arch_options"], spectral_norm=True), steps=12100)
    extra_layer = dict(spectral, arch_options=dict(spectral["arch_options"], extra_layers=1), steps=7200)
    amp = dict(extra_layer, steps=12700, cpu_amp="auto")
    register("dcgan-stacked-mnist", dict(amp, loss="least-squares", betas_g=(0.0, 0.9), betas_d=(0.0, 0.9)),
             default_for=[("dcgan", "stacked-mnist")],
             description="DCGAN widths 64, one extra layer, a spectral-norm D, least squares, Adam 8e-4 betas (0, 0.9), "
                         "bf16 on CPUs that have it, 12,700 steps (33-34 min of one such thread beside another training) on Stacked MNIST "
                         "(zoo dcgan-stacked-mnist: 1,000 modes, KL 0.056; 0.053-0.056 on 3 seeds)")
    # The same with DCGAN's betas (0.5, 0.999): the zoo model of ganzoo-dcgan 0.12 (KL 0.060, seed 1).
    register("dcgan-stacked-mnist-beta05", dict(amp, loss="least-squares"),
             description="DCGAN widths 64, one extra layer, a spectral-norm D, least squares, Adam 8e-4 betas "
                         "(0.5, 0.999), bf16 on CPUs that have it, 12,700 steps on Stacked MNIST: KL 0.060 (the zoo "
                         "model of ganzoo-dcgan 0.12)")
    # The same with the hinge loss: the zoo model of ganzoo-dcgan 0.11 (KL 0.064, seed 1).
    register("dcgan-stacked-mnist-hinge", amp,
             description="DCGAN widths 64, one extra layer, a spectral-norm D, hinge, Adam 8e-4, bf16 on CPUs that have "
                         "it, 12,700 steps on Stacked MNIST: KL 0.064 (the zoo model of ganzoo-dcgan 0.11)")
    # The same in fp32, 7,200 steps: the zoo model of ganzoo-dcgan 0.10 (KL 0.071, seed 1).
    register("dcgan-stacked-mnist-fp32", extra_layer,
             description="DCGAN widths 64, one extra layer, a spectral-norm D, hinge, Adam 8e-4, fp32, 7,200 steps "
                         "on Stacked MNIST: KL 0.071 (the zoo model of ganzoo-dcgan 0.10)")
    # Without the extra layer: the zoo model of ganzoo-dcgan 0.9 (KL 0.079, seed 1), stopped by
    # the clock at step 12,100.
    register("dcgan-stacked-mnist-sn", spectral,
             description="DCGAN widths 64 with a spectral-norm D, hinge, Adam 8e-4, 12,100 steps on Stacked MNIST: "
                         "1,000 modes, KL 0.08 (the zoo model of ganzoo-dcgan 0.9)")
    # The same with dcgan's batch-norm D: the zoo model of ganzoo-dcgan 0.8 (KL 0.127, seed 1),
    # stopped by the clock at step 13,600.
    register("dcgan-stacked-mnist-bn", dict(stacked, steps=13600),
             description="DCGAN widths 64 (batch-norm D), hinge, Adam 8e-4, 13,600 steps on Stacked MNIST: "
                         "1,000 modes, KL 0.13 (the zoo model of ganzoo-dcgan 0.8)")
    # The bare dcgan defaults (non-saturating, Adam 2e-4 β1 0.5): the 30-minute run stopped at
    # step 23,500, the zoo model until ganzoo-dcgan 0.7 (KL 0.159) and the plain-DCGAN figure
    # the issue asks to report beside the best.
    register("dcgan-stacked-mnist-plain",
             dict(arch="dcgan", dataset="stacked-mnist", steps=23500, sample_every=500, checkpoint_every=5000),
             description="Plain DCGAN (the paper's settings) on Stacked MNIST, 23,500 steps: 1,000 modes, KL 0.16 "
                         "(the zoo model until ganzoo-dcgan 0.7)")
    register("dcgan-fashion-mnist-300s",
             dict(arch="dcgan", dataset="fashion-mnist", loss="hinge", methods=["top-k:fraction=0.5"],
                  steps=10**9, max_seconds=300, log_every=100, sample_every=10**9, checkpoint_every=10**9),
             description="DCGAN (widths 64) for 300 s: hinge loss + top-k 0.5 (the docs/benchmarks.md 300-s rows)")
