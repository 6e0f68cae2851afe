"""The built-in architecture plugins (mlp, dcgan, cgan) and the conformance kit."""
from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import ganzoo
from ganzoo import GanzooError
from ganzoo.catalog import Architecture, get_catalog
from ganzoo.testing import architectures_from, check_architecture
from ganzoo.training import DiscriminatorPair

try:
    import ganzoo_cgan
    import ganzoo_dcgan
    import ganzoo_mlp
except ImportError as exc:  # fail loudly: a skip would hide a missing install step in CI
    raise ImportError(f"{exc}; install the built-in plugins with pip install -e plugins/ganzoo-mlp "
                      "-e plugins/ganzoo-dcgan -e plugins/ganzoo-cgan") from exc


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: one intra-op thread


MLP_REFERENCE = dict(g_hidden="128,256,512,1024", bn_first="false", bn_eps="0.8")  # as typed on the CLI
SMALL = dict(ngf=8, ndf=8)

CONFORMANCE = [
    ("mlp", dict(data_shape=(2,))),
    ("mlp", dict(data_shape=(1, 28, 28))),
    ("mlp", dict(MLP_REFERENCE, output_activation="sigmoid", d_dropout=0.3, leak=0.1)),
    ("mlp", dict(data_shape="2", g_hidden="32,16", d_hidden="16", g_batchnorm="false", latent_dim="8")),
    ("cmlp", dict(data_shape=(2,), num_classes=50, latent_dim=2)),
    ("cmlp", dict(data_shape=(1, 28, 28), num_classes=10, label_dim=4)),
    ("dcgan", dict(data_shape=(1, 28, 28), **SMALL)),
    ("dcgan", dict(data_shape=(1, 32, 32), **SMALL)),
    ("dcgan", dict(data_shape=(1, 64, 64), **SMALL)),
    ("dcgan", dict(data_shape=(3, 32, 32), **SMALL)),
    ("dcgan", dict(data_shape=(3, 64, 64), latent_dim=16, **SMALL)),
    ("dcgan", dict(data_shape=(1, 28, 28), spectral_norm=True, **SMALL)),
    ("dcgan", dict(data_shape=(3, 32, 32), extra_layers=2, **SMALL)),
    ("cgan", dict(data_shape=(1, 28, 28), num_classes=10, **SMALL)),
    ("cgan", dict(data_shape=(3, 32, 32), num_classes=5, **SMALL)),
    ("cgan", dict(data_shape=(1, 32, 32), num_classes=3, spectral_norm=False, **SMALL)),
    ("cgan", dict(data_shape=(1, 28, 28), num_classes=4, label_input=True, **SMALL)),
    ("cgan", dict(data_shape=(1, 28, 28), num_classes=4, label_input=True, minibatch_std=4, **SMALL)),
    ("cgan", dict(data_shape=(1, 64, 64), num_classes=1, **SMALL)),
]


@pytest.mark.parametrize("name,options", CONFORMANCE,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFORMANCE)])
def test_conformance(name, options, test_device):
    check_architecture(name, device=test_device, **options)


def modules(net, *types):
    return [m for m in net.modules() if isinstance(m, types)]


def n_params(net):
    return sum(p.numel() for p in net.parameters())


# -- registration ------------------------------------------------------------------
def test_plugins_register_through_entry_points():
    assert {"mlp", "cmlp", "dcgan", "cgan"} <= set(ganzoo.list_architectures())
    entries = {e.name: e for e in get_catalog().entries("architecture")}
    assert {n: entries[n].plugin for n in ("mlp", "cmlp", "dcgan", "cgan")} == {
        "mlp": "ganzoo-mlp", "cmlp": "ganzoo-mlp", "dcgan": "ganzoo-dcgan", "cgan": "ganzoo-cgan"}
    assert [ganzoo.get_architecture(n).conditional for n in ("mlp", "cmlp", "dcgan", "cgan")] == [
        False, True, False, True]
    assert all(entries[n].description for n in ("mlp", "cmlp", "dcgan", "cgan"))


