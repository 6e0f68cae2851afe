"""ganzoo.layers: the ResNet GAN blocks that ganzoo-sngan and ganzoo-biggan share."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ganzoo.layers import RESNET_SIZES, ResidualDown, ResidualUp, projection_logits


def conv(cin, cout, k):
    return nn.Conv2d(cin, cout, k, 1, k // 2)


class RecordingNorm(nn.Module):
    """Batch norm without affine that records the condition it was given."""

    def __init__(self, channels):
        super().__init__()
        self.bn, self.seen = nn.BatchNorm2d(channels, affine=False), []

    def forward(self, x, cond):
        self.seen.append(cond)
        return self.bn(x)


def test_residual_up_matches_its_formula_and_passes_the_condition_to_both_norms():
    torch.manual_seed(0)
    block, x, cond = ResidualUp(4, 6, conv, RecordingNorm), torch.randn(3, 4, 5, 5), torch.arange(3)
    out = block(x, cond)
    assert [c is cond for c in block.bn1.seen + block.bn2.seen] == [True, True]
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    h = block.conv2(F.relu(block.bn2(block.conv1(up(F.relu(block.bn1(x, None)))), None)))
    assert out.shape == (3, 6, 10, 10)
    torch.testing.assert_close(out, h + block.shortcut(up(x)))


def test_residual_down_is_the_identity_plus_its_branch_when_the_shape_stays():
    torch.manual_seed(0)
    block = ResidualDown(4, 4, conv, down=False)
    assert block.shortcut is None
    with torch.no_grad():  # a zero branch leaves exactly the input
        block.conv2.weight.zero_(), block.conv2.bias.zero_()
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("first", [False, True])
def test_residual_down_matches_its_formula(first):
    torch.manual_seed(0)
    block, x = ResidualDown(3, 5, conv, down=True, first=first), torch.randn(2, 3, 8, 8)
    pool = lambda t: F.avg_pool2d(t, 2)  # noqa: E731
    branch = pool(block.conv2(F.relu(block.conv1(x if first else F.relu(x)))))
    shortcut = block.shortcut(pool(x)) if first else pool(block.shortcut(x))
    out = block(x)
    assert out.shape == (2, 5, 4, 4)
    torch.testing.assert_close(out, branch + shortcut)
    # the optimised first block sees the raw image: its negative values change the output
    if first:
        assert not torch.allclose(out, block(F.relu(x)))


def test_projection_logits_match_the_formula_and_the_class_head():
    torch.manual_seed(0)
    h, linear, embed = torch.randn(4, 8), nn.Linear(8, 1), nn.Embedding(3, 8)
    labels = torch.tensor([0, 2, 1, 2])
    psi = linear(h).squeeze(1)
    assert torch.equal(projection_logits(h, linear), psi)
    logits, class_logits = projection_logits(h, linear, embed, labels, class_logits=True)
    torch.testing.assert_close(logits, psi + (embed.weight[labels] * h).sum(1))
    assert class_logits.shape == (4, 3)
    torch.testing.assert_close(class_logits[torch.arange(4), labels] + psi, logits)
    with pytest.raises(ValueError, match="needs class labels"):
        projection_logits(h, linear, embed)


def test_resnet_sizes_reach_the_image_size():
    for size, (start, n_up, n_down) in RESNET_SIZES.items():
        assert start * 2 ** n_up == size
        assert size // 2 ** n_down in (7, 8)  # D pools down to 7x7 or 8x8, then two blocks keep it
