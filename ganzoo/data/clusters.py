"""Cluster ids as class labels: the self-conditioned GAN (Liu et al. 2020) with input-space k-means.

A conditional GAN trained on the ids of k clusters of the data has to give every cluster its
share of samples: the label of each fake is drawn from the cluster frequencies, and the
discriminator checks each fake against the real samples of its cluster. An unconditional
generator instead has to tear one continuous latent space into separate modes, and the
mode-collapse benchmarks show it losing some of them (docs/benchmarks.md). Liu et al. cluster
the discriminator's features and re-cluster during training; here the clusters are fixed and
found once in input space, which suits low-dimensional data such as the 2-D mixtures; for
images, pixel-space clusters are a much coarser guide.

k-means is written here in a few lines of torch rather than taken from scikit-learn: it is
the only thing ganzoo would need from it. It runs on the CPU, before the data moves to the
run's device, so a seed gives the same clusters on every device and rank; checkpoints keep
the centroids, so a resumed run never re-clusters.
"""
from __future__ import annotations

import torch

from ..errors import GanzooError
from .base import Dataset

FIT_SAMPLES = 20_000  # samples the centroids are fitted on (all of them when the data has fewer)


def features(x: torch.Tensor) -> torch.Tensor:
    """What the clusters are found in: samples flattened, uint8 pixels scaled to [0, 1]."""
    x = x.flatten(1)
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iterations: int = 100) -> torch.Tensor:
    """``k`` centroids of the rows of ``x``: k-means++ seeding (Arthur & Vassilvitskii 2007), then
    Lloyd iterations until no assignment changes. Deterministic for a seed."""
    if len(x) < k:
        raise GanzooError(f"k-means with k={k} needs at least {k} samples, got {len(x)}")
    g = torch.Generator(device=x.device).manual_seed(seed)
    centroids = x[torch.randint(len(x), (1,), generator=g, device=x.device)]
    nearest = torch.cdist(x, centroids).squeeze(1) ** 2
    for _ in range(k - 1):  # each next centroid drawn with probability ∝ squared distance
        if nearest.sum() <= 0:
            raise GanzooError(f"k-means with k={k}: the data has fewer than {k} distinct samples")
        pick = x[torch.multinomial(nearest, 1, generator=g)]
        centroids = torch.cat((centroids, pick))
        nearest = torch.minimum(nearest, torch.cdist(x, pick).squeeze(1) ** 2)
    assigned = None
    for _ in range(iterations):
        new = torch.cdist(x, centroids).argmin(1)
        if assigned is not None and torch.equal(new, assigned):
            break
        assigned = new
        counts = torch.bincount(assigned, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assigned, x)
        filled = counts > 0  # an empty cluster keeps its centroid
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


class ClusterLabels(Dataset):
    """``base`` with every sample labelled by its nearest of ``k`` k-means centroids.

    The centroids are fitted once, on up to ``FIT_SAMPLES`` samples of ``base`` drawn with
    ``seed``, unless ``centroids`` (a resumed run's, from its checkpoint) are given.
    ``class_prior`` holds the clusters' shares of that sample: a generator trained on these
    labels samples them with those frequencies. Other attributes (a mixture's ``centers``,
    ...) are ``base``'s.
    """

    def __init__(self, base: Dataset, k: int, seed: int = 0, fit_samples: int = FIT_SAMPLES,
                 centroids: torch.Tensor | None = None):
        if k < 2:
            raise GanzooError(f"cluster labels need k >= 2 clusters, got {k}")
        self.base = base
        self.name, self.shape, self.is_image = base.name, base.shape, base.is_image
        self.num_classes, self.class_names = k, ()
        x, _ = base.batch(0, min(len(base), fit_samples), seed)
        fit = features(x)
        if centroids is None:
            try:
                centroids = kmeans(fit, k, seed)
            except GanzooError as exc:
                raise GanzooError(f"--cluster-labels {k}: {exc}") from None
        elif tuple(centroids.shape) != (k, fit.shape[1]):
            raise GanzooError(f"--cluster-labels {k}: the saved centroids have shape "
                              f"{tuple(centroids.shape)}, not ({k}, {fit.shape[1]})")
        self.centroids = centroids.to(fit)
        counts = torch.bincount(self.assign(x), minlength=k).double()
        self.class_prior = tuple(round(float(c), 6) for c in counts / counts.sum())

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """The cluster id of each sample of ``x``."""
        return torch.cdist(features(x), self.centroids).argmin(1)

    def batch(self, step, batch_size, seed, rank=0, world_size=1):
        x, _ = self.base.batch(step, batch_size, seed, rank, world_size)
        return x, self.assign(x)

    def to(self, device) -> "ClusterLabels":
        self.base = self.base.to(device)
        self.centroids = self.centroids.to(device)
        return self

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name):  # only called for attributes not found on the wrapper
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)
