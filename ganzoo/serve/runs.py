"""Run directories for ``ganzoo serve``: discovery under the given roots, and every file
read through :func:`contained`, so no URL reaches a path outside those roots.

A *run* is a folder holding any of ``config.json``, ``metrics.jsonl``, ``checkpoints/``
or an export (``generator.safetensors``). Each root given on the command line is a run
itself or holds runs up to :data:`MAX_DEPTH` folders below it; runs are re-discovered
(at most every :data:`DISCOVERY_TTL` seconds), so a run started after the server appears.
A run is named by its folder (``-2``, ``-3`` ... on a clash), with only URL-safe
characters, so a name never carries a path.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_DEPTH = 3  # folders below a root searched for runs
MAX_VISITED = 2000  # folders looked at per discovery, whatever the roots hold
DISCOVERY_TTL = 1.0  # seconds a discovery is reused
MAX_METRICS_BYTES = 64 << 20  # metrics.jsonl read at most this far
MAX_CONFIG_BYTES = 4 << 20

SAMPLE_NAME = re.compile(r"^step-(\d+)\.png$")
CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.pt$")
EXPORT_WEIGHTS = "generator.safetensors"
EXPORT_CONFIG = "config.json"
SELF_EXPORT = "_"  # the export name of a root that is an export directory itself


class RunError(Exception):
    """Something in a run directory cannot be read; the message is one line for the page."""


def contained(path: Path, root: Path) -> Path | None:
    """``path`` resolved (symlinks followed), or None when it lies outside resolved ``root``."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real == root or root in real.parents else None


def _is_run(path: Path) -> bool:
    try:
        return ((path / "config.json").is_file() or (path / "metrics.jsonl").is_file()
                or (path / "checkpoints").is_dir() or (path / EXPORT_WEIGHTS).is_file())
    except OSError:
        return False


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "run"
    return name[:80]


@dataclass
class Run:
    name: str
    path: Path  # resolved
    root: Path  # resolved root it was found under
    given: str  # how the user wrote the root (for display)

    # -- files ------------------------------------------------------------------
    def file(self, *parts: str) -> Path | None:
        """A file or folder of this run, or None if missing or outside the run."""
        return contained(self.path.joinpath(*parts), self.path)

    def samples(self) -> list[tuple[int, str]]:
        folder = self.file("samples")
        if folder is None or not folder.is_dir():
            return []
        found = []
        for entry in os.scandir(folder):
            m = SAMPLE_NAME.match(entry.name)
            if m and self.file("samples", entry.name) is not None:
                found.append((int(m.group(1)), entry.name))
        return sorted(found)

    def checkpoints(self) -> list[dict]:
        folder = self.file("checkpoints")
        if folder is None or not folder.is_dir():
            return []
        found = []
        for entry in os.scandir(folder):
            m = CHECKPOINT_NAME.match(entry.name)
            real = self.file("checkpoints", entry.name) if m else None
            if real is not None and real.is_file():
                st = real.stat()
                found.append({"name": entry.name[:-3], "step": int(m.group(1)), "size": st.st_size,
                              "mtime": st.st_mtime})
        return sorted(found, key=lambda c: c["step"])

    def checkpoint_path(self, name: str) -> Path | None:
        if not CHECKPOINT_NAME.match(name + ".pt"):
            return None
        real = self.file("checkpoints", name + ".pt")
        return real if real is not None and real.is_file() else None

    def _is_export(self, folder: Path) -> bool:
        """Both files of an export there, each inside the run: a file that links out of it is
        neither listed nor loaded, like any other."""
        return all((real := contained(folder / name, self.path)) is not None and real.is_file()
                   for name in (EXPORT_WEIGHTS, EXPORT_CONFIG))

    def exports(self) -> list[dict]:
        """Export directories: the run itself if it is one, and its subfolders that are."""
        found = []
        if self._is_export(self.path):
            found.append((SELF_EXPORT, self.path))
        try:
            subdirs = sorted(e.name for e in os.scandir(self.path) if e.is_dir())
        except OSError:
            subdirs = []
        for name in subdirs:
            real = self.file(name)
            if real is not None and self._is_export(real):
                found.append((name, real))
        out = []
        for name, real in found:
            info: dict = {"name": name, "path": str(real)}
            try:
                cfg = _read_json(real / EXPORT_CONFIG)
                info.update({k: cfg.get(k) for k in ("architecture", "step", "weights", "dtype",
                                                      "sha256", "dataset")})
            except RunError as exc:
                info["error"] = str(exc)
            st = (real / EXPORT_WEIGHTS).stat()
            info.update(size=st.st_size, mtime=st.st_mtime)
            out.append(info)
        return out

    def export_path(self, name: str) -> Path | None:
        if name == SELF_EXPORT:
            real = self.path
        elif re.fullmatch(r"[A-Za-z0-9._-]+", name) and name not in (".", ".."):
            real = self.file(name)
        else:
            return None
        if real is None or not self._is_export(real):
            return None
        return real

    # -- contents ----------------------------------------------------------------
    def config(self) -> dict | None:
        path = self.file("config.json")
        if path is None:
            return None
        return _read_json(path)

    def metrics(self, after: int = 0) -> dict:
        """Records of metrics.jsonl from line ``after`` on. A line being written (no newline
        yet) is left for the next call; a malformed complete line is counted, not fatal."""
        path = self.file("metrics.jsonl")
        if path is None or not path.is_file():
            return {"records": [], "next": 0, "skipped": 0, "lines": 0}
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_METRICS_BYTES)
        except OSError as exc:
            raise RunError(f"metrics.jsonl is unreadable ({exc.strerror or exc})") from None
        complete = data[:data.rfind(b"\n") + 1]
        lines = complete.split(b"\n")[:-1] if complete else []
        records, skipped = [], 0
        for raw in lines[after:]:
            try:
                rec = json.loads(raw)
            except ValueError:
                skipped += 1
                continue
            if not isinstance(rec, dict):
                skipped += 1
                continue
            records.append(rec)
        return {"records": records, "next": len(lines), "skipped": skipped, "lines": len(lines)}

    def summary(self) -> dict:
        """One row of ``GET /api/runs`` (never raises: problems go in ``error``)."""
        row: dict = {"name": self.name, "path": str(self.path), "root": self.given, "status": "ok",
                     "error": None, "architecture": None, "dataset": None, "last_step": None,
                     "samples": 0, "checkpoints": 0, "exports": [], "updated": None}
        try:
            cfg = self.config()
            if cfg is not None and not isinstance(cfg, dict):
                raise RunError("config.json is not a JSON object")
            if cfg:
                row["architecture"] = cfg.get("arch") or cfg.get("architecture")
                row["dataset"] = cfg.get("dataset")
            samples, ckpts = self.samples(), self.checkpoints()
            row["samples"], row["checkpoints"] = len(samples), len(ckpts)
            row["exports"] = [e["name"] for e in self.exports()]
            steps = [s for s, _ in samples] + [c["step"] for c in ckpts]
            row["last_step"] = max(steps) if steps else None
            row["updated"] = _mtime(self.path)
        except (RunError, OSError) as exc:
            row["status"], row["error"] = "error", _one_line(exc)
        return row


