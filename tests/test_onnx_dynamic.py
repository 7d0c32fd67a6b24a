"""ONNX export keeps the dims the minimized graph keeps symbolic beyond the batch (sequence
length, image size): onnxruntime at other lengths/sizes matches the masked torch original.

Stated tolerance (fxminimize.verify, float32): |ŷ − y| ≤ 1e-5·max(1, max|y|) + 1e-4·|y|."""
from __future__ import annotations

import pytest
import torch

import fxminimize
from fxminimize.testing.zoo import ZOO, example_input, induce_dead_channels

ort = pytest.importorskip("onnxruntime")


def _run(path, *xs):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [torch.from_numpy(a) for a in sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), xs)})]


def test_gpt2_lm_onnx_at_other_sequence_lengths(tmp_path):
    pytest.importorskip("transformers")
    import test_transformers
    torch.manual_seed(0)
    model, x, _ = test_transformers.MODELS["gpt2_lm"]()          # example (2, 8)
    res = fxminimize.minimize(model, (x,))
    out = fxminimize.export_onnx(res, (x,), str(tmp_path / "lm.onnx"), reference=model, dynamic_batch=True)
    assert list(out.dynamic_dims) == [(0, 1)], out.dynamic_dims   # the sequence dim
    assert any("other sizes" in s for s in out.input_sets), out.input_sets
    for shape in [(2, 5), (3, 13), (1, 8)]:
        ids = torch.randint(0, 100, shape)
        (got,) = _run(out.path, ids)[:1]
        with torch.no_grad():
            want = model(ids).logits
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(want.abs().max())))


def test_static_sizes_on_request(tmp_path):
    pytest.importorskip("transformers")
    import test_transformers
    torch.manual_seed(0)
    model, x, _ = test_transformers.MODELS["gpt2_lm"]()
    res = fxminimize.minimize(model, (x,))
    out = fxminimize.export_onnx(res, (x,), str(tmp_path / "s.onnx"), reference=model, dynamic_sizes=False)
    assert out.dynamic_dims == {} and not out.dynamic_batch
    with pytest.raises(Exception, match="dimensions|shape"):
        _run(out.path, torch.randint(0, 100, (2, 5)))


def test_cnn_onnx_at_another_image_size(tmp_path):
    torch.manual_seed(0)
    model = ZOO["resnet_small"][0]()
    induce_dead_channels(model, "layer3.conv1", list(range(0, 64, 2)))
    x = example_input("resnet_small")
    res = fxminimize.minimize(model, (x,))
    out = fxminimize.export_onnx(res, (x,), str(tmp_path / "r.onnx"), reference=model, dynamic_batch=True)
    assert {d for _, d in out.dynamic_dims} == {2, 3}, out.dynamic_dims
    big = torch.randn(3, x.shape[1], x.shape[2] + 8, x.shape[3] + 8)
    got = _run(out.path, big)[0]
    with torch.no_grad():
        want = model(big)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(want.abs().max())))


def test_export_falls_back_to_the_example_sizes(tmp_path, monkeypatch, caplog):
    """If the exporter cannot keep the sizes beyond the batch symbolic, the file has the example's
    sizes (still checked in onnxruntime) and the log says why; a failure at those sizes raises."""
    import logging
    from fxminimize import onnx_export
    torch.manual_seed(0)
    model = ZOO["resnet_small"][0]()
    induce_dead_channels(model, "layer3.conv1", [0, 2, 4])
    x = example_input("resnet_small")
    res = fxminimize.minimize(model, (x,))
    real = onnx_export._export
    calls = []

    def flaky(module, inputs, path, shapes, *rest):
        calls.append(shapes)
        if onnx_export._beyond_batch(shapes):
            raise RuntimeError("cannot keep H symbolic")
        return real(module, inputs, path, shapes, *rest)

    monkeypatch.setattr(onnx_export, "_export", flaky)
    with caplog.at_level(logging.INFO, logger="fxminimize.onnx_export"):
        out = fxminimize.export_onnx(res, (x,), str(tmp_path / "f.onnx"), reference=model, dynamic_batch=True)
    assert len(calls) == 2 and out.dynamic_dims == {} and out.dynamic_batch
    assert out.max_abs_error <= 1e-4 and "cannot keep H symbolic" in caplog.text
    monkeypatch.setattr(onnx_export, "_export", lambda *a: (_ for _ in ()).throw(RuntimeError("broken")))
    with pytest.raises(fxminimize.MinimizationError, match="ONNX export failed .*broken"):
        fxminimize.export_onnx(res, (x,), str(tmp_path / "g.onnx"), reference=model, dynamic_sizes=False)
