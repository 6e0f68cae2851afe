"""The one checkpoint format shared by every plugin: this module builds, saves, loads,
upgrades and describes it. Elsewhere only what a resume needs is read back: the run's
config (``training/loop.py``), options, plugin and its version and the methods' state
(``training/build.py``), ``elapsed_s`` and ``log_window``.

A checkpoint is a single ``torch.save`` file holding only tensors, numbers, strings, lists
and dicts, so it loads with ``torch.load(weights_only=True)``: no arbitrary object is ever
unpickled. It is written to a temporary file in the same directory and renamed into place,
so a crash mid-write leaves the previous checkpoint intact.

Keys of ``ganzoo-checkpoint/1`` (ganzoo >= 0.8):

=================  ==========================================================================
``format``         ``"ganzoo-checkpoint/1"``
``step``           generator steps done
``generator``      G's ``state_dict`` (raw weights)
``discriminator``  D's ``state_dict``
``ema``            the EMA generator's ``state_dict``, or None (``--no-ema``)
``opt_g/opt_d``    the optimisers' ``state_dict``
``config``         the run's :class:`~ganzoo.config.TrainConfig` as a JSON string
``arch``           architecture name; ``options``: its options as a JSON string
``plugin``         distribution providing the architecture, and ``plugin_version``
``ganzoo_version`` the version that wrote the file
``world_size``     processes that trained it (a resume must use as many)
``precision``      ``"bf16-autocast"`` or ``"fp32"``: the arithmetic of the steps since the run's
                   last start or resume (``cpu_amp = "auto"`` resolves per CPU; absent before
                   ganzoo 0.9.10)
``dataset``        dataset name; ``class_names``: its label names
``methods``        ``{method name: its state_dict()}`` (e.g. cluster centroids, ADA's p)
``sampling``       what a sampler of G needs (``class_prior``, ``labels``), from the methods
``elapsed_s``      seconds of training up to ``step``, over all resumes (metrics.jsonl's
                   ``elapsed_s`` continues from it; absent in older checkpoints: read as 0)
``log_window``     the metrics window open at ``step`` (ganzoo >= 0.9.13): ``{start: the step
                   of the last metrics row, sums: one [d_loss, g_loss, d_adv_loss] per rank,
                   summed since}``; a resume continues it
``best``           only in ``checkpoints/best.pt`` (``--keep-best KEY``): ``{key, value, step}``,
                   the in-training score that made it the run's best
=================  ==========================================================================

No RNG state is saved: every random draw of a step is seeded from (seed, step, rank).
Checkpoints of ganzoo 0.7 (an ``rng`` key, ``cluster_centroids``, method flags in the config,
``class_prior`` among the options) are upgraded on load by :func:`upgrade`.
"""
from __future__ import annotations

import json
import math
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import GanzooError
from .fileio import atomic_write, check_regular_file

MAX_CHECKPOINT_BYTES = 64 << 30  # no real checkpoint is larger; a device file or FIFO never loads

FORMAT = "ganzoo-checkpoint/1"
_NAME = re.compile(r"^step-(\d+)\.pt$")
BEST_NAME = "best.pt"  # --keep-best: not a step-N name, so never pruned nor resumed from


# -- where checkpoints live ---------------------------------------------------------------
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
    """The newest checkpoint file by name (readable or not: see :func:`load_latest`)."""
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        if not Path(run_dir).exists():
            raise GanzooError(f"no such run directory: {str(run_dir)!r}")
        raise GanzooError(f"no checkpoint in {str(run_dir)!r} (expected checkpoints/step-*.pt)")
    return ckpts[-1]


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


