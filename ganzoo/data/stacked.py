"""Stacked MNIST (Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN Table 2).

Each image stacks three MNIST digits, drawn independently and uniformly (with
replacement) from one MNIST split, into its R, G and B channels: 28×28×3
uint8 images with 10³ = 1,000 modes. The label of an image is its mode,

    label = 100·d_R + 10·d_G + d_B    (0..999),

so ``class_names`` are "000".."999".

Which MNIST digits: the **train** split when it is on disk (any location
:mod:`ganzoo.data.idx` searches: ``root``, ``$GANZOO_DATA``, the download
cache, a ``shared/data/mnist`` folder), else the **test** split when that is on
disk, else the train split is downloaded as MNIST's loader does. The machine
this was written on has only MNIST's 10k test split, so there both
stacked splits are drawn from those 10,000 digits. Every dataset says which
split it was built from in ``description`` and ``source_split``.

Sizes and seeds (fixed, so a split is the same everywhere for the same
MNIST digits): ``train`` = 60,000 stacked images drawn with seed 0, ``test`` =
10,000 drawn with seed 1 (``size=`` and ``seed=`` override them). Building
costs one read of the IDX files plus an index gather (well under a second
for 60,000), so nothing is cached on disk. PacGAN trained on 25,600 images
drawn from MNIST's 70,000 digits (train + test); the protocol that matters for
comparison is the scoring one (26,000 generated samples, see
:mod:`ganzoo.metrics.stacked`), not the training set's size.

The three channels of one image are independent draws, so the same MNIST
image can (rarely) appear in two channels of one stacked image.
"""
from __future__ import annotations

import torch

from ..errors import GanzooError
from .base import InMemoryDataset
from .files import cache_dir, candidate_dirs, check_split
from .idx import MNIST

NAME = "stacked-mnist"
NUM_MODES = 1000
SIZES = {"train": 60_000, "test": 10_000}
SEEDS = {"train": 0, "test": 1}
CHANNEL_WEIGHTS = (100, 10, 1)  # label = 100·d_R + 10·d_G + d_B
CLASS_NAMES = tuple(f"{i:03d}" for i in range(NUM_MODES))
DEFAULT_METRICS = ("stacked-modes",)


def mnist_source_split(root=None) -> str:
    """The MNIST split Stacked MNIST is drawn from: "train" when a location MNIST's loader
    searches holds its train files, else "test" when one holds the test files, else
    "train" (which MNIST's loader then downloads). One file of a pair in the download
    cache (an interrupted download, which MNIST's loader also passes over) does not count:
    it would send an offline machine to the network instead of to the test split it has.
    Elsewhere one file counts, so that MNIST's loader names the missing one."""
    dirs = candidate_dirs(MNIST.name, root, MNIST.system_dirs())
    cache = cache_dir(MNIST.name)
    for split in ("train", "test"):
        stems = MNIST.filenames(split)
        for d in dirs:
            found = [MNIST._present(d, s) for s in stems]
            if all(found) or (any(found) and d != cache):
                return split
    return "train"


def stack_indices(num_digits: int, size: int, seed: int) -> torch.Tensor:
    """size×3 indices of the source digits in each channel of each stacked image: independent
    uniform draws with replacement from ``torch.Generator().manual_seed(seed)``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, int(num_digits), (int(size), 3), generator=g)


def stack_digits(images: torch.Tensor, labels: torch.Tensor, size: int, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` stacked images from single-channel digits (N×1×H×W or N×H×W uint8) and their
    labels: each channel an independent uniform draw (with replacement), seeded by ``seed``.
    Returns (size×3×H×W uint8 images, size mode labels 0..999)."""
    if images.dim() == 4:
        if images.shape[1] != 1:
            raise GanzooError(f"{NAME}: source digits must be 1-channel, got shape "
                              f"{tuple(images.shape[1:])}")
        images = images[:, 0]
    if len(images) == 0 or len(images) != len(labels):
        raise GanzooError(f"{NAME}: {len(images)} source digits and {len(labels)} labels")
    pick = stack_indices(len(images), size, seed)
    stacked = images[pick]  # size×3×H×W
    modes = (labels.long()[pick] * torch.tensor(CHANNEL_WEIGHTS)).sum(1)
    return stacked.contiguous(), modes


def load_stacked_mnist(split: str = "train", root: str | None = None,
                       image_size: int | None = None, *, seed: int | None = None,
                       size: int | None = None) -> InMemoryDataset:
    """Stacked MNIST: 3 independent MNIST digits in R, G, B; 28×28 RGB, 1,000 classes
    (60,000 train / 10,000 test images, from MNIST's train split when present, else its test split)."""
    check_split(NAME, split, SIZES)
    size = SIZES[split] if size is None else int(size)
    seed = SEEDS[split] if seed is None else int(seed)
    if size < 1:
        raise GanzooError(f"{NAME}: size must be >= 1, got {size}")
    source = mnist_source_split(root)
    digits = MNIST.load(source, root)
    images, labels = stack_digits(digits.data, digits.labels, size, seed)
    ds = InMemoryDataset(images, labels, NUM_MODES, NAME, CLASS_NAMES)
    if image_size:
        ds = ds.resized(image_size)
    ds.source_split = source
    ds.seed = seed
    ds.description = (f"Stacked MNIST {split}: {size:,} images whose R, G, B channels are MNIST "
                      f"digits drawn independently (seed {seed}) from MNIST's {source} split "
                      f"({len(digits):,} digits)")
    ds.default_metrics = DEFAULT_METRICS
    return ds
