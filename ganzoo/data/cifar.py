"""CIFAR-10 from the "python version" pickled batches (Krizhevsky, 2009).

``cifar-10-batches-py/data_batch_1..5`` (train, 50k) and ``test_batch`` (10k):
each a pickle (protocol 2, written by Python 2) of a dict with ``data`` (uint8
N×3072, channel-major R, G, B planes of 32×32), ``labels`` (list of ints),
``batch_label`` and ``filenames``.
"""
from __future__ import annotations

import gzip
import os
import pickle
import socket
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import GanzooError
from . import download as _download
from .base import InMemoryDataset
from .files import cache_dir, candidate_dirs, check_split, not_in_root

NAME = "cifar10"
BATCH_DIR = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
# URL and md5 as published on https://www.cs.toronto.edu/~kriz/cifar.html and used by
# torchvision 0.29.1 (torchvision/datasets/cifar.py: CIFAR10.url, CIFAR10.tgz_md5).
URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
SPLITS = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck")
ROW = 3 * 32 * 32


def _numpy_reconstruct():
    try:  # numpy >= 2 moved numpy.core to numpy._core (numpy.core is a deprecated alias)
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild plain containers and numpy arrays, nothing else.

    Why: unpickling imports and calls whatever globals the pickle names, so a
    tampered batch file (a bad mirror, a shared folder, a file handed over by
    someone else) could run ``os.system(...)`` the moment it is loaded. The
    CIFAR batches only contain dicts, lists, bytes/str, ints and numpy arrays;
    dicts/lists/strings/ints need no globals at all, and a protocol-2 numpy
    array needs exactly three: ``numpy.core.multiarray._reconstruct`` (spelled
    ``numpy._core.multiarray`` by numpy >= 2, the same function),
    ``numpy.ndarray`` and ``numpy.dtype``. Everything else is refused.
    """

    @staticmethod
    def _allowed() -> dict[tuple[str, str], object]:
        rec = _numpy_reconstruct()
        return {
            ("numpy.core.multiarray", "_reconstruct"): rec,
            ("numpy._core.multiarray", "_reconstruct"): rec,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }

    def find_class(self, module: str, name: str):
        obj = self._allowed().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name} (only numpy arrays, dicts, "
                f"lists, strings and ints are allowed)")
        return obj

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids")


def restricted_load(path: str | os.PathLike):
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (Python 2 strings as latin-1)."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="latin1").load()


def load_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(data uint8 N×3072, labels int64 N)`` of one batch file, validated."""
    path = Path(path)
    try:
        obj = restricted_load(path)
    except OSError as exc:
        raise GanzooError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except pickle.UnpicklingError as exc:
        raise GanzooError(f"{path}: {exc}") from None
    except EOFError:
        raise GanzooError(f"{path}: truncated pickle") from None
    except Exception as exc:  # malformed bytes surface as many types (ValueError, KeyError, ...)
        raise GanzooError(f"{path}: not a CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise GanzooError(f"{path}: not a CIFAR-10 batch (a {type(obj).__name__}, not a dict)")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data, labels = obj.get("data"), obj.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != ROW:
        what = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise GanzooError(f"{path}: 'data' must be a uint8 N×{ROW} array, got {what}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        labels = None
    if labels is None or labels.shape != (len(data),):
        raise GanzooError(f"{path}: 'labels' must be a list of {len(data)} ints")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise GanzooError(f"{path}: labels outside 0..{len(CLASS_NAMES) - 1}")
    return data, labels


def extract(tar_path: Path, dest: Path) -> Path:
    """Extract the batch files of ``tar_path`` into ``dest/cifar-10-batches-py``.

    Only regular files with the expected names are written (each atomically),
    so a crafted archive cannot write outside ``dest``.
    """
    wanted = {f"{BATCH_DIR}/{n}" for names in SPLITS.values() for n in names}
    wanted.add(f"{BATCH_DIR}/batches.meta")
    out_dir = dest / BATCH_DIR
    done = set()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar_path, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name not in wanted or not member.isfile():
                    continue
                src = tar.extractfile(member)
                fd, tmp = tempfile.mkstemp(prefix=".extract.", dir=out_dir)
                try:
                    with os.fdopen(fd, "wb") as f:
                        while chunk := src.read(1 << 20):
                            f.write(chunk)
                    os.replace(tmp, out_dir / Path(name).name)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                done.add(name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:  # BadGzipFile is an OSError
        raise GanzooError(f"{tar_path}: corrupt archive ({exc})") from None
    except OSError as exc:  # the cache not writable, a full disk: the extraction, not the archive
        raise GanzooError(f"cannot extract {tar_path} into {out_dir}: {exc.strerror or exc}") from None
    missing = sorted(n for n in wanted - done if not n.endswith("batches.meta"))
    if missing:
        raise GanzooError(f"{tar_path}: archive lacks {', '.join(missing)}")
    return out_dir


def locate(split: str, root=None) -> list[Path]:
    """The batch files of ``split``; extracts a found tarball or downloads one if needed."""
    names = SPLITS[split]
    cache = cache_dir(NAME)
    for d in candidate_dirs(NAME, root):
        for bd in dict.fromkeys([d / BATCH_DIR] + ([d] if d.name == BATCH_DIR else [])):
            files = [bd / n for n in names]
            present = [f.is_file() for f in files]
            if all(present):
                return files
            if any(present) and d != cache:
                missing = [n for n, p in zip(names, present) if not p]
                raise GanzooError(f"{NAME}: {bd} lacks {', '.join(missing)}")
        tar = d / TARBALL
        extracted = [cache / BATCH_DIR / n for n in names]
        if tar.is_file() and all(f.is_file() for f in extracted):
            return extracted  # extracted from it by an earlier load: not 163 MB hashed and written again
        if tar.is_file():
            digest = _download.file_checksum(tar, "md5")  # the cache too: users put tarballs there
            if digest != TARBALL_MD5:
                raise GanzooError(f"{tar}: md5 {digest} differs from the published "
                                  f"{TARBALL_MD5} (truncated or corrupt download?)")
            return [extract(tar, cache) / n for n in names]
    if root is not None:
        raise not_in_root(NAME, root, f"{split}-split batches ({BATCH_DIR}/) and no {TARBALL}")
    # a name of this process's own: ranks of a plain torchrun (or two runs) that find the cache
    # empty at once each fetch and extract their own copy (each batch file is renamed into place
    # whole); one name for all had one process delete the archive another was about to open
    own = cache / f".{TARBALL}.{socket.gethostname()}-{os.getpid()}"
    try:
        tar = _download.download(URLS, own, TARBALL_MD5, what=f"{NAME} {TARBALL}")
        out = extract(tar, cache)
    finally:
        own.unlink(missing_ok=True)  # the extracted batches are all we need; saves 163 MB
    return [out / n for n in names]


def load_cifar10(split: str = "train", root: str | None = None,
                 image_size: int | None = None) -> InMemoryDataset:
    """CIFAR-10: 50k/10k 32×32 RGB images, 10 classes."""
    check_split(NAME, split, SPLITS)
    parts = [load_batch(p) for p in locate(split, root)]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    images = torch.from_numpy(data).reshape(len(data), 3, 32, 32)
    ds = InMemoryDataset(images, torch.from_numpy(labels), len(CLASS_NAMES), NAME, CLASS_NAMES)
    return ds.resized(image_size) if image_size else ds
