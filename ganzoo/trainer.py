"""The one training loop, identical for every architecture plugin.

Speed comes from doing less on the hot path: data lives on the device and is
batched by index, there is no host sync inside a step (losses are summed on
the device and read every ``log_every`` steps), optimisers are fused, the
discriminator is frozen during the generator update, and the fake batch of the
last discriminator step is reused for the generator step.
"""
from __future__ import annotations

import json
import math
import shlex
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import __version__, distributed
from .checkpoint import (checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint,
                         prune_checkpoints, save_checkpoint)
from .config import TrainConfig, parse_regularizer
from .errors import GanzooError
from .images import save_grid, to_model_range, to_uint8
from .interfaces import pack_of
from .losses import top_k_logits
from .registry import create_dataset, create_loss, create_regularizer, get_registry


class NonFiniteLoss(GanzooError):
    pass


def _has_class_head(arch) -> bool:
    return arch.conditional and getattr(arch.discriminator, "has_class_head", False)


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
    """Every random draw of a step (noise, dropout, penalties) follows from (seed, step, rank),
    so resuming needs no RNG state and is bit-exact."""
    return (seed * 1_000_003 + step) * 4099 + rank


def seed_generators(seed: int, device: torch.device) -> None:
    """What ``torch.manual_seed`` does for the CPU and ``device``'s generator, without probing
    every other backend: that probing costs ~0.4 ms, a tenth of a small model's step."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)  # this device's generator only
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


@dataclass
class Run:
    """Everything the loop needs, built once by :func:`build_run`."""

    cfg: TrainConfig
    dist: distributed.DistInfo
    arch: Any
    options: Any
    plugin: str
    plugin_version: str
    data: Any
    G: nn.Module  # possibly DDP/compiled; G_raw / D_raw are the plain modules
    G_raw: nn.Module
    D_raw: nn.Module
    d_pair: nn.Module
    ema: Any
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    loss: Any
    regularizers: list
    run_dir: Path
    memory_format: torch.memory_format
    start_step: int = 0

    @property
    def device(self) -> torch.device:
        return self.dist.device

    def autocast(self):
        if self.cfg.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def prepare(self, real: torch.Tensor) -> torch.Tensor:
        x = to_model_range(real, self.G_raw.output_range)
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def sampler(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.G_raw


# -- building ----------------------------------------------------------------------
def _load_data(cfg: TrainConfig):
    data = create_dataset(cfg.dataset, split=cfg.split, root=cfg.data_root, image_size=cfg.image_size)
    if len(data) < cfg.batch_size:
        raise GanzooError(f"{cfg.dataset} has {len(data)} samples, fewer than --batch-size {cfg.batch_size}")
    return data


def _arch_options(arch, cfg: TrainConfig, data, base: dict | None = None):
    """The architecture's options (over ``base``), with data shape and classes from the dataset."""
    if arch.conditional and data.num_classes == 0:
        raise GanzooError(f"{arch.name} is conditional and needs a labelled dataset; "
                          f"{cfg.dataset} has no labels (--cluster-labels K labels it with k-means clusters)")
    if "class_prior" in cfg.arch_options:
        raise GanzooError(f"{arch.name} option class_prior is not set by hand: training sets it to the "
                          f"frequencies of the labels (see --cluster-labels)")
    values = {**(base or {}), **cfg.arch_options}
    user = {k: values[k] for k in ("data_shape", "num_classes") if k in values}
    values.update(data_shape=tuple(data.shape), num_classes=data.num_classes if arch.conditional else 0)
    values.pop("class_prior", None)  # an --init model's prior belongs to its own labels
    if arch.conditional and getattr(data, "class_prior", ()):  # labels of unequal frequencies
        values["class_prior"] = tuple(data.class_prior)
    if user:
        asked = arch.make_options(**{**values, **user})
        for key in user:
            if getattr(asked, key) != values[key]:
                hint = " (use --image-size to resize the data)" if key == "data_shape" else ""
                raise GanzooError(f"{arch.name} option {key}={getattr(asked, key)} does not match "
                                  f"dataset {cfg.dataset}, which has {key}={values[key]}{hint}")
    return arch.make_options(**values)


