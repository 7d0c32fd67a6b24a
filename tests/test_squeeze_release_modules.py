"""Squeeze-Release in module mode (``keep_modules=True``): every cycle's model is the user's class,
shrinks, records its self-check and matches its masked predecessor at the squeeze; checkpoints
(safetensors + JSON) resume and carry as the user's class; ONNX size measure on the result.
Synthetic data only."""
import copy
import json
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fxminimize
from fxminimize import training as sr
from fxminimize.training import cycle as cycle_mod

TOL = dict(rtol=1e-5, atol=1e-5)  # float32, a few hundred MACs per output: rounding only


def _data(n=192, shape=(24,), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = (x.reshape(n, -1) @ torch.randn(x[0].numel(), 3, generator=g)).argmax(-1)
    return x, y


class FC(nn.Module):
    """The user's class: a small MLP with its own method (to show the class survives)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(24, 48), nn.Linear(48, 32), nn.Linear(32, 3)

    def forward(self, x):
        return self.head(F.relu(self.fc2(F.relu(self.fc1(x)))))

    def widths(self):
        return self.fc1.out_features, self.fc2.out_features


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24)
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.c2(x)))
        return self.head(x.mean((2, 3)))


def _trained_bn(model):
    """Trained-looking BatchNorm statistics and affine parameters (not the 0/1 defaults)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


def row_scores(model, params):
    """Structured criterion: every entry of an output row scores the row's L2 norm, so a prune
    fraction empties whole rows (units) and the squeeze has channels to remove every cycle."""
    return {n: p.detach().float().reshape(p.shape[0], -1).norm(dim=1).reshape([-1] + [1] * (p.dim() - 1)).expand(
        p.shape).clone() for n, p in params.items()}


def _run(model, x, y, monkeypatch, **kw):
    """SqueezeRelease with keep_modules=True; returns (result, [(masked predecessor, squeezed)])."""
    squeezes = []
    real = cycle_mod.minimize

    def spy(m, ex, **k):
        res = real(m, ex, **k)
        # copies taken at the squeeze: the predecessor is trained on in place, the result released
        squeezes.append((copy.deepcopy(m), copy.deepcopy(res.module), res))
        return res

    monkeypatch.setattr(cycle_mod, "minimize", spy)

    def train_fn(m, opt, epochs, info):
        m.train()
        for _ in range(epochs):
            for i in range(0, x.shape[0], 64):
                opt.zero_grad()
                F.cross_entropy(m(x[i:i + 64]), y[i:i + 64]).backward()
                opt.step()

    kw.setdefault("schedule", 0.6)
    kw.setdefault("max_cycles", 2)
    kw.setdefault("criterion", sr.unit_scores)
    run = sr.SqueezeRelease(model, (x[:4],), train_fn, lambda m: sr.accuracy(m, x, y),
                            optimizer_fn=lambda p: torch.optim.Adam(p, lr=1e-2), keep_modules=True, **kw)
    return run, run.run(), squeezes


def _check_cycles(model_cls, result, squeezes, inputs):
    hist = result.history
    assert [r.cycle for r in hist] == [0, 1, 2], result.stop_reason
    assert len(squeezes) == 2
    sizes = [r.params for r in hist]
    assert sizes[0] > sizes[1] > sizes[2], sizes          # the deployable size shrinks every cycle
    assert type(result.module) is model_cls
    for rec, (pred, small, res) in zip(hist[1:], squeezes):
        assert type(small) is model_cls and type(pred) is model_cls
        assert rec.params == sr.deployable_size(small) == res.report.params_after
        assert rec.channels_removed > 0
        # the recorded self-check is module mode's own verification
        assert rec.max_abs_error == res.report.module_mode["max_abs_error"] and rec.max_abs_error < 1e-4
        assert rec.verified_checks == res.report.module_mode["verified_checks"] > 0
        pred.eval(), small.eval()
        with torch.no_grad():
            for x in inputs:
                torch.testing.assert_close(small(x), pred(x), **TOL)
    return sizes


def test_fc_two_cycles_keep_class(monkeypatch):
    x, y = _data()
    model = FC()
    run, result, squeezes = _run(model, x, y, monkeypatch)
    g = torch.Generator().manual_seed(7)
    _check_cycles(FC, result, squeezes, [torch.randn(b, 24, generator=g) for b in (1, 2, 5)])
    # what was removed: the user's own modules are narrower, and their size attributes follow
    w1, w2 = result.module.widths()
    assert (w1, w2) < (48, 32) and result.module.fc1.weight.shape == (w1, 24)
    assert result.module.fc2.in_features == w1 and result.module.head.in_features == w2
    assert [r.shapes["fc1.weight"][0] for r in result.history] == sorted(
        (r.shapes["fc1.weight"][0] for r in result.history), reverse=True)
    assert model.fc1.out_features == 48  # the user's model keeps its architecture (skeleton for checkpoints)
    # the released and trained model still runs the user's loop: it is a plain trainable module
    assert all(p.requires_grad for p in result.module.parameters())


def test_cnn_batchnorm_two_cycles_keep_class(monkeypatch):
    x, y = _data(n=64, shape=(3, 8, 8))
    torch.manual_seed(0)
    model = _trained_bn(CNN())
    _, result, squeezes = _run(model, x, y, monkeypatch, schedule=0.3, finetune_epochs=0, train_epochs=1,
                                criterion=row_scores)
    g = torch.Generator().manual_seed(7)
    _check_cycles(CNN, result, squeezes, [torch.randn(b, 3, 8, 8, generator=g) for b in (1, 2, 5)])
    m = result.module
    assert m.c2.out_channels == m.b2.num_features == m.head.in_features < 24
    assert m.c1.out_channels == m.b1.num_features == m.c2.in_channels <= 16
    assert m.b2.running_mean.shape == m.b2.running_var.shape == (m.b2.num_features,)


def test_checkpoints_resume_and_carry_as_user_class(monkeypatch, tmp_path):
    x, y = _data()
    d = str(tmp_path / "run")
    run, result, _ = _run(FC(), x, y, monkeypatch, checkpoint_dir=d, carry_checkpoint=True)
    assert type(result.module) is FC                         # carried through the checkpoint
    with open(os.path.join(d, "history.json")) as f:
        data = json.load(f)
    assert data["config"]["keep_modules"] is True
    paths = [r["checkpoint"] for r in data["history"]]
    assert paths == [os.path.join(d, f"cycle_{k:03d}") for k in range(3)]
    assert all(os.path.exists(os.path.join(p, "model.safetensors")) for p in paths)
    assert not any(n.endswith(".pt2") for n in os.listdir(d))
    # resume: a new SqueezeRelease on a fresh model of the original architecture
    again = sr.SqueezeRelease(FC(), (x[:4],), lambda *a: None, lambda m: sr.accuracy(m, x, y),
                              optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.1), keep_modules=True, max_cycles=2,
                              checkpoint_dir=d).run()
    assert type(again.module) is FC and again.stop_reason == result.stop_reason
    assert [r.params for r in again.history] == [r.params for r in result.history]
    xb = torch.randn(5, 24)
    with torch.no_grad():
        torch.testing.assert_close(again.module(xb), result.module(xb), rtol=0, atol=0)


