"""Module mode (``minimize(..., keep_modules=True)``) on the example zoo and small hand-built models.

For every case: ``result.module`` is the user's class; it matches the masked original at batch
1, 2 and 5 (helpers.compare: rtol 1e-4, atol 1e-5·max(1, max|y|), float32); it never stores more
than the input; and it removes what graph mode removes (same tensor shapes for every parameter
the two share) except where the report says why. The user's model is untouched.
"""
from __future__ import annotations

import copy

import numpy as np

import pytest
import torch
import torch.nn as nn

import fxminimize
from fxminimize.testing.zoo import ZOO, example_input, induce_dead_channels
from helpers import assert_unchanged, compare, state
from shape_pins import zoo_cases

CASES = {name: (model, ex, masks) for name, model, ex, masks in zoo_cases()
         if name.endswith("/rows") or name.split("/")[0] in ("convnext_small", "mobilenetv2_small")}


def _masked(model, masks):
    ref = copy.deepcopy(model)
    if masks:
        with torch.no_grad():
            for name, p in ref.named_parameters():
                if name in masks:
                    p.mul_(masks[name].to(p.dtype))
    return ref


def check_module_mode(model, example, masks=None, batches=(1, 2, 5), make_input=None, estimate_off=0):
    before = state(model)
    res = fxminimize.minimize(model, example, masks=masks, keep_modules=True)
    assert_unchanged(model, before)
    assert type(res.module) is type(model)
    assert res.module is not model
    ref = _masked(model, masks)
    g = torch.Generator().manual_seed(3)
    for b in batches:
        xs = make_input(b) if make_input else tuple(torch.randn((b,) + tuple(t.shape[1:]), generator=g) for t in example)
        compare(ref, res.module, xs)
    mm = res.report.module_mode
    assert mm["module_elements"] == res.report.params_after <= res.report.params_before
    assert fxminimize.size.stored_elements(res.module) == mm["module_elements"]
    # the report describes the module: its plan's removals and groups
    plan = res.plan
    assert res.report.removed == {k: (plan.size[k], len(plan.keep[k])) for k in plan.keep
                                  if len(plan.keep[k]) < plan.size[k]}
    assert res.report.groups == plan.groups and res.graph_module is None
    graph_res = fxminimize.minimize(model, example, masks=masks)   # graph mode, for comparison
    assert_graph_estimate(mm["graph_elements"], graph_res, estimate_off)
    if mm["beyond_module_mode"] == 0 and not mm["kept_by"]:  # same plan: same shapes
        graph = {k: tuple(v.shape) for k, v in graph_res.module.state_dict().items()}
        mod = {k: tuple(v.shape) for k, v in res.module.state_dict().items()}
        common = set(graph) & set(mod)
        assert common
        assert {k: mod[k] for k in common} == {k: graph[k] for k in common}
    elif mm["beyond_module_mode"]:
        assert any("graph mode removes" in n and f"{mm['beyond_module_mode']:,}" in n for n in res.report.notes)
    return res


#: graph-mode elements the plan-based estimate (module_mode.graph_mode_elements) gets wrong, by
#: case: (estimate - graph-mode result) where it is not exact; see docs/module_mode.md
ESTIMATE_OFF = {"densenet_small/rows": -178, "densenet_small/rows+magnitude": -154,
                "mobilenetv2_small/rows": -26, "mobilenetv2_small/rows+magnitude": -20,
                "unknown_op_mlp/rows+magnitude": -30}


def assert_graph_estimate(estimate, graph_res, off=0):
    """report.module_mode['graph_elements'] (from the plan) against a real graph-mode run."""
    assert estimate - graph_res.report.params_after == off, (estimate, graph_res.report.params_after)


@pytest.mark.parametrize("name", sorted(CASES))
def test_zoo(name):
    model, ex, masks = CASES[name]
    res = check_module_mode(model, ex, masks, estimate_off=ESTIMATE_OFF.get(name, 0))
    assert not any("cannot resize" in n for n in res.report.notes), res.report.notes
    if res.report.module_mode["graph_elements"] < res.report.params_before \
            and not name.startswith("shufflenet"):  # there module mode keeps the CONST output channels
        assert res.report.params_after < res.report.params_before


