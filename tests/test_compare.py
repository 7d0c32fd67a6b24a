"""fxminimize.compare (the one output comparison: per-dtype tolerances, leaf matching,
accumulated max abs error and check count, skipped input sets) and verification's record of
the input sets it skipped (Report.skipped_checks)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import fxminimize
from fxminimize.compare import TOLERANCES, Comparison, compare_outputs, float64_evaluator, tolerance
from fxminimize.verify import verify


def test_tolerance_table_matches_the_design():
    assert TOLERANCES[torch.float32] == (1e-4, 1e-5)
    assert TOLERANCES[torch.float64] == (1e-10, 1e-12)
    assert TOLERANCES[torch.float16] == (1e-2, 1e-3)
    assert TOLERANCES[torch.bfloat16] == (5e-2, 1e-2)
    assert tolerance(torch.float32, rtol=1e-3) == (1e-3, 1e-5)


def test_atol_scales_with_the_largest_reference_value():
    y = torch.tensor([100.0, 0.0])
    # |err| 5e-4 at a zero entry: above 1e-5 unscaled, within 1e-5·100 = 1e-3 scaled
    c = compare_outputs((y,), (y + torch.tensor([0.0, 5e-4]),))
    assert c.ok and c.checks == 1 and c.max_abs_error == pytest.approx(5e-4, rel=1e-2)
    c = compare_outputs((y,), (y + torch.tensor([0.0, 2e-3]),), label="set A")
    assert not c.ok and "output 0 differs on set A" in c.failure and "max abs error 0.002" in c.failure


def test_float64_is_stricter_than_float32():
    y = torch.randn(10, dtype=torch.float64)
    assert not compare_outputs([y], [y + 1e-9]).ok
    assert compare_outputs([y.float()], [y.float() + 1e-9]).ok


def test_non_float_outputs_must_be_equal_and_counts_and_shapes_match():
    i = torch.arange(4)
    assert compare_outputs({"a": i}, {"a": i.clone()}).ok
    c = compare_outputs([i], [i + 1], label="x")
    assert not c.ok and c.failure == "output 0 differs on x"
    c = compare_outputs([i, i.float()], [i])
    assert not c.ok and "output count differs" in c.failure
    c = compare_outputs([torch.zeros(2, 3)], [torch.zeros(3, 2)])
    assert not c.ok and "shape (3, 2) != (2, 3)" in c.failure


def test_accumulates_over_input_sets_and_records_skips():
    c = Comparison()
    y = torch.ones(3)
    assert c.check([y], [y + 1e-6], "first")
    assert c.check([y, 2 * y], [y, 2 * y + 3e-6], "second")
    err = float(((2 * y + 3e-6) - 2 * y).max())                 # 3e-6 as rounded in float32
    c.skip("third", "the original model raises")
    assert c.ok and c.checks == 3 and c.compared == ["first", "second"]
    assert c.max_abs_error == err
    assert [(s.label, s.reason) for s in c.skipped] == [("third", "the original model raises")]
    assert c.tolerance_text == "rtol=0.0001, atol=1e-05·max(1, max|y|)"


def test_nan_error_counts_as_infinite():
    c = compare_outputs([torch.ones(2)], [torch.tensor([1.0, float("nan")])])
    assert not c.ok and c.max_abs_error == float("inf")


def test_cast_compares_in_the_reference_dtype():
    y = torch.ones(3)
    assert not compare_outputs([y], [y.double()]).ok        # a dtype change is a mismatch
    c = Comparison(cast=True)
    assert c.check([y], [y.double()]) and c.check([torch.arange(3)], [torch.arange(3, dtype=torch.int32)])


def test_ill_conditioned_output_is_judged_against_float64():
    """fxminimize.compare, ill-conditioned outputs: the float32 reference y is 2e-3 off the exact
    value y* (its own rounding, amplified). A candidate within rtol/atol of y* widened by that
    2e-3 passes, and the comparison says so; one further off, or any candidate without a float64
    evaluation, or one whose float64 evaluation raises, is still refused."""
    exact = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    ref = (exact + torch.tensor([2e-3, 0.0, -1e-3], dtype=torch.float64)).float()
    own = float((ref.double() - exact).abs().max())
    good = exact.float()                                  # the exact values, rounded once
    assert not compare_outputs([ref], [good]).ok          # plain check: off the float32 reference
    c = compare_outputs([ref], [good], label="set A", exact=lambda: [exact])
    assert c.ok and len(c.rounding) == 1
    assert "output 0 on set A is ill-conditioned" in c.rounding[0] and f"{own:.3g}" in c.rounding[0]
    as_bad_as_ref = (exact - torch.tensor([0.0, own, 0.0], dtype=torch.float64)).float()
    assert compare_outputs([ref], [as_bad_as_ref], exact=lambda: [exact]).ok   # no worse than the original
    worse = (exact + torch.tensor([0.0, 2.2e-3, 0.0], dtype=torch.float64)).float()  # > own + 1e-5 + 1e-4·0.5
    c = compare_outputs([ref], [worse], exact=lambda: [exact])
    assert not c.ok and not c.rounding and "output 0 differs" in c.failure

    def raises():
        raise RuntimeError("no float64 here")
    assert not compare_outputs([ref], [good], exact=raises).ok
    assert not compare_outputs([ref], [good], exact=lambda: None).ok
    assert not compare_outputs([ref], [good], exact=lambda: [exact[:2]]).ok     # wrong shape: no judgement
    # a float64 reference is judged by the plain check only (nothing more exact to compare with)
    assert not compare_outputs([exact + 1e-6], [exact], exact=lambda: [exact]).ok


def test_float64_evaluator_leaves_the_model_alone():
    m = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    ev = float64_evaluator(m)
    x = torch.randn(4, 3)
    y = ev((x,))
    assert y.dtype == torch.float64 and m[0].weight.dtype == torch.float32
    torch.testing.assert_close(y.float(), m(x), rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        m[0].weight.add_(1.0)                      # the copy was made at the first call: unaffected
    torch.testing.assert_close(ev((x,)), y, rtol=0, atol=0)


class _OnlyExampleBatch(nn.Module):
    """Eager forward refuses batch 1 (torch.export does not see the check): verification must
    skip that input set and say so."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 2)
        with torch.no_grad():
            self.a.weight[:3] = 0
            self.a.bias[:3] = 0

    def forward(self, x):
        if not torch.compiler.is_exporting() and x.shape[0] == 1:
            raise ValueError("batch 1 is not supported")
        return self.b(torch.relu(self.a(x)))


