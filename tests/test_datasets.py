"""Dataset loaders: IDX (MNIST, Fashion-MNIST), CIFAR-10 batches, image folders,
the 2-D mixtures and the step-indexed batching. No test touches the network."""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import re
import shutil
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganzoo
from ganzoo import GanzooError
from ganzoo.data import InMemoryDataset, cifar, download, files, idx, read_idx, write_idx

HERE = Path(__file__).resolve().parent
SHARED_MNIST = HERE.parent.parent / "shared" / "data" / "mnist"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
REAL_OPEN_URL = download.open_url  # before any fixture replaces it


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No $GANZOO_DATA, a private download cache, and no network."""
    monkeypatch.delenv("GANZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def no_network(url, timeout=60.0):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(download, "open_url", no_network)


def fake_idx_split(d: Path, split: str, n: int, *, gz: bool = True, label: int | None = None,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Write a small MNIST-format split into ``d``; returns (images, labels)."""
    d.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    labels = (torch.full((n,), label, dtype=torch.uint8) if label is not None
              else torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8))
    prefix = idx.SPLIT_PREFIX[split]
    ext = ".gz" if gz else ""
    write_idx(d / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(d / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return images, labels


@pytest.fixture
def small_fashion(monkeypatch, tmp_path):
    """Fashion-MNIST sized 6/4 and its system folder moved to tmp (Debian's stays untouched)."""
    monkeypatch.setitem(idx.FASHION_MNIST.sizes, "train", 6)
    monkeypatch.setitem(idx.FASHION_MNIST.sizes, "test", 4)
    debian = tmp_path / "debian"
    monkeypatch.setattr(idx, "FASHION_MNIST_SYSTEM_DIR", debian)
    return debian


# -- IDX format ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path, name):
    a = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    path = write_idx(tmp_path / name, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    b = read_idx(path, (None, 28, 28))
    assert b.dtype == torch.uint8 and b.shape == (5, 28, 28) and torch.equal(a, b)
    labels = torch.arange(7, dtype=torch.uint8)
    assert torch.equal(read_idx(write_idx(tmp_path / ("l" + name), labels), (7,)), labels)


def test_idx_gzip_detected_by_content(tmp_path):
    a = torch.randint(0, 256, (3, 4), dtype=torch.uint8)
    gz = write_idx(tmp_path / "a.gz", a)
    renamed = tmp_path / "a-raw-name"
    gz.rename(renamed)
    assert torch.equal(read_idx(renamed), a)


def _header(dims, magic=b"\x00\x00\x08"):
    return magic + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("content, message", [
    (_header((3, 28, 28)) + bytes(3 * 28 * 28 - 10), "truncated IDX file"),
    (_header((3, 28, 28)) + bytes(3 * 28 * 28 + 1), "longer than its header"),
    (_header((3, 28, 28), magic=b"\x12\x34\x08") + bytes(3 * 784), "bad magic"),
    (_header((3, 28, 28), magic=b"\x00\x00\x0d") + bytes(3 * 784), "element type 0x0d"),
    (_header((3, 28, 28))[:9], "truncated IDX header"),
    (_header((3, 32, 32)) + bytes(3 * 1024), "expected N×28×28"),
    (b"\x00\x00", "truncated IDX file"),
], ids=["short", "long", "magic", "dtype", "header", "dims", "empty"])
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_idx_errors_name_the_file(tmp_path, content, message, compress):
    path = tmp_path / ("bad-images-idx3-ubyte" + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(GanzooError, match=message) as err:
        read_idx(path, (None, 28, 28))
    assert str(path) in str(err.value)


def test_idx_truncated_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz",
                     torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8))
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(GanzooError, match="truncated or corrupt gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


# -- search order ----------------------------------------------------------------------------

def test_ganzoo_data_wins_over_debian_path(monkeypatch, tmp_path, small_fashion):
    fake_idx_split(small_fashion, "train", 6, label=1)
    env = tmp_path / "env"
    fake_idx_split(env / "fashion-mnist", "train", 6, label=2)
    assert idx.load_fashion_mnist().labels.tolist() == [1] * 6  # only Debian's
    monkeypatch.setenv("GANZOO_DATA", str(env))
    ds = ganzoo.create_dataset("fashion-mnist")
    assert ds.labels.tolist() == [2] * 6
    assert ds.data.shape == (6, 1, 28, 28) and ds.num_classes == 10
    # an explicit root beats both
    fake_idx_split(tmp_path / "mine", "train", 6, label=3, gz=False)
    assert ganzoo.create_dataset("fashion-mnist", root=str(tmp_path / "mine")).labels.tolist() \
        == [3] * 6


def test_search_order_list(monkeypatch, tmp_path):
    monkeypatch.setenv("GANZOO_DATA", str(tmp_path / "env"))
    (tmp_path / "r").mkdir()
    dirs = files.candidate_dirs("mnist", tmp_path / "r", [Path("/sys-dir")])
    assert dirs == [tmp_path / "r" / "mnist", tmp_path / "r", tmp_path / "env" / "mnist",
                    tmp_path / "env", tmp_path / "cache" / "ganzoo" / "mnist", Path("/sys-dir")]
    with pytest.raises(GanzooError, match="not a directory"):
        files.candidate_dirs("mnist", tmp_path / "typo")


def test_shared_dirs_next_to_or_above(tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert tmp_path / "shared" / "data" / "mnist" in files.shared_dirs("shared/data/mnist", [deep])
    assert deep / "shared" / "data" / "mnist" in files.shared_dirs("shared/data/mnist", [deep])


def test_broken_file_is_an_error_not_a_fallback(monkeypatch, tmp_path, small_fashion):
    fake_idx_split(small_fashion, "train", 6, label=1)  # valid data further down the list
    env = tmp_path / "env"
    fake_idx_split(env, "train", 6, label=2)
    bad = env / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-50])
    monkeypatch.setenv("GANZOO_DATA", str(env))
    with pytest.raises(GanzooError) as err:
        idx.load_fashion_mnist()
    assert str(bad) in str(err.value)
    # wrong sample count (e.g. the test file renamed as train)
    fake_idx_split(env, "train", 4, label=2)
    with pytest.raises(GanzooError, match="header says 4×28×28, expected 6×28×28"):
        idx.load_fashion_mnist()
    # half a split
    (env / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(GanzooError, match="train-labels-idx1-ubyte"):
        idx.load_fashion_mnist()


def test_labels_out_of_range(monkeypatch, tmp_path, small_fashion):
    fake_idx_split(small_fashion, "test", 4, label=10)
    with pytest.raises(GanzooError, match="label 10 out of range"):
        idx.load_fashion_mnist("test")


def test_mnist_file_refused_as_fashion(monkeypatch, tmp_path, small_fashion):
    monkeypatch.setitem(idx.FASHION_MNIST.sizes, "test", 10_000)
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in SHARED_MNIST.glob("t10k-*.gz"):
        (flat / f.name).write_bytes(f.read_bytes())
    with pytest.raises(GanzooError, match="mnist's"):
        idx.load_fashion_mnist("test", root=str(flat))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "image-folder"])
def test_unknown_split_lists_accepted(name):
    with pytest.raises(GanzooError, match="accepted splits: train"):
        ganzoo.create_dataset(name, split="validation")


# -- real data -----------------------------------------------------------------------------

def test_real_fashion_mnist():
    ds = ganzoo.create_dataset("fashion-mnist")
    assert ds.data.shape == (60000, 1, 28, 28) and ds.data.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64
    assert ds.num_classes == 10 and len(ds.class_names) == 10 and ds.class_names[9] == "Ankle boot"
    assert torch.bincount(ds.labels).tolist() == [6000] * 10
    assert 0 < ds.data.float().mean() < 255


def test_real_mnist_test_split(monkeypatch):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):  # upstream files
        assert hashlib.md5((SHARED_MNIST / name).read_bytes()).hexdigest() == idx.MNIST_MD5[name]
    monkeypatch.chdir(HERE.parent)
    ds = ganzoo.create_dataset("mnist", split="test", image_size=32)
    assert ds.data.shape == (10000, 1, 32, 32) and ds.data.dtype == torch.uint8
    assert ds.num_classes == 10 and ds.class_names == tuple("0123456789")
    # the well-known class counts of the MNIST test set
    assert torch.bincount(ds.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                   974, 1009]


