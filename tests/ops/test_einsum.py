"""passes/ops/einsum.py: carried letters couple channels one to one, contracted letters couple
the operands, anything else keeps its channels (a barrier with its reason).

Numerics: minimize_and_check (assert_close, rtol 1e-4, atol 1e-5 · max(1, max|y|))."""
import torch
import torch.nn as nn

from oneop import const, dead, kept, minimize_and_check, node_of, shapes


class Heads(nn.Module):
    """relu(einsum(q, k)) then einsum with v, per head (MaxViT-style), then o-proj."""

    def __init__(self, H=3, D=4):
        super().__init__()
        self.H, self.D = H, D
        self.q, self.k, self.v = nn.Linear(6, H * D), nn.Linear(6, H * D), nn.Linear(6, H * D)
        self.o = nn.Linear(H * D, 5)

    def split(self, t):
        B, T, _ = t.shape
        return t.view(B, T, self.H, self.D)

    def forward(self, x):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        p = torch.relu(torch.einsum("bqhd,bkhd->bhqk", q, k))
        o = torch.einsum("bhqk,bkhd->bqhd", p, v)
        return self.o(o.reshape(x.shape[0], x.shape[1], self.H * self.D))


def test_carried_head_letter_removes_a_dead_head():
    m = Heads().eval()
    dead(m.v, list(range(8, 12)), bias=0.0)   # v head 2 ZERO -> the second einsum's head 2 ZERO
    r = minimize_and_check(m, (torch.randn(2, 7, 6),))
    second = node_of(r.plan, "einsum", 1)
    assert kept(r.plan, second) == [0, 1]
    cm, cv = const(r.plan, second)
    assert cm.tolist() == [False, False, True]
    s = shapes(r.module)
    assert s["q.weight"] == s["k.weight"] == s["v.weight"] == (8, 6) and s["o.weight"] == (5, 8)
    assert not r.report.barriers


class Contracted(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(4, 6)

    def forward(self, x):
        return torch.einsum("btc,bsc->bts", self.a(x), self.b(x))


def test_contracted_letter_couples_the_operands():
    m = Contracted().eval()
    dead(m.a, [0], bias=0.0)      # ZERO in a: both go
    dead(m.b, [4], bias=0.0)      # ZERO in b: both go
    dead(m.b, [2], bias=1.5)      # CONST(1.5) in b: a_2 · 1.5 is not 0, kept
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    assert kept(r.plan, node_of(r.plan, "linear", 0)) == [1, 2, 3, 5]
    assert shapes(r.module)["a.weight"] == shapes(r.module)["b.weight"] == (4, 4)


class Untracked(nn.Module):
    """A constant operand has no channel space: letter c is tracked in one operand only (W is
    stored (out, in) here, which the weight form does not cover)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.w = nn.Parameter(torch.randn(3, 6))

    def forward(self, x):
        return torch.einsum("btc,dc->btd", self.a(x), self.w)


def test_letter_not_tracked_in_every_operand_is_a_barrier():
    m = Untracked().eval()
    dead(m.a, [3], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    assert shapes(r.module)["a.weight"] == (6, 4)
    (b,) = [b for b in r.report.barriers if b.op == "einsum.default"]
    assert "not a channel dim of every operand" in b.reason and b.channels_kept == 6


class WeightEinsum(nn.Module):
    """einsum("btc,cd->btd", h, W): a Linear stored (in, out)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Linear(4, 6)
        self.w = nn.Parameter(torch.randn(6, 5, generator=g))
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(torch.relu(torch.einsum("btc,cd->btd", self.a(x), self.w)))


def test_weight_operand_is_a_linear():
    m = WeightEinsum().eval()
    dead(m.a, [1], bias=0.0)      # ZERO input: W's row 1 goes
    dead(m.a, [4], bias=0.5)      # CONST(0.5) input: folded, W's row 4 goes, a bias is added
    with torch.no_grad():
        m.w[:, 3] = 0             # output 3 reads only ... nothing: ZERO, fc's column goes
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    ein = node_of(r.plan, "einsum")
    assert kept(r.plan, ein) == [0, 1, 2, 4]
    s = shapes(r.module)
    assert s["w"] == (4, 4) and s["a.weight"] == (4, 4) and s["fc.weight"] == (2, 4)
    (bias,) = [k for k in s if k.startswith("w_bias")]
    assert s[bias] == (4,)
    assert not r.report.barriers
