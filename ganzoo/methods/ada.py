"""ADA (Karras et al., NeurIPS 2020): augmentation whose strength follows D's overfitting.

Karras, Aittala, Hellsten, Laine, Lehtinen & Aila, "Training Generative Adversarial Networks
with Limited Data" (arXiv:2006.06676). Every image D reads (reals and fakes, in both steps)
goes through a pipeline of augmentations, each applied to each image independently with
probability ``p``. ``p`` is steered by the overfitting heuristic ``r_t = E[sign(D(x_real))]``,
the share of (augmented) reals D scores positive, minus the share it scores negative (about
the loss's ``decision_threshold`` t, not 0, where the loss has one elsewhere: least squares'
0.5; a loss without one, such as wasserstein's critic, is refused for a new run): every
``interval`` steps, ``p += sign(r_t - target) · images / speed``, where ``images`` is the number
of reals D read since the last adjustment (``batch · interval`` with one D step per step, as
in the official ``training_loop.py``), so ``p`` can go from 0 to 1 in ``speed`` images
(500k in the paper). ``p`` is clipped to [0, 1] (the official code clips it at 0 only; a
``p`` above 1 would change nothing there, as every augmentation already fires).

The pipeline: the official ``augment.py`` names its groups ``b`` (pixel blitting), ``g``
(general geometric) and ``c`` (colour) and defaults to ``bgc``. Implemented here, with the
official parameters and in its order:

- ``blit``: ``xflip`` (mirror with probability 1/2), ``rotate90`` (0, 90, 180 or 270 degrees;
  square images only), ``xint`` (integer translation by ``round(U(-0.125, 0.125)·size)`` in each
  axis). Done exactly, as one gather of whole pixels with reflected borders (the official code
  also pads by reflection, but resamples through a wavelet up/down-sampling that is close to,
  not exactly, the identity for these integer moves);
- ``color``: ``brightness`` (``+ N(0, 0.2²)``), ``contrast`` (``· 2^N(0, 0.5²)``), ``lumaflip``
  (reflection about the luma axis; ``x ↦ -x`` for grey images), ``hue`` (rotation about the luma
  axis by ``U(-π, π)``) and ``saturation`` (``· 2^N(0, 1)`` off the luma axis), composed into one
  4×4 colour matrix per image; hue and saturation do nothing to 1-channel images (skipped, as
  in the official code);
- ``noise`` (``+ N(0, σ²)``, ``σ = |N(0, 0.1²)|``) and ``cutout`` (a rectangle of half the size
  with a uniform centre set to 0), from the official ``bgcfnc`` pipeline.

Not implemented: the ``g`` group (isotropic and anisotropic scaling, arbitrary rotation,
fractional translation) and image-space filtering (``f``), which need the wavelet-filtered
resampling; the default here is therefore ADA's ``bc`` pipeline, not its ``bgc``.

The ops work in [-1, 1] units about the middle of the generator's ``output_range`` (see
:mod:`ganzoo.methods.diffaugment`), are differentiable (G learns through them) and draw from
torch's default generator, which the trainer seeds every step. The statistics stay on the
device: ``r_t``'s sum of signs is accumulated as a tensor and ``p`` is updated as a tensor, so
training never waits on a host sync for ADA (only logging reads ``p``). Under data parallelism
the sign sums are summed over ranks, so every rank holds the same ``p``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import GanzooError
from .base import StepContext, TrainingMethod
from .diffaugment import (check_policy, gather_pixels, keep_memory_format, model_range,
                          require_image_dataset, require_images)

BLIT = ("xflip", "rotate90", "xint")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
OPS = BLIT + COLOR + ("noise", "cutout")  # the order they are applied in
GROUPS = {"blit": BLIT, "color": COLOR}

XINT_MAX = 0.125
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2
HUE_MAX = 1.0  # share of a full turn
SATURATION_STD = 1.0  # log2
NOISE_STD = 0.1
CUTOUT_SIZE = 0.5


def expand_policy(policy: tuple[str, ...]) -> tuple[str, ...]:
    """Group names expanded; the ops in the pipeline's order."""
    named = {op for name in policy for op in GROUPS.get(name, (name,))}
    return tuple(op for op in OPS if op in named)


def _chosen(n: int, p, x: torch.Tensor, *shape: int) -> torch.Tensor:
    """Which of ``n`` images an augmentation applies to (each with probability ``p``)."""
    return torch.rand(n, *shape, device=x.device) < p