def test_missing_split_without_network_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setattr(idx.MNIST, "system_dirs", lambda: [])
    with pytest.raises(GanzooError, match="cannot download mnist train-images-idx3-ubyte.gz: "
                                          "network not reachable") as err:
        ganzoo.create_dataset("mnist")
    assert "\n" not in str(err.value)
    cache = tmp_path / "cache" / "ganzoo" / "mnist"
    assert not cache.exists() or not any(cache.iterdir())


def test_a_data_root_without_the_split_is_said_not_downloaded(monkeypatch, tmp_path):
    """--data-root lacking the split fell through to a download (and its Python-only "pass
    root=" advice); an explicit folder that lacks the files is now said as such."""
    def no_download(*args, **kwargs):
        raise AssertionError("downloaded although --data-root was given")

    monkeypatch.setattr(idx.MNIST, "system_dirs", lambda: [])
    monkeypatch.setattr(download, "download", no_download)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(GanzooError, match=f"mnist: --data-root '{root}' holds no train-split files "
                                          f"\\(train-images-idx3-ubyte\\[.gz\\] and train-labels-idx1-ubyte"):
        ganzoo.create_dataset("mnist", root=str(root))
    with pytest.raises(GanzooError, match=f"cifar10: --data-root '{root}' holds no test-split batches"):
        ganzoo.create_dataset("cifar10", split="test", root=str(root))


