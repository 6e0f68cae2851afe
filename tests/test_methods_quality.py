"""The methods that buy quality (issue 18): DiffAugment, ADA, LeCam, bCR, and the data subset.

Unit tests drive each method through hand-built ``StepContext``s and check its defining
property; the end-to-end tests train a tiny DCGAN with each method and resume it bit-exactly.
"""
import math
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ganzoo.data import InMemoryDataset, ring8
from ganzoo.data.subset import Subset, subset
from ganzoo.errors import GanzooError
from ganzoo.methods import MethodStack, StepContext, create_method
from ganzoo.methods.ada import ADA, ada_augment
from ganzoo.methods.diffaugment import (DiffAugment, rand_brightness, rand_color, rand_contrast,
                                        rand_cutout, rand_saturation, rand_translation)
from ganzoo.methods.consistency import BalancedConsistency, consistency_transform
from ganzoo.methods.lecam import LeCam


def ctx(step=0, phase="d", **kw):
    return StepContext(step=step, total=1000, phase=phase, **kw)


def images(n=16, c=1, h=28, w=28, seed=0):
    """Images in [-1, 1] with no two pixels alike (so a moved pixel can be traced)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g) * 1.8 - 0.9
    return x


class TinyG(nn.Module):
    output_range = (-1.0, 1.0)

    def __init__(self, c=1, size=8):
        super().__init__()
        self.shape = (c, size, size)
        self.fc = nn.Linear(4, c * size * size)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(len(z), *self.shape)


def gradient_reaches_g(method, c=3):
    torch.manual_seed(0)
    G = TinyG(c)
    x = G(torch.randn(8, 4))
    out = method.transform(x, ctx(generator=G), "fake")
    (out * torch.randn_like(out)).sum().backward()
    return G.fc.weight.grad


# -- DiffAugment ---------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_gradients_flow_through_the_augmentation_to_g(policy):
    grad = gradient_reaches_g(create_method(f"diffaugment:policy={policy}"))
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("ratio, s", [(None, 2), (0.25, 4)])  # int(16 · ratio + 0.5); the paper's 1/8
def test_diffaugment_translation_shifts_content_with_zero_fill(ratio, s):
    x = images(64, h=16, w=16)
    torch.manual_seed(1)
    if ratio is None:
        out = rand_translation(x)
    else:  # through the method's option, as --method diffaugment:translation_ratio=0.25 sets it
        method = create_method(f"diffaugment:policy=translation,translation_ratio={ratio}")
        out = method.transform(x, ctx(), "real")
    shifts = set()
    for k in range(len(x)):
        for dy in range(-s, s + 1):
            for dx in range(-s, s + 1):
                want = torch.zeros_like(x[k])
                want[:, max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)] = \
                    x[k, :, max(-dy, 0):16 + min(-dy, 0), max(-dx, 0):16 + min(-dx, 0)]
                if torch.equal(out[k], want):
                    shifts.add((dy, dx))
                    break
            else:
                continue
            break
        else:
            pytest.fail(f"image {k} is not a shift of its input by at most {s} px with zero fill")
    assert len(shifts) > 10  # the shifts vary over the whole range
    assert {dy for dy, _ in shifts} == set(range(-s, s + 1))


def test_diffaugment_cutout_zeroes_a_half_size_square_clipped_at_the_border():
    x = torch.ones(200, 2, 28, 28)
    torch.manual_seed(2)
    out = rand_cutout(x)
    full = 0
    for k in range(len(out)):
        cut = out[k, 0] == 0
        assert torch.equal(out[k, 0], out[k, 1])  # the same square in every channel
        assert set(out[k].unique().tolist()) <= {0.0, 1.0}
        rows, cols = cut.any(1).nonzero().flatten(), cut.any(0).nonzero().flatten()
        assert len(rows) and len(cols)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert cut.sum() == (r1 - r0) * (c1 - c0) and cut[r0:r1, c0:c1].all()  # one rectangle
        for a, b in ((r0, r1), (c0, c1)):  # 14 px, or clipped by the border it touches
            assert b - a == 14 or (b - a < 14 and (a == 0 or b == 28))
        full += int(r1 - r0 == 14 and c1 - c0 == 14)
    assert full > 30  # a centre in 7..21 of 0..28 on both axes: about 27 %


def test_diffaugment_colour_ops_stay_in_their_ranges():
    x = images(500, c=3, h=4, w=4)
    torch.manual_seed(3)
    shift = rand_brightness(x) - x  # + U(-0.5, 0.5) per image
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6)
    b = shift[:, 0, 0, 0]
    assert b.min() >= -0.5 and b.max() <= 0.5 and b.min() < -0.4 and b.max() > 0.4

    out = rand_saturation(x)  # per-pixel channel mean kept, deviation scaled by U(0, 2)
    mean = x.mean(1, keepdim=True)
    assert torch.allclose(out.mean(1, keepdim=True), mean, atol=1e-5)
    s = ((out - mean).flatten(1) * (x - mean).flatten(1)).sum(1) / (x - mean).flatten(1).pow(2).sum(1)
    assert torch.allclose(out - mean, (x - mean) * s.view(-1, 1, 1, 1), atol=1e-5)
    assert s.min() >= 0 and s.max() <= 2 and s.min() < 0.2 and s.max() > 1.8

    out = rand_contrast(x)  # image mean kept, deviation scaled by U(0.5, 1.5)
    mean = x.mean((1, 2, 3), keepdim=True)
    assert torch.allclose(out.mean((1, 2, 3), keepdim=True), mean, atol=1e-5)
    c = ((out - mean).flatten(1) * (x - mean).flatten(1)).sum(1) / (x - mean).flatten(1).pow(2).sum(1)
    assert torch.allclose(out - mean, (x - mean) * c.view(-1, 1, 1, 1), atol=1e-5)
    assert c.min() >= 0.5 and c.max() <= 1.5 and c.min() < 0.6 and c.max() > 1.4

    torch.manual_seed(4)
    composed = rand_color(x)
    torch.manual_seed(4)
    assert torch.equal(composed, rand_contrast(rand_saturation(rand_brightness(x))))


def test_diffaugment_same_seed_same_augmentation_real_and_fake_alike():
    """The transform depends on the seed only: reals and fakes, D and G step, get the same op."""
    m, x = DiffAugment(), images(8, c=3, h=16, w=16)
    outs = []
    for which, phase in (("real", "d"), ("fake", "d"), ("fake", "g"), ("real", "g")):
        torch.manual_seed(5)
        outs.append(m.transform(x, ctx(phase=phase), which))
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert not torch.equal(outs[0], x)
    torch.manual_seed(6)
    assert not torch.equal(m.transform(x, ctx(), "real"), outs[0])


def test_diffaugment_in_a_stack_augments_every_input_of_d():
    stack = MethodStack([create_method("diffaugment:policy=cutout")])
    x = torch.ones(4, 1, 8, 8)
    for which in ("real", "fake"):
        assert (stack.transform(x, ctx(), which) == 0).any()


def test_diffaugment_works_in_the_generators_range():
    """Fill and brightness follow output_range: a [0, 1] model gets mid-grey 0.5 as fill."""
    class UnitG:
        output_range = (0.0, 1.0)

    x = torch.full((32, 1, 16, 16), 0.9)
    torch.manual_seed(7)
    out = DiffAugment(policy=("cutout",)).transform(x, ctx(generator=UnitG()), "real")
    assert out.unique().tolist() == pytest.approx([0.5, 0.9])


@pytest.mark.parametrize("lo, hi, rng", [(-1.0, 1.0, (-1.0, 1.0)), (0.0, 1.0, (0.0, 1.0)),
                                         (0.0, 1.0, None)])  # None: fed [0, 1] (to_model_range)
def test_diffaugment_fill_low_fills_with_the_bottom_of_the_range(lo, hi, rng):
    """fill=low: the uncovered border and the cut square take the range's low end (a black
    background), the content moves exactly as with the paper's mid-grey fill."""
    class G:
        output_range = rng

    x = images(64, c=2, h=16, w=16) * (hi - lo) / 2 + (lo + hi) / 2  # inside the range
    for policy in ("translation", "cutout"):
        torch.manual_seed(4)
        mid = DiffAugment(policy=(policy,)).transform(x, ctx(generator=G()), "real")
        torch.manual_seed(4)  # the same draws
        low = create_method(f"diffaugment:policy={policy},fill=low").transform(x, ctx(generator=G()), "real")
        filled = mid == (lo + hi) / 2
        assert filled.any() and (filled.sum((1, 2, 3)) > 0).float().mean() > 0.5
        assert torch.equal(low[filled], torch.full_like(low[filled], lo))
        assert torch.equal(low[~filled], mid[~filled])