def test_resnet_dead_filters_are_gone():
    model = ZOO["resnet_small"][0]()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.normal_(0, 0.2)
    induce_dead_channels(model, "layer2.conv1", [0, 5, 7])
    with torch.no_grad():  # conv rows 0 -> BN: CONST(β − γμ/σ) = CONST(-1·…) < 0 -> ReLU: ZERO
        model.layer2.bn1.running_mean[[0, 5, 7]] = 0.0
        model.layer2.bn1.bias[[0, 5, 7]] = -1.0
    C = model.layer2.conv1.out_channels
    res = check_module_mode(model, (example_input("resnet_small"),))
    small = res.module
    assert small.layer2.conv1.out_channels == C - 3 and small.layer2.conv1.weight.shape[0] == C - 3
    assert small.layer2.bn1.num_features == C - 3 and small.layer2.bn1.running_mean.shape == (C - 3,)
    assert small.layer2.conv2.in_channels == C - 3 and small.layer2.conv2.weight.shape[1] == C - 3


class _Mlp(nn.Module):
    def __init__(self, hard_coded_view=False):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(10, 16), nn.Linear(16, 16, bias=False), nn.Linear(16, 4)
        self.hard = hard_coded_view

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        if self.hard:
            h = h.reshape(-1, 16)  # a size the user's code fixes: the resized module cannot run
        return self.fc3(torch.relu(self.fc2(h)) + 1.0)


def _mlp(hard=False):
    torch.manual_seed(0)
    m = _Mlp(hard).eval()
    with torch.no_grad():
        m.fc1.weight[[2, 9]] = 0
        m.fc1.bias[[2, 9]] = 0.0          # dead: relu(0) = 0
        m.fc2.weight[[1, 4]] = 0          # fc2 rows 1, 4 CONST(0) -> relu -> +1: CONST(1), folded into fc3
    return m


def test_constants_fold_into_created_bias():
    m = _mlp()
    res = check_module_mode(m, (torch.randn(3, 10),))
    s = res.module
    assert s.fc1.out_features == 14 and s.fc2.in_features == 14
    assert s.fc2.out_features == 14 and s.fc3.in_features == 14
    assert s.fc2.bias is None  # fc2 had none and nothing folds into it
    # fc3 reads fc2's CONST rows (value 1 after relu + 1): b' = b + W[:, removed]·1
    full = m.fc3.bias + m.fc3.weight[:, [1, 4]].sum(1)
    torch.testing.assert_close(s.fc3.bias, full, rtol=1e-6, atol=1e-6)


def test_module_mode_keeps_model_whole_when_forward_fixes_sizes():
    m = _mlp(hard=True)
    before = state(m)
    res = fxminimize.minimize(m, (torch.randn(3, 10),), keep_modules=True)
    assert_unchanged(m, before)
    assert type(res.module) is _Mlp
    assert any("cannot resize" in n for n in res.report.notes)
    assert res.report.params_after == res.report.params_before       # unshrunk, exact
    assert res.report.module_mode["graph_elements"] < res.report.params_before
    compare(m, res.module, (torch.randn(5, 10),))
    assert res.graph_module is None and res.report.removed == {}
    assert all(g.units_removed == 0 for g in res.report.groups)
    graph_res = fxminimize.minimize(m, (torch.randn(3, 10),))
    assert_graph_estimate(res.report.module_mode["graph_elements"], graph_res)
    compare(m, graph_res.module, (torch.randn(5, 10),))


def test_default_is_graph_mode():
    res = fxminimize.minimize(_mlp(), (torch.randn(3, 10),))
    assert isinstance(res.module, torch.fx.GraphModule) and res.graph_module is None


def test_unread_input_features_stay_and_the_report_counts_them():
    """Graph mode gathers the 684 input pixels fc1 reads; the user's forward takes all 784, so
    module mode keeps fc1's columns: it stores 300·100 weights more, less graph mode's index."""
    torch.manual_seed(0)
    model = ZOO["lenet_300_100"][0]()
    with torch.no_grad():
        model.fc1.weight[:, :100] = 0
    res = check_module_mode(model, (example_input("lenet_300_100"),))
    assert res.module.fc1.in_features == 784
    assert fxminimize.minimize(model, (example_input("lenet_300_100"),)).module.fc1.weight.shape == (300, 684)
    mm = res.report.module_mode
    assert mm["kept_by"] == {"input features no module reads (graph mode gathers them)": 100}
    assert mm["beyond_module_mode"] == 300 * 100 - 684


