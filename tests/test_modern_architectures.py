"""The sngan, biggan and stylegan2 plugins (plugins/ganzoo-{sngan,biggan,stylegan2}) and their
training methods (orthogonal, lazy-r1, path-length): conformance at small widths, the papers'
defining properties, and a few steps of training and a bit-exact resume."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import ganzoo
from ganzoo import GanzooError
from ganzoo.catalog import get_catalog
from ganzoo.methods import StepContext, create_method
from ganzoo.testing import architectures_from, check_architecture

try:
    import ganzoo_biggan
    import ganzoo_sngan
    import ganzoo_stylegan2
except ImportError as exc:  # fail loudly: a skip would hide a missing install step in CI
    raise ImportError(f"{exc}; install the plugins with pip install -e plugins/ganzoo-sngan "
                      "-e plugins/ganzoo-biggan -e plugins/ganzoo-stylegan2") from exc


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: one intra-op thread


SN_SMALL = dict(ngf=8, ndf=8)
BG_SMALL = dict(ngf=16, ndf=16, shared_dim=8, latent_dim=24)
SG_SMALL = dict(ngf=8, ndf=8, latent_dim=16, w_dim=16, mapping_layers=2)

CONFORMANCE = [
    ("sngan", dict(data_shape=(1, 28, 28), **SN_SMALL)),
    ("sngan", dict(data_shape=(3, 32, 32), **SN_SMALL)),
    ("sngan", dict(data_shape=(3, 64, 64), latent_dim=16, **SN_SMALL)),
    ("csngan", dict(data_shape=(1, 28, 28), num_classes=10, **SN_SMALL)),
    ("csngan", dict(data_shape=(3, 32, 32), num_classes=3, **SN_SMALL)),
    ("biggan", dict(data_shape=(1, 28, 28), num_classes=10, **BG_SMALL)),
    ("biggan", dict(data_shape=(3, 32, 32), num_classes=5, **BG_SMALL)),
    ("biggan", dict(data_shape=(1, 32, 32), num_classes=3, hierarchical=False, attention=0, **BG_SMALL)),
    ("biggan", dict(data_shape=(3, 64, 64), num_classes=2, attention=16, ngf=8, ndf=8, latent_dim=10)),
    ("stylegan2", dict(data_shape=(1, 28, 28), **SG_SMALL)),
    ("stylegan2", dict(data_shape=(3, 32, 32), **SG_SMALL)),
    ("stylegan2", dict(data_shape=(1, 32, 32), noise=False, style_mixing=0.0, mbstd_group=0, **SG_SMALL)),
    ("stylegan2", dict(data_shape=(3, 64, 64), **SG_SMALL)),
    ("cstylegan2", dict(data_shape=(1, 28, 28), num_classes=10, **SG_SMALL)),
    ("cstylegan2", dict(data_shape=(3, 32, 32), num_classes=4, mbstd_group=2, **SG_SMALL)),
    ("stylegan2", dict(data_shape=(1, 28, 28), **{**SG_SMALL, "ndf": 4, "channel_max": 16})),
    ("cstylegan2", dict(data_shape=(3, 32, 32), num_classes=3, channel_max=32, **SG_SMALL)),
]


@pytest.mark.parametrize("name,options", CONFORMANCE,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFORMANCE)])
def test_conformance(name, options, test_device):
    check_architecture(name, device=test_device, **options)


def modules(net, *types):
    return [m for m in net.modules() if isinstance(m, types)]


def spectral_normed(net):
    return [m for m in net.modules() if torch.nn.utils.parametrize.is_parametrized(m, "weight")]


# -- registration ------------------------------------------------------------------
def test_each_plugin_registers_from_its_own_distribution():
    entries = {e.name: e for e in get_catalog().entries("architecture")}
    plugin = {"sngan": "ganzoo-sngan", "csngan": "ganzoo-sngan", "biggan": "ganzoo-biggan",
              "stylegan2": "ganzoo-stylegan2", "cstylegan2": "ganzoo-stylegan2"}
    assert {n: entries[n].plugin for n in plugin} == plugin
    assert {n: entries[n].obj.conditional for n in plugin} == {
        "sngan": False, "csngan": True, "biggan": True, "stylegan2": False, "cstylegan2": True}
    heads = {n: entries[n].obj.discriminator.has_class_head for n in plugin}  # on the class: class-loss reads it
    assert heads == {"sngan": False, "csngan": True, "biggan": True, "stylegan2": False, "cstylegan2": True}
    methods = {e.name: e.plugin for e in get_catalog().entries("method")}
    assert {n: methods.get(n) for n in ("orthogonal", "lazy-r1", "path-length")} == {
        "orthogonal": "ganzoo-biggan", "lazy-r1": "ganzoo-stylegan2", "path-length": "ganzoo-stylegan2"}
    for name in ("orthogonal", "lazy-r1", "path-length"):
        doc = get_catalog().get("method", name).description
        assert "20" in doc and "(" in doc, f"{name}: its description should cite the paper: {doc!r}"


def test_registration_builds_no_model_and_needs_no_timm(monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built during registration")

    monkeypatch.setattr(nn.Module, "__init__", no_model)
    found = {}
    for plugin in (ganzoo_sngan, ganzoo_biggan, ganzoo_stylegan2):
        found.update(architectures_from(plugin))
    assert sorted(found) == ["biggan", "csngan", "cstylegan2", "sngan", "stylegan2"]
    monkeypatch.undo()
    code = ("import sys, ganzoo; ganzoo.list_architectures(); import ganzoo_sngan, ganzoo_biggan, "
            "ganzoo_stylegan2; print(sorted(m for m in ('timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name,options,message", [
    ("sngan", dict(data_shape=(1, 48, 48)), "sngan takes square images of size 28, 32 or 64"),
    ("sngan", dict(ngf=0), "ngf, ndf and latent_dim must be >= 1"),
    ("biggan", dict(num_classes=10, attention=7), r"attention must be .* or one of 14 at 28 px, got 7"),
    ("biggan", dict(num_classes=10, data_shape=(3, 32, 32), attention=32), "one of 8, 16 at 32 px"),
    ("biggan", dict(num_classes=10, latent_dim=2), "latent_dim must be >= 3"),
    ("biggan", dict(num_classes=10, shared_dim=0), "shared_dim must be >= 1"),
    ("stylegan2", dict(data_shape=(1, 28)), "stylegan2 takes square images"),
    ("stylegan2", dict(style_mixing=1.5), "style_mixing is a probability"),
    ("stylegan2", dict(mapping_lr_mul=0.0), "mapping_lr_mul must be > 0"),
    ("stylegan2", dict(mbstd_group=-1), "mbstd_group must be 0"),
    ("stylegan2", dict(mapping_layers=0), "mapping_layers"),
    ("stylegan2", dict(ngf=32, ndf=16, channel_max=24), r"channel_max is 0 \(constant widths\) .* >= ngf and ndf \(32\), got 24"),
])
def test_options_are_validated_with_one_line_errors(name, options, message):
    with pytest.raises(GanzooError, match=message) as info:
        ganzoo.get_architecture(name).make_options(**options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec,message", [
    ("orthogonal:beta=-1", "orthogonal beta must be a finite number >= 0"),
    ("lazy-r1:every=0", "lazy-r1 every must be a number of D updates >= 1"),
    ("lazy-r1:gamma=nan", "lazy-r1 gamma must be a finite number >= 0"),
    ("path-length:decay=0", r"path-length decay must be in \(0, 1\]"),
    ("path-length:every=0", "path-length every and batch_shrink must be >= 1"),
])
def test_method_options_are_validated(spec, message):
    with pytest.raises(GanzooError, match=message):
        create_method(spec)


# -- sngan --------------------------------------------------------------------------
def test_sngan_layout():
    """ResNet G: 3 up-blocks from 4×4 at 32 px (2 from 7×7 at 28 px), BN, nearest upsampling, no SN;
    D: optimised block, down-blocks to 8×8, two plain blocks, SN on every layer, sum pooling."""
    arch = ganzoo.get_architecture("sngan")
    g, d = arch.create_generator(data_shape=(3, 32, 32), **SN_SMALL), arch.create_discriminator(
        data_shape=(3, 32, 32), **SN_SMALL)
    assert len(g.blocks) == 3 and g.start == 4 and not spectral_normed(g)
    assert len(modules(g, nn.BatchNorm2d)) == 7  # two per block and the last one
    assert [(b.first, b.down) for b in d.blocks] == [(True, True), (False, True), (False, False), (False, False)]
    layers = modules(d, nn.Conv2d, nn.Linear)
    assert set(spectral_normed(d)) == set(layers) and not modules(d, nn.BatchNorm2d)
    assert len(arch.create_generator(**SN_SMALL).blocks) == 2  # 28 px: 7 → 14 → 28
    assert len(arch.create_discriminator(data_shape=(1, 64, 64), **SN_SMALL).blocks) == 5
    # global *sum* pooling: a constant-feature input scales ψ's input with the area
    h = F.relu(d.blocks(torch.zeros(1, 3, 32, 32))).sum(dim=(2, 3))
    assert h.shape == (1, 8)
    csn = ganzoo.get_architecture("csngan")
    cg = csn.create_generator(num_classes=3, **SN_SMALL)
    assert cg.blocks[0].bn1.embed.weight.shape == (3, 16) and cg.bn.affine  # cBN in blocks, plain BN last


@pytest.mark.parametrize("name,which", [("sngan", "d"), ("biggan", "g"), ("biggan", "d")])
def test_spectral_norm_top_singular_value_is_one(name, which):
    """After power iterations (one per train-mode forward) each SN weight has top singular value ≈ 1,
    also after its raw weight moved away from where the power iteration started (power iteration
    converges from below: the normalised weight's is never much under 1)."""
    extra = SN_SMALL if name == "sngan" else dict(BG_SMALL, num_classes=3)
    arch = ganzoo.get_architecture(name)
    torch.manual_seed(0)
    net = (arch.create_generator if which == "g" else arch.create_discriminator)(data_shape=(1, 28, 28), **extra)
    layers = spectral_normed(net)
    assert layers
    with torch.no_grad():
        for m in layers:
            w = m.parametrizations.weight.original
            w.add_(torch.randn_like(w) * w.abs().mean() * 0.3)
        z, y = torch.randn(2, 24), torch.tensor([0, 1])
        x = torch.rand(2, 1, 28, 28) * 2 - 1
        for _ in range(100):
            net(z, y) if which == "g" else net(x, y if name == "biggan" else None)
    net.eval()
    with torch.no_grad():
        for m in layers:
            w = m.weight
            top = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)
            assert -1e-3 < float(top) - 1 < 1e-2, f"{type(m).__name__}: top singular value {float(top):.4f}"


