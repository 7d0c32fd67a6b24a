"""passes/ops/stack.py: stack and unbind on a new/non-channel dim keep channels one to one;
unbinding the channel dim is a barrier.

Numerics: minimize_and_check (assert_close, rtol 1e-4, atol 1e-5 · max(1, max|y|))."""
import torch
import torch.nn as nn

from oneop import const, dead, kept, minimize_and_check, node_of, shapes


class Packed(nn.Module):
    """u, g = stack([a(x), b(x)]).unbind(0); fc(u · σ(g)): a packed pair, unpacked again."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        u, g = torch.stack([self.a(x), self.b(x)], 0).unbind(0)
        return self.fc(u * torch.sigmoid(g))


def test_stack_unbind_carry_channels():
    m = Packed().eval()
    dead(m.a, [2], bias=0.0)      # u_2 ZERO -> u·σ(g) ZERO: a's and b's channel 2 go
    dead(m.a, [5], bias=0.5)      # stack channel 5 is not CONST (b's channel 5 is LIVE): kept
    r = minimize_and_check(m, (torch.randn(3, 4),))
    st = node_of(r.plan, "stack")
    assert r.plan.axis[st] == 2 and kept(r.plan, st) == [0, 1, 3, 4, 5]
    assert not const(r.plan, st)[0].any()
    s = shapes(r.module)
    assert s["a.weight"] == s["b.weight"] == (5, 4) and s["fc.weight"] == (3, 5)
    assert not r.report.barriers


def test_stack_of_equal_constants_is_constant():
    m = Packed().eval()
    dead(m.a, [1], bias=0.25)
    dead(m.b, [1], bias=0.25)     # both CONST(0.25) on channel 1: the stack is CONST(0.25) there
    r = minimize_and_check(m, (torch.randn(3, 4),))
    cm, cv = const(r.plan, node_of(r.plan, "stack"))
    assert cm.tolist() == [False, True, False, False, False, False] and cv[1] == 0.25
    assert shapes(r.module)["fc.weight"] == (3, 5)   # 0.25·σ(0.25)·fc[:, 1] folded into fc's bias


class ChannelUnbind(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(3, 2)

    def forward(self, x):
        p, q = self.a(x).view(x.shape[0], 2, 3).transpose(1, 2).unbind(-1)
        return self.fc(p + q)


def test_unbind_of_the_channel_dim_is_a_barrier():
    m = ChannelUnbind().eval()
    dead(m.a, [0], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["a.weight"] == (6, 4)
    (b,) = [b for b in r.report.barriers if b.op == "unbind.int"]
    assert b.reason == "unbind of the channel dimension"
