"""Small file helpers shared by checkpoints, exports and evaluator cards."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from .errors import GanzooError


def cache_dir(name: str) -> Path:
    """``~/.cache/ganzoo/<name>`` (or ``$XDG_CACHE_HOME/ganzoo/<name>``): ganzoo's one cache
    root (datasets, reference statistics, downloaded zoo weights); not created here."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ganzoo" / name


def read_toml(path: str | Path, what: str = "TOML file") -> dict:
    """A TOML document as a dict (tomllib, or tomli on Python 3.10); one line if unreadable."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise GanzooError(f"{what} {str(path)!r} is unreadable ({exc})") from None


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it into
    place: a crash mid-write leaves whatever ``path`` held before intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # not the 0600 some writers create: shipped files must be readable
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_json_document(path: str | Path, fmt: str, what: str) -> dict:
    """A JSON object whose ``format`` key must be ``fmt``; one clear error otherwise."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise GanzooError(f"{str(path.parent)!r} has no {path.name}: not {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GanzooError(f"{str(path)!r} is corrupted ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise GanzooError(f"{str(path)!r} is not {what} ({fmt})")
    return doc