# -- downloads -------------------------------------------------------------------------------

def serve(monkeypatch, blobs: dict[str, bytes], log: list | None = None):
    """Replace the network with a dict from file name to bytes."""
    def fake_open(url, timeout=60.0):
        if log is not None:
            log.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in blobs:
            raise urllib.error.URLError(f"no route to {url}")
        return io.BytesIO(blobs[name])
    monkeypatch.setattr(download, "open_url", fake_open)


def test_download_verifies_and_caches(monkeypatch, tmp_path, small_fashion):
    src = tmp_path / "upstream"
    images, labels = fake_idx_split(src, "train", 6)
    blobs = {p.name: p.read_bytes() for p in src.iterdir()}
    for name, blob in blobs.items():
        monkeypatch.setitem(idx.FASHION_MNIST.md5, name, hashlib.md5(blob).hexdigest())
    log: list[str] = []
    serve(monkeypatch, blobs, log)
    ds = ganzoo.create_dataset("fashion-mnist")
    assert torch.equal(ds.data[:, 0], images) and torch.equal(ds.labels, labels.long())
    assert sorted(u.rsplit("/", 1)[-1] for u in log) == sorted(blobs)
    cache = tmp_path / "cache" / "ganzoo" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(blobs)  # no temp files left
    serve(monkeypatch, {}, log)  # second load: from the cache, no fetch
    log.clear()
    assert torch.equal(ganzoo.create_dataset("fashion-mnist").data, ds.data) and not log
    # an interrupted download (one file of two) is completed, not refetched
    (cache / "train-labels-idx1-ubyte.gz").unlink()
    serve(monkeypatch, blobs, log)
    assert torch.equal(idx.load_fashion_mnist().labels, ds.labels)
    assert [u.rsplit("/", 1)[-1] for u in log] == ["train-labels-idx1-ubyte.gz"]


def test_download_checksum_mismatch_leaves_nothing(monkeypatch, tmp_path, small_fashion):
    src = tmp_path / "upstream"
    fake_idx_split(src, "train", 6)
    serve(monkeypatch, {p.name: p.read_bytes() for p in src.iterdir()})
    with pytest.raises(GanzooError, match="checksum mismatch") as err:
        idx.load_fashion_mnist()
    assert "\n" not in str(err.value)
    cache = tmp_path / "cache" / "ganzoo" / "fashion-mnist"
    assert list(cache.iterdir()) == []


def test_download_tries_next_mirror(monkeypatch, tmp_path):
    blob = b"hello"
    serve(monkeypatch, {"f.bin": blob})
    dest = download.download(["http://down/x/nothing", "http://up/f.bin"], tmp_path / "f.bin",
                             hashlib.sha256(blob).hexdigest())
    assert dest.read_bytes() == blob


# -- CIFAR-10 ---------------------------------------------------------------------------------

