"""Cluster ids as labels (--cluster-labels), the label prior a model samples from, and cmlp."""
import json

import pytest
import torch

import ganzoo
from ganzoo.config import TrainConfig
from ganzoo.data import InMemoryDataset, grid25, ring8
from ganzoo.data.clusters import ClusterLabels, kmeans
from ganzoo.errors import GanzooError
from ganzoo.metrics.modes import mode_statistics
from ganzoo.sampling import generate, write_samples
from ganzoo.training import train


def blobs(centres, n_per, std, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor(centres, dtype=torch.float32)
    return (c.repeat_interleave(n_per, 0) + std * torch.randn(len(c) * n_per, c.shape[1], generator=g))


# -- k-means ----------------------------------------------------------------------------
def test_kmeans_finds_well_separated_blobs_and_is_deterministic():
    centres = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]
    x = blobs(centres, 250, 0.5)
    c = kmeans(x, 4, seed=3)
    # every true centre has a centroid within 0.1 (the mean of 250 points of std 0.5: se 0.03)
    assert torch.cdist(torch.tensor(centres), c).min(1).values.max() < 0.1
    assert torch.equal(c, kmeans(x, 4, seed=3))
    truth = torch.arange(4).repeat_interleave(250)
    found = torch.cdist(x, c).argmin(1)
    for j in range(4):  # each cluster is exactly one blob
        assert len(torch.unique(truth[found == j])) == 1


def test_kmeans_centroids_are_the_means_of_their_clusters():
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    c = kmeans(x, 5, seed=0)
    found = torch.cdist(x, c).argmin(1)
    for j in range(5):  # Lloyd's fixed point
        assert torch.allclose(c[j], x[found == j].mean(0), atol=1e-5)


def test_kmeans_refuses_too_few_samples():
    with pytest.raises(GanzooError, match="k-means with k=5 needs at least 5 samples, got 3"):
        kmeans(torch.randn(3, 2), 5)
    with pytest.raises(GanzooError, match="fewer than 4 distinct samples"):
        kmeans(torch.zeros(10, 2).index_fill_(0, torch.tensor([0]), 1.0), 4)


# -- cluster labels of a dataset ----------------------------------------------------------
def test_cluster_labels_of_grid25_are_its_modes_with_their_frequencies():
    data = grid25()
    labelled = ClusterLabels(data, 25, seed=0)
    assert labelled.num_classes == 25 and labelled.shape == (2,) and not labelled.is_image
    x, labels = labelled.batch(7, 4000, seed=0)
    assert torch.equal(labels, torch.cdist(x, labelled.centroids).argmin(1))
    mode = torch.cdist(x, data.centers).argmin(1)
    for j in range(25):  # one cluster per mode, one mode per cluster
        assert len(torch.unique(mode[labels == j])) == 1
    assert len(torch.unique(labels)) == 25
    prior = torch.tensor(labelled.class_prior)
    assert prior.sum().item() == pytest.approx(1.0, abs=1e-4)
    assert prior.sub(1 / 25).abs().max() < 0.01  # 20,000 fitting samples: se of a share ~0.0014
    # the same seed finds the same clusters (on one machine; a resumed run reuses the saved ones)
    assert torch.equal(ClusterLabels(grid25(), 25, seed=0).centroids, labelled.centroids)


def test_cluster_labels_of_images_use_pixels_in_unit_range():
    g = torch.Generator().manual_seed(0)
    dark = torch.randint(0, 40, (60, 1, 8, 8), generator=g, dtype=torch.uint8)
    bright = torch.randint(215, 256, (40, 1, 8, 8), generator=g, dtype=torch.uint8)
    data = InMemoryDataset(torch.cat((dark, bright)), torch.zeros(100), name="toy")
    labelled = ClusterLabels(data, 2, seed=0)
    assert labelled.centroids.shape == (2, 64) and 0 <= labelled.centroids.min() <= labelled.centroids.max() <= 1
    x, labels = labelled.batch(0, 100, seed=1)
    assert labelled.is_image and labels.dtype == torch.long
    is_bright = x.float().mean((1, 2, 3)) > 128
    assert len(torch.unique(labels[is_bright])) == 1 and len(torch.unique(labels[~is_bright])) == 1
    assert sorted(labelled.class_prior) == [0.4, 0.6]


def test_cluster_labels_need_two_clusters_and_enough_samples():
    with pytest.raises(GanzooError, match="cluster labels need k >= 2 clusters, got 1"):
        ClusterLabels(ring8(), 1)
    few = InMemoryDataset(torch.randn(30, 2), name="few")
    with pytest.raises(GanzooError, match="--cluster-labels 50: k-means with k=50 needs at least 50 samples, got 30"):
        ClusterLabels(few, 50)


