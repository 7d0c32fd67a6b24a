"""passes/ops/grouped_mm.py: transformers' grouped_mm_fallback (mixture-of-experts), with the
routing gathers of passes/ops/index.py around it.

Numerics: minimize_and_check (assert_close, rtol 1e-4, atol 1e-5 · max(1, max|y|)); routing
depends on the input, so fresh inputs route tokens to other experts."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from oneop import kept, minimize_and_check, node_of, shapes

pytest.importorskip("transformers.integrations.moe")
grouped_mm = torch.ops.transformers.grouped_mm_fallback


class MoE(nn.Module):
    """x → a → sort tokens by expert → grouped (up ‖ gate) → silu(gate)·up → grouped down →
    unsort → fc; the structure of transformers' MoE experts."""

    def __init__(self, E=3, C=6, I=5):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.E, self.I = E, I
        self.a, self.router, self.fc = nn.Linear(4, C), nn.Linear(4, E), nn.Linear(C, 3)
        self.gate_up = nn.Parameter(torch.randn(E, C, 2 * I, generator=g))
        self.down = nn.Parameter(torch.randn(E, I, C, generator=g))

    def forward(self, x):
        e = self.router(x).argmax(-1)
        order = e.argsort()
        offs = torch.histc(e.float(), bins=self.E, min=0, max=self.E - 1).cumsum(0).long()
        h = grouped_mm(self.a(x)[order], self.gate_up, offs)
        gate, up = h.chunk(2, -1)
        y = grouped_mm(F.silu(gate) * up, self.down, offs)
        return self.fc(y[order.argsort()])


def test_dead_up_half_and_dead_inputs_leave_every_expert():
    m = MoE().eval()
    with torch.no_grad():
        m.gate_up[:, :, [5 + 1, 5 + 3]] = 0   # up units 1, 3 ZERO in every expert: silu(gate)·up ZERO
        m.a.weight[[2]] = 0                    # a's channel 2 ZERO: the experts' input column goes
        m.a.bias[2] = 0.0
        m.down[:, :, 4] = 0                    # output channel 4 ZERO: fc's column folds (ZERO)
    r = minimize_and_check(m, (torch.randn(6, 4),), batches=(1, 7, 16))
    assert kept(r.plan, node_of(r.plan, "grouped_mm_fallback", 0)) == [0, 2, 4, 5, 7, 9]
    s = shapes(r.module)
    assert s["gate_up"] == (3, 5, 6) and s["down"] == (3, 3, 5) and s["fc.weight"] == (3, 5)
    # only the router's argmax (over the expert dim) keeps channels
    assert [b.op for b in r.report.barriers if b.channels_kept] == ["argmax.default"]


def test_nonzero_constant_input_is_kept():
    """A CONST(v ≠ 0) input adds v·W[e] per expert: not one bias, so it stays."""
    m = MoE().eval()
    with torch.no_grad():
        m.a.weight[[2]] = 0
        m.a.bias[2] = 0.5
    r = minimize_and_check(m, (torch.randn(6, 4),), batches=(1, 7, 16))
    assert shapes(r.module)["gate_up"] == (3, 6, 10) and shapes(r.module)["a.weight"] == (6, 4)


def test_experts_with_different_dead_units_lose_the_rectangle():
    """Expert e's dead hidden units differ from expert f's (passes/experts.py): each expert's
    units are permuted so its dead ones come first, and min over experts of the dead count goes
    from every expert (here 2 = min(3, 2, 2)); the other dead units stay."""
    m = MoE(E=3, C=6, I=5).eval()
    with torch.no_grad():
        m.gate_up[0, :, [5 + 0, 5 + 1, 5 + 4]] = 0   # expert 0: up units 0, 1, 4 dead
        m.down[1, [2, 3], :] = 0                     # expert 1: units 2, 3 unread (down rows)
        m.gate_up[2, :, [1, 3]] = 0                  # expert 2: gate units 1, 3 zero (silu(0) = 0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = minimize_and_check(m, (torch.randn(8, 4),), batches=(1, 7, 16))
    s = shapes(r.module)
    assert s["gate_up"] == (3, 6, 6) and s["down"] == (3, 3, 6)   # I: 5 → 3 in every expert
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())   # the user's model untouched


def test_experts_without_a_common_dead_count_keep_every_unit():
    m = MoE(E=3, C=6, I=5).eval()
    with torch.no_grad():
        m.gate_up[0, :, [5 + 0, 5 + 1]] = 0          # only experts 0 and 1 have dead units
        m.down[1, [4], :] = 0
    r = minimize_and_check(m, (torch.randn(8, 4),), batches=(1, 7, 16))
    assert shapes(r.module)["gate_up"] == (3, 6, 10) and shapes(r.module)["down"] == (3, 5, 6)