def test_verify_records_skipped_batch_sets():
    m = _OnlyExampleBatch().eval()
    res = verify(m, m, (torch.randn(4, 6),), dynamic_batch=True)
    assert res.ok and res.checks == 3
    assert [(s.label, s.reason) for s in res.skipped] == [
        ("random inputs at batch 1", "the original model raises ValueError: batch 1 is not supported")]


def test_report_shows_skipped_checks():
    m = _OnlyExampleBatch().eval()
    res = fxminimize.minimize(m, (torch.randn(4, 6),))
    assert res.dynamic_batch and res.report.verified_checks == 3
    (skipped,) = res.report.skipped_checks
    assert skipped.label == "random inputs at batch 1" and "batch 1 is not supported" in skipped.reason
    assert "skipped random inputs at batch 1: the original model raises ValueError: batch 1 is not supported" \
        in str(res.report)
    d = res.report.to_dict()
    assert d["skipped_checks"] == [{"label": "random inputs at batch 1",
                                    "reason": "the original model raises ValueError: batch 1 is not supported"}]
    assert d["verified_checks"] == 3


def test_report_without_skips_has_an_empty_list():
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    res = fxminimize.minimize(m, (torch.randn(3, 4),))
    assert res.report.skipped_checks == [] and res.report.to_dict()["skipped_checks"] == []
    assert "skipped" not in str(res.report)