def test_graph_mode_stays_default(monkeypatch):
    x, y = _data()
    seen = []
    real = cycle_mod.minimize
    monkeypatch.setattr(cycle_mod, "minimize", lambda m, ex, **k: seen.append(k) or real(m, ex, **k))
    run = sr.SqueezeRelease(FC(), (x[:4],), lambda *a: None, lambda m: sr.accuracy(m, x, y),
                            optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.1), schedule=0.6, max_cycles=1,
                            criterion=sr.unit_scores)
    res = run.run()
    assert seen == [{"keep_modules": False}]
    assert isinstance(res.module, torch.fx.GraphModule)


def test_onnx_bytes_on_module_mode_result(monkeypatch):
    pytest.importorskip("onnx")
    x, y = _data()
    model = FC()
    _, result, _ = _run(model, x, y, monkeypatch, max_cycles=1)
    small = result.module
    assert type(small) is FC
    before, after = sr.onnx_bytes(FC(), (x[:4],)), sr.onnx_bytes(small, (x[:4],))
    assert before is not None and after is not None and after < before


def test_single_pass_keep_modules(monkeypatch):
    """The single-pass baseline passes ``keep_modules`` through: its result is the user's class,
    resized, exact against the pruned model at the squeeze (its zeros still there)."""
    x, y = _data()
    model = FC()
    squeezes = []
    real = cycle_mod.minimize

    def spy(m, ex, **k):
        res = real(m, ex, **k)
        squeezes.append((copy.deepcopy(m), res, k))
        return res

    monkeypatch.setattr(cycle_mod, "minimize", spy)
    n0 = sr.deployable_size(model)
    small, rec = sr.single_pass(model, (x[:4],), lambda *a: None, lambda m: sr.accuracy(m, x, y),
                                optimizer_fn=lambda p: torch.optim.Adam(p, lr=1e-2), sparsity=0.6, epochs=0,
                                criterion=row_scores, keep_modules=True)
    assert type(small) is FC and [k for _, _, k in squeezes] == [{"keep_modules": True}]
    assert sum(small.widths()) < sum(FC().widths()) and rec.params == sr.deployable_size(small) < n0
    pred, res, _ = squeezes[0]
    assert rec.max_abs_error == res.report.module_mode["max_abs_error"] < 1e-4
    with torch.no_grad():
        for b in (1, 5):
            torch.testing.assert_close(small.eval()(x[:b]), pred.eval()(x[:b]), **TOL)
