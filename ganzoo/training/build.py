"""Building a run: config resolved, data loaded, networks, optimisers, EMA and methods made,
a checkpoint's state restored. Everything the loop needs is in one :class:`Run`."""
from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..catalog import create_dataset, create_loss, create_regularizer, get_catalog
from ..checkpoint import BF16_AUTOCAST, FP32, precision_of, restore
from ..config import TrainConfig, parse_regularizer
from ..errors import GanzooError, on_every_rank
from ..images import to_model_range
from ..interfaces import pack_of, parameter_count
from ..methods import MethodStack
from .step import DiscriminatorPair


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
    methods: MethodStack
    run_dir: Path
    memory_format: torch.memory_format
    start_step: int = 0
    resumed_precision: str | None = None  # what the checkpoint it resumes from trained in
    resume_warnings: list = field(default_factory=list)  # what the build let pass for a resumed run

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def amp_active(self) -> bool:
        """Whether the step runs under bf16 autocast: ``amp`` on CUDA, ``cpu_amp`` on CPU."""
        if self.device.type == "cuda":
            return bool(self.cfg.amp)
        return self.device.type == "cpu" and cpu_amp_on(self.cfg.cpu_amp)

    @property
    def precision(self) -> str:
        """The arithmetic the step runs in, as checkpoints record it: config.json keeps the
        option (``cpu_amp = "auto"``), which resolves per machine."""
        return BF16_AUTOCAST if self.amp_active else FP32

    def autocast(self):
        if self.amp_active:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def announce(self) -> None:
        """What rank 0 says about the run before its first step: a per-sample gradient penalty on
        a batch-norm D, a resume in other arithmetic than its checkpoint's, and bf16 on CPU
        ("auto" depends on the CPU; a warning where bf16 is emulated). The loop calls it once
        the run has passed its checks, so a refused run says its one error line and nothing else."""
        if not self.dist.is_main:
            return
        for line in self.resume_warnings:
            print(f"warning: {line}", file=sys.stderr)
        _warn_batchnorm_critic(self.regularizers, self.D_raw, self.cfg)
        if self.resumed_precision not in (None, self.precision):  # e.g. cpu_amp auto on another CPU
            option = ("--amp" if self.cfg.amp else "--no-amp") if self.device.type == "cuda" else (
                f"--cpu-amp {self.cfg.cpu_amp}")
            print(f"warning: this run trained in {self.resumed_precision} and resumes in {self.precision} "
                  f"({option} on this {self.device.type}); the steps from here differ from an "
                  f"uninterrupted run's", file=sys.stderr)
        if not (self.device.type == "cpu" and self.amp_active):
            return
        print(f"bf16 autocast on CPU (--cpu-amp {self.cfg.cpu_amp}; --cpu-amp off for fp32)", file=sys.stderr)
        if not cpu_has_native_bf16():  # so the setting is "on": auto stays in fp32 there
            print("warning: --cpu-amp on, on a CPU without native bf16 (AVX512-BF16 or AMX): the step will "
                  "likely be slower than fp32; --cpu-amp auto or off avoids it", file=sys.stderr)

    def prepare(self, real: torch.Tensor) -> torch.Tensor:
        x = to_model_range(real, self.G_raw.output_range)
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def sampler(self) -> nn.Module:
        if self.ema is None:
            return self.G_raw
        from ..ema import for_inference

        return for_inference(self.ema.module)  # spectral-norm vectors made unit again (ganzoo/ema.py)


def _load_data(cfg: TrainConfig):
    data = create_dataset(cfg.dataset, split=cfg.split, root=cfg.data_root, image_size=cfg.image_size)
    if cfg.subset is not None:
        from ..data.subset import subset

        data = subset(data, cfg.subset, cfg.subset_seed)
    if len(data) < cfg.batch_size:
        what = (f"--subset {cfg.subset} keeps {len(data)} of {cfg.dataset}'s samples" if cfg.subset is not None
                else f"{cfg.dataset} has {len(data)} samples")
        raise GanzooError(f"{what}, fewer than --batch-size {cfg.batch_size}")
    return data


