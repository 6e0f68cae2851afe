"""DiffAugment (Zhao et al., NeurIPS 2020): differentiable augmentation of every input of D.

Zhao, Liu, Lin, Zhu & Han, "Differentiable Augmentation for Data-Efficient GAN Training"
(arXiv:2006.10738). The same family of random transforms T is applied to every image D
reads: reals and fakes in the D step, fakes (and reals, when the loss scores them) in the G
step. Because T is differentiable, G learns through it, and D never sees an un-augmented
image, so it cannot tell reals from fakes by the augmentation alone. Each call draws its own
parameters per sample, as the official code does for its separate ``D(T(real))`` and
``D(T(fake))`` calls.

The three policies, as in the official ``DiffAugment_pytorch.py`` (images in [-1, 1]):

- ``color``: brightness ``x + U(-0.5, 0.5)``; saturation, the deviation from the per-pixel
  channel mean scaled by ``U(0, 2)``; contrast, the deviation from the image mean scaled by
  ``U(0.5, 1.5)`` (in that order; saturation does nothing to a 1-channel image);
- ``translation``: a shift by an integer drawn uniformly from ``[-s, s]`` in each axis,
  ``s = int(size/8 + 0.5)`` (4 px at 28 or 32 px; option ``translation_ratio``, 1/8), the
  uncovered border filled with 0;
- ``cutout``: a square of ``int(size/2 + 0.5)`` px (option ``cutout_ratio``, 1/2) set to 0, its centre uniform over the
  image; as in the official code a square reaching past the border is clipped there, so pixels
  near the border are cut less often than central ones (at 8 px: 1/9 at a corner, 16/81 in the
  middle).

Option ``fill`` (not in the paper): ``mid`` (the default, the paper's 0 in [-1, 1]) or ``low``,
the bottom of the range, for the uncovered border and the cut square. On CIFAR-10 the paper's
mid-grey is close to the mean colour; on MNIST-like data, whose background is black, it draws
a grey band no real image has, and ``low`` fills with the background instead.

Range: the official code works in [-1, 1], where 0 is mid-grey. Here the ops work on
``x - mid`` for the generator's ``output_range`` (``mid`` = its centre, 0 for [-1, 1]), so
the default fill (``mid``) is the middle of the range and the brightness shift is scaled to
half its width; a generator whose range is None is fed images in [0, 1]
(:func:`ganzoo.images.to_model_range`) and augmented in that range, and a context with no
generator is taken to be in [-1, 1].

Only images: the method refuses a dataset that is not images before training starts
(``wrap_dataset``) and a non-4-D input of D (``transform``) with one line, rather than
passing points through untouched, which would look like a run with DiffAugment.

Randomness comes from torch's default generator on the input's device, which the trainer
seeds from (seed, step, rank) before every step, so a resumed run draws the same transforms.
Every op is vectorised over the batch (gathers and broadcast masks, no Python loop).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import GanzooError, UnknownNameError
from ..images import pixel_range
from .base import StepContext, TrainingMethod

TRANSLATION_RATIO = 0.125  # the largest shift, as a share of the size
CUTOUT_RATIO = 0.5  # the side of the cut square, as a share of the size
FILLS = ("mid", "low")  # what uncovered and cut pixels become: the range's middle or its bottom


# -- helpers shared with ADA ---------------------------------------------------------------------
def model_range(ctx: StepContext | None) -> tuple[float, float]:
    """``(mid, half)`` of the generator's output range: centre and half-width ((0, 1) for
    [-1, 1], also when the context has no generator). A generator whose range is None reads
    images in [0, 1], as :func:`ganzoo.images.to_model_range` converts them for it."""
    generator = getattr(ctx, "generator", None)
    lo, hi = (-1.0, 1.0) if generator is None else pixel_range(getattr(generator, "output_range", None))
    return (lo + hi) / 2, (hi - lo) / 2


def require_images(x: torch.Tensor, method: str) -> None:
    if x.dim() != 4:
        raise GanzooError(f"{method} augments images (N x C x H x W); D's input here has shape "
                          f"{tuple(x.shape)}: leave {method} out for this model")


def require_image_dataset(data, method: str) -> None:
    if not getattr(data, "is_image", True):
        raise GanzooError(f"{method} augments images; {getattr(data, 'name', 'the dataset')} holds "
                          f"samples of shape {tuple(getattr(data, 'shape', ()))}: leave {method} out "
                          f"for it (instance-noise works on any data)")


def keep_memory_format(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``out`` channels-last when ``like`` was (the gathers below return NCHW-contiguous)."""
    if like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        return out.contiguous(memory_format=torch.channels_last)
    return out


def _uniform(n: int, x: torch.Tensor) -> torch.Tensor:
    # float32 draws whatever x is: a bf16 fake gets the same draws as a float32 real
    return torch.rand(n, 1, 1, 1, device=x.device, dtype=torch.float32)