def test_diffaugment_fill_is_checked_and_kept_in_the_spec():
    with pytest.raises(GanzooError, match=r"unknown diffaugment fill 'black' \(known: low, mid\)"):
        create_method("diffaugment:fill=black")
    spec = "diffaugment:policy=translation,fill=low"
    assert create_method(spec).spec() == spec


def test_diffaugment_cutout_ratio_sets_the_squares_side():
    method = create_method("diffaugment:policy=cutout,cutout_ratio=0.25")
    torch.manual_seed(3)
    out = method.transform(torch.ones(100, 1, 28, 28), ctx(), "real")
    sides = {int((out[k, 0] == 0).any(1).sum()) for k in range(len(out))}
    assert max(sides) == 7 and sides <= set(range(1, 8))  # int(28 / 4 + 0.5), clipped at a border


@pytest.mark.parametrize("spec, line", [
    ("diffaugment:translation_ratio=0.6", "diffaugment translation_ratio must be in [0, 0.5], got 0.6"),
    ("diffaugment:translation_ratio=-0.1", "diffaugment translation_ratio must be in [0, 0.5], got -0.1"),
    ("diffaugment:cutout_ratio=0", "diffaugment cutout_ratio must be in (0, 1], got 0.0"),
])
def test_diffaugment_ratios_are_range_checked(spec, line):
    with pytest.raises(GanzooError, match=re.escape(line)):
        create_method(spec)


