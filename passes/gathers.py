"""Fold chains of constant-index gathers (``index_select`` of an ``index_select`` along the same
dim) into one gather: :func:`compose_gathers`. Squeeze-Release runs it after every squeeze.
:func:`drop_identity_gathers` (run by the ``cleanup`` pass) removes the gathers whose index a
rewrite made 0 … n − 1 over the whole dim (what re-minimizing a minimized model can leave)."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["compose_gathers", "drop_identity_gathers", "is_index_select"]


def is_index_select(n) -> bool:
    return n.op == "call_function" and n.target in (torch.ops.aten.index_select.default, torch.index_select) \
        and len(n.args) == 3 and not n.kwargs and getattr(n.args[2], "op", None) == "get_attr"


def _owner(root: nn.Module, target: str):
    mod, _, name = target.rpartition(".")
    return (root.get_submodule(mod) if mod else root), name


def compose_gathers(module: nn.Module) -> int:
    """Fold chains of ``index_select`` along the same dim with constant indices into one.

    Each Squeeze-Release cycle that removes input channels (FC: pixels) makes the minimized model
    gather them with an ``index_select`` whose int64 index is a stored buffer; the next cycle
    gathers from that gather. ``index_select(index_select(x, d, a), d, b) == index_select(x, d,
    a[b])`` exactly, so the chain is replaced by one gather and the deployable size counts one
    index instead of one per cycle. Works in place on a ``torch.fx.GraphModule`` (anything else is
    left alone); returns the number of gathers removed."""
    import torch.fx as fx

    if not isinstance(module, fx.GraphModule):
        return 0
    graph, removed = module.graph, 0
    changed = True
    while changed:
        changed = False
        for outer in list(graph.nodes):
            if not is_index_select(outer):
                continue
            inner = outer.args[0]
            if not (isinstance(inner, fx.Node) and is_index_select(inner) and inner.args[1] == outer.args[1]
                    and len(inner.users) == 1):
                continue
            a_node, b_node = inner.args[2], outer.args[2]
            a_owner, a_name = _owner(module, a_node.target)
            b_owner, b_name = _owner(module, b_node.target)
            a, b = getattr(a_owner, a_name), getattr(b_owner, b_name)
            composed = a[b].clone()
            if b_name in b_owner._buffers:
                b_owner._buffers[b_name] = composed
            else:
                setattr(b_owner, b_name, composed)
            outer.args = (inner.args[0], outer.args[1], b_node)
            graph.erase_node(inner)
            if not a_node.users:
                graph.erase_node(a_node)
                if a_name in a_owner._buffers:
                    del a_owner._buffers[a_name]
                else:
                    delattr(a_owner, a_name)
            removed += 1
            changed = True
    if removed:
        graph.lint()
        module.recompile()
    return removed



def drop_identity_gathers(gm, names) -> int:
    """Make the readers of each gather named in ``names`` (its index made the identity by its
    rewrite, :class:`~fxminimize.passes.ops.index.IndexSelectRule`) read the gather's input, the
    same tensor; returns how many."""
    dropped = 0
    for n in list(gm.graph.nodes):
        if n.name in names and is_index_select(n):
            n.replace_all_uses_with(n.args[0])
            dropped += 1
    return dropped
