"""Test helpers: run original vs minimized on fresh random inputs and compare.

Stated fp32 tolerance for every numerics test: rtol=1e-4, atol=1e-5 (the same as
fxminimize.verify for float32 outputs of magnitude <= 1).
"""
from __future__ import annotations

import copy
import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import torch
from torch.utils import _pytree as pytree

import fxminimize

RTOL, ATOL = 1e-4, 1e-5


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert set(after) == set(before)
    for k in before:
        assert torch.equal(after[k], before[k]), k


def compare(model, small, inputs, rtol=RTOL, atol=ATOL):
    with torch.no_grad():
        ref = pytree.tree_leaves(model(*inputs))
        got = pytree.tree_leaves(small(*inputs))
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        if isinstance(r, torch.Tensor):
            scale = max(1.0, float(r.abs().max())) if r.numel() else 1.0
            torch.testing.assert_close(g, r, rtol=rtol, atol=atol * scale)


def minimize_and_check(model, example, *, batches=(1, 7), masks=None, seed=1):
    """Minimize at the example's batch, compare on random inputs at other batch sizes."""
    before = state(model)
    res = fxminimize.minimize(model, example, masks=masks)
    assert_unchanged(model, before)
    ref_model = model
    if masks:
        ref_model = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in ref_model.named_parameters():
                if name in masks:
                    p.mul_(masks[name].to(p.dtype))
    g = torch.Generator().manual_seed(seed)
    for b in batches:
        xs = tuple(torch.randn((b,) + tuple(t.shape[1:]), generator=g) for t in example)
        compare(ref_model, res.module, xs)
    return res


def shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _write_idx(path, arr):
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(str(path) + ".gz", "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def synthetic_fashion_mnist(directory, n_train=512, n_test=256):
    """Fashion-MNIST-shaped IDX files in ``directory``: class c lights up its own 4x4 block."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n)
        imgs = rng.integers(0, 40, size=(n, 28, 28))
        for i, c in enumerate(labels):          # class c lights up its own 4x4 block: learnable
            r, k = divmod(int(c), 5)
            imgs[i, 4 + 8 * r:8 + 8 * r, 2 + 5 * k:6 + 5 * k] = 250
        _write_idx(directory / f"{split}-images-idx3-ubyte", imgs)
        _write_idx(directory / f"{split}-labels-idx1-ubyte", labels)


TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools")


def run_tool(script, args, timeout=600):
    """Run ``tools/<script>`` with ``args`` in a subprocess (tests never import tools/); returns its
    stdout, and fails with its stderr when it exits non-zero."""
    out = subprocess.run([sys.executable, os.path.join(TOOLS, script), *args], capture_output=True, text=True,
                         timeout=timeout, env=dict(os.environ, PYTHONSAFEPATH="1"))
    assert out.returncode == 0, f"{script} exited {out.returncode}:\n{out.stderr[-3000:]}"
    return out.stdout
