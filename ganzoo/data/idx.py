"""The IDX file format and the datasets stored in it (MNIST, Fashion-MNIST).

IDX (LeCun et al.): big-endian; bytes 0-1 are zero, byte 2 is the element
type (0x08 = uint8, the only one these datasets use), byte 3 the number of
dimensions, then one uint32 per dimension, then the data. Files may be gzip
compressed (detected by content, not by name).

Local files are validated by their header and payload length rather than by
the md5 of the ``.gz``: Debian's ``dataset-fashion-mnist`` recompressed the
upstream files, so their ``.gz`` checksums differ while the contents are the
standard ones. Downloads are checked against the upstream ``.gz`` md5s.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import GanzooError
from . import download as _download
from .base import InMemoryDataset
from .files import cache_dir, candidate_dirs, check_split, not_in_root, shared_dirs

UINT8 = 0x08
_CHUNK = 1 << 22


def _fmt_shape(shape) -> str:
    return "×".join(str(d) for d in shape)


def _open(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path: str | os.PathLike, expect_shape: tuple[int | None, ...] | None = None,
             ) -> torch.Tensor:
    """Parse a (gzip or raw) uint8 IDX file into a uint8 tensor.

    ``expect_shape`` (``None`` entries are wildcards) is checked against the
    header before any data is read. Every problem raises a :class:`GanzooError`
    that names the file and says what is wrong.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4:
                raise GanzooError(f"{path}: truncated IDX file ({len(head)} bytes, no header)")
            if head[0] != 0 or head[1] != 0:
                raise GanzooError(f"{path}: not an IDX file (bad magic {head.hex(' ')}; "
                                  f"expected 00 00 08 <ndim>)")
            if head[2] != UINT8:
                raise GanzooError(f"{path}: unsupported IDX element type 0x{head[2]:02x} "
                                  f"(only 0x08 = uint8 is supported)")
            ndim = head[3]
            if not 1 <= ndim <= 4:
                raise GanzooError(f"{path}: implausible IDX header: {ndim} dimensions")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise GanzooError(f"{path}: truncated IDX header ({ndim} dimensions announced, "
                                  f"file ends after {4 + len(raw_dims)} bytes)")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            if expect_shape is not None and (
                    len(dims) != len(expect_shape)
                    or any(e is not None and e != d for e, d in zip(expect_shape, dims))):
                want = _fmt_shape(["N" if e is None else e for e in expect_shape])
                raise GanzooError(f"{path}: IDX header says {_fmt_shape(dims)}, expected {want}")
            need = math.prod(dims)
            buf = bytearray()
            while len(buf) < need:  # grows only as far as the file really goes
                chunk = f.read(min(_CHUNK, need - len(buf)))
                if not chunk:
                    break
                buf += chunk
            if len(buf) < need:
                raise GanzooError(f"{path}: truncated IDX file: header says {_fmt_shape(dims)} "
                                  f"({need:,} data bytes) but only {len(buf):,} are present")
            if f.read(1):
                raise GanzooError(f"{path}: IDX file is longer than its header says "
                                  f"({_fmt_shape(dims)} = {need:,} data bytes)")
    except GanzooError:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise GanzooError(f"{path}: truncated or corrupt gzip data ({exc})") from None
    except OSError as exc:
        raise GanzooError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if need == 0:
        return torch.zeros(dims, dtype=torch.uint8)
    return torch.frombuffer(buf, dtype=torch.uint8).reshape(dims)


def write_idx(path: str | os.PathLike, data) -> Path:
    """Write a uint8 array/tensor as an IDX file (gzip compressed if ``path`` ends in .gz)."""
    path = Path(path)
    arr = np.ascontiguousarray(data.numpy() if isinstance(data, torch.Tensor) else data)
    if arr.dtype != np.uint8:
        raise TypeError(f"IDX writer supports uint8 only, got {arr.dtype}")
    header = bytes([0, 0, UINT8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header)
        f.write(arr.tobytes())
    return path


# -- MNIST-style datasets -------------------------------------------------------------

SPLIT_PREFIX = {"train": "train", "test": "t10k"}

# Upstream md5 checksums of the .gz files, copied from torchvision 0.29.1
# (torchvision/datasets/mnist.py: MNIST.resources and FashionMNIST.resources).
# The MNIST t10k values also match /work/shared/NOTES.md.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# Mirrors as listed by torchvision 0.29.1 (same file).
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "http://yann.lecun.com/exdb/mnist/")
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

# Debian package dataset-fashion-mnist.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def _mnist_system_dirs() -> list[Path]:
    return shared_dirs("shared/data/mnist")