# -- biggan -------------------------------------------------------------------------
def biggan(**kw):
    arch = ganzoo.get_architecture("biggan")
    torch.manual_seed(0)
    opts = arch.make_options(**{**dict(BG_SMALL, num_classes=4, data_shape=(1, 32, 32)), **kw})
    return arch.create_generator(opts), arch.create_discriminator(opts)


def test_biggan_hierarchical_z_reaches_every_block():
    """z is split in one chunk per block plus one for the input; chunk i+1 changes only block i's
    conditioning (shared embedding ⊕ chunk), and the image depends on every chunk."""
    g, _ = biggan()
    assert g.chunks == [6, 6, 6, 6] and len(g.blocks) == 3
    z, y = torch.randn(2, 24), torch.tensor([1, 3])
    z0, conds = g.conditions(z, y)
    assert torch.equal(z0, z[:, :6]) and [c.shape[1] for c in conds] == [14, 14, 14]
    for c, chunk in zip(conds, z[:, 6:].split(6, dim=1)):
        assert torch.equal(c, torch.cat((g.shared(y), chunk), 1))
    for i in range(1, 4):
        z2 = z.clone()
        z2[:, 6 * i:6 * (i + 1)] += 1
        changed = [not torch.equal(a, b) for a, b in zip(conds, g.conditions(z2, y)[1])]
        assert changed == [j == i - 1 for j in range(3)]
    z = z.requires_grad_(True)
    (grad,) = torch.autograd.grad(g(z, y).sum(), z)
    assert all(bool(part.abs().sum() > 0) for part in grad.split(6, dim=1))
    # uneven sizes split as evenly as possible; without hierarchy all of z feeds the input layer
    assert biggan(data_shape=(1, 28, 28), latent_dim=20)[0].chunks == [7, 7, 6]
    flat, _ = biggan(hierarchical=False)
    z0, conds = flat.conditions(z.detach(), y)
    assert z0.shape[1] == 24 and all(torch.equal(c, flat.shared(y)) for c in conds)


