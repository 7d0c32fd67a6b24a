"""Bad input: a clear MinimizationError, and the user's model is unchanged."""
import math

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune

import fxminimize
from fxminimize import MinimizationError
from fxminimize.testing.zoo import ZOO, example_input
from helpers import assert_unchanged, minimize_and_check, shapes, state


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return self.fc(x)
        return -self.fc(x)


def test_capture_failure_names_source_line():
    m = DataDependent().eval()
    before = state(m)
    with pytest.raises(MinimizationError) as e:
        fxminimize.minimize(m, (torch.randn(2, 4),))
    assert "could not capture" in str(e.value)
    assert "test_errors.py" in str(e.value) and "if x.sum() > 0" in str(e.value)
    assert_unchanged(m, before)


def test_mask_wrong_shape():
    m = ZOO["lenet_300_100"][0]()
    before = state(m)
    with pytest.raises(MinimizationError, match=r"mask 'fc1.weight' has shape \(3, 3\)"):
        fxminimize.minimize(m, (example_input("lenet_300_100"),), masks={"fc1.weight": torch.ones(3, 3, dtype=torch.bool)})
    assert_unchanged(m, before)


def test_mask_names_no_parameter():
    m = ZOO["lenet_300_100"][0]()
    before = state(m)
    with pytest.raises(MinimizationError, match="names no parameter"):
        fxminimize.minimize(m, (example_input("lenet_300_100"),), masks={"fc9.weight": torch.ones(3, dtype=torch.bool)})
    assert_unchanged(m, before)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights(bad):
    m = ZOO["lenet_300_100"][0]()
    with torch.no_grad():
        m.fc2.weight[0, 0] = bad
    before = state(m)
    with pytest.raises(MinimizationError, match="fc2.weight.*NaN or Inf"):
        fxminimize.minimize(m, (example_input("lenet_300_100"),))
    after = m.state_dict()
    for k in before:
        assert torch.equal(before[k], after[k]) or (torch.isnan(before[k]).any() and torch.allclose(
            before[k], after[k], equal_nan=True)), k


def test_batchnorm_train_mode():
    m = ZOO["resnet_small"][0]().train()
    before = state(m)
    with pytest.raises(MinimizationError, match="BatchNorm 'bn1' is in training mode"):
        fxminimize.minimize(m, (example_input("resnet_small"),))
    assert_unchanged(m, before)
    assert m.training


def test_empty_mask_returns_equal_model():
    m = ZOO["lenet5"][0]()
    masks = {k: torch.ones_like(v, dtype=torch.bool) for k, v in m.named_parameters()}
    res = minimize_and_check(m, (example_input("lenet5"),), masks=masks)
    assert shapes(res.module) == shapes(m)   # every parameter and buffer, each with its shape
    assert "nothing to remove" in str(res.report)


def test_mask_dict_and_torch_prune_agree():
    m = ZOO["lenet_300_100"][0]()
    mask = torch.ones(300, 784, dtype=torch.bool)
    mask[:40] = False
    res_dict = minimize_and_check(m, (example_input("lenet_300_100"),), masks={"fc1.weight": mask})
    pm = ZOO["lenet_300_100"][0]()
    prune.custom_from_mask(pm.fc1, "weight", mask)
    prune.custom_from_mask(pm.fc1, "bias", torch.arange(300) >= 40)
    before = state(pm)
    res_prune = fxminimize.minimize(pm, (example_input("lenet_300_100"),))
    assert_unchanged(pm, before)
    assert hasattr(pm.fc1, "weight_orig")  # the user's pruning reparametrisation is still there
    assert shapes(res_prune.module)["fc1.weight"] == (260, 784)
    # bias alive: rows are CONST(relu(b)) and fold into fc2's bias, so they go as well
    assert shapes(res_dict.module)["fc1.weight"] == (260, 784)


def test_verification_refuses_wrong_result(monkeypatch):
    """If a pass produced a wrong model, minimize() must refuse it (forced fault)."""
    from fxminimize.passes.ops.linear import LinearRule
    orig = LinearRule.rewrite

    def broken(self, ctx, n):
        changed = orig(self, ctx, n)
        if n.name == "linear_2":
            ctx.gm.fc3.bias = nn.Parameter(ctx.gm.fc3.bias.detach() + 1.0)  # a wrong rewrite
        return changed

    monkeypatch.setattr(LinearRule, "rewrite", broken)
    m = ZOO["lenet_300_100"][0]()
    before = state(m)
    with pytest.raises(MinimizationError, match="does not match the original"):
        fxminimize.minimize(m, (example_input("lenet_300_100"),))
    assert_unchanged(m, before)


