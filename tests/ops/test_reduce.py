"""passes/ops/reduce.py: pooling per channel, mean over the channel dim compensated."""
import torch
import torch.nn as nn

from oneop import dead, kept, minimize_and_check, node_of, shapes


class Pool(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.fc = nn.Conv2d(3, 6, 3), nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(self.c(x), 1).flatten(1))


def test_pool_keeps_const_channels_const():
    m = Pool().eval()
    dead(m.c, [1, 2], bias=0.25)
    r = minimize_and_check(m, (torch.randn(2, 3, 8, 8),))
    p = node_of(r.plan, "adaptive_avg_pool2d")
    assert kept(r.plan, p) == [0, 3, 4, 5] and r.plan.const_mask[p][1]
    assert shapes(r.module)["fc.weight"] == (2, 4)


class RMS(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.a(x)
        return self.fc(h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6))


def test_mean_over_channels_is_compensated():
    m = RMS().eval()
    dead(m.a, [0, 7], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert kept(r.plan, node_of(r.plan, "linear")) == [1, 2, 3, 4, 5, 6]
    assert shapes(r.module)["fc.weight"] == (3, 6)
    code = r.module.code
    assert "mean" in code and "mul" in code  # mean_K · |K|/C