def test_biggan_attention_sits_at_its_resolution():
    g, d = biggan(data_shape=(3, 64, 64), attention=16)
    assert g.options.g_resolutions()[g.attention_after] == 16
    names = [type(m).__name__ for m in d.blocks]
    down = "ResidualDown"
    assert names == [down, down, "Attention", down, down, down]  # after 64→32→16
    g, d = biggan()  # default: half the image size
    assert g.options.attention_resolution == 16 and g.attention_after == 1
    assert not any(isinstance(m, ganzoo_biggan.Attention) for m in biggan(attention=0)[1].modules())
    assert [m for m in spectral_normed(g) if isinstance(m, nn.Embedding)] == []  # the shared embedding has no SN


def test_biggan_truncation_is_the_base_class_truncated_normal():
    from ganzoo.sampling import generate

    g, _ = biggan()
    g.eval()
    z = g.sample_latent(500, generator=torch.Generator().manual_seed(0), truncation=0.5)
    assert z.abs().max() <= 0.5 and z.std() > 0.2
    x, labels = generate(g, 6, seed=0, truncation=0.5)
    assert x.shape == (6, 1, 32, 32) and labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_orthogonal_regulariser_matches_its_formula():
    """β‖WWᵀ ⊙ (1 − I)‖²_F per weight, W = (out, in·k·k): embeddings and 1-D parameters left out."""
    net = nn.Module()
    net.lin = nn.Linear(3, 3)
    net.conv = nn.Conv2d(2, 2, 1, bias=False)
    net.embed = nn.Embedding(4, 3)
    w = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0], [3.0, 0.0, 1.0]])
    c = torch.tensor([[1.0, 1.0], [2.0, -1.0]])
    with torch.no_grad():
        net.lin.weight.copy_(w)
        net.conv.weight.copy_(c[:, :, None, None])
    # off-diagonal dot products of the rows: lin (1,2)=2, (1,3)=3, (2,3)=-1; conv (1,2)=1
    want = 1e-2 * (2 * (2 ** 2 + 3 ** 2 + 1 ** 2) + 2 * 1 ** 2)
    got = ganzoo_biggan.orthogonal_penalty(net, 1e-2)
    assert torch.allclose(got, torch.tensor(want)), (got, want)
    method = create_method("orthogonal:beta=0.01")
    assert torch.allclose(method.g_terms(StepContext(0, 10, generator=net, phase="g")), got)
    assert create_method("orthogonal:beta=0").g_terms(StepContext(0, 10, generator=net)) is None
    # an orthogonal matrix costs nothing; SN layers are penalised through their raw weight
    q = nn.Linear(4, 4, bias=False)
    nn.init.orthogonal_(q.weight)
    assert float(ganzoo_biggan.orthogonal_penalty(q).detach()) < 1e-10
    g, _ = biggan()
    assert ganzoo_biggan.orthogonal_penalty(g).requires_grad


