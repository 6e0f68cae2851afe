"""Cluster labels: a conditional architecture trains on k-means cluster ids (self-conditioned
GAN, Liu et al. 2020, with the clusters found once in input space)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GanzooError
from .base import TrainingMethod


@dataclass
class ClusterLabels(TrainingMethod):
    """Self-conditioning (Liu et al. 2020): labels are the ids of k k-means clusters of the data (found once, in input space); G samples them with the clusters' frequencies."""

    k: int = 50  # number of clusters

    def __post_init__(self):
        if self.k < 2:
            raise GanzooError(f"cluster-labels must be a number of clusters >= 2, got {self.k}")
        self.centroids: torch.Tensor | None = None
        self.class_prior: tuple[float, ...] = ()

    def check(self, arch) -> None:
        if not arch.conditional:
            from ..catalog import get_catalog

            names = [e.name for e in get_catalog().entries("architecture") if e.obj.conditional]
            raise GanzooError(f"--cluster-labels trains on cluster ids as class labels: it "
                              f"needs a conditional architecture ({', '.join(names) or 'none installed'}); "
                              f"{arch.name} is not")

    def wrap_dataset(self, data, seed: int):
        from ..data.clusters import ClusterLabels as Labelled

        data = Labelled(data, self.k, seed, centroids=self.centroids)  # a resumed run keeps its clusters
        self.centroids, self.class_prior = data.centroids.cpu(), tuple(data.class_prior)
        return data

    def sampling(self) -> dict:
        return {"class_prior": list(self.class_prior), "labels": f"{self.k} k-means cluster ids"}

    def state_dict(self) -> dict:
        return {} if self.centroids is None else {"centroids": self.centroids}

    def load_state_dict(self, state: dict) -> None:
        self.centroids = state.get("centroids")
