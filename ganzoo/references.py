"""References to a generator, resolved in one place.

A reference is one of

* ``zoo:ID``: a model of the zoo (``ganzoo list models``), verified against its card;
* a path: an export directory (``config.json`` + ``generator.safetensors``), a run directory
  (its latest checkpoint, EMA weights) or a checkpoint file (``.pt``);
* a bare ``ID``: accepted when no file or directory of that name exists.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import GanzooError, UnknownNameError

ZOO_PREFIX = "zoo:"


@dataclass(frozen=True)
class Reference:
    kind: str  # "zoo" | "export" | "run" | "checkpoint"
    target: str  # the zoo id, or the path

    @property
    def path(self) -> Path:
        return Path(self.target)


def resolve(ref: str | Path) -> Reference:
    """What ``ref`` names, or one line saying why it names nothing."""
    from .export import WEIGHTS

    text = str(ref)
    if text.startswith(ZOO_PREFIX):
        return Reference("zoo", _zoo_id(text[len(ZOO_PREFIX):]))
    path = Path(text)
    if path.is_dir() and (path / WEIGHTS).exists():
        return Reference("export", text)
    if path.is_dir() and (path / "checkpoints").is_dir():
        return Reference("run", text)
    if path.suffix == ".pt" and path.is_file():
        return Reference("checkpoint", text)
    if path.exists():
        raise GanzooError(f"{text!r} is neither an export (config.json + {WEIGHTS}) "
                          f"nor a run directory (checkpoints/)")
    if "/" not in text and os.sep not in text:
        return Reference("zoo", _zoo_id(text, bare=True))
    raise GanzooError(f"{text!r} does not exist")


def _zoo_id(model_id: str, bare: bool = False) -> str:
    from .catalog import get_catalog

    known = get_catalog().names("model")
    if model_id not in known:
        what = "model (no such export, run directory or zoo id)" if bare else "zoo model"
        raise UnknownNameError(what, model_id, known)
    return model_id


def load_generator(ref: str | Path, device: str = "cpu", allow_unverified: bool = False):
    """A generator in eval mode from any reference (see the module docstring); its
    ``export_config`` describes it and ``sampling`` holds what sampling it needs. An export
    without a valid sha256 is refused unless ``allow_unverified``."""
    from .distributed import resolve_device

    device = resolve_device(device)  # checked, auto resolved
    where = resolve(ref)
    if where.kind == "zoo":
        return load_zoo_generator(where.target, device)
    if where.kind == "export":
        from .export import load_export

        return load_export(where.path, device, allow_unverified=allow_unverified)
    from .checkpoint import Checkpoint
    from .export import generator_from_checkpoint

    G, info = generator_from_checkpoint(Checkpoint.load(where.path), where=where.target)
    G.export_config = {**info, "latent_dim": G.latent_dim, "data_shape": list(G.data_shape),
                       "num_classes": G.num_classes,
                       "output_range": list(G.output_range) if G.output_range else None}
    return G.to(device).eval()


def load_zoo_generator(model_id: str, device: str = "cpu"):
    """Verify (plugin, version, sha256) and load a zoo model's generator."""
    from .catalog import get_model_card
    from .export import load_export
    from .zoo import check_plugin, weights_dir

    card = get_model_card(model_id)
    check_plugin(card)
    G = load_export(weights_dir(card), device=device, expected_sha256=card.sha256)
    G.model_card = card
    return G