# -- stylegan2 ----------------------------------------------------------------------
def stylegan2(name="stylegan2", **kw):
    arch = ganzoo.get_architecture(name)
    torch.manual_seed(0)
    opts = arch.make_options(**{**SG_SMALL, "data_shape": (1, 32, 32), **kw})
    return arch.create_generator(opts), arch.create_discriminator(opts)


def test_stylegan2_layout_and_equalised_learning_rate():
    g, d = stylegan2()
    assert [b.const is not None for b in g.blocks] == [True, False, False, False]  # 4 → 8 → 16 → 32
    assert g.blocks[0].const.shape == (8, 4, 4) and g.num_ws == 8
    assert len(g.mapping.layers) == 2 and g.mapping.layers[0].weight_gain == pytest.approx(0.01 / 4)
    assert float(g.mapping.layers[0].weight.detach().std()) == pytest.approx(100, rel=0.2)  # N(0, 1/lr_mul²)
    conv = g.blocks[1].conv1
    assert conv.weight_gain == pytest.approx(1 / math.sqrt(8 * 9))
    assert float(conv.weight.detach().std()) == pytest.approx(1, rel=0.2)
    assert torch.equal(conv.affine.bias, torch.ones(8))  # styles start at 1
    assert not modules(g, nn.BatchNorm2d, nn.Linear, nn.Conv2d) and not modules(d, nn.BatchNorm2d)
    assert len(d.blocks) == 3 and g.blocks[2].conv1.noise_const.shape == (16, 16)
    assert stylegan2(data_shape=(1, 28, 28))[0].options.resolutions == [7, 14, 28]


