"""The one check of a number a user supplies (a flag, a config key, a file's field): its type,
that it is finite, and its range. A violation is one line (:class:`GanzooError`) before any
work starts; the ranges below are the only place they are stated."""
from __future__ import annotations

import math
import os
import re

from .errors import GanzooError

SEED_MAX = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer
MAX_SAMPLES = 1_000_000  # -n of sample/eval: beyond this a request is an accident (memory)


def fold_seed(value: int) -> int:
    """A seed derived from a user's seed (mixed with a step, an epoch, a rank) folded into the
    range torch's generators take, [0, 2^64): values already in it are unchanged, so runs keep
    their draws; a large ``--seed`` no longer overflows at the first step."""
    return value % (1 << 64)


def machine_memory() -> int:
    """Bytes of RAM the machine has in all; 0 where unknown (then nothing is checked against it)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


# name: (lowest, highest) allowed; None = unbounded on that side. Floats must be finite.
RANGES: dict[str, tuple] = {
    "steps": (1, 10**12), "epochs": (0.0, 1e9), "max_seconds": (0.0, 1e10),
    "batch_size": (1, 2**20), "d_steps": (1, 1000), "image_size": (1, 8192),
    "seed": (0, SEED_MAX), "subset_seed": (0, SEED_MAX),
    "lr_g": (0.0, 1e3), "lr_d": (0.0, 1e3), "lr_warmup": (0, 10**12), "ema_decay": (0.0, 0.999999999),
    "log_every": (1, None), "max_loss": (0.0, None), "sample_every": (1, None), "checkpoint_every": (1, None),
    "keep_checkpoints": (1, None), "eval_every": (0, None), "eval_samples": (1, MAX_SAMPLES),
    "num_threads": (1, 4096), "nproc": (1, 1024),
    "n": (1, MAX_SAMPLES), "nrow": (1, MAX_SAMPLES), "class": (0, 1_000_000),
    # the options every architecture shares (ArchOptions), wherever they come from: --arch-opt,
    # a config file, an export's config.json, a checkpoint
    "latent_dim": (1, 1 << 16), "num_classes": (0, 1_000_000), "data_dim": (1, 1 << 14),
}

EXCLUSIVE_LOW = {"epochs"}  # must be above its lowest value, not equal to it

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")


def check(name: str, value, flag: str | None = None):
    """``value`` if it lies in ``RANGES[name]`` (None passes: "not given"); one line otherwise."""
    if value is None:
        return value
    lo, hi = RANGES[name]
    flag = flag or "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GanzooError(f"{flag} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise GanzooError(f"{flag} must be a finite number, got {value}")
    if lo is not None and (value <= lo if name in EXCLUSIVE_LOW else value < lo):
        raise GanzooError(f"{flag} must be {'>' if name in EXCLUSIVE_LOW else '>='} {lo:g}, got {value}")
    if hi is not None and value > hi:
        raise GanzooError(f"{flag} must be <= {hi}, got {value}")
    return value


def check_arch_options(options, what: str = "option") -> None:
    """The shared architecture options in range: ``latent_dim``, ``num_classes`` and each of
    ``data_shape``'s sizes (an export asking for a 10^12-wide layer is one line, not an attempt
    to allocate it)."""
    check("latent_dim", options.latent_dim, f"{what} latent_dim")
    check("num_classes", options.num_classes, f"{what} num_classes")
    shape = tuple(options.data_shape)
    if not 1 <= len(shape) <= 3:
        raise GanzooError(f"{what} data_shape must have 1 to 3 sizes (points or C, H, W), got {shape}")
    for size in shape:
        check("data_dim", size, f"{what} data_shape")


def check_device_name(name, flag: str = "--device") -> str:
    """A device name ganzoo knows: auto, cpu, cuda[:N] or mps (whether this machine has it is
    :func:`check_device`'s question)."""
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise GanzooError(f"{flag} must be auto, cpu, cuda[:N] or mps, got {name!r}")
    return name


def check_device(name: str, flag: str = "--device") -> str:
    """A device name ganzoo knows (auto, cpu, cuda[:N], mps) that this machine has."""
    check_device_name(name, flag)
    if name.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise GanzooError(f"{flag} {name}: CUDA is not available on this machine (try --device cpu)")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise GanzooError(f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps":
        import torch

        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise GanzooError(f"{flag} mps: MPS is not available on this machine (try --device cpu)")
    return name
