"""The small interfaces every plugin implements.

* :class:`ArchOptions`: a dataclass of an architecture's constructor options.
* :class:`Generator`: maps a latent batch (and optional labels) to data.
* :class:`Discriminator`: scores a data batch with one logit per sample.
* :class:`AdversarialLoss` / :class:`Regularizer`: the objective, from logits.
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from dataclasses import dataclass
from typing import Literal, Mapping, Optional

import torch
from torch import nn


@dataclass
class ArchOptions:
    """Options shared by every architecture; plugins subclass and add fields.

    ``data_shape`` and ``num_classes`` are normally filled in by the trainer
    from the dataset; set them yourself when building a network by hand.
    """

    latent_dim: int = 100
    data_shape: tuple[int, ...] = (1, 28, 28)
    num_classes: int = 0
    # the latent prior: "normal" = N(0, I); "uniform" = U(-1, 1) in every coordinate (the DCGAN
    # paper's). Every caller draws through Generator.sample_latent, so an export samples right.
    latent_distribution: Literal["normal", "uniform"] = "normal"

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


class Generator(nn.Module):
    """Base class of generators.

    Subclasses call ``super().__init__(options)`` and implement
    ``forward(z, labels=None)`` returning a batch of shape
    ``(N, *data_shape)`` in ``output_range`` (``None`` = unbounded, e.g. 2-D points).
    """

    output_range: Optional[tuple[float, float]] = (-1.0, 1.0)
    #: True when the truncation trick acts inside ``forward(z, labels, truncation=t)`` (e.g.
    #: StyleGAN's ψ towards the mean w) rather than by truncating z in ``sample_latent``
    truncation_in_forward: bool = False
    #: what a sampler needs beyond the weights, set by the trainer from its training methods
    #: and restored from an export: ``class_prior`` (label frequencies; uniform when absent)
    #: and ``labels`` (what the labels are when not the dataset's classes). Never an option.
    sampling: Mapping = MappingProxyType({})  # read-only: an instance gets its own dict

    def __init__(self, options: ArchOptions):
        super().__init__()
        self.options = options

    @property
    def latent_dim(self) -> int:
        return self.options.latent_dim

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.options.data_shape)

    @property
    def num_classes(self) -> int:
        return self.options.num_classes

    def sample_latent(self, n: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None,
                      truncation: float | None = None) -> torch.Tensor:
        """A batch of ``n`` latent vectors from the prior (``options.latent_distribution``:
        N(0, I), or U(-1, 1) per coordinate); with ``truncation`` t, from that prior truncated to
        [-t, t] in every coordinate (the truncation trick)."""
        param = next(self.parameters())
        device = param.device if device is None else device
        if getattr(self.options, "latent_distribution", "normal") == "uniform":
            from .latents import check_truncation

            check_truncation(truncation)
            half = 1.0 if truncation is None else min(truncation, 1.0)
            u = torch.rand(n, self.latent_dim, generator=generator, device=device, dtype=torch.float32)
            return ((2 * u - 1) * half).to(param.dtype)
        if truncation is not None:
            from .latents import truncated_normal

            return truncated_normal((n, self.latent_dim), truncation, generator, device, param.dtype)
        return torch.randn(n, self.latent_dim, generator=generator, device=device, dtype=param.dtype)

    def sample_labels(self, n: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor | None:
        """Class labels drawn from ``sampling["class_prior"]`` (uniform when absent) for a
        conditional generator, else ``None``."""
        if not self.num_classes:
            return None
        if device is None:
            device = next(self.parameters()).device
        prior = (getattr(self, "sampling", None) or {}).get("class_prior")
        if prior:
            where = generator.device if generator is not None else device
            p = torch.tensor(prior, dtype=torch.float64, device=where)
            return torch.multinomial(p, n, replacement=True, generator=generator).to(device)
        return torch.randint(0, self.num_classes, (n,), generator=generator, device=device)

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Draw ``n`` samples in the current mode (``load_generator`` returns eval mode);
        returns ``(samples, labels)``."""
        z = self.sample_latent(n, generator=generator)
        if labels is None:
            labels = self.sample_labels(n, generator=generator, device=z.device)
        return self(z, labels), labels