def _fashion_system_dirs() -> list[Path]:
    return [FASHION_MNIST_SYSTEM_DIR]


@dataclass
class IdxImageDataset:
    """An MNIST-like dataset: 28×28 uint8 images and uint8 labels in IDX files."""

    name: str
    class_names: tuple[str, ...]
    md5: dict[str, str]
    mirrors: tuple[str, ...]
    system_dirs: Callable[[], list[Path]]
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 60_000, "test": 10_000})
    image_hw: tuple[int, int] = (28, 28)

    def filenames(self, split: str) -> tuple[str, str]:
        p = SPLIT_PREFIX[split]
        return f"{p}-images-idx3-ubyte", f"{p}-labels-idx1-ubyte"

    def _present(self, d: Path, stem: str) -> Path | None:
        # raw or gzip; also the "train-images.idx3-ubyte" spelling of some unpacked copies
        dotted = stem.replace("-idx", ".idx")
        for name in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
            if (d / name).is_file():
                return d / name
        return None

    def locate(self, split: str, root=None) -> tuple[Path, Path]:
        """The (images, labels) files of ``split``, downloading them if no location has them."""
        stems = self.filenames(split)
        cache = cache_dir(self.name)
        for d in candidate_dirs(self.name, root, self.system_dirs()):
            found = [self._present(d, s) for s in stems]
            if not any(found):
                continue
            if all(found):
                return found[0], found[1]
            if d == cache:  # an interrupted download: completed below unless found later
                continue
            have = next(f for f in found if f)
            missing = stems[found.index(None)]
            raise GanzooError(f"{self.name}: {d} holds {have.name} but not {missing}(.gz)")
        if root is not None:
            raise not_in_root(self.name, root, f"{split}-split files ({' and '.join(s + '[.gz]' for s in stems)})")
        return self.download(split)

    def download(self, split: str) -> tuple[Path, Path]:
        cache = cache_dir(self.name)
        out = []
        for stem in self.filenames(split):
            existing = self._present(cache, stem)
            if existing is not None:
                out.append(existing)
                continue
            gz = f"{stem}.gz"
            out.append(_download.download([m + gz for m in self.mirrors], cache / gz,
                                          self.md5[gz], what=f"{self.name} {gz}"))
        return out[0], out[1]

    def load(self, split: str = "train", root=None, image_size: int | None = None
             ) -> InMemoryDataset:
        check_split(self.name, split, SPLIT_PREFIX)
        images_path, labels_path = self.locate(split, root)
        for path in (images_path, labels_path):
            _check_not_other_dataset(self.name, path)
        n = self.sizes[split]
        images = read_idx(images_path, (n, *self.image_hw))
        labels = read_idx(labels_path, (n,))
        if len(labels) and int(labels.max()) >= len(self.class_names):
            raise GanzooError(f"{labels_path}: label {int(labels.max())} out of range "
                              f"(expected 0..{len(self.class_names) - 1})")
        ds = InMemoryDataset(images.unsqueeze(1), labels.long(), len(self.class_names),
                             self.name, self.class_names)
        return ds.resized(image_size) if image_size else ds


MNIST = IdxImageDataset(
    "mnist", tuple(str(i) for i in range(10)), MNIST_MD5, MNIST_MIRRORS, _mnist_system_dirs)
FASHION_MNIST = IdxImageDataset(
    "fashion-mnist",
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
     "Bag", "Ankle boot"),
    FASHION_MNIST_MD5, FASHION_MNIST_MIRRORS, _fashion_system_dirs)


_ALL = (MNIST, FASHION_MNIST)


def _check_not_other_dataset(name: str, path: Path) -> None:
    """MNIST and Fashion-MNIST share file names and shapes: refuse an upstream .gz
    that is known to belong to the other dataset (e.g. in a flat $GANZOO_DATA)."""
    if not path.name.endswith(".gz"):
        return
    digest = _download.file_checksum(path, "md5")
    for spec in _ALL:
        if spec.name != name and digest in spec.md5.values():
            raise GanzooError(f"{path}: this file is {spec.name}'s {path.name}, not {name}'s "
                              f"(put each dataset in its own <data dir>/<name> folder)")


def load_mnist(split: str = "train", root: str | None = None,
               image_size: int | None = None) -> InMemoryDataset:
    """MNIST handwritten digits: 60k/10k 28×28 grayscale images, 10 classes."""
    return MNIST.load(split, root, image_size)


def load_fashion_mnist(split: str = "train", root: str | None = None,
                       image_size: int | None = None) -> InMemoryDataset:
    """Fashion-MNIST (Zalando): 60k/10k 28×28 grayscale clothing images, 10 classes."""
    return FASHION_MNIST.load(split, root, image_size)