def test_diffaugment_refuses_points_and_bad_policies():
    with pytest.raises(GanzooError, match=r"diffaugment augments images; ring8 holds samples of shape \(2,\)"):
        DiffAugment().wrap_dataset(ring8(), 0)
    with pytest.raises(GanzooError, match="augments images"):
        DiffAugment().transform(torch.zeros(4, 2), ctx(), "real")
    with pytest.raises(GanzooError, match=r"unknown diffaugment policy 'colour'; did you mean 'color'"):
        create_method("diffaugment:policy=colour,cutout")
    with pytest.raises(GanzooError, match="twice"):
        create_method("diffaugment:policy=cutout,cutout")
    assert create_method("diffaugment:policy=translation,color").spec() == "diffaugment:policy=translation,color"
    spec = "diffaugment:policy=translation,translation_ratio=0.25"
    assert create_method(spec).spec() == spec and create_method("diffaugment").spec() == "diffaugment"


# -- ADA -----------------------------------------------------------------------------------------
def feed(m, steps, logits_of_step, batch=8, start=0):
    """Run ``steps`` steps of D logits through the method; the p after each step."""
    ps = []
    for step in range(start, start + steps):
        c = ctx(step, real=torch.zeros(batch, 1, 4, 4), real_logits=logits_of_step(step, batch))
        assert m.d_terms(c) is None  # ADA only watches
        m.end_step(c)
        ps.append(m.p)
    return ps


def test_ada_p_rises_while_d_overfits_and_stays_at_most_1():
    m = ADA(interval=1, speed=8 * 10)  # 8 images a step: p moves 0.1 a step
    ps = feed(m, 15, lambda s, n: torch.full((n, 1), 3.0))  # r_t = 1 > 0.6
    assert ps[:10] == pytest.approx([0.1 * (k + 1) for k in range(10)], abs=1e-6)
    assert ps[10:] == [1.0] * 5
    assert m.log() == {"p": 1.0, "rt": 1.0}