class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes, as in the published CIFAR-10 batches."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256
                    else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_batch_bytes(data: np.ndarray, labels: list[int], label: bytes = b"batch") -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump({b"batch_label": label, b"labels": labels, b"data": data,
                                      b"filenames": [b"img_%d.png" % i for i in range(len(labels))]})
    # numpy 2 names the array constructor numpy._core...; the 2009 files say numpy.core...
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def fake_cifar(d: Path, per_batch: int = 4, test: int = 3) -> dict[str, tuple]:
    bd = d / cifar.BATCH_DIR
    bd.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    for name, n in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, n)]
        (bd / name).write_bytes(py2_batch_bytes(data, labels))
        out[name] = (data, labels)
    return out


def test_fake_batches_look_like_python2_pickles(tmp_path):
    blob = py2_batch_bytes(np.zeros((1, 3072), np.uint8), [0])
    assert blob[:2] == b"\x80\x02" and b"cnumpy.core.multiarray\n_reconstruct" in blob
    assert b"_codecs" not in blob  # bytes were written as py2 strings


def test_cifar10_from_fake_batches(tmp_path):
    written = fake_cifar(tmp_path)
    ds = ganzoo.create_dataset("cifar10", root=str(tmp_path))
    assert ds.data.shape == (20, 3, 32, 32) and ds.data.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and ds.num_classes == 10
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    assert ds.labels.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    data0 = written["data_batch_1"][0][0]
    assert torch.equal(ds.data[0, 0], torch.from_numpy(data0[:1024].reshape(32, 32)))  # R plane
    assert torch.equal(ds.data[0, 2], torch.from_numpy(data0[2048:].reshape(32, 32)))  # B plane
    test = cifar.load_cifar10("test", root=str(tmp_path / cifar.BATCH_DIR), image_size=16)
    assert test.data.shape == (3, 3, 16, 16) and test.labels.tolist() == written["test_batch"][1]


def test_cifar10_python3_pickles_also_load(tmp_path):
    bd = tmp_path / cifar.BATCH_DIR
    bd.mkdir()
    data = np.full((2, 3072), 7, np.uint8)
    with open(bd / "test_batch", "wb") as f:
        pickle.dump({"data": data, "labels": [3, 4]}, f, protocol=4)
    ds = cifar.load_cifar10("test", root=str(tmp_path))
    assert ds.labels.tolist() == [3, 4] and int(ds.data.max()) == 7


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_restricted_unpickler_refuses_code(tmp_path, protocol):
    marker = tmp_path / "pwned"
    bd = tmp_path / cifar.BATCH_DIR
    bd.mkdir()
    blob = pickle.dumps({"data": Evil(marker), "labels": [0]}, protocol=protocol)
    (bd / "test_batch").write_bytes(blob)
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle global .*system"):
        cifar.RestrictedUnpickler(io.BytesIO(blob)).load()
    with pytest.raises(GanzooError, match="refusing") as err:
        cifar.load_cifar10("test", root=str(tmp_path))
    assert str(bd / "test_batch") in str(err.value)
    assert not marker.exists()
    for mod, name in [("builtins", "eval"), ("numpy", "load"), ("numpy.core.multiarray", "scalar"),
                      ("subprocess", "Popen")]:
        with pytest.raises(pickle.UnpicklingError):
            cifar.RestrictedUnpickler(io.BytesIO(b"")).find_class(mod, name)


