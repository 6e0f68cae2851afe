"""ganzoo: a plugin-based GAN model zoo for PyTorch."""
from __future__ import annotations

__version__ = "0.9.18"

from .errors import GanzooError, PluginConflictError, UnknownNameError
from .hookspecs import hookimpl
from .interfaces import AdversarialLoss, ArchOptions, Discriminator, Generator, Regularizer, pack_samples
from .catalog import (create_dataset, create_discriminator, create_generator, create_loss,
                       create_metric, create_regularizer, get_architecture, list_architectures,
                       list_datasets, list_losses, list_methods, list_metrics, list_models,
                      list_regularizers)


def load_generator(model: str, device: str = "cpu", allow_unverified: bool = False):
    """Load a generator from an export directory, a run directory or a zoo id (an export without
    a valid sha256 only with ``allow_unverified=True``)."""
    from .references import load_generator as _load

    return _load(model, device=device, allow_unverified=allow_unverified)


__all__ = [
    "AdversarialLoss", "ArchOptions", "Discriminator", "GanzooError", "Generator",
    "PluginConflictError", "Regularizer", "UnknownNameError", "create_dataset",
    "create_discriminator", "create_generator", "create_loss", "create_metric",
    "create_regularizer", "get_architecture", "hookimpl", "list_architectures",
    "list_datasets", "list_losses", "list_methods", "list_metrics", "list_models", "list_regularizers",
    "load_generator", "pack_samples",
]