def test_registration_builds_no_model(monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built during registration")

    monkeypatch.setattr(nn.Module, "__init__", no_model)
    found = {}
    for plugin in (ganzoo_mlp, ganzoo_dcgan, ganzoo_cgan):
        found.update(architectures_from(plugin))
    assert sorted(found) == ["cgan", "cmlp", "dcgan", "mlp"] and found["cgan"].conditional


def test_plugins_do_not_import_timm():
    code = ("import sys, ganzoo; ganzoo.list_architectures(); import ganzoo_mlp, ganzoo_dcgan, ganzoo_cgan; "
            "print(sorted(m for m in ('timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- mlp -----------------------------------------------------------------------------
def test_mlp_reference_layers():
    arch = ganzoo.get_architecture("mlp")
    opts = arch.make_options(**MLP_REFERENCE)
    g, d = arch.create_generator(opts), arch.create_discriminator(opts)
    assert [(m.in_features, m.out_features) for m in modules(g, nn.Linear)] == [
        (100, 128), (128, 256), (256, 512), (512, 1024), (1024, 784)]
    bns = modules(g, nn.BatchNorm1d)
    assert [(m.num_features, m.eps) for m in bns] == [(256, 0.8), (512, 0.8), (1024, 0.8)]
    assert {m.negative_slope for m in modules(g, nn.LeakyReLU)} == {0.2}
    assert len(modules(g, nn.LeakyReLU)) == 4 and isinstance(g.net[-1], nn.Tanh)
    assert [type(m).__name__ for m in g.net[:4]] == ["Linear", "LeakyReLU", "Linear", "BatchNorm1d"]
    assert [(m.in_features, m.out_features) for m in modules(d, nn.Linear)] == [(784, 512), (512, 256), (256, 1)]
    assert not modules(d, nn.Dropout, nn.BatchNorm1d) and len(modules(d, nn.LeakyReLU)) == 2
    lin = lambda i, o: i * o + o  # noqa: E731
    assert n_params(g) == (lin(100, 128) + lin(128, 256) + lin(256, 512) + lin(512, 1024) + lin(1024, 784)
                           + 2 * (256 + 512 + 1024))
    assert n_params(d) == lin(784, 512) + lin(512, 256) + lin(256, 1)
    assert g(torch.randn(4, 100)).shape == (4, 1, 28, 28) and g.output_range == (-1.0, 1.0)


def test_mlp_defaults_and_output_activation():
    arch = ganzoo.get_architecture("mlp")
    g = arch.create_generator()
    assert [m.out_features for m in modules(g, nn.Linear)] == [128, 128, 100, 784]
    assert [m.eps for m in modules(g, nn.BatchNorm1d)] == [1e-5] * 3
    points = arch.create_generator(data_shape=(2,))
    assert points.output_range is None and not modules(points, nn.Tanh)
    assert points(torch.randn(3, 100)).shape == (3, 2)
    assert arch.create_generator(output_activation="sigmoid").output_range == (0.0, 1.0)
    assert arch.create_generator(data_shape=(2,), output_activation="tanh").output_range == (-1.0, 1.0)
    assert not modules(arch.create_generator(g_batchnorm=False), nn.BatchNorm1d)
    assert len(modules(arch.create_discriminator(d_dropout=0.5), nn.Dropout)) == 2
    with pytest.raises(GanzooError, match="d_dropout"):
        arch.make_options(d_dropout=1.5)
    with pytest.raises(GanzooError, match="output_activation"):
        arch.make_options(output_activation="relu")


def test_mlp_pack_scores_packs_like_pacgan(tmp_path):
    """pack=k: D reads k samples concatenated; each sample gets its pack's logit, so a loss's
    mean over samples is the PacGAN loss's mean over packs, and real and fake never share a pack."""
    import torch.nn.functional as F

    from ganzoo.config import TrainConfig
    from ganzoo.training import train

    torch.manual_seed(0)
    d = ganzoo.create_discriminator("mlp", data_shape=(2,), d_hidden="8", pack=3)
    assert modules(d, nn.Linear)[0].in_features == 6
    assert not DiscriminatorPair(d).joint  # real and fake never share a pack
    real, fake = torch.randn(6, 2), torch.randn(6, 2) + 2
    packs = d.net(real.reshape(2, 6)).squeeze(1)
    logits = d(real)
    torch.testing.assert_close(logits, packs.repeat_interleave(3))
    moved = real.clone()
    moved[4] += 1.0  # the second pack only
    assert torch.equal(d(moved)[:3], logits[:3]) and not torch.equal(d(moved)[3:], logits[3:])
    r, f, _ = DiscriminatorPair(d)(real, fake, None)
    fake_packs = d.net(fake.reshape(2, 6)).squeeze(1)
    torch.testing.assert_close(ganzoo.create_loss("non-saturating").d_loss(r, f),
                               F.softplus(-packs).mean() + F.softplus(fake_packs).mean())
    with pytest.raises(GanzooError, match="pack=3 needs batches divisible by 3, got a batch of 5"):
        d(torch.randn(5, 2))
    with pytest.raises(GanzooError, match="pack must be >= 1"):
        ganzoo.get_architecture("mlp").make_options(pack=0)

    # Gradient penalties take the norm of each pack's gradient: R1 = γ/2 · mean over packs.
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d.net(x.reshape(2, 6)).sum(), x)
    torch.testing.assert_close(ganzoo.create_regularizer("r1", weight=10.0)(d, real, fake, None),
                               5.0 * grad.reshape(2, 6).pow(2).sum(1).mean())

    torch.manual_seed(5)  # GP: one ε per pack, the norm of each pack's gradient
    gp = ganzoo.create_regularizer("gp", weight=10.0)(d, real, fake, None)
    torch.manual_seed(5)
    eps = torch.rand(2, 1).repeat_interleave(3, 0)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d.net(x_hat.reshape(2, 6)).sum(), x_hat)
    torch.testing.assert_close(gp, 10.0 * (grad.reshape(2, 6).norm(dim=1) - 1).pow(2).mean())

    cfg = dict(arch="mlp", dataset="ring8", steps=3, progress=False, arch_options={"pack": 4, "d_hidden": "16"})
    with pytest.raises(GanzooError, match="packs of 4 samples: --batch-size must be a multiple of 4, got 30"):
        train(TrainConfig(batch_size=30, out=str(tmp_path / "bad"), **cfg))
    assert not (tmp_path / "bad").exists()  # refused before anything was written
    check_architecture("mlp", data_shape=(2,), pack=3)  # the plugin kit sizes batches by the pack
    run = train(TrainConfig(batch_size=32, out=str(tmp_path / "run"), regularizers=("r1:1",), **cfg))
    G = ganzoo.load_generator(str(run / "export"))
    assert G.sample(5)[0].shape == (5, 2)


