"""The rewrite context the passes share, and the helpers rewrites use to edit the working copy.

:class:`RewriteContext` is the only state that crosses passes, and it is explicit: the working
GraphModule, the immutable :class:`~fxminimize.analysis.Plan`, and one side table, ``origin``
(fresh attribute → the original attribute it was sliced from, read by the ``tie`` pass), the
names of gathers a rewrite made the identity (read by ``cleanup``), plus
the counters every pass adds to (they reach ``Report.pass_stats``). Nothing is kept in
graph module metadata.

A rewrite never mutates a tensor: it replaces it (:meth:`RewriteContext.replace_const`), in place
under the same name when the ``get_attr`` has one user, otherwise under a fresh name so the
other readers are unaffected. Every new tensor keeps its original's device and dtype.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from fxminimize.ir import set_arg

from .registry import lookup
from .rule import Rule


@dataclass
class RewriteContext:
    gm: fx.GraphModule
    plan: Any  # fxminimize.analysis.Plan (not imported: the analysis imports this package)
    origin: dict = field(default_factory=dict)
    stats: Counter = field(default_factory=Counter)
    done: list = field(default_factory=list)  # names of the passes that ran, in order
    #: False in module mode: rewrites may resize tensors but must not add ops that the user's
    #: own modules cannot express (a Linear's gather of its kept CONST columns)
    structural: bool = True
    #: gathers a rewrite made the identity (names): ``cleanup`` makes their readers read their input
    identity_gathers: set = field(default_factory=set)

    # ------------------------------------------------------------------ reading
    def rule_of(self, n: fx.Node) -> Rule:
        """The rule the analysis used for ``n`` (by name: rewrites may change targets)."""
        r = self.plan.rules.get(n.name)
        return r if r is not None else lookup(n.target)

    def tensor(self, attr: fx.Node | str) -> torch.Tensor:
        obj: Any = self.gm
        for part in str(getattr(attr, "target", attr)).split("."):
            obj = getattr(obj, part)
        return obj

    def index(self, keep: Optional[np.ndarray], like: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """Kept indices as an int64 tensor on ``like``'s device (CPU when ``like`` is None)."""
        if keep is None:
            return None
        t = torch.from_numpy(np.array(keep, dtype=np.int64))
        return t if like is None else t.to(like.device)

    # ------------------------------------------------------------------ writing
    def _assign(self, target: str, value: torch.Tensor) -> None:
        *path, leaf = target.split(".")
        mod = self.gm
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

    def fresh_name(self, base: str) -> str:
        k = 1
        while True:
            cand = f"{base}_{k}"
            try:
                self.tensor(cand)
            except AttributeError:
                return cand
            k += 1

    def replace_const(self, user: fx.Node, attr: fx.Node, new: torch.Tensor) -> fx.Node:
        """Make ``user`` read ``new`` instead of the tensor behind get_attr ``attr``."""
        orig = self.tensor(attr)
        value = _like(orig, new)
        if len(attr.users) == 1:
            self._assign(str(attr.target), value)
            return attr
        target = self.fresh_name(str(attr.target))
        self._assign(target, value)
        self.origin[target] = self.origin.get(str(attr.target), str(attr.target))
        with self.gm.graph.inserting_before(user):
            node = self.gm.graph.get_attr(target)
        user.replace_input_with(attr, node)
        return node

    def add_const(self, before: fx.Node, name: str, value: torch.Tensor) -> fx.Node:
        """Add a new constant attribute and a get_attr node for it."""
        target = self.fresh_name(name)
        self._assign(target, value)
        with self.gm.graph.inserting_before(before):
            return self.gm.graph.get_attr(target)

    def write_weight_and_bias(self, n: fx.Node, w: fx.Node, b: Optional[fx.Node],
                              weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
        """Make ``n`` read the shrunk ``weight`` and ``bias`` (adding a bias argument if it had none)."""
        orig = self.tensor(w)
        self.replace_const(n, w, weight)
        if b is not None:
            self.replace_const(n, b, bias)
        elif bias is not None:
            node = self.add_const(n, f"{w.target}_bias",
                                  nn.Parameter(bias.to(device=orig.device, dtype=orig.dtype),
                                               requires_grad=orig.requires_grad))
            set_arg(n, "bias", node)


def _like(orig: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    new = new.to(device=orig.device, dtype=orig.dtype).contiguous()
    if isinstance(orig, nn.Parameter):
        return nn.Parameter(new, requires_grad=orig.requires_grad)
    return new


def add_fold(bias: Optional[torch.Tensor], fold: torch.Tensor) -> Optional[torch.Tensor]:
    """bias + fold; a missing bias is created only when the folded constant is nonzero."""
    if not (fold.numel() and bool(fold.abs().max() > 0)):
        return bias
    return fold if bias is None else bias + fold.to(bias.device)


def take(W: torch.Tensor, dim: int, idx: Optional[torch.Tensor]) -> torch.Tensor:
    """``W.index_select(dim, idx)``, or ``W`` itself when ``idx`` keeps every index (kept
    indices are sorted, so that is the identity): no copy of what is kept whole."""
    if idx is None or len(idx) == W.shape[dim]:
        return W
    return W.index_select(dim, idx)


def fold_removed_columns(plan, x: fx.Node, W: torch.Tensor, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`fold_vector` for a dense consumer whose input channels are W's dim 1 (a Linear's
    (out, in) weight, a conv kernel (out, in, *k)), over its kept ``rows`` (all when None).
    Only the removed columns that matter are read: the LIVE ones (the check that no kept row
    reads them) and the CONST ones with a nonzero value (summed over the kernel window); a
    removed ZERO column adds nothing and is not copied."""
    rem = plan.removed(x)
    nrows = W.shape[0] if rows is None else len(rows)
    zero = torch.zeros(nrows, dtype=torch.float64, device=W.device)
    if len(rem) == 0:
        return zero
    cm, cv = plan.const_mask[x.name][rem], plan.const_val[x.name][rem]
    read = ~cm | (cv != 0)
    if not read.any():
        return zero
    sub = rem[read]
    Wm = take(W, 0, rows).index_select(1, torch.from_numpy(sub).to(W.device))
    spatial = tuple(range(2, W.dim()))
    nz = (Wm != 0).any(dim=spatial) if spatial else Wm != 0
    live = torch.from_numpy(np.nonzero(~cm[read])[0]).to(W.device)
    if len(live) and bool(nz[:, live].any()):
        raise AssertionError(f"internal: live channel of {x.name} removed but still read")
    const = torch.from_numpy(np.nonzero(cm[read])[0]).to(W.device)
    Wc = Wm.index_select(1, const).double()
    wsum = Wc.sum(dim=spatial) if spatial else Wc
    return wsum @ torch.from_numpy(cv[cm & read]).to(W.device)


def fold_vector(plan, x: fx.Node, weight_sum: torch.Tensor, nz_rows: torch.Tensor) -> torch.Tensor:
    """Σ_{i removed from x} v_i · weight_sum[:, i] for the removed CONST inputs of a consumer.

    Removed inputs that are not CONST must have zero weight in every kept row (the analysis
    guarantees it; an internal error is raised otherwise, so no wrong model can come out).
    """
    rem = plan.removed(x)
    dev = weight_sum.device
    if len(rem) == 0:
        return torch.zeros(weight_sum.shape[0], dtype=torch.float64, device=dev)
    cm = plan.const_mask[x.name][rem]
    cv = plan.const_val[x.name][rem]
    live_rem = torch.from_numpy(rem[~cm]).to(dev)
    if len(live_rem) and bool(nz_rows[:, live_rem].any()):
        raise AssertionError(f"internal: live channel of {x.name} removed but still read")
    ci = torch.from_numpy(rem[cm]).to(dev)
    return weight_sum[:, ci] @ torch.from_numpy(cv[cm]).to(dev)
