"""Files written by ganzoo 0.7 still load: its exports (``class_prior`` among the options,
``cluster_labels`` at the top) and its checkpoints (an ``rng`` key, ``cluster_centroids``,
method flags such as ``cluster_labels`` in the config)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

import ganzoo
from ganzoo.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ganzoo.config import TrainConfig
from ganzoo.training import train

SMALL = {"g_hidden": "32,32", "d_hidden": "32,32", "latent_dim": 2}


def cluster_run(tmp_path, name, steps):
    return train(TrainConfig.from_dict(dict(
        arch="cmlp", dataset="ring8", cluster_labels=4, steps=steps, batch_size=64, out=str(tmp_path / name),
        progress=False, log_every=2, sample_every=1000, checkpoint_every=2, num_threads=1,
        arch_options=dict(SMALL))))


def as_07_checkpoint(path):
    """Rewrite a checkpoint in the layout ganzoo 0.7 wrote."""
    state = torch.load(path, weights_only=True)
    config = json.loads(state["config"])
    config.pop("methods"), config.pop("subset"), config.pop("subset_seed")
    config.update(cluster_labels=4, top_k=1.0, instance_noise=0.0, instance_noise_until=0.5, class_weight=0.0)
    options = json.loads(state["options"])
    options["class_prior"] = state["sampling"]["class_prior"]
    state.update(config=json.dumps(config), options=json.dumps(options), rng={"torch": torch.get_rng_state()},
                 cluster_centroids=state["methods"]["cluster-labels"]["centroids"])
    del state["methods"], state["sampling"]
    save_checkpoint(state, path)


def test_a_07_checkpoint_resumes_bit_exactly_on_its_clusters(tmp_path, monkeypatch):
    straight = cluster_run(tmp_path, "a", 4)
    half = cluster_run(tmp_path, "b", 2)
    as_07_checkpoint(latest_checkpoint(half))
    state = load_checkpoint(half)  # upgraded on load
    assert "rng" not in state and state["methods"]["cluster-labels"]["centroids"].shape == (4, 2)
    assert state["sampling"]["labels"] == "4 k-means cluster ids"
    assert "class_prior" not in json.loads(state["options"])

    def no_refit(*args, **kwargs):
        raise AssertionError("a resumed 0.7 run clustered again")

    monkeypatch.setattr("ganzoo.data.clusters.kmeans", no_refit)
    resumed = train(TrainConfig(steps=4, progress=False), resume=half)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    for part in ("generator", "discriminator", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    assert json.loads(b["config"])["methods"] == ["cluster-labels:k=4"]


def test_a_07_export_samples_from_its_prior(tmp_path):
    run = cluster_run(tmp_path, "a", 2)
    config_path = run / "export" / "config.json"
    config = json.loads(config_path.read_text())
    new = ganzoo.load_generator(str(run / "export"))
    config["options"]["class_prior"] = config["sampling"]["class_prior"]  # 0.7's layout
    config["cluster_labels"] = 4
    del config["sampling"], config["methods"]
    config_path.write_text(json.dumps(config))
    old = ganzoo.load_generator(str(run / "export"))
    assert old.sampling == new.sampling and old.sampling["labels"] == "4 k-means cluster ids"
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(old.sample_labels(100, generator=g()), new.sample_labels(100, generator=g()))


def test_the_shipped_07_zoo_export_keeps_its_label_prior():
    G = ganzoo.load_generator("zoo:cmlp-grid25")
    assert len(G.sampling["class_prior"]) == G.num_classes == 50
    assert G.sampling["labels"] == "50 k-means cluster ids"
    assert ganzoo.load_generator("cmlp-grid25").sampling == G.sampling  # a bare id too


DATA = Path(__file__).resolve().parent / "data" / "ganzoo-0.7"


def test_a_run_written_by_ganzoo_07_resumes_as_07_resumed_it(tmp_path):
    """tests/data/ganzoo-0.7 holds a cluster-label + top-k + instance-noise run really written by
    ganzoo 0.7.0 and the checkpoint 0.7 wrote when resuming it for 2 more steps: today's resume
    of the same files gives the same weights (to float rounding: the files may meet another CPU)."""
    run = tmp_path / "run"
    shutil.copytree(DATA / "run", run)
    state = load_checkpoint(run)
    assert state["ganzoo_version"] == "0.7.0" and "cluster-labels" in state["methods"]
    resumed = train(TrainConfig(steps=4, progress=False), resume=run)
    ours = load_checkpoint(resumed)
    theirs = torch.load(DATA / "resumed-by-0.7-step-00000004.pt", weights_only=True)
    for part in ("generator", "discriminator", "ema"):
        for key, value in theirs[part].items():
            torch.testing.assert_close(ours[part][key], value, rtol=1e-4, atol=1e-5)
    assert json.loads(ours["config"])["methods"] == ["top-k:fraction=0.5", "instance-noise:std=0.5,until=0.5",
                                                     "cluster-labels:k=4"]
    G = ganzoo.load_generator(str(DATA / "run" / "export"))  # the 0.7 export
    assert G.sampling["labels"] == "4 k-means cluster ids" and len(G.sampling["class_prior"]) == 4