def test_ada_p_falls_when_rt_is_below_the_target_and_stays_at_least_0():
    m = ADA(interval=1, speed=80, p_init=0.5)
    ps = feed(m, 8, lambda s, n: torch.tensor([1.0] * (n // 2) + [-1.0] * (n // 2)))  # r_t = 0
    assert ps == pytest.approx([0.4, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0, 0.0], abs=1e-6)
    assert min(ps) >= 0


def test_ada_counts_real_logits_about_the_losss_decision_threshold():
    """Least squares (targets 0 and 1) calls a logit above 0.5 real: a D that scores every real
    0.3 does not overfit, yet every sign about 0 was +1 and p climbed to 1 (rotations and flips
    at full odds, which leak into G). Losses whose D has no fixed origin are refused."""
    from ganzoo.catalog import create_loss

    assert [create_loss(n).decision_threshold for n in ("minimax", "non-saturating", "hinge", "least-squares")] \
        == [0.0, 0.0, 0.0, 0.5]
    m = ADA(interval=1, speed=80)
    m.check_loss(create_loss("least-squares"), "least-squares")
    assert feed(m, 3, lambda s, n: torch.full((n,), 0.3)) == [0.0, 0.0, 0.0]  # r_t = -1
    assert feed(m, 2, lambda s, n: torch.full((n,), 0.9), start=3) == pytest.approx([0.1, 0.2])
    hinge = ADA(interval=1, speed=80)
    hinge.check_loss(create_loss("hinge"), "hinge")
    assert feed(hinge, 2, lambda s, n: torch.full((n,), 0.3)) == pytest.approx([0.1, 0.2])  # 0.3 > 0
    for name in ("wasserstein", "relativistic"):
        with pytest.raises(GanzooError, match=f"^ada steers p .* {name}'s D has none .*diffaugment, which needs none$"):
            ADA().check_loss(create_loss(name), name)


def test_ada_adjusts_every_interval_steps_from_the_mean_sign_over_them():
    m = ADA(interval=4, speed=320, p_init=0.5)  # 4 steps of 8 images: p moves 0.1
    # 3 of 4 steps all positive, one all negative: r_t = 0.5 < 0.6, so p falls
    ps = feed(m, 8, lambda s, n: torch.full((n,), -1.0 if s % 4 == 0 else 1.0))
    assert ps == pytest.approx([0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4, 0.3], abs=1e-6)
    assert m.log()["rt"] == pytest.approx(0.5)


def test_ada_state_round_trips_bit_exactly_mid_interval():
    logits = lambda s, n: torch.randn(n, generator=torch.Generator().manual_seed(s)) + 0.9  # noqa: E731
    straight = ADA(interval=3, speed=240, p_init=0.5)  # E[r_t] = 0.63: p goes up and down by 0.1
    feed(straight, 20, logits)
    first = ADA(interval=3, speed=240, p_init=0.5)
    feed(first, 11, logits)  # stopped inside an interval
    resumed = ADA(interval=3, speed=240, p_init=0.5)
    resumed.load_state_dict(first.state_dict())
    feed(resumed, 9, logits, start=11)
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)
    assert 0 < straight.p < 1


def test_ada_augments_each_image_with_probability_p():
    x = images(400, c=3, h=8, w=8)
    torch.manual_seed(8)
    assert torch.equal(ada_augment(x, 0.0, ("xflip", "brightness", "cutout")), x)
    # xflip fires with p and then mirrors half of the time: a quarter of the images at p = 0.5
    flipped = (ada_augment(x, 0.5, ("xflip",)) != x).flatten(1).any(1).float().mean()
    assert 0.17 < flipped < 0.33
    torch.manual_seed(9)
    changed = (ada_augment(x, 0.5, ("brightness",)) != x).flatten(1).any(1).float().mean()
    assert 0.4 < changed < 0.6


def test_ada_blit_moves_whole_pixels():
    x = images(64, c=1, h=8, w=8)
    torch.manual_seed(10)
    out = ada_augment(x, 1.0, ("xflip", "rotate90"))
    for k in range(len(x)):  # one of the 8 symmetries of the square
        variants = [torch.rot90(v, r, (1, 2)) for v in (x[k], x[k].flip(2)) for r in range(4)]
        assert any(torch.equal(out[k], v) for v in variants)
    out = ada_augment(x, 1.0, ("xint",))
    pad = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")  # shifts of up to round(8/8) = 1
    for k in range(len(x)):
        assert any(torch.equal(out[k], pad[k, :, 1 + dy:9 + dy, 1 + dx:9 + dx])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_ada_colour_on_grey_images():
    x = images(64, c=1, h=4, w=4)
    torch.manual_seed(11)
    shift = ada_augment(x, 1.0, ("brightness",)) - x
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6)
    ratio = ada_augment(x, 1.0, ("contrast",)) / x
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-4)
    flipped = ada_augment(x, 1.0, ("lumaflip",))
    assert all(torch.allclose(f, v, atol=1e-6) or torch.allclose(f, -v, atol=1e-6) for f, v in zip(flipped, x))
    assert torch.equal(ada_augment(x, 1.0, ("hue", "saturation")), x)  # nothing to rotate in grey


def test_ada_gradients_flow_to_g_and_bad_options_are_refused():
    m = ADA(p_init=1.0, policy=("blit", "color", "noise", "cutout"))
    grad = gradient_reaches_g(m)
    assert grad is not None and grad.abs().sum() > 0
    with pytest.raises(GanzooError, match="ada target"):
        ADA(target=1.0)
    with pytest.raises(GanzooError, match=r"unknown ada policy 'xflp'; did you mean 'xflip'"):
        create_method("ada:policy=xflp")
    with pytest.raises(GanzooError, match="square"):
        ADA(p_init=1.0, policy=("rotate90",)).transform(torch.zeros(2, 1, 4, 6), ctx(), "real")
    with pytest.raises(GanzooError, match="ada augments images"):
        ADA().wrap_dataset(ring8(), 0)
    wide = InMemoryDataset(torch.zeros(4, 1, 4, 6, dtype=torch.uint8), name="wide")
    with pytest.raises(GanzooError, match="rotate90 needs square images, not 4x6"):
        ADA().wrap_dataset(wide, 0)
    assert ADA(policy=("xflip", "xint", "color")).wrap_dataset(wide, 0) is wide


# -- LeCam ---------------------------------------------------------------------------------------
def test_lecam_matches_its_formula_with_moving_average_anchors():
    m = LeCam(weight=0.5, decay=0.9)
    r1, f1 = torch.tensor([2.0, 1.0, 3.0]), torch.tensor([-1.0, 0.0, -2.0])
    r2, f2 = torch.tensor([1.0, 1.5]), torch.tensor([0.5, -0.5])
    # step 1: the bias-corrected averages are the first batch's means
    term = m.d_terms(ctx(real_logits=r1, fake_logits=f1))
    a_r, a_f = 2.0, -1.0
    want = ((r1 - a_f) ** 2).mean() + ((f1 - a_r) ** 2).mean()
    assert term.item() == pytest.approx(0.5 * want.item())
    # step 2: m_t = 0.9·m_{t-1} + 0.1·mean, α = m_t / (1 - 0.9²)
    term = m.d_terms(ctx(step=1, real_logits=r2, fake_logits=f2))
    a_r = (0.9 * 0.1 * 2.0 + 0.1 * 1.25) / (1 - 0.81)
    a_f = (0.9 * 0.1 * -1.0 + 0.1 * 0.0) / (1 - 0.81)
    want = ((r2 - a_f) ** 2).mean() + ((f2 - a_r) ** 2).mean()
    assert term.item() == pytest.approx(0.5 * want.item())
    assert m.log() == {"alpha_real": pytest.approx(a_r), "alpha_fake": pytest.approx(a_f)}
    assert m.d_terms(ctx(phase="g", real_logits=r2, fake_logits=f2)) is None  # D's loss only


def test_lecam_one_sided_is_the_official_codes_relu_form():
    m = LeCam(weight=1.0, one_sided=True)
    r, f = torch.tensor([0.0, -3.0]), torch.tensor([0.0, 3.0])  # means: α_R = -1.5, α_F = 1.5
    term = m.d_terms(ctx(real_logits=r, fake_logits=f))
    want = (torch.relu(r - 1.5) ** 2).mean() + (torch.relu(-1.5 - f) ** 2).mean()
    assert term.item() == pytest.approx(want.item()) and term.item() == 0.0
    assert LeCam(weight=1.0).d_terms(ctx(real_logits=r, fake_logits=f)).item() > 0


def test_lecam_anchors_carry_no_gradient():
    m = LeCam(weight=1.0)
    r = torch.tensor([1.0, 3.0], requires_grad=True)
    f = torch.tensor([-1.0, 1.0], requires_grad=True)
    m.d_terms(ctx(real_logits=r, fake_logits=f)).backward()
    # α_R = 2, α_F = 0 held constant: dR/dr = 2 (r - α_F) / n
    assert torch.allclose(r.grad, torch.tensor([1.0, 3.0]))
    assert torch.allclose(f.grad, torch.tensor([-3.0, -1.0]))


def test_lecam_state_round_trips_bit_exactly():
    def logits(s):
        g = torch.Generator().manual_seed(s)
        return torch.randn(16, generator=g) + 1, torch.randn(16, generator=g) - 1

    straight, first, resumed = LeCam(), LeCam(), LeCam()
    terms = [straight.d_terms(ctx(s, real_logits=logits(s)[0], fake_logits=logits(s)[1])) for s in range(10)]
    for s in range(6):
        first.d_terms(ctx(s, real_logits=logits(s)[0], fake_logits=logits(s)[1]))
    state = first.state_dict()
    assert isinstance(state["ema"], torch.Tensor) and isinstance(state["alpha_real"], torch.Tensor)
    resumed.load_state_dict(state)
    later = [resumed.d_terms(ctx(s, real_logits=logits(s)[0], fake_logits=logits(s)[1])) for s in range(6, 10)]
    assert all(torch.equal(a, b) for a, b in zip(terms[6:], later))
    assert torch.equal(straight.state_dict()["ema"], resumed.state_dict()["ema"])
    with pytest.raises(GanzooError, match="lecam decay"):
        LeCam(decay=1.0)


# -- bCR -----------------------------------------------------------------------------------------
class ColumnD(nn.Module):
    """Scores an image by a weighting of its columns: flat weights are blind to a left-right
    flip, a ramp is not."""

    def __init__(self, weights):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(weights, dtype=torch.float32))

    def forward(self, x, labels=None):
        return (x.sum(dim=(1, 2)) * self.w).sum(dim=1)


