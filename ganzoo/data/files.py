"""Where dataset files are looked for, and where downloads go.

Search order for a dataset ``name`` (first directory that holds the files wins):

1. the explicit ``root`` argument (``root/<name>`` first, then ``root`` itself),
2. ``$GANZOO_DATA`` (``$GANZOO_DATA/<name>`` first, then ``$GANZOO_DATA``),
3. the download cache ``~/.cache/ganzoo/<name>`` (``$XDG_CACHE_HOME`` is honoured),
4. dataset-specific system locations (a Debian package, a shared folder).

The ``<name>`` subfolder is tried first because MNIST and Fashion-MNIST use the
same file names: a flat folder can hold only one of them.

A directory that holds *some* of a dataset's files is taken as the answer: if
those files are truncated or wrong, the loader raises instead of silently
falling back to the next location.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import GanzooError
from ..fileio import cache_dir  # noqa: F401 (the one cache root, used by the loaders)

DATA_ENV = "GANZOO_DATA"




def check_split(dataset: str, split: str, accepted: Iterable[str]) -> str:
    accepted = tuple(accepted)
    if split not in accepted:
        raise GanzooError(f"{dataset} has no split {split!r} (accepted splits: "
                          f"{', '.join(accepted)})")
    return split


def _unique(paths: Iterable[Path]) -> Iterator[Path]:
    seen: set[str] = set()
    for p in paths:
        key = os.path.normpath(str(p))
        if key not in seen:
            seen.add(key)
            yield p


def candidate_dirs(name: str, root: str | os.PathLike | None = None,
                   extra: Iterable[Path] = ()) -> list[Path]:
    """The directories searched for dataset ``name``, in order (existing or not).

    An explicit ``root`` that does not exist is an error (a typo should not
    silently trigger a download somewhere else).
    """
    dirs: list[Path] = []
    if root is not None:
        r = Path(root).expanduser()
        if not r.is_dir():
            raise GanzooError(f"{name}: data root {str(r)!r} is not a directory")
        dirs += [r / name, r]
    env = os.environ.get(DATA_ENV)
    if env:
        e = Path(env).expanduser()
        dirs += [e / name, e]
    dirs.append(cache_dir(name))
    dirs += list(extra)
    return list(_unique(dirs))


def not_in_root(name: str, root, wanted: str) -> GanzooError:
    """The error for an explicit ``root`` (``--data-root``) that lacks the files, where no other
    location has them either: said, not downloaded elsewhere behind the user's back."""
    r = Path(root).expanduser()
    return GanzooError(f"{name}: --data-root {str(r)!r} holds no {wanted} (looked in {str(r / name)!r} "
                       f"and {str(r)!r}); put the files there, or leave out --data-root to use "
                       f"${DATA_ENV}, the ganzoo cache or a download")


def shared_dirs(relative: str, starts: Iterable[Path] | None = None) -> list[Path]:
    """``<d>/<relative>`` for every directory ``d`` at or above the current working
    directory and the repository holding this package (the "next to or above"
    rule for a checkout's ``shared/`` folder)."""
    if starts is None:
        starts = [Path.cwd(), Path(__file__).resolve().parents[2]]
    out: list[Path] = []
    for start in starts:
        start = Path(start).resolve()
        for d in (start, *start.parents):
            out.append(d / relative)
    return list(_unique(out))
