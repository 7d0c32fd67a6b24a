"""Capture front-ends: nn.Module, torch.fx.GraphModule, ExportedProgram; batch handling."""
import warnings

import pytest
import torch
import torch.nn as nn

import fxminimize
from fxminimize.testing.zoo import ZOO, example_input, induce_dead_channels
from helpers import compare, shapes


def _lenet():
    m = ZOO["lenet5"][0]()
    induce_dead_channels(m, "conv2", [1, 2])
    return m


def test_graph_module_from_symbolic_trace():
    m = _lenet()
    gm = torch.fx.symbolic_trace(m)
    res = fxminimize.minimize(gm, (example_input("lenet5"),))
    assert shapes(res.module)["conv2.weight"] == (14, 6, 5, 5)
    compare(m, res.module, (torch.randn(7, 1, 28, 28),))


def test_exported_program_keeps_its_batch_contract():
    m = _lenet()
    x = example_input("lenet5")
    ep = torch.export.export(m, (x,), strict=False)
    res = fxminimize.minimize(ep, (x,))
    assert shapes(res.module)["conv2.weight"] == (14, 6, 5, 5)
    assert not res.dynamic_batch  # exported with a static batch: stays so
    compare(m, res.module, (torch.randn(2, 1, 28, 28),))


def test_dynamic_batch_by_default():
    res = fxminimize.minimize(_lenet(), (example_input("lenet5"),))
    assert res.dynamic_batch
    assert res.module(torch.randn(13, 1, 28, 28)).shape == (13, 10)


def test_model_that_specializes_batch_falls_back_to_static_with_warning():
    class S(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 26 * 26, 3)

        def forward(self, x):
            return self.fc(self.c(x).view(2, -1))

    m = S().eval()
    induce_dead_channels(m, "c", [0])
    with pytest.warns(UserWarning, match="specializes its batch size"):
        res = fxminimize.minimize(m, (torch.randn(2, 1, 28, 28),))
    assert not res.dynamic_batch
    assert shapes(res.module)["fc.weight"] == (3, 3 * 26 * 26)
    compare(m, res.module, (torch.randn(2, 1, 28, 28),))
