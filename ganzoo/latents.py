"""The truncation trick (BigGAN, Brock et al. 2019): latents from a truncated normal.

Drawing from N(0, I) truncated to [-t, t] makes typical samples: precision goes
up and recall down. The sampler is written here rather than taken from
``torch.nn.init.trunc_normal_`` because that function changed algorithm between
torch releases (inverse CDF in older ones, rejection sampling in 2.14), so one
seed gave different latents, and benchmark figures, on different torch
versions; the inverse CDF below gives the same latents for a seed on all of them.
"""
from __future__ import annotations

import math

import torch

from .errors import GanzooError


# Beyond about 9 standard deviations a float32 normal is never cut; far larger values overflow
# float32 inside the sampler, so the check stops there with one line instead.
MAX_TRUNCATION = 1e6
_BELOW_ONE = 1.0 - 2.0 ** -24  # the largest float32 below 1


def check_truncation(truncation: float | None) -> None:
    """Raise the one-line error for a truncation that is not a positive finite number."""
    if truncation is None:
        return
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) \
            or not (math.isfinite(truncation) and 0 < truncation <= MAX_TRUNCATION):
        raise GanzooError(f"--truncation must be a positive number of standard deviations "
                          f"up to {MAX_TRUNCATION:g} (e.g. 1.5; beyond about 9 it truncates nothing; "
                          f"for stylegan2 it is ψ, e.g. 0.7), got {truncation}")


def truncated_normal(shape, truncation: float, generator: torch.Generator | None = None,
                     device=None, dtype=None) -> torch.Tensor:
    """Samples of N(0, 1) truncated to [-truncation, truncation], by inverting the CDF:
    u ~ U(Φ(-t), Φ(t)), z = Φ⁻¹(u) = √2·erfinv(2u - 1)."""
    check_truncation(truncation)
    mass = math.erf(truncation / math.sqrt(2))  # Φ(t) - Φ(-t)
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    # past t ≈ 5.4 the mass rounds to 1 in float32, and u = 0 (odds 2⁻²⁴ an element) would give
    # erfinv(-1) = -inf, clamped to exactly -t: keep the argument inside (-1, 1)
    z = math.sqrt(2) * torch.erfinv(((2 * u - 1) * mass).clamp_(-_BELOW_ONE, _BELOW_ONE))
    # cast, then clamp: rounding to a half-precision dtype must not step past ±t
    return z.to(dtype or torch.get_default_dtype()).clamp_(-truncation, truncation)
