"""Shared helpers for the per-op-module unit tests (tests/ops/test_<family>.py).

Each test builds a graph around ONE op of the family, with channels of the producer made ZERO
or CONST, and checks (a) the analysis' verdict on the op's node (which channels are kept,
which are CONST and with what value), (b) the rewritten node's shapes, and (c) numerics
against the masked original with ``torch.testing.assert_close`` (rtol 1e-4, atol 1e-5 fp32,
at batch 1 and 3 after minimizing at batch 2; tests/helpers.py).
"""
from __future__ import annotations

import numpy as np
import torch

import fxminimize
from helpers import minimize_and_check, shapes  # noqa: F401  (re-exported for the tests)


def node_of(plan, target_name: str, k: int = 0) -> str:
    """The k-th node name in the plan whose name starts with ``target_name``."""
    names = [n for n in plan.node_names if n == target_name or n.startswith(target_name + "_")]
    names.sort(key=lambda s: (len(s), s))
    return names[k]


def kept(plan, name: str) -> list:
    return [int(i) for i in plan.kept(name)]


def const(plan, name: str) -> tuple[np.ndarray, np.ndarray]:
    return plan.const_mask[name], plan.const_val[name]


def dead(layer, rows, bias=None):
    """Zero ``rows`` of a Linear/conv; their bias is set to ``bias`` (None: left as it is)."""
    with torch.no_grad():
        layer.weight[rows] = 0
        if bias is not None and layer.bias is not None:
            layer.bias[rows] = bias
