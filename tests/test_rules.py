"""One test per rule: numerics against the masked original and what was removed.

Each model zeroes a known set of channels; the test asserts the minimized outputs equal the
original's (rtol=1e-4, atol=1e-5, fp32) at batch 1 and 7 after minimizing at batch 2, and that
exactly the expected tensor shapes come out.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fxminimize
from helpers import minimize_and_check, shapes

torch.manual_seed(0)


def dead_rows(layer, rows, bias_zero=True):
    with torch.no_grad():
        layer.weight[rows] = 0
        if bias_zero and layer.bias is not None:
            layer.bias[rows] = 0


class MLP(nn.Module):
    def __init__(self, act=None):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(10, 16), nn.Linear(16, 12), nn.Linear(12, 4)
        self.act = act or nn.ReLU()

    def forward(self, x):
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


def test_linear_zero_rows_removed():
    m = MLP().eval()
    dead_rows(m.fc1, [1, 4, 9])
    r = minimize_and_check(m, (torch.randn(2, 10),))
    s = shapes(r.module)
    assert s["fc1.weight"] == (13, 10) and s["fc1.bias"] == (13,)
    assert s["fc2.weight"] == (12, 13)
    assert r.report.params_after < r.report.params_before


def test_linear_const_rows_folded_into_next_bias():
    m = MLP().eval()
    dead_rows(m.fc1, [0, 5], bias_zero=False)  # CONST(relu(b)) channels
    with torch.no_grad():
        m.fc1.bias[0] = 0.7
        m.fc1.bias[5] = -0.3
    r = minimize_and_check(m, (torch.randn(2, 10),))
    assert shapes(r.module)["fc2.weight"] == (12, 14)


def test_linear_zero_columns_remove_unused_producer_rows():
    m = MLP().eval()
    with torch.no_grad():
        m.fc2.weight[:, [2, 3]] = 0
    r = minimize_and_check(m, (torch.randn(2, 10),))
    s = shapes(r.module)
    assert s["fc1.weight"] == (14, 10) and s["fc2.weight"] == (12, 14)


def test_linear_without_bias_gets_folded_bias():
    m = nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 3, bias=False)).eval()
    dead_rows(m[0], [2, 3])  # sigmoid(0) = 0.5 must be folded, not dropped
    r = minimize_and_check(m, (torch.randn(2, 6),))
    assert shapes(r.module)["2.weight"] == (3, 6)
    assert any(v.shape == (3,) for v in r.module.state_dict().values())


@pytest.mark.parametrize("act", [nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(0.2), nn.GELU(), nn.GELU("tanh"), nn.SiLU(),
                                 nn.Sigmoid(), nn.Tanh(), nn.Hardswish(), nn.Hardsigmoid(), nn.Dropout(0.3)],
                         ids=lambda a: type(a).__name__)
def test_activation_constant_folding(act):
    m = MLP(act).eval()
    dead_rows(m.fc1, [3, 7], bias_zero=False)
    with torch.no_grad():
        m.fc1.bias[3], m.fc1.bias[7] = 1.5, -2.0
    r = minimize_and_check(m, (torch.randn(2, 10),))
    assert shapes(r.module)["fc2.weight"] == (12, 14)


class ConvNet(nn.Module):
    def __init__(self, groups=1, padding=1, bn=True, depthwise=False):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8) if bn else nn.Identity()
        mid_groups = 8 if depthwise else groups
        self.c2 = nn.Conv2d(8, 8, 3, padding=padding, groups=mid_groups, stride=2, dilation=1)
        self.c3 = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        return self.c3(F.relu(self.c2(F.relu(self.bn(self.c1(x))))))


def _randomize_bn(bn):
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)


def test_conv_zero_filters_removed_with_batchnorm():
    m = ConvNet().eval()
    _randomize_bn(m.bn)
    with torch.no_grad():
        m.bn.bias[[1, 6]] = 0.0
        m.bn.running_mean[[1, 6]] = 0.0
    dead_rows(m.c1, [1, 6])  # BN maps ZERO to CONST(0) here, so conv c2 (padded) may drop them
    r = minimize_and_check(m, (torch.randn(2, 3, 16, 16),))
    s = shapes(r.module)
    assert s["c1.weight"] == (6, 3, 3, 3) and s["bn.running_mean"] == (6,) and s["c2.weight"] == (8, 6, 3, 3)


def test_conv_padding_rule_keeps_nonzero_constant():
    """ZERO in → CONST(β − γμ/σ) ≠ 0 out of BN; a zero-padded conv cannot fold it: kept."""
    m = ConvNet().eval()
    _randomize_bn(m.bn)
    with torch.no_grad():
        m.bn.bias[2] = 5.0  # CONST > 0 survives the ReLU
    dead_rows(m.c1, [2])
    r = minimize_and_check(m, (torch.randn(2, 3, 16, 16),))
    assert shapes(r.module)["c2.weight"] == (8, 8, 3, 3)


def test_conv_unpadded_consumer_folds_nonzero_constant():
    m = ConvNet(padding=0).eval()
    _randomize_bn(m.bn)
    dead_rows(m.c1, [2, 4])
    r = minimize_and_check(m, (torch.randn(2, 3, 16, 16),))
    assert shapes(r.module)["c2.weight"] == (8, 6, 3, 3)


def test_grouped_conv_removes_a_dead_group():
    m = ConvNet(groups=4, bn=False).eval()
    dead_rows(m.c1, [2, 3, 5])  # group 1 (channels 2,3) entirely dead; 5 alone is not a group
    with torch.no_grad():
        m.c2.weight[2:4] = 0
        m.c2.bias[2:4] = 0
    r = minimize_and_check(m, (torch.randn(2, 3, 16, 16),))
    s = shapes(r.module)
    assert s["c1.weight"] == (6, 3, 3, 3) and s["c2.weight"] == (6, 2, 3, 3)
    from fxminimize.ir import bind
    convs = [n for n in r.module.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert bind(convs[1])["groups"] == 3  # the dead group left; groups is an argument aten passes positionally


def test_depthwise_conv_channel_with_its_input():
    m = ConvNet(depthwise=True, bn=False).eval()
    dead_rows(m.c1, [0, 7])
    dead_rows(m.c2, [0, 7])
    r = minimize_and_check(m, (torch.randn(2, 3, 16, 16),))
    s = shapes(r.module)
    assert s["c1.weight"] == (6, 3, 3, 3) and s["c2.weight"] == (6, 1, 3, 3) and s["c3.weight"] == (5, 6, 1, 1)


def test_conv1d():
    m = nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 2, 3)).eval()
    dead_rows(m[0], [1, 2, 3])
    r = minimize_and_check(m, (torch.randn(2, 4, 20),))
    assert shapes(r.module)["2.weight"] == (2, 5, 3)


class PoolNet(nn.Module):
    def __init__(self, pool):
        super().__init__()
        self.c1, self.pool, self.fc = nn.Conv2d(3, 6, 3), pool, nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(F.relu(self.c1(x))), 1))


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(4)], ids=str)
def test_pooling_and_flatten_block_map(pool):
    m = PoolNet(pool).eval()
    dead_rows(m.c1, [1, 4], bias_zero=False)  # CONST(relu(b)) folded through pool + flatten
    r = minimize_and_check(m, (torch.randn(2, 3, 10, 10),))
    assert shapes(r.module)["fc.weight"] == (3, 4 * 16)
    assert shapes(r.module)["c1.weight"] == (4, 3, 3, 3)


def test_avgpool_with_padding_keeps_nonzero_constant():
    m = PoolNet(nn.AvgPool2d(3, stride=2, padding=1)).eval()
    with torch.no_grad():
        m.c1.bias.fill_(0.5)
    dead_rows(m.c1, [1], bias_zero=False)
    r = minimize_and_check(m, (torch.randn(2, 3, 10, 10),))
    assert shapes(r.module)["c1.weight"] == (6, 3, 3, 3)


def test_spatial_mean():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(3, 6, 3), nn.Linear(6, 2)

        def forward(self, x):
            return self.fc(self.c(x).mean((2, 3)))

    m = M().eval()
    dead_rows(m.c, [0, 5], bias_zero=False)
    r = minimize_and_check(m, (torch.randn(2, 3, 8, 8),))
    assert shapes(r.module)["fc.weight"] == (2, 4)


class Residual(nn.Module):
    def __init__(self, op="add"):
        super().__init__()
        self.a, self.b, self.c, self.head = nn.Linear(5, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)
        self.op = op

    def forward(self, x):
        h = self.a(x)
        y = self.c(F.relu(self.b(h)))
        h = h + y if self.op == "add" else h - y
        return self.head(h)


@pytest.mark.parametrize("op", ["add", "sub"])
def test_residual_stream_channel_goes_only_when_dead_everywhere(op):
    m = Residual(op).eval()
    dead_rows(m.a, [1, 2])
    dead_rows(m.c, [2, 3])  # only channel 2 is dead in both writers
    r = minimize_and_check(m, (torch.randn(2, 5),))
    s = shapes(r.module)
    assert s["a.weight"] == (7, 5) and s["c.weight"] == (7, 8) and s["head.weight"] == (2, 7)
    # stream channel 1 stays (c writes it) but is ZERO where b reads it (before the add): b folds
    # it and reads the other 6 through an index_select (the Linear's kept-CONST-column rule)
    assert s["b.weight"] == (8, 6)


def test_layer_scale_and_gate_mul():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.g, self.se, self.fc = nn.Conv2d(3, 6, 1), nn.Parameter(torch.rand(6, 1, 1)), nn.Conv2d(6, 6, 1), nn.Linear(6, 2)

        def forward(self, x):
            h = self.c(x) * self.g
            h = h * torch.sigmoid(self.se(h.mean((2, 3), keepdim=True)))
            return self.fc(h.mean((2, 3)))

    m = M().eval()
    dead_rows(m.c, [1, 3])
    with torch.no_grad():
        m.g[4] = 0  # layer scale zero also kills channel 4
    r = minimize_and_check(m, (torch.randn(2, 3, 8, 8),))
    s = shapes(r.module)
    assert s["g"] == (3, 1, 1) and s["c.weight"] == (3, 3, 1, 1) and s["fc.weight"] == (2, 3)


def test_concat_offsets_and_split():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc = nn.Linear(4, 5), nn.Linear(4, 6), nn.Linear(11, 8)
            self.p, self.q = nn.Linear(3, 2), nn.Linear(5, 2)

        def forward(self, x):
            h = self.fc(torch.cat([self.a(x), self.b(x)], 1))
            u, v = torch.split(h, [3, 5], dim=1)
            return self.p(u) + self.q(v)

    m = M().eval()
    dead_rows(m.a, [0])
    dead_rows(m.b, [2, 5])
    dead_rows(m.fc, [1, 6])
    r = minimize_and_check(m, (torch.randn(2, 4),))
    s = shapes(r.module)
    assert s["a.weight"] == (4, 4) and s["b.weight"] == (4, 4) and s["fc.weight"] == (6, 8)
    assert s["p.weight"] == (2, 2) and s["q.weight"] == (2, 4)


def test_chunk_becomes_split_with_sizes():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.p, self.q = nn.Linear(4, 8), nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x):
            u, v = self.a(x).chunk(2, dim=-1)
            return self.p(u) * self.q(v)

    m = M().eval()
    dead_rows(m.a, [0, 1, 6])
    r = minimize_and_check(m, (torch.randn(2, 4),))
    s = shapes(r.module)
    assert s["a.weight"] == (5, 4) and s["p.weight"] == (2, 2) and s["q.weight"] == (2, 3)


def test_permute_channels_last():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc, self.c2 = nn.Conv2d(3, 6, 1), nn.Linear(6, 7), nn.Conv2d(7, 2, 1)

        def forward(self, x):
            h = self.fc(self.c(x).permute(0, 2, 3, 1))
            return self.c2(F.gelu(h).transpose(1, 3).transpose(2, 3))

    m = M().eval()
    dead_rows(m.c, [0, 2])
    dead_rows(m.fc, [6])
    r = minimize_and_check(m, (torch.randn(2, 3, 5, 5),))
    s = shapes(r.module)
    assert s["c.weight"] == (4, 3, 1, 1) and s["fc.weight"] == (6, 4) and s["c2.weight"] == (2, 6, 1, 1)


def test_unread_input_features_gathered_interface_unchanged():
    m = MLP().eval()
    with torch.no_grad():
        m.fc1.weight[:, [0, 9]] = 0
    r = minimize_and_check(m, (torch.randn(2, 10),))
    assert shapes(r.module)["fc1.weight"] == (16, 8)
    assert "index_select" in r.module.code
    r.module(torch.randn(3, 10))  # still takes 10 features


def test_rule_table_is_keyed_by_aten_overloads_only():
    """Capture always yields aten ops: the table holds aten overloads (plus getitem and the
    compensated LayerNorm operator), no module classes or torch functions that are never looked up."""
    import operator
    from fxminimize.compensated import COMPENSATED_LAYER_NORM
    from fxminimize.passes import lookup, table
    keys = table()
    odd = [k for k in keys if not isinstance(k, torch._ops.OpOverload) and k is not operator.getitem]
    assert odd == []
    assert COMPENSATED_LAYER_NORM in keys
    assert lookup(nn.Linear).kind == "barrier" and lookup(torch.ops.aten.linear.default).kind == "linear"
    assert lookup(torch.ops.aten.cumsum.default).kind == "barrier"


def test_fully_dead_layer_keeps_one_channel():
    m = ConvNet(bn=False).eval()
    dead_rows(m.c2, list(range(8)))  # the whole layer is dead: c3 sees only its bias
    r = minimize_and_check(m, (torch.randn(2, 3, 16, 16),))
    s = shapes(r.module)
    # c3's outputs are all CONST (its input is): they are restored at the output, c3 keeps one
    assert s["c2.weight"][0] == 1 and s["c3.weight"] == (1, 1, 1, 1)
    assert r.module(torch.randn(3, 3, 16, 16)).shape[1] == 5
    assert s["c1.weight"][0] == 1


def test_concat_with_constant_input_keeps_its_section():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.c, self.fc = nn.Linear(4, 5), nn.Parameter(torch.randn(1, 3)), nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(torch.cat([self.a(x), self.c.expand(x.shape[0], 3)], 1))

    m = M().eval()
    dead_rows(m.a, [1])
    with torch.no_grad():
        m.fc.weight[:, 6] = 0  # a column of the expanded section: dropped by a gather
    r = minimize_and_check(m, (torch.randn(2, 4),))
    assert shapes(r.module)["a.weight"] == (4, 4) and shapes(r.module)["fc.weight"] == (2, 6)
    assert "index_select" in r.module.code