def _optimizer(module: nn.Module, cfg: TrainConfig, lr: float, betas, device: torch.device):
    from timm.optim import create_optimizer_v2  # timm is imported lazily: it costs seconds

    kwargs: dict[str, Any] = {}
    if "adam" in cfg.optimizer:
        kwargs["betas"] = tuple(betas)
    if cfg.optimizer in ("adam", "adamw") and device.type in ("cpu", "cuda"):
        kwargs["fused"] = True
    try:
        return create_optimizer_v2(module, opt=cfg.optimizer, lr=lr, weight_decay=0.0, **kwargs)
    except (AssertionError, ValueError, TypeError) as exc:
        from timm.optim import list_optimizers

        if cfg.optimizer not in list_optimizers():
            from .errors import UnknownNameError

            raise UnknownNameError("optimizer", cfg.optimizer, list_optimizers()) from None
        raise GanzooError(f"optimizer {cfg.optimizer!r}: {exc}") from None


def build_run(cfg: TrainConfig, state: dict | None = None) -> Run:
    info = distributed.setup(cfg.device)
    device = info.device
    loss = create_loss(cfg.loss)
    cfg = cfg.resolved(loss.recommended)
    cfg.validate()
    entry = get_registry().get("architecture", cfg.arch)
    arch = entry.obj
    if cfg.class_weight and not _has_class_head(arch):  # before any data is loaded
        with_head = [e.name for e in get_registry().entries("architecture") if _has_class_head(e.obj)]
        raise GanzooError(f"--class-weight needs a conditional discriminator with a class head; "
                          f"{arch.name} has none (architectures with one: {', '.join(with_head) or 'none'})")
    if cfg.cluster_labels and not arch.conditional:
        with_labels = [e.name for e in get_registry().entries("architecture") if e.obj.conditional]
        raise GanzooError(f"--cluster-labels trains on cluster ids as class labels: it needs a conditional "
                          f"architecture ({', '.join(with_labels) or 'none installed'}); {arch.name} is not")
    regularizers = [create_regularizer(*parse_regularizer(spec)) for spec in cfg.regularizers]
    data = _load_data(cfg)
    if cfg.cluster_labels:
        from .data.clusters import ClusterLabels

        data = ClusterLabels(data, cfg.cluster_labels, cfg.seed,  # a resumed run keeps its clusters
                             centroids=None if state is None else state.get("cluster_centroids"))
    init = None
    if cfg.init:  # fine-tuning: the architecture and its options come from the initial model
        from .export import load_generator

        init = load_generator(cfg.init, device="cpu")
        if init.export_config["architecture"] != arch.name:
            raise GanzooError(f"--init {cfg.init} is a {init.export_config['architecture']} model, "
                              f"not {arch.name}")
    options = _arch_options(arch, cfg, data, base=init.options.to_dict() if init else None)

    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads or max(1, _cores() // info.local_world_size))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    G_raw = arch.create_generator(options).to(device)
    D_raw = arch.create_discriminator(options).to(device)
    pack = pack_of(D_raw)
    if not isinstance(pack, int) or pack < 1:
        raise GanzooError(f"{arch.name}'s discriminator has pack = {pack!r}; it must be an int >= 1")
    if cfg.batch_size % pack:
        raise GanzooError(f"{arch.name}'s discriminator scores packs of {pack} samples: --batch-size "
                          f"must be a multiple of {pack}, got {cfg.batch_size}")
    if init is not None:
        G_raw.load_state_dict(init.state_dict())
    memory_format = torch.contiguous_format
    if cfg.channels_last and has_conv(D_raw) and len(options.data_shape) == 3:
        memory_format = torch.channels_last
        G_raw.to(memory_format=memory_format)
        D_raw.to(memory_format=memory_format)
    if info.distributed and cfg.sync_batchnorm:
        G_raw = nn.SyncBatchNorm.convert_sync_batchnorm(G_raw)
        D_raw = nn.SyncBatchNorm.convert_sync_batchnorm(D_raw)

    opt_g = _optimizer(G_raw, cfg, cfg.lr_g, cfg.betas_g, device)
    opt_d = _optimizer(D_raw, cfg, cfg.lr_d, cfg.betas_d, device)
    ema = None
    if cfg.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(G_raw, decay=cfg.ema_decay, use_warmup=True)
        ema.module.eval()

    start_step = 0
    if state is not None:
        if state.get("world_size", 1) != info.world_size:
            raise GanzooError(f"this checkpoint was written by {state.get('world_size', 1)} process(es); "
                              f"resume it with the same number (got {info.world_size})")
        G_raw.load_state_dict(state["generator"])
        D_raw.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if ema is not None and state.get("ema") is not None:
            ema.module.load_state_dict(state["ema"])
        start_step = int(state["step"])

    G, d_pair = G_raw, DiscriminatorPair(D_raw)
    if cfg.compile:
        G, d_pair = torch.compile(G), torch.compile(d_pair)
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        G, d_pair = DDP(G, device_ids=ids), DDP(d_pair, device_ids=ids)

    run_dir = Path(cfg.out)
    return Run(cfg, info, arch, options, entry.plugin, entry.plugin_version, data.to(device), G,
               G_raw, D_raw, d_pair, ema, opt_g, opt_d, loss, regularizers, run_dir,
               memory_format, start_step)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# -- the loop ---------------------------------------------------------------------------
def lr_factor(schedule: str, step: int, total: float) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: a pure function, so resume needs no state."""
    if schedule == "constant" or total <= 0:
        return 1.0
    progress = min(step / total, 1.0)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def instance_noise_std(cfg: TrainConfig, step: int, total: int) -> float:
    """Std of the instance noise at ``step`` of ``total``: ``instance_noise`` decayed linearly
    to 0 at the ``instance_noise_until`` share of the run (a pure function: resume needs no state)."""
    if cfg.instance_noise == 0 or total <= 0:
        return 0.0
    return cfg.instance_noise * lr_factor("linear", step, cfg.instance_noise_until * total)


def noisy(x: torch.Tensor, std: float) -> torch.Tensor:
    """``x`` plus Gaussian noise of ``std`` (``x`` itself when 0): what D reads under instance noise.
    The noise is float32 whatever ``x`` is (a bf16 fake gets the same noise as a float32 real)."""
    return x + std * torch.randn_like(x, dtype=torch.float32) if std > 0 else x


def train_step(run: Run, step: int, total: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One generator update preceded by ``d_steps`` discriminator updates."""
    cfg, G, D = run.cfg, run.G, run.D_raw
    conditional, classify = run.arch.conditional, cfg.class_weight > 0
    seed_generators(step_seed(cfg.seed, step, run.dist.rank), run.device)
    if cfg.lr_schedule != "constant":
        factor = lr_factor(cfg.lr_schedule, step, total or cfg.steps)
        for opt, base in ((run.opt_g, cfg.lr_g), (run.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    noise = instance_noise_std(cfg, step, total or cfg.steps)  # D reads every input through it

    # 1. Discriminator: real batch vs detached fakes (the last fake keeps its graph for step 2).
    for k in range(cfg.d_steps):
        real, labels = run.data.batch(step * cfg.d_steps + k, cfg.batch_size, cfg.seed,
                                      run.dist.rank, run.dist.world_size)
        real, labels = run.prepare(real), (labels if conditional else None)
        z = run.G_raw.sample_latent(cfg.batch_size, device=run.device)
        with run.autocast(), torch.set_grad_enabled(k == cfg.d_steps - 1):
            fake = G(z, labels)
        real_in, fake_in = noisy(real, noise), noisy(fake.detach(), noise)
        with run.autocast():
            real_logits, fake_logits, real_class_logits = run.d_pair(real_in, fake_in, labels, classify)
        d_loss = run.loss.d_loss(real_logits.float(), fake_logits.float())
        if classify:
            d_loss = d_loss + cfg.class_weight * F.cross_entropy(real_class_logits.float(), labels)
        for reg in run.regularizers:
            d_loss = d_loss + reg(D, real_in, fake_in.float(), labels)
        run.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        run.opt_d.step()

    # 2. Generator: through the frozen discriminator.
    D.requires_grad_(False)
    with run.autocast():
        fake_logits, fake_class_logits = score(D, noisy(fake, noise), labels, classify)
        real_logits = None
        if run.loss.needs_real_for_g:
            with torch.no_grad():
                real_logits = D(noisy(real, noise), labels).float()
    g_loss = run.loss.g_loss(top_k_logits(fake_logits.float(), cfg.top_k, pack_of(D)), real_logits)
    if classify:
        g_loss = g_loss + cfg.class_weight * F.cross_entropy(fake_class_logits.float(), labels)
    run.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    run.opt_g.step()
    D.requires_grad_(True)
    if run.ema is not None:
        run.ema.update(run.G_raw, step=step + 1)
    return d_loss.detach(), g_loss.detach()


def _refuse_to_overwrite(run_dir: Path, info) -> None:
    """A new run never writes into a directory that already holds one: its export, metrics and
    checkpoints would be overwritten or mixed with the new run's. Rank 0 looks; every rank stops."""
    found = info.is_main and ((run_dir / "config.json").exists() or bool(list_checkpoints(run_dir)))
    if distributed.any_rank(found, info):
        ckpts = list_checkpoints(run_dir) if info.is_main else []
        where = shlex.quote(str(run_dir))
        if distributed.any_rank(bool(ckpts), info):  # every rank tells the same story
            last = f" (last checkpoint: {ckpts[-1].name})" if ckpts else ""
            what = (f"a run{last}; continue it with "
                    f"`ganzoo resume {where} --steps TOTAL`, or")
        else:
            what = "a run with no checkpoint (nothing to resume); delete it, or"
        distributed.barrier()  # every rank stops here: leave together (see barrier())
        raise GanzooError(f"{where} already holds {what} start a new run with another --out "
                          f"(nothing was overwritten)")


def train(cfg: TrainConfig, resume: str | Path | None = None) -> Path:
    """Train (or resume) a run; returns the run directory."""
    state = None
    if resume is not None:
        state = load_checkpoint(latest_checkpoint(resume))
        saved = TrainConfig.from_dict(json.loads(state["config"]))
        cfg = saved.replace(steps=cfg.steps, out=str(resume), progress=cfg.progress)
    logger = None
    try:  # checks before anything is written; a refused run leaves the process group too
        run = build_run(cfg, state)
        cfg, info = run.cfg, run.dist
        total = _total_steps(cfg, len(run.data), info.world_size)
        if run.start_step >= total:
            raise GanzooError(f"the run is already at step {run.start_step} of {total}; "
                              f"ask for more with --steps")
        if cfg.eval_every and info.is_main:  # fail now, not at the first evaluation
            from .evaluation import check_evaluable

            check_evaluable(cfg.dataset, list(cfg.eval_metrics) or None, cfg.eval_samples,
                            run.arch.conditional, str(run.device), cfg.cluster_labels)
        if resume is None:
            _refuse_to_overwrite(run.run_dir, info)
        logger = _Logger(run) if info.is_main else None
        if logger:
            logger.write_config()
    except BaseException:
        if logger:
            logger.close()
        distributed.cleanup()
        raise
    stopper = _InterruptFlag()
    sums = torch.zeros(2, device=run.device)
    step = run.start_step
    last_saved = None
    t0, t_last, step_last = time.perf_counter(), time.perf_counter(), step
    bar = _progress(cfg, total, step, info.is_main)
    try:
        with stopper:
            while step < total:
                d_loss, g_loss = train_step(run, step, total)
                sums += torch.stack((d_loss, g_loss))
                step += 1
                bar.update(1)
                done = step == total
                if step % cfg.log_every == 0 or done:
                    _check_finite(sums, step, run, last_saved)
                    now = time.perf_counter()
                    n_imgs = (step - step_last) * cfg.batch_size * cfg.d_steps * info.world_size
                    avg = (sums / max(1, step - step_last)).tolist()
                    record = {"step": step, "d_loss": avg[0], "g_loss": avg[1],
                              "img_per_s": n_imgs / max(now - t_last, 1e-9),
                              "elapsed_s": now - t0}
                    sums.zero_()
                    t_last, step_last = now, step
                    bar.set_postfix(d=f"{avg[0]:.3f}", g=f"{avg[1]:.3f}",
                                    img_s=f"{record['img_per_s']:.0f}", refresh=False)
                    if logger:
                        logger.log(record)
                    out_of_time = cfg.max_seconds is not None and now - t0 >= cfg.max_seconds
                    if not done and distributed.any_rank(stopper.requested or out_of_time, info):
                        break
                elif not info.distributed and stopper.requested:
                    break
                if logger and (step % cfg.sample_every == 0 or done):
                    logger.sample_grid(step)
                if cfg.eval_every and step % cfg.eval_every == 0 and logger:
                    logger.evaluate(step)
                if step % cfg.checkpoint_every == 0 or done:
                    _check_finite(sums, step, run, last_saved)
                    last_saved = _save(run, step) if info.is_main else last_saved
        if step < total and not stopper.requested:  # the time budget ran out: finish normally
            total = step
            if info.is_main:
                _save(run, step)
                logger.sample_grid(step)
                bar.write(f"time budget of {cfg.max_seconds:g} s reached at step {step}")
        if step < total:  # interrupted: keep what was done
            _check_finite(sums, step, run, last_saved)
            if info.is_main:
                _save(run, step)
                logger.sample_grid(step)
                bar.close()
                print(f"interrupted at step {step}: checkpoint saved; continue with "
                      f"`ganzoo resume {shlex.quote(str(run.run_dir))}`", flush=True)
            raise KeyboardInterrupt
        if info.is_main:
            from .export import export_run

            export_run(run.run_dir, run.run_dir / "export")
        distributed.barrier()  # success only: a failed rank must not leave the others waiting
    finally:
        bar.close()
        if logger:
            logger.close()
        distributed.cleanup()
    return run.run_dir


def _total_steps(cfg: TrainConfig, n_samples: int, world_size: int) -> int:
    if cfg.epochs is None:
        return cfg.steps
    per_epoch = max(1, n_samples // (cfg.batch_size * cfg.d_steps * world_size))
    return max(1, math.ceil(cfg.epochs * per_epoch))


def _check_finite(sums: torch.Tensor, step: int, run: Run, last_saved: Path | None) -> None:
    if not bool(torch.isfinite(sums).all()):
        where = (f"the last good checkpoint is {last_saved}" if last_saved
                 else "no checkpoint was written yet")
        raise NonFiniteLoss(f"a loss became non-finite before step {step} (try a lower learning "
                            f"rate or another loss); {where}")


def checkpoint_state(run: Run, step: int) -> dict:
    return {
        "step": step,
        "generator": run.G_raw.state_dict(),
        "discriminator": run.D_raw.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema is not None else None,
        "opt_g": run.opt_g.state_dict(),
        "opt_d": run.opt_d.state_dict(),
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "config": json.dumps(run.cfg.to_dict()),
        "arch": run.arch.name,
        "options": json.dumps(run.options.to_dict()),
        "plugin": run.plugin,
        "plugin_version": run.plugin_version,
        "ganzoo_version": __version__,
        "world_size": run.dist.world_size,
        "dataset": run.cfg.dataset,
        "class_names": list(getattr(run.data, "class_names", ()) or ()),
        "cluster_centroids": run.data.centroids.cpu() if run.cfg.cluster_labels else None,
    }


def _save(run: Run, step: int) -> Path:
    path = save_checkpoint(checkpoint_state(run, step), checkpoint_path(run.run_dir, step))
    prune_checkpoints(run.run_dir, run.cfg.keep_checkpoints)
    return path


class _InterruptFlag:
    """First Ctrl-C asks the loop to stop at a step boundary (and checkpoint); a second one aborts."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _progress(cfg: TrainConfig, total: int, start: int, is_main: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not (cfg.progress and is_main),
                dynamic_ncols=True, desc=f"{cfg.arch}/{cfg.dataset}", unit="step")


class _Logger:
    """Rank 0's writer of config, metrics.jsonl, TensorBoard events and sample grids."""

    def __init__(self, run: Run):
        self.run = run
        run.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = open(run.run_dir / "metrics.jsonl", "a")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run.run_dir / "tensorboard"))
        except Exception:  # TensorBoard is optional
            self.tb = None
        G = run.G_raw
        n_cls = G.num_classes
        per_row = 8
        n = min(n_cls, 10) * per_row if n_cls else 64
        g = torch.Generator().manual_seed(run.cfg.seed)
        self.fixed_z = G.sample_latent(n, generator=g, device="cpu").to(run.device)
        self.fixed_labels = (torch.arange(min(n_cls, 10)).repeat_interleave(per_row).to(run.device)
                             if n_cls else None)

    def write_config(self):
        path = self.run.run_dir / "config.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.run.cfg.to_dict(), indent=2) + "\n")
        tmp.replace(path)

    def log(self, record: dict):
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    @torch.no_grad()
    def sample_grid(self, step: int):
        G = self.run.sampler()
        was_training = G.training
        G.eval()
        x = G(self.fixed_z, self.fixed_labels)
        G.train(was_training)
        path = self.run.run_dir / "samples" / f"step-{step:08d}.png"
        if x.dim() == 4:
            save_grid(to_uint8(x, G.output_range), path, nrow=8)
        else:
            from .images import save_scatter

            centers = getattr(self.run.data, "centers", None)
            save_scatter(x.float().cpu(), path, centers=None if centers is None else centers.cpu())

    def evaluate(self, step: int):
        from .evaluation import evaluate

        G = self.run.sampler()
        was_training = G.training
        G.eval()
        scores = evaluate(G, dataset=self.run.cfg.dataset, n=self.run.cfg.eval_samples,
                          metrics=list(self.run.cfg.eval_metrics) or None, device=str(self.run.device),
                          seed=self.run.cfg.seed, cluster_labels=self.run.cfg.cluster_labels)
        G.train(was_training)
        self.log({"step": step, **{f"eval/{k}": v for k, v in scores.items()}})

    def close(self):
        self.metrics.close()
        if self.tb is not None:
            self.tb.close()
