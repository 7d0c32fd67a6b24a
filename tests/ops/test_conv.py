"""passes/ops/conv.py: dense, grouped and padded convolutions."""
import pytest
import torch
import torch.nn as nn

from oneop import dead, kept, minimize_and_check, node_of, shapes


class Two(nn.Module):
    def __init__(self, groups=1, padding=0):
        super().__init__()
        self.a = nn.Conv2d(4, 8, 3)
        self.b = nn.Conv2d(8, 4, 3, padding=padding, groups=groups)

    def forward(self, x):
        return self.b(self.a(x))


def test_dead_filters_go_const_filters_fold_without_padding():
    m = Two().eval()
    dead(m.a, [0], bias=0.0)
    dead(m.a, [5], bias=0.3)
    r = minimize_and_check(m, (torch.randn(2, 4, 10, 10),))
    assert kept(r.plan, node_of(r.plan, "conv2d")) == [1, 2, 3, 4, 6, 7]
    assert shapes(r.module)["b.weight"] == (4, 6, 3, 3)


def test_const_filter_under_zero_padding_is_kept():
    m = Two(padding=1).eval()
    dead(m.a, [0], bias=0.0)
    dead(m.a, [5], bias=0.3)  # not uniform at the borders of a padded conv: stays
    r = minimize_and_check(m, (torch.randn(2, 4, 10, 10),))
    assert kept(r.plan, node_of(r.plan, "conv2d")) == [1, 2, 3, 4, 5, 6, 7]


def test_grouped_conv_loses_an_equal_number_from_each_group():
    m = Two(groups=4).eval()          # b: 4 groups of 2 inputs
    dead(m.a, [2, 3], bias=0.0)       # group 1 entirely dead
    dead(m.a, [4], bias=0.0)          # group 2 half dead: kept
    r = minimize_and_check(m, (torch.randn(2, 4, 10, 10),))
    assert kept(r.plan, node_of(r.plan, "conv2d")) == [0, 1, 4, 5, 6, 7]
    s = shapes(r.module)
    assert s["b.weight"] == (3, 2, 3, 3)
    from fxminimize.ir import bind
    convs = [n for n in r.module.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert bind(convs[1])["groups"] == 3


def test_grouped_conv_removes_a_rectangle_inside_the_groups():
    m = Two(groups=4).eval()          # b: 4 groups of 2 inputs, 1 output each
    dead(m.a, [2, 3], bias=0.0)       # group 1 entirely dead: its output is CONST(bias), the group goes
    dead(m.a, [0, 4, 7], bias=0.0)    # groups 0, 2, 3 lose one input each, at different positions
    r = minimize_and_check(m, (torch.randn(2, 4, 10, 10),), batches=(1, 3))
    assert kept(r.plan, node_of(r.plan, "conv2d")) == [1, 5, 6]
    s = shapes(r.module)
    assert s["b.weight"] == (3, 1, 3, 3)
    from fxminimize.ir import bind
    convs = [n for n in r.module.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert bind(convs[1])["groups"] == 3


# ---------------------------------------------------------------- ResNeXt / MobileNet blocks

def _trained_look(m, g):
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.2)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            if isinstance(mod, nn.Conv2d) and mod.bias is not None:
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)


class ResNeXtBlock(nn.Module):
    """1x1 → BN → ReLU → grouped 3x3 → BN → ReLU → 1x1 (64 channels, 8 groups of 8)."""

    def __init__(self, c=64, groups=8, padding=1):
        super().__init__()
        self.c1, self.bn1 = nn.Conv2d(16, c, 1), nn.BatchNorm2d(c)
        self.c2, self.bn2 = nn.Conv2d(c, c, 3, padding=padding, groups=groups), nn.BatchNorm2d(c)
        self.c3 = nn.Conv2d(c, 16, 1)

    def forward(self, x):
        y = torch.relu(self.bn1(self.c1(x)))
        return self.c3(torch.relu(self.bn2(self.c2(y))))


