"""fxminimize.export_onnx: exact ONNX round trip (onnxruntime on fresh inputs against the original
masked torch model) for every model of the foundation acceptance list (the zoo of
fxminimize/testing/zoo.py, HF ResNet and ConvNeXt small configs) and of the transformer list (the
builders of tests/test_transformers.py). CompensatedLayerNorm exports as standard ONNX ops.

Stated tolerance (fxminimize.verify, float32): |ŷ − y| ≤ 1e-5·max(1, max|y|) + 1e-4·|y|."""
from __future__ import annotations

import os

import onnx
import pytest
import torch

import fxminimize
from fxminimize.testing.zoo import ZOO, example_input, induce_dead_channels

# model → (module whose output channels are zeroed, channels, keep bias: CONST folded)
DEAD = {
    "lenet_300_100": ("fc2", [0, 3, 50, 70, 99], True),
    "lenet5": ("conv2", [1, 5, 9], False),
    "resnet_small": ("layer2.conv1", [0, 5, 7], False),
    "densenet_small": ("block1.0.conv2", [1, 2], False),
    "mobilenetv2_small": ("blocks.1.expand", [3, 10, 20], False),
    "se_net_small": ("se.fc1", [1, 2], True),
    "shufflenet_block_small": ("gconv1", [0, 1, 2, 3], False),
    "convnext_small": ("stages.1.blocks.1.pwconv1", [2, 4], True),
    "unknown_op_mlp": ("fc2", [3, 4, 5], False),
}
assert set(DEAD) == set(ZOO), "every zoo model needs a case here"


def _check(out, path):
    assert out.max_abs_error <= 1e-4, str(out)
    assert out.checks >= 1 and os.path.getsize(path) > 0
    assert out.bytes_on_disk >= os.path.getsize(path)
    assert out.domains == ("",), out.domains            # standard ONNX operators only
    onnx.checker.check_model(str(path))


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_roundtrip(name, tmp_path):
    torch.manual_seed(0)
    model = ZOO[name][0]()
    mod, ch, fold = DEAD[name]
    if fold:
        with torch.no_grad():
            model.get_submodule(mod).bias.uniform_(0.1, 1.0)
    induce_dead_channels(model, mod, ch, fold_bias=fold)
    path = tmp_path / f"{name}.onnx"
    out = fxminimize.export_onnx(model, (example_input(name),), str(path), dynamic_batch=True)
    _check(out, path)
    assert out.result.report.params_after < out.result.report.params_before
    assert out.input_sets[:3] == ["random inputs", "random inputs at batch 1", "random inputs at batch 3"]
    # image sizes the minimized graph keeps symbolic stay so in ONNX, and are checked at another size
    others = [s for s in out.input_sets[3:] if s.startswith("random inputs at other sizes")]
    assert len(others) == len(out.input_sets) - 3 == (1 if out.dynamic_dims else 0), out.input_sets


def _hf_resnet():
    from transformers import ResNetConfig, ResNetModel
    m = ResNetModel(ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                 layer_type="bottleneck")).eval()
    return induce_dead_channels(m, "encoder.stages.0.layers.0.layer.0.convolution", [0, 2])


def _hf_convnext():
    from transformers import ConvNextConfig, ConvNextModel
    m = ConvNextModel(ConvNextConfig(hidden_sizes=[16, 32], depths=[2, 1], num_stages=2,
                                     layer_scale_init_value=1.0)).eval()
    return induce_dead_channels(m, "encoder.stages.1.layers.0.pwconv1", [1, 3, 5])


@pytest.mark.parametrize("build", [_hf_resnet, _hf_convnext], ids=["hf_resnet", "hf_convnext"])
def test_hf_vision_roundtrip(build, tmp_path):
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = build()
    path = tmp_path / "m.onnx"
    out = fxminimize.export_onnx(model, (torch.randn(2, 3, 64, 64),), str(path))
    _check(out, path)
    # pooler output and last hidden state, at the example's size and at another image size
    assert len(out.input_sets) == 2 and out.input_sets[1].startswith("random inputs at other sizes"), out.input_sets
    assert out.checks == 4 and len(out.dynamic_dims) == 2       # H and W stay symbolic


def _transformer_models():
    pytest.importorskip("transformers")
    import test_transformers
    return test_transformers.MODELS


TRANSFORMERS = ["bert", "gpt2", "gpt2_lm", "vit", "llama",
                pytest.param("convnext_tiny", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_roundtrip(name, tmp_path):
    torch.manual_seed(0)
    model, x, _ = _transformer_models()[name]()
    res = fxminimize.minimize(model, (x,))
    path = tmp_path / f"{name}.onnx"
    out = fxminimize.export_onnx(res, (x,), str(path), reference=model)
    _check(out, path)
    if name in ("bert", "gpt2", "vit"):
        # LayerNorms that lost CONST channels became CompensatedLayerNorm: plain ONNX ops
        from fxminimize.compensated import COMPENSATED_LAYER_NORM
        assert any(n.target is COMPENSATED_LAYER_NORM for n in res.module.graph.nodes)


def test_result_without_reference_and_external_data(tmp_path):
    torch.manual_seed(0)
    model = ZOO["resnet_small"][0]()
    induce_dead_channels(model, "layer3.conv1", list(range(0, 64, 2)))
    x = example_input("resnet_small")
    res = fxminimize.minimize(model, (x,))
    path = tmp_path / "ext.onnx"
    out = fxminimize.export_onnx(res, (x,), str(path), external_data=True)
    assert out.max_abs_error <= 1e-4 and not out.dynamic_batch
    assert out.bytes_on_disk > os.path.getsize(path)      # weights live in the side file
    one = fxminimize.export_onnx(res, (x,), str(tmp_path / "one.onnx"))
    assert abs(one.bytes_on_disk - out.bytes_on_disk) < 0.05 * one.bytes_on_disk
    # the minimized file is smaller than the masked dense one
    dense = tmp_path / "dense.onnx"
    torch.onnx.export(model, (x,), str(dense), dynamo=True, external_data=False)
    assert one.bytes_on_disk < os.path.getsize(dense)
    # the exporter's per-node debug metadata is dropped unless asked for
    import onnx
    assert not any(n.metadata_props for n in onnx.load(str(path), load_external_data=False).graph.node)
    dbg = fxminimize.export_onnx(res, (x,), str(tmp_path / "dbg.onnx"), keep_debug_metadata=True)
    assert any(n.metadata_props for n in onnx.load(dbg.path).graph.node)
    assert dbg.bytes_on_disk > one.bytes_on_disk and dbg.max_abs_error <= 1e-4


def test_mismatch_and_bad_requests_raise(tmp_path):
    torch.manual_seed(0)
    model = ZOO["lenet_300_100"][0]()
    induce_dead_channels(model, "fc1", [1, 2])
    x = example_input("lenet_300_100")
    res = fxminimize.minimize(model, (x,))
    other = ZOO["lenet_300_100"][0]()          # a different model as the reference: must fail
    with pytest.raises(fxminimize.MinimizationError, match="differs from the torch model"):
        fxminimize.export_onnx(res, (x,), str(tmp_path / "a.onnx"), reference=other)
    res1 = fxminimize.minimize(model, (x[:1],))  # batch-1 capture is static
    with pytest.raises(fxminimize.MinimizationError, match="only accepts the example batch size"):
        fxminimize.export_onnx(res1, (x[:1],), str(tmp_path / "b.onnx"), dynamic_batch=True)
    with pytest.raises(fxminimize.MinimizationError, match="tuple"):
        fxminimize.export_onnx(model, x, str(tmp_path / "c.onnx"))
