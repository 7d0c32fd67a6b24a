"""passes/ops/linear.py: Linear and addmm (GPT-2's Conv1D)."""
import torch
import torch.nn as nn

from oneop import dead, kept, minimize_and_check, node_of, shapes


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.b(self.a(x))


def test_zero_rows_go_and_const_rows_fold():
    m = Two().eval()
    dead(m.a, [1], bias=0.0)   # ZERO
    dead(m.a, [3], bias=0.5)   # CONST(0.5): folds into b's bias
    r = minimize_and_check(m, (torch.randn(2, 6),))
    lin = node_of(r.plan, "linear")
    assert kept(r.plan, lin) == [0, 2, 4]
    cm, cv = r.plan.const_mask[lin], r.plan.const_val[lin]
    assert cm[1] and cv[1] == 0 and cm[3] and abs(cv[3] - 0.5) < 1e-7 and not cm[0]
    assert shapes(r.module)["a.weight"] == (3, 6) and shapes(r.module)["b.weight"] == (3, 3)


class Conv1DLike(nn.Module):
    """addmm(b, x, W) with W stored (in, out), as GPT-2's Conv1D."""

    def __init__(self):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.randn(6, 5)), nn.Parameter(torch.randn(5))
        self.w2, self.b2 = nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(3))

    def forward(self, x):
        h = torch.addmm(self.b1, x, self.w1)
        return torch.addmm(self.b2, h, self.w2)


def test_addmm_transposed_weight():
    m = Conv1DLike().eval()
    with torch.no_grad():
        m.w1[:, [0, 4]] = 0  # output columns 0 and 4 of the first addmm read nothing: CONST(b)
    r = minimize_and_check(m, (torch.randn(2, 6),))
    assert kept(r.plan, node_of(r.plan, "addmm")) == [1, 2, 3]
    s = shapes(r.module)
    assert s["w1"] == (6, 3) and s["w2"] == (3, 3)


class PreLNBlock(nn.Module):
    """The issue's example: x + fc2(relu(fc(ln(x)))) with ln.weight[:5] = 0."""

    def __init__(self):
        super().__init__()
        self.ln, self.fc, self.fc2 = nn.LayerNorm(16), nn.Linear(16, 32), nn.Linear(32, 16)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc(self.ln(x))))


def test_const_channels_kept_for_other_readers_are_not_read():
    """The stream channels stay (the residual and the LayerNorm's statistics need them), but the
    LayerNorm's outputs there are CONST(β): fc folds them into its bias and reads the other 11
    channels through an index_select: 1104 -> 1104 - 32·5 + 11 = 955 elements."""
    m = PreLNBlock().eval()
    with torch.no_grad():
        m.ln.weight[:5] = 0
        m.ln.bias.uniform_(-0.5, 0.5)
    r = minimize_and_check(m, (torch.randn(2, 7, 16),))
    assert shapes(r.module)["fc.weight"] == (32, 11) and shapes(r.module)["ln.weight"] == (16,)
    assert r.report.params_before == 1104 and r.report.params_after == 955
    assert "index_select" in r.module.code