def _warn_batchnorm_critic(regularizers, D: nn.Module, cfg: TrainConfig) -> None:
    """A per-sample gradient penalty (gp) on a D with BatchNorm trains, but not as the paper did."""
    named = [spec for spec, reg in zip(cfg.regularizers, regularizers) if getattr(reg, "per_sample_critic", False)]
    if named and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules()):
        print(f"warning: {named[0]} penalises each sample's gradient, but {cfg.arch}'s discriminator has "
              f"BatchNorm, which mixes a batch's samples (WGAN-GP's critic has none; `ganzoo info "
              f"{cfg.arch}` lists its options)", file=sys.stderr)


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 instructions (x86: AVX512-BF16 or AMX); elsewhere oneDNN emulates
    bf16, slower than fp32. (torch.ops.mkldnn._is_mkldnn_bf16_supported() is not this test: it
    says yes on any AVX512 CPU, where bf16 is emulated.) torch.cpu's helpers are private, so a
    torch without them counts as no: "auto" then stays in fp32, the safe side."""
    import platform

    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # aarch64: oneDNN's check is the CPU's
    except (AttributeError, RuntimeError):
        return False


def cpu_amp_on(setting: str) -> bool:
    """``--cpu-amp``: on, off, or auto (on where the CPU has native bf16)."""
    return setting == "on" or (setting == "auto" and cpu_has_native_bf16())


def _arch_options(arch, cfg: TrainConfig, data, base: dict | None = None, resuming: bool = False):
    """The architecture's options (over ``base``), with data shape and classes from the dataset."""
    if arch.conditional and data.num_classes == 0:
        raise GanzooError(f"{arch.name} is conditional and needs a labelled dataset; {cfg.dataset} has "
                          f"no labels (--method cluster-labels:k=K labels it with k-means clusters)")
    values = {**(base or {}), **cfg.arch_options}
    user = {k: values[k] for k in ("data_shape", "num_classes") if k in values}
    values.update(data_shape=tuple(data.shape), num_classes=data.num_classes if arch.conditional else 0)
    if user:
        asked = arch.make_options(**{**values, **user})
        for key in user:
            if getattr(asked, key) != values[key]:
                if key == "num_classes" and not arch.conditional:
                    catalog = get_catalog()
                    conditional = [n for n in catalog.names("architecture")
                                   if getattr(catalog.get("architecture", n).obj, "conditional", False)]
                    raise GanzooError(f"{arch.name} is unconditional: its num_classes is always 0, got "
                                      f"{getattr(asked, key)}; the conditional architectures "
                                      f"({', '.join(conditional)}) take theirs from the dataset")
                if resuming:
                    raise DataChanged(f"this run's checkpoint has {arch.name} option {key}={getattr(asked, key)}, "
                                      f"but dataset {cfg.dataset} now has {key}={values[key]}: its files "
                                      f"changed since the run started")
                hint = " (use --image-size to resize the data)" if key == "data_shape" else ""
                raise GanzooError(f"{arch.name} option {key}={getattr(asked, key)} does not match "
                                  f"dataset {cfg.dataset}, which has {key}={values[key]}{hint}")
    return arch.make_options(**values)


class DataChanged(GanzooError):
    """A resumed run's dataset no longer has the shape or classes its checkpoint was built for."""


def _resumed_options(entry, cfg: TrainConfig, data, state: dict):
    """The architecture options a checkpoint records, as an export of it would read them; options
    the installed plugin refuses are one line naming the plugin version that wrote them."""
    import json

    recorded = json.loads(state["options"])
    try:
        return _arch_options(entry.obj, cfg, data, base=recorded, resuming=True)
    except DataChanged:
        raise
    except GanzooError as exc:
        if state.get("plugin_version") in (None, entry.plugin_version):
            raise
        raise GanzooError(f"{exc}; the checkpoint was written with {state.get('plugin')} "
                          f"{state.get('plugin_version')}: resume it with that version") from None


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
            from ..errors import UnknownNameError

            raise UnknownNameError("optimizer", cfg.optimizer, list_optimizers()) from None
        raise GanzooError(f"optimizer {cfg.optimizer!r}: {exc}") from None


