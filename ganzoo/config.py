"""All training options in one dataclass, loadable from TOML/YAML and overridable by CLI flags."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from .errors import GanzooError
from .options import build_options

# The DCGAN paper's settings: the defaults when a loss recommends nothing else.
DEFAULT_LR = 2e-4
DEFAULT_BETAS = (0.5, 0.999)
LR_SCHEDULES = ("constant", "linear", "cosine")


def option(default=None, help: str = "", flag: str | None = None, cli: bool = True, **kw):
    """A config field with its command-line help: ``ganzoo train``'s flags are generated from
    these fields (``flag`` overrides the ``--name-with-dashes`` default; ``cli=False`` hides it)."""
    meta = {"help": help, "flag": flag, "cli": cli}
    if "default_factory" in kw:
        return field(default_factory=kw["default_factory"], metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every training option, declared once: the CLI flags, config-file keys and the run's
    recorded config.json all come from these fields."""

    arch: str = option("dcgan", "Architecture name (see `ganzoo list architectures`).", cli=False)
    arch_options: dict = option(help="Architecture options (--arch-opt KEY=VALUE).", cli=False,
                                default_factory=dict)
    dataset: str = option("fashion-mnist", "Dataset name (see `ganzoo list datasets`).")
    data_root: Optional[str] = option(None, "Folder holding the dataset files.")
    split: str = option("train", "Dataset split to train on.")
    image_size: Optional[int] = option(None, "Resize images once to this size.")
    # limited-data training: a seeded subset of the split, N samples or a share ("0.1", "10%")
    subset: Optional[str] = option(None, "Train on a seeded subset: N samples or a share (0.1 or 10%).")
    subset_seed: int = option(0, "Seed of --subset's draw (kept apart from --seed: same data, other runs).")
    loss: str = option("non-saturating", "Loss name (see `ganzoo list losses`).")
    # "NAME" or "NAME:WEIGHT"; None = what the loss recommends (e.g. gp:10 for wasserstein)
    regularizers: Optional[tuple[str, ...]] = option(
        None, "Regulariser NAME[:WEIGHT], repeatable (gp, r1, r2); default: the loss's recommendation.",
        flag="--reg")
    # training methods, "NAME[:KEY=VALUE,...]" in order (see `ganzoo list methods`)
    methods: tuple[str, ...] = option(
        (), "Training method NAME[:KEY=VALUE,...], repeatable (see `ganzoo list methods`).", flag="--method")
    steps: int = option(2000, "Generator steps.")
    epochs: Optional[float] = option(None, "Train for this many epochs instead of --steps.")
    max_seconds: Optional[float] = option(None, "Wall-clock budget; stops (and checkpoints) at the first log step past it.")
    batch_size: int = option(64, "Samples per batch.")
    optimizer: str = option("adam", "Optimizer name from timm's factory (adam, adamw, ...).")
    lr_g: Optional[float] = option(None, "Generator learning rate (default: the loss's, else 2e-4).")
    lr_d: Optional[float] = option(None, "Discriminator learning rate (default: the loss's, else 2e-4).")
    betas_g: Optional[tuple[float, ...]] = option(None, "Adam betas of G, e.g. 0.5,0.999.")
    betas_d: Optional[tuple[float, ...]] = option(None, "Adam betas of D, e.g. 0.5,0.999.")
    d_steps: Optional[int] = option(None, "Discriminator steps per generator step (default: the loss's, else 1).")
    lr_schedule: Literal["constant", "linear", "cosine"] = option(
        "constant", "Learning-rate schedule over the run (linear/cosine decay to 0).")
    lr_warmup: int = option(
        0, "Raise the learning rates linearly from 1/N to their value over the first N steps, "
        "times --lr-schedule's decay, which starts at step 0 (0 = none).")
    ema: bool = option(True, "Keep an EMA of generator weights (timm ModelEmaV3).")
    ema_decay: float = option(0.999, "Decay of the generator EMA.")
    seed: int = option(0, "Seed of weights, data order and every random draw.")
    device: str = option("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda[:N] or mps.")
    out: Optional[str] = option(None, "Run directory (default runs/ARCH-DATASET).")
    init: Optional[str] = option(None, "Start the generator from a zoo model, export or run dir.")
    log_every: int = option(50, "Log losses every N steps.")
    max_loss: Optional[float] = option(
        1e6, "Stop when a logged loss's magnitude exceeds this (finite divergence); 0 = off.")
    sample_every: int = option(500, "Write a sample grid every N steps.")
    checkpoint_every: int = option(500, "Checkpoint every N steps.")
    keep_checkpoints: int = option(3, "Checkpoints kept (the newest).")
    eval_every: int = option(0, "Run metrics every N steps (0 = never).")
    eval_metrics: tuple[str, ...] = option((), "Comma-separated metric names for --eval-every.")
    eval_samples: int = option(2500, "Samples per in-training evaluation.")  # PacGAN's protocol: 2,500
    keep_best: Optional[str] = option(
        None, "Also keep the checkpoint with the best in-training score KEY (fid, recall, ...) as "
        "checkpoints/best.pt (the last step is scored too); needs --eval-every.")
    amp: bool = option(True, "bf16 autocast on CUDA (ignored elsewhere).")
    cpu_amp: Literal["off", "auto", "on"] = option(
        "off", "bf16 autocast on CPU: on; auto = on where the CPU has native bf16 (AVX512-BF16, AMX), "
        "where it gives 1.4-1.7x the steps/s. Results differ from fp32, so recipes opt in.")
    channels_last: bool = option(True, "channels_last memory format for conv nets.")
    compile: bool = option(False, "torch.compile the networks.")
    deterministic: bool = option(
        False, "Deterministic kernels only (torch.use_deterministic_algorithms; cuDNN autotuning off): "
        "bit-exact reruns and resumes on CUDA too, at some speed (an op without such a kernel stops the run).")
    num_threads: Optional[int] = option(None, "CPU threads per process (default: cores / local ranks).")
    sync_batchnorm: bool = option(False, "DDP: SyncBatchNorm instead of per-rank batch norm.", flag="--sync-bn")
    progress: bool = option(True, "Show a progress bar.")

    # -- construction ----------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        from .methods import SHORTCUTS, shortcut_specs

        values = dict(values)
        if isinstance(values.get("cpu_amp"), bool):  # YAML reads on/off as booleans; TOML users write true
            values["cpu_amp"] = "on" if values["cpu_amp"] else "off"
        if any(key in values for key in SHORTCUTS):  # 0.7 keys (top_k = 0.5, ...) set method specs
            values["methods"] = shortcut_specs(values, _as_tuple(values.get("methods")))
        arch_options = values.pop("arch_options", None) or {}
        if not isinstance(arch_options, dict):
            raise GanzooError("arch_options must be a table of KEY = VALUE")
        named = [key for key in arch_options if not isinstance(key, str)]
        if named:  # YAML reads `on:`, `yes:` and `3:` as keys that are not names
            raise GanzooError(f"arch_options key {named[0]!r} must be a name (quote it in YAML)")
        cfg = build_options(cls, values, what="config key")
        cfg.arch_options = dict(arch_options)
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(read_config_file(path))

    def replace(self, **changes) -> "TrainConfig":
        merged = dataclasses.asdict(self)
        arch_options = {**merged.pop("arch_options"), **changes.pop("arch_options", {})}
        merged.update(changes)
        cfg = self.from_dict(merged)
        cfg.arch_options = arch_options
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    # -- defaults that depend on the loss ------------------------------------------
    def resolved(self, loss_recommended: dict) -> "TrainConfig":
        """Fill the ``None`` hyper-parameters from the loss's recommendation, else DCGAN's."""
        rec = loss_recommended or {}
        betas = tuple(rec.get("betas", DEFAULT_BETAS))
        return self.replace(
            lr_g=self.lr_g if self.lr_g is not None else rec.get("lr_g", DEFAULT_LR),
            lr_d=self.lr_d if self.lr_d is not None else rec.get("lr_d", DEFAULT_LR),
            betas_g=self.betas_g if self.betas_g is not None else betas,
            betas_d=self.betas_d if self.betas_d is not None else betas,
            d_steps=self.d_steps if self.d_steps is not None else rec.get("d_steps", 1),
            regularizers=(self.regularizers if self.regularizers is not None
                          else tuple(rec.get("regularizers", ()))),
            out=self.out or f"runs/{self.arch}-{self.dataset}",
        )

    def validate(self) -> None:
        """Every number in range (:mod:`ganzoo.limits`, the one table of ranges) and the device
        name known; availability of the device is checked where it is used."""
        from . import limits

        for name in limits.RANGES:
            if hasattr(self, name):
                limits.check(name, getattr(self, name))
        for name in ("betas_g", "betas_d"):
            b = getattr(self, name)
            if b is not None and (len(b) != 2 or not all(0.0 <= v < 1.0 for v in b)):
                raise GanzooError(f"{name.replace('_', '-')} must be two numbers in [0, 1), got {b}")
        if self.keep_best:
            if not self.eval_every:
                raise GanzooError(f"--keep-best {self.keep_best} needs --eval-every N: the best checkpoint "
                                  f"is chosen by the in-training evaluations")
            from .evaluation import check_rankable

            check_rankable(self.keep_best)  # on every rank, before torchrun starts any
        check_regularizers(self.regularizers)
        limits.check_device_name(self.device)


