"""Stacked MNIST: the dataset and the mode counter (VEEGAN / PacGAN Table 2 protocol).

The mode counter's known answers are checked on samples built from real MNIST
test digits, so the shipped MNIST evaluator classifies every channel. The
classifier costs ~0.6 ms per channel on one thread, so the 26,000-sample
real-data score (78,000 channels, ~45 s) is computed in the fast suite from
the 10,000 source digits classified once and their stacking indices, which
is what the metric computes channel by channel (the classifier is a function
of each image alone); the slow test runs the metric itself on all 26,000
images and checks it gives the same figures.
"""
from __future__ import annotations

import math
import urllib.error
from pathlib import Path

import pytest
import torch

import ganzoo
from ganzoo import GanzooError
from ganzoo.data import download, idx, stacked
from ganzoo.data.stacked import load_stacked_mnist, stack_indices
from ganzoo.metrics.stacked import (MAX_KL, PROTOCOL_SAMPLES, StackedModes, channel_kls, digits_of_modes,
                                    modes_of_digits, stacked_mode_statistics)

HERE = Path(__file__).resolve().parent
SHARED_MNIST = HERE.parent.parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No $GANZOO_DATA, a private download cache, and no network: MNIST comes from the shared
    folder only (its test split on the build machine)."""
    monkeypatch.delenv("GANZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def no_network(url, timeout=60.0):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(download, "open_url", no_network)


@pytest.fixture(scope="module")
def mnist_test():
    try:
        return idx.load_mnist("test")
    except GanzooError as exc:
        pytest.fail(f"MNIST's test split is needed ({SHARED_MNIST}): {exc}")


@pytest.fixture(scope="module")
def evaluator():
    from ganzoo.metrics.evaluator import load_evaluator

    return load_evaluator("mnist")


@pytest.fixture(scope="module")
def metric(evaluator):
    return StackedModes(evaluator=evaluator)


@pytest.fixture(scope="module")
def exemplars(mnist_test, evaluator):
    """One real test image per digit that the shipped classifier gets right: 10×28×28."""
    _, logits = evaluator.embed(mnist_test.data[:300])
    right = logits.argmax(1) == mnist_test.labels[:300]
    out = []
    for d in range(10):
        hits = ((mnist_test.labels[:300] == d) & right).nonzero()
        assert len(hits), f"no correctly classified {d} among the first 300 test digits"
        out.append(mnist_test.data[int(hits[0]), 0])
    return torch.stack(out)


def build(exemplars, modes) -> torch.Tensor:
    """Stacked images of the given mode ids from the exemplar digits."""
    modes = torch.as_tensor(modes).long()
    digits = torch.stack([modes // 100, modes // 10 % 10, modes % 10], 1)
    return exemplars[digits]  # N×3×28×28


# -- the dataset -------------------------------------------------------------------
@pytest.fixture(scope="module")
def stacked_test(mnist_test):
    return load_stacked_mnist("test")


def test_registered():
    assert "stacked-mnist" in ganzoo.list_datasets()
    assert "stacked-modes" in ganzoo.list_metrics()
    ds = ganzoo.create_dataset("stacked-mnist", split="test")
    assert ds.shape == (3, 28, 28) and ds.num_classes == 1000 and ds.is_image
    assert isinstance(ganzoo.create_metric("stacked-modes"), StackedModes)


def test_shape_labels_and_source(stacked_test, mnist_test):
    ds = stacked_test
    assert len(ds) == 10_000 and ds.data.dtype == torch.uint8 and ds.data.shape == (10_000, 3, 28, 28)
    assert ds.num_classes == 1000 and len(ds.class_names) == 1000 and ds.class_names[7] == "007"
    assert ds.source_split in ("train", "test") and f"MNIST's {ds.source_split} split" in ds.description
    # every channel is a real MNIST digit, and the label is 100·d_R + 10·d_G + d_B
    pick = stack_indices(len(mnist_test), 10_000, stacked.SEEDS["test"])
    if ds.source_split == "test":
        assert torch.equal(ds.data, mnist_test.data[:, 0][pick])
        assert torch.equal(ds.labels, (mnist_test.labels[pick] * torch.tensor([100, 10, 1])).sum(1))
    assert 0 <= int(ds.labels.min()) and int(ds.labels.max()) <= 999
    assert len(ds.labels.unique()) == 1000  # 10,000 draws cover all 1,000 modes (P(miss) ≈ 5e-2)


def test_deterministic_and_seeded(stacked_test):
    again = load_stacked_mnist("test")
    assert torch.equal(again.data, stacked_test.data) and torch.equal(again.labels, stacked_test.labels)
    other = load_stacked_mnist("test", seed=5, size=100)
    assert len(other) == 100 and not torch.equal(other.labels, stacked_test.labels[:100])
    train = load_stacked_mnist("train")
    assert len(train) == 60_000 and not torch.equal(train.labels[:100], stacked_test.labels[:100])
    assert load_stacked_mnist("test", image_size=32, size=8).shape == (3, 32, 32)


def test_channels_independent(stacked_test):
    labels = stacked_test.labels
    d = torch.stack([labels // 100, labels // 10 % 10, labels % 10], 1)
    n = len(labels)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        table = torch.bincount(d[:, a] * 10 + d[:, b], minlength=100).double().reshape(10, 10)
        expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / n
        chi2 = float(((table - expected) ** 2 / expected).sum())
        assert chi2 < 81 + 5 * math.sqrt(2 * 81), (a, b, chi2)  # 81 d.o.f.: mean 81, sd 12.7
    # the channels are different MNIST images (same one twice: probability 1e-4 per pair)
    same = (stacked_test.data[:, 0] == stacked_test.data[:, 1]).flatten(1).all(1)
    assert int(same.sum()) < 10


def test_bad_split():
    with pytest.raises(GanzooError, match=r"^stacked-mnist has no split 'val' \(accepted splits: "
                                          r"train, test\)$"):
        load_stacked_mnist("val")


def test_train_split_used_when_present(monkeypatch, tmp_path):
    """A user who has MNIST's train split gets Stacked MNIST drawn from it."""
    root = tmp_path / "data"
    d = root / "mnist"
    d.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    idx.write_idx(d / "train-images-idx3-ubyte.gz", torch.randint(0, 256, (20, 28, 28), generator=g,
                                                                  dtype=torch.uint8))
    idx.write_idx(d / "train-labels-idx1-ubyte.gz", torch.full((20,), 3, dtype=torch.uint8))
    monkeypatch.setitem(idx.MNIST.sizes, "train", 20)
    ds = load_stacked_mnist("test", root=str(root), size=50)
    assert ds.source_split == "train" and "MNIST's train split (20 digits)" in ds.description
    assert ds.labels.tolist() == [333] * 50


