"""The model zoo: pretrained generators described by cards, verified before loading.

A card (``registry/models/<id>/card.toml``) names the architecture, its plugin
and the plugin versions it works with, how the model was trained, its metrics
and the sha256 of its weights. Weights either sit beside the card or are
fetched once from ``url`` into ``~/.cache/ganzoo/models/<id>`` and verified.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GanzooError

REGISTRY_ENV = "GANZOO_REGISTRY"
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def shipped_registry() -> Path:
    """The zoo that comes with ganzoo: the copy a wheel installs as the data package
    ``ganzoo/_registry``, else (a source checkout has none) the checkout's ``registry/``."""
    installed = Path(__file__).resolve().parent / "_registry"
    return installed if installed.is_dir() else installed.parent.parent / "registry"


def registry_dir() -> Path:
    """``$GANZOO_REGISTRY``, else the shipped zoo (:func:`shipped_registry`)."""
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else shipped_registry()


def cache_dir() -> Path:
    from .fileio import cache_dir as ganzoo_cache

    return ganzoo_cache("models")


@dataclass
class ModelCard:
    id: str
    architecture: str
    plugin: str
    dataset: str
    plugin_versions: str = ""  # a PEP 440 specifier, e.g. ">=0.1,<0.2"
    description: str = ""
    sha256: str = ""
    url: str = ""  # where weights not shipped in the registry are downloaded from
    directory: Path | None = None  # folder holding config.json + generator.safetensors, if shipped
    headline: str = ""  # metric shown by `ganzoo list models`
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict, directory: Path | None = None, where: str = "card") -> "ModelCard":
        missing = [k for k in ("id", "architecture", "plugin", "dataset", "sha256") if not data.get(k)]
        if missing:
            raise GanzooError(f"{where}: missing {', '.join(missing)}")
        if not isinstance(data.get("metrics", {}), dict):
            raise GanzooError(f"{where}: metrics must be a table of NAME = VALUE")
        if not isinstance(data["id"], str) or not _PLAIN_ID.fullmatch(data["id"]):
            raise GanzooError(f"{where}: id {data['id']!r} must be a plain name (letters, digits, '.', '_', '-'; "
                              f"it names a cache folder)")
        data = dict(data)
        for key in ("sha256", "config_sha256"):  # `Get-FileHash` writes upper case; files hash lower
            if data.get(key) not in (None, "") or key == "sha256":  # an empty config_sha256 is none
                if not isinstance(data[key], str) or not _SHA256.fullmatch(data[key]):
                    raise GanzooError(f"{where}: {key} {data[key]!r} must be 64 hexadecimal digits "
                                      f"(`sha256sum FILE`)")
                data[key] = data[key].lower()
        versions = data.get("plugin_versions", "")
        if versions:
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            try:
                if not isinstance(versions, str):
                    raise TypeError
                SpecifierSet(versions)
            except (InvalidSpecifier, TypeError):
                raise GanzooError(f"{where}: plugin_versions {versions!r} is not a version range "
                                  f"(PEP 440, e.g. \">=0.4,<0.5\" or \"==0.4.2\")") from None
        return cls(id=data["id"], architecture=data["architecture"], plugin=data["plugin"],
                   dataset=data["dataset"], plugin_versions=versions,
                   description=data.get("description", ""), sha256=data["sha256"],
                   url=data.get("url", ""), directory=directory, headline=data.get("headline", ""),
                   metrics=dict(data.get("metrics", {})), raw=data)

    def headline_text(self) -> str:
        if self.headline and self.headline in self.metrics:
            value = self.metrics[self.headline]
            if isinstance(value, float) and value.is_integer():  # a count (modes), not 1e+03
                return f"{self.headline}={value:.0f}"
            return f"{self.headline}={value:.3g}" if isinstance(value, float) else f"{self.headline}={value}"
        return ""


def read_card(path: Path) -> ModelCard:
    from .fileio import read_toml

    data = read_toml(path, "model card")
    return ModelCard.from_dict(data, directory=path.parent, where=str(path))


def shipped_cards(skip_bad: bool = False) -> list[ModelCard]:
    """Cards under ``registry/models/*/card.toml`` (parsing only; no weights are read). With
    ``skip_bad`` a card that does not parse is left out with a one-line warning on stderr, so
    that one bad card does not hide the rest of the zoo; without it, it raises."""
    import sys

    root = registry_dir() / "models"
    cards = []
    for path in sorted(root.glob("*/card.toml")) if root.is_dir() else []:
        try:
            cards.append(read_card(path))
        except GanzooError as exc:
            if not skip_bad:
                raise
            print(f"warning: model card skipped: {exc}", file=sys.stderr)
    return cards


def check_plugin(card: ModelCard) -> None:
    from .catalog import get_catalog

    catalog = get_catalog()
    if card.architecture not in catalog.names("architecture"):
        raise GanzooError(f"model {card.id} needs architecture {card.architecture!r} from plugin "
                          f"{card.plugin}{' ' + card.plugin_versions if card.plugin_versions else ''}, "
                          f"which is not installed or failed to load (see `ganzoo plugins`)")
    entry = catalog.get("architecture", card.architecture)
    if entry.plugin != card.plugin:
        raise GanzooError(f"model {card.id} needs {card.architecture!r} from {card.plugin}, "
                          f"but it is provided by {entry.plugin}")
    if card.plugin_versions:
        from packaging.specifiers import SpecifierSet

        if entry.plugin_version not in SpecifierSet(card.plugin_versions):
            raise GanzooError(f"model {card.id} needs {card.plugin} {card.plugin_versions}; "
                              f"version {entry.plugin_version} is installed")


def weights_dir(card: ModelCard) -> Path:
    """The export directory of a card: shipped beside it, or downloaded once into the cache."""
    if card.directory is not None and (card.directory / "generator.safetensors").exists():
        return card.directory
    if not card.url:
        raise GanzooError(f"model {card.id}: no weights beside its card and no url to fetch them from")
    from .fileio import sha256_of

    target = cache_dir() / card.id
    weights = target / "generator.safetensors"
    if weights.exists() and sha256_of(weights) != card.sha256:  # damaged, or the card's model was updated
        weights.unlink()
    if not weights.exists():
        from .data.download import download

        target.mkdir(parents=True, exist_ok=True)
        base = card.url.rstrip("/")
        # config.json carries the weights' sha256 too, and load_export checks the card's.
        config_sha = card.raw.get("config_sha256", "")
        if not config_sha:
            raise GanzooError(f"model {card.id}: a card with a url needs config_sha256 as well")
        download([f"{base}/config.json"], target / "config.json", config_sha, what=f"{card.id} config")
        download([f"{base}/generator.safetensors"], target / "generator.safetensors", card.sha256,
                 what=f"{card.id} weights")
    return target