# -- dcgan ---------------------------------------------------------------------------
def conv_specs(net):
    return [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.bias is not None)
            for m in modules(net, nn.Conv2d, nn.ConvTranspose2d)]


def test_dcgan64_reference_structure_and_params():
    arch = ganzoo.get_architecture("dcgan")
    opts = arch.make_options(data_shape=(1, 64, 64))
    g, d = arch.create_generator(opts), arch.create_discriminator(opts)
    assert conv_specs(g) == [(100, 512, 4, 1, 0, False), (512, 256, 4, 2, 1, False),
                             (256, 128, 4, 2, 1, False), (128, 64, 4, 2, 1, False), (64, 1, 4, 2, 1, True)]
    assert [m.num_features for m in modules(g, nn.BatchNorm2d)] == [512, 256, 128, 64]
    assert len(modules(g, nn.ReLU)) == 4 and isinstance(g.net[-1], nn.Tanh)
    assert conv_specs(d) == [(1, 64, 4, 2, 1, True), (64, 128, 4, 2, 1, False), (128, 256, 4, 2, 1, False),
                             (256, 512, 4, 2, 1, False), (512, 1, 4, 1, 0, True)]
    assert [m.num_features for m in modules(d, nn.BatchNorm2d)] == [128, 256, 512]
    assert {m.negative_slope for m in modules(d, nn.LeakyReLU)} == {0.2} and len(modules(d, nn.LeakyReLU)) == 4
    assert not isinstance(d.net[-1], nn.Sigmoid)
    # weights k·k·in·out, BatchNorm 2 per channel, biases only where no BatchNorm follows
    assert n_params(g) == 16 * (100 * 512 + 512 * 256 + 256 * 128 + 128 * 64 + 64 * 1) \
        + 2 * (512 + 256 + 128 + 64) + 1 == 3_574_657
    assert n_params(d) == 16 * (1 * 64 + 64 * 128 + 128 * 256 + 256 * 512 + 512 * 1) \
        + 2 * (128 + 256 + 512) + 64 + 1 == 2_763_585


