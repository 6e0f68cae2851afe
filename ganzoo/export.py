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
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import GanzooError, UnknownNameError
from .fileio import atomic_write, read_json_document, sha256_of  # noqa: F401 (sha256_of re-exported)

FORMAT = "ganzoo-export/1"
WEIGHTS = "generator.safetensors"
CONFIG = "config.json"


def export_generator(generator: torch.nn.Module, out_dir: str | Path, info: dict[str, Any],
                     dtype: torch.dtype | None = None) -> Path:
    """Write ``generator``'s weights and config into ``out_dir``; returns the directory."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in generator.state_dict().items():
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.clone()
    options = generator.options
    config = {
        "format": FORMAT,
        "architecture": info["architecture"],
        "plugin": info.get("plugin"),
        "plugin_version": info.get("plugin_version"),
        "ganzoo_version": __version__,
        "options": options.to_dict(),
        "latent_dim": generator.latent_dim,
        "data_shape": list(generator.data_shape),
        "num_classes": generator.num_classes,
        "output_range": list(generator.output_range) if generator.output_range is not None else None,
        "normalization": ("uint8 pixel p -> lo + (hi - lo) * p / 255 with (lo, hi) = output_range"
                          if len(generator.data_shape) == 3 else "none (raw values)"),
        "dataset": info.get("dataset"),
        "class_names": info.get("class_names") or [],
        "cluster_labels": info.get("cluster_labels") or 0,  # K: the labels are k-means cluster ids
        "step": info.get("step"),
        "weights": info.get("weights", "ema"),
        "dtype": str(dtype or "float32").replace("torch.", ""),
    }
    atomic_write(out / WEIGHTS, lambda p: save_file(tensors, str(p),
                                                     metadata={"ganzoo": json.dumps(config)}))
    config["sha256"] = sha256_of(out / WEIGHTS)
    atomic_write(out / CONFIG, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    return out


def export_run(run: str | Path, out_dir: str | Path | None = None, use_ema: bool = True,
               dtype: torch.dtype | None = None) -> Path:
    """Export the latest checkpoint of run directory ``run`` (or a checkpoint file)."""
    from .checkpoint import load_checkpoint

    run = Path(run)
    state = load_checkpoint(run)
    weights = "ema" if use_ema and state.get("ema") is not None else "generator"
    G = _build(state["arch"], json.loads(state["options"]), state.get("plugin"),
               state.get("plugin_version"), str(run))
    G.load_state_dict(state[weights])
    out = Path(out_dir) if out_dir else (run if run.is_dir() else run.parent.parent) / "export"
    info = {"architecture": state["arch"], "plugin": state.get("plugin"),
            "plugin_version": state.get("plugin_version"), "dataset": state.get("dataset"),
            "class_names": state.get("class_names"), "step": state["step"],
            "cluster_labels": _cluster_labels(state), "weights": "ema" if weights == "ema" else "raw"}
    return export_generator(G, out, info, dtype=dtype)


def _cluster_labels(state: dict) -> int:
    """K when the run trained on k-means cluster ids as labels (--cluster-labels K), else 0."""
    return int(json.loads(state.get("config") or "{}").get("cluster_labels") or 0)


def _build(arch_name: str, options: dict, plugin: str | None, version: str | None, where: str):
    from .registry import get_architecture

    try:
        arch = get_architecture(arch_name)
    except UnknownNameError:
        raise GanzooError(f"{where}: architecture {arch_name!r} comes from plugin "
                          f"{plugin or '?'} {version or ''}".rstrip() +
                          ", which is not installed or failed to load (see `ganzoo plugins`)") from None
    return arch.create_generator(**options)


def read_export_config(path: str | Path) -> dict:
    return read_json_document(Path(path) / CONFIG, FORMAT, "a ganzoo export")


def load_export(path: str | Path, device: str = "cpu", expected_sha256: str | None = None):
    """Load an export directory; the weights' sha256 is checked before they are read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config = read_export_config(path)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise GanzooError(f"{str(path)!r} has no {WEIGHTS}")
    want = expected_sha256 or config.get("sha256")
    if want and sha256_of(weights) != want:
        raise GanzooError(f"{str(weights)!r} failed its sha256 check (expected {want[:12]}…): "
                          f"the file is corrupted or was modified; nothing was loaded")
    G = _build(config["architecture"], config["options"], config.get("plugin"),
               config.get("plugin_version"), str(path))
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise GanzooError(f"{str(weights)!r} is not a readable safetensors file ({exc})") from None
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        G.load_state_dict(tensors)
    except RuntimeError as exc:
        raise GanzooError(f"{str(weights)!r} does not match architecture "
                          f"{config['architecture']} ({str(exc).splitlines()[0]})") from None
    G.export_config = config
    return G.to(device).eval()


def load_generator(model: str | Path, device: str = "cpu"):
    """A generator in eval mode from an export dir, a run dir, a checkpoint file or a zoo id."""
    path = Path(model)
    if path.is_dir() and (path / WEIGHTS).exists():
        return load_export(path, device)
    if path.is_dir() and (path / "checkpoints").is_dir() or path.suffix == ".pt" and path.is_file():
        from .checkpoint import load_checkpoint

        state = load_checkpoint(path)
        G = _build(state["arch"], json.loads(state["options"]), state.get("plugin"),
                   state.get("plugin_version"), str(path))
        G.load_state_dict(state["ema"] if state.get("ema") is not None else state["generator"])
        G.export_config = {"architecture": state["arch"], "plugin": state.get("plugin"),
                           "options": json.loads(state["options"]), "dataset": state.get("dataset"),
                           "latent_dim": G.latent_dim, "data_shape": list(G.data_shape),
                           "num_classes": G.num_classes, "class_names": state.get("class_names"),
                           "cluster_labels": _cluster_labels(state),
                           "output_range": list(G.output_range) if G.output_range else None}
        return G.to(device).eval()
    if path.exists():
        raise GanzooError(f"{str(path)!r} is neither an export (config.json + {WEIGHTS}) "
                          f"nor a run directory (checkpoints/)")
    from .registry import get_registry

    if "/" not in str(model) and os.sep not in str(model):
        registry = get_registry()
        if str(model) in registry.names("model"):
            from .zoo import load_zoo_generator

            return load_zoo_generator(str(model), device)
        raise UnknownNameError("model (no such export, run directory or zoo id)", str(model),
                               registry.names("model"))
    raise GanzooError(f"{str(path)!r} does not exist")
