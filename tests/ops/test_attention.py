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