def _memory_of(device: torch.device) -> int:
    """Bytes of memory the device has in all (CPU and MPS: the machine's RAM)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    from ..limits import machine_memory

    return machine_memory()  # 0 if unknown: not checked


@contextmanager
def _no_power_iterations():
    """torch's spectral norm (torch.nn.utils.parametrizations) runs 15 power iterations when it
    is applied: on meta tensors, in Python, they take ten times a real build. Counting needs
    only the shapes, so they are skipped there (a private method: left alone if it moved)."""
    from torch.nn.utils import parametrizations

    owner = getattr(parametrizations, "_SpectralNorm", None)
    original = getattr(owner, "_power_method", None)
    if original is None:
        yield
        return
    owner._power_method = lambda self, weight_mat, n_power_iterations: None
    try:
        yield
    finally:
        owner._power_method = original


def check_memory(arch, options, device: torch.device) -> None:
    """Networks whose weights, gradients and Adam state alone exceed the device's memory are
    one line before they are built; built, a layer 10^8 wide was killed by the kernel with no
    message. They are counted on the meta device (no memory): a second build of their layers,
    without spectral norm's power iterations at init, which are slow on meta (biggan's count
    takes 0.24 s so, 4.5 s with them; a real build 0.4 s). An architecture that cannot be
    built on meta is not checked."""
    try:
        with torch.device("meta"), _no_power_iterations():
            n_g = parameter_count(arch.create_generator(options))
            n_d = parameter_count(arch.create_discriminator(options))
    except Exception:  # noqa: BLE001 - a plugin's layers may need real tensors at init
        return
    need, have = 4 * (5 * n_g + 4 * n_d), _memory_of(device)  # float32: weights, grad, 2 moments; G's EMA
    if have and need > have:
        raise on_every_rank(GanzooError(
            f"{arch.name} with these options has {n_g + n_d:.3g} parameters (G {n_g:.3g}, D {n_d:.3g}): "
            f"training needs about {need / 2**30:,.0f} GiB for their weights, gradients and Adam "
            f"state, more than the {have / 2**30:,.0f} GiB of {device.type}; choose smaller widths "
            f"(`ganzoo info {arch.name}` lists the options)"))


def has_4d_weights(module: nn.Module) -> bool:
    """Whether channels_last can matter: any 4-D weight, in an ``nn.Conv2d`` or in a functional
    conv (stylegan2's equalised-lr and modulated convs, left contiguous when only nn.Conv2d
    counted; channels_last gives them 29 % more steps/s on CPU at 28 px, docs/bench.md)."""
    return any(p.dim() == 4 for p in module.parameters())


def _init_model(cfg: TrainConfig, arch):
    """The --init model (fine-tuning): the architecture and its options come from it."""
    from ..references import load_generator

    init = load_generator(cfg.init, device="cpu")
    if init.export_config["architecture"] != arch.name:
        raise GanzooError(f"--init {cfg.init} is a {init.export_config['architecture']} model, not {arch.name}")
    return init


def _architecture(name: str, state: dict | None):
    """The catalog entry of architecture ``name``; when it is missing, one line that names the
    plugin a resumed checkpoint records, or the plugins that failed to load."""
    from ..errors import UnknownNameError
    from ..plugins import failed_plugins

    try:
        return get_catalog().get("architecture", name)
    except UnknownNameError as exc:
        if state is not None and state.get("plugin"):
            raise GanzooError(f"this run's architecture {name!r} comes from plugin {state['plugin']} "
                              f"{state.get('plugin_version') or ''}".rstrip() + ", which is not installed "
                              "or failed to load (see `ganzoo plugins`)") from None
        failed = failed_plugins()
        if failed:
            names = ", ".join(f"{r.distribution} ({r.error})" for r in failed)
            raise GanzooError(f"{exc}; plugins that failed to load may provide it: {names}") from None
        raise


@dataclass
class _Parts:
    """What a build resolves before any device, network or optimiser exists."""

    cfg: TrainConfig
    loss: Any
    entry: Any
    methods: MethodStack
    regularizers: list
    data: Any
    init: Any
    options: Any
    resume_warnings: list


def _resolve(cfg: TrainConfig, state: dict | None) -> _Parts:
    """The config with the loss's recommendations, the architecture, methods, regularisers,
    data, ``--init`` model and architecture options: every check that needs none of the
    device, the process group or the networks (:func:`preflight` makes them alone)."""
    loss = create_loss(cfg.loss)
    cfg = cfg.resolved(loss.recommended)
    cfg.validate()
    entry = _architecture(cfg.arch, state)
    methods = MethodStack.from_specs(cfg.methods)
    methods.check(entry.obj)  # before any data is loaded
    resume_warnings = []
    try:
        methods.check_loss(loss, cfg.loss)
    except GanzooError as exc:
        if state is None:
            raise
        # a run that trained before ganzoo 0.9.14 checked the pair resumes as it trained
        resume_warnings.append(f"{exc} (this run started before the check and resumes as it trained)")
    if state is not None:
        methods.load_state_dict(state.get("methods"))
    regularizers = [create_regularizer(*parse_regularizer(spec)) for spec in cfg.regularizers]
    data = methods.wrap_dataset(_load_data(cfg), cfg.seed)
    if state is None:
        init = _init_model(cfg, entry.obj) if cfg.init else None
        options = _arch_options(entry.obj, cfg, data, base=init.options.to_dict() if init else None)
    else:  # the options the checkpoint's weights have (plugin defaults may have changed since);
        init = None  # --init's weights are in the checkpoint (and its file may be gone by now)
        options = _resumed_options(entry, cfg, data, state)
    # the run records the options as the architecture read them (--arch-opt ndf=64 → 64, not "64")
    parsed = options.to_dict()  # JSON-ready, as the export's config.json writes them
    cfg.arch_options = {k: parsed[k.replace("-", "_")] for k in cfg.arch_options}
    return _Parts(cfg, loss, entry, methods, regularizers, data, init, options, resume_warnings)


def preflight(cfg: TrainConfig) -> tuple[TrainConfig, Any, MethodStack]:
    """:func:`build_run`'s checks that need no device, process group or network, in this
    process: ``ganzoo train --nproc N`` makes them before torchrun starts N processes, each of
    which would say the same error in its own line (and torchrun add its traceback). Loads
    the data once more than the ranks will. Returns (resolved config, architecture, methods)."""
    cfg.validate()
    from ..limits import check_device

    check_device(cfg.device)  # a device this machine lacks
    parts = _resolve(cfg, None)
    return parts.cfg, parts.entry.obj, parts.methods


def _check_sync_bn(cfg: TrainConfig, info, device_type: str) -> None:
    """--sync-bn acts under DDP only (a single process has one batch's statistics anyway, and
    keeps the flag as a no-op); there it needs CUDA."""
    if cfg.sync_batchnorm and info.distributed and device_type != "cuda":
        raise on_every_rank(GanzooError(f"--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs only (this run's device is "
                          f"{device_type}); without it each rank normalises with its own batch's statistics"))


def use_deterministic_kernels(deterministic: bool, device_type: str) -> None:
    """``--deterministic``: torch's deterministic kernels only (an op without one raises), cuDNN
    without autotuning, and the cuBLAS workspace setting torch asks for. Otherwise, on CUDA,
    cuDNN autotunes (``benchmark``: the fastest kernels, picked by timing, not reproducible).
    Process-wide settings, as torch has them; a process trains one run."""
    if deterministic:  # (not turned off otherwise: a caller may have set it in this process)
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    if device_type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic


def build_run(cfg: TrainConfig, state: dict | None = None) -> Run:
    """A :class:`Run` for ``cfg``; with ``state`` (a loaded checkpoint) it continues that run."""
    cfg.validate()  # before the process group or the device is set up
    info = distributed.setup(cfg.device)
    device = info.device
    _check_sync_bn(cfg, info, device.type)
    parts = _resolve(cfg, state)
    cfg, loss, entry, methods, regularizers, data, init, options = (
        parts.cfg, parts.loss, parts.entry, parts.methods, parts.regularizers, parts.data, parts.init,
        parts.options)
    arch = entry.obj

    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads or max(1, distributed.usable_cores() // info.local_world_size))
    use_deterministic_kernels(cfg.deterministic, device.type)
    check_memory(arch, options, device)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    G_raw = arch.create_generator(options).to(device)
    D_raw = arch.create_discriminator(options).to(device)
    G_raw.sampling = methods.sampling()  # what samplers of this G need (a label prior, ...)
    pack = pack_of(D_raw)
    if not isinstance(pack, int) or pack < 1:
        raise on_every_rank(GanzooError(
            f"{arch.name}'s discriminator has pack = {pack!r}; it must be an int >= 1"))
    if cfg.batch_size % pack:
        raise on_every_rank(GanzooError(
            f"{arch.name}'s discriminator scores packs of {pack} samples: --batch-size must be a "
            f"multiple of {pack}, got {cfg.batch_size}"))
    if init is not None:
        theirs, ours = init.state_dict(), G_raw.state_dict()
        if theirs.keys() != ours.keys() or any(theirs[k].shape != ours[k].shape for k in ours):
            was = init.options.to_dict()
            changed = [f"{k}={v!r} (the model's {was[k]!r})" for k, v in options.to_dict().items()
                       if k in was and was[k] != v]
            if not changed:  # same options, other weights: an export of another plugin version
                raise on_every_rank(GanzooError(
                    f"--init {cfg.init}'s weights do not match {arch.name}'s generator with the same "
                    f"options (exported by another version of its plugin?)"))
            raise on_every_rank(GanzooError(
                f"--init {cfg.init}'s generator does not fit the options of this run (from "
                f"--arch-opt, the recipe or --config), which differ from the model's in "
                f"{', '.join(changed)}; set them to the model's or train without --init"))
        G_raw.load_state_dict(theirs)
    memory_format = torch.contiguous_format
    if cfg.channels_last and has_4d_weights(D_raw) and len(options.data_shape) == 3:
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
        start_step = restore(state, info.world_size, G_raw, D_raw, opt_g, opt_d, ema)

    G, d_pair = G_raw, DiscriminatorPair(D_raw)
    if cfg.compile:
        G, d_pair = torch.compile(G), torch.compile(d_pair)
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        G, d_pair = DDP(G, device_ids=ids), DDP(d_pair, device_ids=ids)

    return Run(cfg, info, arch, options, entry.plugin, entry.plugin_version, data.to(device), G,
               G_raw, D_raw, d_pair, ema, opt_g, opt_d, loss, regularizers, methods, Path(cfg.out),
               memory_format, start_step, precision_of(state), parts.resume_warnings)
