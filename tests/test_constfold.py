"""What forward computes from parameters alone is folded first (issue 13, Build 4): a
weight-standardized conv and a qkv bias built with cat shrink like their plain forms, exactly."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import minimize_and_check, shapes


class StdConv2d(nn.Conv2d):
    """timm's StdConv2d: the weight is standardized per output channel in forward."""

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class StdNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.d = StdConv2d(3, 8, 3), StdConv2d(8, 4, 1)

    def forward(self, x):
        return self.d(torch.relu(self.c(x)))


def test_weight_standardized_conv_shrinks_like_a_plain_one():
    """A zero row stays zero under standardization (0 / √ε), so c's dead filters 2 and 6 go, with
    d's columns that read them: the folded (standardized) weights come out (6, 3, 3, 3) and
    (4, 6, 1, 1), as for a plain conv."""
    m = StdNet().eval()
    with torch.no_grad():
        m.c.weight[[2, 6]] = 0
        m.c.bias[[2, 6]] = 0
    r = minimize_and_check(m, (torch.randn(2, 3, 10, 10),))
    s = shapes(r.module)   # the folded weights keep their parameters' names
    assert s["c.weight"] == (6, 3, 3, 3) and s["d.weight"] == (4, 6, 1, 1), s
    assert "batch_norm" not in r.module.code   # the standardization was folded, not left to run


class CatBias(nn.Module):
    """BEiT/EVA: qkv = linear(x, W, cat(q_bias, zeros, v_bias))."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.randn(8)), nn.Parameter(torch.randn(8))
        self.out = nn.Linear(24, 3)

    def forward(self, x):
        b = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        return self.out(F.linear(x, self.qkv.weight, b))


def test_cat_built_bias_is_folded_and_the_linear_shrinks():
    m = CatBias().eval()
    with torch.no_grad():
        m.qkv.weight[[0, 1, 20]] = 0
        m.q_bias[[0, 1]] = 0
        m.v_bias[4] = 0
    r = minimize_and_check(m, (torch.randn(2, 8),))
    s = shapes(r.module)
    assert s["qkv.weight"] == (21, 8) and s["out.weight"] == (3, 21)


class ScaledScores(nn.Module):
    """DeBERTa/GPT-Neo: a scale tensor created in forward (torch.export would store it)."""

    def __init__(self):
        super().__init__()
        self.a, self.o = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        scale = torch.sqrt(torch.tensor(8.0) * 2)
        return self.o(self.a(x) / scale)


def test_scalar_created_in_forward_is_inlined_not_stored():
    m = ScaledScores().eval()
    with torch.no_grad():
        m.a.weight[:2] = 0
        m.a.bias[:2] = 0
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert r.report.params_after == 6 * 4 + 6 + 2 * 6 + 2   # the weights alone: no stored scale
    assert not [n for n in r.module.graph.nodes if n.op == "get_attr" and "lifted" in str(n.target)]


def test_folding_a_multi_op_weight_subgraph_warns_nothing():
    """Folding mean/std standardization (five ops): the sweep that erases in-place leftovers
    skipped none of the nodes dead-code elimination had already erased, and torch.fx warned
    "erase_node(...) on an already erased node" once per op."""
    import warnings

    class Std(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.lin = nn.Conv2d(3, 8, 3), nn.Linear(8, 4)

        def forward(self, x):
            w = self.c.weight
            w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
            return self.lin(F.conv2d(x, w, self.c.bias).relu().mean((2, 3)))

    m = Std().eval()
    with torch.no_grad():
        m.c.weight[:3] = 0
        m.c.bias[:3] = 0
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = minimize_and_check(m, (torch.randn(2, 3, 8, 8),))
    assert not [w for w in rec if "already erased" in str(w.message)]
    assert shapes(r.module)["c.weight"] == (5, 3, 3, 3)


class RelPosBias(nn.Module):
    """Swin's relative-position bias: a (2W−1)² × H table indexed into H × N × N and added to the
    attention scores. Folding it would store 2·16·16 = 512 elements for 49·2 + 256 = 354."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(0.1 * torch.randn(49, 2))
        self.register_buffer("index", torch.randint(0, 49, (256,)))
        self.qkv, self.proj, self.fc1, self.fc2 = nn.Linear(8, 24), nn.Linear(8, 8), nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):                     # x (B, 16, 8): 16 tokens, 2 heads of 4
        B = x.shape[0]
        q, k, v = [t.view(B, 16, 2, 4).transpose(1, 2) for t in self.qkv(x).chunk(3, -1)]
        bias = self.table[self.index].view(16, 16, 2).permute(2, 0, 1).unsqueeze(0)
        a = torch.softmax(q @ k.transpose(-1, -2) * 0.5 + bias, -1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(B, 16, 8))
        return x + self.fc2(torch.relu(self.fc1(x)))


def test_a_fold_that_would_only_enlarge_the_model_is_not_made():
    torch.manual_seed(0)
    m = RelPosBias().eval()
    with torch.no_grad():
        m.fc1.weight[:8] = 0
        m.fc1.bias[:8] = 0                     # half the MLP dead: 8·8 + 8 + 8·8 = 136 elements
    r = minimize_and_check(m, (torch.randn(2, 16, 8),))
    s = shapes(r.module)
    assert s["fc1.weight"] == (8, 8) and s["fc2.weight"] == (8, 8)
    assert s["table"] == (49, 2) and s["index"] == (256,)   # the table stays a table
    assert r.report.params_before - r.report.params_after >= 136