@pytest.mark.parametrize("size,start,channels", [(28, 7, [128, 64]), (32, 4, [256, 128, 64])])
def test_dcgan_smaller_sizes(size, start, channels):
    arch = ganzoo.get_architecture("dcgan")
    g = arch.create_generator(data_shape=(3, size, size))
    d = arch.create_discriminator(data_shape=(3, size, size))
    specs = conv_specs(g)
    assert specs[0][:3] == (100, channels[0], start) and [s[1] for s in specs] == channels + [3]
    assert [s[3] for s in specs] == [1] + [2] * len(channels)
    assert [s[1] for s in conv_specs(d)] == channels[::-1] + [1] and conv_specs(d)[-1][2] == start
    with torch.no_grad():
        assert g.eval()(torch.randn(2, 100)).shape == (2, 3, size, size)


@pytest.mark.parametrize("shape", [(1, 48, 48), (3, 32, 28), (2,), (1, 16, 16)])
def test_dcgan_rejects_unsupported_sizes(shape):
    for name in ("dcgan", "cgan"):
        with pytest.raises(GanzooError) as err:
            ganzoo.get_architecture(name).make_options(data_shape=shape, num_classes=2)
        msg = str(err.value)
        assert "28, 32 or 64" in msg and str(tuple(shape)) in msg and "\n" not in msg


@pytest.mark.slow
def test_dcgan_spectral_norm_discriminator():
    """spectral_norm swaps D's BatchNorm for spectral norm on every conv: largest singular value 1."""
    torch.manual_seed(0)
    arch = ganzoo.get_architecture("dcgan")
    d = arch.create_discriminator(data_shape=(1, 28, 28), spectral_norm=True)
    convs = modules(d, nn.Conv2d)
    assert not modules(d, nn.BatchNorm2d) and all(nn.utils.parametrize.is_parametrized(c) for c in convs)
    assert [s[1] for s in conv_specs(d)] == [64, 128, 1] and all(c.bias is not None for c in convs)
    d.train()
    with torch.no_grad():
        for _ in range(100):  # power iterations
            d(torch.randn(2, 1, 28, 28))
    d.eval()
    for conv in convs:  # without spectral norm these are 0.24, 0.87 and 1.58
        sigma = torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2)
        assert abs(sigma.item() - 1) < 0.05
    assert DiscriminatorPair(d).joint  # no batch norm: real and fake go through in one forward
    assert modules(arch.create_discriminator(data_shape=(1, 28, 28)), nn.BatchNorm2d)  # default: the paper's


