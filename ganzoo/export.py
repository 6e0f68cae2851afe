"""Exporting a generator to safetensors + config.json, and loading it back.

An export directory holds ``generator.safetensors`` (weights; the header's
``__metadata__`` carries the essentials as JSON under ``ganzoo``) and
``config.json`` (architecture, plugin, options, shapes, normalisation,
sha256 of the weights). Loading needs the architecture's plugin, not the run
directory or the training code.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import GanzooError, UnknownNameError
from .fileio import atomic_write, check_regular_file, read_json_document, sha256_of  # noqa: F401

FORMAT = "ganzoo-export/1"
MAX_WEIGHTS_BYTES = 64 << 30
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
WEIGHTS = "generator.safetensors"
CONFIG = "config.json"


def export_generator(generator: torch.nn.Module, out_dir: str | Path, info: dict[str, Any],
                     dtype: torch.dtype | None = None) -> Path:
    """Write ``generator``'s weights and config into ``out_dir``; returns the directory.
    ``info`` describes the model (:meth:`ganzoo.checkpoint.Checkpoint.describe`)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in generator.state_dict().items():
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.clone()
    config = {
        "format": FORMAT,
        "architecture": info["architecture"],
        "plugin": info.get("plugin"),
        "plugin_version": info.get("plugin_version"),
        "ganzoo_version": __version__,
        "options": generator.options.to_dict(),
        "latent_dim": generator.latent_dim,
        "data_shape": list(generator.data_shape),
        "num_classes": generator.num_classes,
        "output_range": list(generator.output_range) if generator.output_range is not None else None,
        "normalization": ("uint8 pixel p -> lo + (hi - lo) * p / 255 with (lo, hi) = output_range"
                          if len(generator.data_shape) == 3 else "none (raw values)"),
        "dataset": info.get("dataset"),
        "class_names": info.get("class_names") or [],
        "methods": list(info.get("methods") or []),  # the training methods, as specs
        # what a sampler needs beyond the weights (a label prior, what the labels are)
        "sampling": dict(info.get("sampling") or getattr(generator, "sampling", None) or {}),
        "step": info.get("step"),
        "weights": info.get("weights", "ema"),
        "run": info.get("run"),  # which run (a hash, see run_id): guards against overwriting
        "dtype": str(dtype or "float32").replace("torch.", ""),
    }
    def write_weights(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata={"ganzoo": json.dumps(config)})
        config["sha256"] = sha256_of(tmp)  # before the rename: config.json follows it at once

    atomic_write(out / WEIGHTS, write_weights)
    atomic_write(out / CONFIG, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    return out


def generator_from_checkpoint(ckpt, use_ema: bool = True, where: str = "checkpoint"):
    """``(generator, info)`` of a loaded :class:`ganzoo.checkpoint.Checkpoint`: the EMA weights
    when kept (unless ``use_ema`` is False), and the description an export records."""
    info = ckpt.describe()
    G = build_generator(info, where)
    weights, kind = ckpt.generator_weights(ema=use_ema)
    try:
        G.load_state_dict(weights)
    except (RuntimeError, KeyError) as exc:
        raise GanzooError(f"{where}: the checkpoint's weights do not fit architecture {info['architecture']} "
                          f"({' '.join(str(exc).split())[:240]})") from None
    if kind == "ema":  # averaged spectral-norm vectors are shorter than 1 (ganzoo/ema.py)
        from .ema import normalize_spectral_vectors

        normalize_spectral_vectors(G)
    G.sampling = info["sampling"]
    info["weights"] = kind
    return G, info


def export_run(run: str | Path, out_dir: str | Path | None = None, use_ema: bool = True,
               dtype: torch.dtype | None = None, force: bool = False) -> Path:
    """Export the newest readable checkpoint of run directory ``run`` (or a checkpoint file)
    to ``out_dir`` (default ``RUN/export``; ``RUN/export-best`` for ``--keep-best``'s
    ``checkpoints/best.pt``, so the run's final export stays). A directory holding another
    model's export (another run or architecture) is refused unless ``force``; the run's own
    ``export/`` and its earlier exports are replaced. A checkpoint file outside a run (a
    ``checkpoints/`` folder beside the run's ``config.json``) belongs to no run this can
    tell: its default is ``STEM-export`` beside it (``a.pt`` → ``a-export``), and another
    model's export there is refused unless ``force``."""
    from .checkpoint import BEST_NAME, Checkpoint

    run = Path(run)
    if run.is_dir():
        run_dir = run
    elif run.resolve().parent.name == "checkpoints" and (run.resolve().parent.parent / "config.json").is_file():
        run_dir = run.resolve().parent.parent  # RUN/checkpoints/step-N.pt or best.pt
    else:
        run_dir = None
    own = run_dir / "export" if run_dir is not None else None
    best = not run.is_dir() and run.name == BEST_NAME
    if out_dir:
        out = Path(out_dir)
    elif run_dir is None:
        out = run.with_name(f"{run.stem}-export")
    else:
        out = run_dir / "export-best" if best else own
    G, info = generator_from_checkpoint(Checkpoint.load(run), use_ema, str(run))
    info["run"] = run_id(run_dir if run_dir is not None else run)
    _refuse_run_directory(out)
    if not force and (own is None or not _same_dir(out, own)):
        _refuse_other_export(out, info)
    return export_generator(G, out, info, dtype=dtype)


def _identities(path: Path) -> tuple:
    """Which files an export's two names point at now (a rename gives a new inode)."""
    def identity(p: Path):
        try:
            st = os.stat(p)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    return identity(path / CONFIG), identity(path / WEIGHTS)


# What tells one export from another (each is written with these in both files); not a check
# of config.json's other fields, which a user may edit (e.g. an architecture's new name).
_PAIRING_KEYS = ("run", "step", "weights", "dtype")


def _same_export(config: dict, weights: Path) -> bool:
    """Whether ``config`` (config.json) and the record in ``weights``' safetensors header name
    the same export; a file without that record (written by other tools) is taken as paired."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        record = (f.metadata() or {}).get("ganzoo")
    try:
        record = json.loads(record) if record else None
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return True
    return all(record[k] == config[k] for k in _PAIRING_KEYS if k in record and k in config)


def run_id(run_dir: Path) -> str:
    """Which run an export came from, without recording its path: a hash of the resolved path."""
    import hashlib

    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def _same_dir(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _refuse_run_directory(out: Path) -> None:
    """An export writes config.json: in a run directory it would replace the run's own (which
    resume reads), so none is written there, even with --force."""
    from .checkpoint import list_checkpoints

    blocking = next((p for p in (out, *out.parents) if os.path.lexists(p) and not p.is_dir()), None)
    if blocking is not None:  # mkdir would fail with a bare FileExistsError / NotADirectoryError
        what = "is a file" if blocking == out else f"lies under the file {str(blocking)!r}"
        raise GanzooError(f"the export folder {str(out)!r} {what}; an export is a directory "
                          f"(config.json and generator.safetensors): choose another --out")
    if out.is_dir() and list_checkpoints(out):
        raise GanzooError(f"{str(out)!r} is a run directory (it holds checkpoints), and an export "
                          f"there would replace the run's config.json; nothing was written (export "
                          f"to {str(out / 'export')!r} or another directory)")


def _refuse_other_export(out: Path, info: dict) -> None:
    if not os.path.lexists(out / CONFIG):
        return
    try:
        old = read_json_document(out / CONFIG, FORMAT, "a ganzoo export")
    except GanzooError:
        old = None
    if old and old.get("run") == info["run"] and old.get("architecture") == info["architecture"]:
        return  # an earlier export of this same run
    what = (f"the export of another model ({old.get('architecture')!s}, step {old.get('step')!s})"
            if old else f"a {CONFIG} that is not this run's export")
    raise GanzooError(f"{str(out)!r} already holds {what}; nothing was overwritten "
                      f"(pass --force to replace it, or choose another --out)")


def build_generator(info: dict, where: str):
    """An untrained generator of the architecture and options ``info`` records; a missing
    architecture names the plugin that provides it."""
    from .catalog import get_architecture

    arch_name, plugin, version = info["architecture"], info.get("plugin"), info.get("plugin_version")
    try:
        arch = get_architecture(arch_name)
    except UnknownNameError:
        raise GanzooError(f"{where}: architecture {arch_name!r} comes from plugin "
                          f"{plugin or '?'} {version or ''}".rstrip() +
                          ", which is not installed or failed to load (see `ganzoo plugins`)") from None
    return arch.create_generator(**info["options"])


def read_export_config(path: str | Path) -> dict:
    """An export's config.json, upgraded from ganzoo 0.7 (``class_prior`` among the options,
    ``cluster_labels`` at the top) to the generic ``sampling`` table."""
    from .checkpoint import legacy_sampling

    config = read_json_document(Path(path) / CONFIG, FORMAT, "a ganzoo export")
    where = str(Path(path) / CONFIG)
    for key, types_, what in (("architecture", (str,), "a name"), ("options", (dict,), "a table"),
                              ("plugin", (str, type(None)), "a name"),
                              ("class_names", (list, type(None)), "a list"),
                              ("sampling", (dict, type(None)), "a table")):
        if key in config and not isinstance(config[key], types_) or key in ("architecture", "options") \
                and not config.get(key):
            raise GanzooError(f"{where}: {key} must be {what}, got {config.get(key)!r:.60}")
    options = config.get("options")
    if "sampling" not in config and isinstance(options, dict):
        config["sampling"] = legacy_sampling(options, config.pop("cluster_labels", 0))
    if isinstance(options, dict):
        options.pop("class_prior", None)
    return config


def load_export(path: str | Path, device: str = "cpu", expected_sha256: str | None = None,
                allow_unverified: bool = False):
    """Load an export directory; the weights' sha256 is checked before they are read. An export
    whose config.json has no valid sha256 is refused unless ``allow_unverified`` (the CLI's
    ``--trust-unverified``): a missing checksum must not silently skip the check."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .interfaces import check_sampling

    path = Path(path)
    weights = path / WEIGHTS
    # An export is rewritten by two renames (weights, then config.json), each atomic: a reader
    # that saw a file change while it read, whose first read failed the sha256 check, or whose
    # config.json names another export than the one the weights' header records (a read between
    # the two renames, which an unverified load cannot tell by its sha256), goes again (three
    # reads at most), rather than pair one export's config with another's weights.
    for attempt in range(3):
        before = _identities(path)
        config = read_export_config(path)
        if not os.path.lexists(weights):
            raise GanzooError(f"{str(path)!r} has no {WEIGHTS}")
        check_regular_file(weights, "weights file", MAX_WEIGHTS_BYTES)
        want = expected_sha256 or config.get("sha256")
        if not (isinstance(want, str) and _SHA256.match(want)):
            if not allow_unverified:
                raise GanzooError(f"{str(path / CONFIG)!r} has no valid sha256 of its weights, so they "
                                  f"cannot be verified; refused (pass --trust-unverified, or "
                                  f"allow_unverified=True, only for a file you trust)")
            want = None
        verified = not want or sha256_of(weights) == want
        paired = True
        if verified:
            try:
                tensors = load_file(str(weights))
                paired = _same_export(config, weights)
            except (SafetensorError, OSError) as exc:
                raise GanzooError(f"{str(weights)!r} is not a readable safetensors file ({exc})") from None
        if _identities(path) == before and (verified and paired or attempt > 0):
            break  # (a mismatch on a first read may be a re-export between its two renames)
        time.sleep(0.05 * (attempt + 1))  # the writer's second rename follows its first in ms
    else:
        raise GanzooError(f"{str(path)!r} changed each of the three times it was read (is an export "
                          f"being written there?); try again")
    if not verified:
        raise GanzooError(f"{str(weights)!r} failed its sha256 check (expected {want[:12]}…): "
                          f"the file is corrupted or was modified; nothing was loaded")
    if not paired:
        raise GanzooError(f"{str(path / CONFIG)!r} describes another export than {WEIGHTS} there "
                          f"(its run, step or weights differ from the record in the weights' header); "
                          f"nothing was loaded (is an export being written there? try again; "
                          f"else export the model again)")
    G = build_generator(config, str(path))
    G.sampling = check_sampling(config.get("sampling") or {}, G.num_classes, str(path / CONFIG))
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        G.load_state_dict(tensors)
    except RuntimeError as exc:
        raise GanzooError(f"{str(weights)!r} does not match architecture "
                          f"{config['architecture']} ({str(exc).splitlines()[0]})") from None
    if config.get("weights", "ema") == "ema":  # an export written before ganzoo/ema.py, too
        from .ema import normalize_spectral_vectors

        normalize_spectral_vectors(G)
    G.export_config = config
    return G.to(device).eval()
