"""One training step: ``d_steps`` discriminator updates, then one generator update.

Speed comes from doing less on the hot path: no host sync inside a step (losses stay on the
device), fused optimisers, D frozen during the G update, and the fake batch of the last D
update reused for the G update. Training methods act through :class:`ganzoo.methods.MethodStack`
at fixed points; the step has no branch of its own for any of them.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..interfaces import pack_of
from ..limits import fold_seed
from ..methods import StepContext


def score(D: nn.Module, x, labels, classify: bool = False):
    """``(logits, class logits or None)``: the class head's logits only when ``classify``."""
    return D(x, labels, class_logits=True) if classify else (D(x, labels), None)


class DiscriminatorPair(nn.Module):
    """Scores a real and a fake batch in one ``forward``.

    Why: DistributedDataParallel expects one forward per backward. A discriminator whose
    logits are per-sample scores both batches in one call (one larger matmul per layer and
    no second set of weight gradients to add up: 7% of the MLP reference step); one with
    batch norm sees each batch on its own, as in the reference DCGAN loop.
    """

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.discriminator = discriminator
        self.joint = getattr(discriminator, "per_sample", None)
        if self.joint is None:  # packs: separate forwards, the simple case to reason about (a
            # joint one would be right too, as the batch divides by the pack; it saves ~7 %)
            self.joint = pack_of(discriminator) == 1 and not any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules())

    def forward(self, real, fake, labels, classify: bool = False):
        """``(real logits, fake logits, class logits of the real batch or None)``."""
        D = self.discriminator
        if not self.joint:
            real_logits, real_class_logits = score(D, real, labels, classify)
            return real_logits, D(fake, labels), real_class_logits
        both = None if labels is None else torch.cat((labels, labels))
        logits, classes = score(D, torch.cat((real, fake)), both, classify)
        n = len(real)
        return logits[:n], logits[n:], None if classes is None else classes[:n]


def step_seed(seed: int, step: int, rank: int) -> int:
    """Every random draw of a step (noise, dropout, penalties, methods) follows from
    (seed, step, rank), so resuming needs no RNG state and is bit-exact."""
    return fold_seed((seed * 1_000_003 + step) * 4099 + rank)


def seed_generators(seed: int, device: torch.device) -> None:
    """What ``torch.manual_seed`` does for the CPU and ``device``'s generator, without probing
    every other backend: that probing costs ~0.4 ms, a tenth of a small model's step."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)  # this device's generator only
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def lr_factor(schedule: str, step: int, total: float, warmup: int = 0) -> float:
    """Learning-rate multiplier at ``step`` (0-based) of ``total``: a linear warm-up over the
    first ``warmup`` steps ((step + 1) / warmup) times the schedule's decay. A pure function,
    so resume needs no state."""
    ramp = min((step + 1) / warmup, 1.0) if warmup > 0 else 1.0
    if schedule == "constant" or total <= 0:
        return ramp
    progress = min(step / total, 1.0)
    if schedule == "linear":
        return ramp * (1.0 - progress)
    return ramp * 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def train_step(run, step: int, total: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One generator update preceded by ``d_steps`` discriminator updates.

    Returns ``(d_loss, g_loss, d_adv)``: D's loss with every method's and regulariser's term
    (what D minimised, of the last D update), G's loss, and D's loss function alone (hinge,
    minimax...: comparable between runs that differ only in the terms they add)."""
    cfg, G, D, methods = run.cfg, run.G, run.D_raw, run.methods
    total = total or cfg.steps
    classify = methods.needs_class_logits
    seed_generators(step_seed(cfg.seed, step, run.dist.rank), run.device)
    if cfg.lr_schedule != "constant" or cfg.lr_warmup:
        factor = lr_factor(cfg.lr_schedule, step, total, cfg.lr_warmup)
        for opt, base in ((run.opt_g, cfg.lr_g), (run.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor
    ctx = StepContext(step, total, pack_of(D), discriminator=D, generator=run.G_raw)

    # 1. Discriminator: real batch vs detached fakes (the last fake keeps its graph for step 2).
    for k in range(cfg.d_steps):
        real, labels = run.data.batch(step * cfg.d_steps + k, cfg.batch_size, cfg.seed,
                                      run.dist.rank, run.dist.world_size)
        real, labels = run.prepare(real), (labels if run.arch.conditional else None)
        z = run.G_raw.sample_latent(cfg.batch_size, device=run.device)
        with run.autocast(), torch.set_grad_enabled(k == cfg.d_steps - 1):
            fake = G(z, labels)
        ctx.phase, ctx.labels, ctx.latents = "d", labels, z
        ctx.real = methods.transform(real, ctx, "real")
        ctx.fake = methods.transform(fake.detach(), ctx, "fake")
        with run.autocast():
            ctx.real_logits, ctx.fake_logits, ctx.real_class_logits = run.d_pair(
                ctx.real, ctx.fake, labels, classify)
        d_adv = run.loss.d_loss(ctx.real_logits.float(), ctx.fake_logits.float())
        d_loss = methods.d_terms(d_adv, ctx)
        for reg in run.regularizers:
            d_loss = d_loss + reg(D, ctx.real, ctx.fake.float(), labels)
        run.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        run.opt_d.step()

    # 2. Generator: through the frozen discriminator.
    D.requires_grad_(False)
    ctx.phase, ctx.real_logits, ctx.real_class_logits = "g", None, None
    ctx.fake = methods.transform(fake, ctx, "fake")
    if run.loss.needs_real_for_g:  # augmented outside autocast, as in the D step (ADA's matrices in fp32)
        with torch.no_grad():
            ctx.real = methods.transform(real, ctx, "real")
    with run.autocast():
        ctx.fake_logits, ctx.fake_class_logits = score(D, ctx.fake, labels, classify)
        if run.loss.needs_real_for_g:
            with torch.no_grad():
                ctx.real_logits = D(ctx.real, labels).float()
    g_loss = run.loss.g_loss(methods.g_logits(ctx.fake_logits.float(), ctx), ctx.real_logits)
    g_loss = methods.g_terms(g_loss, ctx)
    run.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    run.opt_g.step()
    D.requires_grad_(True)
    if run.ema is not None:
        run.ema.update(run.G_raw, step=step + 1)
    methods.end_step(ctx)
    return d_loss.detach(), g_loss.detach(), d_adv.detach()
