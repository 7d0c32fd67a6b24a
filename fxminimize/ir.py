"""Helpers over the canonical IR.

The canonical IR is a ``torch.fx.Graph`` in which

* user inputs are ``placeholder`` nodes (flattened; the pytree codegen restores structure),
* every weight, buffer and constant tensor is a ``get_attr`` node,
* every operation is a ``call_function`` node whose target is an ``aten`` overload (or an
  ``operator`` function on sizes / tuple items),
* every tensor-valued node carries ``meta["val"]`` (a FakeTensor) giving its shape.

Op rules read arguments through :func:`bind`, which maps positional and keyword arguments to
the schema's names and fills defaults, so a rule never depends on how the call was spelled.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch.fx.experimental.symbolic_shapes import is_concrete_int


def bind(node: fx.Node) -> dict[str, Any]:
    """Arguments of an aten call by schema name, defaults filled in."""
    target = node.target
    schema = getattr(target, "_schema", None)
    if schema is None:
        raise TypeError(f"{target} has no schema")
    out: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out


def arg_index(node: fx.Node, name: str) -> int:
    """Position of schema argument ``name`` of an aten call."""
    for i, arg in enumerate(node.target._schema.arguments):  # type: ignore[union-attr]
        if arg.name == name:
            return i
    raise KeyError(name)


def set_arg(node: fx.Node, name: str, value: Any) -> None:
    """Set schema argument ``name`` of ``node``, positionally if it was given positionally."""
    i = arg_index(node, name)
    if i < len(node.args):
        args = list(node.args)
        args[i] = value
        node.args = tuple(args)
    else:
        kwargs = dict(node.kwargs)
        kwargs[name] = value
        node.kwargs = kwargs


def fake(node: Any) -> torch.Tensor | None:
    """The FakeTensor recorded for a node, or None for non-tensor values."""
    if not isinstance(node, fx.Node):
        return None
    val = node.meta.get("val")
    return val if isinstance(val, torch.Tensor) else None


def shape(node: fx.Node) -> tuple:
    val = fake(node)
    if val is None:
        raise TypeError(f"node {node.name} is not a tensor")
    return tuple(val.shape)


def is_tensor(node: Any) -> bool:
    return fake(node) is not None


def static_int(x: Any) -> int | None:
    """``x`` as a plain int, or None when it is symbolic."""
    if isinstance(x, int):
        return x
    if isinstance(x, torch.SymInt) and is_concrete_int(x):
        return int(x)
    return None


def prod_static(dims) -> int | None:
    """Product of sizes, or None if any is symbolic."""
    p = 1
    for d in dims:
        v = static_int(d)
        if v is None:
            return None
        p *= v
    return p


def module_path(node: fx.Node) -> str:
    """Dotted name of the innermost nn.Module that produced ``node`` ('' if unknown)."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    path, _cls = list(stack.values())[-1]
    return path


def describe(node: fx.Node) -> str:
    """Human-readable name of a node: module path and op."""
    mod = module_path(node)
    op = getattr(node.target, "__name__", str(node.target))
    return f"{node.name} ({op}{' in ' + mod if mod else ''})"


def tensor_inputs(node: fx.Node) -> list[fx.Node]:
    """All tensor-valued nodes among the (possibly nested) arguments of ``node``."""
    found: list[fx.Node] = []

    def visit(a):
        if isinstance(a, fx.Node) and is_tensor(a):
            found.append(a)
        elif isinstance(a, (list, tuple)):
            for b in a:
                visit(b)
        elif isinstance(a, dict):
            for b in a.values():
                visit(b)

    visit(node.args)
    visit(node.kwargs)
    return found


def drop_unread_attributes(gm, graph=None) -> int:
    """Delete the parameters and buffers of ``gm`` that no ``get_attr`` of ``graph`` (default:
    ``gm.graph``) reads; returns how many went."""
    graph = gm.graph if graph is None else graph
    used = {str(n.target) for n in graph.nodes if n.op == "get_attr"}
    removed = 0
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            *path, leaf = name.split(".")
            mod = gm
            for p in path:
                mod = getattr(mod, p)
            delattr(mod, leaf)
            removed += 1
    return removed
