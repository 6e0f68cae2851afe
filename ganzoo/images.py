"""Converting between stored uint8 images and a model's value range, and writing grids."""
from __future__ import annotations

from pathlib import Path

import torch

from .fileio import atomic_write


def pixel_range(output_range: tuple[float, float] | None) -> tuple[float, float]:
    """``(lo, hi)`` that a generator's images span: its ``output_range``, or [0, 1] when that
    is None (what the trainer feeds such a model and how its samples are read back)."""
    return tuple(output_range) if output_range is not None else (0.0, 1.0)


def to_model_range(x: torch.Tensor, output_range: tuple[float, float] | None) -> torch.Tensor:
    """uint8 images → floats in ``output_range``; float data (points) pass through."""
    if x.dtype != torch.uint8:
        return x.float()
    lo, hi = pixel_range(output_range)
    return x.float() * ((hi - lo) / 255.0) + lo


def to_uint8(x: torch.Tensor, output_range: tuple[float, float] | None) -> torch.Tensor:
    """Model outputs in ``output_range`` → uint8 images (clamped, rounded)."""
    lo, hi = pixel_range(output_range)
    return ((x.detach().float() - lo) * (255.0 / (hi - lo))).round_().clamp_(0, 255).to(torch.uint8)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, padding: int = 2) -> Path:
    """Write a uint8 N×C×H×W batch as one PNG grid (``nrow`` images per row)."""
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(images.cpu(), nrow=nrow, padding=padding, pad_value=0)
    arr = grid.permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))


def save_scatter(points: torch.Tensor, path: str | Path, centers: torch.Tensor | None = None,
                 size: int = 512) -> Path:
    """Write 2-D points (blue) over optional mode centres (red rings) as a PNG."""
    from PIL import Image, ImageDraw

    pts = points.detach().float().cpu()
    ref = torch.cat([pts, centers.float().cpu()]) if centers is not None else pts
    finite = ref[torch.isfinite(ref).all(1)]
    lo, hi = (finite.min(0).values, finite.max(0).values) if len(finite) else (torch.zeros(2), torch.ones(2))
    if centers is not None:  # frame the mixture, not stray samples
        c = centers.float().cpu()
        pad = 0.25 * (c.max(0).values - c.min(0).values).clamp(min=1.0)
        lo, hi = c.min(0).values - pad, c.max(0).values + pad
    span = (hi - lo).clamp(min=1e-6)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)

    def to_px(p):
        u = (p - lo) / span
        return float(u[0]) * (size - 1), float(1 - u[1]) * (size - 1)

    for p in pts:
        if torch.isfinite(p).all():
            x, y = to_px(p)
            draw.ellipse((x - 1, y - 1, x + 1, y + 1), fill=(30, 80, 200))
    if centers is not None:
        for c in centers.float().cpu():
            x, y = to_px(c)
            draw.ellipse((x - 5, y - 5, x + 5, y + 5), outline=(220, 30, 30), width=2)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
