"""The pass pipeline in debug mode: after every pass the graph lints and its shapes re-derive
(fake tensors through the rewritten graph); a pass that breaks shapes is named."""
import pytest
import torch

from fxminimize.analysis import analyze
from fxminimize.capture import capture
from fxminimize.rewrite import rewrite
from shape_pins import zoo_cases


@pytest.mark.parametrize("case", [c for c in zoo_cases() if c[0].endswith("/rows")], ids=lambda c: c[0])
def test_every_pass_leaves_a_consistent_graph(case):
    name, model, example, masks = case
    gm = capture(model, example).gm
    plan = analyze(gm)
    small, stats = rewrite(gm, plan, check=True)
    rewritten = sum(v for k, v in stats.items() if k.endswith("_rewritten"))
    assert rewritten > 0 or not plan.anything_removed   # (a Linear may also narrow without a removal)
    torch.testing.assert_close(small(*example), model(*example), rtol=1e-4, atol=1e-5)


def test_a_pass_that_breaks_shapes_is_named(monkeypatch):
    from fxminimize.passes.ops.linear import LinearRule
    orig = LinearRule.rewrite

    def broken(self, ctx, n):
        changed = orig(self, ctx, n)
        w = n.args[1]
        t = ctx.tensor(w)
        ctx.replace_const(n, w, t[:, :-1])  # drop a column its input still has
        return changed

    monkeypatch.setattr(LinearRule, "rewrite", broken)
    from fxminimize.testing.zoo import ZOO, example_input
    gm = capture(ZOO["lenet_300_100"][0](), (example_input("lenet_300_100"),)).gm
    with pytest.raises(AssertionError, match="after pass ops( \\+ gather)?:"):
        rewrite(gm, analyze(gm), check=True)


def test_debug_mode_checks_after_the_gather_completes_the_ops_pass():
    """LeNet with unread pixels: the ops pass narrows fc1's columns, the gather pass narrows
    the input; the shape check runs once both ran (before, debug mode refused this model)."""
    from fxminimize.testing.zoo import ZOO, example_input
    torch.manual_seed(0)
    model = ZOO["lenet_300_100"][0]().eval()
    with torch.no_grad():
        model.fc1.weight[:, :100] = 0          # pixels 0..99 are read by nobody
    x = example_input("lenet_300_100")
    gm = capture(model, (x,)).gm
    plan = analyze(gm)
    small, stats = rewrite(gm, plan, check=True)
    assert stats["gathers_inserted"] >= 1
    torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-5)
