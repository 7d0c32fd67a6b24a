"""Focused tests of the transformer rules with nonzero constants (s1, s2 ≠ 0), so every
compensation term is exercised. Tolerance: helpers.compare (rtol 1e-4, atol 1e-5·scale)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import fxminimize
from fxminimize.compensated import COMPENSATED_LAYER_NORM
from helpers import compare, shapes

R = [1, 4, 6]  # channels made CONST (nonzero values)


class LNBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.ln, self.b = nn.Linear(5, 8), nn.LayerNorm(8), nn.Linear(8, 3)
        with torch.no_grad():
            self.a.weight[R] = 0
            self.a.bias[R] = torch.tensor([0.7, -1.3, 2.1])  # CONST(v ≠ 0): s1, s2 ≠ 0
            nn.init.uniform_(self.ln.weight, 0.5, 1.5)
            nn.init.uniform_(self.ln.bias, -0.5, 0.5)

    def forward(self, x):
        return self.b(self.ln(self.a(x)))


def test_layer_norm_compensated_with_nonzero_constants():
    torch.manual_seed(0)
    m = LNBlock().eval()
    with torch.no_grad():
        m.b.weight[:, R] = 0  # nobody reads the removed channels' own LN outputs
    r = fxminimize.minimize(m, (torch.randn(4, 5),))
    compare(m, r.module, (torch.randn(9, 5),))
    assert shapes(r.module)["a.weight"] == (5, 5) and shapes(r.module)["b.weight"] == (3, 5)
    calls = [n for n in r.module.graph.nodes if n.target is COMPENSATED_LAYER_NORM]
    assert len(calls) == 1
    count, s1, s2 = calls[0].args[1:4]
    assert count == 8 and abs(s1 - 1.5) < 1e-6 and abs(s2 - (0.49 + 1.69 + 4.41)) < 1e-6


def test_layer_norm_channel_with_zero_gamma_folds_beta_downstream():
    torch.manual_seed(0)
    m = LNBlock().eval()
    with torch.no_grad():
        m.ln.weight[R] = 0  # output r = β_r: CONST, folded into b's bias (b reads it)
    r = fxminimize.minimize(m, (torch.randn(4, 5),))
    compare(m, r.module, (torch.randn(9, 5),))
    assert shapes(r.module)["b.weight"] == (3, 5)


def test_layer_norm_keeps_a_constant_channel_that_is_read():
    torch.manual_seed(0)
    m = LNBlock().eval()  # b reads every LN output: output r varies per row, so r stays
    r = fxminimize.minimize(m, (torch.randn(4, 5),))
    compare(m, r.module, (torch.randn(9, 5),))
    assert shapes(r.module)["a.weight"] == (8, 5)


class RMSBlock(nn.Module):
    """Llama's hand-written RMSNorm: x · rsqrt(mean(x²) + ε) · γ."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 8), nn.Linear(8, 3)
        self.g = nn.Parameter(torch.rand(8) + 0.5)
        with torch.no_grad():
            self.a.weight[R] = 0
            self.a.bias[R] = torch.tensor([0.7, -1.3, 2.1])
            self.b.weight[:, R] = 0

    def forward(self, x):
        h = self.a(x)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.b(self.g * h)


def test_rms_norm_mean_compensated():
    torch.manual_seed(0)
    m = RMSBlock().eval()
    r = fxminimize.minimize(m, (torch.randn(4, 5),))
    compare(m, r.module, (torch.randn(9, 5),))
    assert shapes(r.module)["a.weight"] == (5, 5) and shapes(r.module)["g"] == (5,)
    assert r.plan is not None and any(k == "reduce" for k in r.plan.kind.values())


class EmbHead(nn.Module):
    """Token embedding tied with the output head; a constant column goes through a Linear."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.mid = nn.Linear(8, 8)
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.emb.weight
        with torch.no_grad():
            self.emb.weight[:, R] = torch.tensor([0.5, -0.25, 1.0])  # CONST columns
            self.mid.weight[R] = 0
            self.mid.bias[R] = 0  # mid's outputs R are ZERO: the head does not read them

    def forward(self, ids):
        return self.head(self.mid(self.emb(ids)))


def test_embedding_constant_columns_fold_and_tied_head_stays_tied():
    torch.manual_seed(0)
    m = EmbHead().eval()
    ids = torch.randint(0, 20, (2, 6))
    r = fxminimize.minimize(m, (ids,))
    compare(m, r.module, (torch.randint(0, 20, (3, 6)),))
    sd = dict(r.module.named_parameters(remove_duplicate=False))
    # emb columns R were CONST (folded into mid's bias) and mid's rows R ZERO (unread by head):
    # the tied table loses columns R for both users and stays one tensor
    emb_like = {k: tuple(v.shape) for k, v in sd.items() if v.shape[0] == 20}
    assert set(emb_like.values()) == {(20, 5)}
    assert len({id(v) for k, v in sd.items() if v.shape[0] == 20}) == 1


def test_constant_output_channels_are_restored():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(32, 8), nn.GELU()).eval()  # wide enough that restoring pays
    with torch.no_grad():
        m[0].weight[R] = 0
        m[0].bias[R] = torch.tensor([0.7, -1.3, 2.1])
    r = fxminimize.minimize(m, (torch.randn(4, 32),))
    compare(m, r.module, (torch.randn(9, 32),))
    assert shapes(r.module)["0.weight"] == (5, 32)
    x = torch.randn(2, 32)
    with torch.no_grad():
        y = r.module(x)
    assert y.shape == (2, 8)
    torch.testing.assert_close(y[:, R], F.gelu(torch.tensor([0.7, -1.3, 2.1])).expand(2, 3))


def test_result_with_compensated_layer_norm_can_be_deep_copied():
    """Regression: rewrite bookkeeping (node objects) must not stay in the result's meta."""
    import copy

    torch.manual_seed(0)
    m = LNBlock().eval()
    with torch.no_grad():
        m.b.weight[:, R] = 0
    r = fxminimize.minimize(m, (torch.randn(4, 5),))
    dup = copy.deepcopy(r.module)
    compare(r.module, dup, (torch.randn(3, 5),))