# -- building and saving -----------------------------------------------------------------
def checkpoint_state(run, step: int, elapsed_s: float = 0.0,
                     log_window: dict | None = None) -> dict[str, Any]:
    """The checkpoint of ``run`` (a :class:`ganzoo.training.Run`) after ``step`` steps and
    ``elapsed_s`` seconds of training; ``log_window`` is the log window still open then
    (``{"start": step, "sums": [[d, g, d_adv] per rank]}``), which a resume continues."""
    from . import __version__

    state = {
        "format": FORMAT,
        "step": step,
        "generator": run.G_raw.state_dict(),
        "discriminator": run.D_raw.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema is not None else None,
        "opt_g": run.opt_g.state_dict(),
        "opt_d": run.opt_d.state_dict(),
        "config": json.dumps(run.cfg.to_dict()),
        "arch": run.arch.name,
        "options": json.dumps(run.options.to_dict()),
        "plugin": run.plugin,
        "plugin_version": run.plugin_version,
        "ganzoo_version": __version__,
        "world_size": run.dist.world_size,
        "precision": run.precision,  # one of PRECISIONS: what cpu_amp = "auto" resolved to
        "dataset": run.cfg.dataset,
        "class_names": list(getattr(run.data, "class_names", ()) or ()),
        "methods": run.methods.state_dict(),
        "sampling": run.methods.sampling(),
        "elapsed_s": float(elapsed_s),
    }
    if log_window is not None:
        state["log_window"] = log_window
    return state


BF16_AUTOCAST, FP32 = "bf16-autocast", "fp32"
PRECISIONS = (BF16_AUTOCAST, FP32)


def precision_of(state: dict[str, Any] | None) -> str | None:
    """The arithmetic a checkpoint's last steps ran in, or None where it does not say (written
    before ganzoo 0.9.10, or a value this version does not know)."""
    value = (state or {}).get("precision")
    return value if value in PRECISIONS else None


class NonFiniteState(GanzooError):
    """Weights or optimiser state hold NaN or infinity: such a checkpoint is never written."""


