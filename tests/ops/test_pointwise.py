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


# ---- scale-zero mul: the γ of hand-written norms (BinaryRule.zero_scale) ----------------------

class HandLN2d(nn.Module):
    """Channels-first LayerNorm written out as a mean/var over dim 1 (older timm/ConvNeXt code)."""

    def __init__(self, C):
        super().__init__()
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(C))
        self.bias = nn.Parameter(0.1 * torch.randn(C))

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + 1e-6)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class HandRMS(nn.Module):
    """RMSNorm as Hugging Face writes it: w · x·rsqrt(mean(x²) + ε)."""

    def __init__(self, C):
        super().__init__()
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(C))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


class ConvNormBlock(nn.Module):
    def __init__(self, k=1):
        super().__init__()
        self.c, self.n, self.d = nn.Conv2d(3, 8, 3, padding=1), HandLN2d(8), nn.Conv2d(8, 4, k, padding=k // 2)

    def forward(self, x):
        return self.d(torch.nn.functional.gelu(self.n(self.c(x))))


def test_hand_written_channels_first_layernorm_scale_zero_drops_consumer_columns():
    torch.manual_seed(0)
    m = ConvNormBlock().eval()
    with torch.no_grad():
        m.n.weight[[0, 3, 5]] = 0
        m.n.bias[[0, 3, 5]] = 0
    r = minimize_and_check(m, (torch.randn(2, 3, 6, 6),))
    s = shapes(r.module)
    # the conv's input columns of the three zeroed channels go; the producer rows stay (the
    # statistics read them), and the scale is applied to all 8 channels before the gather
    assert s["d.weight"] == (4, 5, 1, 1) and s["c.weight"] == (8, 3, 3, 3)
    assert s["n.weight"] == (8, 1, 1) and s["n.bias"] == (5, 1, 1)
    assert kept(r.plan, node_of(r.plan, "mul", 0)) == [1, 2, 4, 6, 7]
    assert r.report.params_after < r.report.params_before


def test_hand_written_layernorm_scale_zero_with_shift_folds_into_the_consumer_bias():
    torch.manual_seed(1)
    m = ConvNormBlock().eval()
    with torch.no_grad():
        m.n.weight[[2, 7]] = 0   # β_c ≠ 0 stays: output c is CONST(β_c), folded by the 1×1 conv
    r = minimize_and_check(m, (torch.randn(2, 3, 6, 6),))
    assert shapes(r.module)["d.weight"] == (4, 6, 1, 1)
    m_, v = const(r.plan, "add_1")   # w·x̂ + b: output c is CONST(β_c)
    assert m_[[2, 7]].all() and abs(v[2] - float(m.n.bias[2])) < 1e-6


def test_hand_written_layernorm_scale_zero_with_shift_stays_before_a_padded_conv():
    torch.manual_seed(2)
    m = ConvNormBlock(k=3).eval()
    with torch.no_grad():
        m.n.weight[[2, 7]] = 0   # CONST(β ≠ 0) into a zero-padded 3×3 conv is not uniform: kept
    r = minimize_and_check(m, (torch.randn(2, 3, 6, 6),))
    assert shapes(r.module)["d.weight"] == (4, 8, 3, 3)


class RMSBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.n = nn.Linear(5, 8), HandRMS(8)
        self.q, self.k = nn.Linear(8, 4), nn.Linear(8, 4)

    def forward(self, x):
        h = self.n(self.a(x))
        return self.q(h) * self.k(h)


def test_hand_written_rmsnorm_scale_zero_gathers_once_for_all_readers():
    torch.manual_seed(3)
    m = RMSBlock().eval()
    with torch.no_grad():
        m.n.weight[[1, 6]] = 0
    r = minimize_and_check(m, (torch.randn(2, 7, 5),))
    s = shapes(r.module)
    assert s["q.weight"] == (4, 6) and s["k.weight"] == (4, 6) and s["a.weight"] == (8, 5)
    gathers = [n for n in r.module.graph.nodes if n.target is torch.ops.aten.index_select.default]
    assert len(gathers) == 1   # one gather after the mul, not one per reading Linear


def test_zeroed_scale_whose_input_is_free_removes_the_producer_rows_too():
    torch.manual_seed(4)

    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(5, 8), nn.Linear(8, 3)
            self.s = nn.Parameter(1 + 0.1 * torch.randn(8))

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) * self.s)

    m = Scale().eval()
    with torch.no_grad():
        m.s[[0, 4]] = 0
    r = minimize_and_check(m, (torch.randn(2, 5),))
    s = shapes(r.module)
    assert s["a.weight"] == (6, 5) and s["b.weight"] == (3, 6) and s["s"] == (6,)
    assert not any(n.target is torch.ops.aten.index_select.default for n in r.module.graph.nodes)
