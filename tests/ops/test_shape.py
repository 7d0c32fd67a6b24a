"""passes/ops/shape.py: flatten (merge map), head split (split map), permute, slice."""
import pytest
import torch
import torch.nn as nn

from oneop import dead, kept, minimize_and_check, node_of, shapes


class Flat(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.fc = nn.Conv2d(2, 3, 1), nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(self.c(x).flatten(1))


def test_flatten_maps_each_channel_to_its_features():
    m = Flat().eval()
    dead(m.c, [1], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 2, 4, 4),))
    v = node_of(r.plan, "view") if any(n.startswith("view") for n in r.plan.node_names) else node_of(r.plan, "flatten")
    assert kept(r.plan, v) == list(range(16)) + list(range(32, 48))
    assert shapes(r.module)["fc.weight"] == (2, 32)


class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):  # (B, 6) -> (B, 3, 2) -> permute -> reshape back
        h = self.a(x).view(-1, 3, 2).permute(0, 2, 1)
        return self.b(h.permute(0, 2, 1).reshape(-1, 6))


def test_view_split_keeps_whole_heads():
    m = Heads().eval()
    dead(m.a, [2, 3], bias=0.0)   # head 1 entirely
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["a.weight"] == (4, 4) and shapes(r.module)["b.weight"] == (2, 4)


class Slice(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):  # (B, T, 4): take the first token
        return self.b(self.a(x)[:, 0])


def test_select_on_another_dim_keeps_channels_one_to_one():
    m = Slice().eval()
    dead(m.a, [5], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 3, 4),))
    assert shapes(r.module)["b.weight"] == (2, 5)


class Roll(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims
        self.c, self.d = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.d(torch.roll(self.c(x), shifts=(1, 2), dims=self.dims))


def test_roll_over_spatial_dims_keeps_channels_one_to_one():
    m = Roll((2, 3)).eval()
    dead(m.c, [0, 4], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 3, 6, 6),))
    assert kept(r.plan, node_of(r.plan, "roll")) == [1, 2, 3, 5]
    assert shapes(r.module)["c.weight"] == (4, 3, 1, 1) and shapes(r.module)["d.weight"] == (2, 4, 1, 1)


def test_roll_over_the_channel_dim_is_a_barrier():
    m = Roll((1, 2)).eval()
    dead(m.c, [0, 4], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 3, 6, 6),))
    assert any(b.op.startswith("roll") and "channel" in b.reason for b in r.report.barriers)


class Layout(nn.Module):
    """swapaxes, constant pad and nearest/bilinear upsampling on spatial dims."""

    def __init__(self, mode="nearest", pad_value=0.0):
        super().__init__()
        self.mode, self.pad_value = mode, pad_value
        self.c, self.d = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 2, 1)

    def forward(self, x):
        y = self.c(x).swapaxes(2, 3)
        y = torch.nn.functional.pad(y, (1, 1, 2, 0), value=self.pad_value)
        y = torch.nn.functional.interpolate(y, scale_factor=2.0, mode=self.mode)
        return self.d(y)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_swapaxes_pad_upsample_keep_channels_one_to_one(mode):
    m = Layout(mode).eval()
    dead(m.c, [1, 4], bias=0.0)       # ZERO: padding with 0 keeps it ZERO
    r = minimize_and_check(m, (torch.randn(2, 3, 5, 7),))
    assert shapes(r.module)["c.weight"] == (4, 3, 1, 1) and shapes(r.module)["d.weight"] == (2, 4, 1, 1)
    assert r.report.barriers == ()


def test_constant_pad_of_a_nonzero_constant_is_not_uniform():
    m = Layout().eval()
    dead(m.c, [1], bias=0.5)          # CONST(0.5) padded with 0: the border differs, so LIVE
    r = minimize_and_check(m, (torch.randn(2, 3, 5, 7),))
    assert shapes(r.module)["d.weight"] == (2, 6, 1, 1)
    assert not r.plan.const_mask[node_of(r.plan, "pad")][1]


class TokensBN(nn.Module):
    """LeViT's MLP: Linear, then BatchNorm over flattened tokens, reshaped back with reshape_as."""

    def __init__(self):
        super().__init__()
        self.a, self.bn, self.b = nn.Linear(8, 12), nn.BatchNorm1d(12), nn.Linear(12, 8)

    def forward(self, x):
        h = self.a(x)
        h = self.bn(h.flatten(0, 1)).reshape_as(h)
        return self.b(torch.relu(h))


def test_reshape_as_follows_the_other_tensors_channels():
    m = TokensBN().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.2, 0.2)
    dead(m.a, [0, 7], bias=0.0)
    with torch.no_grad():
        m.bn.weight[[0, 7]] = 0
        m.bn.bias[[0, 7]] = 0
    r = minimize_and_check(m, (torch.randn(2, 5, 8),))
    assert shapes(r.module)["a.weight"] == (10, 8) and shapes(r.module)["b.weight"] == (8, 10)
    assert r.report.barriers == ()