def test_cifar10_bad_files(tmp_path):
    fake_cifar(tmp_path)
    bd = tmp_path / cifar.BATCH_DIR
    good = (bd / "test_batch").read_bytes()
    (bd / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(GanzooError, match="test_batch"):
        cifar.load_cifar10("test", root=str(tmp_path))
    (bd / "test_batch").write_bytes(py2_batch_bytes(np.zeros((2, 100), np.uint8), [0, 1]))
    with pytest.raises(GanzooError, match="uint8 N×3072"):
        cifar.load_cifar10("test", root=str(tmp_path))
    (bd / "test_batch").write_bytes(py2_batch_bytes(np.zeros((1, 3072), np.uint8), [2**70]))
    with pytest.raises(GanzooError, match="'labels' must be a list of 1 ints"):  # not an OverflowError
        cifar.load_cifar10("test", root=str(tmp_path))
    (bd / "data_batch_3").unlink()
    with pytest.raises(GanzooError, match="lacks data_batch_3"):
        cifar.load_cifar10("train", root=str(tmp_path))


def test_cifar10_a_tarball_put_in_the_cache_is_checked_too(monkeypatch, tmp_path):
    """The download error tells users to put the tarball in the cache folder; one put there
    was extracted unchecked, and a truncated one failed as a corrupt archive on every run."""
    fake_cifar(tmp_path / "upstream")
    blob = _tarball(tmp_path / "upstream")
    serve(monkeypatch, {})  # no network
    cache = tmp_path / "cache" / "ganzoo" / "cifar10"
    cache.mkdir(parents=True)
    (cache / cifar.TARBALL).write_bytes(blob)
    with pytest.raises(GanzooError, match="differs from the published"):
        cifar.load_cifar10("test")
    monkeypatch.setattr(cifar, "TARBALL_MD5", hashlib.md5(blob).hexdigest())
    assert len(cifar.load_cifar10("test").data) == 3  # fake_cifar's test split


def _tarball(src: Path, extra: dict[str, bytes] = {}) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / cifar.BATCH_DIR, arcname=cifar.BATCH_DIR)
        for name, blob in extra.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def test_cifar10_download_and_extract(monkeypatch, tmp_path):
    written = fake_cifar(tmp_path / "upstream")
    blob = _tarball(tmp_path / "upstream", {"../escaped": b"x", "/tmp/abs-escaped": b"x"})
    serve(monkeypatch, {cifar.TARBALL: blob})
    with pytest.raises(GanzooError, match="checksum mismatch"):
        cifar.load_cifar10("test")
    monkeypatch.setattr(cifar, "TARBALL_MD5", hashlib.md5(blob).hexdigest())
    ds = ganzoo.create_dataset("cifar10", split="test")
    assert ds.labels.tolist() == written["test_batch"][1]
    cache = tmp_path / "cache" / "ganzoo" / "cifar10"
    assert sorted(p.name for p in cache.iterdir()) == [cifar.BATCH_DIR]  # tarball removed
    assert not (tmp_path / "cache" / "ganzoo" / "escaped").exists()
    assert len(cifar.load_cifar10("train").data) == 20  # from the cache


# -- image folders ----------------------------------------------------------------------------

