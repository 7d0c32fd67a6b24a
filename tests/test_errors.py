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
    assert shapes(res.module) == {k: v for k, v in shapes(m).items() if k in shapes(res.module)}
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
    import fxminimize.passes.linear as lin
    orig_run = lin.run

    def broken(gm, plan):
        res = orig_run(gm, plan)
        gm.fc3.bias = nn.Parameter(gm.fc3.bias.detach() + 1.0)  # a wrong rewrite
        return res

    monkeypatch.setattr("fxminimize.passes.PIPELINE", (broken,) + tuple(
        p for p in __import__("fxminimize.passes", fromlist=["PIPELINE"]).PIPELINE if p is not orig_run))
    m = ZOO["lenet_300_100"][0]()
    before = state(m)
    with pytest.raises(MinimizationError, match="does not match the original"):
        fxminimize.minimize(m, (example_input("lenet_300_100"),))
    assert_unchanged(m, before)


def test_example_inputs_must_be_tuple():
    m = ZOO["lenet_300_100"][0]()
    with pytest.raises(MinimizationError, match="tuple"):
        fxminimize.minimize(m, example_input("lenet_300_100"))
