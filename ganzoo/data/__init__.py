"""Datasets: loaded once into memory as uint8 tensors (images) or sampled on the fly (2-D mixtures)."""
from .base import Dataset, InMemoryDataset
from .cifar import load_cifar10
from .folder import load_image_folder
from .idx import load_fashion_mnist, load_mnist, read_idx, write_idx
from .mixtures import GaussianMixture, grid25, ring8

__all__ = ["Dataset", "InMemoryDataset", "GaussianMixture", "grid25", "ring8",
           "load_cifar10", "load_fashion_mnist", "load_image_folder", "load_mnist",
           "read_idx", "write_idx"]