def test_bcr_matches_its_formula_on_the_same_draws():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 14 * 14, 1))
    score = lambda x, labels=None: D(x).view(-1)  # noqa: E731
    real, fake = images(8, seed=1), images(8, seed=2)
    c = ctx(real=real, fake=fake, real_logits=score(real), fake_logits=score(fake), discriminator=score)
    torch.manual_seed(5)
    term = BalancedConsistency(real_weight=2.0, fake_weight=0.5).d_terms(c)
    torch.manual_seed(5)  # the same T: real first, then fake
    t_real, t_fake = consistency_transform(real), consistency_transform(fake)
    want = 2.0 * ((score(real) - score(t_real)) ** 2).mean() + 0.5 * ((score(fake) - score(t_fake)) ** 2).mean()
    assert term.item() == pytest.approx(want.item(), rel=1e-6) and term.item() > 0
    # both sides of each difference carry gradient into D: the same gradients as the reference
    grads = torch.autograd.grad(term, list(D.parameters()))
    for got, ref in zip(grads, torch.autograd.grad(want, list(D.parameters()))):
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in grads)
    assert BalancedConsistency().d_terms(ctx(phase="g", real=real, fake=fake)) is None  # D's loss only


def test_bcr_takes_a_bf16_fake_from_an_autocast_generator():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.Flatten(), nn.Linear(4 * 14 * 14, 1))
    score = lambda x, labels=None: D(x).view(-1)  # noqa: E731
    real, fake = images(8, seed=1), images(8, seed=2).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        real_logits, fake_logits = score(real), score(fake)
    term = BalancedConsistency().d_terms(ctx(real=real, fake=fake, real_logits=real_logits,
                                             fake_logits=fake_logits, discriminator=score))
    assert term.dtype == torch.float32 and math.isfinite(term.item())