def test_stylegan2_widths_double_per_halving_up_to_channel_max():
    # the official rule min(channel_base / resolution, channel_max), with channel_base = width × size
    g, d = stylegan2(data_shape=(1, 28, 28), ngf=8, ndf=4, channel_max=16)
    assert [b.conv1.weight.shape[:2] for b in g.blocks] == [(16, 16), (16, 16), (8, 8)]  # 7, 14, 28 px
    assert [tuple(b.conv0.weight.shape[:2]) for b in g.blocks[1:]] == [(16, 16), (8, 16)]  # (out, in)
    assert [b.torgb.affine.weight.shape[0] for b in g.blocks] == [16, 16, 8]  # styles of each input
    assert g.blocks[0].const.shape == (16, 7, 7)
    assert d.fromrgb.weight.shape[0] == 4
    assert [(b.conv0.weight.shape[1], b.conv1.weight.shape[0]) for b in d.blocks] == [(4, 8), (8, 16)]
    assert d.conv.weight.shape[0] == 16 and d.fc.weight.shape == (16, 16 * 7 * 7)
    x = g(torch.randn(3, g.options.latent_dim))
    assert x.shape == (3, 1, 28, 28) and d(x).shape == (3,)
    # 32 px starts at 4×4: widths 32, 32, 16, 8 at 4, 8, 16, 32 px; D's epilogue at 4 px
    g, d = stylegan2(data_shape=(3, 32, 32), ngf=8, ndf=8, channel_max=32)
    assert [b.conv1.weight.shape[0] for b in g.blocks] == [32, 32, 16, 8]
    assert [(b.conv0.weight.shape[1], b.conv1.weight.shape[0]) for b in d.blocks] == [(8, 16), (16, 32), (32, 32)]
    assert d.fc.weight.shape == (32, 32 * 4 * 4) and d(g(torch.randn(2, g.options.latent_dim))).shape == (2,)
    # 0, the default, keeps every layer at ngf / ndf: the networks of every earlier card
    g0, d0 = stylegan2(data_shape=(1, 28, 28), ngf=8, ndf=4)
    assert {b.conv1.weight.shape[0] for b in g0.blocks} == {8} and {b.conv1.weight.shape[0] for b in d0.blocks} == {4}


