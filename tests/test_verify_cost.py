"""A cheaper minimize, with every check kept (issue 17, item 4): the original runs once per input
set (its outputs on the example inputs, computed to refuse inputs it rejects, are reused), the
check at other sizes runs at about a quarter or half the size (half, then one less, when the model rejects that), an
ExportedProgram is used as captured, and a wrong rewrite is still refused.

Tolerance: tests/helpers.py (rtol 1e-4, atol 1e-5·max(1, max|y|)), as fxminimize.verify."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensor

import fxminimize
from fxminimize.errors import MinimizationError
from fxminimize.verify import other_sizes, size_fallbacks
from helpers import assert_unchanged, compare, shapes, state


class SizeChecked(nn.Module):
    """A CNN (trained-looking: nonzero biases, BN statistics) that, like a model with a minimum
    input size, refuses images smaller than 12 pixels."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.fc = nn.Conv2d(8, 6, 3), nn.Linear(6, 4)

    def forward(self, x):
        if x.shape[-1] < 12:
            raise ValueError("image too small")
        y = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return self.fc(y.mean(dim=(2, 3)))


def size_checked():
    torch.manual_seed(0)
    m = SizeChecked().eval()
    with torch.no_grad():
        for p in (m.conv1.bias, m.conv2.bias, m.fc.bias, m.bn.bias, m.bn.running_mean):
            p.copy_(torch.randn_like(p) * 0.2)
        m.bn.running_var.copy_(torch.rand(8) + 0.5)
        m.conv1.weight[:3] = 0            # channels 0..2: conv1 output CONST(bias) → BN → relu → folded
    return m


def _real_calls(model):
    """The input shapes of every call of ``model`` on real tensors (not capture's fake ones)."""
    calls = []

    def hook(mod, args):
        if not isinstance(args[0], FakeTensor):
            calls.append(tuple(args[0].shape))
    return calls, model.register_forward_pre_hook(hook)


def test_the_original_runs_once_per_input_set_and_smaller_sizes_are_checked():
    m = size_checked()
    calls, h = _real_calls(m)
    x = torch.randn(2, 3, 16, 16)
    res = fxminimize.minimize(m, (x,))
    h.remove()
    assert shapes(res.module)["conv1.weight"] == (5, 3, 3, 3)    # what was removed
    # example (run once, before capture, its outputs reused), random, batch 1, batch 3, other sizes
    # (half of 16 is refused by the model: one less)
    assert res.report.verified_checks == 5
    assert calls[0] == (2, 3, 16, 16) and calls.count((2, 3, 16, 16)) == 2   # example, random
    assert calls[1:] == [(2, 3, 16, 16), (1, 3, 16, 16), (3, 3, 16, 16), (2, 3, 8, 8), (2, 3, 15, 15)], calls
    assert res.report.skipped_checks == []
    for hw in (12, 31):
        compare(m, res.module, (torch.randn(3, 3, hw, hw),))


def test_other_sizes_are_about_a_quarter_or_half():
    assert other_sizes({"s0": 224, "s5": 64, "s6": 63, "s1": 16, "s2": 8, "s3": 7, "s4": 2}) == \
        {"s0": 56, "s5": 16, "s6": 31, "s1": 8, "s2": 4, "s3": 6, "s4": 3}
    assert other_sizes({"s0": 224, "s3": 7}, quarter=False) == {"s0": 112, "s3": 6}
    assert other_sizes({"s0": 224, "s3": 7}, smaller=False) == {"s0": 223, "s3": 6}
    assert size_fallbacks({"s0": 224}) == [{"s0": 112}, {"s0": 223}]
    assert size_fallbacks({"s1": 16}) == [{"s1": 15}]


def test_an_original_that_rejects_a_quarter_is_checked_at_half_the_size():
    """A model with a minimum length (here 64 of 128): the quarter (32) is refused by the
    original, so the check runs at half (64), not at the full size less one."""
    from fxminimize.verify import verify
    calls = []

    def at_least_64(x):
        calls.append(tuple(x.shape))
        if x.shape[-1] < 64:
            raise ValueError("too short")
        return x * 2

    res = verify(at_least_64, at_least_64, (torch.randn(2, 128),), True, symbols=[{1: "s1"}], sizes={"s1": 128})
    assert res.ok and res.skipped == [], res.message
    assert calls[-3:] == [(2, 32), (2, 64), (2, 64)], calls       # reference refused, reference, candidate

    def wrong(x):
        return x * 2 + (x.shape[-1] == 64)                       # wrong only at the size checked
    res = verify(at_least_64, wrong, (torch.randn(2, 128),), True, symbols=[{1: "s1"}], sizes={"s1": 128})
    assert not res.ok and "other sizes" in res.message


def test_an_exported_program_is_not_exported_again(monkeypatch):
    m = size_checked()
    x = torch.randn(2, 3, 16, 16)
    ep = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},), strict=False)
    before = state(ep.module())

    def no_export(*a, **k):
        raise AssertionError("exported again")
    monkeypatch.setattr("fxminimize.capture._export", no_export)
    res = fxminimize.minimize(ep, (x,))
    assert res.dynamic_batch                                  # the program's own batch contract
    assert shapes(res.module)["conv1.weight"] == (5, 3, 3, 3)
    compare(m, res.module, (torch.randn(5, 3, 16, 16),))
    assert_unchanged(ep.module(), before)


def test_a_wrong_rewrite_is_still_refused_when_the_example_cannot_show_it(monkeypatch):
    """The example input is all zeros, so a corrupted weight leaves the example's outputs
    unchanged: the reused example outputs agree, and the random input sets must catch it."""
    from fxminimize.passes.ops.linear import LinearRule
    orig = LinearRule.rewrite

    def broken(self, ctx, n):
        changed = orig(self, ctx, n)
        if n.name == "linear":
            ctx.gm.fc1.weight = nn.Parameter(ctx.gm.fc1.weight.detach() * 1.01)  # wrong, but 0 at x = 0
        return changed

    monkeypatch.setattr(LinearRule, "rewrite", broken)
    torch.manual_seed(0)
    m = nn.Sequential()
    m.add_module("fc1", nn.Linear(8, 16))
    m.add_module("act", nn.ReLU())
    m.add_module("fc2", nn.Linear(16, 3))
    m.eval()
    with torch.no_grad():
        m.fc1.weight[:4] = 0
        m.fc1.bias[:4] = 0
        m.fc1.bias[4:] += 0.1
    before = state(m)
    with pytest.raises(MinimizationError, match="does not match the original.*on random inputs"):
        fxminimize.minimize(m, (torch.zeros(2, 8),))
    assert_unchanged(m, before)



def test_an_original_that_rejects_both_other_sizes_skips_the_check_once():
    """Half the size and one less both raise in the original: the check is skipped with the
    reason (before the fix, the retry retried itself until RecursionError, which broke
    tools/reproduce_fc.py)."""
    from fxminimize.verify import verify
    calls = []

    def only_sixteen(x):
        calls.append(tuple(x.shape))
        if x.shape[-1] != 16:
            raise ValueError("only 16 columns")
        return x * 2

    res = verify(only_sixteen, only_sixteen, (torch.randn(2, 16),), True, symbols=[{1: "s1"}], sizes={"s1": 16})
    assert res.ok, res.message
    assert calls.count((2, 8)) == 1 and calls.count((2, 15)) == 1, calls
    assert len(res.skipped) == 1 and "only 16 columns" in str(res.skipped[0])
