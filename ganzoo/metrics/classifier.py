"""The evaluator classifier: a small CNN whose penultimate layer is the feature space.

Inception is a poor judge of 28×28 grayscale images and its weights cannot be
downloaded offline, so each dataset gets its own small classifier trained by
``ganzoo evaluator train``. Its ``feature_dim``-wide feature layer plays the
role of Inception's pool3 features for FID, KID, precision/recall and
density/coverage; its logits drive the class histogram and label accuracy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class EvaluatorOptions:
    """Constructor options of :class:`EvaluatorNet` (stored on the evaluator's card)."""

    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 128
    dropout: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class EvaluatorNet(nn.Module):
    """Three conv blocks (w, 2w, 4w channels; max-pool after the first two) → average
    pool to 3×3 → a linear feature layer → ReLU, dropout → class logits."""

    architecture = "ganzoo-evaluator-cnn-v1"

    def __init__(self, options: EvaluatorOptions | None = None):
        super().__init__()
        self.options = options = options or EvaluatorOptions()
        w = options.width
        self.body = nn.Sequential(
            _conv_block(options.in_channels, w), nn.MaxPool2d(2),
            _conv_block(w, 2 * w), nn.MaxPool2d(2),
            _conv_block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
        )
        self.feature = nn.Linear(4 * w * 9, options.feature_dim)
        self.dropout = nn.Dropout(options.dropout)
        self.head = nn.Linear(options.feature_dim, options.num_classes)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 images in [0, 255] → floats in [-1, 1]."""
        return images.float() * (2.0 / 255.0) - 1.0

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: preprocessed images. Features are the feature layer's pre-activation
        outputs (closer to Gaussian than post-ReLU values, which FID assumes)."""
        f = self.feature(self.body(x))
        return f, self.head(self.dropout(F.relu(f)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]
