"""Any folder of images, decoded once with Pillow into one uint8 tensor.

Layout: ``root/<class>/**/<image>`` gives labels (classes = subfolder names,
sorted); images lying directly in ``root`` give an unlabelled dataset
(``num_classes`` 0). Each image is resized so its shorter side is
``image_size`` and center-cropped to ``image_size``×``image_size``. The result is
1-channel if every image is grayscale, RGB otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import GanzooError
from .base import InMemoryDataset
from .files import check_split

NAME = "image-folder"
DEFAULT_SIZE = 64
EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                        ".ppm", ".pgm", ".pbm"})
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


# the largest image ganzoo decodes (64 MP, 192 MiB as RGB): above it a user's folder holds a
# scan or a decompression bomb, either way not a training image to decode into memory
MAX_PIXELS = 1 << 26


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in EXTENSIONS and not p.name.startswith(".") and p.is_file()


def _images_under(d: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames) if _is_image(Path(dirpath) / f)]
    return out


def scan(root: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """``(files, labels, class_names)``; labels are empty when unlabelled."""
    top = sorted(p for p in root.iterdir() if _is_image(p))
    class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                        key=lambda p: p.name)
    classes = [(d, _images_under(d)) for d in class_dirs]
    classes = [(d, files) for d, files in classes if files]
    if top and classes:
        raise GanzooError(f"{NAME}: {root} has images both directly inside it and in "
                          f"subfolders ({', '.join(d.name for d, _ in classes[:3])}); use "
                          f"one class folder per label, or only loose images for unlabelled data")
    if top:
        return top, [], ()
    if not classes:
        raise GanzooError(f"{NAME}: no images ({', '.join(sorted(EXTENSIONS))}) in {root}")
    files, labels = [], []
    for k, (_, fs) in enumerate(classes):
        files += fs
        labels += [k] * len(fs)
    return files, labels, tuple(d.name for d, _ in classes)


def _convert(img: Image.Image, gray: bool) -> Image.Image:
    """``img`` as "L" (gray) or "RGB"; transparency is composited over white."""
    if img.mode.startswith("I;16"):  # 16-bit grayscale PNG: scale, don't clip
        arr = (np.asarray(img, dtype=np.uint16).astype(np.uint32) * 255 + 32767) // 65535
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            img.mode == "P" and "transparency" in img.info):
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    target = "L" if gray else "RGB"
    return img if img.mode == target else img.convert(target)


def _fit(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic, antialiased), then center crop."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def load_image_folder(split: str = "train", root: str | None = None,
                      image_size: int | None = None) -> InMemoryDataset:
    """Any folder of images (Pillow): subfolders = classes; resized and center-cropped (default 64)."""
    check_split(NAME, split, ("train",))
    if root is None:
        raise GanzooError(f"{NAME} needs a folder: pass root=PATH (--data-root)")
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise GanzooError(f"{NAME}: {str(root_path)!r} is not a directory")
    size = int(image_size or DEFAULT_SIZE)
    if size < 1:
        raise GanzooError(f"{NAME}: image_size must be positive, got {size}")
    files, labels, class_names = scan(root_path)

    modes = []
    for f in files:  # header only: decides 1 or 3 channels before decoding anything
        try:
            with Image.open(f) as im:  # PIL refuses > 2x its pixel limit here (decompression bomb)
                if im.width * im.height > MAX_PIXELS:
                    raise GanzooError(f"{f}: {im.width}×{im.height} pixels is more than ganzoo reads "
                                      f"({MAX_PIXELS:,} pixels at most); resize it first")
                modes.append(im.mode)
        except Image.DecompressionBombError as exc:
            raise GanzooError(f"{f}: too large to read safely ({exc})") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise GanzooError(f"{f}: not a readable image ({exc})") from None
    gray = all(m in GRAY_MODES for m in modes)
    channels = 1 if gray else 3

    data = torch.empty(len(files), channels, size, size, dtype=torch.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im.draft("L" if gray else "RGB", (size, size))  # JPEG: decode at reduced scale
                im = ImageOps.exif_transpose(im)
                arr = np.array(_fit(_convert(im, gray), size))  # a writable copy
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise GanzooError(f"{f}: cannot decode image ({exc})") from None
        t = torch.from_numpy(arr)
        data[i] = t.unsqueeze(0) if gray else t.permute(2, 0, 1)
    label_t = torch.tensor(labels, dtype=torch.int64) if class_names else None
    return InMemoryDataset(data, label_t, len(class_names), NAME, class_names)
