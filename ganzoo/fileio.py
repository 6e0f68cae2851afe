"""Small file helpers shared by checkpoints, exports and evaluator cards."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Callable

from .errors import GanzooError


def cache_dir(name: str) -> Path:
    """``~/.cache/ganzoo/<name>`` (or ``$XDG_CACHE_HOME/ganzoo/<name>``): ganzoo's one cache
    root (datasets, reference statistics, downloaded zoo weights); not created here."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ganzoo" / name


MAX_DOCUMENT_BYTES = 16 << 20  # config.json, card.toml, run configs: far below this


def check_regular_file(path: str | Path, what: str, max_bytes: int) -> int:
    """The size of ``path`` when it is a regular file (after symlinks) of at most ``max_bytes``;
    one line otherwise. Checked with ``stat`` before opening: a FIFO, a device such as
    /dev/zero or a directory is refused without ever being opened (no hang, no endless read)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise GanzooError(f"{what} {str(path)!r} does not exist") from None
    except OSError as exc:
        raise GanzooError(f"{what} {str(path)!r} is unreadable ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise GanzooError(f"{what} {str(path)!r} is not a regular file; refused")
    if st.st_size > max_bytes:
        raise GanzooError(f"{what} {str(path)!r} is {st.st_size:,} bytes, over the limit of "
                          f"{max_bytes:,}; refused")
    return st.st_size


def read_bounded(path: str | Path, what: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`check_regular_file`)."""
    check_regular_file(path, what, max_bytes)
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise GanzooError(f"{what} {str(path)!r} is unreadable ({exc.strerror})") from None
    if len(data) > max_bytes:  # grew since the check
        raise GanzooError(f"{what} {str(path)!r} is over the limit of {max_bytes:,} bytes; refused")
    return data


def clean_temp_files(*folders: str | Path) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left in ``folders`` when its process died
    mid-write (``.NAME.tmp-PID`` whose process no longer runs); returns what was removed."""
    removed = []
    for folder in folders:
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for p in entries:
            m = _TEMP.match(p.name)
            if m and p.is_file() and not _pid_alive(int(m.group(1))):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


_TEMP = re.compile(r"^\..+\.tmp-(\d+)$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not writing it now: it is starting
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def read_toml(path: str | Path, what: str = "TOML file") -> dict:
    """A TOML document as a dict (tomllib, or tomli on Python 3.10); one line if unreadable."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(read_bounded(path, what).decode())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise GanzooError(f"{what} {str(path)!r} is unreadable ({exc})") from None


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _nearly_full(directory: Path, below: int = 1 << 20) -> bool:
    """Whether the file system holding ``directory`` has less than ``below`` bytes left for
    this user (asked while a failed write's partial file still takes up what it wrote)."""
    try:
        st = os.statvfs(directory)
    except (OSError, AttributeError):  # no statvfs (Windows): the error stays as it was
        return False
    return st.f_bavail * st.f_frsize < below


def _fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries (a rename lives there, not in the file); where directories
    cannot be opened or synced (Windows, some network file systems) there is nothing to do."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, rename it into place
    and fsync the directory: a crash mid-write leaves whatever ``path`` held before intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # not the 0600 some writers create: shipped files must be readable
        os.replace(tmp, path)
        _fsync_directory(path.parent)  # the rename itself survives a power cut
    except OSError as exc:
        if {exc.filename, exc.filename2} & {str(tmp), str(path)} and exc.strerror:
            # about the hidden temporary name, which is gone by now: name the user's path
            raise GanzooError(f"cannot write {str(path)!r}: {exc.strerror}") from None
        raise
    except GanzooError:
        raise
    except Exception as exc:  # a full disk is no OSError from torch.save's C++ writer (RuntimeError
        # "unexpected pos N vs M") or from safetensors' Rust one (SafetensorError, "os error 28")
        text = str(exc)
        if "No space left" in text or "os error 28" in text or (
                any(m in text for m in ("unexpected pos", "file write failed")) and _nearly_full(path.parent)):
            raise GanzooError(f"cannot write {str(path)!r}: {os.strerror(errno.ENOSPC)}") from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_json_document(path: str | Path, fmt: str, what: str) -> dict:
    """A JSON object whose ``format`` key must be ``fmt``; one clear error otherwise."""
    path = Path(path)
    if not os.path.lexists(path):
        raise GanzooError(f"{str(path.parent)!r} has no {path.name}: not {what}")
    try:
        doc = json.loads(read_bounded(path, path.name))
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise GanzooError(f"{str(path)!r} is corrupted ({exc})") from None
    except RecursionError:
        raise GanzooError(f"{str(path)!r} is corrupted (nested too deeply)") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise GanzooError(f"{str(path)!r} is not {what} ({fmt})")
    return doc
