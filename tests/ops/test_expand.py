"""passes/ops/expand.py: expand / expand_as carrying the channel dim one to one.

Numerics: minimize_and_check (assert_close against the masked original, rtol 1e-4,
atol 1e-5·max(1, max|y|), at batches 1 and 7 after minimizing at batch 2). Biases nonzero.
"""
import pytest
import torch
import torch.nn as nn

from oneop import dead, kept, minimize_and_check, node_of, shapes

aten = torch.ops.aten


class Repeat(nn.Module):
    """h (B, T, 6) → h[:, None].expand(B, 3, T, 6) → Linear(6, 2): the channel dim is carried."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = self.a(x)
        return self.b(h[:, None].expand(h.shape[0], 3, h.shape[1], 6))


@pytest.mark.parametrize("bias", [0.0, 0.7])
def test_expand_carries_channels_and_its_size_becomes_minus_one(bias):
    """Rows 1 and 4 of a zeroed: ZERO (bias 0) or CONST(0.7) channels of h, copied by expand;
    b folds or drops them. a keeps 4 rows, b 4 columns, and expand's channel size is −1."""
    m = Repeat().eval()
    dead(m.a, [1, 4], bias=bias)
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    e = node_of(r.plan, "expand")
    assert kept(r.plan, e) == [0, 2, 3, 5]
    s = shapes(r.module)
    assert s["a.weight"] == (4, 4) and s["b.weight"] == (2, 4)
    (node,) = [n for n in r.module.graph.nodes if n.target is aten.expand.default]
    assert node.args[1][-1] == -1


class Gate(nn.Module):
    """g (B, T, 1) expanded to (B, T, 6): the size-1 channel dim is broadcast, not carried."""

    def __init__(self):
        super().__init__()
        self.a, self.g, self.b = nn.Linear(4, 6), nn.Linear(4, 1), nn.Linear(6, 2)

    def forward(self, x):
        h = self.a(x)
        return self.b(h * self.g(x).expand(-1, -1, 6))


def test_expand_broadcasting_the_channel_dim_is_a_barrier_with_its_reason():
    """The rule declines (a barrier naming the reason); the product with that untracked (B, T, 6)
    operand then keeps all of h's channels, so nothing goes, and the result is still exact."""
    m = Gate().eval()
    dead(m.a, [2], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    reasons = {b.reason for b in r.report.barriers if b.op == "expand.default"}
    assert reasons == {"expand broadcasts the channel dimension"}
    s = shapes(r.module)
    assert s["a.weight"] == (6, 4) and s["b.weight"] == (2, 6) and s["g.weight"] == (1, 4)


class CosineHeads(nn.Module):
    """Swinv2's normalize: q (B, T, 2 heads, 3) / ‖q‖.clamp_min(ε).expand_as(q), then merged."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        q = self.a(x).view(x.shape[0], x.shape[1], 2, 3)
        n = torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(1e-12)
        return self.b((q / n.expand_as(q)).reshape(x.shape[0], x.shape[1], 6))


def test_expand_as_couples_with_the_other_operand_and_a_dead_head_goes():
    """Head 1 (rows 3..5 of a, bias 0) is ZERO: ‖q‖ clamps to ε, q/ε = 0, b's columns fold. The
    expand_as output is coupled with q's heads, so both lose head 1 and the shapes agree."""
    m = CosineHeads().eval()
    dead(m.a, [3, 4, 5], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 5, 4),))
    assert kept(r.plan, node_of(r.plan, "expand_as")) == [0]
    s = shapes(r.module)
    assert s["a.weight"] == (3, 4) and s["b.weight"] == (2, 3)
    assert not [b for b in r.report.barriers if b.channels_kept]