def _blit(x: torch.Tensor, p, ops: frozenset) -> torch.Tensor:
    """xflip, rotate90 and xint as one per-image integer map of output to input pixels (the
    inverse transforms composed as in ``augment.py``), reflected at the border."""
    n, _, h, w = x.shape
    dev = x.device
    G = torch.eye(3, device=dev).repeat(n, 1, 1)  # G @ output pixel (centred) = input pixel
    if "xflip" in ops:
        i = torch.floor(torch.rand(n, device=dev) * 2)
        i = torch.where(_chosen(n, p, x), i, torch.zeros_like(i))
        F = torch.eye(3, device=dev).repeat(n, 1, 1)
        F[:, 0, 0] = 1 - 2 * i
        G = G @ F
    if "rotate90" in ops:
        if h != w:
            raise GanzooError(f"ada rotate90 needs square images, not {h}x{w}: drop it from the policy")
        i = torch.floor(torch.rand(n, device=dev) * 4)
        i = torch.where(_chosen(n, p, x), i, torch.zeros_like(i)).long()
        cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=dev)[i]  # exact cos/sin of i·90°
        sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=dev)[i]
        R = torch.eye(3, device=dev).repeat(n, 1, 1)
        R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1] = cos, -sin, sin, cos
        G = G @ R
    if "xint" in ops:
        t = (torch.rand(n, 2, device=dev) * 2 - 1) * XINT_MAX
        t = torch.where(_chosen(n, p, x, 1), t, torch.zeros_like(t))
        T = torch.eye(3, device=dev).repeat(n, 1, 1)
        T[:, 0, 2], T[:, 1, 2] = -torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h)
        G = G @ T
    cx, cy = (w - 1) / 2, (h - 1) / 2
    u = (torch.arange(w, device=dev) - cx).view(1, 1, w).expand(1, h, w)
    v = (torch.arange(h, device=dev) - cy).view(1, h, 1).expand(1, h, w)
    src_u = G[:, 0, 0, None, None] * u + G[:, 0, 1, None, None] * v + G[:, 0, 2, None, None]
    src_v = G[:, 1, 0, None, None] * u + G[:, 1, 1, None, None] * v + G[:, 1, 2, None, None]
    cols = _reflect(torch.round(src_u + cx).long(), w)
    rows = _reflect(torch.round(src_v + cy).long(), h)
    return gather_pixels(x, rows, cols)


def _reflect(k: torch.Tensor, size: int) -> torch.Tensor:
    """Indices mirrored into [0, size) without repeating the edge (``pad(mode="reflect")``)."""
    if size == 1:
        return torch.zeros_like(k)
    period = 2 * (size - 1)
    k = k.abs() % period
    return torch.where(k >= size, period - k, k)


