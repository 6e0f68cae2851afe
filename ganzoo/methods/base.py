"""The training-method interface: what a method may do to a training step.

A *training method* (top-k, instance noise, DiffAugment, ADA, an auxiliary class loss,
cluster labels, ...) changes how the trainer uses the networks without changing the
networks or the adversarial loss. It is a dataclass whose fields are its options
(``--method NAME:FIELD=VALUE,...``) and whose hooks the trainer calls at fixed points of
every step; each hook is a no-op here, so a method overrides only what it needs:

==========================  =================================================================
``check(arch)``             before any data is loaded: refuse an architecture it cannot use
``wrap_dataset(data, seed)`` once: supply or transform labels (or samples) of the dataset
``transform(x, ctx, which)`` every input of D (``which``: real or fake), in the D and in the G step
``d_terms(ctx)``            after D scored a batch: a loss term added to D's loss (or None)
``g_logits(logits, ctx)``   G's learning signal: select or reweight the fake logits
``g_terms(ctx)``            after D scored the fakes in the G step: a term added to G's loss
``end_step(ctx)``           once per step, after both updates (e.g. adapt a probability)
``log()``                   figures logged with the losses (e.g. ``ada/p``)
``period``                  steps after which the method's work repeats (lazy R1: its k)
``sampling()``              what a sampler of the trained generator needs (a label prior,
                            whether labels are classes); it travels in the export
``state_dict()`` / ``load_state_dict()``   state that must survive a resume (bit-exactly)
==========================  =================================================================

Randomness: every step's random draws are seeded from (seed, step, rank) before the step
starts, so a method that draws with torch's default generator inside its hooks resumes
bit-exactly without saving any RNG state. The hooks run in a fixed order: methods in the
order given, real before fake in the D step, fake before real in the G step.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import torch


@dataclass
class StepContext:
    """What the hooks of one step see. ``phase`` is ``"d"`` during a discriminator update and
    ``"g"`` during the generator update; the tensors are those of the current phase (the
    inputs after every method's ``transform``; logits as D returned them)."""

    step: int
    total: int
    pack: int = 1
    phase: str = "d"
    real: Optional[torch.Tensor] = None
    fake: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    real_logits: Optional[torch.Tensor] = None
    fake_logits: Optional[torch.Tensor] = None
    real_class_logits: Optional[torch.Tensor] = None  # only when a method sets needs_class_logits
    fake_class_logits: Optional[torch.Tensor] = None
    discriminator: Any = None  # the plain (unwrapped) discriminator
    generator: Any = None  # the plain (unwrapped) generator
    latents: Optional[torch.Tensor] = None  # the z of this phase's fakes

    @property
    def progress(self) -> float:
        """Share of the run done at the start of this step, in [0, 1]."""
        return min(self.step / self.total, 1.0) if self.total > 0 else 1.0


class TrainingMethod:
    """Base class of training methods. Subclasses are dataclasses: their fields are the
    method's options, validated in ``__post_init__`` (raise :class:`ganzoo.GanzooError`
    with one line). ``name`` is filled in from the registry."""

    name: str = ""
    #: D is called with ``class_logits=True`` so ``ctx.*_class_logits`` are set
    needs_class_logits: bool = False

    #: the number of steps after which this method's work repeats (1: the same every step; a
    #: lazy regulariser that runs every k updates: k). ``ganzoo bench`` counts FLOPs over it.
    period: int = 1

    # -- once per run ---------------------------------------------------------------
    def check(self, arch) -> None:
        """Raise a ``GanzooError`` if this method cannot train ``arch`` (a registered
        :class:`ganzoo.catalog.Architecture`). Called before any data is loaded."""

    def check_loss(self, loss, name: str) -> None:
        """Raise a ``GanzooError`` if this method cannot train with ``loss`` (an
        :class:`ganzoo.AdversarialLoss`, registered as ``name``); keep what it needs of it."""

    def wrap_dataset(self, data, seed: int):
        """The dataset the run trains on (``data`` itself by default)."""
        return data

    # -- every step -----------------------------------------------------------------
    def transform(self, x: torch.Tensor, ctx: StepContext, which: str) -> torch.Tensor:
        """An input of D (``which`` is ``"real"`` or ``"fake"``), as D should read it."""
        return x

    def d_terms(self, ctx: StepContext) -> Optional[torch.Tensor]:
        """A scalar added to D's loss (already weighted), or None."""
        return None

    def g_logits(self, fake_logits: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """The fake logits G's loss is computed from."""
        return fake_logits

    def g_terms(self, ctx: StepContext) -> Optional[torch.Tensor]:
        """A scalar added to G's loss (already weighted), or None."""
        return None

    def end_step(self, ctx: StepContext) -> None:
        """Called once per step after the generator update."""

    def log(self) -> dict[str, float]:
        """Figures logged with the losses at every log step (keys are prefixed by the name)."""
        return {}

    # -- what outlives the step -----------------------------------------------------------
    def sampling(self) -> dict[str, Any]:
        """Entries for the export's ``sampling`` table: ``class_prior`` (label frequencies a
        sampler draws from) and ``labels`` (``"classes"``, or what else the labels are)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Tensors, numbers and strings that a resumed run needs (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # -- description ---------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} \
            if dataclasses.is_dataclass(self) else {}

    def spec(self) -> str:
        """``NAME:KEY=VALUE,...`` that recreates this method (options that differ from defaults)."""
        opts = []
        for f in dataclasses.fields(self) if dataclasses.is_dataclass(self) else ():
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            opts.append(f"{f.name}={_format(value)}")
        return self.name + (":" + ",".join(opts) if opts else "")


def _format(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(_format(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)