def test_cluster_labels_pass_the_mixture_through():
    labelled = ClusterLabels(grid25(), 30, seed=1)
    assert torch.equal(labelled.centers, grid25().centers) and labelled.sigma == 0.05
    with pytest.raises(AttributeError):
        labelled.no_such_attribute


# -- the label prior ----------------------------------------------------------------------
def test_a_generator_draws_labels_from_its_class_prior():
    arch = ganzoo.get_architecture("cmlp")
    G = arch.create_generator(data_shape=(2,), num_classes=4)
    G.sampling = {"class_prior": [0.6, 0.3, 0.1, 0.0]}  # what an export's sampling table restores
    labels = G.sample_labels(20000, generator=torch.Generator().manual_seed(0))
    share = torch.bincount(labels, minlength=4).double() / 20000
    assert torch.allclose(share, torch.tensor([0.6, 0.3, 0.1, 0.0], dtype=torch.float64), atol=0.015)
    uniform = arch.create_generator(data_shape=(2,), num_classes=4).sample_labels(20000)
    assert (torch.bincount(uniform, minlength=4) / 20000 - 0.25).abs().max() < 0.015


def test_generate_follows_the_prior_unless_asked_for_one_class_per_row():
    arch = ganzoo.get_architecture("cmlp")
    G = arch.create_generator(data_shape=(2,), num_classes=3).eval()
    G.sampling = {"class_prior": [0.8, 0.2, 0.0]}
    _, labels = generate(G, 3000, seed=0)
    assert torch.bincount(labels, minlength=3)[2] == 0 and 0.77 < (labels == 0).float().mean() < 0.83
    _, again = generate(G, 3000, seed=0)
    assert torch.equal(labels, again)  # reproducible for a seed
    _, blocks = generate(G, 9, seed=0, by_class=True)
    assert blocks.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    _, fixed = generate(G, 5, class_index=2, seed=0)
    assert fixed.tolist() == [2] * 5


@pytest.mark.parametrize("prior", [[0.5, 0.5], [0.5, 0.2, 0.2], [1.2, -0.1, -0.1], ["a", 0.5, 0.5]])
def test_a_bad_class_prior_in_an_export_is_one_line(prior):
    from ganzoo.interfaces import check_sampling

    with pytest.raises(GanzooError, match=r"config.json: sampling.class_prior must be empty \(uniform\) or "
                                          r"num_classes=3 probabilities >= 0 summing to 1"):
        check_sampling({"class_prior": prior}, 3, "x/config.json")
    assert check_sampling({"class_prior": [0.5, 0.25, 0.25]}, 3, "x")["class_prior"] == [0.5, 0.25, 0.25]


# -- cmlp ---------------------------------------------------------------------------------
def test_cmlp_networks_read_the_labels():
    arch = ganzoo.get_architecture("cmlp")
    assert arch.conditional and not ganzoo.get_architecture("mlp").conditional
    torch.manual_seed(0)
    G = arch.create_generator(data_shape=(2,), num_classes=5, latent_dim=2).eval()
    D = arch.create_discriminator(data_shape=(2,), num_classes=5)
    z, x = torch.randn(6, 2), torch.randn(6, 2)
    a, b = torch.zeros(6, dtype=torch.long), torch.full((6,), 3)
    assert G(z, a).shape == (6, 2) and D(x, a).shape == (6,)
    assert not torch.allclose(G(z, a), G(z, b)) and not torch.allclose(D(x, a), D(x, b))
    # the projection term is <embed(y), h> on top of the unconditional logit
    h = D.net[:-1](x)
    assert torch.allclose(D(x, b) - D(x, a), ((D.embed.weight[3] - D.embed.weight[0]) * h).sum(1), atol=1e-5)
    with pytest.raises(ValueError, match="cmlp generator needs class labels"):
        G(z)
    with pytest.raises(ValueError, match="cmlp discriminator needs class labels"):
        D(x)


def test_unconditional_mlp_weights_are_unchanged_by_cmlp():
    mlp = ganzoo.get_architecture("mlp")
    assert not any("embed" in k for k in mlp.create_generator(data_shape=(2,)).state_dict())
    assert not any("embed" in k for k in mlp.create_discriminator(data_shape=(2,)).state_dict())


def test_cmlp_with_packing_is_refused():
    with pytest.raises(GanzooError, match="mlp option pack works unconditionally only"):
        ganzoo.get_architecture("cmlp").make_options(data_shape=(2,), num_classes=3, pack=2)


# -- training on cluster labels -----------------------------------------------------------
def cluster_cfg(tmp_path, **kw):
    base = dict(arch="cmlp", dataset="ring8", cluster_labels=8, steps=12, batch_size=64,
                out=str(tmp_path / "run"), progress=False, log_every=3, sample_every=1000,
                checkpoint_every=6, num_threads=1, arch_options={"g_hidden": "64,64", "d_hidden": "64,64"})
    base.update(kw)
    return TrainConfig.from_dict(base)  # cluster_labels=K: the shortcut of cluster-labels:k=K