def _rotate3d(v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(n, 4, 4) rotations by ``theta`` about the unit axis ``v`` (Rodrigues)."""
    vx, vy, vz = v[0], v[1], v[2]
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    R = torch.zeros(len(theta), 4, 4, device=theta.device)
    R[:, 0, 0], R[:, 0, 1], R[:, 0, 2] = vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s
    R[:, 1, 0], R[:, 1, 1], R[:, 1, 2] = vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s
    R[:, 2, 0], R[:, 2, 1], R[:, 2, 2] = vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c
    R[:, 3, 3] = 1
    return R


def _color(x: torch.Tensor, p, ops: frozenset) -> torch.Tensor:
    """brightness, contrast, lumaflip, hue and saturation as one 4×4 matrix per image."""
    n, c, h, w = x.shape
    if c not in (1, 3):
        raise GanzooError(f"ada colour augmentations need 1- or 3-channel images, not {c} channels: "
                          f"drop {', '.join(o for o in COLOR if o in ops)} from the policy")
    dev = x.device
    eye = torch.eye(4, device=dev)
    C = eye.repeat(n, 1, 1)  # C @ colour in = colour out
    if "brightness" in ops:
        b = torch.randn(n, device=dev) * BRIGHTNESS_STD
        b = torch.where(_chosen(n, p, x), b, torch.zeros_like(b))
        B = eye.repeat(n, 1, 1)
        B[:, :3, 3] = b[:, None]
        C = B @ C
    if "contrast" in ops:
        s = torch.exp2(torch.randn(n, device=dev) * CONTRAST_STD)
        s = torch.where(_chosen(n, p, x), s, torch.ones_like(s))
        C = torch.diag_embed(torch.stack((s, s, s, torch.ones_like(s)), 1)) @ C
    v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev) / math.sqrt(3)  # the luma axis
    vv = torch.outer(v, v)
    if "lumaflip" in ops:
        i = torch.floor(torch.rand(n, 1, 1, device=dev) * 2)
        i = torch.where(_chosen(n, p, x, 1, 1), i, torch.zeros_like(i))
        C = (eye - 2 * vv * i) @ C  # Householder reflection
    if "hue" in ops and c > 1:
        theta = (torch.rand(n, device=dev) * 2 - 1) * math.pi * HUE_MAX
        theta = torch.where(_chosen(n, p, x), theta, torch.zeros_like(theta))
        C = _rotate3d(v, theta) @ C
    if "saturation" in ops and c > 1:
        s = torch.exp2(torch.randn(n, 1, 1, device=dev) * SATURATION_STD)
        s = torch.where(_chosen(n, p, x, 1, 1), s, torch.ones_like(s))
        C = (vv + (eye - vv) * s) @ C
    flat = x.reshape(n, c, h * w)
    if c == 3:
        out = C[:, :3, :3] @ flat + C[:, :3, 3:]
    else:  # grey: the mean of the RGB rows, as in augment.py
        m = C[:, :3, :].mean(dim=1, keepdim=True)
        out = flat * m[:, :, :3].sum(dim=2, keepdim=True) + m[:, :, 3:]
    return out.reshape(n, c, h, w)


def _noise(x: torch.Tensor, p) -> torch.Tensor:
    n = len(x)
    sigma = torch.randn(n, 1, 1, 1, device=x.device).abs() * NOISE_STD
    sigma = torch.where(_chosen(n, p, x, 1, 1, 1), sigma, torch.zeros_like(sigma))
    return x + torch.randn(x.shape, device=x.device) * sigma


def _cutout(x: torch.Tensor, p) -> torch.Tensor:
    n, _, h, w = x.shape
    size = torch.full((n, 2, 1, 1), CUTOUT_SIZE, device=x.device)
    size = torch.where(_chosen(n, p, x, 1, 1, 1), size, torch.zeros_like(size))
    centre = torch.rand(n, 2, 1, 1, device=x.device)
    cx = torch.arange(w, device=x.device).view(1, 1, 1, w)
    cy = torch.arange(h, device=x.device).view(1, 1, h, 1)
    out_x = ((cx + 0.5) / w - centre[:, 0:1]).abs() >= size[:, 0:1] / 2
    out_y = ((cy + 0.5) / h - centre[:, 1:2]).abs() >= size[:, 1:2] / 2
    return x * (out_x | out_y).to(x.dtype)


def ada_augment(x: torch.Tensor, p, ops, mid: float = 0.0, half: float = 1.0) -> torch.Tensor:
    """``x`` (N×C×H×W, range centred on ``mid``, half-width ``half``) through the ops in ``ops``
    (names of :data:`OPS`), each applied to each image with probability ``p`` (a number or a
    0-dim tensor)."""
    ops = frozenset(ops)
    if x.dtype in (torch.float16, torch.bfloat16):  # the colour matrices are float32
        x = x.float()
    y = (x - mid) / half if (mid, half) != (0.0, 1.0) else x  # [-1, 1] units, as in augment.py
    if ops & set(BLIT):
        y = _blit(y, p, ops)
    if ops & set(COLOR):
        y = _color(y, p, ops)
    if "noise" in ops:
        y = _noise(y, p)
    if "cutout" in ops:
        y = _cutout(y, p)
    y = y * half + mid if (mid, half) != (0.0, 1.0) else y
    return keep_memory_format(y, x)


@dataclass
class ADA(TrainingMethod):
    """ADA (Karras et al. 2020): per-image augmentations with probability p, steered every few steps by r_t = E[sign(D(real) - t)] (t: the loss's decision threshold, 0 for logistic and hinge) towards a target."""

    target: float = 0.6  # the r_t that p is steered to
    interval: int = 4  # steps between adjustments of p
    speed: int = 500_000  # real images over which p can go from 0 to 1
    p_init: float = 0.0  # p at the start of the run
    policy: tuple[str, ...] = ("blit", "color")  # ops or groups (blit, color) of the pipeline

    def __post_init__(self):
        if not (math.isfinite(self.target) and 0.0 < self.target < 1.0):
            raise GanzooError(f"ada target must be a value of r_t = E[sign(D(real) - t)] in (0, 1) (the paper "
                              f"uses 0.6), got {self.target}")
        if self.interval < 1:
            raise GanzooError(f"ada interval must be a number of steps >= 1, got {self.interval}")
        if self.speed < 1:
            raise GanzooError(f"ada speed must be a number of real images >= 1 (p goes from 0 to 1 in "
                              f"that many; the paper uses 500000), got {self.speed}")
        if not (math.isfinite(self.p_init) and 0.0 <= self.p_init <= 1.0):
            raise GanzooError(f"ada p_init must be a probability in [0, 1], got {self.p_init}")
        self.policy = check_policy("ada", self.policy, tuple(GROUPS) + OPS)
        self.ops = expand_policy(self.policy)
        self._p = torch.tensor(float(self.p_init))
        self._signs = torch.zeros(())  # sum of sign(D(real) - t) since the last adjustment
        self._count = 0  # logits in that sum
        self._images = 0  # real images D read since the last adjustment
        self._rt: torch.Tensor | None = None  # r_t of the last adjustment
        self._threshold = 0.0  # the loss's decision threshold: the logit r_t's signs are taken about

    @property
    def p(self) -> float:
        """The current augmentation probability (reads the device: not for the training loop)."""
        return float(self._p)

    def check_loss(self, loss, name: str) -> None:
        """r_t counts D's real logits above the loss's decision threshold (0 for the logistic
        and hinge losses, as in the paper; 0.5 for least squares, where nearly every real logit
        is above 0 overfitting or not, and p rose to 1). A loss with none is refused."""
        threshold = getattr(loss, "decision_threshold", 0.0)
        if threshold is None:
            raise GanzooError(f"ada steers p by the share of real images D scores above its decision "
                              f"threshold, and {name}'s D has none (a constant added to every output "
                              f"changes nothing): use a loss with one (hinge, non-saturating, minimax, "
                              f"least-squares), or diffaugment, which needs none")
        self._threshold = float(threshold)

    def wrap_dataset(self, data, seed: int):
        """Refuses, before training, data the pipeline cannot augment (points, non-square images
        with rotate90, colour ops on images that are neither grey nor RGB)."""
        require_image_dataset(data, "ada")
        shape = tuple(getattr(data, "shape", ()))
        if len(shape) == 3:
            c, h, w = shape
            if "rotate90" in self.ops and h != w:
                raise GanzooError(f"ada rotate90 needs square images, not {h}x{w}: drop it from the policy")
            colour = [o for o in COLOR if o in self.ops]
            if colour and c not in (1, 3):
                raise GanzooError(f"ada colour augmentations need 1- or 3-channel images, not {c} "
                                  f"channels: drop {', '.join(colour)} from the policy")
        return data

    def transform(self, x: torch.Tensor, ctx: StepContext, which: str) -> torch.Tensor:
        require_images(x, "ada")
        if self._p.device != x.device:
            self._p = self._p.to(x.device)
        if x.device.type == "cpu" and self._p.item() == 0.0:  # nothing fires (free to check on a CPU)
            return x
        mid, half = model_range(ctx)
        return ada_augment(x, self._p, self.ops, mid, half)

    def d_terms(self, ctx: StepContext):
        if ctx.phase != "d" or ctx.real_logits is None:
            return None
        logits = ctx.real_logits.detach()
        signs = (logits.float() - self._threshold).sign().sum()
        count = logits.numel()
        images = len(ctx.real) if ctx.real is not None else len(logits) * ctx.pack
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # summed over ranks at every D step (one scalar), not only when p adapts: then every
            # rank holds the same totals at any step, so rank 0's checkpoint resumes them exactly
            world = torch.distributed.get_world_size()
            torch.distributed.all_reduce(signs)
            count, images = count * world, images * world
        if self._signs.device != signs.device:
            self._signs = self._signs.to(signs.device)
        self._signs = self._signs + signs
        self._count += count
        self._images += images
        return None

    def end_step(self, ctx: StepContext) -> None:
        if (ctx.step + 1) % self.interval or self._count == 0:
            return
        self._rt = self._signs / self._count  # every rank the same r_t, so the same p
        step = torch.sign(self._rt - self.target) * (self._images / self.speed)
        self._p = (self._p.to(self._signs.device) + step).clamp(0.0, 1.0)
        self._signs, self._count, self._images = torch.zeros_like(self._signs), 0, 0

    def log(self) -> dict[str, float]:
        out = {"p": float(self._p)}
        if self._rt is not None:
            out["rt"] = float(self._rt)
        return out

    def state_dict(self) -> dict:
        state = {"p": self._p.detach().cpu().clone(), "signs": self._signs.detach().cpu().clone(),
                 "count": self._count, "images": self._images}
        if self._rt is not None:
            state["rt"] = self._rt.detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self._p = state["p"].detach().clone().float().reshape(())
        self._signs = state["signs"].detach().clone().float().reshape(())
        self._count, self._images = int(state["count"]), int(state["images"])
        self._rt = state["rt"].detach().clone().float().reshape(()) if "rt" in state else None
