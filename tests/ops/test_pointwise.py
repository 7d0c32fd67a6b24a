"""passes/ops/pointwise.py: unary maps, binary ops (residual, per-channel constants), in-place."""
import torch
import torch.nn as nn

from oneop import const, dead, kept, minimize_and_check, node_of, shapes


class Act(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.a, self.b, self.act = nn.Linear(4, 6), nn.Linear(6, 3), act

    def forward(self, x):
        return self.b(self.act(self.a(x)))


def test_sigmoid_of_zero_is_const_half_and_folds():
    m = Act(torch.sigmoid).eval()
    dead(m.a, [2], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 4),))
    cm, cv = const(r.plan, node_of(r.plan, "sigmoid"))
    assert cm[2] and abs(cv[2] - 0.5) < 1e-12
    assert shapes(r.module)["b.weight"] == (3, 5)


class LayerScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)
        self.gamma = nn.Parameter(torch.rand(6) + 0.5)

    def forward(self, x):
        h = self.a(x)
        return self.b(h + self.gamma * h)


def test_residual_couples_and_per_channel_constant_is_sliced():
    m = LayerScale().eval()
    dead(m.a, [0, 5], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert kept(r.plan, node_of(r.plan, "add")) == [1, 2, 3, 4]
    assert shapes(r.module)["gamma"] == (4,)


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.a(x)
        h.relu_()
        return self.b(h)


def test_inplace_relu_behaves_like_relu():
    m = InPlace().eval()
    dead(m.a, [1], bias=-1.0)  # relu(-1) = 0
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["b.weight"] == (3, 5)


class CastDrop(nn.Module):
    """type_as and eval-mode in-place dropout (torchvision's EfficientNet classifier)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = torch.nn.functional.dropout(self.a(x).type_as(x), 0.2, training=False, inplace=True)
        return self.b(h)


def test_type_as_and_inplace_eval_dropout_pass_channels_through():
    m = CastDrop().eval()
    dead(m.a, [0, 3], bias=0.25)      # CONST(0.25) through the cast and dropout, folded into b
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["a.weight"] == (4, 4) and shapes(r.module)["b.weight"] == (3, 4)
    assert r.report.barriers == ()


def test_binary_on_a_source_space_keeps_its_constant_whole():
    """x·(1 + s) on the model input (fuzz seeds 180, 20064): the rule declines (no operand is
    tracked) and the product is a source space, shrunk by the gather after it; its constant
    operand must stay whole (it was sliced too, and the graph failed: 4 vs 3 channels)."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.s, self.out = nn.Parameter(0.2 * torch.randn(4)), nn.Linear(4, 5)

        def forward(self, x):
            return self.out(x * (1 + self.s))

    m = M().eval()
    with torch.no_grad():
        m.out.weight[:, 0] = 0
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["out.weight"] == (5, 3)
