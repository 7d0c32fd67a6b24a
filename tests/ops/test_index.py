"""passes/ops/index.py: index.Tensor gathers off the channel dim keep channels one to one.

Numerics: minimize_and_check (assert_close, rtol 1e-4, atol 1e-5 · max(1, max|y|))."""
import torch
import torch.nn as nn

from oneop import const, dead, kept, minimize_and_check, node_of, shapes


class Rows(nn.Module):
    """y = fc(a(x)[perm]) with perm computed from the data (MoE token sorting)."""

    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.a(x)                      # (S, 6)
        order = x[:, 0].argsort()
        return self.fc(h[order])


def test_row_gather_passes_channels():
    m = Rows().eval()
    dead(m.a, [1], bias=0.0)      # ZERO: removed
    dead(m.a, [4], bias=0.25)     # CONST(0.25): stays CONST through the gather, folded into fc
    r = minimize_and_check(m, (torch.randn(5, 4),))
    ix = node_of(r.plan, "index")
    assert kept(r.plan, ix) == [0, 2, 3, 5]
    cm, cv = const(r.plan, ix)
    assert cm.tolist() == [False, True, False, False, True, False] and cv[4] == 0.25
    assert shapes(r.module)["a.weight"] == (4, 4) and shapes(r.module)["fc.weight"] == (3, 4)
    assert not r.report.barriers


class Positions(nn.Module):
    """x (B, T, C) gathered on the sequence dim by a constant index (None on the batch dim)."""

    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(6, 3)
        self.register_buffer("pos", torch.tensor([[0, 2], [1, 1]]))

    def forward(self, x):
        return self.fc(self.a(x)[:, self.pos])      # (B, 2, 2, 6): channel dim moves from 2 to 3


def test_gather_on_a_middle_dim_moves_the_channel_dim():
    m = Positions().eval()
    dead(m.a, [0, 5], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 3, 4),))
    assert r.plan.axis[node_of(r.plan, "index")] == 3
    assert shapes(r.module)["a.weight"] == (4, 4) and shapes(r.module)["fc.weight"] == (3, 4)


class OnChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(3, 2)
        self.register_buffer("sel", torch.tensor([0, 1, 4]))

    def forward(self, x):
        return self.fc(self.a(x)[:, self.sel])


def test_index_on_the_channel_dim_is_a_barrier():
    m = OnChannels().eval()
    dead(m.a, [1], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["a.weight"] == (6, 4)
    (b,) = [b for b in r.report.barriers if b.op == "index.Tensor"]
    assert b.reason == "indexes the channel dimension" and b.channels_kept == 6
