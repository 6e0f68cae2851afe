"""Metric correctness on hand-built inputs: Gaussian features, one-hot logits, 2-D points."""
from __future__ import annotations

import math

import pytest
import torch

import ganzoo
from ganzoo import GanzooError
from ganzoo.data import grid25, ring8
from ganzoo.metrics import (FID, KID, METRICS, ClassHistogram, Coverage, Density, LabelAccuracy,
                            Modes, Precision, Recall, SampleSet, frechet_distance, mmd2_unbiased,
                            mode_statistics)
from ganzoo.metrics.linalg import trace_sqrt_product


def gaussian(n, d=8, mean=0.0, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * scale + mean


# -- FID -----------------------------------------------------------------------------------
def test_fid_of_a_set_against_itself_is_zero():
    x = gaussian(1000, 16)
    assert FID().compute(x, x)["fid"] == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    mu = torch.tensor([1.0, 2.0, 0.0])
    expected = 5.0 + ((a.sqrt() - b.sqrt()) ** 2).sum().item()  # ||mu||² + Σ (√a - √b)²
    assert frechet_distance(torch.zeros(3), torch.diag(a), mu, torch.diag(b)) == pytest.approx(expected)


def test_trace_sqrt_product_agrees_with_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(6, 6, generator=g, dtype=torch.float64), torch.randn(6, 6, generator=g, dtype=torch.float64)
    s1, s2 = m1 @ m1.T, m2 @ m2.T
    expected = linalg.sqrtm((s1 @ s2).numpy()).trace().real
    assert trace_sqrt_product(s1, s2).item() == pytest.approx(expected, rel=1e-8)


def test_fid_of_a_disjoint_sample_is_small_and_grows_with_noise():
    real, other = gaussian(2000, 16, seed=0), gaussian(2000, 16, seed=1)
    base = FID().compute(real, other)["fid"]
    assert base < 0.2  # finite-sample bias only
    noisy = [FID().compute(real, other + gaussian(2000, 16, scale=s, seed=2))["fid"]
             for s in (0.25, 0.5, 1.0, 2.0)]
    assert base < noisy[0] and all(a < b for a, b in zip(noisy, noisy[1:]))


def test_fid_needs_more_samples_than_feature_dimensions():
    with pytest.raises(GanzooError, match="more samples than feature dimensions"):
        FID().compute(gaussian(100, 16), gaussian(10, 16))


# -- KID -----------------------------------------------------------------------------------
def test_kid_of_a_set_against_itself_is_near_zero():
    x = gaussian(1000, 8)
    out = KID().compute(x, x)
    assert abs(out["kid"]) < 3 * out["kid_se"] + 1e-4


def test_kid_is_unbiased_for_two_samples_of_one_distribution():
    values = torch.tensor([KID().compute(gaussian(500, seed=i), gaussian(500, seed=1000 + i))["kid"]
                           for i in range(25)])
    se_of_mean = values.std() / math.sqrt(len(values))
    assert abs(values.mean()) < 4 * se_of_mean  # the cubic kernel's estimates are heavy-tailed
    assert values.min() < 0 < values.max()
    # the biased (V-statistic) estimate of the same blocks sits far above zero
    x, y = gaussian(50, seed=0), gaussian(50, seed=1000)
    k = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3  # noqa: E731
    biased = (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()).item()
    assert biased > 20 * se_of_mean


def test_kid_reports_a_standard_error_and_grows_with_a_shift():
    real = gaussian(1000, 8, seed=0)
    outs = [KID().compute(real, gaussian(1000, 8, mean=m, seed=1)) for m in (0.0, 0.3, 0.6, 1.2)]
    assert all(o["kid_se"] > 0 for o in outs)
    kids = [o["kid"] for o in outs]
    assert all(a < b for a, b in zip(kids, kids[1:]))
    assert outs[1]["kid"] > 3 * outs[1]["kid_se"]  # a 0.3σ shift is detected


def test_mmd2_unbiased_matches_a_direct_double_loop():
    x, y = gaussian(5, 3, seed=0), gaussian(4, 3, seed=1)

    def k(a, b):
        return (float(a @ b) / 3 + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-6)


def test_kid_with_too_few_samples_is_one_clear_error():
    with pytest.raises(GanzooError, match="kid needs at least 20 generated samples, got 10"):
        KID().compute(gaussian(100), gaussian(10))


# -- precision / recall / density / coverage -------------------------------------------------
def prdc(real, fake):
    sr, sf = SampleSet(features=real), SampleSet(features=fake)
    out = {}
    for metric in (Precision(), Recall(), Density(), Coverage()):
        out.update(metric.compute(sr, sf))
    return out


def test_prdc_of_matching_distributions():
    out = prdc(gaussian(1000, seed=0), gaussian(1000, seed=1))
    assert out["precision"] > 0.6 and out["recall"] > 0.6
    assert 0.8 < out["density"] < 1.2
    assert out["coverage"] > 0.9


def test_prdc_of_a_set_against_itself():
    x = gaussian(500)
    out = prdc(x, x)
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0


def test_collapsed_samples_have_high_precision_and_low_recall():
    out = prdc(gaussian(1000, seed=0), gaussian(1000, scale=0.1, seed=1))
    assert out["precision"] > 0.95
    assert out["recall"] < 0.1
    assert out["coverage"] < 0.2


def test_shifted_samples_have_low_precision_and_coverage():
    out = prdc(gaussian(1000, seed=0), gaussian(1000, mean=3.0, seed=1))
    assert out["precision"] < 0.1 and out["coverage"] < 0.1 and out["density"] < 0.1


def test_prdc_of_unequal_sets_scores_their_first_rows_at_equal_size():
    """k-NN radii shrink as a set grows, so 4x more samples than reference points moved every
    figure (the papers compare equal counts): both sets are cut to the smaller size, either way round."""
    from ganzoo.metrics.manifold import balls_holding, knn_radii

    real, fake = gaussian(400, seed=0), gaussian(1600, seed=1)
    pick = torch.randperm(1600, generator=torch.Generator().manual_seed(0))[:400]
    assert prdc(real, fake) == prdc(real, fake[pick])
    assert prdc(fake, real) == prdc(fake[pick], real)
    uncut = (balls_holding(real, fake, knn_radii(SampleSet(features=fake), 3)) > 0).double().mean()
    assert abs(uncut - prdc(real, fake)["recall"]) > 0.01  # else this test could not tell


def test_the_cut_of_a_larger_set_is_not_its_first_rows():
    """A conditional model's samples come in class blocks: the first half of 2x the reference's
    count is half the classes. The cut draws across the whole set, so recall stays high."""
    centres = torch.eye(8) * 20
    real = centres.repeat_interleave(50, 0) + gaussian(400, seed=0)
    fake = centres.repeat_interleave(100, 0) + gaussian(800, seed=1)  # blocks of one class each
    assert prdc(real, fake)["recall"] > 0.75
    assert prdc(real, fake[:400])["recall"] < 0.6  # what a cut to the first rows scored


def test_manifold_metrics_use_the_papers_neighbour_counts():
    assert Precision().k == Recall().k == 3
    assert Density().k == Coverage().k == 5


# -- class histogram and label accuracy ----------------------------------------------------------
def one_hot_logits(classes, num_classes=10):
    return torch.nn.functional.one_hot(classes, num_classes).float() * 5


def test_class_histogram_of_a_collapsed_model():
    real = SampleSet(labels=torch.arange(1000) % 10)
    fake = SampleSet(logits=one_hot_logits(torch.zeros(1000, dtype=torch.long)))
    out = ClassHistogram().compute(real, fake)
    assert out["class_kl"] == pytest.approx(math.log(10))
    assert out["classes_covered"] == 1


def test_class_histogram_of_a_balanced_model():
    real = SampleSet(labels=torch.arange(1000) % 10)
    fake = SampleSet(logits=one_hot_logits(torch.arange(500) % 10))
    out = ClassHistogram().compute(real, fake)
    assert out["class_kl"] == pytest.approx(0.0, abs=1e-12)
    assert out["classes_covered"] == 10


def test_class_histogram_does_not_count_a_stray_sample_as_coverage():
    real = SampleSet(labels=torch.arange(1000) % 10)
    predicted = torch.cat([torch.arange(995) % 9, torch.full((5,), 9)])  # class 9: 5% of its share
    out = ClassHistogram().compute(real, SampleSet(logits=one_hot_logits(predicted)))
    assert out["classes_covered"] == 9


def test_label_accuracy():
    labels = torch.arange(100) % 10
    predicted = labels.clone()
    predicted[:25] = (predicted[:25] + 1) % 10
    out = LabelAccuracy().compute(None, SampleSet(logits=one_hot_logits(predicted), labels=labels))
    assert out["label_accuracy"] == pytest.approx(0.75)


def test_label_accuracy_of_an_unconditional_model_is_one_clear_error():
    with pytest.raises(GanzooError, match="needs a conditional model"):
        LabelAccuracy().compute(None, SampleSet(logits=one_hot_logits(torch.arange(10))))


# -- 2-D modes (PacGAN protocol) -------------------------------------------------------------------
def test_all_samples_at_one_ring_centre():
    ring = ring8()
    out = Modes().compute(None, ring.centers[2].repeat(2500, 1), centers=ring.centers, sigma=ring.sigma)
    assert out == {"modes": 1.0, "hq_fraction": 1.0, "kl": pytest.approx(math.log(8)), "spread": 0.0}


def test_samples_split_evenly_over_all_modes():
    grid = grid25()
    points = grid.centers.repeat(100, 1)  # 2500 samples, 100 per mode
    out = mode_statistics(points, grid.centers, grid.sigma)
    assert out == {"modes": 25, "hq_fraction": 1.0, "kl": pytest.approx(0.0, abs=1e-12), "spread": 0.0}


def test_two_of_eight_modes_and_low_quality_samples():
    ring = ring8()
    points = torch.cat([ring.centers[0].repeat(1000, 1), ring.centers[5].repeat(1000, 1),
                        torch.zeros(500, 2)])  # the ring's centre is 1 = 100σ from every mode
    out = mode_statistics(points, ring.centers, ring.sigma)
    assert out["modes"] == 2
    assert out["hq_fraction"] == pytest.approx(0.8)
    assert out["kl"] == pytest.approx(math.log(4))  # KL(p || uniform) with p = (½, ½, 0, ..., 0)


def test_high_quality_means_within_three_sigma():
    ring = ring8()
    inside = ring.centers[0] + torch.tensor([2.9 * ring.sigma, 0.0])
    outside = ring.centers[1] + torch.tensor([0.0, 3.1 * ring.sigma])
    out = mode_statistics(torch.stack([inside, outside]), ring.centers, ring.sigma)
    assert out["modes"] == 1 and out["hq_fraction"] == 0.5


def test_no_high_quality_sample_reports_the_largest_kl():
    ring = ring8()
    out = mode_statistics(torch.zeros(2500, 2), ring.centers, ring.sigma)
    assert out == {"modes": 0, "hq_fraction": 0.0, "kl": pytest.approx(math.log(8)), "spread": 0.0}


def test_real_mixture_samples_cover_every_mode():
    for mixture, k in ((ring8(), 8), (grid25(), 25)):
        points, _ = mixture.sample(2500, torch.Generator().manual_seed(0))
        out = mode_statistics(points, mixture.centers, mixture.sigma)
        assert out["modes"] == k
        assert out["hq_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)  # P(χ²₂ ≤ 9)
        assert out["kl"] < 0.02
        # E[χ²₂ | χ²₂ ≤ 9] = 2 − 9 e^−4.5 / (1 − e^−4.5): the 3σ cut of a 2-D Gaussian
        truncated = 2 - 9 * math.exp(-4.5) / (1 - math.exp(-4.5))
        assert out["spread"] == pytest.approx(math.sqrt(truncated / 2), abs=0.03)


def test_spread_is_the_rms_offset_from_the_centres_in_sigmas():
    grid = grid25()
    g = torch.Generator().manual_seed(0)
    for scale in (0.5, 0.25):  # narrower modes: the 3σ cut trims nothing
        points = grid.centers.repeat(200, 1) + scale * grid.sigma * torch.randn(5000, 2, generator=g)
        assert mode_statistics(points, grid.centers, grid.sigma)["spread"] == pytest.approx(scale, rel=0.03)
    # two points per mode at ±(0.6σ, 0): every offset is 0.6σ on one axis, 0 on the other
    offsets = torch.tensor([[0.6, 0.0], [-0.6, 0.0]]) * grid.sigma
    points = (grid.centers[:, None, :] + offsets).reshape(-1, 2)
    assert mode_statistics(points, grid.centers, grid.sigma)["spread"] == pytest.approx(0.6 / math.sqrt(2))


def test_modes_without_mode_centres_is_one_clear_error():
    with pytest.raises(GanzooError, match="mixture dataset"):
        Modes().compute(None, torch.zeros(10, 2))


# -- registration ----------------------------------------------------------------------------------
def test_every_metric_is_registered_through_the_hook():
    assert set(METRICS) <= set(ganzoo.list_metrics())
    assert isinstance(ganzoo.create_metric("precision", k=4), Precision)
    assert ganzoo.create_metric("precision", k=4).k == 4


def test_unknown_metric_suggests_a_close_match():
    with pytest.raises(ganzoo.UnknownNameError, match="did you mean 'fid'"):
        ganzoo.create_metric("fdi")


def test_inception_fid_without_package_or_cached_weights_is_one_clear_error():
    from ganzoo.metrics.inception import InceptionFID, inception_backend

    if inception_backend() is not None:
        pytest.skip("an Inception backend with cached weights is available here")
    images = torch.zeros(2049, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(GanzooError, match="nothing is downloaded") as info:
        InceptionFID().compute(images, images)
    assert "\n" not in str(info.value)
