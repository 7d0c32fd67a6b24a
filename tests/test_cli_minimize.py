"""`fxminimize minimize` end to end in a subprocess: a model file + masks → small model, ONNX
(checked in onnxruntime) and an HTML report; a checkpoint (weights_only) with prune masks; and
bad paths/shapes/arguments giving one clear error line and a non-zero exit status."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import fxminimize

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_FILE = os.path.join(HERE, "fixtures_cli_model.py")


def cli(*args, cwd=None):
    env = dict(os.environ, PYTHONSAFEPATH="1")
    return subprocess.run([sys.executable, "-m", "fxminimize", "minimize", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def test_end_to_end_on_a_model_file(tmp_path):
    out, onnx_path, html = tmp_path / "small.pt2", tmp_path / "small.onnx", tmp_path / "report.html"
    r = cli("--model", f"{MODEL_FILE}:masked", "--input-shape", "2,3,16,16", "--out", str(out),
            "--onnx", str(onnx_path), "--onnx-dynamic-batch", "--report", str(html))
    assert r.returncode == 0, r.stderr
    assert "params: 5,483 -> " in r.stdout and "onnxruntime vs original max abs error" in r.stdout
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    small = fxminimize.load(str(out))
    assert small.state_dict()["conv2.weight"].shape == (16, 16, 3, 3)
    # the saved model computes the masked function, at another batch size too
    import importlib.util
    spec = importlib.util.spec_from_file_location("fixtures_cli_model", MODEL_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)                            # the CLI's --seed default
    model, masks = mod.masked()
    with torch.no_grad():
        for k, m in masks.items():
            model.get_parameter(k).mul_(m)
        x = torch.randn(5, 3, 16, 16)
        torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-5)
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(y), model(x).detach(), rtol=1e-4, atol=1e-5)


def test_module_name_and_checkpoint_with_prune_masks(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("fixtures_cli_model", MODEL_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m = mod.plain()
    torch.nn.utils.prune.ln_structured(m.conv2, "weight", amount=0.5, n=1, dim=0)
    with torch.no_grad():
        m.conv2.bias[m.conv2.weight_mask[:, 0, 0, 0] == 0] = 0
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"state_dict": m.state_dict(), "epoch": 3}, ckpt)
    r = cli("--model", "fixtures_cli_model:plain", "--checkpoint", str(ckpt), "--input-shape", "2x3x16x16",
            "--out", str(tmp_path / "s.pt2"), cwd=HERE)
    assert r.returncode == 0, r.stderr
    assert fxminimize.load(str(tmp_path / "s.pt2")).state_dict()["conv2.weight"].shape == (16, 16, 3, 3)


def test_help_explains_every_option():
    r = subprocess.run([sys.executable, "-m", "fxminimize", "minimize", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for opt in ("--model", "--checkpoint", "--input-shape", "--input-dtype", "--int-high", "--out", "--onnx",
                "--onnx-dynamic-batch", "--report", "--seed", "MODULE:FACTORY", "weights_only=True", "exit status"):
        assert opt in r.stdout, opt


def _one_line_error(r, *needles):
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("fxminimize minimize: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args,needles", [
    (["--model", "no/such/file.py:masked"], ["file not found", "no/such/file.py"]),
    (["--model", f"{MODEL_FILE}:masked", "--checkpoint", "missing.pt"], ["--checkpoint", "missing.pt"]),
    (["--model", f"{MODEL_FILE}:nothere"], ["no function 'nothere'"]),
    (["--model", MODEL_FILE], ["MODULE:FACTORY"]),
    (["--model", f"{MODEL_FILE}:masked", "--out", "/no/such/dir/s.pt2"], ["--out", "does not exist"]),
], ids=["bad-model-path", "bad-checkpoint-path", "bad-factory", "no-factory", "bad-out-dir"])
def test_bad_paths(args, needles, tmp_path):
    full = {"--input-shape": "2,3,16,16", "--out": str(tmp_path / "s.pt2")}
    for k, v in zip(args[::2], args[1::2]):
        full[k] = v
    r = cli(*[a for kv in full.items() for a in kv])
    _one_line_error(r, *needles)
    assert r.returncode == 2


@pytest.mark.parametrize("shape,needle", [("2,x,16", "invalid --input-shape '2,x,16'"),
                                          ("2,3,-1,16", "positive integers"),
                                          ("2,4,16,16", "does not accept inputs of shape (2, 4, 16, 16)")],
                         ids=["not-a-number", "negative", "wrong-channels"])
def test_bad_shapes(shape, needle, tmp_path):
    r = cli("--model", f"{MODEL_FILE}:masked", "--input-shape", shape, "--out", str(tmp_path / "s.pt2"))
    _one_line_error(r, needle)
    assert r.returncode == 2


def test_bad_checkpoint_contents_and_failing_factory(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    r = cli("--model", f"{MODEL_FILE}:plain", "--checkpoint", str(bad), "--input-shape", "2,3,16,16",
            "--out", str(tmp_path / "s.pt2"))
    _one_line_error(r, "does not fit the model", "missing")
    unsafe = tmp_path / "unsafe.pt"
    from fxminimize.testing.zoo import LeNet300100
    torch.save({"state_dict": {}, "obj": LeNet300100()}, unsafe)   # needs full unpickling
    r = cli("--model", f"{MODEL_FILE}:plain", "--checkpoint", str(unsafe), "--input-shape", "2,3,16,16",
            "--out", str(tmp_path / "s.pt2"))
    _one_line_error(r, "weights_only=True")
    r = cli("--model", f"{MODEL_FILE}:broken", "--input-shape", "2,3,16,16", "--out", str(tmp_path / "s.pt2"))
    _one_line_error(r, "factory failed on purpose")
    assert r.returncode == 1
