"""passes/ops/tuples.py: cat with offsets, chunk → split_with_sizes, size queries."""
import torch
import torch.nn as nn

from oneop import dead, kept, minimize_and_check, node_of, shapes


class Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = nn.Linear(4, 3), nn.Linear(4, 5), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.cat([self.a(x), self.b(x)], -1))


def test_cat_offsets():
    m = Cat().eval()
    dead(m.a, [1], bias=0.0)
    dead(m.b, [0, 4], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert kept(r.plan, node_of(r.plan, "cat")) == [0, 2, 4, 5, 6]
    assert shapes(r.module)["fc.weight"] == (2, 5)


class Chunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(4, 8), nn.Linear(4, 2)

    def forward(self, x):
        u, g = self.a(x).chunk(2, -1)
        return self.fc(u * torch.sigmoid(g))


def test_chunk_becomes_split_with_sizes():
    m = Chunk().eval()
    dead(m.a, [1], bias=0.0)   # u channel 1 is ZERO: u·σ(g) is ZERO there, so g's channel 5 goes too
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["a.weight"] == (6, 4) and shapes(r.module)["fc.weight"] == (2, 3)
    assert "split_with_sizes" in r.module.code