def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def parse_regularizer(spec: str) -> tuple[str, float | None]:
    """``"gp:10"`` → ``("gp", 10.0)``; ``"r1"`` → ``("r1", None)``."""
    name, sep, weight = spec.partition(":")
    if not sep:
        return name, None
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):  # a negative penalty rewards what it should punish
        raise GanzooError(f"regulariser {spec!r}: weight must be a finite number >= 0, as in r1:10")
    return name, value


def check_regularizers(specs) -> None:
    """Each spec parses, and each regulariser is named once (``gp --reg gp:5`` would add both)."""
    seen: dict[str, str] = {}
    for spec in specs or ():
        name = parse_regularizer(spec)[0]
        if name in seen:
            raise GanzooError(f"regulariser {name} is given twice ({seen[name]!r} and {spec!r}); "
                              f"give it once, with the weight you want")
        seen[name] = spec


def read_config_file(path: str | Path) -> dict[str, Any]:
    from .fileio import read_bounded

    path = Path(path)
    try:
        text = read_bounded(path, "config file").decode()
        if path.suffix == ".toml":
            from .fileio import read_toml

            data = read_toml(path, "config file")
        elif path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ModuleNotFoundError:
                raise GanzooError("YAML configs need PyYAML: pip install 'ganzoo[yaml]'") from None
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise GanzooError(f"config file {str(path)!r}: use .toml, .yaml/.yml or .json")
    except GanzooError:
        raise
    except Exception as exc:
        raise GanzooError(f"config file {str(path)!r} is not valid: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise GanzooError(f"config file {str(path)!r} must hold a table of options")
    return data