def _png(path: Path, size, mode="RGB", color=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_labelled(tmp_path):
    _png(tmp_path / "dogs" / "b.png", (30, 50), "L", 200)
    _png(tmp_path / "cats" / "a.png", (40, 30), "RGB", (255, 0, 0))
    _png(tmp_path / "cats" / "nested" / "c.png", (20, 20), "RGBA", (0, 0, 255, 255))
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    ds = ganzoo.create_dataset("image-folder", root=str(tmp_path), image_size=16)
    assert ds.class_names == ("cats", "dogs") and ds.num_classes == 2
    assert ds.data.shape == (3, 3, 16, 16) and ds.data.dtype == torch.uint8
    assert ds.labels.tolist() == [0, 0, 1]
    assert ds.data[0, :, 8, 8].tolist() == [255, 0, 0]
    assert ds.data[1, :, 8, 8].tolist() == [0, 0, 255]
    assert ds.data[2, :, 8, 8].tolist() == [200, 200, 200]  # gray promoted to RGB


def test_image_folder_unlabelled_gray_center_crop(tmp_path):
    img = np.zeros((20, 40), np.uint8)  # h=20, w=40: white centre square, black sides
    img[:, 10:30] = 255
    Image.fromarray(img, "L").save(tmp_path / "wide.png")
    _png(tmp_path / "sq.png", (64, 64), "L", 7)
    ds = ganzoo.create_dataset("image-folder", root=str(tmp_path), image_size=10)
    assert ds.num_classes == 0 and ds.labels is None and ds.class_names == ()
    assert ds.data.shape == (2, 1, 10, 10)  # all grayscale: one channel
    assert ds.data[1, 0, :, 3:7].min() == 255 and ds.data[1].float().mean() > 200
    assert int(ds.data[0].max()) == 7
    assert ganzoo.create_dataset("image-folder", root=str(tmp_path)).data.shape[-1] == 64


def test_image_folder_errors(tmp_path):
    with pytest.raises(GanzooError, match="root="):
        ganzoo.create_dataset("image-folder")
    with pytest.raises(GanzooError, match="no images"):
        ganzoo.create_dataset("image-folder", root=str(tmp_path))
    _png(tmp_path / "loose.png", (8, 8))
    _png(tmp_path / "cls" / "a.png", (8, 8))
    with pytest.raises(GanzooError, match="both directly"):
        ganzoo.create_dataset("image-folder", root=str(tmp_path))
    (tmp_path / "loose.png").unlink()
    (tmp_path / "cls" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(GanzooError, match="broken.png"):
        ganzoo.create_dataset("image-folder", root=str(tmp_path))


# -- mixtures ---------------------------------------------------------------------------------

def test_ring8():
    ds = ganzoo.create_dataset("ring8")
    c = ds.centers.double()
    assert c.shape == (8, 2) and ds.sigma == pytest.approx(0.01)
    assert torch.cdist(c, c).add(torch.eye(8, dtype=c.dtype)).min() > 0.7  # all distinct
    for k in range(8):
        a = k * 2 * math.pi / 8
        assert c[k].tolist() == pytest.approx([math.cos(a), math.sin(a)], abs=1e-6)
    with pytest.raises(GanzooError):
        ganzoo.create_dataset("ring8", image_size=32)


def test_grid25():
    ds = ganzoo.create_dataset("grid25")
    pts = {tuple(p) for p in ds.centers.tolist()}
    assert len(pts) == 25 and ds.sigma == pytest.approx(0.05)
    assert pts == {(float(x), float(y)) for x in range(-4, 5, 2) for y in range(-4, 5, 2)}
    x, _ = ds.batch(0, 2500, seed=0)
    assert x.shape == (2500, 2)
    assert torch.cdist(x, ds.centers).min(dim=1).values.max() < 6 * 0.05


# -- InMemoryDataset --------------------------------------------------------------------------

def test_batch_disjoint_shards_and_pure():
    n, bs, world = 48, 4, 3
    ds = InMemoryDataset(torch.arange(n).float().unsqueeze(1), torch.arange(n) % 5)
    per_epoch = n // (bs * world)
    seen = []
    for step in range(per_epoch):
        for rank in range(world):
            x, y = ds.batch(step, bs, seed=3, rank=rank, world_size=world)
            assert x.shape == (bs, 1) and torch.equal(y, x[:, 0].long() % 5)
            seen += x[:, 0].long().tolist()
    assert sorted(seen) == list(range(n))  # one epoch: disjoint and complete
    fresh = InMemoryDataset(torch.arange(n).float().unsqueeze(1))
    for step, rank in [(7, 2), (0, 1), (9, 0), (1, 1), (7, 2)]:  # any order, any object
        a, _ = ds.batch(step, bs, seed=3, rank=rank, world_size=world)
        b, _ = fresh.batch(step, bs, seed=3, rank=rank, world_size=world)
        assert torch.equal(a, b)
    epoch0 = torch.cat([ds.batch(s, bs, 3, 0, world)[0] for s in range(per_epoch)])
    epoch1 = torch.cat([ds.batch(s + per_epoch, bs, 3, 0, world)[0] for s in range(per_epoch)])
    other_seed = torch.cat([ds.batch(s, bs, 4, 0, world)[0] for s in range(per_epoch)])
    assert not torch.equal(epoch0, epoch1) and not torch.equal(epoch0, other_seed)


def test_resized():
    ds = InMemoryDataset(torch.randint(0, 256, (5, 3, 28, 28), dtype=torch.uint8),
                         torch.arange(5), 10, "x", tuple("abcdefghij"))
    r = ds.resized(14)
    assert r.data.shape == (5, 3, 14, 14) and r.data.dtype == torch.uint8
    assert torch.equal(r.labels, ds.labels) and r.num_classes == 10 and r.class_names == ds.class_names
    assert ds.resized(28) is ds
    with pytest.raises(GanzooError):
        InMemoryDataset(torch.zeros(4, 2)).resized(8)


def test_ganzoo_offline_refuses_before_opening_a_connection(monkeypatch, tmp_path):
    """The suite runs with $GANZOO_OFFLINE=1 (tests/conftest.py): the real open_url must then
    never reach urllib; with it unset (or 0) it does."""
    from ganzoo.data import download as real

    assert os.environ.get("GANZOO_OFFLINE") == "1"
    monkeypatch.setattr(real, "open_url", REAL_OPEN_URL)  # this module's fixture replaced it
    opened = []

    def recording_urlopen(req, timeout=None):
        opened.append(req.full_url)
        raise urllib.error.URLError("recorded")

    monkeypatch.setattr(urllib.request, "urlopen", recording_urlopen)
    with pytest.raises(ganzoo.GanzooError, match=r"network not reachable \(https://example\.invalid/f: "
                                                 r"downloads are off \(\$GANZOO_OFFLINE=1\)\)"):
        real.download(["https://example.invalid/f"], tmp_path / "f", "0" * 64)
    assert opened == [] and list(tmp_path.iterdir()) == []
    for value in ("0", "false", "Off", ""):
        monkeypatch.setenv("GANZOO_OFFLINE", value)
        with pytest.raises(ganzoo.GanzooError, match="recorded"):
            real.download(["https://example.invalid/f"], tmp_path / "f", "0" * 64)
    assert opened == ["https://example.invalid/f"] * 4


def test_a_cifar_tarball_in_a_data_root_is_extracted_once_and_an_unwritable_cache_is_one_line(
        monkeypatch, tmp_path):
    """A tarball in $GANZOO_DATA was hashed (163 MB) and extracted into the cache on every load."""
    written = fake_cifar(tmp_path / "upstream")
    blob = _tarball(tmp_path / "upstream", {})
    monkeypatch.setattr(cifar, "TARBALL_MD5", hashlib.md5(blob).hexdigest())
    data = tmp_path / "data"
    data.mkdir()
    (data / cifar.TARBALL).write_bytes(blob)
    monkeypatch.setenv("GANZOO_DATA", str(data))
    hashed = []
    real_checksum = download.file_checksum
    monkeypatch.setattr(download, "file_checksum", lambda *a: hashed.append(a[0]) or real_checksum(*a))
    assert cifar.load_cifar10("test").labels.tolist() == written["test_batch"][1]
    assert cifar.load_cifar10("test").labels.tolist() == written["test_batch"][1]
    assert hashed == [data / cifar.TARBALL]  # the second load read the cache's batches
    cache = tmp_path / "cache" / "ganzoo" / "cifar10"
    shutil.rmtree(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("a file where the cache's folder should be")
    with pytest.raises(GanzooError, match=f"^cannot extract {re.escape(str(data / cifar.TARBALL))} into "):
        cifar.load_cifar10("test")


def test_each_process_fetches_cifar_to_an_archive_of_its_own(monkeypatch, tmp_path):
    """Ranks of a plain torchrun that found the cache empty each downloaded to one shared name;
    the first to finish extracting deleted it while another, its own download done, was about
    to open it. Each process now downloads to, extracts from and deletes a name of its own."""
    written = fake_cifar(tmp_path / "upstream")
    blob = _tarball(tmp_path / "upstream", {})
    serve(monkeypatch, {cifar.TARBALL: blob})
    monkeypatch.setattr(cifar, "TARBALL_MD5", hashlib.md5(blob).hexdigest())
    real_download, dests, pid = download.download, [], [100]
    monkeypatch.setattr(cifar.os, "getpid", lambda: pid[0])
    monkeypatch.setattr(download, "download", lambda urls, dest, *a, **k: dests.append(dest) or
                        real_download(urls, dest, *a, **k))
    cache = tmp_path / "cache" / "ganzoo" / "cifar10"
    for pid[0] in (100, 200):
        assert cifar.load_cifar10("test").labels.tolist() == written["test_batch"][1]
        assert sorted(p.name for p in cache.iterdir()) == [cifar.BATCH_DIR]  # its archive removed
        shutil.rmtree(cache / cifar.BATCH_DIR)  # the next process finds the cache empty too
    assert len(set(dests)) == 2 and all(d.parent == cache and d.name != cifar.TARBALL for d in dests)
    assert [d.name.endswith(("-100", "-200")) for d in dests] == [True, True]
