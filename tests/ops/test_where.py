"""passes/ops/where.py: where(mask, a, b) with a position mask carries channels one to one; a
0-d constant operand becomes a scalar.

Numerics: minimize_and_check (assert_close, rtol 1e-4, atol 1e-5 · max(1, max|y|))."""
import torch
import torch.nn as nn

from oneop import const, dead, kept, minimize_and_check, node_of, shapes


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):                       # x (B, T, 4); mask over positions (B, T, 1)
        return self.fc(torch.where(x[..., :1] > 0, self.a(x), 0.0))


def test_position_mask_passes_channels():
    m = Masked().eval()
    dead(m.a, [1], bias=0.0)    # where(mask, 0, 0.0) = ZERO: removed
    dead(m.a, [3], bias=0.5)    # where(mask, 0.5, 0.0) depends on the mask: LIVE, kept
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    w = node_of(r.plan, "where")
    assert kept(r.plan, w) == [0, 2, 3, 4, 5]
    cm, cv = const(r.plan, w)
    assert cm.tolist() == [False, True, False, False, False, False]
    assert shapes(r.module)["a.weight"] == (5, 4) and shapes(r.module)["fc.weight"] == (3, 5)
    assert not r.report.barriers


class Scores(nn.Module):
    """GPT-Neo's causal masking: where(causal, scores, torch.tensor(min)) on untracked scores."""

    def __init__(self):
        super().__init__()
        self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        s = self.q(x) @ self.k(x).transpose(1, 2)
        T = x.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        mask_value = torch.tensor(torch.finfo(s.dtype).min, dtype=s.dtype)
        return torch.where(causal, s, mask_value).softmax(-1)


def test_zero_dim_constant_becomes_a_scalar():
    m = Scores().eval()
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    assert "where.ScalarOther" in r.module.code
    assert not [k for k, v in r.module.state_dict().items() if v.dim() == 0]


class Filled(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):                       # masked_fill(h, mask, 0) with a position mask
        return self.fc(self.a(x).masked_fill(x[..., :1] > 0, 0.0))


def test_masked_fill_is_where():
    m = Filled().eval()
    dead(m.a, [2], bias=0.0)    # masked_fill(0, mask, 0.0) = ZERO: removed
    dead(m.a, [4], bias=0.5)    # 0.5 or 0.0 by position: LIVE, kept
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    assert kept(r.plan, node_of(r.plan, "masked_fill")) == [0, 1, 3, 4, 5]
    assert shapes(r.module)["a.weight"] == (5, 4) and shapes(r.module)["fc.weight"] == (3, 5)
    assert not r.report.barriers
