"""A seeded subset of a dataset, for limited-data training (``--subset N`` or a fraction).

``subset(data, size, seed)`` keeps ``N`` samples of ``data``: ``size`` is a count (an int
>= 1) or a fraction in (0, 1] (``N = round(size · len(data))``). Which samples is a pure
function of (the dataset, ``N``, ``seed``), so a run records ``size`` and ``seed`` and
reproduces its subset on any machine:

- a dataset held in memory (``InMemoryDataset``: images or labelled tensors) keeps the ``N``
  samples a seeded permutation picks, stratified by class when it is labelled (each class
  keeps its share of ``N``, rounded by largest remainder, so 10 % of Fashion-MNIST keeps 600
  images of every class);
- any other dataset (a 2-D mixture sampled on the fly, or a wrapper such as cluster labels)
  is sampled once: its first batch of ``N`` samples for ``seed`` (for a wrapped in-memory set,
  ``N`` distinct samples, unstratified) becomes the fixed training set, with the labels that
  batch carries.

The wrapper batches like ``InMemoryDataset`` (epoch permutations from the run's seed) and
passes every other attribute (``class_names``, a mixture's ``centers``, ...) through to the
wrapped dataset; ``indices`` are the kept samples' positions in it (None when sampled).
"""
from __future__ import annotations

import math
import numbers

import torch

from ..errors import GanzooError
from .base import Dataset, InMemoryDataset


def subset_size(size, total: int, what: str = "subset") -> int:
    """The number of samples ``size`` (a count, or a fraction in (0, 1]) means for ``total``."""
    if isinstance(size, str):
        text = size.strip()
        try:
            size = float(text[:-1]) / 100 if text.endswith("%") else (
                float(text) if any(ch in text for ch in ".eE") else int(text))
        except ValueError:
            raise GanzooError(f"{what} must be a number of samples or a fraction in (0, 1], "
                              f"got {text!r}") from None
        if text.endswith("%") and not 0 < size <= 1:  # 200% is not a count of 2
            raise GanzooError(f"{what} percentage must be in (0, 100%], got {text}")
    if isinstance(size, bool) or not isinstance(size, numbers.Real) or not math.isfinite(size):
        raise GanzooError(f"{what} must be a number of samples or a fraction in (0, 1], got {size!r}")
    if isinstance(size, numbers.Integral) or (size > 1 and float(size).is_integer()):
        n = int(size)
        if n < 1:
            raise GanzooError(f"{what} must keep at least 1 sample, got {n}")
    elif 0 < size <= 1:
        n = round(size * total)
        if n < 1:
            raise GanzooError(f"{what} fraction {size} of {total} samples keeps none; give a larger "
                              f"fraction or a count")
    else:
        raise GanzooError(f"{what} must be a count >= 1 or a fraction in (0, 1], got {size}")
    if n > total:
        raise GanzooError(f"{what} of {n} samples is more than the dataset has ({total})")
    return n


def stratified_indices(n: int, labels: torch.Tensor | None, total: int, seed: int) -> torch.Tensor:
    """``n`` of ``total`` indices (sorted) picked by a permutation seeded with ``seed``; with
    ``labels``, each class keeps ``n · its share`` (largest remainder; ties to the lower class)."""
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    if labels is None:
        return perm[:n].sort().values
    labels = labels.cpu().long()
    counts = torch.bincount(labels)
    exact = counts.double() * n / total
    quota = exact.floor().long()
    short = n - int(quota.sum())
    if short:  # the largest remainders get one more (a stable sort: ties go to the lower class)
        order = torch.sort(exact - quota, descending=True, stable=True).indices
        quota[order[:short]] += 1
    by_class = perm[torch.sort(labels[perm], stable=True).indices]  # classes in turn, each in perm order
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(total) - starts[labels[by_class]]  # position within its class
    keep = rank < quota[labels[by_class]]
    return by_class[keep].sort().values


class Subset(Dataset):
    """``base`` cut down to ``size`` samples (a count or a fraction) chosen with ``seed``."""

    def __init__(self, base: Dataset, size, seed: int = 0):
        self.base = base
        self.size, self.seed = size, int(seed)
        n = subset_size(size, len(base))
        self.name, self.shape, self.is_image = base.name, tuple(base.shape), base.is_image
        self.num_classes = base.num_classes
        self.class_names = tuple(getattr(base, "class_names", ()) or ())
        if isinstance(base, InMemoryDataset):  # not a wrapper: its batches may relabel (cluster ids)
            labels = getattr(base, "labels", None)
            self.indices = stratified_indices(n, labels, len(base), self.seed)
            idx = self.indices.to(base.data.device)
            x, y = base.data[idx], (None if labels is None else labels[idx])
        else:  # sampled on the fly: one fixed draw of n samples
            self.indices = None
            x, y = base.batch(0, n, self.seed)
        self._kept = InMemoryDataset(x, y, self.num_classes, self.name, self.class_names)
        self._kept.is_image = self.is_image  # a sampled image set keeps its kind whatever its dtype

    def record(self) -> dict:
        """What a run records to reproduce this subset."""
        return {"subset": self.size, "subset_seed": self.seed, "subset_samples": len(self),
                "dataset_samples": len(self.base)}

    def batch(self, step, batch_size, seed, rank=0, world_size=1):
        return self._kept.batch(step, batch_size, seed, rank, world_size)

    def to(self, device) -> "Subset":
        self._kept = self._kept.to(device)
        self.base = self.base.to(device)
        return self

    def __len__(self) -> int:
        return len(self._kept)

    def __getattr__(self, name):  # only called for attributes not found on the wrapper
        if name in ("base", "_kept"):
            raise AttributeError(name)
        return getattr(self.base, name)


def subset(data: Dataset, size, seed: int) -> Subset:
    """``data`` cut down to ``size`` samples (a count >= 1, or a fraction in (0, 1]) picked with
    ``seed``; a one-line ``GanzooError`` for a size that is out of range."""
    return Subset(data, size, seed)
