"""The catalog of registered names: architectures, losses, regularisers, datasets, metrics,
training methods and pretrained models, filled through the plugin hooks (timm-style API).

(Called the catalog so that "registry" means one thing: the model zoo folder ``registry/``.)"""
from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from . import plugins
from .errors import GanzooError, PluginConflictError, UnknownNameError
from .options import build_options, defaults

KINDS = {
    # kind: hook name
    "architecture": "register_architectures",
    "loss": "register_losses",
    "regularizer": "register_regularizers",
    "dataset": "register_datasets",
    "metric": "register_metrics",
    "model": "register_models",
    "method": "register_methods",
    "recipe": "register_recipes",
}


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


@dataclass
class Entry:
    kind: str
    name: str
    obj: Any
    plugin: str  # distribution name
    plugin_version: str
    description: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "plugin": self.plugin,
                "version": self.plugin_version, "description": self.description}


@dataclass
class Architecture:
    """A registered architecture: generator and discriminator classes plus their options."""

    name: str
    generator: type
    discriminator: type
    options: type
    conditional: bool = False
    description: str = ""

    def make_options(self, **values):
        from .limits import check_arch_options

        opts = build_options(self.options, values, what=f"{self.name} option")
        check_arch_options(opts, f"{self.name} option")
        if self.conditional and opts.num_classes < 1:
            raise GanzooError(f"{self.name} is conditional: num_classes must be >= 1")
        return opts

    def option_defaults(self) -> dict:
        return defaults(self.options)

    def create_generator(self, options=None, **values):
        return self.generator(options if options is not None else self.make_options(**values))

    def create_discriminator(self, options=None, **values):
        return self.discriminator(options if options is not None else self.make_options(**values))


class Catalog:
    def __init__(self):
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}

    # -- filling -----------------------------------------------------------
    def _registrar(self, kind: str, staged: list[Entry], plugin: str, version: str) -> Callable:
        def register(name: str, obj: Any = None, description: str | None = None, **extra):
            if kind == "architecture":
                obj = Architecture(name, extra.pop("generator"), extra.pop("discriminator"),
                                   extra.pop("options"), bool(extra.pop("conditional", False)))
                if extra:
                    raise TypeError(f"unexpected architecture fields: {', '.join(extra)}")
                obj.description = description or _first_line(obj.generator)
                description = obj.description
            if kind == "recipe":
                from .recipes import make_recipe

                obj = make_recipe(name, obj, description, plugin, extra)
                description, extra = obj.description, {}
            if not isinstance(name, str) or not name:
                raise TypeError(f"{kind} name must be a non-empty string, got {name!r}")
            staged.append(Entry(kind, name, obj, plugin, version,
                                description if description is not None else _first_line(obj), extra))
        return register

    def _commit(self, staged: list[Entry]) -> None:
        seen = set()
        for entry in staged:
            if (entry.kind, entry.name) in seen:
                raise PluginConflictError(f"{entry.kind} {entry.name!r} is registered twice by "
                                          f"{entry.plugin}; {entry.plugin} was not loaded")
            seen.add((entry.kind, entry.name))
            held = self._entries[entry.kind].get(entry.name)
            if held is not None:
                raise PluginConflictError(
                    f"{entry.kind} {entry.name!r} is registered by both {held.plugin} and "
                    f"{entry.plugin}; {entry.plugin} was not loaded (uninstall one, or set "
                    f"{plugins.LOAD_ENV})")
        for entry in staged:
            self._entries[entry.kind][entry.name] = entry

    def fill(self) -> None:
        """Run every loaded plugin's register hooks; a plugin that raises, or whose
        names collide with an earlier plugin's, is recorded as failed and contributes
        nothing."""
        plugins.load_plugins()
        for plugin_name, plugin in plugins.pm.list_name_plugin():
            record = plugins.record_for(plugin_name)
            if record.error:  # failed to load: contributes nothing
                continue
            staged: list[Entry] = []
            try:
                for kind, hook_name in KINDS.items():
                    for impl in getattr(plugins.pm.hook, hook_name).get_hookimpls():
                        if impl.plugin is plugin:
                            impl.function(register=self._registrar(
                                kind, staged, record.distribution, record.version))
                self._commit(staged)
            except Exception as exc:
                record.error = (str(exc) if isinstance(exc, GanzooError)
                                else plugins._one_line(exc))

    # -- lookup --------------------------------------------------------------
    def names(self, kind: str, pattern: str | None = None) -> list[str]:
        names = sorted(self._entries[kind])
        if pattern:
            pats = [pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"]
            names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in pats)]
        return names

    def entries(self, kind: str, pattern: str | None = None) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind, pattern)]

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownNameError(kind, name, self._entries[kind]) from None


_catalog: Catalog | None = None


def get_catalog() -> Catalog:
    global _catalog
    if _catalog is None:
        _catalog = Catalog()
        _catalog.fill()
    return _catalog


def reset_catalog() -> None:
    """Forget loaded plugins and registrations (tests use this after installing one)."""
    global _catalog
    _catalog = None
    for name, _ in list(plugins.pm.list_name_plugin()):
        plugins.pm.unregister(name=name)
    plugins._records.clear()
    plugins._loaded = False
    import importlib
    importlib.invalidate_caches()


# -- timm-style public API ------------------------------------------------------
def list_architectures(pattern: str | None = None) -> list[str]:
    return get_catalog().names("architecture", pattern)


def get_architecture(name: str) -> Architecture:
    return get_catalog().get("architecture", name).obj


def create_generator(name: str, **options):
    return get_architecture(name).create_generator(**options)


def create_discriminator(name: str, **options):
    return get_architecture(name).create_discriminator(**options)


def list_losses(pattern: str | None = None) -> list[str]:
    return get_catalog().names("loss", pattern)


def create_loss(name: str, **options):
    return get_catalog().get("loss", name).obj(**options)


def list_regularizers(pattern: str | None = None) -> list[str]:
    return get_catalog().names("regularizer", pattern)


def create_regularizer(name: str, weight: float | None = None, **options):
    return get_catalog().get("regularizer", name).obj(weight=weight, **options)


def list_datasets(pattern: str | None = None) -> list[str]:
    return get_catalog().names("dataset", pattern)


def create_dataset(name: str, **options):
    return get_catalog().get("dataset", name).obj(**options)


def list_metrics(pattern: str | None = None) -> list[str]:
    return get_catalog().names("metric", pattern)


def create_metric(name: str, **options):
    return get_catalog().get("metric", name).obj(**options)


def list_models(pattern: str | None = None) -> list[str]:
    return get_catalog().names("model", pattern)


def get_model_card(name: str):
    return get_catalog().get("model", name).obj


def list_methods(pattern: str | None = None) -> list[str]:
    return get_catalog().names("method", pattern)
