"""Each loss and regulariser against its closed form on known logits."""
import math

import pytest
import torch
from torch import nn

import ganzoo
from ganzoo.interfaces import AdversarialLoss

R = torch.tensor([2.0, -1.0, 0.5, 30.0])   # real logits
F_ = torch.tensor([-3.0, 0.0, 1.5, -40.0])  # fake logits


def sig(x):
    return 1 / (1 + math.exp(-x))


def mean(xs):
    return sum(xs) / len(xs)


def log(x):
    return math.log(x) if x > 0 else -math.inf


def close(a, b, tol=1e-5):
    assert float(torch.as_tensor(a).detach()) == pytest.approx(b, rel=tol, abs=tol)


def test_registered_losses_are_the_six():
    assert ganzoo.list_losses() == ["hinge", "least-squares", "minimax", "non-saturating",
                                    "relativistic", "wasserstein"]
    assert ganzoo.list_regularizers() == ["gp", "r1", "r2"]


def test_minimax_is_the_original_objective():
    loss = ganzoo.create_loss("minimax")
    r, f = R[:3].tolist(), F_[:3].tolist()
    # D maximises V = E log D(x) + E log(1 - D(G(z))); its loss is -V.
    V = mean([log(sig(x)) for x in r]) + mean([log(1 - sig(x)) for x in f])
    close(loss.d_loss(R[:3], F_[:3]), -V)
    # G minimises E log(1 - D(G(z))) (the saturating form).
    close(loss.g_loss(F_[:3]), mean([log(1 - sig(x)) for x in f]))


def test_non_saturating():
    loss = ganzoo.create_loss("non-saturating")
    f = F_[:3].tolist()
    close(loss.g_loss(F_[:3]), -mean([log(sig(x)) for x in f]))
    close(loss.d_loss(R[:3], F_[:3]), ganzoo.create_loss("minimax").d_loss(R[:3], F_[:3]))


def test_hinge():
    loss = ganzoo.create_loss("hinge")
    r, f = R.tolist(), F_.tolist()
    close(loss.d_loss(R, F_), mean([max(0, 1 - x) for x in r]) + mean([max(0, 1 + x) for x in f]))
    close(loss.g_loss(F_), -mean(f))


def test_wasserstein_and_its_recommended_settings():
    loss = ganzoo.create_loss("wasserstein")
    close(loss.d_loss(R, F_), mean(F_.tolist()) - mean(R.tolist()))
    close(loss.g_loss(F_), -mean(F_.tolist()))
    assert loss.recommended["d_steps"] == 5
    assert loss.recommended["lr_g"] == 1e-4 and tuple(loss.recommended["betas"]) == (0.0, 0.9)
    assert loss.recommended["regularizers"] == ("gp:10",)


def test_least_squares_0_1_1():
    loss = ganzoo.create_loss("least-squares")
    r, f = R.tolist(), F_.tolist()
    close(loss.d_loss(R, F_), 0.5 * mean([(x - 1) ** 2 for x in r]) + 0.5 * mean([x ** 2 for x in f]))
    close(loss.g_loss(F_), 0.5 * mean([(x - 1) ** 2 for x in f]))


def test_relativistic_average():
    loss = ganzoo.create_loss("relativistic")
    r, f = R[:3].tolist(), F_[:3].tolist()
    mr, mf = mean(r), mean(f)
    d = -mean([log(sig(x - mf)) for x in r]) - mean([log(1 - sig(x - mr)) for x in f])
    g = -mean([log(sig(x - mr)) for x in f]) - mean([log(1 - sig(x - mf)) for x in r])
    close(loss.d_loss(R[:3], F_[:3]), d)
    close(loss.g_loss(F_[:3], R[:3]), g)
    assert loss.needs_real_for_g
    with pytest.raises(ValueError):
        loss.g_loss(F_[:3])


@pytest.mark.parametrize("name", ["minimax", "non-saturating", "hinge", "wasserstein",
                                  "least-squares", "relativistic"])
def test_losses_stay_finite_and_differentiable_for_confident_logits(name):
    loss = ganzoo.create_loss(name)
    r = torch.tensor([200.0, -200.0], requires_grad=True)
    f = torch.tensor([-200.0, 200.0], requires_grad=True)
    total = loss.d_loss(r, f) + loss.g_loss(f, r)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(r.grad).all() and torch.isfinite(f.grad).all()


