"""torch.compile(model, backend="fxminimize"): equal to eager on a CNN and a transformer, with and
without a forced graph break; fewer parameters are used; training mode, enabled autograd and
graphs with nothing to remove pass through unchanged with a logged reason; weights changed after
compiling fall back to the original graph; the result can be handed on to inductor.

Tolerance: tests/helpers.py (rtol 1e-4, atol 1e-5·max(1, max|y|)), as fxminimize.verify."""
from __future__ import annotations

import logging
from importlib.metadata import entry_points

import pytest
import torch
import torch.nn as nn

from fxminimize import compile_backend as cb
from fxminimize.testing.zoo import ZOO, example_input, induce_dead_channels
from helpers import compare

BACKEND = cb.backend


@pytest.fixture(autouse=True)
def _fresh():
    torch._dynamo.reset()
    cb.clear_history()
    yield
    torch._dynamo.reset()


def cnn():
    torch.manual_seed(0)
    m = ZOO["resnet_small"][0]()
    induce_dead_channels(m, "layer2.conv1", [0, 5, 7])
    induce_dead_channels(m, "layer3.conv1", list(range(0, 64, 2)))
    return m, example_input("resnet_small")


def gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64,
                                  use_cache=False)
    m = transformers.GPT2Model(cfg).eval()
    with torch.no_grad():
        for blk in m.h:                       # MLP hidden channels 0..63 dead (Conv1D: (in, out))
            blk.mlp.c_fc.weight[:, :64] = 0
            blk.mlp.c_fc.bias[:64] = 0
    return m, torch.randint(0, 100, (2, 8))


def _break_after(module: nn.Module):
    """Force a graph break right after ``module`` runs (a forward hook dynamo cannot trace through)."""
    return module.register_forward_hook(lambda mod, inp, out: torch._dynamo.graph_break())


def _check(model, x, compiled, batches=()):
    with torch.no_grad():
        compare(model, compiled, (x,))
        for b in batches:
            xb = torch.randn((b,) + tuple(x.shape[1:])) if x.is_floating_point() else \
                torch.randint(0, 100, (b,) + tuple(x.shape[1:]))
            compare(model, compiled, (xb,))


@pytest.mark.parametrize("brk", [False, True], ids=["one-graph", "graph-break"])
def test_cnn_equals_eager_and_uses_fewer_parameters(brk):
    model, x = cnn()
    if brk:
        _break_after(model.layer2)
    compiled = torch.compile(model, backend=BACKEND)
    _check(model, x, compiled, batches=(5,))
    recs = cb.history()
    first = [r for r in recs if r.status == "minimized"]
    assert len(first) >= (2 if brk else 1), [str(r) for r in recs]
    for r in first:
        assert r.params_after < r.params_before, str(r)
    # the parameters that actually run are smaller: layer3.conv1 lost half its filters
    shapes = {k: tuple(v.shape) for r in first for k, v in r.result.module.state_dict().items()}
    assert shapes["layer3.conv1.weight"] == (32, 32, 3, 3)
    total_before = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    assert sum(r.params_after for r in first[:2 if brk else 1]) < total_before


@pytest.mark.parametrize("brk", [False, True], ids=["one-graph", "graph-break"])
def test_transformer_equals_eager_and_uses_fewer_parameters(brk):
    model, x = gpt2()
    if brk:
        _break_after(model.h[0])
    compiled = torch.compile(model, backend=BACKEND)
    _check(model, x, compiled)
    mins = [r for r in cb.history() if r.status == "minimized"]
    assert mins, [str(r) for r in cb.history()]
    assert all(r.params_after < r.params_before for r in mins)
    shapes = {k: tuple(v.shape) for r in mins for k, v in r.result.module.state_dict().items()}
    fc = {k: v for k, v in shapes.items() if k.endswith("mlp.c_fc.weight")}
    assert fc and all(v == (32, 64) for v in fc.values()), fc
    if brk:
        assert len(cb.history()) >= 2


def test_training_and_autograd_pass_through_with_reason(caplog):
    model, x = cnn()
    model.train()
    compiled = torch.compile(model, backend=BACKEND)
    with caplog.at_level(logging.INFO, logger="fxminimize.compile_backend"):
        y = compiled(x)                     # grad enabled, BN in training mode
    ref_model, _ = cnn()
    ref_model.train()
    torch.testing.assert_close(y, ref_model(x))
    assert cb.history()[0].status == "passthrough"
    assert "autograd is enabled" in cb.history()[0].reason
    assert "passed through unchanged" in caplog.text
    torch._dynamo.reset()
    cb.clear_history()
    model.train()
    with torch.no_grad():                  # no grad, but BN still in training mode
        y = torch.compile(model, backend=BACKEND)(x)
    assert cb.history()[0].status == "passthrough" and "training mode" in cb.history()[0].reason


def test_nothing_to_remove_passes_through():
    torch.manual_seed(0)
    model = ZOO["lenet_300_100"][0]()
    x = example_input("lenet_300_100")
    with torch.no_grad():
        compare(model, torch.compile(model, backend=BACKEND), (x,))
    assert cb.history()[0].status == "passthrough"
    assert cb.history()[0].reason == "nothing to remove"


def test_weights_changed_after_compiling_fall_back():
    model, x = cnn()
    compiled = torch.compile(model, backend=BACKEND)
    with torch.no_grad():
        compiled(x)
        assert cb.history()[0].status == "minimized"
        model.layer2.conv1.weight[0] += 1.0   # revive a removed channel, in place
        compare(model, compiled, (x,))       # minimized again for the new weights, still exact
    assert cb.history()[0].variants == 2


def test_then_inductor():
    pytest.importorskip("torch._inductor")
    torch.manual_seed(0)
    model = ZOO["lenet_300_100"][0]()
    induce_dead_channels(model, "fc1", list(range(100)))
    x = example_input("lenet_300_100")
    compiled = torch.compile(model, backend=BACKEND, options={"then": "inductor"})
    try:
        with torch.no_grad():
            compare(model, compiled, (x,))
    except Exception as exc:  # noqa: BLE001 - inductor needs a C++ compiler
        if "compiler" in str(exc).lower() or "cpp" in str(exc).lower():
            pytest.skip(f"inductor cannot compile here: {str(exc).splitlines()[0]}")
        raise
    rec = cb.history()[0]
    assert rec.status == "minimized" and rec.then == "inductor"
    assert rec.params_after < rec.params_before


def test_unknown_option_is_an_error():
    model, x = cnn()
    with pytest.raises(Exception, match="unknown options"):
        with torch.no_grad():
            torch.compile(model, backend=BACKEND, options={"thne": "inductor"})(x)


def _entry_point_installed() -> bool:
    return "fxminimize" in entry_points(group="torch_dynamo_backends").names


@pytest.mark.skipif(not _entry_point_installed(),
                    reason="the torch_dynamo_backends entry point exists only once the package is "
                           "installed (`make venv`/`pip install .`; CI's `make test` does this)")
def test_registered_by_name():
    model, x = cnn()
    compiled = torch.compile(model, backend="fxminimize")
    with torch.no_grad():
        compare(model, compiled, (x,))
    assert cb.history() and cb.history()[0].status == "minimized"
