"""``ganzoo bench``: ganzoo's real training step next to the usual hand-written PyTorch loop.

One process measures, back to back and on the same device and thread count:

1. **ganzoo** — :func:`ganzoo.training.build_run` + :func:`ganzoo.training.train_step`,
   exactly what ``ganzoo train`` runs per step (minus logging, samples and checkpoints);
2. **the reference loop** (:mod:`ganzoo.bench_reference`) — the same networks (same architecture options, same
   initial weights) trained the way the canonical PyTorch DCGAN example does it:
   a per-item ``Dataset`` of PIL images with torchvision ``ToTensor``/``Normalize``
   (and ``Resize`` when the images are resized), a ``DataLoader`` with 2 workers,
   two default (non-fused) ``torch.optim.Adam`` and BCE, D on real and
   ``fake.detach()``, then G through D with the labels flipped, losses read with
   ``.item()`` every step as the example prints them;
3. **a matmul peak** — the best of a few fp32 2048×2048 matmuls (and bf16 when the
   step runs under autocast: --amp on CUDA, --cpu-amp on CPU), so achieved GFLOP/s can be read as a fraction of what
   this machine can do right now.

The two loops (and the peak) are timed in alternating rounds (``--rounds``,
default 3) and each reports its best round, so a load spike on a shared
machine hits both and is filtered out. FLOPs per step are the mean over the first
``flop_steps`` real steps (default: the period of the recipe's methods, at most 256), counted by
:func:`count_flops` with torch's formulas (forward and backward matmuls/convolutions;
optimiser and element-wise work are not FLOPs).
"""
from __future__ import annotations

import math
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from .bench_reference import ReferenceLoop
from .errors import GanzooError, UnknownNameError


# -- presets --------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    arch: str
    arch_options: dict
    image_size: int | None
    dataset: str
    description: str


