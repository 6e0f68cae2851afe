"""The dataset interface the trainer consumes.

A dataset hands out batches by *step*: the batch for (seed, step, rank) is a
pure function of those numbers, so resuming a run needs no loader state and
data-parallel ranks draw disjoint shards of the same epoch permutation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import GanzooError
from ..limits import fold_seed


class Dataset:
    """Base class. ``shape`` is the shape of one sample; ``num_classes`` is 0 when unlabelled."""

    name: str = "dataset"
    shape: tuple[int, ...] = ()
    num_classes: int = 0
    is_image: bool = True
    class_names: tuple[str, ...] = ()

    def batch(self, step: int, batch_size: int, seed: int, rank: int = 0,
              world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch of ``rank`` at training ``step``: ``(x, labels or None)`` on the dataset's device."""
        raise NotImplementedError

    def to(self, device) -> "Dataset":
        return self

    def __len__(self) -> int:
        raise NotImplementedError


class InMemoryDataset(Dataset):
    """Samples held in one tensor (uint8 N×C×H×W images, or float N×D points)."""

    def __init__(self, data: torch.Tensor, labels: torch.Tensor | None = None,
                 num_classes: int | None = None, name: str = "dataset",
                 class_names: tuple[str, ...] = ()):
        if labels is not None and len(labels) != len(data):
            raise GanzooError(f"{name}: {len(data)} samples but {len(labels)} labels")
        self.data = data
        self.labels = labels.long() if labels is not None else None
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else 0
        self.num_classes = num_classes
        self.name = name
        self.class_names = tuple(class_names)
        self.is_image = data.dtype == torch.uint8 and data.dim() == 4
        self.shape = tuple(data.shape[1:])
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.data)

    def to(self, device) -> "InMemoryDataset":
        self.data = self.data.to(device)
        if self.labels is not None:
            self.labels = self.labels.to(device)
        self._perm_epoch, self._perm = -1, None
        return self

    def resized(self, size: int) -> "InMemoryDataset":
        """A copy with images resized once (bilinear, antialiased) to ``size``×``size``."""
        if not self.is_image:
            raise GanzooError(f"{self.name} holds points, not images: it cannot be resized")
        if self.shape[-1] == size and self.shape[-2] == size:
            return self
        out = []
        for chunk in self.data.split(4096):
            x = F.interpolate(chunk.float(), size=(size, size), mode="bilinear",
                              antialias=True, align_corners=False)
            out.append(x.round().clamp_(0, 255).to(torch.uint8))
        return InMemoryDataset(torch.cat(out), self.labels, self.num_classes, self.name,
                               self.class_names)

    def subset(self, n: int) -> "InMemoryDataset":
        return InMemoryDataset(self.data[:n], None if self.labels is None else self.labels[:n],
                               self.num_classes, self.name, self.class_names)

    def _permutation(self, epoch: int, seed: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(fold_seed(seed * 1_000_003 + epoch))
            self._perm = torch.randperm(len(self.data), generator=g).to(self.data.device)
            self._perm_epoch = epoch
        return self._perm

    def batch(self, step, batch_size, seed, rank=0, world_size=1):
        per_epoch = len(self.data) // (batch_size * world_size)
        if per_epoch < 1:
            raise GanzooError(f"{self.name} has {len(self.data)} samples, fewer than one global "
                              f"batch ({batch_size} x {world_size} ranks)")
        epoch, i = divmod(step, per_epoch)
        start = (i * world_size + rank) * batch_size
        idx = self._permutation(epoch, seed)[start:start + batch_size]
        return self.data[idx], (None if self.labels is None else self.labels[idx])
