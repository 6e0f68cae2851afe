"""Evaluator weights on disk: ``<dir>/model.safetensors`` plus ``<dir>/card.json``.

The card records the architecture and its options, how the weights were
trained (the exact command), their test accuracy and the sha256 of the
weights file. Loading checks the sha256 before reading a single tensor, so
a corrupted or swapped file is refused with one clear line.

Shipped evaluators live in ``registry/evaluators/<dataset>/`` of the
repository (``ganzoo/_registry/evaluators/`` in a wheel); ``ganzoo evaluator
train`` writes new ones anywhere.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import GanzooError
from ..fileio import atomic_write, read_json_document, sha256_of
from ..zoo import shipped_registry
from .classifier import EvaluatorNet, EvaluatorOptions

FORMAT = "ganzoo-evaluator/1"
WEIGHTS = "model.safetensors"
CARD = "card.json"
SHIPPED_DIR = shipped_registry() / "evaluators"


def shipped_evaluators() -> list[str]:
    """Datasets with an evaluator under ``registry/evaluators/``."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(d.name for d in SHIPPED_DIR.iterdir() if (d / CARD).is_file())


def save_evaluator(net: EvaluatorNet, card: dict, out_dir: str | Path) -> dict:
    """Write the weights (float tensors as float16) and the card with their sha256; returns the card."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous().cpu()
               for k, v in net.state_dict().items()}
    atomic_write(out / WEIGHTS, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
    card = {"format": FORMAT, **card, "architecture": net.architecture, "options": net.options.to_dict(),
            "weights": WEIGHTS, "dtype": "float16", "size_bytes": (out / WEIGHTS).stat().st_size,
            "sha256": sha256_of(out / WEIGHTS)}
    atomic_write(out / CARD, lambda p: p.write_text(json.dumps(card, indent=2) + "\n"))
    return card


def read_card(directory: str | Path) -> dict:
    return read_json_document(Path(directory) / CARD, FORMAT, "an evaluator directory")


class Evaluator:
    """A loaded evaluator classifier: embeds uint8 images into (features, logits)."""

    def __init__(self, net: EvaluatorNet, card: dict, directory: Path):
        self.net = net.eval()
        self.card = card
        self.directory = directory

    @property
    def sha256(self) -> str:
        return self.card["sha256"]

    #: bump when :meth:`embed` or the network's ``preprocess`` / feature layer change what an image
    #: embeds to: cached reference features are keyed on it (and on the weights and options)
    EMBEDDING = "embed-v1: bilinear antialiased resize to image_size, preprocess, penultimate features"

    @property
    def feature_key(self) -> str:
        """What the features of an image depend on besides the image: the weights, the options
        (image size above all: it decides the resize) and the embedding code's version."""
        import hashlib
        import json

        text = json.dumps([self.sha256, self.options.to_dict(), self.EMBEDDING], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def dataset(self) -> str:
        return self.card.get("dataset", "?")

    @property
    def options(self) -> EvaluatorOptions:
        return self.net.options

    def to(self, device) -> "Evaluator":
        self.net.to(device)
        return self

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 N×C×H×W images → (N×feature_dim features, N×classes logits), on the CPU.

        Images of another size are resized (bilinear, antialiased) to the
        evaluator's; another channel count is an error.
        """
        opts = self.options
        if images.dim() != 4 or images.shape[1] != opts.in_channels:
            raise GanzooError(f"the {self.dataset} evaluator takes {opts.in_channels}-channel images, "
                              f"got samples of shape {tuple(images.shape[1:])}")
        device = next(self.net.parameters()).device
        features, logits = [], []
        for chunk in images.split(batch_size):
            x = chunk.to(device)
            if tuple(x.shape[-2:]) != (opts.image_size, opts.image_size):
                x = F.interpolate(x.float(), size=(opts.image_size, opts.image_size), mode="bilinear",
                                  antialias=True, align_corners=False).round().clamp(0, 255)
            f, l = self.net.features_and_logits(self.net.preprocess(x))
            features.append(f.float().cpu())
            logits.append(l.float().cpu())
        return torch.cat(features), torch.cat(logits)


def load_evaluator(dataset_or_dir: str | Path, device: str = "cpu") -> Evaluator:
    """The evaluator of a dataset (``registry/evaluators/<dataset>``) or in a directory,
    after checking its weights against the sha256 on its card."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(dataset_or_dir)
    if not (directory / CARD).is_file():
        shipped = SHIPPED_DIR / str(dataset_or_dir)
        if not (shipped / CARD).is_file():
            known = ", ".join(shipped_evaluators()) or "none"
            raise GanzooError(f"no evaluator for {str(dataset_or_dir)!r} (shipped: {known}); train one "
                              f"with `ganzoo evaluator train DATASET` and pass --evaluator DIR")
        directory = shipped
    card = read_card(directory)
    name = card.get("weights", WEIGHTS)
    if not isinstance(name, str) or Path(name).name != name:  # a file beside the card, nothing else
        raise GanzooError(f"{str(directory / CARD)!r}: weights must name a file in its directory, got {name!r}")
    weights = directory / name
    if not os.path.lexists(weights):
        raise GanzooError(f"{str(directory)!r} has no {weights.name}")
    from ..fileio import check_regular_file

    check_regular_file(weights, "evaluator weights", 1 << 30)  # a shipped evaluator is ~100 KB
    actual = sha256_of(weights)
    if actual != card.get("sha256"):
        raise GanzooError(f"{str(weights)!r} failed its sha256 check (card says "
                          f"{str(card.get('sha256'))[:12]}…, file is {actual[:12]}…): the file is "
                          f"corrupted or was modified; nothing was loaded")
    if card.get("architecture") != EvaluatorNet.architecture:
        raise GanzooError(f"{str(directory)!r} holds a {card.get('architecture')!r} evaluator; this "
                          f"ganzoo reads {EvaluatorNet.architecture!r}")
    try:
        net = EvaluatorNet(EvaluatorOptions(**card["options"]))
        tensors = load_file(str(weights))
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    except (SafetensorError, OSError, TypeError, RuntimeError, KeyError) as exc:
        raise GanzooError(f"{str(weights)!r} does not load as its card describes "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return Evaluator(net, card, directory).to(device)