def test_bcr_flip_is_free_for_a_mirror_symmetric_d_and_costly_for_a_lopsided_one():
    x = images(16, w=8, h=8)
    flip_only = BalancedConsistency(translation_ratio=0.0, flip=True)
    for weights, zero in ((torch.ones(8), True), (torch.arange(8.0), False)):
        D = ColumnD(weights)
        c = ctx(real=x, fake=x, real_logits=D(x), fake_logits=D(x), discriminator=D)
        torch.manual_seed(0)
        term = flip_only.d_terms(c).item()
        assert (term < 1e-8) == zero, (weights, term)


def test_bcr_transform_flips_about_half_and_shifts_whole_pixels():
    x = images(2000, h=8, w=8)
    torch.manual_seed(0)
    flipped = consistency_transform(x, ratio=0.0)
    same, mirror = (flipped == x).flatten(1).all(1), (flipped == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirror).all()) and 0.45 < mirror.float().mean().item() < 0.55
    torch.manual_seed(0)
    moved = consistency_transform(x[:64], ratio=0.25, flip=False)
    torch.manual_seed(0)
    assert torch.equal(moved, rand_translation(x[:64], ratio=0.25))  # DiffAugment's own shift


@pytest.mark.parametrize("spec, line", [
    ("bcr:real_weight=-1", "bcr real_weight must be a number >= 0 (10 in the paper), got -1.0"),
    ("bcr:translation_ratio=0.6", "bcr translation_ratio must be in [0, 0.5], got 0.6"),
    ("bcr:translation_ratio=0,flip=false", "bcr needs a transform: translation_ratio > 0 or flip=true"),
    ("bcr:real_weight=0,fake_weight=0",
     "bcr with real_weight = fake_weight = 0 does nothing; leave the method out instead"),
])
def test_bcr_options_are_checked_in_one_line(spec, line):
    with pytest.raises(GanzooError) as err:
        create_method(spec)
    assert str(err.value) == line


