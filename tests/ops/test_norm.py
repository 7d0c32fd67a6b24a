"""passes/ops/norm.py: eval BatchNorm and (compensated) LayerNorm."""
import pytest
import torch
import torch.nn as nn

from fxminimize.compensated import COMPENSATED_LAYER_NORM
from oneop import const, dead, kept, minimize_and_check, node_of, shapes


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.bn, self.d = nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6), nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.d(torch.relu(self.bn(self.c(x))))


def test_batchnorm_maps_zero_to_const_and_is_sliced():
    m = ConvBN().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2)
        m.bn.bias.uniform_(-1, 1)
    dead(m.c, [4], bias=0.0)
    r = minimize_and_check(m, (torch.randn(2, 3, 5, 5),))
    bn = node_of(r.plan, "_native_batch_norm_legit_no_training") if any(
        n.startswith("_native") for n in r.plan.node_names) else node_of(r.plan, "batch_norm")
    s = shapes(r.module)
    assert s["bn.weight"] == (5,) and s["d.weight"] == (2, 5, 1, 1)


class PreLN(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.ln, self.fc = nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.ln(self.a(x)))


def test_layernorm_loses_const_input_channels_through_compensation():
    m = PreLN().eval()
    dead(m.a, [2, 6], bias=0.4)
    with torch.no_grad():
        m.ln.weight[[2, 6]] = 0   # γ = 0: the LN outputs there are CONST(β) and fold
    r = minimize_and_check(m, (torch.randn(2, 4),))
    ln = node_of(r.plan, "layer_norm")
    assert kept(r.plan, ln) == [0, 1, 3, 4, 5, 7]
    cm, cv = const(r.plan, ln)
    assert cm[2] and cm[6]
    targets = [n.target for n in r.module.graph.nodes if n.op == "call_function"]
    assert COMPENSATED_LAYER_NORM in targets
    assert shapes(r.module)["ln.weight"] == (6,) and shapes(r.module)["fc.weight"] == (3, 6)


# ---------------------------------------------------------------- BatchNorm scale zero (Network Slimming)
def slim(bn, chans, beta=0.0):
    """What BN-scale pruning leaves: γ = 0 (and β = ``beta``) on ``chans``; trained-looking stats."""
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
        bn.weight[chans] = 0
        bn.bias[chans] = beta


class ConvBNConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.bn, self.d = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.d(torch.relu(self.bn(self.c(x))))


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_bn_scale_zero_removes_producer_rows_and_consumer_columns(beta):
    m = ConvBNConv().eval()
    slim(m.bn, [0, 1, 2], beta)
    r = minimize_and_check(m, (torch.randn(2, 3, 8, 8),))
    s = shapes(r.module)
    assert s["c.weight"] == (5, 3, 3, 3) and s["bn.weight"] == (5,) and s["d.weight"] == (4, 5, 1, 1)
    assert r.report.params_after == 184  # 293 stored elements before (the example)


def _zoo():
    from fxminimize.testing.zoo import ZOO
    return ZOO


@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_bn_scale_zero_in_a_resnet_block(beta):
    m = _zoo()["resnet_small"][0]()
    blk = m.layer2
    slim(blk.bn1, [0, 3, 7], beta)
    r = minimize_and_check(m, (torch.randn(2, 3, 32, 32),))
    s = shapes(r.module)
    if beta == 0.0:  # ZERO folds even into the zero-padded conv2
        assert s["layer2.conv1.weight"][0] == 29 and s["layer2.conv2.weight"][1] == 29
    else:            # CONST(0.3) under zero padding is not uniform at the borders: kept (DESIGN.md)
        assert s["layer2.conv1.weight"][0] == 32 and s["layer2.conv2.weight"][1] == 32


def test_bn_scale_zero_in_a_mobilenetv2_block():
    m = _zoo()["mobilenetv2_small"][0]()
    blk = m.blocks[1]
    hidden = blk.bn1.num_features
    slim(blk.bn1, [1, 5, 9], 0.0)
    r = minimize_and_check(m, (torch.randn(2, 3, 32, 32),))
    s = shapes(r.module)
    assert s["blocks.1.expand.weight"][0] == hidden - 3
    assert s["blocks.1.dw.weight"][0] == hidden - 3          # depthwise: whole groups of one channel
    assert s["blocks.1.project.weight"][1] == hidden - 3