@pytest.mark.slow
def test_training_on_cluster_labels_covers_every_mode(tmp_path):
    """ring8 with 8 cluster labels: 800 steps put every label's samples on its own mode."""
    cfg = cluster_cfg(tmp_path, steps=800, batch_size=256, lr_g=1e-3, lr_d=1e-3, lr_schedule="linear",
                      checkpoint_every=800, log_every=100, arch_options={"latent_dim": 2})
    run_dir = train(cfg)
    export = run_dir / "export"
    config = json.loads((export / "config.json").read_text())
    assert config["architecture"] == "cmlp" and config["num_classes"] == 8
    assert config["methods"] == ["cluster-labels:k=8"] and "class_prior" not in config["options"]
    prior = config["sampling"]["class_prior"]
    assert len(prior) == 8 and sum(prior) == pytest.approx(1, abs=1e-4)
    assert config["sampling"]["labels"] == "8 k-means cluster ids"
    G = ganzoo.load_generator(str(export))
    assert G.sampling == config["sampling"]
    assert ganzoo.load_generator(str(run_dir)).sampling == config["sampling"]  # from the run dir too
    x, labels = generate(G, 2500, seed=0)
    data = ring8()
    stats = mode_statistics(x, data.centers, data.sigma, radius_in_sigmas=10)
    assert stats["modes"] == 8 and stats["kl"] < 0.05, stats
    clusters = ClusterLabels(ring8(), 8, seed=0)
    assert (clusters.assign(x) == labels).float().mean() > 0.9  # each label lands in its cluster


def test_resume_with_cluster_labels_reuses_the_saved_centroids(tmp_path, monkeypatch):
    from test_trainer import assert_same_weights, generator_state

    straight = train(cluster_cfg(tmp_path, out=str(tmp_path / "a")))
    half = train(cluster_cfg(tmp_path, out=str(tmp_path / "b"), steps=6))
    saved = generator_state(half)["methods"]["cluster-labels"]["centroids"]
    assert saved.shape == (8, 2)

    def no_refit(*args, **kwargs):
        raise AssertionError("a resumed run clustered again")

    monkeypatch.setattr("ganzoo.data.clusters.kmeans", no_refit)
    resumed = train(TrainConfig(steps=12, progress=False), resume=half)
    assert_same_weights(straight, resumed)
    assert torch.equal(generator_state(resumed)["methods"]["cluster-labels"]["centroids"], saved)
    assert generator_state(train(cluster_cfg(tmp_path, out=str(tmp_path / "c"), cluster_labels=0,
                                             arch="mlp")))["methods"] == {}


def test_a_points_npz_follows_the_prior(tmp_path):
    """3 clusters of ring8's 8 equal modes cannot weigh the same: the labels follow the prior."""
    run_dir = train(cluster_cfg(tmp_path, steps=2, checkpoint_every=2, cluster_labels=3))
    out = write_samples(str(run_dir / "export"), 4000, tmp_path / "s.npz")
    import numpy as np

    labels = torch.from_numpy(np.load(out)["labels"])
    prior = torch.tensor(ganzoo.load_generator(str(run_dir / "export")).sampling["class_prior"]).double()
    assert prior.max() - prior.min() > 0.1  # e.g. 3, 3 and 2 modes: 0.375, 0.375, 0.25
    share = torch.bincount(labels, minlength=3).double() / 4000
    assert (share - prior).abs().max() < 0.025  # equal blocks would miss by > 0.04


@pytest.mark.parametrize("kw, msg", [
    (dict(arch="mlp"), r"--cluster-labels trains on cluster ids as class labels: it needs a conditional "
                       r"architecture \(.*cmlp.*\); mlp is not"),
    (dict(cluster_labels=1), r"cluster-labels must be a number of clusters >= 2, got 1"),
    (dict(cluster_labels=-3), r"cluster-labels must be a number of clusters >= 2, got -3"),
    (dict(arch_options={"class_prior": "0.5,0.5"}), "unknown cmlp option 'class_prior'"),
    (dict(cluster_labels=0), r"cmlp is conditional and needs a labelled dataset; ring8 has no labels "
                             r"\(--method cluster-labels:k=K labels it with k-means clusters\)"),
    (dict(eval_every=5, eval_metrics=("modes", "label-accuracy")),
     r"label-accuracy does not apply: this model's labels are 8 k-means cluster ids"),
])
def test_cluster_label_misuse_is_one_line(tmp_path, kw, msg):
    with pytest.raises(GanzooError, match=msg):
        train(cluster_cfg(tmp_path, **kw))
    assert not (tmp_path / "run").exists()
