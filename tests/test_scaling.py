"""The analysis does work linear in depth (issue 7, part 3), checked by counting, not timing.

The plan counts the use fixpoint's rounds R and rule calls C (``Plan.fixpoint_rounds``,
``Plan.rule_calls``). On a deep MLP the number of rounds grows with depth (kept
channels cross one contraction per round), so a fixpoint that reran every rule each round
would make R × nodes calls, quadratic in depth. These tests assert that C grows linearly:
C(4d) ≤ 4.5 · C(d), and C stays within a small constant per graph node. No wall clock is
read, so the tests are not flaky on a loaded machine (tools/bench_pass.py has the timings).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fxminimize.analysis import ChannelAnalysis
from fxminimize.capture import capture
from fxminimize.rewrite import rewrite


def counted_analysis(gm):
    """(plan, rounds, rule calls, call_function nodes) for one analysis of ``gm``, read from the
    plan's own counters (``Plan.fixpoint_rounds``, ``Plan.rule_calls``)."""
    plan = ChannelAnalysis(gm).run()
    nodes = sum(1 for n in gm.graph.nodes if n.op == "call_function")
    return plan, plan.fixpoint_rounds, plan.rule_calls, nodes


def deep_mlp(depth: int, width: int = 16) -> nn.Module:
    """Linear+ReLU blocks; each hidden layer has a quarter of its neurons dead and reads only
    the first half of its inputs, so channel removal cascades from the output backwards."""
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        lin = nn.Linear(width, width)
        with torch.no_grad():
            lin.weight[:, width // 2:] = 0
            lin.weight[: width // 4] = 0
            lin.bias[: width // 4] = 0
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 4)).eval()


@pytest.fixture(scope="module")
def mlp_counts():
    out = {}
    for d in (10, 20, 40, 80):
        gm = capture(deep_mlp(d), (torch.randn(3, 16),)).gm
        plan, rounds, calls, nodes = counted_analysis(gm)
        out[d] = dict(rounds=rounds, calls=calls, nodes=nodes, plan=plan, gm=gm)
    return out


def test_mlp_rounds_grow_with_depth(mlp_counts):
    # the case the worklist exists for: many rounds, so rerunning everything would be quadratic
    r = {d: c["rounds"] for d, c in mlp_counts.items()}
    for d, c in mlp_counts.items():
        print(f"MLP depth {d}: {c['rounds']} rounds, {c['calls']} rule calls, {c['nodes']} call_function nodes")
    assert r[80] > r[10] + 40, r


def test_mlp_rule_calls_linear_in_depth(mlp_counts):
    c = {d: v["calls"] for d, v in mlp_counts.items()}
    assert c[40] <= 4.5 * c[10], c
    assert c[80] <= 4.5 * c[20], c
    assert c[80] <= 2.25 * c[40], c


def test_mlp_rule_calls_per_node_bounded(mlp_counts):
    for d, v in mlp_counts.items():
        assert v["calls"] <= 4 * v["nodes"], (d, v["calls"], v["nodes"])
    v = mlp_counts[80]
    # far below what rerunning every rule each round would cost
    assert v["calls"] * 10 < v["rounds"] * v["nodes"], (v["calls"], v["rounds"], v["nodes"])


def test_mlp_result_still_right(mlp_counts):
    """The counts come from an analysis that does its job: the cascade removes channels."""
    v = mlp_counts[20]
    assert v["plan"].anything_removed
    small, _ = rewrite(v["gm"], v["plan"])
    x = torch.randn(5, 16)
    torch.testing.assert_close(small(x), v["gm"](x), rtol=1e-5, atol=1e-6)
    before = sum(p.numel() for p in v["gm"].parameters())
    after = sum(p.numel() for p in small.parameters())
    assert after < before / 2, (before, after)


def test_vit_rule_calls_linear_in_depth():
    transformers = pytest.importorskip("transformers")
    counts = {}
    for d in (2, 8):
        torch.manual_seed(0)
        cfg = transformers.ViTConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32,
                                     num_hidden_layers=d, image_size=16, patch_size=8)
        model = transformers.ViTModel(cfg).eval()
        with torch.no_grad():
            for name, mod in model.named_modules():
                if name.endswith(("intermediate.dense", "mlp.fc1")):
                    mod.weight[:16] = 0
                    mod.bias[:16] = 0
        gm = capture(model, (torch.randn(2, 3, 16, 16),)).gm
        plan, rounds, calls, nodes = counted_analysis(gm)
        assert plan.anything_removed
        counts[d] = (calls, nodes)
        print(f"ViT depth {d}: {rounds} rounds, {calls} rule calls, {nodes} call_function nodes")
    (c2, n2), (c8, n8) = counts[2], counts[8]
    assert n8 <= 4.5 * n2, counts
    assert c8 <= 4.5 * c2, counts
    assert c8 <= 4 * n8, counts