def test_example_inputs_must_be_tuple():
    m = ZOO["lenet_300_100"][0]()
    with pytest.raises(MinimizationError, match="tuple"):
        fxminimize.minimize(m, example_input("lenet_300_100"))


def _mlp():
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        m[0].weight[:4] = 0
        m[0].bias[:4] = 0
    return m


def _no_traceback(capfd):
    """Nothing long reached the terminal: no traceback, at most a few lines (warnings)."""
    out, err = capfd.readouterr()
    text = out + err
    assert "Traceback" not in text and "fake_tensor" not in text, text
    assert len(text.splitlines()) <= 4, text


def test_meta_model_is_refused(capfd):
    m = _mlp().to("meta")
    with pytest.raises(MinimizationError, match=r"meta tensors cannot be verified: parameter or buffer '0.weight'"):
        fxminimize.minimize(m, (torch.randn(2, 8),))
    assert all(p.is_meta for p in m.parameters())
    _no_traceback(capfd)


def test_meta_inputs_are_refused(capfd):
    m = _mlp()
    before = state(m)
    with pytest.raises(MinimizationError, match=r"meta tensors cannot be verified: example_inputs\[0\] is on the meta"):
        fxminimize.minimize(m, (torch.randn(2, 8, device="meta"),))
    assert_unchanged(m, before)
    _no_traceback(capfd)


def test_integer_inputs_to_a_float_model_name_the_input_and_dtypes(capfd):
    m = _mlp()
    before = state(m)
    with pytest.raises(MinimizationError) as e:
        fxminimize.minimize(m, (torch.randint(0, 5, (2, 8)),))
    msg = str(e.value)
    assert msg.startswith("the model raises on its example inputs "
                          "(RuntimeError: mat1 and mat2 must have the same dtype")
    assert "example_inputs[0] is torch.int64 but the model's weights are torch.float32" in msg
    assert "the model was not changed" in msg
    assert_unchanged(m, before)
    _no_traceback(capfd)


def test_integer_inputs_in_a_dict_are_named_by_path():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = _mlp()

        def forward(self, batch):
            return self.m(batch["x"])

    with pytest.raises(MinimizationError, match=r"example_inputs\[0\]\['x'\] is torch.int32"):
        fxminimize.minimize(M().eval(), ({"x": torch.randint(0, 5, (2, 8), dtype=torch.int32)},))


def test_wrong_input_shape_is_refused_without_a_torch_traceback(capfd):
    m = _mlp()
    before = state(m)
    with pytest.raises(MinimizationError, match=r"the model raises on its example inputs \(RuntimeError: mat1 and "
                                                r"mat2 shapes cannot be multiplied \(2x7 and 8x16\)\)"):
        fxminimize.minimize(m, (torch.randn(2, 7),))
    assert_unchanged(m, before)
    _no_traceback(capfd)


def test_export_failure_logs_torch_traceback_at_debug_only(capfd, caplog):
    """torch.export logs a fake-tensor traceback at ERROR before raising on a shape mismatch;
    capture() routes it to its debug log: one MinimizationError, nothing long printed."""
    import logging

    from fxminimize.capture import capture

    m = _mlp()
    before = state(m)
    with caplog.at_level(logging.DEBUG, logger="fxminimize.capture"):
        with pytest.raises(MinimizationError, match=r"could not capture the model with torch.export \(RuntimeError: "
                                                    r"a and b must have same reduction dim") as e:
            capture(m, (torch.randn(2, 7),))
    assert e.value.__cause__ is None and e.value.__suppress_context__    # no chained torch traceback
    assert "<string>" not in str(e.value)
    assert_unchanged(m, before)
    _no_traceback(capfd)
    debug = [r for r in caplog.records if r.name == "fxminimize.capture" and r.levelno == logging.DEBUG]
    assert any(r.exc_info for r in debug)                            # the traceback is kept, at debug
    # outside capture() torch's own logging is untouched
    handlers = [h for h in logging.getLogger("torch._subclasses.fake_tensor").handlers]
    assert not any(type(f).__name__ == "_TorchErrorsToDebug" for h in handlers for f in h.filters)