@pytest.mark.parametrize("k,size", [(3, 28), (3, 14), (3, 7), (1, 32), (1, 7)])
def test_stylegan2_downsampling_conv_is_conv_then_average_pooling(k, size):
    """D's ↓2 convolutions run at the output's resolution (a stride-2 (k+1)² kernel, or pooling
    before a 1×1): the same values and gradients as the k×k convolution then 2×2 pooling."""
    torch.manual_seed(0)
    conv = ganzoo_stylegan2.EqConv2d(3, 4, k, act=True, down=True).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 3, size, size, dtype=torch.double, requires_grad=True)
    ref = F.avg_pool2d(F.conv2d(x, conv.weight * conv.weight_gain, padding=k // 2), 2)
    ref = ganzoo_stylegan2.lrelu(ref + conv.bias[:, None, None])
    out = conv(x)
    assert out.shape == ref.shape == (2, 4, size // 2, size // 2)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, conv.weight), g)
    torch.testing.assert_close(grads, torch.autograd.grad(ref, (x, conv.weight), g))


def test_demodulation_gives_unit_norm_weights_and_matches_a_per_sample_convolution():
    torch.manual_seed(0)
    weight, styles = torch.randn(5, 3, 3, 3), torch.rand(4, 3) * 3
    w = ganzoo_stylegan2.modulated_weight(weight, styles)
    assert w.shape == (4, 5, 3, 3, 3)
    torch.testing.assert_close(w.square().sum(dim=(2, 3, 4)), torch.ones(4, 5))
    assert not torch.allclose(ganzoo_stylegan2.modulated_weight(weight, styles, demodulate=False)
                              .square().sum(dim=(2, 3, 4)), torch.ones(4, 5))
    # the layer's (non-fused) computation is a convolution of each sample with its own weights
    layer = ganzoo_stylegan2.ModulatedConv(3, 5, 3, w_dim=6, resolution=8, noise=False, act=False)
    with torch.no_grad():
        layer.bias.normal_()
    x, wlat = torch.randn(4, 3, 8, 8), torch.randn(4, 6)
    ws = ganzoo_stylegan2.modulated_weight(layer.weight * layer.weight_gain, layer.affine(wlat))
    want = torch.cat([F.conv2d(x[i:i + 1], ws[i], padding=1) for i in range(4)]) + layer.bias[:, None, None]
    torch.testing.assert_close(layer(x, wlat), want, rtol=1e-4, atol=1e-5)


def test_minibatch_stddev_makes_the_discriminator_not_per_sample():
    _, d = stylegan2()
    assert d.per_sample is False
    x = torch.rand(8, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        base = d(x)
        x2 = x.clone()
        x2[0] = -x2[0]
        moved = d(x2)
    # groups of 4: sample 0 shares its group with samples 2, 4 and 6 (j mod N/G, as the official code)
    assert [not torch.equal(a, b) for a, b in zip(base, moved)] == [True, False, True, False] * 2
    y = ganzoo_stylegan2.minibatch_stddev(torch.tensor([1.0, 3.0, 10.0, 20.0]).view(4, 1, 1, 1), 4)
    assert torch.allclose(y[:, 1].flatten(), torch.full((4,), float(torch.tensor([1.0, 3, 10, 20]).std(unbiased=False))))
    assert ganzoo_stylegan2.minibatch_stddev(torch.randn(6, 2, 3, 3), 4).shape == (6, 3, 3, 3)  # groups of 3
    _, plain = stylegan2(mbstd_group=0)
    assert plain.per_sample is None
    with torch.no_grad():
        assert torch.equal(plain(x2)[1:], plain(x)[1:])


def test_truncation_psi_moves_w_towards_w_avg():
    g, _ = stylegan2()
    z = torch.randn(5, 16)
    with torch.no_grad():
        g.train()(z)  # training mode keeps the running mean of w
        w = g.mapping(z)
        assert not torch.equal(g.w_avg, torch.zeros(16))
        g.w_avg.copy_(torch.randn(16))
        g.eval()
        ws = g.ws(z, truncation=0.0)
        assert torch.equal(ws, g.w_avg.expand(5, g.num_ws, 16))  # ψ = 0: w_avg for every sample
        x = g(z, truncation=0.0)
        assert torch.allclose(x, x[:1].expand_as(x))  # eval noise is fixed: one image
        torch.testing.assert_close(g.ws(z, truncation=0.5)[:, 0], g.w_avg + 0.5 * (w - g.w_avg))
        assert torch.equal(g.ws(z, truncation=1.0), g.ws(z))
        before = g.w_avg.clone()
        g(z)
        assert torch.equal(g.w_avg, before)  # eval mode leaves w_avg alone
        g.train()
        g.ws(z, update_w_avg=False)
        assert torch.equal(g.w_avg, before)
        g.ws(z)
        torch.testing.assert_close(g.w_avg, w.mean(0).lerp(before, 0.995))


def test_style_mixing_only_in_training_mode():
    g, _ = stylegan2(style_mixing=1.0)
    z = torch.randn(3, 16)
    with torch.no_grad():
        torch.manual_seed(1)
        ws = g.train().ws(z)
        first = ws[:, :1]
        mixed = ~torch.isclose(ws, first).all(dim=2).all(dim=0)
        cut = int(mixed.float().argmax())
        assert 1 <= cut < g.num_ws and mixed[cut:].all() and not mixed[:cut].any()  # w from the cutoff on
        assert (g.eval().ws(z) == g.ws(z)[:, :1]).all()
        g2, _ = stylegan2(style_mixing=0.0)
        assert (g2.train().ws(z) == g2.ws(z)[:, :1]).all()


def test_lazy_r1_runs_every_k_d_updates_scaled_by_k():
    """Zero (no term) on the D updates n with n % k != 0; on the others k · γ/2 · E‖∇D(x_real)‖²."""
    _, d = stylegan2()
    real, k = torch.rand(4, 1, 32, 32) * 2 - 1, 3
    method = create_method(f"lazy-r1:gamma=2.0,every={k}")
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x)
    want = k * 0.5 * 2.0 * grad.flatten(1).square().sum(1).mean()
    terms = [method.d_terms(StepContext(step, 100, real=real, discriminator=d)) for step in range(7)]
    assert [t is not None for t in terms] == [True, False, False, True, False, False, True]
    for t in terms[::3]:
        torch.testing.assert_close(t, want)
        assert t.requires_grad  # a penalty on D's weights
    again = create_method(f"lazy-r1:gamma=2.0,every={k}")
    again.load_state_dict(method.state_dict())  # a resume goes on counting
    assert method.state_dict() == {"updates": 7}
    assert [again.d_terms(StepContext(7, 100, real=real, discriminator=d)) is None for _ in range(3)] == [
        True, True, False]  # D updates 7, 8, 9


def test_path_length_penalty_every_k_g_updates_with_its_moving_mean():
    g, _ = stylegan2()
    method = create_method("path-length:every=2,weight=2,decay=0.5")
    z = torch.randn(8, 16)
    ctx = lambda step: StepContext(step, 10, phase="g", generator=g, latents=z)  # noqa: E731
    assert method.g_terms(ctx(1)) is None
    term = method.g_terms(ctx(0))
    assert term.requires_grad and term >= 0 and float(method.state_dict()["mean"]) > 0
    term.backward()
    assert g.mapping.layers[0].weight.grad.abs().sum() > 0  # it trains the mapping too
    saved = method.state_dict()
    again = create_method("path-length:every=2,weight=2,decay=0.5")
    again.load_state_dict(saved)
    assert torch.equal(again.state_dict()["mean"], saved["mean"])
    method.check(ganzoo.get_architecture("cstylegan2"))
    with pytest.raises(GanzooError, match="path-length needs a generator with an intermediate latent w"):
        method.check(ganzoo.get_architecture("biggan"))


def test_path_length_penalty_is_the_official_expression_with_its_gradient():
    """StyleGAN2(-ADA)'s loss: a = pl_mean.lerp(lengths.mean(), decay) enters the penalty with
    its gradient through this batch's lengths; only the stored mean is detached."""
    g, _ = stylegan2()
    z, params = torch.randn(4, 16), [p for p in g.parameters() if p.requires_grad]
    method = create_method("path-length:decay=0.25")
    method.load_state_dict({"mean": torch.tensor(0.7)})
    torch.manual_seed(5)  # the same noise maps and y in both
    got = method.penalty(g, z, None)
    got_grads = torch.autograd.grad(got, params, allow_unused=True)
    torch.manual_seed(5)
    ws = g.ws(z, None, update_w_avg=False)
    img = g.synthesis(ws)
    y = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
    (jacobian_y,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    lengths = jacobian_y.square().sum(2).mean(1).sqrt()
    a = torch.tensor(0.7).lerp(lengths.mean(), 0.25)
    want = (lengths - a).square().mean()
    want_grads = torch.autograd.grad(want, params, allow_unused=True)
    assert torch.allclose(got, want) and torch.equal(method.state_dict()["mean"], a.detach())
    compared = 0
    for p, mine, theirs in zip(params, got_grads, want_grads):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert torch.allclose(mine, theirs, rtol=1e-4, atol=1e-7), p.shape
            compared += 1
    assert compared > 5


def test_cstylegan2_projects_on_its_class_embedding():
    _, d = stylegan2("cstylegan2", num_classes=3)
    x, y = torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        logits, classes = d(x, y, class_logits=True)
    assert classes.shape == (4, 3)
    torch.testing.assert_close(logits, classes.gather(1, y[:, None]).squeeze(1))


# -- training -----------------------------------------------------------------------
def train_cfg(mnist_dir, out, steps, **kw):
    from ganzoo.config import TrainConfig

    base = dict(dataset="mnist", split="test", data_root=str(mnist_dir), batch_size=8, steps=steps,
                out=str(out), progress=False, log_every=1, sample_every=1000, checkpoint_every=2, ema=True)
    return TrainConfig.from_dict({**base, **kw})


def test_stylegan2_trains_and_resumes_bit_exactly_with_its_lazy_regularisers(tmp_path, mnist_dir):
    """Style mixing, noise, w_avg, lazy R1 (every 2) and path length (every 2) over 4 steps equal
    2 steps, a resume, and 2 more: weights, EMA, w_avg and the methods' state."""
    from ganzoo.checkpoint import latest_checkpoint, load_checkpoint
    from ganzoo.config import TrainConfig
    from ganzoo.training import train

    common = dict(arch="stylegan2", arch_options=dict(SG_SMALL, ngf=4, ndf=4), loss="non-saturating",
                  methods=["lazy-r1:gamma=1,every=2", "path-length:every=2"])
    straight = train(train_cfg(mnist_dir, tmp_path / "a", 4, **common))
    half = train(train_cfg(mnist_dir, tmp_path / "b", 2, **common))
    resumed = train(TrainConfig(steps=4, progress=False), resume=half)
    a, b = load_checkpoint(latest_checkpoint(straight)), load_checkpoint(latest_checkpoint(resumed))
    assert a["step"] == b["step"] == 4
    for part in ("generator", "discriminator", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    assert a["methods"]["lazy-r1"] == b["methods"]["lazy-r1"] == {"updates": 4}
    assert torch.equal(a["methods"]["path-length"]["mean"], b["methods"]["path-length"]["mean"])
    assert not torch.equal(a["generator"]["w_avg"], torch.zeros(16))
    G = ganzoo.load_generator(str(straight / "export"))
    x = G(torch.randn(3, 16), truncation=0.0)
    assert x.shape == (3, 1, 28, 28) and torch.allclose(x, x[:1].expand_as(x))


@pytest.mark.parametrize("channels_last", [True, False])
def test_stylegan2s_functional_convs_get_channels_last(tmp_path, mnist_dir, channels_last):
    """Its convs are F.conv2d over equalised-lr weights, not nn.Conv2d: channels_last must
    still reach them (it makes the CPU step faster), and --no-channels-last must not."""
    from ganzoo.training import build_run

    run = build_run(train_cfg(mnist_dir, tmp_path, 1, arch="stylegan2", channels_last=channels_last,
                              arch_options=dict(SG_SMALL, ngf=4, ndf=4)))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert run.memory_format == fmt
    weights = [p for net in (run.G_raw, run.D_raw) for p in net.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=fmt) for p in weights)
    assert not any(isinstance(m, torch.nn.Conv2d) for m in run.D_raw.modules())


def test_biggan_and_csngan_train_with_their_methods(tmp_path, mnist_dir):
    from ganzoo.sampling import generate
    from ganzoo.training import train

    run = train(train_cfg(mnist_dir, tmp_path / "big", 2, arch="biggan", loss="hinge",
                          arch_options=dict(BG_SMALL, ngf=8, ndf=8),
                          methods=["orthogonal:beta=1e-4", "class-loss:weight=0.5"]))
    G = ganzoo.load_generator(str(run / "export"))
    x, labels = generate(G, 10, seed=0, truncation=1.0, by_class=True)
    assert x.shape == (10, 1, 28, 28) and labels.tolist() == list(range(10))
    run = train(train_cfg(mnist_dir, tmp_path / "sn", 2, arch="csngan", loss="hinge", d_steps=2,
                          arch_options=SN_SMALL, methods=["class-loss"]))
    assert ganzoo.load_generator(str(run / "export")).sample(3)[0].shape == (3, 1, 28, 28)


def test_info_shows_parameter_counts(run_cli_many):
    results = run_cli_many([["info", n] for n in ("sngan", "csngan", "biggan", "stylegan2")])
    counts = {}
    for (code, out, err), name in zip(results, ("sngan", "csngan", "biggan", "stylegan2")):
        assert code == 0, err
        line = next(ln for ln in out.splitlines() if "parameters" in ln)
        counts[name] = line.split(":", 1)[1].split()
    # the defaults (28 px, 1 channel); docs/architectures.md quotes them
    assert counts == {"sngan": ["G", "4,114,945", "D", "1,051,265"],
                      "csngan": ["G", "4,133,377", "D", "1,052,545"],
                      "biggan": ["G", "3,479,042", "D", "4,284,162"],
                      "stylegan2": ["G", "6,115,592", "D", "6,296,065"]}


def test_stylegan2_psi_truncation_reaches_the_model_through_the_sampler():
    """`ganzoo sample --truncation PSI` (sampling.generate) passes ψ to forward: ψ = 0 puts
    every sample at w_avg (identical images in eval mode); without it they differ."""
    from ganzoo.sampling import generate

    g, _ = stylegan2()
    g.eval()
    with torch.no_grad():
        g.w_avg.copy_(torch.randn_like(g.w_avg))
    x0, _ = generate(g, 4, seed=0, truncation=0.0)
    assert torch.allclose(x0, x0[:1].expand_as(x0))
    x1, _ = generate(g, 4, seed=0)
    assert not torch.allclose(x1, x1[:1].expand_as(x1))
    z = g.sample_latent(4, generator=torch.Generator().manual_seed(0), device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(generate(g, 4, seed=0, truncation=0.5)[0], g(z, truncation=0.5))