def test_bcr_refuses_points_and_a_shift_that_rounds_to_nothing():
    with pytest.raises(GanzooError, match="bcr augments images"):
        BalancedConsistency().wrap_dataset(ring8(), 0)
    x = images(4)
    c = ctx(real=x, fake=x, real_logits=torch.zeros(4), fake_logits=torch.zeros(4),
            discriminator=lambda x, labels=None: x.sum(dim=(1, 2, 3)))
    with pytest.raises(GanzooError) as err:
        BalancedConsistency(translation_ratio=0.01, flip=False).d_terms(c)
    assert str(err.value) == ("bcr translation_ratio 0.01 shifts (28, 28) images by 0 px and flip is off, "
                              "so T does nothing; raise the ratio (>= 0.0179) or set flip=true")
    assert BalancedConsistency(translation_ratio=0.02, flip=False).d_terms(c) is not None  # 1 px


# -- subset --------------------------------------------------------------------------------------
def labelled(n=1000, classes=10):
    """Points whose value is their index, labelled ``7·index mod classes``."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1).expand(n, 2).contiguous()
    y = torch.arange(n) * 7 % classes
    return InMemoryDataset(x, y, classes, "toy", tuple(f"c{k}" for k in range(classes)))


def test_subset_size_seed_fraction_and_strata():
    data = labelled()
    a, b, c = subset(data, 100, seed=1), subset(data, 100, seed=1), subset(data, 100, seed=2)
    assert len(a) == 100 and torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)
    assert torch.bincount(data.labels[a.indices], minlength=10).tolist() == [10] * 10  # stratified
    assert len(subset(data, 0.1, seed=1)) == 100 and torch.equal(subset(data, 0.1, 1).indices, a.indices)
    assert len(subset(data, 1.0, seed=1)) == 1000 and len(subset(data, 1, seed=1)) == 1
    assert len(subset(data, "25%", seed=0)) == 250
    assert a.class_names == data.class_names and a.num_classes == 10 and not a.is_image
    x, y = a.batch(0, 100, seed=0)  # an epoch of the subset is the subset
    assert sorted(x[:, 0].tolist()) == sorted(a.indices.float().tolist())
    assert torch.equal(y, x[:, 0].long() * 7 % 10)
    assert a.record() == {"subset": 100, "subset_seed": 1, "subset_samples": 100, "dataset_samples": 1000}
    uneven = subset(labelled(classes=3), 10, seed=0)  # 3.33 each: the largest remainders get the rest
    assert sorted(torch.bincount(uneven._kept.labels).tolist()) == [3, 3, 4]


def test_subset_of_a_sampled_dataset_is_one_fixed_draw():
    s = subset(ring8(), 50, seed=3)
    assert s.indices is None and len(s) == 50 and torch.equal(s.centers, ring8().centers)
    seen = torch.cat([s.batch(step, 25, seed=0)[0] for step in range(6)])
    assert len(torch.unique(seen, dim=0)) == 50
    assert torch.equal(subset(ring8(), 50, seed=3)._kept.data, s._kept.data)


def test_subset_of_a_wrapper_keeps_the_wrappers_labels():
    """A wrapper that relabels (as cluster labels do) is subset through its batches."""
    from ganzoo.data import Dataset

    class Relabelled(Dataset):
        def __init__(self, base):
            self.base, self.name, self.shape, self.is_image = base, base.name, base.shape, base.is_image
            self.num_classes = 2

        def batch(self, step, batch_size, seed, rank=0, world_size=1):
            x, _ = self.base.batch(step, batch_size, seed, rank, world_size)
            return x, (x[:, 0] >= 500).long()

        def __len__(self):
            return len(self.base)

    s = subset(Relabelled(labelled()), 40, seed=0)
    x, y = s.batch(0, 40, seed=1)
    assert len(torch.unique(x[:, 0])) == 40 and torch.equal(y, (x[:, 0] >= 500).long())


@pytest.mark.parametrize("size, message", [
    (0, "at least 1 sample"), (-3, "at least 1 sample"), (1001, "more than the dataset has"),
    (0.0, "count >= 1 or a fraction"), (1.5, "count >= 1 or a fraction"), (0.0001, "keeps none"),
    (True, "a number of samples"), ("lots", "a number of samples"), (float("nan"), "a number of samples"),
    ("200%", "percentage must be in"), ("0%", "percentage must be in"),  # not a count of 2, nor 0
])
def test_subset_errors_are_one_line(size, message):
    with pytest.raises(GanzooError, match=message) as err:
        subset(labelled(), size, seed=0)
    assert "\n" not in str(err.value)
    assert isinstance(subset(labelled(), 1000, seed=0), Subset)


# -- end to end: a tiny DCGAN trains with each method and resumes bit-exactly ----------------------
def dcgan_cfg(mnist_dir, out, methods, **kw):
    from ganzoo.config import TrainConfig

    base = dict(arch="dcgan", dataset="mnist", split="test", data_root=str(mnist_dir), steps=4,
                batch_size=16, arch_options={"ngf": 8, "ndf": 8}, out=str(out), progress=False,
                log_every=1, sample_every=1000, checkpoint_every=2, methods=tuple(methods))
    base.update(kw)
    return TrainConfig(**base)


def final_state(run_dir):
    from ganzoo.checkpoint import latest_checkpoint, load_checkpoint

    return load_checkpoint(latest_checkpoint(run_dir))


def records(run_dir):
    import json

    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("spec", ["diffaugment", "ada:p_init=0.5,interval=1,speed=800", "lecam", "bcr",
                                  "diffaugment:policy=translation,cutout"])
def test_dcgan_trains_with_the_method_and_resumes_bit_exactly(tmp_path, mnist_dir, spec):
    from ganzoo.config import TrainConfig
    from ganzoo.training import train

    straight = train(dcgan_cfg(mnist_dir, tmp_path / "a", [spec]))
    half = train(dcgan_cfg(mnist_dir, tmp_path / "b", [spec], steps=2))
    resumed = train(TrainConfig(steps=4, progress=False), resume=half)
    a, b = final_state(straight), final_state(resumed)
    assert a["step"] == b["step"] == 4
    for part in ("generator", "discriminator", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume with {spec}"
    name = spec.partition(":")[0]
    for k, v in a["methods"][name].items():
        assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["methods"][name][k])), k
    logged = records(straight)
    assert len(logged) == 4 and all(math.isfinite(r["d_loss"]) for r in logged)
    # d_adv_loss is D's loss function alone: the methods that add a (non-negative) term to D's
    # loss log a larger d_loss; those that only transform D's inputs log the two equal
    if name in ("lecam", "bcr"):
        assert all(r["d_loss"] >= r["d_adv_loss"] for r in logged)
        assert logged[-1]["d_loss"] > logged[-1]["d_adv_loss"]
    else:
        assert all(r["d_loss"] == r["d_adv_loss"] for r in logged)
    if name == "ada":  # p moves by 16 / 800 = 0.02 a step, and is logged
        ps = [r["ada/p"] for r in logged]
        assert all(abs(abs(q - p) - 0.02) < 1e-5 for p, q in zip([0.5] + ps, ps)) and "ada/rt" in logged[0]
    if name == "lecam":
        assert {"lecam/alpha_real", "lecam/alpha_fake"} <= logged[-1].keys()


def test_ada_p_rises_while_d_tells_reals_from_fakes(tmp_path, mnist_dir):
    """D soon scores nearly every real positive (r_t near 1 > 0.6): p climbs from 0."""
    from ganzoo.training import train

    run = train(dcgan_cfg(mnist_dir, tmp_path / "r", ["ada:interval=2,speed=1600"], steps=30,
                          checkpoint_every=30, lr_d=1e-3))
    logged = records(run)
    ps = [r["ada/p"] for r in logged]
    assert ps[-1] > 0.1 and ps[-1] == max(ps)
    assert sum(r["ada/rt"] > 0.6 for r in logged[2:]) > len(logged[2:]) / 2


def test_class_loss_g_weight_sets_gs_term_alone():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    labels = torch.randint(0, 10, (8,), generator=g)
    c = dict(real_class_logits=real, fake_class_logits=fake, labels=labels)
    ce_real, ce_fake = F.cross_entropy(real, labels), F.cross_entropy(fake, labels)
    both = create_method("class-loss:weight=0.5")
    assert torch.allclose(both.d_terms(ctx(**c)), 0.5 * ce_real)
    assert torch.allclose(both.g_terms(ctx(phase="g", **c)), 0.5 * ce_fake)  # g_weight defaults to weight
    d_only = create_method("class-loss:weight=0.5,g_weight=0")
    assert torch.allclose(d_only.d_terms(ctx(**c)), 0.5 * ce_real)
    assert d_only.g_terms(ctx(phase="g", **c)) is None
    assert torch.allclose(create_method("class-loss:g_weight=0.25").g_terms(ctx(phase="g", **c)), 0.25 * ce_fake)
    with pytest.raises(GanzooError, match="class-loss g_weight must be >= 0, got -1.0"):
        create_method("class-loss:g_weight=-1")
