"""k-nearest-neighbour manifold metrics in feature space.

* precision / recall (Kynkäänniemi et al. 2019, k = 3): each set's manifold is
  the union of balls around its points with radius = distance to the point's
  k-th nearest neighbour in its own set. Precision = share of samples inside
  the reference manifold; recall = share of reference points inside the
  samples' manifold.
* density / coverage (Naeem et al. 2020, k = 5): density = (1 / kM) Σ_j
  #{reference balls holding sample j} (≈ 1 when the distributions match,
  can exceed 1); coverage = share of reference balls holding at least one sample.

The radii shrink as a set grows, so the papers compare equal counts: when the two sets differ
in size (``-n`` above the reference split's size), each metric here scores a seeded random
min(N, M) of the larger set's rows (not its first rows: a conditional model's samples come
in blocks of one class).
"""
from __future__ import annotations

import torch

from .base import Metric, SampleSet

CHUNK = 1024  # rows of a distance matrix computed at once (10k × 1k floats = 40 MB)


def _chunks(x: torch.Tensor):
    for start in range(0, len(x), CHUNK):
        yield x[start:start + CHUNK]


def knn_radii(samples: SampleSet, k: int) -> torch.Tensor:
    """Distance from each feature vector to its k-th nearest neighbour in the same set
    (itself excluded), cached on ``samples``."""
    key = ("knn_radii", k)
    if key not in samples.cache:
        x = samples.features.float()
        out = [torch.cdist(rows, x).topk(k + 1, dim=1, largest=False).values[:, k] for rows in _chunks(x)]
        samples.cache[key] = torch.cat(out)
    return samples.cache[key]


def equal_sized(real: SampleSet, fake: SampleSet) -> tuple[SampleSet, SampleSet]:
    """``(real, fake)``, the larger cut to the smaller's size (a seeded random subset of its
    rows), cached on the originals so that the four metrics share the cut sets and their radii."""
    m = min(len(real), len(fake))

    def cut(s: SampleSet) -> SampleSet:
        if len(s) == m:
            return s
        key = ("subset", m)
        if key not in s.cache:
            s.cache[key] = s.subset(torch.randperm(len(s), generator=torch.Generator().manual_seed(0))[:m])
        return s.cache[key]

    return cut(real), cut(fake)


def balls_holding(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each row of ``points``: how many balls (``centres``, ``radii``) contain it."""
    centres = centres.float()
    return torch.cat([(torch.cdist(rows.float(), centres) <= radii).sum(1) for rows in _chunks(points)])


def nearest_within(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each ball (``centres``, ``radii``): whether any row of ``points`` lies inside it."""
    inside = torch.zeros(len(centres), dtype=torch.bool, device=centres.device)
    for rows in _chunks(points):
        inside |= (torch.cdist(rows.float(), centres.float()) <= radii).any(0)
    return inside


class _ManifoldMetric(Metric):
    needs = ("features",)
    default_k = 3

    def __init__(self, k: int | None = None):
        self.k = int(k if k is not None else self.default_k)
        self.min_samples = self.k + 1

    def sets(self, real: SampleSet, fake: SampleSet) -> tuple[SampleSet, SampleSet]:
        """The two sets at equal size (see the module's docstring), with their features."""
        self.require(real, "features", "reference"), self.require(fake, "features")
        return equal_sized(real, fake)


class Precision(_ManifoldMetric):
    """Share of samples inside the reference feature manifold, k = 3 (Kynkäänniemi 2019; higher is better)."""

    name = "precision"
    better = {"precision": "higher"}

    def measure(self, real, fake, **ctx):
        real, fake = self.sets(real, fake)
        return {"precision": (balls_holding(fake.features, real.features, knn_radii(real, self.k)) > 0)
                .double().mean()}


class Recall(_ManifoldMetric):
    """Share of reference points inside the samples' feature manifold, k = 3 (Kynkäänniemi 2019; higher is better)."""

    name = "recall"
    better = {"recall": "higher"}

    def measure(self, real, fake, **ctx):
        real, fake = self.sets(real, fake)
        return {"recall": (balls_holding(real.features, fake.features, knn_radii(fake, self.k)) > 0)
                .double().mean()}


class Density(_ManifoldMetric):
    """Mean number of reference k-NN balls holding a sample, over k, k = 5 (Naeem 2020; ≈ 1 when matched)."""

    name = "density"
    default_k = 5

    def measure(self, real, fake, **ctx):
        real, fake = self.sets(real, fake)
        counts = balls_holding(fake.features, real.features, knn_radii(real, self.k))
        return {"density": counts.double().sum() / (self.k * len(fake))}


class Coverage(_ManifoldMetric):
    """Share of reference k-NN balls that hold at least one sample, k = 5 (Naeem 2020; higher is better)."""

    name = "coverage"
    better = {"coverage": "higher"}
    default_k = 5

    def measure(self, real, fake, **ctx):
        real, fake = self.sets(real, fake)
        return {"coverage": nearest_within(fake.features, real.features, knn_radii(real, self.k))
                .double().mean()}
