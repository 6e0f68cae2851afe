"""All training options in one dataclass, loadable from TOML/YAML and overridable by CLI flags."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import GanzooError
from .options import build_options

# The DCGAN paper's settings: the defaults when a loss recommends nothing else.
DEFAULT_LR = 2e-4
DEFAULT_BETAS = (0.5, 0.999)
LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TrainConfig:
    arch: str = "dcgan"
    arch_options: dict = field(default_factory=dict)
    dataset: str = "fashion-mnist"
    data_root: Optional[str] = None
    split: str = "train"
    image_size: Optional[int] = None
    loss: str = "non-saturating"
    # "NAME" or "NAME:WEIGHT"; None = what the loss recommends (e.g. gp:10 for wasserstein)
    regularizers: Optional[tuple[str, ...]] = None
    steps: int = 2000
    epochs: Optional[float] = None  # when set, overrides steps
    max_seconds: Optional[float] = None  # wall-clock budget: stop (and checkpoint) at the first log step past it
    batch_size: int = 64
    optimizer: str = "adam"
    lr_g: Optional[float] = None  # None = the loss's recommendation, else 2e-4
    lr_d: Optional[float] = None
    betas_g: Optional[tuple[float, ...]] = None  # None = the loss's recommendation, else (0.5, 0.999)
    betas_d: Optional[tuple[float, ...]] = None
    d_steps: Optional[int] = None  # discriminator steps per generator step; None = loss's or 1
    # auxiliary classification (AC-GAN, Odena et al. 2017; P2GAN, Han et al. 2021): D's class
    # head learns the labels of real images, G makes fakes it classifies as their label
    class_weight: float = 0.0
    # top-k training (Sinha et al. 2020): the generator step learns only from this share of
    # the fake batch, the fakes D scores highest (1 = all of them)
    top_k: float = 1.0
    # instance noise (Sønderby et al. 2016): Gaussian noise of this std (data units) is added to
    # every input of D, real and fake, in both steps, decaying linearly to 0 at the
    # instance_noise_until share of the run (0 = off)
    instance_noise: float = 0.0
    instance_noise_until: float = 0.5
    # self-conditioning (Liu et al. 2020): a conditional architecture trains on the ids of this
    # many k-means clusters of the data (found once, in input space) as its labels (0 = off)
    cluster_labels: int = 0
    lr_schedule: str = "constant"  # constant | linear (to 0 at the last step) | cosine
    ema: bool = True
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    out: Optional[str] = None  # run directory; None = runs/<arch>-<dataset>
    init: Optional[str] = None  # start from a zoo model / export (fine-tuning)
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    eval_every: int = 0
    eval_metrics: tuple[str, ...] = ()
    eval_samples: int = 2500  # PacGAN's protocol uses 2,500 samples
    amp: bool = True  # bf16 autocast on CUDA; ignored elsewhere
    channels_last: bool = True  # for conv nets
    compile: bool = False
    num_threads: Optional[int] = None  # CPU threads per process; None = cores / local ranks
    sync_batchnorm: bool = False  # DDP only: SyncBatchNorm instead of per-rank statistics
    progress: bool = True

    # -- construction ----------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        values = dict(values)
        arch_options = values.pop("arch_options", None) or {}
        if not isinstance(arch_options, dict):
            raise GanzooError("arch_options must be a table of KEY = VALUE")
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
        for name in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every",
                     "keep_checkpoints", "eval_samples"):
            if getattr(self, name) < 1:
                raise GanzooError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.d_steps is not None and self.d_steps < 1:
            raise GanzooError(f"d-steps must be >= 1, got {self.d_steps}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise GanzooError(f"lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not (math.isfinite(self.class_weight) and self.class_weight >= 0):
            raise GanzooError(f"class-weight must be >= 0, got {self.class_weight}")
        if not 0.0 < self.top_k <= 1.0:
            raise GanzooError(f"top-k must be a share of the batch in (0, 1] (0.5 keeps the top half), "
                              f"got {self.top_k}")
        if not (math.isfinite(self.instance_noise) and self.instance_noise >= 0):
            raise GanzooError(f"instance-noise must be a finite std >= 0 in data units (0 = off), "
                              f"got {self.instance_noise}")
        if not 0.0 < self.instance_noise_until <= 1.0:
            raise GanzooError(f"instance-noise-until must be a share of the run in (0, 1] (0.5: the noise "
                              f"is gone halfway), got {self.instance_noise_until}")
        if self.cluster_labels < 0 or self.cluster_labels == 1:
            raise GanzooError(f"cluster-labels must be 0 (off) or a number of clusters >= 2, "
                              f"got {self.cluster_labels}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise GanzooError(f"ema-decay must be in [0, 1), got {self.ema_decay}")
        for name in ("betas_g", "betas_d"):
            b = getattr(self, name)
            if b is not None and (len(b) != 2 or not all(0.0 <= v < 1.0 for v in b)):
                raise GanzooError(f"{name.replace('_', '-')} must be two numbers in [0, 1), got {b}")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise GanzooError(f"device must be auto, cpu, cuda[:N] or mps, got {self.device!r}")


def parse_regularizer(spec: str) -> tuple[str, float | None]:
    """``"gp:10"`` → ``("gp", 10.0)``; ``"r1"`` → ``("r1", None)``."""
    name, sep, weight = spec.partition(":")
    if not sep:
        return name, None
    try:
        return name, float(weight)
    except ValueError:
        raise GanzooError(f"regulariser {spec!r}: weight must be a number, as in r1:10") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GanzooError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
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