PRESETS: dict[str, Preset] = {
    "mlp-reference": Preset(
        "mlp", {"g_hidden": "128,256,512,1024", "bn_first": "false", "bn_eps": "0.8"}, None,
        "fashion-mnist",
        "the widely used MLP GAN script: G 100→128→256→512→1024→784 (BatchNorm1d eps 0.8 after "
        "all but the first layer), D 784→512→256→1, 28×28"),
    "dcgan64-reference": Preset(
        "dcgan", {"ngf": "64", "ndf": "64"}, 64, "fashion-mnist",
        "the canonical PyTorch DCGAN example at 64×64 (ngf = ndf = 64)"),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UnknownNameError("preset", name, PRESETS)
    return PRESETS[name]


# the default --flop-steps is the methods' period, at most this many steps (periods 97 and 89
# repeat only every 8,633 steps); a longer period's mean is then approximate, and the report says so
MAX_DEFAULT_FLOP_STEPS = 256
_FROM_THE_RECIPE = ("split", "seed", "amp", "cpu_amp", "channels_last", "compile", "ema")


@dataclass
class BenchConfig:
    """What ``ganzoo bench`` measures; ``None`` fields come from the preset or the defaults."""

    arch: str | None = None
    arch_options: dict = field(default_factory=dict)
    preset: str | None = None
    recipe: str | None = None  # time this recipe's step: its loss, methods, optimiser, batch size
    dataset: str | None = None  # preset's, else fashion-mnist
    data_root: str | None = None
    split: str | None = None  # the recipe's, else train
    image_size: int | None = None  # preset's, else native
    limit_data: int | None = None  # use only the first N samples (quick tests)
    batch_size: int | None = None  # the recipe's, else 64
    steps: int = 20  # timed steps per round, of each loop
    warmup: int = 5
    rounds: int = 3  # the loops alternate; each reports its best round
    workers: int = 2  # DataLoader workers of the reference loop
    device: str = "auto"
    num_threads: int | None = None  # None = all cores, as the trainer does
    # None: the recipe's value, else the trainer's default (seed 0, amp, channels_last and EMA on,
    # compile off), so a recipe is timed with its own settings unless a flag says otherwise
    seed: int | None = None
    amp: bool | None = None
    cpu_amp: str | None = None  # off, auto, on
    channels_last: bool | None = None
    compile: bool | None = None
    ema: bool | None = None
    baseline: bool = True
    peak_repeats: int = 5
    peak_size: int = 2048  # n of the n×n matmul peak (a large GPU needs 8192 to reach its rate)
    # FLOPs are counted over this many steps; None: the period of the recipe's methods (lazy R1
    # every 16 D updates: 16), so a regulariser that runs every k steps is counted once per k
    flop_steps: int | None = None
    # set by resolved(): the steps after which the methods' work repeats (for the report)
    methods_period: int = 1

    def resolved(self) -> "BenchConfig":
        """Fill arch/options/dataset/image size/batch size from the preset or the recipe, the
        settings left ``None`` from the recipe (else the trainer's defaults); explicit values win."""
        from .config import TrainConfig
        from .methods import MethodStack

        values = asdict(self)
        base = TrainConfig()  # the bare defaults; a recipe's config replaces them
        if self.preset is not None and self.recipe is not None:
            raise GanzooError("give --preset or --recipe, not both")
        if self.preset is not None:
            p = get_preset(self.preset)
            if self.arch is not None and self.arch != p.arch:
                raise GanzooError(f"preset {self.preset} benchmarks {p.arch}, not {self.arch} "
                                  f"(drop ARCH or the preset)")
            values.update(arch=p.arch, arch_options={**p.arch_options, **self.arch_options},
                          dataset=self.dataset or p.dataset,
                          image_size=self.image_size if self.image_size is not None else p.image_size)
        if self.recipe is not None:
            from .recipes import get_recipe

            recipe = get_recipe(self.recipe)
            recipe.check_installed()
            r = base = recipe.config()
            if self.arch is not None and self.arch != r.arch:
                raise GanzooError(f"recipe {self.recipe} trains {r.arch}, not {self.arch} "
                                  f"(drop ARCH or the recipe)")
            # The reference loop trains with BCE and plain Adam: not a recipe's step, so no
            # speedup over it is reported for a recipe.
            values.update(arch=r.arch, arch_options={**r.arch_options, **self.arch_options},
                          dataset=self.dataset or r.dataset, data_root=self.data_root or r.data_root,
                          image_size=self.image_size if self.image_size is not None else r.image_size,
                          batch_size=self.batch_size if self.batch_size is not None else r.batch_size,
                          baseline=False)
        for name in _FROM_THE_RECIPE:
            if values[name] is None:
                values[name] = getattr(base, name)
        values["methods_period"] = MethodStack.from_specs(base.methods).period
        if values["flop_steps"] is None:  # lcm of the periods: bounded so a default bench stays short
            values["flop_steps"] = min(values["methods_period"], MAX_DEFAULT_FLOP_STEPS)
        if values["arch"] is None:
            raise GanzooError("give an architecture (e.g. `ganzoo bench dcgan`), --preset "
                              f"({', '.join(PRESETS)}) or --recipe NAME")
        values["dataset"] = values["dataset"] or "fashion-mnist"
        values["batch_size"] = 64 if values["batch_size"] is None else values["batch_size"]
        cfg = BenchConfig(**values)
        for name in ("steps", "batch_size", "peak_repeats", "rounds", "flop_steps", "peak_size"):
            if getattr(cfg, name) < 1:
                raise GanzooError(f"{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
        if cfg.warmup < 0 or cfg.workers < 0:
            raise GanzooError("warmup and workers must be >= 0")
        if cfg.limit_data is not None and cfg.limit_data < cfg.batch_size:
            raise GanzooError(f"limit-data {cfg.limit_data} is smaller than one batch ({cfg.batch_size})")
        return cfg


# -- measuring helpers ----------------------------------------------------------------------
def count_flops(fn: Callable, *args, **kwargs) -> tuple[int, Any]:
    """Run ``fn(*args, **kwargs)`` counting FLOPs with torch's formulas → ``(flops, result)``.

    Counts what torch's ``FlopCounterMode`` counts: matmuls, convolutions and attention,
    forward and backward (a Linear layer's forward on an m×k input with n outputs is
    2·m·n·k); element-wise ops and optimiser updates count 0. The counter is our own small
    dispatch mode over torch's formula table (``torch.utils.flop_counter.flop_registry``)
    because ``FlopCounterMode`` also tracks modules with backward hooks, which refuse a
    step that calls ``torch.autograd.grad`` (R1 and path-length penalties do). An op without
    a formula counts 0, as in ``FlopCounterMode``: element-wise ops, and on CPU the flash
    attention kernel (torch has no formula for it; biggan's attention uses bmm and counts).
    Unlike ``FlopCounterMode`` it does not run such ops through their decomposition: no op
    of the zoo's architectures reaches the mode with one (same totals with and without).
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class FlopCount(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.total += formula(*args, **kwargs, out_val=out)
            return out

    with FlopCount() as counter:
        result = fn(*args, **kwargs)
    return int(counter.total), result


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048,
                repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of one n×n @ n×n matmul (2·n³ FLOPs) in ``dtype``."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: thread pool, library handles, clocks
    synchronize(device)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


# -- 1. ganzoo's training step ----------------------------------------------------------------
def _train_config(cfg: BenchConfig, out: str):
    """What ganzoo trains per step: the recipe's config (or the bare defaults with the
    non-saturating loss, the reference loop's objective) with the bench's values on top."""
    from .config import TrainConfig

    if cfg.recipe is not None:
        from .recipes import get_recipe

        base = get_recipe(cfg.recipe).config().to_dict()
    else:
        base = {"loss": "non-saturating"}
    steps = cfg.warmup + cfg.flop_steps + cfg.steps * cfg.rounds
    return TrainConfig.from_dict({
        **base, "arch": cfg.arch, "arch_options": dict(cfg.arch_options), "dataset": cfg.dataset,
        "data_root": cfg.data_root, "split": cfg.split, "image_size": cfg.image_size,
        "batch_size": cfg.batch_size, "steps": steps, "epochs": None, "max_seconds": None,
        "seed": cfg.seed, "device": cfg.device, "out": out, "progress": False, "ema": cfg.ema,
        "amp": cfg.amp, "cpu_amp": cfg.cpu_amp, "channels_last": cfg.channels_last, "compile": cfg.compile,
        "num_threads": cfg.num_threads, "eval_every": 0})


class GanzooSide:
    """ganzoo's run, built once; the first ``flop_steps`` steps are FLOP-counted (their
    mean is the step's count), then ``warmup`` untimed steps."""

    def __init__(self, cfg: BenchConfig):
        from .training import build_run, train_step

        self._train_step = train_step
        self.out = tempfile.mkdtemp(prefix="ganzoo-bench-")
        self.run = build_run(_train_config(cfg, self.out))
        self.run.announce()  # what training would say first (bf16 emulated on this CPU, ...)
        self.cfg = self.run.cfg  # what was trained (the report reads amp, EMA, compile from it)
        if cfg.limit_data is not None:
            self.run.data = self.run.data.subset(cfg.limit_data)
        self.device = self.run.device
        self.sums = torch.zeros(2, device=self.device)
        self.step = 0
        self.options = self.run.options.to_dict()
        self.images_per_step = cfg.batch_size * self.run.cfg.d_steps
        self.memory_format = ("channels_last" if self.run.memory_format == torch.channels_last
                              else "contiguous")
        # The counted steps are warm-up steps too (allocator, thread pool, cuDNN autotuning).
        # A regulariser that runs every k steps (lazy R1) is counted fairly over k steps.
        flops, _ = count_flops(lambda: [self._one() for _ in range(cfg.flop_steps)])
        self.flops_per_step = flops / cfg.flop_steps
        for _ in range(cfg.warmup):
            self._one()
        self._finish()

    def _one(self):  # what train() does per step, minus logging, samples and checkpoints
        d_loss, g_loss, _ = self._train_step(self.run, self.step)
        self.sums.add_(torch.stack((d_loss, g_loss)))
        self.step += 1

    def _finish(self):
        losses = self.sums.tolist()  # waits for every queued kernel (and reads the losses once)
        synchronize(self.device)
        if not all(math.isfinite(v) for v in losses):
            raise GanzooError("ganzoo's losses became non-finite during the benchmark")

    def time(self, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            self._one()
        self._finish()
        return time.perf_counter() - t0

    def close(self):
        self.run = None
        shutil.rmtree(self.out, ignore_errors=True)


# -- 2. the reference loop (ganzoo/bench_reference.py), timed --------------------------------
class ReferenceSide:
    """The reference loop, built once; ``max(1, warmup)`` untimed steps (they start the
    DataLoader workers), then one FLOP-counted step."""

    def __init__(self, cfg: BenchConfig, options: dict, device: torch.device):
        from .catalog import create_dataset

        data = create_dataset(cfg.dataset, split=cfg.split, root=cfg.data_root)  # native size
        if not hasattr(data, "data"):
            raise GanzooError(f"the reference loop needs an in-memory dataset; {cfg.dataset} is not one")
        self.device = device
        self.loop = ReferenceLoop(cfg.arch, options, data, cfg, device)
        self.images_per_step = cfg.batch_size
        for _ in range(max(1, cfg.warmup)):
            self.loop.step(self.loop.next_batch())
        self.flops_per_step, _ = count_flops(self.loop.step, self.loop.next_batch())
        synchronize(device)
        self.loop.close()

    def time(self, steps: int) -> float:
        loop = self.loop
        loop.step(loop.next_batch())  # untimed: starts the workers, as a running loop has them
        synchronize(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            loop.step(loop.next_batch())  # the data loading is part of the loop
        synchronize(self.device)
        elapsed = time.perf_counter() - t0
        # Idle workers left alive would keep prefetching while ganzoo's round is timed, and
        # on 2 cores that slowed ganzoo's step by 40% (0.0124 -> 0.0176 s, mlp-reference).
        loop.close()
        return elapsed

    def close(self):
        self.loop.close()


# -- all of it ----------------------------------------------------------------------------------
def _ratio(a, b):
    return a / b if a is not None and b else None


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = lambda s: None) -> dict:
    """Measure and return the figures ``ganzoo bench --json`` prints."""
    from .distributed import pick_device, usable_cores

    cfg = cfg.resolved()
    device = pick_device(cfg.device)
    threads = cfg.num_threads or usable_cores()
    cfg.num_threads = threads  # the trainer, the reference loop and the peak all use these
    torch.set_num_threads(threads)
    load_before = _loadavg()

    log(f"building ganzoo's run ({cfg.flop_steps} FLOP-counted + {cfg.warmup} warm-up steps)...")
    g = GanzooSide(cfg)
    amp = g.run.amp_active
    b = None
    try:
        if cfg.baseline:
            log(f"building the reference loop ({max(1, cfg.warmup)} warm-up + 1 FLOP-counted steps)...")
            b = ReferenceSide(cfg, g.options, device)
        # Rounds alternate the two loops (and the peak), so a load spike on a shared machine
        # hits both; each side reports its best round.
        peaks_fp32, peaks_bf16, g_times, b_times = [], [], [], []
        for r in range(cfg.rounds):
            log(f"round {r + 1}/{cfg.rounds}: matmul peak, {cfg.steps} ganzoo steps"
                + (f", {cfg.steps} reference steps" if b else "") + "...")
            peaks_fp32.append(matmul_peak(device, torch.float32, n=cfg.peak_size,
                                          repeats=cfg.peak_repeats))
            if amp:
                peaks_bf16.append(matmul_peak(device, torch.bfloat16, n=cfg.peak_size,
                                              repeats=cfg.peak_repeats))
            g_times.append(g.time(cfg.steps))
            if b is not None:
                b_times.append(b.time(cfg.steps))
    finally:
        g.close()
        if b is not None:
            b.close()
    peak_fp32 = max(peaks_fp32)
    peak_bf16 = max(peaks_bf16) if amp else None
    peak, peak_dtype = (peak_bf16, "bf16") if amp else (peak_fp32, "fp32")

    sps = cfg.steps / min(g_times)
    gflop = g.flops_per_step / 1e9
    result = {
        "arch": cfg.arch, "preset": cfg.preset, "recipe": cfg.recipe, "options": g.options,
        "dataset": cfg.dataset, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
        "steps": cfg.steps, "warmup": cfg.warmup, "rounds": cfg.rounds,
        "peak_repeats": cfg.peak_repeats, "peak_size": cfg.peak_size, "flop_steps": cfg.flop_steps,
        "methods_period": cfg.methods_period,
        "device": str(device), "device_name": _device_name(device),
        "torch": torch.__version__, "threads": threads, "amp": amp,
        "memory_format": g.memory_format, "compile": g.cfg.compile, "ema": g.cfg.ema,
        "steps_per_s": sps, "s_per_step": 1 / sps, "images_per_s": sps * g.images_per_step,
        "gflop_per_step": gflop, "gflop_per_s": gflop * sps,
        "peak_gflop_per_s": peak, "peak_dtype": peak_dtype, "peak_fp32_gflop_per_s": peak_fp32,
        "peak_bf16_gflop_per_s": peak_bf16, "fraction_of_peak": gflop * sps / peak,
        "baseline_steps_per_s": None, "baseline_s_per_step": None, "baseline_images_per_s": None,
        "baseline_gflop_per_step": None, "baseline_gflop_per_s": None,
        "baseline_fraction_of_peak": None, "baseline_workers": cfg.workers if b else None,
        "speedup": None,
        "round_s_per_step": [t / cfg.steps for t in g_times],
        "baseline_round_s_per_step": [t / cfg.steps for t in b_times] if b else None,
        "load_average": [load_before, _loadavg()],
    }
    if b is not None:
        bsps = cfg.steps / min(b_times)
        bgflop = b.flops_per_step / 1e9
        result.update(baseline_steps_per_s=bsps, baseline_s_per_step=1 / bsps,
                      baseline_images_per_s=bsps * b.images_per_step,
                      baseline_gflop_per_step=bgflop, baseline_gflop_per_s=bgflop * bsps,
                      baseline_fraction_of_peak=bgflop * bsps / peak, speedup=_ratio(sps, bsps))
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def format_report(r: dict) -> str:
    """The human-readable table ``ganzoo bench`` prints."""
    opts = {k: v for k, v in r["options"].items() if k not in ("data_shape", "num_classes")}
    shape = "×".join(str(v) for v in r["options"].get("data_shape", ()))
    head = (f"ganzoo bench: {r['arch']}" + (f" (preset {r['preset']})" if r["preset"] else "")
            + (f" (recipe {r['recipe']})" if r["recipe"] else "")
            + f" on {r['dataset']} {shape}, batch {r['batch_size']}, best of {r['rounds']} rounds of "
            f"{r['steps']} timed steps after {r['warmup']} warm-up")
    lines = [head,
             f"  options: " + " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                                       for k, v in opts.items()),
             f"  device: {r['device']} ({r['device_name']}), {r['threads']} threads, torch {r['torch']}, "
             f"{r['memory_format']}, amp {'bf16' if r['amp'] else 'off'}"
             + (", compiled" if r["compile"] else ""),
             ""]
    rows = [("", "steps/s", "images/s", "s/step", "GFLOP/step", "GFLOP/s", "of peak"),
            ("ganzoo train_step", f"{r['steps_per_s']:.2f}", f"{r['images_per_s']:.0f}",
             f"{r['s_per_step']:.4f}", f"{r['gflop_per_step']:.2f}", f"{r['gflop_per_s']:.1f}",
             f"{100 * r['fraction_of_peak']:.0f}%")]
    if r["baseline_steps_per_s"] is not None:
        rows.append(("reference loop", f"{r['baseline_steps_per_s']:.2f}",
                     f"{r['baseline_images_per_s']:.0f}", f"{r['baseline_s_per_step']:.4f}",
                     f"{r['baseline_gflop_per_step']:.2f}", f"{r['baseline_gflop_per_s']:.1f}",
                     f"{100 * r['baseline_fraction_of_peak']:.0f}%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  " + row[0].ljust(widths[0]) + "".join(
            "  " + c.rjust(w) for c, w in zip(row[1:], widths[1:])))
    lines.append("")
    spread = lambda v: ", ".join(f"{x:.4f}" for x in v)  # noqa: E731
    lines.append(f"  s/step of each round: ganzoo {spread(r['round_s_per_step'])}"
                 + (f"; reference {spread(r['baseline_round_s_per_step'])}"
                    if r["baseline_round_s_per_step"] else ""))
    if r["speedup"] is not None:
        lines.append(f"  speedup: {r['speedup']:.2f}× the reference loop's steps/s")
    period = r["methods_period"]
    if r["flop_steps"] > 1 or period > 1:
        lines.append(f"  GFLOP/step: the mean of {r['flop_steps']} counted steps" + (
            f" (the methods' work repeats every {period} steps: the mean is approximate; "
            f"--flop-steps {period} counts a whole period)" if r["flop_steps"] % period else ""))
    n = r["peak_size"]
    peak = (f"  matmul peak ({r['peak_dtype']} {n}×{n}, best of {r['rounds']}×{r['peak_repeats']}): "
            f"{r['peak_gflop_per_s']:.1f} GFLOP/s")
    if r["peak_bf16_gflop_per_s"] is not None:
        peak += f" (fp32: {r['peak_fp32_gflop_per_s']:.1f})"
    lines.append(peak)
    la = r["load_average"]
    if la[0] is not None:
        noisy = "; > 1 before: a busy machine, figures are noisy" if la[0] > 1 else ""
        lines.append(f"  load average (1 min): {la[0]:.2f} before, {la[1]:.2f} after "
                     f"(after includes this run's own threads){noisy}")
    return "\n".join(lines)
