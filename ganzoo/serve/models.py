"""The one adapter between ``ganzoo serve`` and the rest of ganzoo.

Everything the web app needs from the core (the registry, model cards, loading
a generator, drawing samples the way ``ganzoo sample`` does, plugin records)
goes through the functions below, so that when names move in the core only
this file changes. Nothing here knows about HTTP.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any

from ..interfaces import parameter_count

# -- registry, cards, plugins --------------------------------------------------------


def _registry():
    """The catalog of registered names (``ganzoo.catalog``; ``ganzoo.registry`` before 0.8)."""
    try:
        from ganzoo.catalog import get_catalog
    except ImportError:  # pragma: no cover - older core
        from ganzoo.registry import get_registry as get_catalog
    return get_catalog()


def _kinds_table() -> dict:
    try:
        from ganzoo.catalog import KINDS
    except ImportError:  # pragma: no cover - older core
        try:
            from ganzoo.registry import KINDS
        except ImportError:
            KINDS = {}
    return KINDS


def load_registry() -> None:
    """Load the plugins once, on the thread that starts the app (the registry is filled lazily)."""
    _registry()


def registry_kinds() -> list[str]:
    """Every kind the registry knows, in its own order (new kinds appear without change here)."""
    kinds = list(_kinds_table())
    held = getattr(_registry(), "_entries", None)
    for kind in (held or {}):
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def registered(kind: str) -> list[dict]:
    """``ganzoo list KIND --json`` rows for one kind."""
    return [_entry_dict(e) for e in _registry().entries(kind)]


def _entry_dict(entry) -> dict:
    if hasattr(entry, "to_dict"):
        return entry.to_dict()
    return {"name": entry.name, "kind": entry.kind, "plugin": entry.plugin,
            "version": getattr(entry, "plugin_version", ""), "description": entry.description}


def plugin_records() -> list[dict]:
    """What ``ganzoo plugins --json`` prints: every plugin tried, loaded or failed and why."""
    from ganzoo.plugins import plugin_records as records

    _registry()  # registration errors (collisions) are recorded too
    return [r.to_dict() for r in records()]


def model_ids() -> list[str]:
    return _registry().names("model")


def model_entry(model_id: str):
    """The registry entry of a zoo model; raises ``KeyError`` (an UnknownNameError) if unknown."""
    return _registry().get("model", model_id)


def jsonable(value: Any) -> Any:
    """Card values (TOML: strings, numbers, dates, tables, arrays; paths) as JSON values."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


CARD_FIELDS = ("architecture", "plugin", "plugin_versions", "dataset", "description", "sha256",
               "url", "headline")


def card_dict(entry) -> dict:
    """A zoo model as JSON: ``id``, the card's fields, ``card`` (every key of the card file,
    e.g. ``command``, ``config``, ``ganzoo_version``) and the installed plugin's version."""
    card = entry.obj
    out: dict[str, Any] = {"id": getattr(card, "id", entry.name)}
    for key in CARD_FIELDS:
        out[key] = jsonable(getattr(card, key, "") or "")
    out["metrics"] = jsonable(dict(getattr(card, "metrics", {}) or {}))
    headline = getattr(card, "headline_text", None)
    out["headline_text"] = headline() if callable(headline) else ""
    raw = getattr(card, "raw", None)
    if raw is None and dataclasses.is_dataclass(card):
        raw = dataclasses.asdict(card)
    out["card"] = jsonable(dict(raw or {}))
    out["registered_by"] = entry.plugin
    out["registered_version"] = entry.plugin_version
    arch = getattr(card, "architecture", None)
    installed = None
    if arch and arch in _registry().names("architecture"):
        a = _registry().get("architecture", arch)
        installed = {"plugin": a.plugin, "version": a.plugin_version}
    out["installed_architecture"] = installed
    return out


# -- generators -------------------------------------------------------------------


