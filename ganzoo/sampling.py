"""Drawing samples from a generator into a PNG grid or an .npz file."""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .errors import GanzooError
from .images import save_grid, save_scatter, to_uint8
from .latents import check_truncation


def sample_labels(n: int, num_classes: int, class_index: int | None) -> torch.Tensor | None:
    """Labels for ``n`` samples: all ``class_index``, else classes in blocks (one class per grid row)."""
    if not num_classes:
        if class_index is not None:
            raise GanzooError("--class needs a conditional model; this one is unconditional")
        return None
    if class_index is not None:
        if not 0 <= class_index < num_classes:
            raise GanzooError(f"--class must be in 0..{num_classes - 1}, got {class_index}")
        return torch.full((n,), class_index, dtype=torch.long)
    per_class = math.ceil(n / num_classes)
    return torch.arange(num_classes).repeat_interleave(per_class)[:n]


@contextmanager
def eval_mode(module: torch.nn.Module):
    """``module`` in eval mode for the block, then each submodule's own mode back: a plain
    ``train(was_training)`` would also flip a submodule its owner keeps in eval mode."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


@torch.no_grad()
def generate(G, n: int, class_index: int | None = None, seed: int = 0, batch_size: int = 500,
             truncation: float | None = None, by_class: bool = False,
             as_uint8: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples of an eval-mode generator, reproducible for a seed; the latents come
    from ``G.sample_latent`` (truncated to [-t, t] with ``truncation`` t), drawn on the CPU.
    A conditional model's labels follow its ``sampling['class_prior']`` unless ``by_class`` asks for
    equal blocks (a grid with one class per row). ``as_uint8``: images converted batch by batch
    (a quarter of float32's memory, which a million samples would need in full first)."""
    device = next(G.parameters()).device
    g = torch.Generator().manual_seed(seed)
    z, forward_kw = latents_for(G, n, g, truncation)
    if class_index is None and not by_class and (getattr(G, "sampling", None) or {}).get("class_prior"):
        labels = G.sample_labels(n, generator=g, device="cpu")  # the model's label frequencies
    else:
        labels = sample_labels(n, G.num_classes, class_index)
    outs = []
    for i in range(0, n, batch_size):
        zl = z[i:i + batch_size].to(device)
        ll = None if labels is None else labels[i:i + batch_size].to(device)
        out = G(zl, ll, **forward_kw).float().cpu()
        outs.append(to_uint8(out, G.output_range) if as_uint8 and out.dim() == 4 else out)
    return torch.cat(outs), labels


def latents_for(G, n: int, generator: torch.Generator, truncation: float | None):
    """``(z, forward keyword arguments)`` for ``n`` samples with the truncation trick at
    ``truncation``: in z (``sample_latent`` truncates the prior) unless the generator sets
    ``truncation_in_forward`` (StyleGAN's ψ, towards the mean of w, applied in ``forward``)."""
    if truncation is None:  # call sample_latent as plugins written before truncation expect
        return G.sample_latent(n, generator=generator, device="cpu"), {}
    if getattr(G, "truncation_in_forward", False):
        return G.sample_latent(n, generator=generator, device="cpu"), {"truncation": truncation}
    return G.sample_latent(n, generator=generator, device="cpu", truncation=truncation), {}


def write_samples(model, n: int, out: str | Path, class_index: int | None = None, seed: int = 0,
                  nrow: int | None = None, device: str = "cpu", truncation: float | None = None,
                  allow_unverified: bool = False) -> Path:
    from .references import load_generator

    from . import limits

    limits.check("n", n, "-n")
    limits.check("nrow", nrow)
    limits.check("seed", seed)
    limits.check("class", class_index)
    if not isinstance(model, torch.nn.Module):
        from .distributed import resolve_device

        device = resolve_device(device)  # checked, auto resolved
    out = Path(out)
    if out.suffix not in (".png", ".npz"):
        raise GanzooError(f"--out must end in .png (a grid) or .npz (arrays), got {out.name!r}")
    check_truncation(truncation)
    G = (model if isinstance(model, torch.nn.Module)
         else load_generator(model, device=device, allow_unverified=allow_unverified))
    _check_memory(n, G.data_shape, out.suffix)
    x, labels = generate(G, n, class_index, seed, truncation=truncation,
                         by_class=out.suffix == ".png" and len(G.data_shape) == 3, as_uint8=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    is_image = x.dim() == 4
    if out.suffix == ".png":
        if is_image:
            if nrow is None:
                nrow = math.ceil(n / G.num_classes) if G.num_classes and class_index is None else 8
            return save_grid(x, out, nrow=nrow)
        return save_scatter(x, out, centers=_mixture_centers(G))
    arrays = {"images": x.numpy()} if is_image else {"points": x.numpy()}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    from .fileio import atomic_write

    def write(tmp):
        with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to a tmp name
            np.savez_compressed(fh, **arrays)

    return atomic_write(out, write)


def _check_memory(n: int, data_shape, suffix: str) -> None:
    """One line, before any sampling, for ``n`` samples the machine's RAM cannot hold: the kernel
    killed ``ganzoo sample -n 1000000`` of a 64-px RGB model (12 GB of uint8, twice that with the
    grid or the compressed copy) with no message."""
    from .limits import machine_memory

    if len(data_shape) != 3:
        return  # points: 8 bytes a coordinate, 16 MB a million 2-D samples
    c, h, w = data_shape
    # bytes a sample: .npz, the uint8 images and their compressed copy; .png, the images, the
    # 3-channel grid torchvision makes, its contiguous copy and Pillow's 4 bytes a pixel
    per_sample = 2 * c * h * w if suffix == ".npz" else (c + 3 + 3 + 4) * h * w
    need, have = n * per_sample, machine_memory()
    if have and need > have // 2:
        raise GanzooError(f"-n {n} samples of {'×'.join(map(str, data_shape))} need about {need / 2**30:,.1f} "
                          f"GiB for the {suffix} file, more than half of this machine's "
                          f"{have / 2**30:,.0f} GiB: ask for fewer (several calls with other --seed values)")


def _mixture_centers(G) -> torch.Tensor | None:
    """Mode centres of the 2-D dataset a generator was trained on, to draw under its samples."""
    name = getattr(G, "export_config", {}).get("dataset")
    if not name:
        return None
    try:
        from .catalog import create_dataset

        return getattr(create_dataset(name), "centers", None)
    except GanzooError:
        return None
