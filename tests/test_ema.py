"""The EMA generator at inference: averaged spectral-norm vectors are made unit again
(ganzoo/ema.py), on a copy, and only where there is spectral norm."""
from __future__ import annotations

import torch
from torch import nn
from timm.utils import ModelEmaV3

from ganzoo.ema import for_inference, normalize_spectral_vectors


def sn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Linear(8, 8)), nn.ReLU(),
                         nn.utils.parametrizations.spectral_norm(nn.Linear(8, 1)))


def test_averaged_vectors_are_short_and_for_inference_makes_them_unit_on_a_copy():
    live = sn_net().train()
    ema = ModelEmaV3(live, decay=0.5)
    for _ in range(3):  # the live u, v move (new weights, one power iteration per forward)
        with torch.no_grad():
            live[0].parametrizations.weight.original.add_(torch.randn(8, 8))
        live(torch.randn(4, 8))
        ema.update(live)
    sn = ema.module[0].parametrizations.weight[0]
    assert sn._u.norm() < 0.999  # what timm's buffer interpolation leaves
    W = ema.module[0].parametrizations.weight.original.detach()
    ema.module.eval()
    too_large = ema.module[0].weight
    assert torch.linalg.matrix_norm(too_large, ord=2) > 1.0 + 1e-3  # sigma = u·Wv underestimated
    fixed = for_inference(ema.module)
    assert fixed is not ema.module and sn._u.norm() < 0.999  # the stored EMA state is untouched
    fixed_sn = fixed[0].parametrizations.weight[0]
    torch.testing.assert_close(fixed_sn._u.norm(), torch.tensor(1.0))
    torch.testing.assert_close(fixed_sn._v.norm(), torch.tensor(1.0))
    sigma = fixed_sn._u @ W @ fixed_sn._v
    torch.testing.assert_close(fixed[0].weight, W / sigma)
    # unit u, v give u·Wv ≤ σ_max(W), equal at the singular vectors: the norm is ≥ 1, and
    # closer to 1 than with the shortened vectors
    norm = torch.linalg.matrix_norm(fixed[0].weight, ord=2)
    assert 1.0 - 1e-4 <= norm < torch.linalg.matrix_norm(too_large, ord=2)


def test_a_model_without_spectral_norm_is_returned_as_it_is():
    plain = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    assert for_inference(plain) is plain
    assert normalize_spectral_vectors(plain) is plain
