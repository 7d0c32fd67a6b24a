"""Shared plumbing for the rewrite passes: results and constant replacement."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from fxminimize.ir import set_arg


@dataclass
class PassResult:
    """What a pass did: the module, whether it changed anything, and counters."""

    module: fx.GraphModule
    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)


def nodes_of_kind(gm: fx.GraphModule, plan, kind: str):
    """The call_function nodes whose rule has ``kind`` (a snapshot, safe to edit while iterating)."""
    return [n for n in gm.graph.nodes if n.op == "call_function" and plan.kind.get(n.name) == kind]


def plan_name(gm: fx.GraphModule, node: fx.Node) -> str:
    """The name the plan knows ``node`` by: a pass that replaces a node by a new one (the
    LayerNorm swap) records the old name in ``gm.meta['fxminimize_renamed']``."""
    return gm.meta.get("fxminimize_renamed", {}).get(node, node.name)


def get_tensor(gm: fx.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _assign(gm: fx.Module, target: str, value: torch.Tensor) -> None:
    *path, leaf = target.split(".")
    mod = gm
    for p in path:
        if not hasattr(mod, p):
            mod.add_module(p, nn.Module())
        mod = getattr(mod, p)
    if hasattr(mod, leaf):
        delattr(mod, leaf)
    if isinstance(value, nn.Parameter):
        mod.register_parameter(leaf, value)
    else:
        mod.register_buffer(leaf, value)


def _like(orig: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    new = new.to(dtype=orig.dtype).contiguous()
    if isinstance(orig, nn.Parameter):
        return nn.Parameter(new, requires_grad=orig.requires_grad)
    return new


def replace_const(gm: fx.GraphModule, user: fx.Node, attr: fx.Node, new: torch.Tensor) -> fx.Node:
    """Make ``user`` read ``new`` instead of the tensor behind get_attr ``attr``.

    A constant read by this user alone is replaced in place (its name is kept); a shared one
    gets a fresh attribute so the other readers are unaffected.
    """
    orig = get_tensor(gm, str(attr.target))
    value = _like(orig, new)
    if len(attr.users) == 1:
        _assign(gm, str(attr.target), value)
        return attr
    target = fresh_name(gm, str(attr.target))
    _assign(gm, target, value)
    origins = gm.meta.setdefault("fxminimize_origin", {})
    origins[target] = origins.get(str(attr.target), str(attr.target))
    with gm.graph.inserting_before(user):
        node = gm.graph.get_attr(target)
    user.replace_input_with(attr, node)
    return node


def add_const(gm: fx.GraphModule, before: fx.Node, name: str, value: torch.Tensor) -> fx.Node:
    """Add a new constant attribute and a get_attr node for it."""
    target = fresh_name(gm, name)
    _assign(gm, target, value)
    with gm.graph.inserting_before(before):
        return gm.graph.get_attr(target)


def fresh_name(gm: fx.Module, base: str) -> str:
    k = 1
    while True:
        cand = f"{base}_{k}"
        try:
            get_tensor(gm, cand)
        except AttributeError:
            return cand
        k += 1


def index(keep: Optional[np.ndarray]) -> Optional[torch.Tensor]:
    return None if keep is None else torch.from_numpy(np.array(keep, dtype=np.int64))


def add_fold(bias: Optional[torch.Tensor], fold: torch.Tensor) -> Optional[torch.Tensor]:
    """bias + fold; a missing bias is created only when the folded constant is nonzero."""
    if not (fold.numel() and bool(fold.abs().max() > 0)):
        return bias
    return fold if bias is None else bias + fold


def write_weight_and_bias(gm: fx.GraphModule, n: fx.Node, w: fx.Node, b: Optional[fx.Node],
                          weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
    """Make ``n`` read the shrunk ``weight`` and ``bias`` (adding a bias argument if it had none)."""
    orig = get_tensor(gm, str(w.target))
    replace_const(gm, n, w, weight)
    if b is not None:
        replace_const(gm, n, b, bias)
    elif bias is not None:
        node = add_const(gm, n, f"{w.target}_bias", nn.Parameter(bias.to(orig.dtype), requires_grad=orig.requires_grad))
        set_arg(n, "bias", node)


def fold_vector(plan, x: fx.Node, weight_sum: torch.Tensor, nz_rows: torch.Tensor) -> torch.Tensor:
    """Σ_{i removed from x} v_i · weight_sum[:, i] for the removed CONST inputs of a consumer.

    Removed inputs that are not CONST must have zero weight in every kept row (the analysis
    guarantees it; an internal error is raised otherwise, so no wrong model can come out).
    """
    rem = plan.removed(x)
    if len(rem) == 0:
        return torch.zeros(weight_sum.shape[0], dtype=torch.float64)
    cm = plan.const_mask[x.name][rem]
    cv = plan.const_val[x.name][rem]
    live_rem = torch.from_numpy(rem[~cm])
    if len(live_rem) and bool(nz_rows[:, live_rem].any()):
        raise AssertionError(f"internal: live channel of {x.name} removed but still read")
    ci = torch.from_numpy(rem[cm])
    return weight_sum[:, ci] @ torch.from_numpy(cv[cm])
