"""Plugin loading: default plugins plus setuptools entry points of group ``ganzoo``.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that
fails to import and silently skips duplicate names, so we load entry points
ourselves: one try/except per plugin, de-duplicated by distribution, and a
record of what loaded and what failed for ``ganzoo plugins``.
"""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "ganzoo"
LOAD_ENV = "GANZOO_LOAD_PLUGINS"

# Built-in features register through the same hooks as third-party plugins.
DEFAULT_PLUGINS = (
    "ganzoo.default_plugins.losses",
    "ganzoo.default_plugins.datasets",
    "ganzoo.default_plugins.metrics",
    "ganzoo.default_plugins.models",
    "ganzoo.default_plugins.methods",
    "ganzoo.default_plugins.bench",
)


@dataclass
class PluginRecord:
    name: str
    distribution: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def status(self) -> str:
        return "ok" if self.error is None else "failed"

    def to_dict(self) -> dict:
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "module": self.module, "hooks": self.hooks, "status": self.status,
                "error": self.error}


pm = pluggy.PluginManager("ganzoo")
pm.add_hookspecs(hookspecs)
_records: dict[str, PluginRecord] = {}
_loaded = False


def _normalise(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _allowed_distributions() -> set[str] | None:
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return None
    return {_normalise(n.strip()) for n in raw.split(",") if n.strip()}


def _hooks_of(plugin) -> list[str]:
    return sorted(h.name for h in (pm.get_hookcallers(plugin) or []))


def load_plugins() -> list[PluginRecord]:
    """Load default and entry-point plugins once; never raises for a bad plugin."""
    global _loaded
    if _loaded:
        return list(_records.values())
    _loaded = True
    from . import __version__

    for modname in DEFAULT_PLUGINS:
        mod = importlib.import_module(modname)
        pm.register(mod, name=modname)
        _records[modname] = PluginRecord(modname, "ganzoo", __version__, modname, _hooks_of(mod))

    allowed = _allowed_distributions()
    seen: set[str] = set()
    eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP),
                 key=lambda ep: (ep.dist.name if ep.dist else "", ep.name))
    for ep in eps:
        dist = ep.dist.name if ep.dist else ep.name
        version = ep.dist.version if ep.dist else "?"
        key = f"{_normalise(dist)}:{ep.name}"
        if key in seen:  # the same distribution seen twice on some venv layouts
            continue
        seen.add(key)
        if allowed is not None and _normalise(dist) not in allowed:
            continue
        record = PluginRecord(ep.name, dist, version, ep.value)
        _records[key] = record
        try:
            plugin = ep.load()
            pm.register(plugin, name=key)
            record.hooks = _hooks_of(plugin)
        except Exception as exc:  # a broken plugin must not break the CLI
            record.error = _one_line(exc)
            # pluggy registers a plugin's hooks one by one and keeps those added before a bad
            # one: unregister it, so that a failed plugin contributes nothing
            if pm.get_plugin(key) is not None:
                pm.unregister(name=key)
        _drop_unrecorded(record, key)
    installed = {_normalise(ep.dist.name if ep.dist else ep.name) for ep in eps} | {"ganzoo"}
    for name in sorted((allowed or set()) - installed):  # a typo would otherwise load nothing, unsaid
        import difflib

        close = difflib.get_close_matches(name, sorted(installed), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        _records[f"{name}:"] = PluginRecord("-", name, "-", "", error=(
            f"{LOAD_ENV} names it, but no installed distribution registers ganzoo plugins under "
            f"that name{hint}"))
    return list(_records.values())


def _drop_unrecorded(record: PluginRecord, key: str) -> None:
    """Unregister what a plugin's import registered with the manager itself (anything but
    through its entry point): only entry points are plugins, and an object nobody declared
    would run its hooks unlisted by `ganzoo plugins`. The plugin that did it is marked failed."""
    extra = [name for name, _ in pm.list_name_plugin() if name not in _records]
    for name in extra:
        pm.unregister(name=name)
    if extra and not record.error:
        record.error = (f"its import registered {', '.join(map(repr, extra))} with ganzoo's plugin "
                        f"manager itself; plugins register through their entry point only")
        if pm.get_plugin(key) is not None:
            pm.unregister(name=key)


def record_for(plugin_name: str) -> PluginRecord:
    return _records[plugin_name]


def plugin_records() -> list[PluginRecord]:
    load_plugins()
    return list(_records.values())


def failed_plugins() -> list[PluginRecord]:
    return [r for r in plugin_records() if r.error]


def failed_plugin_names() -> set[str]:
    """The plugin-manager names of plugins that failed to load or register."""
    return {key for key, r in _records.items() if r.error}