def check_finite(state: dict[str, Any]) -> None:
    """Raise :class:`NonFiniteState` naming the first tensor of G, D, EMA or an optimiser state
    that holds NaN or infinity: the one check before a checkpoint is written or called good."""
    def walk(obj, where):
        if isinstance(obj, torch.Tensor):
            if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
                raise NonFiniteState(f"non-finite values in {where}")
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{where}.{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")

    for part in ("generator", "discriminator", "ema", "opt_g", "opt_d"):
        walk(state.get(part), part)


def save_run_checkpoint(run, step: int, elapsed_s: float = 0.0, log_window: dict | None = None) -> Path:
    """Write ``run``'s checkpoint at ``step`` and prune the oldest beyond ``keep_checkpoints``;
    a state with non-finite weights or optimiser state is refused (:func:`check_finite`)."""
    state = checkpoint_state(run, step, elapsed_s, log_window)
    check_finite(state)
    path = save_checkpoint(state, checkpoint_path(run.run_dir, step))
    prune_checkpoints(run.run_dir, run.cfg.keep_checkpoints)
    return path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically (temp file, fsync, rename)."""
    return atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


class BestCheckpoint:
    """``--keep-best KEY``: the checkpoint of the run's best in-training score of ``KEY``
    (``direction`` ``"lower"`` or ``"higher"`` is better), kept as ``checkpoints/best.pt`` beside
    the newest ones and never pruned. The score is stored in the checkpoint (``best``), so a
    resumed run goes on comparing with it; a score ranked by another key is replaced."""

    def __init__(self, run_dir: str | Path, key: str, direction: str):
        self.path = checkpoint_dir(run_dir) / BEST_NAME
        self.key, self.direction = key, direction
        self.value: float | None = None
        self.step: int | None = None
        if self.path.exists():
            try:
                kept = load_checkpoint(self.path).get("best")
                if isinstance(kept, dict) and kept.get("key") == key:
                    value, step = float(kept["value"]), int(kept["step"])
                    if self.improves(value):  # finite: a NaN kept would block every later score
                        self.value, self.step = value, step
            except (GanzooError, KeyError, TypeError, ValueError):  # unreadable or malformed:
                pass  # the next evaluation replaces it

    def improves(self, value: float) -> bool:
        """Strictly better than the kept score (the first finite score always is)."""
        if not math.isfinite(value):
            return False
        if self.value is None:
            return True
        return value < self.value if self.direction == "lower" else value > self.value

    def offer(self, run, step: int, scores: dict[str, float], elapsed_s: float = 0.0) -> bool:
        """Keep ``run``'s state at ``step`` if ``scores`` beat the kept one; True if it did.
        A state holding NaN/inf is never kept (the step's own checkpoint reports it)."""
        value = scores.get(self.key)
        if value is None or not self.improves(float(value)):
            return False
        state = checkpoint_state(run, step, elapsed_s)
        try:
            check_finite(state)
        except NonFiniteState:
            return False
        state["best"] = {"key": self.key, "value": float(value), "step": int(step)}
        save_checkpoint(state, self.path)
        self.value, self.step = float(value), int(step)
        return True


# -- loading ------------------------------------------------------------------------------
def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state of a checkpoint file (or of a run directory's latest), upgraded to this format."""
    path = Path(path)
    if path.is_dir():
        return load_latest(path, map_location)[1]
    if not path.exists():
        raise GanzooError(f"checkpoint {str(path)!r} does not exist")
    check_regular_file(path, "checkpoint", MAX_CHECKPOINT_BYTES)
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip; old torch a pickle
        what = "is empty" if not head else "is not a torch file (neither a zip archive nor a pickle)"
        hint = "" if path.parent.name == "checkpoints" else \
            "; ganzoo train writes its checkpoints as RUN/checkpoints/step-*.pt"
        raise GanzooError(f"checkpoint {str(path)!r} {what}{hint}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):  # code, not data
            raise GanzooError(f"checkpoint {str(path)!r} refused: it holds pickled objects or code, "
                              f"which ganzoo never loads (nothing was run)") from None
        raise GanzooError(f"checkpoint {str(path)!r} is unreadable or corrupted") from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "weights_only" in first:
            first = type(exc).__name__
        first = re.split(r"\.\s+(?=[A-Z])", first)[0]  # torch's first sentence says it; then advice
        raise GanzooError(f"checkpoint {str(path)!r} is unreadable or corrupted ({first[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GanzooError(f"{str(path)!r} is not a ganzoo checkpoint (format {FORMAT})")
    return upgrade(check_layout(state, path))


def load_latest(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
    """``(path, state)`` of the newest *readable* checkpoint of ``run_dir``: an unreadable newer
    one is skipped with a line on stderr saying which was used instead (a resume then renames
    it with :func:`set_aside_unreadable_after`, once it holds the run's lock)."""
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        latest_checkpoint(run_dir)  # the one "no checkpoint" error
    skipped: list[tuple[Path, str]] = []
    for path in reversed(ckpts):
        try:
            state = load_checkpoint(path, map_location)
        except GanzooError as exc:
            skipped.append((path, str(exc)))
            continue
        for bad, why in skipped:
            print(f"warning: {why}; using the newest readable checkpoint {path.name} instead",
                  file=sys.stderr, flush=True)
        return path, state
    raise GanzooError(f"no readable checkpoint in {str(run_dir)!r}: {skipped[0][1]}")


def set_aside_unreadable_after(run_dir: str | Path, step: int) -> list[Path]:
    """Rename every checkpoint of ``run_dir`` past ``step`` that does not load to
    ``NAME.unreadable`` and return the new paths. A resume from ``step`` calls it once it
    holds the run's lock: left in place, such a file would count as one of the newest
    ``keep_checkpoints`` (so pruning deleted a good one) and shadow the continued run's
    checkpoints to export, sample and eval until overwritten. One that loads is left alone."""
    moved = []
    for path in list_checkpoints(run_dir):
        if int(_NAME.match(path.name).group(1)) <= step:
            continue
        try:
            load_checkpoint(path)
        except GanzooError:
            target, n = path.with_name(path.name + ".unreadable"), 1
            while target.exists():  # an earlier one set aside stays
                target, n = path.with_name(f"{path.name}.unreadable-{n}"), n + 1
            try:
                path.replace(target)
            except OSError as exc:  # left in place (as before this existed), and said
                print(f"warning: could not rename unreadable checkpoint {path.name}: {exc}", file=sys.stderr)
                continue
            moved.append(target)
    return moved


# key: (types it may have, what it must be); None where the key may be absent
_LAYOUT = {
    "step": ((int,), "a step count"), "generator": ((dict,), "a state dict"),
    "discriminator": ((dict,), "a state dict"), "opt_g": ((dict,), "an optimiser state"),
    "opt_d": ((dict,), "an optimiser state"), "config": ((str,), "a JSON object"),
    "arch": ((str,), "a name"), "options": ((str,), "a JSON object"),
}


def check_layout(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """One line naming the first key that is missing or of the wrong kind (a checkpoint that
    loads safely may still be malformed: hand-edited, truncated by another writer, ...)."""
    for key, (types_, what) in _LAYOUT.items():
        value = state.get(key)
        ok = isinstance(value, types_) and not isinstance(value, bool)
        if ok and key == "step":
            ok = value >= 0
        if ok and key in ("config", "options"):
            try:
                ok = isinstance(json.loads(value), dict)
            except ValueError:
                ok = False
        if not ok:
            got = "missing" if key not in state else f"{type(value).__name__} {str(value)[:40]!r}"
            raise GanzooError(f"checkpoint {str(path)!r} is malformed: {key} must be {what}, got {got}")
    return state


def upgrade(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of ganzoo 0.7 in today's layout (same format name, older keys)."""
    state.pop("rng", None)  # written by <= 0.7, never read: steps are seeded
    config = json.loads(state.get("config") or "{}")
    options = json.loads(state.get("options") or "{}")
    if "methods" not in state:
        centroids = state.pop("cluster_centroids", None)
        state["methods"] = {"cluster-labels": {"centroids": centroids}} if centroids is not None else {}
    if "sampling" not in state:
        state["sampling"] = legacy_sampling(options, config.get("cluster_labels"))
    if "class_prior" in options:
        options.pop("class_prior")
        state["options"] = json.dumps(options)
    return state


def legacy_sampling(options: dict, cluster_labels: Any) -> dict[str, Any]:
    """The ``sampling`` table of a 0.7 model: its prior was the option ``class_prior`` and its
    cluster-label count the config/export key ``cluster_labels``."""
    out: dict[str, Any] = {}
    if options.get("class_prior"):
        out["class_prior"] = list(options["class_prior"])
    if cluster_labels:
        out["labels"] = f"{int(cluster_labels)} k-means cluster ids"
    return out


@dataclass
class Checkpoint:
    """A loaded checkpoint, read through named accessors."""

    state: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> "Checkpoint":
        return cls(load_checkpoint(path))

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.state["config"])

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.state["options"])

    def generator_weights(self, ema: bool = True) -> tuple[dict, str]:
        """``(state_dict, "ema" | "raw")``: the EMA weights when asked for and kept."""
        if ema and self.state.get("ema") is not None:
            return self.state["ema"], "ema"
        return self.state["generator"], "raw"

    def describe(self) -> dict[str, Any]:
        """What an export's config.json records about the model (see :mod:`ganzoo.export`)."""
        s = self.state
        return {"architecture": s["arch"], "plugin": s.get("plugin"), "plugin_version": s.get("plugin_version"),
                "options": self.options, "dataset": s.get("dataset"),
                "class_names": list(s.get("class_names") or []), "step": self.step,
                "methods": list(self.config.get("methods") or []), "sampling": dict(s.get("sampling") or {})}


def restore(state: dict[str, Any], world_size: int, G, D, opt_g, opt_d, ema) -> int:
    """Load a checkpoint's weights and optimiser states into a built run; returns its step."""
    if state.get("world_size", 1) != world_size:
        raise GanzooError(f"this checkpoint was written by {state.get('world_size', 1)} process(es); "
                          f"resume it with the same number (got {world_size})")
    try:
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if ema is not None and state.get("ema") is not None:
            ema.module.load_state_dict(state["ema"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise GanzooError(f"the checkpoint's weights do not fit its architecture {state['arch']} "
                          f"({' '.join(str(exc).split())[:240]})") from None
    return int(state["step"])
