"""End to end on the example zoo and Hugging Face models: exactness at batch 1 and 7 after
minimizing at batch 2, induced dead channels removed completely (shapes asserted), and a
saved + reloaded minimized model computing the same outputs."""
import os

import pytest
import torch
import torch.nn as nn

import fxminimize
from fxminimize.testing.zoo import ZOO, example_input, induce_dead_channels
from helpers import compare, minimize_and_check, shapes

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (model, module to kill, channels, keep bias (→ CONST folded), {param: expected shape})
CASES = [
    ("lenet_300_100", "fc1", range(7), False, {"fc1.weight": (293, 784), "fc2.weight": (100, 293)}),
    ("lenet_300_100", "fc2", [0, 3, 50, 70, 99], True, {"fc2.weight": (95, 300), "fc3.weight": (10, 95)}),
    ("lenet5", "conv2", [1, 5, 9], False, {"conv2.weight": (13, 6, 5, 5), "fc1.weight": (120, 325)}),
    ("lenet5", "conv1", [0, 3], True, {"conv1.weight": (4, 1, 5, 5), "conv2.weight": (16, 4, 5, 5)}),
    ("resnet_small", "layer2.conv1", [0, 5, 7], False,
     {"layer2.conv1.weight": (29, 16, 3, 3), "layer2.conv2.weight": (32, 29, 3, 3)}),
    ("densenet_small", "block1.0.conv2", [1, 2], False,
     {"block1.0.conv2.weight": (6, 32, 3, 3), "block1.1.conv1.weight": (32, 22, 1, 1),
      "block1.2.conv1.weight": (32, 30, 1, 1), "trans1.conv.weight": (20, 38, 1, 1)}),
    ("mobilenetv2_small", "blocks.1.expand", [3, 10, 20], False,
     {"blocks.1.expand.weight": (61, 16, 1, 1), "blocks.1.dw.weight": (61, 1, 3, 3),
      "blocks.1.project.weight": (24, 61, 1, 1)}),
    ("se_net_small", "se.fc1", [1, 2], True, {"se.fc1.weight": (6, 32, 1, 1), "se.fc2.weight": (32, 6, 1, 1)}),
    ("convnext_small", "stages.0.blocks.0.pwconv1", [0, 5, 9], False,
     {"stages.0.blocks.0.pwconv1.weight": (125, 32), "stages.0.blocks.0.pwconv2.weight": (32, 125)}),
    ("convnext_small", "stages.1.blocks.1.pwconv1", [2, 4], True,
     {"stages.1.blocks.1.pwconv1.weight": (254, 64), "stages.1.blocks.1.pwconv2.weight": (64, 254)}),
]


@pytest.mark.parametrize("name,module,channels,keep_bias,expected", CASES,
                         ids=[f"{c[0]}-{c[1]}-{'fold' if c[3] else 'zero'}" for c in CASES])
def test_zoo_induced_channels_removed_exactly(name, module, channels, keep_bias, expected, tmp_path):
    torch.manual_seed(0)
    model = ZOO[name][0]()
    if keep_bias:
        with torch.no_grad():
            model.get_submodule(module).bias.uniform_(0.1, 1.0)
    induce_dead_channels(model, module, list(channels), fold_bias=keep_bias)
    x = example_input(name)
    res = minimize_and_check(model, (x,), batches=(1, 7))
    got = shapes(res.module)
    for k, v in expected.items():
        assert got[k] == v, (k, got[k], v)
    # exactly those channels went: every other Linear/conv weight keeps its shape
    orig = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for k, v in got.items():
        if k in orig and k.endswith("weight") and len(v) >= 2 and k not in expected:
            assert v == orig[k], k
    path = tmp_path / "small.pt2"
    res.save(str(path))
    loaded = fxminimize.load(str(path))
    for b in (1, 7):
        xb = torch.randn((b,) + tuple(x.shape[1:]))
        compare(model, loaded, (xb,))


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_unmasked_is_equal_and_says_so(name):
    model = ZOO[name][0]()
    res = minimize_and_check(model, (example_input(name),), batches=(3,))
    assert not res.plan.anything_removed
    assert any("nothing to remove" in n for n in res.report.notes)


