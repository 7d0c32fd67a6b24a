"""passes/ops/conv.py: dense, grouped and padded convolutions."""
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


def test_grouped_conv_loses_whole_groups_only():
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
