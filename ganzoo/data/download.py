"""Checksum-verified, atomic downloads into the ganzoo cache.

A file is streamed into a temporary file next to its destination, hashed on
the way, and renamed into place only if the checksum matches, so an
interrupted or corrupted download never leaves a file that a later run would
mistake for good data.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from ..errors import GanzooError

log = logging.getLogger("ganzoo.data")

CHUNK = 1 << 20
OFFLINE_ENV = "GANZOO_OFFLINE"


def open_url(url: str, timeout: float = 60.0):
    """Open ``url`` for reading (a binary file-like context manager).

    The one place that touches the network; tests replace it with a function
    serving local bytes. With ``$GANZOO_OFFLINE`` set (to anything but ``0``, ``false``,
    ``no``, ``off`` or nothing) it refuses, as an unreachable network does: the test suite
    sets it, so no test can need the network.
    """
    if os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off"):
        raise urllib.error.URLError(f"downloads are off (${OFFLINE_ENV}={os.environ[OFFLINE_ENV]})")
    req = urllib.request.Request(url, headers={"User-Agent": "ganzoo"})
    return urllib.request.urlopen(req, timeout=timeout)


def _hasher(checksum: str):
    """md5 for a 32-hex-digit checksum, sha256 for a 64-digit one."""
    kinds = {32: "md5", 64: "sha256"}
    if len(checksum) not in kinds:
        raise ValueError(f"checksum {checksum!r} is neither an md5 nor a sha256 hex digest")
    return kinds[len(checksum)], hashlib.new(kinds[len(checksum)])


def file_checksum(path: str | os.PathLike, checksum_kind: str = "md5") -> str:
    h = hashlib.new(checksum_kind)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _one_line(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = " ".join(str(reason).split())
    return text or type(exc).__name__


def download(urls: Sequence[str], dest: str | os.PathLike, checksum: str,
             what: str | None = None) -> Path:
    """Fetch ``dest`` from the first of ``urls`` that serves bytes with ``checksum``.

    Raises a one-line :class:`GanzooError` when no mirror is reachable or every
    mirror served different bytes; nothing is left at ``dest`` in that case.
    """
    dest = Path(dest)
    what = what or dest.name
    kind, _ = _hasher(checksum)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GanzooError(f"cannot download {what}: cannot create {dest.parent}: "
                          f"{_one_line(exc)}") from None
    network_errors: list[str] = []
    mismatches: list[str] = []
    for url in urls:
        log.info("downloading %s from %s", what, url)
        _, h = _hasher(checksum)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as out, open_url(url) as resp:
                    for chunk in iter(lambda: resp.read(CHUNK), b""):
                        h.update(chunk)
                        out.write(chunk)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                # URLError/HTTPError/timeouts are OSErrors; IncompleteRead is an HTTPException
                network_errors.append(f"{url}: {_one_line(exc)}")
                continue
            got = h.hexdigest()
            if got != checksum.lower():
                mismatches.append(f"{url} gave {kind} {got}, expected {checksum.lower()}")
                continue
            os.replace(tmp, dest)
            return dest
        finally:
            if tmp.exists():
                tmp.unlink()
    if mismatches:
        raise GanzooError(f"cannot download {what}: checksum mismatch ({'; '.join(mismatches)})"
                          f"; nothing was saved")
    raise GanzooError(f"cannot download {what}: network not reachable "
                      f"({'; '.join(network_errors)}); put the file in {dest.parent}, "
                      f"set $GANZOO_DATA, or pass --data-root DIR (root= in Python)")
