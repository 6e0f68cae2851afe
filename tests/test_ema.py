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


def test_every_way_to_sample_a_spectrally_normalised_ema_generator_gets_unit_vectors(tmp_path):
    """A tiny BigGAN (spectral norm in G) whose stored EMA vectors are shortened, as averaging
    leaves them: the in-training sampler, a generator built from the checkpoint, the export
    written from it and a load of an export all see unit u and v."""
    import json

    from safetensors.torch import load_file, save_file

    from ganzoo.checkpoint import Checkpoint
    from ganzoo.config import TrainConfig
    from ganzoo.ema import _spectral_norms
    from ganzoo.export import generator_from_checkpoint, load_export, sha256_of
    from ganzoo.training import train
    from ganzoo.training.build import build_run

    cfg = TrainConfig(arch="biggan", dataset="fashion-mnist", subset=64, steps=2, batch_size=8,
                      arch_options={"ngf": 8, "ndf": 8, "shared_dim": 8, "latent_dim": 12}, out=str(tmp_path / "r"),
                      progress=False, sample_every=10**6, checkpoint_every=10**6, device="cpu")
    run_dir = train(cfg)

    def norms(G):
        found = [float(v.norm()) for sn in _spectral_norms(G) for v in (sn._u, sn._v)]
        assert found
        return found

    def unit(G):
        return all(abs(n - 1) < 1e-3 for n in norms(G))

    state = Checkpoint.load(run_dir).state
    state["ema"] = {k: v * 0.8 if k.endswith(("._u", "._v")) else v for k, v in state["ema"].items()}
    run = build_run(cfg, state)  # as a resume builds it
    assert max(norms(run.ema.module)) < 0.81 and unit(run.sampler())
    assert max(norms(run.ema.module)) < 0.81  # the stored EMA state is not touched
    assert unit(generator_from_checkpoint(Checkpoint(state))[0])

    export = run_dir / "export"  # an export written with shortened vectors (before the fix)
    weights = load_file(str(export / "generator.safetensors"))
    save_file({k: v * 0.8 if k.endswith(("._u", "._v")) else v for k, v in weights.items()},
              str(export / "generator.safetensors"))
    config = json.loads((export / "config.json").read_text())
    (export / "config.json").write_text(json.dumps({**config, "sha256": sha256_of(export / "generator.safetensors")}))
    assert unit(load_export(export))