class Linear2(nn.Module):
    """D(x) = w·x on 2-D points: ∇_x D = w everywhere, so penalties have closed forms."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x, labels=None):
        return x @ self.w


def test_gradient_penalty_closed_form():
    D = Linear2([3.0, 4.0])  # ‖∇D‖ = 5 → penalty λ·(5 - 1)²
    gp = ganzoo.create_regularizer("gp")
    assert gp.weight == 10.0
    x, y = torch.randn(8, 2), torch.randn(8, 2)
    close(gp(D, x, y, None), 10.0 * 16.0)
    close(ganzoo.create_regularizer("gp", weight=2.0)(D, x, y, None), 2.0 * 16.0)


def test_r1_r2_closed_form_and_gradient_reaches_d():
    D = Linear2([3.0, 4.0])
    x, y = torch.randn(8, 2), torch.randn(8, 2)
    r1 = ganzoo.create_regularizer("r1", weight=10.0)(D, x, y, None)
    close(r1, 0.5 * 10.0 * 25.0)
    r1.backward()
    # d/dw of 5·‖w‖² = 10·w
    assert torch.allclose(D.w.grad, 10.0 * torch.tensor([3.0, 4.0]))
    close(ganzoo.create_regularizer("r2", weight=1.0)(D, x, y, None), 0.5 * 25.0)


def test_top_k_logits_keeps_the_highest_share_in_whole_packs():
    from ganzoo.methods.top_k import top_k_logits

    x = torch.randn(100)
    assert top_k_logits(x, 1.0) is x
    for share, kept in ((0.29, 29), (0.57, 57), (0.5, 50), (0.001, 1)):  # ⌊share·N⌋, at least 1
        torch.testing.assert_close(top_k_logits(x, share), x.sort(descending=True).values[:kept])
    packs = torch.randn(4).repeat_interleave(4)  # 4 packs of 4: logits repeat within a pack
    for share, kept in ((0.5, 8), (0.6, 8), (0.1, 4)):  # whole packs, at least one
        torch.testing.assert_close(top_k_logits(packs, share, pack=4), packs.sort(descending=True).values[:kept])


@pytest.mark.parametrize("name", ["minimax", "non-saturating", "hinge", "wasserstein", "least-squares"])
def test_top_k_gives_the_dropped_fakes_no_gradient(name):
    from ganzoo.methods.top_k import top_k_logits

    torch.manual_seed(0)
    fake = torch.randn(8, 2, requires_grad=True)
    logits = nn.Linear(2, 1)(fake).squeeze(1)  # per-sample D: no batch statistics coupling the fakes
    ganzoo.create_loss(name).g_loss(top_k_logits(logits, 0.5)).backward()
    order = logits.detach().argsort(descending=True)
    norms = fake.grad.norm(dim=1)
    assert (norms[order[:4]] > 0).all() and (norms[order[4:]] == 0).all()


def test_unknown_loss_suggests_close_match():
    with pytest.raises(ganzoo.UnknownNameError, match="did you mean 'hinge'"):
        ganzoo.create_loss("hinj")


def test_a_third_party_loss_registers_through_the_same_hook():
    from ganzoo.catalog import Catalog
    from ganzoo import plugins, hookimpl

    class Doubled(AdversarialLoss):
        """Twice the hinge loss."""

    class Plugin:
        @staticmethod
        @hookimpl
        def register_losses(register):
            register("doubled", Doubled)

    plugins.load_plugins()
    plugins.pm.register(Plugin, name="test-third-party-loss")
    plugins._records["test-third-party-loss"] = plugins.PluginRecord(
        "test-third-party-loss", "ganzoo-doubled", "1.0", __name__)
    try:
        reg = Catalog()
        reg.fill()
        entry = reg.get("loss", "doubled")
        assert entry.plugin == "ganzoo-doubled" and entry.obj is Doubled
        assert entry.description == "Twice the hinge loss."
    finally:
        plugins.pm.unregister(name="test-third-party-loss")
        plugins._records.pop("test-third-party-loss")
