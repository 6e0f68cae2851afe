"""The evaluator classifier (shipped weights, training, integrity checks), `evaluate` and `ganzoo eval`."""
from __future__ import annotations

import json
import math
import shutil
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ganzoo
from ganzoo import ArchOptions, GanzooError, Generator
from ganzoo.data import InMemoryDataset, ring8
from ganzoo.evaluation import cache_dir, evaluate, evaluate_real
from ganzoo.export import sha256_of
from ganzoo.images import to_model_range
from ganzoo.metrics import FID, KID
from ganzoo.metrics.evaluator import (CARD, SHIPPED_DIR, WEIGHTS, load_evaluator, read_card,
                                      save_evaluator)
from ganzoo.metrics.training import accuracy, split_spec, train_evaluator
from ganzoo.latents import truncated_normal


def _fashion_test():
    try:
        return ganzoo.create_dataset("fashion-mnist", split="test")
    except GanzooError:
        return None


SHIPPED = SHIPPED_DIR / "fashion-mnist"
if not (SHIPPED / CARD).is_file():  # shipped in the repository: missing is a failure, never a skip
    raise RuntimeError(f"{SHIPPED / CARD} is missing: the shipped evaluator is part of the repository")
needs_shipped = pytest.mark.usefixtures()  # every test here has the shipped evaluator (checked above)


@pytest.fixture(scope="module")
def fashion_test():
    ds = _fashion_test()
    if ds is None:
        pytest.fail("Fashion-MNIST is not installed: bash scripts/install.sh installs dataset-fashion-mnist")
    return ds


@pytest.fixture(scope="module")
def evaluator():
    return load_evaluator("fashion-mnist")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_CACHE", str(tmp_path / "cache"))


# -- the shipped evaluators ------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", [d.name for d in sorted(SHIPPED_DIR.glob("*")) if d.is_dir()])
def test_shipped_weights_match_their_card(dataset):
    card = read_card(SHIPPED_DIR / dataset)
    weights = SHIPPED_DIR / dataset / WEIGHTS
    assert sha256_of(weights) == card["sha256"]
    assert weights.stat().st_size < 2_000_000
    assert card["dataset"] == dataset and card["command"].startswith("ganzoo evaluator train")
    assert card["test_accuracy"] >= 0.9


def test_shipped_evaluator_accuracy_on_the_test_split(evaluator, fashion_test):
    subset = fashion_test.subset(2000)
    assert accuracy(evaluator.net, subset) >= 0.9