def test_dcgan_extra_layers_are_3x3_blocks_at_the_largest_hidden_resolution():
    """extra_layers=n (WGAN's DCGAN): n stride-1 3×3 conv blocks that keep the shape, in G before
    its output layer and in D after its first conv; none by default; a negative count is one line."""
    arch = ganzoo.get_architecture("dcgan")
    plain = arch.make_options(data_shape=(1, 28, 28), ngf=8, ndf=8)
    extra = arch.make_options(data_shape=(1, 28, 28), ngf=8, ndf=8, extra_layers=2)
    g0, g2 = arch.create_generator(plain), arch.create_generator(extra)
    d0, d2 = arch.create_discriminator(plain), arch.create_discriminator(extra)
    block = (8, 8, 3, 1, 1, False)  # G's last hidden width at 14×14, D's first
    assert conv_specs(g2) == conv_specs(g0)[:-1] + [block, block] + conv_specs(g0)[-1:]
    assert conv_specs(d2) == conv_specs(d0)[:1] + [block, block] + conv_specs(d0)[1:]
    assert len(modules(g2, nn.BatchNorm2d)) == len(modules(g0, nn.BatchNorm2d)) + 2
    assert len(modules(d2, nn.BatchNorm2d)) == len(modules(d0, nn.BatchNorm2d)) + 2
    torch.manual_seed(0)
    x = g2(torch.randn(3, 100))
    assert x.shape == (3, 1, 28, 28) and d2(x).shape == (3,)
    sn = arch.create_discriminator(data_shape=(1, 28, 28), ndf=8, extra_layers=1, spectral_norm=True, pack=2)
    assert not modules(sn, nn.BatchNorm2d) and conv_specs(sn)[:2] == [(2, 8, 4, 2, 1, True), (8, 8, 3, 1, 1, True)]
    assert all(nn.utils.parametrize.is_parametrized(c) for c in modules(sn, nn.Conv2d))  # the extra one too
    assert sn(torch.randn(4, 1, 28, 28)).shape == (4,)
    with pytest.raises(GanzooError, match="^dcgan option extra_layers must be >= 0, got -1$"):
        arch.make_options(data_shape=(1, 28, 28), extra_layers=-1)


def test_dcgan_init():
    torch.manual_seed(0)
    arch = ganzoo.get_architecture("dcgan")
    for net in (arch.create_generator(data_shape=(1, 64, 64)), arch.create_discriminator(data_shape=(1, 64, 64))):
        w = torch.cat([m.weight.flatten() for m in modules(net, nn.Conv2d, nn.ConvTranspose2d)])
        assert abs(w.std().item() - 0.02) < 0.0005 and abs(w.mean().item()) < 0.0005
        bn = torch.cat([m.weight for m in modules(net, nn.BatchNorm2d)])
        assert abs(bn.mean().item() - 1) < 0.005 and 0.015 < bn.std().item() < 0.025
        biases = [m.bias for m in modules(net, nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d) if m.bias is not None]
        assert all(torch.count_nonzero(b) == 0 for b in biases)


# -- cgan ----------------------------------------------------------------------------
def test_cgan_needs_num_classes():
    with pytest.raises(GanzooError, match="num_classes"):
        ganzoo.create_generator("cgan", data_shape=(1, 28, 28))


def test_cgan_projection_discriminator():
    torch.manual_seed(0)
    arch = ganzoo.get_architecture("cgan")
    d = arch.create_discriminator(data_shape=(1, 28, 28), num_classes=10, ngf=16, ndf=16).eval()
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    y, y2 = torch.arange(6), torch.arange(6).flip(0)
    with torch.no_grad():
        logits, logits2 = d(x, y), d(x, y2)
        h = d.features(x).sum(dim=(2, 3))
        expected = d.linear(h).squeeze(1) + (d.embed.weight[y] * h).sum(1)
    assert not torch.allclose(logits, logits2)
    torch.testing.assert_close(logits, expected)
    assert len(modules(d, nn.BatchNorm2d)) == 0 and nn.utils.parametrize.is_parametrized(d.embed)
    plain = arch.create_discriminator(data_shape=(1, 28, 28), num_classes=10, spectral_norm=False)
    assert len(modules(plain, nn.BatchNorm2d)) == 1 and not nn.utils.parametrize.is_parametrized(plain.embed)


