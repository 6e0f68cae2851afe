"""Datasets: loaded once into memory as uint8 tensors (images) or sampled on the fly (2-D mixtures)."""
from .base import Dataset, InMemoryDataset
from .mixtures import GaussianMixture, grid25, ring8

__all__ = ["Dataset", "InMemoryDataset", "GaussianMixture", "grid25", "ring8"]