def test_widen_keeps_what_the_extra_channels_read():
    """ChannelAnalysis.widen: a channel required afterwards pulls in what it reads (fc2 row
    kept -> the fc1 channels it reads are kept again)."""
    from fxminimize.analysis.channels import ChannelAnalysis
    from fxminimize.capture import capture

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    with torch.no_grad():
        m[4].weight[:, 2] = 0          # fc3 never reads fc2's channel 2 ...
        m[2].weight[2] = 0
        m[2].weight[2, 7] = 1.0        # ... which alone reads fc1's channel 7
        m[2].weight[:2, 7] = 0
        m[2].weight[3:, 7] = 0
    gm = capture(m, (torch.randn(2, 6),)).gm
    ca = ChannelAnalysis(gm)
    plan = ca.run()
    names = [n.name for n in gm.graph.nodes if n.op == "call_function" and plan.tracked(n.name)]
    fc1, fc2 = [n for n in names if n.startswith("linear")][:2]
    assert 2 not in plan.keep[fc2] and 7 not in plan.keep[fc1]
    extra = np.zeros(plan.size[fc2], bool)
    extra[2] = True
    wide = ca.widen({fc2: extra})
    assert 2 in wide.keep[fc2] and 7 in wide.keep[fc1]


def test_never_larger_falls_back_to_the_unshrunk_copy(monkeypatch):
    """A resized module that would store more than the input is not returned: module mode's
    guard gives the unshrunk copy (exact) and says why. The build is made to add a large
    buffer, as a rewrite that does not pay would."""
    from fxminimize import module_mode
    real = module_mode.build

    def bigger(*a, **k):
        model, index = real(*a, **k)
        model.register_buffer("padding", torch.zeros(100_000))
        return model, index

    monkeypatch.setattr(module_mode, "build", bigger)
    m = _mlp()
    before = state(m)
    res = fxminimize.minimize(m, (torch.randn(3, 10),), keep_modules=True)
    assert_unchanged(m, before)
    assert not hasattr(res.module, "padding") and type(res.module) is type(m)
    assert any("it would store" in n and "unshrunk copy" in n for n in res.report.notes), res.report.notes
    assert res.report.params_after == res.report.params_before and res.report.removed == {}
    compare(m, res.module, (torch.randn(5, 10),))


def test_one_analysis_one_rewrite_no_full_copy_of_resized_tensors(monkeypatch):
    """Module mode analyses once, rewrites once (no graph-mode rewrite), verifies once, and the
    copy never deep-copies a tensor the plan resizes (the memo maps it to its sliced one)."""
    from fxminimize.analysis.channels import ChannelAnalysis
    from fxminimize.passes import pipeline
    import fxminimize.verify as verify_mod
    calls = {"run": 0, "pipeline": [], "verify": 0}
    real_run, real_pipe, real_verify = ChannelAnalysis.run, pipeline.run_pipeline, verify_mod.verify

    def run(self):
        calls["run"] += 1
        return real_run(self)

    def pipe(*a, **k):
        calls["pipeline"].append(k.get("structural", True))
        return real_pipe(*a, **k)

    def ver(*a, **k):
        calls["verify"] += 1
        return real_verify(*a, **k)

    copied = []
    real_deepcopy = nn.Parameter.__deepcopy__

    def param_deepcopy(self, memo):
        copied.append(tuple(self.shape))
        return real_deepcopy(self, memo)

    monkeypatch.setattr(ChannelAnalysis, "run", run)
    monkeypatch.setattr(pipeline, "run_pipeline", pipe)
    monkeypatch.setattr(verify_mod, "verify", ver)
    monkeypatch.setattr(nn.Parameter, "__deepcopy__", param_deepcopy)
    m = _mlp()
    res = fxminimize.minimize(m, (torch.randn(3, 10),), keep_modules=True)
    assert calls == {"run": 1, "pipeline": [False], "verify": 1}
    resized = {k for k, v in res.module.state_dict().items() if v.shape != m.state_dict()[k].shape}
    assert resized >= {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert (16, 10) not in copied and (16, 16) not in copied and (4, 16) not in copied, copied
    compare(m, res.module, (torch.randn(5, 10),))