def test_cgan_minibatch_stddev_feature():
    f = torch.randn(8, 3, 2, 2)
    s = ganzoo_cgan.minibatch_stddev(f, 4)
    # groups are samples {i, i+2, i+4, i+6}; each sample gets its group's mean per-feature stddev
    for i in range(8):
        group = f[i % 2::2]
        torch.testing.assert_close(s[i, 0], group.var(0, unbiased=False).add(1e-8).sqrt().mean())
    assert ganzoo_cgan.minibatch_stddev(f.new_ones(8, 3, 2, 2), 4).max() < 1e-3  # a collapsed batch: ~0
    six = torch.randn(6, 3, 2, 2)  # 4 does not divide 6: groups of 3, samples {i, i+2, i+4}
    torch.testing.assert_close(ganzoo_cgan.minibatch_stddev(six, 4)[1, 0],
                               six[1::2].var(0, unbiased=False).add(1e-8).sqrt().mean())
    arch = ganzoo.get_architecture("cgan")
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    for group in (4, 0):
        d = arch.create_discriminator(data_shape=(1, 28, 28), num_classes=10, ndf=8,
                                      minibatch_std=group).eval()  # eval: no power iteration
        assert d.per_sample is (False if group else None) and d.linear.in_features == 16 + bool(group)
        with torch.no_grad():  # with the feature, sample 0's logit moves when only sample 2 changes
            moved = x.clone()
            moved[2] += 5
            assert torch.allclose(d(moved, y)[0], d(x, y)[0]) is not bool(group)
    with pytest.raises(GanzooError, match="minibatch_std"):
        ganzoo.create_generator("cgan", data_shape=(1, 28, 28), num_classes=10, minibatch_std=-1)


def test_cgan_generator_is_conditioned():
    torch.manual_seed(0)
    g = ganzoo.create_generator("cgan", data_shape=(1, 28, 28), num_classes=10, ngf=16).eval()
    z = torch.randn(4, 100)
    with torch.no_grad():
        assert not torch.allclose(g(z, torch.tensor([0, 1, 2, 3])), g(z, torch.tensor([4, 5, 6, 7])))
        samples, labels = g.sample(4, labels=torch.tensor([3, 3, 3, 3]))
    assert samples.shape == (4, 1, 28, 28) and labels.tolist() == [3] * 4
    with pytest.raises(ValueError, match="labels"):
        g(z)


# -- the kit catches broken plugins --------------------------------------------------
class WideLogits(ganzoo_mlp.MLPDiscriminator):
    def forward(self, x, labels=None):
        return self.net(x)  # (N, 1), not (N,)


class UnusedParameter(ganzoo_mlp.MLPGenerator):
    def __init__(self, options):
        super().__init__(options)
        self.extra = nn.Linear(2, 2)


class UnboundedOutput(ganzoo_mlp.MLPGenerator):
    def __init__(self, options):
        super().__init__(options)
        self.net = self.net[:-1]  # drops tanh but still claims output_range (-1, 1)


class Float32Output(ganzoo_mlp.MLPGenerator):
    def forward(self, z, labels=None):
        return super().forward(z).float()  # always float32


class IgnoresLabels(ganzoo_mlp.MLPGenerator):
    def forward(self, z, labels=None):  # conditional on paper: every sample gets class 0
        return super().forward(z, torch.zeros(len(z), dtype=torch.long, device=z.device))


class MixesBatch(ganzoo_mlp.MLPDiscriminator):
    def forward(self, x, labels=None):
        h = x.flatten(1)
        return self.net(h - h.mean(0)).squeeze(1)  # centred on its batch, yet claims per-sample


BROKEN = [
    ("mixes-batch", dict(discriminator=MixesBatch), "check_joint_scoring: in eval mode a discriminator"),
    ("shape", dict(discriminator=WideLogits), "check_shapes: discriminator output shape (2, 1)"),
    ("unused", dict(generator=UnusedParameter), "check_gradients: generator parameter 'extra.weight'"),
    ("range", dict(generator=UnboundedOutput), "check_output_range"),
    ("dtype", dict(generator=Float32Output), "check_dtype: generator output is torch.float32"),
    ("labels", dict(generator=IgnoresLabels, conditional=True), "check_labels: changing the labels"),
]


