"""The one checkpoint format shared by every plugin.

A checkpoint is a single ``torch.save`` file holding only tensors, numbers,
strings, lists and dicts, so it loads with ``torch.load(weights_only=True)``:
no arbitrary object is ever unpickled. It is written to a temporary file in
the same directory and renamed into place, so a crash mid-write leaves the
previous checkpoint intact.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .errors import GanzooError
from .fileio import atomic_write

FORMAT = "ganzoo-checkpoint/1"
_NAME = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path:
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise GanzooError(f"no checkpoint in {str(run_dir)!r} (expected checkpoints/step-*.pt)")
    return ckpts[-1]


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically (temp file, fsync, rename)."""
    return atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = latest_checkpoint(path)
    if not path.is_file():
        raise GanzooError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GanzooError(f"checkpoint {str(path)!r} is unreadable or corrupted ({first[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GanzooError(f"{str(path)!r} is not a ganzoo checkpoint (format {FORMAT})")
    return state


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
