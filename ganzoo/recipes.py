"""Recipes: named, complete training configurations that plugins register.

A recipe is what ``ganzoo train --recipe NAME`` runs: every :class:`~ganzoo.config.TrainConfig`
value that matters (architecture and its options, dataset, loss, regularisers, methods,
optimiser and schedule, batch size, steps or a time budget, EMA, evaluation). Plugins
register theirs through the ``register_recipes`` hook, the built-in ones exactly like a
third party's, and may mark a recipe as the default of (architecture, dataset) pairs: a
plain ``ganzoo train ARCH --dataset D`` then uses it (and says so). A TOML/YAML/JSON config
file is the same thing loaded from disk; ``ganzoo info RECIPE --toml`` writes one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import GanzooError

# What a recipe names, and the catalog kind each is looked up in.
NAMED_KINDS = {"arch": "architecture", "loss": "loss", "dataset": "dataset"}


@dataclass(frozen=True)
class Recipe:
    name: str
    values: dict = field(default_factory=dict)  # TrainConfig keys; arch_options a table
    default_for: tuple[tuple[str, str], ...] = ()  # (architecture, dataset) pairs it is the default of
    requires: dict = field(default_factory=dict)  # name -> distribution that provides it
    description: str = ""
    plugin: str = ""

    def config(self, **overrides):
        """The :class:`TrainConfig` of this recipe with ``overrides`` (flags) on top;
        ``arch_options`` merge key by key, ``methods`` given as overrides replace the recipe's."""
        from .config import TrainConfig

        values = {k: v for k, v in self.values.items()}
        arch_options = {**(values.pop("arch_options", None) or {}), **(overrides.pop("arch_options", None) or {})}
        return TrainConfig.from_dict({**values, **overrides, "arch_options": arch_options})

    def check_installed(self) -> None:
        """One line naming the plugin to install when the recipe names something missing."""
        from .catalog import get_catalog
        from .methods import parse_method_spec

        catalog = get_catalog()
        cfg = self.config()
        named = [(kind, getattr(cfg, key)) for key, kind in NAMED_KINDS.items()]
        named += [("method", parse_method_spec(m)[0]) for m in cfg.methods]
        named += [("regularizer", r.partition(":")[0]) for r in cfg.regularizers or ()]
        for kind, name in named:
            if name not in catalog.names(kind):
                plugin = self.requires.get(name)
                how = (f"install {plugin} (pip install {plugin})" if plugin
                       else "no installed plugin provides it (see `ganzoo plugins`)")
                raise GanzooError(f"recipe {self.name} needs {kind} {name!r}, which is not installed: {how}")


def make_recipe(name: str, values: Any, description: str | None, plugin: str, extra: dict) -> Recipe:
    """A :class:`Recipe` from what a plugin passed to ``register``; raises ``TypeError`` for a
    malformed one (the plugin is then recorded as failed)."""
    if not isinstance(values, dict):
        raise TypeError(f"recipe {name!r} must be a dict of TrainConfig values")
    pairs = tuple(tuple(p) for p in extra.pop("default_for", ()) or ())
    if any(len(p) != 2 for p in pairs):
        raise TypeError(f"recipe {name!r}: default_for takes (architecture, dataset) pairs")
    requires = dict(extra.pop("requires", {}) or {})
    if extra:
        raise TypeError(f"unexpected recipe fields: {', '.join(extra)}")
    from .config import TrainConfig

    TrainConfig.from_dict(dict(values))  # unknown keys and bad values fail at registration
    return Recipe(name, dict(values), pairs, requires, description or "", plugin)


def default_recipe(arch: str, dataset: str) -> Recipe | None:
    """The recipe the plugins mark as the default of (``arch``, ``dataset``), if any."""
    from .catalog import get_catalog

    for entry in get_catalog().entries("recipe"):
        if (arch, dataset) in entry.obj.default_for:
            return entry.obj
    return None


def get_recipe(name: str) -> Recipe:
    from .catalog import get_catalog

    return get_catalog().get("recipe", name).obj


def to_toml(values: dict) -> str:
    """A config as TOML (``tomli-w``), loadable by ``ganzoo train --config``; None values left out."""
    import tomli_w

    clean = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()
             if v is not None and k != "arch_options"}
    clean["arch_options"] = dict(values.get("arch_options") or {})
    return tomli_w.dumps(clean)
