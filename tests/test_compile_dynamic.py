"""torch.compile(model, backend="fxminimize") at every shape (issue 17, item 5): once dynamo
marks the sequence dim dynamic it recompiles the graph with symbolic sizes, and the backend then
minimizes it with the same dims symbolic, so the minimized graph runs at every length; a dim
that the minimized graph needs static falls back to the original graph, and the log names it.

Tolerance: tests/helpers.py (rtol 1e-4, atol 1e-5·max(1, max|y|)), as fxminimize.verify."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.fx as fx

import fxminimize
from fxminimize import compile_backend as cb
from fxminimize.compile_graph import Runner
from helpers import compare

LENGTHS = (16, 8, 12, 16, 25, 8)   # the 128, 64, 96, 128, 200, 64, scaled down for time


@pytest.fixture(autouse=True)
def _fresh():
    torch._dynamo.reset()
    cb.clear_history()
    yield
    torch._dynamo.reset()


def gpt2_lm():
    """A small GPT-2 LM with trained-looking weights (nonzero biases, LN scales off 1) and half
    of every MLP's hidden channels dead."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64,
                                  use_cache=False, bos_token_id=0, eos_token_id=0)
    m = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif ".ln_" in name and name.endswith("weight"):
                p.copy_(1 + torch.randn_like(p) * 0.1)
        for blk in m.transformer.h:          # MLP hidden channels 0..63 dead (Conv1D: (in, out))
            blk.mlp.c_fc.weight[:, :64] = 0
            blk.mlp.c_fc.bias[:64] = 0
    return m


def _run_lengths(model, compiled):
    """Call at every length; after each call exactly one more call ran a minimized graph."""
    with torch.no_grad():
        for i, length in enumerate(LENGTHS):
            x = torch.randint(0, 100, (2, length))
            compare(model, compiled, (x,))
            assert sum(r.minimized_calls for r in cb.history()) == i + 1, [str(r) for r in cb.history()]
            assert sum(r.fallbacks for r in cb.history()) == 0, [list(r.calls) for r in cb.history()]
    calls = sorted(c for r in cb.history() for c in r.calls)
    assert calls == sorted(((((2, n),), "minimized")) for n in LENGTHS)
    mins = [r for r in cb.history() if r.status == "minimized"]
    assert mins and all(r.params_after < r.params_before for r in mins)
    # the graph dynamo recompiled with a symbolic length was minimized with that dim symbolic
    assert any(any(n.startswith("accepts other sizes of: input 0 dim 1") for n in r.result.report.notes)
               for r in mins), [r.result.report.notes for r in mins]
    return mins


def test_lm_runs_the_minimized_graph_at_every_length():
    model = gpt2_lm()
    mins = _run_lengths(model, torch.compile(model, backend=cb.backend))
    fc = {k: tuple(v.shape) for r in mins for k, v in r.result.module.state_dict().items()
          if k.endswith("mlp.c_fc.weight")}
    assert fc and all(v == (32, 64) for v in fc.values()), fc     # what was removed: 64 of 128


def test_then_backend_gets_one_dynamic_graph_for_every_length():
    """With a next backend, the dynamic minimized graph is handed on once, with symbolic sizes,
    not once per length."""
    handed = []

    def then(gm: fx.GraphModule, example_inputs):
        vals = [n.meta.get("example_value", n.meta.get("val")) for n in gm.graph.nodes if n.op == "placeholder"]
        # the token ids (weights may be placeholders too when dynamo traces the handed-on graph)
        handed.append([tuple(str(s) for s in v.shape) for v in vals
                       if isinstance(v, torch.Tensor) and not v.is_floating_point()])
        return gm.forward

    model = gpt2_lm()
    _run_lengths(model, torch.compile(model, backend=cb.backend, options={"then": then}))
    # one static graph (the first length) and one dynamic graph serving the five other calls
    assert len(handed) == 2, handed
    assert handed[0] == [("2", "16")]
    assert len(handed[1]) == 1 and not handed[1][0][1].isdigit(), handed     # the length reaches the next backend symbolic


def _mlp_on_tokens():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    with torch.no_grad():
        m[0].bias.copy_(torch.randn(16) * 0.1)
        m[0].weight[:5] = 0
        m[0].bias[:5] = 0
    return m


def test_a_dim_the_minimized_graph_needs_falls_back_and_the_log_names_it(caplog):
    """A minimized graph captured with the example's sizes (here: dynamic_sizes=False, as when
    the plan needs the size) runs other sizes of that dim through the original graph; the
    warning at compile time names the input and dim."""
    m = _mlp_on_tokens()
    x = torch.randn(2, 6, 8)
    res = fxminimize.minimize(m, (x,), dynamic_sizes=False)
    assert tuple(res.module.state_dict()["0.weight"].shape) == (11, 8)
    with caplog.at_level(logging.WARNING, logger="fxminimize.compile_backend"):
        run = Runner(3, res.module, [x], [{0, 1}], None, None, "why not")
    assert "graph 3: the minimized graph needs the size of input 0 dim 1 (compiled at 6)" in caplog.text
    assert "(why not)" in caplog.text
    with torch.no_grad():
        for b in (2, 5):                              # the batch is free
            xb = torch.randn(b, 6, 8)
            out, why = run([xb])
            assert why is None
            torch.testing.assert_close(out, m(xb), rtol=1e-4, atol=1e-5)
        out, why = run([torch.randn(2, 7, 8)])        # the length is not
    assert out is None and why.startswith("input 0 dim 1 is 7, the minimized graph needs 6")


def test_a_minimized_graph_with_free_dims_runs_every_size():
    m = _mlp_on_tokens()
    x = torch.randn(2, 6, 8)
    res = fxminimize.minimize(m, (x,))
    run = Runner(0, res.module, [x], [{0, 1}], None, None)
    assert run.fixed == [[2]]
    with torch.no_grad():
        for shape in ((2, 7, 8), (5, 1, 8), (1, 30, 8)):
            xs = torch.randn(shape)
            out, why = run([xs])
            assert why is None
            torch.testing.assert_close(out, m(xs), rtol=1e-4, atol=1e-5)
        assert run([torch.randn(2, 6)])[1] == "input 0 has 2 dims, the minimized graph takes 3"