def load_zoo_model(model_id: str):
    """A zoo model's generator, verified (plugin, version, sha256) as ``ganzoo sample`` does.
    Only a registered id reaches here, and it is never read as a path."""
    import ganzoo

    try:
        from ganzoo.references import ZOO_PREFIX  # "zoo:ID" names a zoo model, never a path
    except ImportError:  # pragma: no cover - older core
        from ganzoo.zoo import load_zoo_generator

        return load_zoo_generator(model_id)
    return ganzoo.load_generator(ZOO_PREFIX + model_id)


def load_path(path: Path):
    """A generator from an export directory or a checkpoint file (the public loader).
    ``path`` is absolute (resolved), so it can never be read as a zoo id."""
    import ganzoo

    return ganzoo.load_generator(str(Path(path).resolve()))


def generator_info(G) -> dict:
    """What the sampling controls need to know about a loaded generator."""
    config = dict(getattr(G, "export_config", None) or {})
    num_classes = int(getattr(G, "num_classes", 0) or 0)
    names = [str(c) for c in (config.get("class_names") or [])]
    data_shape = [int(s) for s in getattr(G, "data_shape", ())]
    return {"architecture": config.get("architecture"), "plugin": config.get("plugin"),
            "dataset": config.get("dataset"), "step": config.get("step"),
            "weights": config.get("weights"), "dtype": config.get("dtype"),
            "latent_dim": int(getattr(G, "latent_dim", 0) or 0), "data_shape": data_shape,
            "kind": "image" if len(data_shape) == 3 else "points",
            "num_classes": num_classes,
            "class_names": names if len(names) == num_classes else [],
            "labels": (getattr(G, "sampling", None) or {}).get("labels", "classes"),
            "sha256": config.get("sha256"),
            "parameters": parameter_count(G)}


def render_samples(G, fmt: str, n: int, seed: int, class_index: int | None,
                   truncation: float | None, nrow: int | None) -> bytes:
    """PNG grid (a scatter plot for 2-D points) or NPZ of ``n`` samples, through the very
    helper ``ganzoo sample`` uses, so the bytes equal ``ganzoo sample ... --out FILE``'s."""
    from ganzoo.sampling import write_samples

    with tempfile.TemporaryDirectory(prefix="ganzoo-serve-") as tmp:
        out = Path(tmp) / f"samples.{fmt}"
        write_samples(G, n=n, out=out, class_index=class_index, seed=seed, nrow=nrow,
                      truncation=truncation)
        return out.read_bytes()


def _latent(G, seed: int, truncation: float | None):
    """``(z, forward keyword arguments)`` of one sample, as ``ganzoo sample`` draws it."""
    import torch

    from ganzoo.sampling import latents_for

    return latents_for(G, 1, torch.Generator().manual_seed(seed), truncation)


def _slerp(a, b, t):
    """Spherical interpolation between two flat latents (linear when they are parallel)."""
    import torch

    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1.0, 1.0))
    t = t[:, None]
    if float(omega) < 1e-4:
        return (1 - t) * a + t * b
    so = torch.sin(omega)
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def render_interpolation(G, seed_a: int, seed_b: int, steps: int, class_index: int | None,
                         truncation: float | None) -> bytes:
    """A one-row PNG strip: the generator along the great circle from seed_a's latent to
    seed_b's (one class throughout for a conditional model: ``class_index``, default 0)."""
    import io

    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    from ganzoo.images import to_uint8

    with torch.no_grad():
        (za, forward_kw), (zb, _) = _latent(G, seed_a, truncation), _latent(G, seed_b, truncation)
        shape = za.shape[1:]
        z = _slerp(za.reshape(-1).float(), zb.reshape(-1).float(), torch.linspace(0, 1, steps))
        z = z.reshape(steps, *shape).to(za.dtype)
        device = next(G.parameters()).device
        labels = (torch.full((steps,), class_index or 0, dtype=torch.long, device=device)
                  if getattr(G, "num_classes", 0) else None)
        x = G(z.to(device), labels, **forward_kw).float().cpu()
    grid = make_grid(to_uint8(x, G.output_range), nrow=steps, padding=2, pad_value=0)
    arr = grid.permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
