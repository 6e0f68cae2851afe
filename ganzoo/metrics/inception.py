"""Optional Inception-v3 FID, for comparison with published numbers.

Needs torch-fidelity or pytorch-fid *and* their Inception weights already in
torch's hub cache: nothing is ever downloaded. When neither is there, the
metric raises one clear line (tests skip it).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import GanzooError
from .base import Metric, SampleSet
from .fid import frechet_distance
from .linalg import mean_and_covariance

FEATURE_DIM = 2048
# File names the two packages download their (identical) FID Inception weights to.
TORCH_FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


def _cached(filename: str) -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return path if path.is_file() else None


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def inception_backend() -> str | None:
    """``"torch-fidelity"``, ``"pytorch-fid"`` or ``None`` (not installed, or weights not cached)."""
    if _installed("torch_fidelity") and _cached(TORCH_FIDELITY_WEIGHTS):
        return "torch-fidelity"
    if _installed("pytorch_fid") and _cached(PYTORCH_FID_WEIGHTS):
        return "pytorch-fid"
    return None


def _extractor(device):
    """A function uint8 N×3×H×W → N×2048 pool features."""
    backend = inception_backend()
    if backend == "torch-fidelity":
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                          feature_extractor_weights_path=str(_cached(TORCH_FIDELITY_WEIGHTS)))
        net = net.to(device)
        return lambda x: net(x.to(device))[0]
    if backend == "pytorch-fid":
        from pytorch_fid.inception import InceptionV3

        # The weights file is in the hub cache, so torch.hub loads it without a download.
        net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]]).to(device).eval()
        return lambda x: net(x.to(device).float() / 255.0)[0].flatten(1)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    raise GanzooError(f"fid-inception needs torch-fidelity (pip install 'ganzoo[fid-inception]') or "
                      f"pytorch-fid with Inception weights already in {hub}; nothing is downloaded")


class InceptionFID(Metric):
    """FID in Inception-v3 pool features (optional: torch-fidelity/pytorch-fid with cached weights)."""

    name = "fid-inception"
    better = {"fid_inception": "lower"}
    needs = ("images",)
    min_samples = FEATURE_DIM + 1

    def __init__(self, batch_size: int = 100):
        self.batch_size = batch_size

    @torch.no_grad()
    def _features(self, extract, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return torch.cat([extract(chunk).double().cpu() for chunk in images.split(self.batch_size)])

    def measure(self, real: SampleSet, fake: SampleSet, device="cpu", **ctx):
        extract = _extractor(device)
        mu_r, cov_r = mean_and_covariance(self._features(extract, self.require(real, "images", "reference")))
        mu_f, cov_f = mean_and_covariance(self._features(extract, self.require(fake, "images")))
        return {"fid_inception": frechet_distance(mu_r, cov_r, mu_f, cov_f)}