def test_half_a_train_split_counts_only_outside_the_download_cache(monkeypatch, tmp_path):
    """The train images alone in the cache (an interrupted download) beside the test split:
    drawn from the test split, not sent to the network for the train labels. The same half
    pair in a data root still chooses train, so that MNIST's loader names the missing file."""
    from ganzoo.data.files import cache_dir
    from ganzoo.data.stacked import mnist_source_split

    monkeypatch.setattr(idx.MNIST, "system_dirs", lambda: [])  # nothing else on this machine counts
    monkeypatch.delenv("GANZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache, root = cache_dir("mnist"), tmp_path / "data" / "mnist"
    g = torch.Generator().manual_seed(0)

    def write(d, split, which, n):
        d.mkdir(parents=True, exist_ok=True)
        shape = (n, 28, 28) if which == 0 else (n,)
        idx.write_idx(d / f"{idx.MNIST.filenames(split)[which]}.gz",
                      torch.randint(0, 10, shape, generator=g, dtype=torch.uint8))

    write(root, "test", 0, 10), write(root, "test", 1, 10), write(cache, "train", 0, 20)
    assert mnist_source_split(str(tmp_path / "data")) == "test"
    write(cache, "train", 1, 20)
    assert mnist_source_split(str(tmp_path / "data")) == "train"
    (cache / f"{idx.MNIST.filenames('train')[1]}.gz").unlink()
    write(root, "train", 0, 20)  # half a pair where the user put it: train, and the loader says what is missing
    assert mnist_source_split(str(tmp_path / "data")) == "train"
    with pytest.raises(GanzooError, match="labels"):
        load_stacked_mnist("test", root=str(tmp_path / "data"), size=5)


# -- the mode counter: formula --------------------------------------------------------
def test_statistics_formula():
    every = stacked_mode_statistics(torch.arange(1000).repeat(3))
    assert every == {"modes": 1000, "modes_fraction": 1.0, "kl": pytest.approx(0.0, abs=1e-12)}
    one = stacked_mode_statistics(torch.full((50,), 421))
    assert one["modes"] == 1 and one["kl"] == pytest.approx(math.log(1000)) == pytest.approx(MAX_KL)
    half = stacked_mode_statistics(torch.arange(500))  # uniform over half the modes: log 2
    assert half["modes"] == 500 and half["kl"] == pytest.approx(math.log(2))
    assert modes_of_digits(torch.tensor([[1, 2, 3], [0, 0, 9]])).tolist() == [123, 9]
    assert digits_of_modes(torch.tensor([123, 9, 999])).tolist() == [[1, 2, 3], [0, 0, 9], [9, 9, 9]]
    every_mode = torch.arange(1000)
    assert torch.equal(modes_of_digits(digits_of_modes(every_mode)), every_mode)  # a round trip
    for bad in (-1, 1000):
        with pytest.raises(GanzooError, match="0..999"):
            digits_of_modes(torch.tensor([bad]))
    # per channel KL(digit histogram ‖ uniform): R uniform (0), G all 7s (log 10), B half 0s half 1s (log 5)
    digits = torch.stack([torch.arange(20) % 10, torch.full((20,), 7), torch.arange(20) % 2], 1)
    assert channel_kls(digits) == pytest.approx([0.0, math.log(10), math.log(5)])
    for bad, message in ((torch.zeros(0, 3), "N ≥ 1"), (torch.zeros(4, 2), "N×3"), (torch.full((4, 3), 10), "0..9")):
        with pytest.raises(GanzooError, match=message):
            channel_kls(bad)
    with pytest.raises(GanzooError, match="0..999"):
        stacked_mode_statistics(torch.tensor([1000]))


# -- the mode counter on real digits, through the shipped classifier ----------------------
def test_all_modes(metric, exemplars):
    scores = metric.compute(None, build(exemplars, torch.arange(1000)))
    assert scores["modes"] == 1000 and scores["modes_fraction"] == 1.0
    assert scores["kl"] == pytest.approx(0.0, abs=1e-9)


def test_one_mode(metric, exemplars):
    scores = metric.compute(None, build(exemplars, [738] * 64))
    assert scores["modes"] == 1 and scores["kl"] == pytest.approx(math.log(1000))


def test_skewed_histogram(metric, exemplars):
    # 400 samples of mode 5, 100 of mode 999, one each of modes 10..209: 700 samples, 202 modes
    modes = [5] * 400 + [999] * 100 + list(range(10, 210))
    counts = torch.tensor([400.0, 100.0] + [1.0] * 200, dtype=torch.float64)
    p = counts / counts.sum()
    expected = float((p * (p * 1000).log()).sum())
    scores = metric.compute(None, build(exemplars, modes))
    assert scores["modes"] == 202 and scores["modes_fraction"] == pytest.approx(0.202)
    assert scores["kl"] == pytest.approx(expected, rel=1e-9)
    assert 0 < expected < math.log(1000)


def test_channel_order_and_errors(metric, exemplars):
    x = build(exemplars, [123])
    assert metric.compute(None, x)["modes"] == 1
    rgb = torch.stack([exemplars[1], exemplars[2], exemplars[3]])[None]
    assert torch.equal(rgb, x)  # R = hundreds, G = tens, B = units
    with pytest.raises(GanzooError, match="3-channel images"):
        metric.compute(None, exemplars[:4, None])
    with pytest.raises(GanzooError, match="uint8"):
        metric.compute(None, x.float())


# -- real data -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_figures(mnist_test, evaluator):
    """Scores of the first 26,000 images of the stacked train split, from its source digits
    classified once (the same per-channel predictions the metric makes)."""
    train = load_stacked_mnist("train")
    if train.source_split != "test":
        pytest.skip("built for the test-split source (MNIST train present: see the slow test)")
    _, logits = evaluator.embed(mnist_test.data)
    predicted = logits.argmax(1)
    pick = stack_indices(len(mnist_test), len(train), stacked.SEEDS["train"])[:PROTOCOL_SAMPLES]
    return train, stacked_mode_statistics(modes_of_digits(predicted[pick]))


def test_real_data_scores(real_figures):
    _, scores = real_figures
    # all 1,000 modes: each mode is hit ~26 times; KL: finite-sample bias (K-1)/(2n) ≈ 0.019 plus
    # MNIST's unequal digit frequencies (~0.004) plus the evaluator's errors
    assert scores["modes"] >= 990
    assert scores["kl"] < 0.05


@pytest.mark.slow
def test_real_data_through_metric(real_figures, metric):
    train, scores = real_figures
    got = metric.compute(None, train.data[:PROTOCOL_SAMPLES])
    assert got["modes"] == scores["modes"]
    assert got["kl"] == pytest.approx(scores["kl"], abs=1e-9)


def test_eval_defaults_to_the_protocols_26000_samples_on_stacked_mnist(mnist_test, monkeypatch, run_cli):
    """At `ganzoo eval`'s general 10,000 a perfect model expects 1,000 modes less often and a
    KL biased up by (K-1)/(2n) ≈ 0.05, not comparable with VEEGAN/PacGAN's 26,000-sample tables."""
    import ganzoo.evaluation as evaluation

    from ganzoo.evaluation import default_sample_count

    assert default_sample_count("stacked-mnist") == PROTOCOL_SAMPLES
    assert default_sample_count("stacked-mnist", metrics="fid") == 10_000
    assert default_sample_count("ring8") == 10_000  # drawn from its formula: always there
    seen = {}

    def fake_real(dataset, n, **kw):
        seen[dataset] = n
        return {"modes": 1000.0}

    monkeypatch.setattr(evaluation, "evaluate_real", fake_real)
    for dataset in ("stacked-mnist", "ring8"):
        code, out, err = run_cli(["eval", "--real", "--dataset", dataset])
        assert code == 0, err
    assert seen == {"stacked-mnist": PROTOCOL_SAMPLES, "ring8": 10_000}
    assert "26000 samples" in run_cli(["eval", "--real", "--dataset", "stacked-mnist"])[1]
