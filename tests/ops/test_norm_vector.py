"""passes/ops/vector_norm.py: linalg_vector_norm over non-channel dims, and ConvNeXt-V2's GRN.

Numerics: minimize_and_check (assert_close, rtol 1e-4, atol 1e-5·max(1, max|y|), batches 1 and 7).
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fxminimize
from helpers import compare
from oneop import const, dead, kept, minimize_and_check, node_of, shapes


def minimize_static(m, example):
    """minimize with static image sizes (the reduced count M is then a number), compared on fresh
    inputs at batch 1 and 7 (same tolerance as minimize_and_check)."""
    r = fxminimize.minimize(m, example, dynamic_sizes=False)
    g = torch.Generator().manual_seed(1)
    for b in (1, 7):
        compare(m, r.module, tuple(torch.randn((b,) + tuple(t.shape[1:]), generator=g) for t in example))
    return r


class GRN(nn.Module):
    """transformers' ConvNextV2GRN (channels last), with trained-looking weights."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(0.5 * torch.randn(1, 1, 1, dim))
        self.bias = nn.Parameter(0.1 * torch.randn(1, 1, 1, dim))

    def forward(self, x):
        g = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return self.weight * (x * n) + self.bias + x


class V2Block(nn.Module):
    """ConvNeXt-V2 block as transformers builds it: dwconv, permute, LN, pwconv1, GELU, GRN, pwconv2."""

    def __init__(self, dim=8, hidden=16):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1, self.pwconv2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.grn = GRN(hidden)
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.ln(y)))))
        return x + y.permute(0, 3, 1, 2)


X = (torch.randn(2, 8, 6, 6),)


def test_grn_hidden_units_with_zero_rows_go():
    """pwconv1 rows 1, 4, 9 zero with zero bias: x_c = GELU(0) = 0, so ‖x_c‖ = 0 (CONST), the
    channel mean is compensated, y_c = w·0·n + b_c + 0 = CONST(b_c) folds into pwconv2."""
    m = V2Block().eval()
    dead(m.pwconv1, [1, 4, 9], bias=0.0)
    r = minimize_and_check(m, X)
    vn = node_of(r.plan, "linalg_vector_norm")
    assert kept(r.plan, vn) == [c for c in range(16) if c not in (1, 4, 9)]
    cm, cv = const(r.plan, vn)
    assert cm[[1, 4, 9]].all() and (cv[[1, 4, 9]] == 0).all() and not cm[0]
    s = shapes(r.module)
    assert s["pwconv1.weight"] == (13, 8) and s["pwconv2.weight"] == (8, 13)
    assert s["grn.weight"] == (1, 1, 1, 13) and s["grn.bias"] == (1, 1, 1, 13)
    assert not r.report.barriers or all(b.op != "linalg_vector_norm.default" for b in r.report.barriers)


@pytest.mark.parametrize("static", [False, True])
def test_grn_const_nonzero_unit_with_live_scale_stays(static):
    """pwconv1 row 2 zero with bias 0.7: x_2 = CONST(GELU(0.7)) ≠ 0, and y_2 = w_2·v·n_2 + b_2 + v
    varies with the live channel mean, so the unit is kept (exact, nothing guessed). With static
    image sizes ‖x_2‖ = v·√(HW) is CONST; with dynamic ones it depends on H·W, so it is LIVE."""
    m = V2Block().eval()
    dead(m.pwconv1, [2], bias=0.7)
    r = minimize_static(m, X) if static else minimize_and_check(m, X)
    vn = node_of(r.plan, "linalg_vector_norm")
    cm, cv = const(r.plan, vn)
    if static:
        assert cm[2] and cv[2] == pytest.approx(F.gelu(torch.tensor(0.7, dtype=torch.float64)).item() * 6.0)
    else:
        assert not cm[2]
    assert shapes(r.module)["pwconv1.weight"] == (16, 8)


def test_grn_const_nonzero_unit_with_zero_grn_weight_goes_at_static_sizes():
    """With w_2 = 0 too, y_2 = b_2 + v is CONST and the unit goes when the image size is static:
    ‖x_2‖ = v·√(HW) leaves the channel mean through its compensation. With a dynamic image size
    ‖x_2‖ is LIVE, the mean needs it, and the unit stays."""
    for static, rows in ((True, 15), (False, 16)):
        m = V2Block().eval()
        dead(m.pwconv1, [2], bias=0.7)
        with torch.no_grad():
            m.grn.weight[..., 2] = 0
        r = minimize_static(m, X) if static else minimize_and_check(m, X)
        assert shapes(r.module)["pwconv1.weight"] == (rows, 8) and shapes(r.module)["pwconv2.weight"] == (8, rows)


@pytest.mark.parametrize("order", [1, 2, 3, float("inf"), 0])
def test_vector_norm_of_const_channels(order):
    """A one-op graph: a Linear with rows 0 and 3 dead (biases 0.5 and −1.5) feeds ‖·‖_p over the
    sequence dim and a Linear. The norm is CONST(|v|·M^{1/p}) there and folds."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)

        def forward(self, x):
            return self.b(torch.linalg.vector_norm(self.a(x), ord=order, dim=1))

    m = M().eval()
    dead(m.a, [0, 3])
    with torch.no_grad():
        m.a.bias[0], m.a.bias[3] = 0.5, -1.5
    r = minimize_static(m, (torch.randn(2, 5, 4),))
    vn = node_of(r.plan, "linalg_vector_norm")
    cm, cv = const(r.plan, vn)
    expect = {1: 5.0, 2: 5 ** 0.5, 3: 5 ** (1 / 3), float("inf"): 1.0}
    if order == 0:
        assert cv[0] == cv[3] == 5.0
    else:
        assert cv[0] == pytest.approx(0.5 * expect[order]) and cv[3] == pytest.approx(1.5 * expect[order])
    assert cm[[0, 3]].all()
    assert shapes(r.module)["a.weight"] == (4, 4) and shapes(r.module)["b.weight"] == (3, 4)


def test_vector_norm_over_the_channel_dim_is_a_barrier():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 6)

        def forward(self, x):
            y = self.a(x)
            return y / torch.linalg.vector_norm(y, dim=-1, keepdim=True)

    m = M().eval()
    dead(m.a, [1], bias=0.3)
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["a.weight"] == (6, 4)
    assert any(b.op == "linalg_vector_norm.default" and "channel" in b.reason for b in r.report.barriers)


def test_vector_norm_of_const_channels_dynamic_length():
    """The sequence length is dynamic: ‖v·1_M‖_2 depends on M, so channel 3 (CONST −1.5) is LIVE and
    kept; channel 0 (ZERO) is ZERO for every M and goes; ord=inf gives |v| whatever M."""

    class M(nn.Module):
        def __init__(self, order):
            super().__init__()
            self.a, self.b, self.order = nn.Linear(4, 6), nn.Linear(6, 3), order

        def forward(self, x):
            return self.b(torch.linalg.vector_norm(self.a(x), ord=self.order, dim=1))

    for order, rows in ((2, 5), (float("inf"), 4)):
        m = M(order).eval()
        dead(m.a, [0, 3])
        with torch.no_grad():
            m.a.bias[0], m.a.bias[3] = 0.0, -1.5
        r = minimize_and_check(m, (torch.randn(2, 5, 4),))
        cm, cv = const(r.plan, node_of(r.plan, "linalg_vector_norm"))
        assert cm[0] and cv[0] == 0 and bool(cm[3]) == (order != 2)
        assert shapes(r.module)["a.weight"] == (rows, 4)