def _dead_per_group(g, rng, frac=0.3, c=64, groups=8):
    """30 % of the channels, chosen at random (every group loses at least one)."""
    size = c // groups
    while True:
        d = sorted(rng.choice(c, int(round(frac * c)), replace=False).tolist())
        per = [sum(1 for i in d if i // size == k) for k in range(groups)]
        if min(per) >= 1 and max(per) > min(per):
            return d, per


def _block(padding, const, seed):
    import numpy as np
    g = torch.Generator().manual_seed(seed)
    m = ResNeXtBlock(padding=padding).eval()
    _trained_look(m, g)
    rng = np.random.default_rng(seed)
    d_in, per_in = _dead_per_group(g, rng)
    d_out, per_out = _dead_per_group(g, rng)
    with torch.no_grad():
        m.c1.weight[d_in] = 0
        m.c2.weight[d_out] = 0
        if const:   # dead rows keep their bias: CONST channels that must fold (padding 0 only)
            m.bn1.bias[d_in] = m.bn1.bias[d_in].abs() + 0.2 + m.bn1.running_mean[d_in].abs() * 2
        else:       # dead rows lose their bias, and BN1+ReLU maps the ZERO channel to 0
            m.c1.bias[d_in] = 0
            m.c2.bias[d_out] = 0
            m.bn1.bias[d_in] = -m.bn1.bias[d_in].abs() - 0.2
            m.bn1.running_mean[d_in] = 0.0
    return m, d_in, per_in, d_out, per_out


@pytest.mark.parametrize("padding,const", [(1, False), (0, True), (0, False)])
@pytest.mark.parametrize("seed", [0, 1])
def test_resnext_block_with_30_percent_dead_rows_shrinks_every_group_alike(padding, const, seed):
    m, d_in, per_in, d_out, per_out = _block(padding, const, seed)
    r = minimize_and_check(m, (torch.randn(2, 16, 9, 9),), batches=(1, 3))
    s = shapes(r.module)
    rm_in, rm_out = 8 * min(per_in), 8 * min(per_out)
    assert s["c1.weight"] == (64 - rm_in, 16, 1, 1)
    assert s["c2.weight"] == (64 - rm_out, 8 - min(per_in), 3, 3)
    assert s["c3.weight"] == (16, 64 - rm_out, 1, 1)
    conv = node_of(r.plan, "conv2d", 1)
    k_out = kept(r.plan, conv)
    assert all(sum(1 for i in k_out if i // 8 == k) == 8 - min(per_out) for k in range(8))
    # only dead channels went, and the dead ones kept are the rectangle's padding
    assert set(range(64)) - set(k_out) <= set(d_out)
    # the rectangle's padding (dead rows kept so every group keeps as many) is required by the
    # conv itself: 8·(8 − min) kept rows, of which 64 − |dead| were needed downstream
    own = r.plan.node_names.index(conv)
    assert int((r.plan.required_by[conv][k_out] == own).sum()) == 8 * (8 - min(per_out)) - (64 - len(d_out))
    from fxminimize.ir import bind
    convs = [n for n in r.module.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert bind(convs[1])["groups"] == 8
    if const:
        assert (r.module.state_dict()["c2.bias"] != m.c2.bias[k_out]).any()  # the fold happened


def test_resnext_block_whole_dead_group_goes_and_the_rest_is_a_rectangle():
    m = ResNeXtBlock().eval()
    _trained_look(m, torch.Generator().manual_seed(3))
    d_in = list(range(16, 24)) + [1, 2, 9, 30, 33, 44, 50, 51, 60]   # group 2 whole; every other group >= 1
    with torch.no_grad():
        m.c1.weight[d_in] = 0
        m.c1.bias[d_in] = 0
        m.bn1.bias[d_in] = -m.bn1.bias[d_in].abs() - 0.2
        m.bn1.running_mean[d_in] = 0.0
    r = minimize_and_check(m, (torch.randn(2, 16, 9, 9),), batches=(1, 3))
    s = shapes(r.module)
    # group 2's outputs read only zeros: CONST, folded by c3, so the whole group goes
    assert s["c2.weight"] == (56, 7, 3, 3)
    assert s["c1.weight"] == (49, 16, 1, 1)
    from fxminimize.ir import bind
    convs = [n for n in r.module.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert bind(convs[1])["groups"] == 7


class MobileBlock(nn.Module):
    """1x1 → BN → ReLU → depthwise 3x3 (channel multiplier ``mult``) → BN → ReLU → 1x1."""

    def __init__(self, c=32, mult=1):
        super().__init__()
        self.c1, self.bn1 = nn.Conv2d(8, c, 1), nn.BatchNorm2d(c)
        self.dw, self.bn2 = nn.Conv2d(c, c * mult, 3, padding=1, groups=c), nn.BatchNorm2d(c * mult)
        self.c3 = nn.Conv2d(c * mult, 8, 1)

    def forward(self, x):
        y = torch.relu(self.bn1(self.c1(x)))
        return self.c3(torch.relu(self.bn2(self.dw(y))))


def test_depthwise_dead_channel_removes_its_whole_group():
    m = MobileBlock().eval()
    _trained_look(m, torch.Generator().manual_seed(4))
    d = [0, 3, 7, 8, 20, 21, 31]
    with torch.no_grad():
        m.c1.weight[d] = 0
        m.c1.bias[d] = 0
        m.bn1.bias[d] = -m.bn1.bias[d].abs() - 0.2
        m.bn1.running_mean[d] = 0.0
    r = minimize_and_check(m, (torch.randn(2, 8, 9, 9),), batches=(1, 3))
    s = shapes(r.module)
    assert s["c1.weight"] == (25, 8, 1, 1) and s["dw.weight"] == (25, 1, 3, 3)
    from fxminimize.ir import bind
    convs = [n for n in r.module.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert bind(convs[1])["groups"] == 25


def test_depthwise_multiplier_loses_one_output_per_group_at_different_positions():
    m = MobileBlock(c=16, mult=2).eval()
    _trained_look(m, torch.Generator().manual_seed(5))
    d = [2 * k + (k % 2) for k in range(16)]          # group k loses output k % 2
    dead(m.dw, d, bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 8, 9, 9),), batches=(1, 3))
    assert kept(r.plan, node_of(r.plan, "conv2d", 1)) == [2 * k + 1 - (k % 2) for k in range(16)]
    s = shapes(r.module)
    assert s["dw.weight"] == (16, 1, 3, 3) and s["c3.weight"] == (8, 16, 1, 1) and s["c1.weight"] == (16, 8, 1, 1)
