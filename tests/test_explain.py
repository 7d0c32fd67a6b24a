"""Report.explain: why a channel is kept or removed (fxminimize/explain.py), and `fxminimize explain`."""
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

import fxminimize
from fxminimize import explain as ex
from fxminimize.testing.zoo import ZOO, example_input, induce_dead_channels


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 12)
        self.fc3 = nn.Linear(12, 4)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


@pytest.fixture(scope="module")
def mlp():
    """fc1 channels 0-3: live but unused (fc2 ignores them); 4-5: constant relu(b) (rows zero,
    positive bias); fc2 channel 11: nothing reads it either (fc3 column zero)."""
    torch.manual_seed(0)
    m = MLP().eval()
    with torch.no_grad():
        m.fc2.weight[:, 0:4] = 0
        m.fc1.weight[4:6] = 0
        m.fc1.bias[4:6] = torch.tensor([0.5, 0.25])
        m.fc3.weight[:, 11] = 0
    res = fxminimize.minimize(m, (torch.randn(3, 8),))
    return m, res


@pytest.fixture(scope="module")
def barrier_mlp():
    torch.manual_seed(0)
    m = ZOO["unknown_op_mlp"][0]()
    induce_dead_channels(m, "fc1", [0, 1, 2])
    return fxminimize.minimize(m, (example_input("unknown_op_mlp"),))


def _node(res, module):
    return ex.resolve_node(res.plan, res.report.graph, module)


def test_removed_unused_channel(mlp):
    _, res = mlp
    e = res.report.explanation("fc1", 2)
    assert e.status == "removed" and e.const is None and e.steps == ()
    text = res.report.explain("fc1", 2)
    assert text.startswith("channel 2 of fc1 (")
    assert "is removed: nothing that is kept needs it" in text
    assert 2 not in res.plan.keep[_node(res, "fc1")]


def test_const_folded_channel(mlp):
    _, res = mlp
    name = _node(res, "fc1")
    assert bool(res.plan.const_mask[name][4]) and 4 not in res.plan.keep[name]
    e = res.report.explanation("fc1", 4)
    assert e.status == "removed" and e.const == pytest.approx(0.5)
    assert "is removed: its value is the constant 0.5 for every input, so it is folded" in str(e)
    # the relu after it is the same constant, also folded
    relu = [n for n in res.report.graph.get(_node(res, "fc2")).inputs][0]
    assert "constant 0.25" in res.report.explain(relu, 5)


def test_kept_because_used(mlp):
    _, res = mlp
    e = res.report.explanation("fc1", 7)
    assert e.status == "kept" and e.const is None
    kinds = [s.kind for s in e.steps]
    assert kinds[-1] == ex.OUTPUT
    assert ex.READ in kinds  # read by fc2, which is kept because fc3 (an output) needs it
    read = [s for s in e.steps if s.kind == ex.READ]
    assert read[0].other == _node(res, "fc2")
    assert read[-1].other == _node(res, "fc3")
    lines = str(e).splitlines()
    assert lines[0] == f"channel 7 of fc1 ({_node(res, 'fc1')}, linear) is kept because:"
    assert lines[-1].endswith("is a model output")
    assert len(lines) == 1 + len(e.steps)


def test_unused_because_reader_removed(mlp):
    _, res = mlp
    assert "nothing that is kept needs it" in res.report.explain("fc2", 11)


def test_kept_because_barrier(barrier_mlp):
    res = barrier_mlp
    # channel 0 of fc1 is dead (constant 0) but the cumsum after it has no rule
    e = res.report.explanation("fc1", 0)
    assert e.status == "kept" and e.const == 0.0
    assert e.terminal.kind == ex.BARRIER
    assert e.terminal.other == res.plan.barriers[0].node
    assert "cumsum" in e.terminal.reason
    text = str(e)
    assert "is kept (although its value is the constant 0) because:" in text
    assert "a barrier (no rule for op cumsum" in text and "all its input channels are kept" in text


def test_layer_keeps_one_channel():
    torch.manual_seed(0)
    m = MLP().eval()
    with torch.no_grad():
        m.fc2.weight.zero_()  # every fc2 output is a constant: fc2 would vanish
    res = fxminimize.minimize(m, (torch.randn(3, 8),))
    name = _node(res, "fc2")
    assert list(res.plan.keep[name]) == [0]
    e = res.report.explanation("fc2", 0)
    assert e.status == "kept" and e.terminal.kind == ex.SELF
    assert "would lose every channel, and a layer keeps at least one: channel 0 is that one" in str(e)
    assert res.report.explanation("fc2", 1).status == "removed"


def test_lookup_and_errors(mlp):
    _, res = mlp
    name = _node(res, "fc3")
    assert res.report.explain("fc3", 1) == res.report.explain(name, 1)
    with pytest.raises(KeyError, match="did you mean"):
        res.report.explain("fc33", 0)
    with pytest.raises(ValueError, match="out of range"):
        res.report.explain("fc3", 4)
    with pytest.raises(ValueError, match="out of range"):
        res.report.explain("fc3", -1)


def _check_all(res):
    """Every channel: a removed one has no chain; a kept one ends in a terminal reason, and each
    link agrees with the plan (COUPLED: same unit; READ: the consumer recorded in required_by)."""
    plan, prov = res.plan, res.report._provenance()
    for name in plan.size:
        keep = set(plan.keep[name].tolist())
        for c in range(plan.size[name]):
            e = ex.explain(plan, name, c, res.report.graph, provenance=prov)
            assert (e.status == "kept") == (c in keep)
            if c not in keep:
                assert e.steps == ()
                continue
            assert e.terminal.kind in ex.TERMINAL, str(e)
            for s in e.steps:
                if s.kind == ex.COUPLED:
                    assert plan.unit_of[s.node][s.channel] == plan.unit_of[s.other][s.other_channel]
                    assert s.other_channel in set(plan.keep[s.other].tolist())
                elif s.kind == ex.READ:
                    assert plan.node_names[plan.required_by[s.node][s.channel]] == s.other
                    assert s.other_channel in set(plan.keep[s.other].tolist())
                elif s.kind == ex.OUTPUT:
                    assert plan.node_names[plan.required_by[s.node][s.channel]] == "output"


@pytest.mark.parametrize("demo", ["resnet_small", "convnext_small"])
def test_every_channel_of_a_demo_model_is_explained(demo):
    from fxminimize.demo import DEMOS
    from fxminimize.testing.zoo import example_input as inp

    torch.manual_seed(0)
    build, zoo = DEMOS[demo]
    model, masks = build()
    res = fxminimize.minimize(model, (inp(zoo),), masks=masks)
    assert res.plan.anything_removed
    _check_all(res)


def test_every_channel_with_a_barrier(barrier_mlp):
    _check_all(barrier_mlp)


def test_cli_explain(tmp_path):
    dot = tmp_path / "g.dot"
    out = subprocess.run([sys.executable, "-m", "fxminimize", "explain", "fxminimize.testing.zoo:unknown_op_mlp",
                          "--input-shape", "2,20", "--dot", str(dot), "fc1", "3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("channel 3 of fc1 (linear, linear) is kept because:")
    assert "a barrier (no rule for op cumsum" in out.stdout
    assert dot.read_text().startswith("digraph fxminimize {")
    bad = subprocess.run([sys.executable, "-m", "fxminimize", "explain", "unknown_op_mlp", "fc9", "0"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no node or module named 'fc9'" in bad.stderr