def test_channel_shuffle_index_map():
    class Shuffle(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = self.c1(x)
            b, c, h, w = y.shape
            y = y.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
            return self.c2(y)

    m = Shuffle().eval()
    induce_dead_channels(m, "c1", [0, 1, 2, 3])  # shuffle group 0 → positions 0, 2, 4, 6
    res = minimize_and_check(m, (torch.randn(2, 3, 8, 8),))
    s = shapes(res.module)
    assert s["c1.weight"] == (4, 3, 3, 3) and s["c2.weight"] == (4, 4, 1, 1)
    assert not res.report.barriers


def test_shufflenet_block_exact():
    m = ZOO["shufflenet_block_small"][0]()
    induce_dead_channels(m, "gconv1", [0, 1, 2, 3])
    res = minimize_and_check(m, (example_input("shufflenet_block_small"),))
    assert not res.report.barriers


def test_lenet_border_pixels_shrink_input_side():
    model = ZOO["lenet_300_100"][0]()
    img = torch.ones(28, 28, dtype=torch.bool)
    img[2:-2, 2:-2] = False
    with torch.no_grad():
        model.fc1.weight[:, img.reshape(-1)] = 0
    res = minimize_and_check(model, (example_input("lenet_300_100"),))
    assert shapes(res.module)["fc1.weight"] == (300, 24 * 24)
    assert res.module(torch.randn(5, 784)).shape == (5, 10)


def test_barrier_in_the_middle():
    model = ZOO["unknown_op_mlp"][0]()
    induce_dead_channels(model, "fc1", [0, 1])
    induce_dead_channels(model, "fc2", [3, 4, 5])
    res = minimize_and_check(model, (example_input("unknown_op_mlp"),))
    s = shapes(res.module)
    assert s["fc1.weight"] == (32, 20)  # behind the barrier: kept
    assert s["fc2.weight"] == (29, 32) and s["fc3.weight"] == (10, 29)
    assert [b.op for b in res.report.barriers] == ["cumsum.default"]
    assert "no rule" in res.report.barriers[0].reason
    assert "barrier" in str(res.report)


transformers = pytest.importorskip("transformers")


def test_hf_resnet_model():
    from transformers import ResNetConfig, ResNetModel
    torch.manual_seed(0)
    cfg = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="bottleneck")
    m = ResNetModel(cfg).eval()
    target = "encoder.stages.0.layers.0.layer.0.convolution"
    before = m.get_submodule(target).weight.shape
    induce_dead_channels(m, target, [0, 2])
    res = minimize_and_check(m, (torch.randn(2, 3, 64, 64),))
    s = shapes(res.module)
    assert s[target + ".weight"] == (before[0] - 2,) + tuple(before[1:])
    nxt = "encoder.stages.0.layers.0.layer.1.convolution.weight"
    assert s[nxt][1] == before[0] - 2


@pytest.mark.parametrize("fold", [False, True])
def test_hf_convnext_model(fold):
    from transformers import ConvNextConfig, ConvNextModel
    torch.manual_seed(0)
    cfg = ConvNextConfig(hidden_sizes=[16, 32], depths=[2, 1], num_stages=2, layer_scale_init_value=1.0)
    m = ConvNextModel(cfg).eval()
    target = "encoder.stages.1.layers.0.pwconv1"
    induce_dead_channels(m, target, [1, 3, 5], fold_bias=fold)
    if fold:
        with torch.no_grad():
            m.get_submodule(target).bias[[1, 3, 5]] = torch.tensor([0.5, -1.0, 2.0])
    res = minimize_and_check(m, (torch.randn(2, 3, 64, 64),))
    s = shapes(res.module)
    assert s[target + ".weight"] == (125, 32)
    assert s["encoder.stages.1.layers.0.pwconv2.weight"] == (32, 125)
