"""The EMA generator at inference time.

timm's ``ModelEmaV3`` interpolates every floating-point buffer along with the weights. For
BatchNorm's running statistics that is the usual practice. For the power-iteration vectors
``u`` and ``v`` that torch's ``spectral_norm`` parametrization keeps as buffers it is not: an
average of unit vectors is shorter than 1, and in eval mode the parametrization divides W by
sigma = u·Wv without normalising them, so each layer's weight comes out too large and a
spectrally normalised generator (BigGAN's) draws black or saturated images from its EMA.
(timm's ``exclude_buffers=True`` would copy the BatchNorm statistics from the live model as
well, changing every model that has them.) The stored EMA state is left as it is, so
checkpoints and resumes stay bit-exact; what samples from it uses :func:`for_inference`,
and exports are written and loaded normalised. Only the parametrization API
(``torch.nn.utils.parametrizations.spectral_norm``) is handled: the older hook-based
``torch.nn.utils.spectral_norm`` keeps its vectors as ``weight_u``/``weight_v`` and is not
handled (no built-in plugin uses it; a plugin that does should move to the parametrization).
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F


def _spectral_norms(module: nn.Module) -> list:
    """The spectral-norm parametrizations (with power-iteration vectors) inside ``module``."""
    found = []
    for m in module.modules():
        for plist in getattr(m, "parametrizations", {}).values():
            found += [p for p in plist if hasattr(p, "_u") and hasattr(p, "_v")]
    return found


@torch.no_grad()
def normalize_spectral_vectors(module: nn.Module) -> nn.Module:
    """Make every spectral-norm ``u`` and ``v`` in ``module`` a unit vector again, in place."""
    for sn in _spectral_norms(module):
        sn._u.copy_(F.normalize(sn._u, dim=0, eps=sn.eps))
        sn._v.copy_(F.normalize(sn._v, dim=0, eps=sn.eps))
    return module


def for_inference(ema_generator: nn.Module) -> nn.Module:
    """``ema_generator`` itself when it has no spectral norm, else a copy whose vectors are
    normalised (the EMA state it came from keeps averaging as before)."""
    if not _spectral_norms(ema_generator):
        return ema_generator
    return normalize_spectral_vectors(copy.deepcopy(ema_generator))