class Discriminator(nn.Module):
    """Base class of discriminators: ``forward(x, labels=None)`` → logits of shape ``(N,)``.

    ``per_sample``: True when each logit depends on its own sample alone, so the trainer may
    score a real and a fake batch in one forward. ``None`` (the default) lets the trainer
    decide: per-sample unless the network holds batch norm. Set it to False for layers that
    mix samples (minibatch discrimination, minibatch stddev).

    ``pack``: k when each logit scores a pack of k consecutive samples (PacGAN), repeated for
    each member; the batch size must then divide by k, gradient penalties take the norm of
    each pack's gradient, and the trainer scores real and fake batches in separate forwards.

    ``has_class_head``: a conditional discriminator that can also classify its input sets
    it and accepts ``forward(x, labels, class_logits=True)`` → ``(logits (N,), class
    logits (N, num_classes))`` from the same pass; ``--class-weight`` needs it.
    """

    per_sample: bool | None = None
    pack: int = 1
    has_class_head: bool = False

    def __init__(self, options: ArchOptions):
        super().__init__()
        self.options = options

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.options.data_shape)

    @property
    def num_classes(self) -> int:
        return self.options.num_classes


def parameter_count(module: nn.Module) -> int:
    """The number of a network's parameters (of its shapes: a module on the meta device counts
    too), what ``ganzoo info`` shows and the memory check before a run is built counts."""
    return sum(p.numel() for p in module.parameters())


def pack_samples(x, pack: int, arch: str):
    """PacGAN input (Lin et al. 2018): each ``pack`` consecutive samples joined along dim 1
    (their channels or features), ``(N, C, ...)`` → ``(N/k, k·C, ...)``. A discriminator
    scores the packs and hands each logit back to its members with
    ``logits.repeat_interleave(pack)``. A batch that does not divide is one line."""
    from .errors import GanzooError

    if len(x) % pack:
        raise GanzooError(f"{arch} option pack={pack} needs batches divisible by {pack}, got a batch of {len(x)}")
    return x.reshape(len(x) // pack, -1, *x.shape[2:])


def pack_of(discriminator) -> int:
    """Samples per logit group (``Discriminator.pack``; 1 for a plugin that does not subclass
    ``Discriminator``), read through a DDP or ``torch.compile`` wrapper too."""
    inner = getattr(discriminator, "module", None) or getattr(discriminator, "_orig_mod", None)
    return getattr(discriminator, "pack", None) or getattr(inner, "pack", 1)


class AdversarialLoss:
    """An adversarial objective expressed on discriminator logits.

    ``d_loss`` is minimised by the discriminator and ``g_loss`` by the
    generator. ``real_logits`` is passed to ``g_loss`` for losses that need it
    (relativistic); ``needs_real_for_g`` tells the trainer to compute it.
    ``recommended`` holds training defaults that suit this loss
    (``lr``, ``betas``, ``d_steps``, ``regularizers``).
    """

    needs_real_for_g: bool = False
    recommended: dict = {}
    #: the logit above which D calls a sample real (logistic and hinge: 0; least squares with
    #: targets 0 and 1: 0.5); None where D's output has no fixed origin (adding a constant to every
    #: logit changes neither loss: wasserstein, relativistic). ADA's r_t counts logits above it.
    decision_threshold: float | None = 0.0

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class Regularizer:
    """A discriminator regulariser; ``weight`` scales the returned penalty.

    ``__call__(discriminator, real, fake, labels)`` returns the weighted scalar
    penalty, added to the discriminator loss.
    """

    default_weight: float = 1.0
    #: the penalty is on each sample's own gradient, which a BatchNorm in D (mixing the samples of
    #: a batch) makes ill-defined: the trainer warns when D has one (WGAN-GP's critic has none)
    per_sample_critic: bool = False

    def __init__(self, weight: float | None = None):
        self.weight = self.default_weight if weight is None else float(weight)

    def __call__(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                 labels: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


def check_sampling(sampling, num_classes: int, where: str) -> dict:
    """A ``sampling`` table read from a file, validated: ``class_prior`` empty or
    ``num_classes`` probabilities >= 0 summing to 1; ``labels`` a string."""
    import math

    from .errors import GanzooError

    if not isinstance(sampling, dict):
        raise GanzooError(f"{where}: sampling must be a table, got {type(sampling).__name__}")
    prior = sampling.get("class_prior") or []
    if prior:
        ok = (isinstance(prior, list) and len(prior) == num_classes
              and all(isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 0 for p in prior)
              and math.isclose(sum(prior), 1.0, abs_tol=1e-4))
        if not ok:
            raise GanzooError(f"{where}: sampling.class_prior must be empty (uniform) or num_classes="
                              f"{num_classes} probabilities >= 0 summing to 1")
    if "labels" in sampling and not isinstance(sampling["labels"], str):
        raise GanzooError(f"{where}: sampling.labels must be a string")
    return dict(sampling)