def test_tampered_weights_are_refused_with_one_clear_line(tmp_path):
    copy = tmp_path / "fashion-mnist"
    shutil.copytree(SHIPPED, copy)
    data = bytearray((copy / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(GanzooError, match="failed its sha256 check") as info:
        load_evaluator(copy)
    assert "\n" not in str(info.value)


def test_unknown_evaluator_is_one_clear_error():
    with pytest.raises(GanzooError, match="no evaluator for 'no-such-data'.*ganzoo evaluator train"):
        load_evaluator("no-such-data")


# -- training ----------------------------------------------------------------------------------------
def bars(n=640, seed=0):
    """Synthetic labelled images: class c is a bright bar at rows 2c..2c+3, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    x = torch.rand(n, 1, 28, 28, generator=g) * 80
    for c in range(10):
        x[labels == c, :, 2 * c + 2:2 * c + 6, 4:24] += 160
    return InMemoryDataset(x.clamp(0, 255).to(torch.uint8), labels, 10, "bars")


@pytest.mark.slow
def test_training_reduces_the_loss_and_is_reproducible():
    data = bars()
    a = train_evaluator(data, data, batch_size=64, max_steps=30, seed=3)
    b = train_evaluator(data, data, batch_size=64, max_steps=30, seed=3)
    first, last = sum(a.losses[:5]) / 5, sum(a.losses[-5:]) / 5
    assert last < 0.5 * first
    assert a.losses == b.losses
    for (name, p), q in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(p, q), name
    assert a.test_accuracy > 0.5


def test_saved_evaluator_loads_back_and_embeds(tmp_path):
    data = bars(128)
    result = train_evaluator(data, batch_size=64, max_steps=2)
    card = save_evaluator(result.net, {"dataset": "bars", "test_accuracy": 0.0, "command": "test"}, tmp_path)
    assert card["sha256"] == sha256_of(tmp_path / WEIGHTS)
    loaded = load_evaluator(tmp_path)
    features, logits = loaded.embed(data.data[:10])
    assert features.shape == (10, 128) and logits.shape == (10, 10)
    with torch.no_grad():
        expected = result.net.eval()(result.net.preprocess(data.data[:10]))
    assert torch.allclose(logits, expected, atol=1e-4)  # the float16 rounding happened before
    resized, _ = loaded.embed(F.interpolate(data.data[:10].float(), size=32).to(torch.uint8))
    assert resized.shape == (10, 128)
    with pytest.raises(GanzooError, match="takes 1-channel images"):
        loaded.embed(data.data[:10].expand(-1, 3, -1, -1))


def test_split_specs():
    assert split_spec("test[:8000]") == ("test", None, 8000)
    assert split_spec("test[8000:]") == ("test", 8000, None)
    assert split_spec("train") == ("train", None, None)
    with pytest.raises(GanzooError, match="NAME\\[START:STOP\\]"):
        split_spec("test[a:b]")


# -- metrics in the evaluator's feature space ----------------------------------------------------------
def blur(x, sigma):
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum())
    y = F.conv2d(F.pad(x.float(), (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return y.round().clamp(0, 255).to(torch.uint8)


def noise(x, sigma, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (x.float() + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


@pytest.mark.slow
def test_fid_and_kid_of_real_images_grow_with_noise_and_blur(evaluator, fashion_test):
    a, b = fashion_test.data[:1000], fashion_test.data[1000:2000]
    ref = evaluator.embed(a)[0]
    self_fid = FID().compute(ref, ref)["fid"]
    assert self_fid == pytest.approx(0.0, abs=1e-6)
    for corrupt, levels in ((noise, (0, 15, 40, 100)), (blur, (0.5, 1.0, 2.0))):
        fids, kids = [], []
        for level in levels:
            feats = evaluator.embed(corrupt(b, level) if level else b)[0]
            fids.append(FID().compute(ref, feats)["fid"])
            kids.append(KID().compute(ref, feats)["kid"])
        assert all(x < y for x, y in zip(fids, fids[1:])), (corrupt.__name__, fids)
        assert all(x < y for x, y in zip(kids, kids[1:])), (corrupt.__name__, kids)
    disjoint = FID().compute(ref, evaluator.embed(b)[0])["fid"]
    assert disjoint < 0.1 * FID().compute(ref, evaluator.embed(noise(b, 100))[0])["fid"]


# -- evaluate() ------------------------------------------------------------------------------------------
class ReplayGenerator(Generator):
    """A 'generator' that returns real images (for the requested labels when conditional)."""

    def __init__(self, data: InMemoryDataset, conditional: bool = False):
        super().__init__(ArchOptions(latent_dim=4, data_shape=data.shape,
                                     num_classes=data.num_classes if conditional else 0))
        self.data = data
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.by_class = [torch.nonzero(data.labels == c).flatten() for c in range(data.num_classes)]

    def forward(self, z, labels=None):
        pick = (z[:, 0].abs() * 1e6).long()
        if labels is None:
            idx = pick % len(self.data)
        else:
            idx = torch.stack([self.by_class[c][p % len(self.by_class[c])] for c, p in zip(labels.tolist(), pick)])
        return to_model_range(self.data.data[idx], self.output_range)


@pytest.mark.slow
def test_evaluate_a_perfect_conditional_model(fashion_test):
    G = ReplayGenerator(fashion_test.subset(5000), conditional=True)
    scores = evaluate(G, dataset="fashion-mnist", n=500)
    assert set(scores) == {"fid", "kid", "kid_se", "precision", "recall", "density", "coverage",
                           "class_kl", "classes_covered", "label_accuracy"}
    assert scores["label_accuracy"] >= 0.9
    assert scores["classes_covered"] == 10 and scores["class_kl"] < 0.05
    assert scores["precision"] > 0.6 and scores["recall"] > 0.6
    assert list(cache_dir().glob("fashion-mnist-test-*.safetensors"))  # reference features were cached
    floor = evaluate_real("fashion-mnist", n=500, metrics="fid,label-accuracy", split="test")
    assert floor["label_accuracy"] >= 0.9


def test_a_model_on_cluster_labels_is_not_scored_on_label_accuracy(fashion_test):
    """Its labels are k-means cluster ids (cluster-labels method), not Fashion-MNIST's classes."""
    G = ReplayGenerator(fashion_test.subset(5000), conditional=True)
    G.export_config = {"dataset": "fashion-mnist"}
    G.sampling = {"labels": "10 k-means cluster ids"}  # as the cluster-labels method records it
    scores = evaluate(G, n=500)
    assert "label_accuracy" not in scores and scores["classes_covered"] == 10
    with pytest.raises(GanzooError, match="label-accuracy does not apply: this model's labels are 10 "
                                          "k-means cluster ids"):
        evaluate(G, n=500, metrics="fid,label-accuracy")


def test_cluster_label_models_are_not_checked_for_label_accuracy(fashion_test):
    from ganzoo.evaluation import check_evaluable


    with pytest.raises(GanzooError, match="label-accuracy does not apply: this model's labels are 7 k-means"):
        check_evaluable("fashion-mnist", "fid,label-accuracy", 500, conditional=True,
                        sampling={"labels": "7 k-means cluster ids"})
    check_evaluable("fashion-mnist", None, 500, conditional=True,
                    sampling={"labels": "7 k-means cluster ids"})  # defaults leave it out


def test_cached_reference_features_are_keyed_on_the_embedding_not_the_weights_alone(
        evaluator, fashion_test, monkeypatch):
    """The cache was keyed on the evaluator's weights and the data: a change to the embedding
    code, or an evaluator card's image size, would have reused stale features silently."""
    from ganzoo.evaluation import reference_embedding
    from ganzoo.metrics.evaluator import Evaluator

    data = fashion_test.subset(20)
    first = reference_embedding("fashion-mnist", data, evaluator)
    assert len(list(cache_dir().iterdir())) == 1
    assert torch.equal(reference_embedding("fashion-mnist", data, evaluator)[0], first[0])  # a hit
    assert len(list(cache_dir().iterdir())) == 1
    key = evaluator.feature_key
    original = Evaluator.EMBEDDING
    monkeypatch.setattr(Evaluator, "EMBEDDING", original + " (changed)")
    assert evaluator.feature_key != key
    reference_embedding("fashion-mnist", data, evaluator)
    assert len(list(cache_dir().iterdir())) == 2
    monkeypatch.setattr(Evaluator, "EMBEDDING", original)
    assert evaluator.feature_key == key
    monkeypatch.setattr(evaluator.net.options, "image_size", 32)  # the card's size, not the weights
    assert evaluator.feature_key != key


def test_a_model_at_another_image_size_is_scored_against_the_data_it_was_trained_on():
    """A 32-px model of Fashion-MNIST trains on the 28-px images upsampled (training's
    --image-size). Its samples were scored against the 28-px originals, so a model that replays
    upsampled training images perfectly scored FID 72 against 8 at 28 px: the reference is now
    resized as training resized it, and the evaluator resizes both sides alike."""
    train = ganzoo.create_dataset("fashion-mnist", split="train").subset(2000)
    at_28 = evaluate(ReplayGenerator(train), dataset="fashion-mnist", n=1000, metrics="fid")["fid"]
    at_32 = evaluate(ReplayGenerator(train.resized(32)), dataset="fashion-mnist", n=1000, metrics="fid")["fid"]
    assert at_28 < 15 and abs(at_32 - at_28) < 0.5 * at_28, (at_28, at_32)  # 4.8 and 3.5; was 80


def test_evaluate_rejects_a_model_of_the_wrong_shape(fashion_test):
    G = ReplayGenerator(fashion_test.subset(10))
    with pytest.raises(GanzooError, match="shape \\(1, 28, 28\\) but ring8 holds points"):
        evaluate(G, dataset="ring8", n=100)


class RingGenerator(Generator):
    """Samples from the first ``modes`` modes of ring8 (σ = 0.01)."""

    output_range = None

    def __init__(self, modes: int = 8, spread: float = 0.01, latent_distribution: str = "normal"):
        super().__init__(ArchOptions(latent_dim=3, data_shape=(2,), latent_distribution=latent_distribution))
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.centers, self.spread = ring8().centers[:modes], spread

    def forward(self, z, labels=None):
        idx = (z[:, 2].abs() * 1e6).long() % len(self.centers)
        return self.centers[idx] + self.spread * z[:, :2]


def test_evaluate_counts_modes_of_a_points_model(tmp_path):
    scores = evaluate(RingGenerator(3), dataset="ring8", n=2500, plot=tmp_path / "ring.png")
    assert scores["modes"] == 3
    assert scores["hq_fraction"] > 0.97
    assert scores["kl"] == pytest.approx(math.log(8 / 3), abs=0.02)
    assert (tmp_path / "ring.png").stat().st_size > 0
    assert evaluate_real("ring8", n=2500)["modes"] == 8


def test_points_metrics_see_modes_collapsed_to_points():
    """Every sample on a mode centre scores perfectly on PacGAN's three figures; spread and
    k-NN recall in the plane (the raw coordinates are a points dataset's features) do not."""
    real = evaluate_real("ring8", n=2500)
    assert set(real) == {"modes", "hq_fraction", "kl", "spread", "precision", "recall"}
    assert real["recall"] > 0.9 and real["precision"] > 0.9 and real["spread"] == pytest.approx(0.97, abs=0.03)
    collapsed = evaluate(RingGenerator(8, spread=0.0), dataset="ring8", n=2500)
    assert (collapsed["modes"], collapsed["hq_fraction"]) == (8, 1.0) and collapsed["kl"] < 0.01
    assert collapsed["spread"] == 0.0 and collapsed["recall"] < 0.05
    narrow = evaluate(RingGenerator(8, spread=0.004), dataset="ring8", n=2500)  # modes at 0.4σ
    assert narrow["spread"] == pytest.approx(0.4, abs=0.03) and collapsed["recall"] < narrow["recall"] < real["recall"]
    fid = evaluate(RingGenerator(8), dataset="ring8", n=2500, metrics="fid,coverage")
    assert fid["fid"] < 0.01 and fid["coverage"] > 0.9  # feature metrics work on points, no evaluator


@pytest.mark.parametrize("t", [10.0, 1e6])
def test_a_wide_truncation_never_returns_its_bound(t, monkeypatch):
    """Past t ≈ 5.4 the truncated mass rounds to 1 in float32, and a uniform draw of exactly 0
    gave erfinv(-1) = -inf, clamped to -t: a latent of -1e6 (about 1.5 of them in 50k samples
    of a 512-d latent). Now the draw stays inside the float32 normal's range."""
    import ganzoo.latents

    monkeypatch.setattr(ganzoo.latents.torch, "rand", lambda shape, **kw: torch.zeros(shape))
    z = ganzoo.latents.truncated_normal((3,), t)
    assert torch.isfinite(z).all() and (z > -6).all() and (z < -5).all(), z


@pytest.mark.parametrize("t", [1.0, 0.3, 2.5])
def test_truncated_latents_are_bounded_reproducible_and_have_the_truncated_normal_variance(t):
    def g():
        return torch.Generator().manual_seed(3)

    G = RingGenerator()
    assert torch.equal(G.sample_latent(5, g()), torch.randn(5, 3, generator=g()))  # untruncated: N(0, I)
    z = G.sample_latent(200_000, g(), truncation=t)
    assert z.shape == (200_000, 3)
    assert torch.equal(z, truncated_normal((200_000, 3), t, g()))
    # the same seed gives the same latents on every torch: the inverse CDF of the uniforms
    # drawn from the seed, u ~ U(Φ(-t), Φ(t)), computed independently here
    normal = statistics.NormalDist()
    lo, hi = normal.cdf(-t), normal.cdf(t)
    u = torch.rand(4, 3, generator=g()).double()
    expected = torch.tensor([[normal.inv_cdf(lo + (hi - lo) * v) for v in row] for row in u.tolist()],
                            dtype=torch.float64)
    assert torch.allclose(z[:4].double(), expected, atol=1e-5)
    assert z.abs().max() <= t
    # Var of N(0, 1) truncated to [-t, t] is 1 - 2tφ(t) / (2Φ(t) - 1); 0.291 at t = 1
    var = 1 - 2 * t * math.exp(-t * t / 2) / math.sqrt(2 * math.pi) / math.erf(t / math.sqrt(2))
    assert z.var().item() == pytest.approx(var, rel=0.02)
    assert z.mean().item() == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("t", [None, 0.5, 3.0])
def test_uniform_latents_are_u_minus_1_1_and_truncate_to_the_box(t):
    """latent_distribution = "uniform": z = 2u - 1 from the seed's uniforms, scaled to
    [-min(t, 1), min(t, 1)] by a truncation t (so t >= 1 leaves the prior as it is)."""
    G = RingGenerator(latent_distribution="uniform")
    g = torch.Generator().manual_seed(5)
    z = G.sample_latent(100_000, g, truncation=t)
    half = 1.0 if t is None else min(t, 1.0)
    u = torch.rand(100_000, 3, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(z, (2 * u - 1) * half)
    assert z.abs().max() <= half and z.abs().max() > 0.99 * half
    assert z.var().item() == pytest.approx(half ** 2 / 3, rel=0.02)  # Var U(-a, a) = a²/3
    with pytest.raises(GanzooError, match="--truncation must be a positive number"):
        G.sample_latent(2, truncation=0.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True, "1", 1e30])
def test_a_bad_truncation_is_one_clear_error(bad):
    with pytest.raises(GanzooError, match="--truncation must be a positive number"):
        truncated_normal((2, 2), bad)


def test_truncation_moves_samples_into_the_modes():
    """Samples spread 0.04·z around ring8's centres (σ = 0.01, so 3σ = 0.03): untruncated,
    P(‖0.04 z‖ < 0.03) = 1 - exp(-0.75²/2) ≈ 0.245 are high-quality; truncated to
    |z_i| ≤ 0.5, ‖0.04 z‖ ≤ 0.028 and all are."""
    G = RingGenerator(8, spread=0.04)
    plain = evaluate(G, dataset="ring8", n=2500)
    truncated = evaluate(G, dataset="ring8", n=2500, truncation=0.5)
    assert plain["hq_fraction"] == pytest.approx(1 - math.exp(-0.75 ** 2 / 2), abs=0.03)
    assert truncated["hq_fraction"] == 1.0 and truncated["modes"] == 8


def test_class_metrics_on_points_are_one_clear_error():
    """Metrics of the evaluator's class logits (or of pixels) have no meaning for points."""
    with pytest.raises(GanzooError, match="class-histogram does not apply to ring8, which holds 2-D points "
                                          "\\(try: modes, precision, recall\\)"):
        evaluate(RingGenerator(), dataset="ring8", n=500, metrics="class-histogram")


def test_evaluate_with_too_few_samples_is_one_clear_error(fashion_test):
    with pytest.raises(GanzooError, match="kid needs at least 20 samples, got -n 10"):
        evaluate_real("fashion-mnist", n=10, metrics="kid")


def test_fid_with_no_more_samples_than_features_fails_before_any_sampling(fashion_test, monkeypatch):
    """fid's covariance needs more samples than the evaluator's 128 features (2 coordinates for
    points): said before a sample is drawn, and before training by the in-training check."""
    from ganzoo import sampling
    from ganzoo.evaluation import check_evaluable

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the metrics' checks")

    monkeypatch.setattr(sampling, "generate", no_sampling)
    G = ReplayGenerator(fashion_test.subset(200))
    G.export_config = {"dataset": "fashion-mnist"}
    feature_line = "fid needs more samples than feature dimensions \\(128\\) .* got 128 generated"
    with pytest.raises(GanzooError, match=feature_line):
        evaluate(G, n=128, metrics="fid")
    with pytest.raises(GanzooError, match=feature_line):
        evaluate_real("fashion-mnist", n=128, metrics="fid")
    with pytest.raises(GanzooError, match="fid needs more samples than feature dimensions \\(128\\) .* got 50"):
        check_evaluable("fashion-mnist", "fid", 50)
    with pytest.raises(GanzooError, match="feature dimensions \\(2\\) .* got 2 generated"):
        evaluate(RingGenerator(), dataset="ring8", n=2, metrics="fid")
    check_evaluable("fashion-mnist", "fid,kid,precision,recall", 129)  # enough: no error
    check_evaluable("ring8", "fid,modes", 3)


def test_a_metric_check_that_reads_values_is_left_to_the_real_samples():
    """The stand-ins hold shapes, not values: a (plugin's) check that reads values and fails on
    them with anything but a GanzooError runs on the real sets only."""
    from ganzoo.evaluation import _check_inputs
    from ganzoo.metrics.base import Metric

    class ReadsValues(Metric):
        name, needs = "reads-values", ("features",)

        def check(self, real, fake):
            fake.features.view(-1)  # an expanded stand-in has no storage to view

    _check_inputs([ReadsValues()], ring8(), None, 100)


# -- the command line --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_eval_command_on_an_export(tmp_path, run_cli_many):
    run, export = tmp_path / "run", tmp_path / "export"
    env = {"GANZOO_CACHE": str(tmp_path / "cache")}
    # without the Fashion-MNIST files the loader would try to download them: no network in tests
    have_fashion = _fashion_test() is not None
    other = "fashion-mnist" if have_fashion else "ring8"
    results = run_cli_many([
        ["train", "mlp", "--dataset", "ring8", "--steps", "20", "--out", str(run), "--no-progress"],
        ["export", str(run), "--out", str(export)],
        ["eval", str(export), "-n", "500", "--json"],
        ["eval", str(export), "-n", "500"],
        ["eval", str(export), "--metrics", "mdoes"],
        ["eval", str(export), "--dataset", other, "--metrics", "fid"],
        ["eval", str(export), "-n", "0"],
        ["eval", "--real", "--dataset", "ring8", "-n", "2500", "--json"],
        ["eval", str(export), "-n", "500", "--truncation", "1.5", "--json"],
        ["eval", "no-such-model", "--truncation", "0"],  # refused before the model loads
        ["eval", "--real", "--dataset", "ring8", "--truncation", "1"],
        ["eval", str(export), "--num-threads", "0"],
        ["sample", str(export), "-n", "50", "--truncation", "1e-6", "--out", str(tmp_path / "t.npz")],
        ["sample", str(export), "-n", "50", "--out", str(tmp_path / "u.npz")],
    ] + ([["eval", "--real", "--dataset", "fashion-mnist", "-n", "10", "--metrics", "kid"]]
         if have_fashion else []), env=env)
    (rc_train, _, err_train), (rc_export, _, err_export) = results[:2]
    assert rc_train == 0, err_train
    assert rc_export == 0, err_export
    rc, out, err = results[2]
    assert rc == 0, err
    report = json.loads(out)
    assert report["dataset"] == "ring8" and set(report["scores"]) == {"modes", "hq_fraction", "kl", "spread", "precision", "recall"}
    rc, out, err = results[3]
    assert rc == 0 and "hq_fraction" in out
    errors = zip(results[4:7] + results[9:12] + results[14:], ("did you mean 'modes'",
                                              "but fashion-mnist holds" if have_fashion else "ring8, which holds",
                                              "-n must be >= 1", "--truncation must be a positive number",
                                              "--truncation changes a model's samples",
                                              "--num-threads must be >= 1",
                                              "kid needs at least 20 samples"))
    for (rc, out, err), expected in errors:
        assert rc != 0
        assert expected in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
    rc, out, err = results[7]
    assert rc == 0, err
    assert json.loads(out)["scores"]["modes"] == 8
    rc, out, err = results[8]
    assert rc == 0, err
    assert json.loads(out)["truncation"] == 1.5
    # truncation reaches the generator: latents within 1e-6 of 0 give (nearly) one point
    assert results[12][0] == 0 and results[13][0] == 0, results[12][2] + results[13][2]
    truncated, plain = (np.load(tmp_path / f)["points"] for f in ("t.npz", "u.npz"))
    assert truncated.std(0).max() < 1e-3 < plain.std(0).max()


def test_eval_num_threads_sets_the_process_threads(run_cli):
    """`ganzoo eval --num-threads N` (in this process: the count is read back, then restored)."""
    before = torch.get_num_threads()
    try:
        rc, out, err = run_cli(["eval", "--real", "--dataset", "ring8", "-n", "100", "--metrics", "modes",
                                "--num-threads", str(before + 1)])
        assert rc == 0, err
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_evaluator_train_command_is_reproducible_and_loadable(tmp_path, run_cli_many, fashion_test):
    argv = ["evaluator", "train", "fashion-mnist", "--train-split", "test[:1000]", "--test-split",
            "test[9000:]", "--limit", "512", "--max-steps", "8", "--out"]
    results = run_cli_many([argv + [str(tmp_path / "a")], argv + [str(tmp_path / "b")]])
    for rc, _, err in results:
        assert rc == 0, err
    card = json.loads((tmp_path / "a" / CARD).read_text())
    assert card["train_samples"] == 512 and card["training"]["steps"] == 8 and card["test_samples"] == 1000
    assert card["sha256"] == json.loads((tmp_path / "b" / CARD).read_text())["sha256"]  # bit for bit
    assert load_evaluator(tmp_path / "a").sha256 == card["sha256"]


def test_evaluate_samples_a_train_mode_generator_in_eval_mode_and_leaves_its_mode(tmp_path):
    """A BatchNorm generator handed in from Python in train mode was scored with per-batch
    statistics (scores depending on batch_size) and its running statistics moved."""

    class BatchNormRing(RingGenerator):
        def __init__(self):
            super().__init__(8)
            self.norm = torch.nn.BatchNorm1d(2)

        def forward(self, z, labels=None):
            return super().forward(z) + self.norm(z[:, :2]) * 0.001

    G = BatchNormRing()
    before = G.norm.running_mean.clone()
    scores = [evaluate(G, dataset="ring8", n=2500, batch_size=b)["hq_fraction"] for b in (7, 2500)]
    assert scores[0] == scores[1] and G.training
    assert torch.equal(G.norm.running_mean, before)
    G.norm.eval()  # mixed modes come back as they were, not all set to G's
    evaluate(G, dataset="ring8", n=100)
    assert G.training and not G.norm.training


def test_the_training_loggers_grid_keeps_each_modules_own_mode(tmp_path):
    """RunLogger.sample_grid put G back with G.train(was_training), which also switched on a
    submodule its owner keeps in eval mode (a frozen BatchNorm, say)."""
    from types import SimpleNamespace

    from ganzoo.training.rundir import RunLogger

    G = RingGenerator(8)
    G.frozen = torch.nn.BatchNorm1d(2).eval()
    run = SimpleNamespace(sampler=lambda: G, run_dir=tmp_path, data=SimpleNamespace())
    logger = SimpleNamespace(run=run, fixed_z=G.sample_latent(16), fixed_labels=None)
    RunLogger.sample_grid(logger, 1)
    assert G.training and not G.frozen.training
    assert (tmp_path / "samples" / "step-00000001.png").is_file()
