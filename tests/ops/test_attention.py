"""passes/ops/attention.py: a head whose v rows are dead leaves, sdpa keeps its scale."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from oneop import minimize_and_check, shapes


class Attn(nn.Module):
    def __init__(self, d=8, h=2):
        super().__init__()
        self.h = h
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        B, T, D = x.shape
        sp = lambda t: t.view(B, T, self.h, D // self.h).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(sp(self.q(x)), sp(self.k(x)), sp(self.v(x)))
        return self.o(a.transpose(1, 2).reshape(B, T, D))


def test_dead_head_leaves_and_scale_is_pinned():
    m = Attn().eval()
    with torch.no_grad():
        m.o.weight[:, 4:] = 0     # nothing reads head 1's output
    r = minimize_and_check(m, (torch.randn(2, 5, 8),))
    s = shapes(r.module)
    assert s["q.weight"] == (4, 8) and s["k.weight"] == (4, 8) and s["v.weight"] == (4, 8)
    assert s["o.weight"] == (8, 4)
    assert "scale = 0.5" in r.module.code.replace("scale=", "scale = ")  # 1/√4, the original head dim


# ---- timm's fused qkv: reshape(B, N, 3, H, D) → permute(2, 0, 3, 1, 4) → unbind(0) -------------

class TimmAttention(nn.Module):
    """timm's ``Attention`` written out (timm is not installed); ``chunk=True`` is the HF form."""

    def __init__(self, dim=16, heads=4, chunk=False):
        super().__init__()
        self.h, self.d, self.chunk = heads, dim // heads, chunk
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        if self.chunk:
            q, k, v = [t.reshape(B, N, self.h, self.d).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1)]
        else:
            q, k, v = self.qkv(x).reshape(B, N, 3, self.h, self.d).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


class TimmBlock(nn.Module):
    def __init__(self, chunk=False):
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(16), TimmAttention(chunk=chunk)
        self.n2, self.fc1, self.fc2 = nn.LayerNorm(16), nn.Linear(16, 32), nn.Linear(32, 16)

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        return x + self.fc2(F.gelu(self.fc1(self.n2(x))))


def _dead_head(m, h):
    with torch.no_grad():
        for part in range(3):   # q, k and v rows of head h (4 dims each), biases too
            rows = slice(part * 16 + 4 * h, part * 16 + 4 * h + 4)
            m.attn.qkv.weight[rows] = 0
            m.attn.qkv.bias[rows] = 0


def test_timm_fused_qkv_unbind_loses_whole_heads_like_the_chunk_form():
    results = {}
    for chunk in (True, False):
        torch.manual_seed(0)
        m = TimmBlock(chunk).eval()
        _dead_head(m, 1)
        r = minimize_and_check(m, (torch.randn(2, 5, 16),))
        assert not r.report.barriers
        results[chunk] = (shapes(r.module), r.report.params_after)
    s, after = results[False]
    assert s["attn.qkv.weight"] == (36, 16) and s["attn.qkv.bias"] == (36,)   # one of 4 heads × q, k, v
    assert s["attn.proj.weight"] == (16, 12)
    assert results[False] == results[True]


def test_timm_fused_qkv_split_is_exact_at_other_sequence_lengths():
    torch.manual_seed(1)
    m = TimmBlock().eval()
    _dead_head(m, 3)
    r = minimize_and_check(m, (torch.randn(2, 7, 16),))
    g = torch.Generator().manual_seed(5)
    for n in (3, 11):
        x = torch.randn(2, n, 16, generator=g)
        with torch.no_grad():
            y = m(x)
            torch.testing.assert_close(r.module(x), y, rtol=1e-4, atol=1e-5 * max(1.0, float(y.abs().max())))
    assert not any(n.target is torch.ops.aten.unbind.int for n in r.module.graph.nodes)
