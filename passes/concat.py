"""Concatenation. On the channel dim nothing changes: the inputs arrive already shrunk and
the offsets follow (input i's kept channels land after the kept channels of inputs < i).
On another dim (e.g. a class token prepended along the sequence) constant inputs carry the
channel dim too and are sliced to the kept channels."""
from __future__ import annotations

from fxminimize.rules import lookup

from .base import nodes_of_kind, PassResult, get_tensor, index, replace_const


def run(gm, plan) -> PassResult:
    changed = 0
    for n in nodes_of_kind(gm, plan, "concat"):
        if not plan.tracked(n.name) or not plan.shrinks(n):
            continue
        ax = plan.axis[n.name]
        if ax == lookup(n.target).dim(n):
            continue  # on the channel dim the (already shrunk) inputs need no change
        keep = index(plan.kept(n))
        for x in list(n.args[0]):
            user, attr = n, x
            if getattr(x, "op", None) == "call_function" and getattr(x.args[0], "op", None) == "get_attr":
                user, attr = x, x.args[0]  # expand(constant): slice the constant, fix the size
                sizes = list(x.args[1])
                if isinstance(sizes[ax], int) and sizes[ax] != -1:
                    sizes[ax] = len(keep)
                    x.args = (x.args[0], sizes) + tuple(x.args[2:])
            if getattr(attr, "op", None) == "get_attr":
                t = get_tensor(gm, str(attr.target)).detach()
                replace_const(gm, user, attr, t.index_select(ax, keep))
                changed += 1
    return PassResult(gm, changed > 0, {"concat_consts_sliced": changed})