def _mtime(path: Path) -> float:
    times = [path.stat().st_mtime]
    for name in ("metrics.jsonl", "samples", "checkpoints"):
        p = path / name
        if p.exists():
            times.append(p.stat().st_mtime)
    return max(times)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:500]


def _read_json(path: Path):
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise RunError(f"{path.name} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
        text = path.read_text()
    except UnicodeDecodeError:
        raise RunError(f"{path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise RunError(f"{path.name} is unreadable ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RunError(f"{path.name} is not valid JSON ({exc})") from None


@dataclass
class RunIndex:
    """The runs under the given roots, re-discovered at most every ``ttl`` seconds."""

    roots: list[str] = field(default_factory=list)
    ttl: float = DISCOVERY_TTL

    def __post_init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._at = -1e9

    def runs(self) -> dict[str, Run]:
        with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._runs = self._discover()
                self._at = time.monotonic()
            return self._runs

    def get(self, name: str) -> Run | None:
        return self.runs().get(name)

    def _discover(self) -> dict[str, Run]:
        found: list[tuple[Path, Path, str]] = []
        seen: set[Path] = set()
        visited = 0
        for given in self.roots:
            try:
                root = Path(given).resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if not root.is_dir():
                continue
            stack = [(root, 0)]
            while stack and visited < MAX_VISITED:
                folder, depth = stack.pop()
                visited += 1
                if folder in seen:
                    continue
                seen.add(folder)
                if _is_run(folder):
                    found.append((folder, root, given))
                    continue
                if depth >= MAX_DEPTH:
                    continue
                try:
                    children = sorted(e.name for e in os.scandir(folder)
                                      if not e.name.startswith(".") and e.is_dir())
                except OSError:
                    continue
                for child in reversed(children):
                    real = contained(folder / child, root)  # a symlink out of the root is skipped
                    if real is not None:
                        stack.append((real, depth + 1))
        runs: dict[str, Run] = {}
        for path, root, given in sorted(found, key=lambda f: str(f[0])):
            base = _safe_name(path.name)
            name, k = base, 2
            while name in runs:
                name, k = f"{base}-{k}", k + 1
            runs[name] = Run(name, path, root, given)
        return runs