@pytest.mark.parametrize("what,parts,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_kit_reports_broken_architecture(what, parts, message):
    fields = dict(generator=ganzoo_mlp.MLPGenerator, discriminator=ganzoo_mlp.MLPDiscriminator,
                  options=ganzoo_mlp.MLPOptions, conditional=False) | parts
    arch = Architecture(f"broken-{what}", **fields)
    with pytest.raises(AssertionError, match=r"architecture 'broken-") as err:
        check_architecture(arch, data_shape=(1, 8, 8), g_hidden=(16,), d_hidden=(16,))
    assert message in str(err.value)


def test_kit_accepts_architecture_objects_and_keeps_rng_state():
    state = torch.get_rng_state()
    opts = check_architecture(ganzoo.get_architecture("mlp"), data_shape=(2,), g_hidden=(8,), d_hidden=(8,))
    assert torch.equal(torch.get_rng_state(), state)
    assert opts.data_shape == (2,) and opts.g_hidden == (8,)
    assert check_architecture("cgan", data_shape=(1, 28, 28), ngf=4, ndf=4).num_classes == 10


def test_tutorial_plugin_passes_the_kit(monkeypatch):
    """The plugin written in docs/plugins.md works as printed."""
    doc = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    source = re.findall(r"```python\n(.*?)```", doc, re.S)[0]
    assert len(source.splitlines()) < 80
    module = types.ModuleType("ganzoo_tinyconv")
    monkeypatch.setitem(sys.modules, "ganzoo_tinyconv", module)
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    arch = architectures_from(module)["tinyconv"]
    check_architecture(arch, data_shape=(1, 28, 28), width=8)
    check_architecture(arch, data_shape=(3, 32, 32), width=8, act="relu")
    with pytest.raises(GanzooError, match="divide by 4"):
        arch.make_options(data_shape=(1, 30, 30))


def test_batch_mixing_discriminator_that_says_so_passes_the_kit():
    class Declared(MixesBatch):
        per_sample = False

    arch = Architecture("declared", generator=ganzoo_mlp.MLPGenerator, discriminator=Declared,
                        options=ganzoo_mlp.MLPOptions, conditional=False)
    check_architecture(arch, data_shape=(1, 8, 8), g_hidden=(16,), d_hidden=(16,))


def test_dcgan_pack_stacks_k_images_along_the_channels():
    """PacDCGAN: pack=k feeds k consecutive images as one k·C-channel image; each gets its
    pack's logit, and changing one image moves the logits of its pack only."""
    torch.manual_seed(0)
    d = ganzoo.create_discriminator("dcgan", data_shape=(3, 28, 28), ndf=8, pack=2).eval()
    assert d.pack == 2 and d.net[0].in_channels == 6
    x = torch.randn(4, 3, 28, 28)
    logits = d(x)
    packs = d.net(torch.cat([x[0::2], x[1::2]], dim=1)).view(2)  # images 0,1 and 2,3 channel-stacked
    torch.testing.assert_close(logits, packs.repeat_interleave(2))
    moved = x.clone()
    moved[3] += 1.0
    changed = d(moved) != logits
    assert changed.tolist() == [False, False, True, True]
    with pytest.raises(GanzooError, match="dcgan option pack=2 needs batches divisible by 2, got a batch of 3"):
        d(x[:3])
    with pytest.raises(GanzooError, match="dcgan option pack must be >= 1"):
        ganzoo.get_architecture("dcgan").make_options(pack=0)
    check_architecture("dcgan", data_shape=(3, 28, 28), ngf=8, ndf=8, pack=2)


def test_kit_catches_a_packed_discriminator_that_does_not_repeat_its_logits():
    class Unrepeated(ganzoo_mlp.MLPDiscriminator):  # claims packs of 2, scores every sample alone
        def __init__(self, options):
            super().__init__(options)
            self.pack = 2

        def forward(self, x, labels=None):
            return self.net(x).squeeze(1)

    arch = Architecture("unrepeated", generator=ganzoo_mlp.MLPGenerator, discriminator=Unrepeated,
                        options=ganzoo_mlp.MLPOptions, conditional=False)
    with pytest.raises(AssertionError, match="pack = 2: each pack of 2 consecutive samples must get"):
        check_architecture(arch, data_shape=(2,), g_hidden=(16,), d_hidden=(16,))
