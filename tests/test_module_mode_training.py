"""Training on a module-mode result with the user's own loop.

Gradients: on one batch, the gradient of every resized weight of the module-mode result equals
the gradient of the kept weights of the masked original (its original indices from
``report.module_mode['kept_index']``), and unresized weights have equal gradients
(rtol 1e-4, atol 1e-6·max(1, max|g|), float32). Three optimizer steps of a plain loop lower the
loss of the result.
"""
from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("transformers")

import fxminimize  # noqa: E402
from fxminimize.testing.zoo import ZOO, example_input  # noqa: E402
from module_models import ids, minimized  # noqa: E402


def _grads(model, loss_fn):
    model.zero_grad(set_to_none=True)
    loss_fn(model).backward()
    return {k: p.grad for k, p in model.named_parameters() if p.grad is not None}


def _lm_loss(x):
    return lambda m: m(x, labels=x).loss


def _check_grads(original, res, loss_fn):
    ref_model = copy.deepcopy(original)
    small = res.module
    g_ref, g = _grads(ref_model, loss_fn), _grads(small, loss_fn)
    index = res.report.module_mode["kept_index"]
    compared = resized = 0
    for k, gk in g.items():
        if k not in g_ref:
            continue  # a bias created by folding constants: no counterpart in the original
        r = g_ref[k]
        if k in index:
            idx = index[k]
            if any(i is None and a != b for i, a, b in zip(idx, r.shape, gk.shape)):
                continue
            for d, i in enumerate(idx):
                if i is not None:
                    r = r.index_select(d, torch.tensor(i))
            resized += 1
        elif r.shape != gk.shape:
            continue
        torch.testing.assert_close(gk, r, rtol=1e-4, atol=1e-6 * max(1.0, float(r.abs().max())))
        compared += 1
    return compared, resized


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_gradients_equal_kept_gradients(name):
    model, res = minimized(name)
    compared, resized = _check_grads(model, res, _lm_loss(ids(2, length=9, seed=7)))
    n = sum(1 for _ in res.module.parameters())
    assert resized >= 8 and compared >= n - 4, (compared, resized, n)


def test_gradients_cnn():
    name = "resnet_small"
    torch.manual_seed(0)
    model = ZOO[name][0]()
    with torch.no_grad():
        model.layer2.conv1.weight[[0, 5, 7]] = 0
        model.layer2.bn1.bias[[0, 5, 7]] = -1.0
    res = fxminimize.minimize(model, (example_input(name),), keep_modules=True)
    x, y = example_input(name, seed=3), torch.tensor([1, 4])
    compared, resized = _check_grads(model, res, lambda m: torch.nn.functional.cross_entropy(m(x), y))
    assert resized >= 3 and compared >= 20


@pytest.mark.parametrize("name", ["llama", "opt"])
def test_three_steps_of_a_plain_loop_lower_the_loss(name):
    _, res = minimized(name)
    small = copy.deepcopy(res.module).train()
    opt = torch.optim.AdamW(small.parameters(), lr=1e-2)
    x = ids(4, length=10, seed=11)
    torch.manual_seed(0)
    losses = []
    for _ in range(3):
        loss = small(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    small.eval()
    with torch.no_grad():
        final = float(small(x, labels=x).loss)
    assert final < losses[0], (losses, final)