def gather_pixels(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``out[k, :, i, j] = x[k, :, rows[k, i, j], cols[k, i, j]]`` (indices in range), one gather."""
    n, c, h, w = x.shape
    idx = (rows * w + cols).reshape(n, 1, -1).expand(n, c, -1)
    return x.reshape(n, c, h * w).gather(2, idx).reshape(n, c, *rows.shape[1:])


# -- the ops (on images centred on the middle of the range) --------------------------------------
def rand_brightness(x: torch.Tensor, half: float = 1.0) -> torch.Tensor:
    """``x + U(-0.5, 0.5)`` per image (in [-1, 1] units)."""
    return x + (_uniform(len(x), x) - 0.5) * half


def rand_saturation(x: torch.Tensor, half: float = 1.0) -> torch.Tensor:
    """Deviation from the per-pixel mean over channels scaled by ``U(0, 2)`` per image."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(len(x), x) * 2) + mean


def rand_contrast(x: torch.Tensor, half: float = 1.0) -> torch.Tensor:
    """Deviation from the image mean (over channels and pixels) scaled by ``U(0.5, 1.5)``."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(len(x), x) + 0.5) + mean


def rand_color(x: torch.Tensor, half: float = 1.0) -> torch.Tensor:
    return rand_contrast(rand_saturation(rand_brightness(x, half), half), half)


def _filled(x: torch.Tensor, keep: torch.Tensor, fill: float) -> torch.Tensor:
    """``x`` where the (n, h, w) mask ``keep`` is True, ``fill`` elsewhere (every channel)."""
    keep = keep[:, None].to(x.dtype)
    return x * keep if not fill else x * keep + fill * (1 - keep)


def rand_translation(x: torch.Tensor, half: float = 1.0, ratio: float = TRANSLATION_RATIO,
                     fill: float = 0.0) -> torch.Tensor:
    """Each image shifted by ``(dy, dx)``, each uniform in ``[-s, s]`` (``s = int(size·ratio + 0.5)``):
    ``out[i, j] = x[i - dy, j - dx]``, ``fill`` where that falls outside the image."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1), device=x.device)
    rows = torch.arange(h, device=x.device) - dy  # (n, h): source row of each output row
    cols = torch.arange(w, device=x.device) - dx
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    out = gather_pixels(x, rows.clamp(0, h - 1)[:, :, None].expand(n, h, w),
                        cols.clamp(0, w - 1)[:, None, :].expand(n, h, w))
    return _filled(out, inside, fill)


def cutout_keep(n: int, h: int, w: int, device, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """An (n, h, w) bool mask, False on one square of ``int(size·ratio + 0.5)`` px per image: its
    centre uniform over ``[0, h]`` (``[0, h)`` for an odd side), clipped at the border."""
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1), device=device) - ch // 2  # first cut row
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1), device=device) - cw // 2
    r, c = torch.arange(h, device=device), torch.arange(w, device=device)
    cut = ((r >= oy) & (r < oy + ch))[:, :, None] & ((c >= ox) & (c < ox + cw))[:, None, :]
    return ~cut


def rand_cutout(x: torch.Tensor, half: float = 1.0, ratio: float = CUTOUT_RATIO,
                fill: float = 0.0) -> torch.Tensor:
    n, _, h, w = x.shape
    return _filled(x, cutout_keep(n, h, w, x.device, ratio), fill)


POLICIES: dict[str, Callable[..., torch.Tensor]] = {
    "color": rand_color,
    "translation": rand_translation,
    "cutout": rand_cutout,
}


def diff_augment(x: torch.Tensor, policy=("color", "translation", "cutout"), mid: float = 0.0,
                 half: float = 1.0, options: dict[str, dict] | None = None) -> torch.Tensor:
    """``x`` (N×C×H×W in a range centred on ``mid`` with half-width ``half``) through each policy
    in order; ``options`` gives a policy's keyword arguments (translation's and cutout's
    ``ratio`` and ``fill``, in units centred on ``mid``; default the paper's)."""
    y = x - mid if mid else x
    for name in policy:
        y = POLICIES[name](y, half, **(options or {}).get(name, {}))
    return keep_memory_format(y + mid if mid else y, x)


def check_policy(method: str, policy, known) -> tuple[str, ...]:
    """``policy`` (a tuple or a comma-separated string) as a tuple of known, distinct names."""
    if isinstance(policy, str):
        policy = tuple(p.strip() for p in policy.split(",") if p.strip())
    policy = tuple(policy)
    if not policy:
        raise GanzooError(f"{method} policy is empty; give one or more of {', '.join(known)}")
    for name in policy:
        if name not in known:
            raise UnknownNameError(f"{method} policy", name, known)
        if policy.count(name) > 1:
            raise GanzooError(f"{method} policy names {name!r} twice; give each once")
    return policy


@dataclass
class DiffAugment(TrainingMethod):
    """DiffAugment (Zhao et al. 2020): differentiable colour, translation and cutout on every image D reads, real and fake, in both steps."""

    policy: tuple[str, ...] = ("color", "translation", "cutout")  # any of these, applied in order
    translation_ratio: float = TRANSLATION_RATIO  # the largest shift, a share of the size (paper: 1/8)
    cutout_ratio: float = CUTOUT_RATIO  # the cut square's side, a share of the size (paper: 1/2)
    fill: str = "mid"  # uncovered and cut pixels: mid (paper: 0 in [-1, 1]) or low (a black background)

    def __post_init__(self):
        self.policy = check_policy("diffaugment", self.policy, tuple(POLICIES))
        if not 0.0 <= self.translation_ratio <= 0.5:
            raise GanzooError(f"diffaugment translation_ratio must be in [0, 0.5], got {self.translation_ratio}")
        if not 0.0 < self.cutout_ratio <= 1.0:
            raise GanzooError(f"diffaugment cutout_ratio must be in (0, 1], got {self.cutout_ratio}")
        if self.fill not in FILLS:
            raise UnknownNameError("diffaugment fill", self.fill, FILLS)

    def wrap_dataset(self, data, seed: int):
        require_image_dataset(data, "diffaugment")
        return data

    def transform(self, x: torch.Tensor, ctx: StepContext, which: str) -> torch.Tensor:
        require_images(x, "diffaugment")
        mid, half = model_range(ctx)
        fill = -half if self.fill == "low" else 0.0  # in units centred on mid
        return diff_augment(x, self.policy, mid, half,
                            {"translation": {"ratio": self.translation_ratio, "fill": fill},
                             "cutout": {"ratio": self.cutout_ratio, "fill": fill}})
