"""Stored elements of a model: the one element counter fxminimize uses.

:func:`stored_elements` counts every element a model stores, zeros included:

- parameters, buffers and tensor constants (tensor attributes of a ``GraphModule`` that are
  neither, e.g. ``_tensor_constant0``, or the lifted constants of ``ExportedProgram.module()``),
  each storage once: tensors sharing a storage (tied weights, views) count the distinct
  elements they cover;
- the scalars a compensated LayerNorm keeps: a graph node calling
  ``torch.ops.fxminimize.compensated_layer_norm(x, count, s1, s2, weight, bias, eps, dim)``
  stores C = ``count``, s1 and s2 as literal arguments (:data:`COMPENSATED_SCALARS` = 3 per
  node; ``eps`` and ``dim`` are hyperparameters the original LayerNorm has too, not counted). A
  :class:`~fxminimize.compensated.CompensatedLayerNorm` module counts the same 3,
  a :class:`~fxminimize.compensated.CompensatedRMSNorm` module 2 (``count``, ``s2``).

Used for ``Report.params_before``/``params_after``, :func:`fxminimize.masks.count_stored`
(and so ``fxminimize.training.measure.deployable_size``) and the ``torch.compile`` backend's counts.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.fx as fx
import torch.nn as nn

from .compensated import COMPENSATED_LAYER_NORM, CompensatedLayerNorm, CompensatedRMSNorm

__all__ = ["stored_elements", "tensor_elements", "graph_scalar_elements", "COMPENSATED_SCALARS"]

#: literal scalars stored per compensated LayerNorm node or module: count, s1, s2
COMPENSATED_SCALARS = 3
#: per CompensatedRMSNorm module: count, s2
COMPENSATED_RMS_SCALARS = 2


def _storage_key(t: torch.Tensor):
    """Identity of ``t``'s storage; tensors without real storage (meta, fake) count by identity."""
    try:
        st = t.untyped_storage()
        ptr = st.data_ptr()
    except (RuntimeError, NotImplementedError):
        return ("id", id(t)), None
    if ptr == 0 or t.device.type == "meta":
        return ("id", id(t)), None
    return (t.device, ptr), st


def _covered(views) -> int:
    """Distinct storage elements covered by several views of one storage."""
    if len({v.element_size() for v in views}) > 1:   # one storage read as different dtypes
        return max(v.numel() for v in views)
    layouts = {(tuple(v.shape), tuple(v.stride()), v.storage_offset()) for v in views if v.numel()}
    if len(layouts) <= 1:
        return max(v.numel() for v in views)
    end = max(off + sum((n - 1) * st for n, st in zip(shape, stride)) + 1 for shape, stride, off in layouts)
    covered = torch.zeros(end, dtype=torch.bool)
    base = torch.arange(end)
    for shape, stride, off in layouts:
        covered[base.as_strided(shape, stride, off)] = True
    return int(covered.sum())


def tensor_elements(tensors: Iterable[torch.Tensor]) -> int:
    """Elements stored by ``tensors``, each storage once (the same tensor twice, tied weights and
    overlapping views count their distinct elements)."""
    groups: dict = {}
    for t in tensors:
        if t is None:
            continue
        key, _ = _storage_key(t)
        groups.setdefault(key, []).append(t)
    return sum(_covered(views) if len(views) > 1 else views[0].numel() for views in groups.values())


def _is_compensated_layer_norm(target) -> bool:
    return target is COMPENSATED_LAYER_NORM or getattr(target, "_overloadpacket", None) is \
        COMPENSATED_LAYER_NORM._overloadpacket or target is COMPENSATED_LAYER_NORM._overloadpacket


def graph_scalar_elements(graph) -> int:
    """Scalars kept as literals in ``graph`` (an ``fx.Graph`` or ``GraphModule``): 3 per
    compensated LayerNorm node (count, s1, s2)."""
    graph = graph.graph if isinstance(graph, fx.GraphModule) else graph
    return sum(COMPENSATED_SCALARS for n in graph.nodes
               if n.op == "call_function" and _is_compensated_layer_norm(n.target))


def _module_tensors(module: nn.Module):
    seen_params = {id(t) for t in module.parameters()} | {id(t) for t in module.buffers()}
    yield from module.parameters()
    yield from module.buffers()
    for m in module.modules():
        if isinstance(m, fx.GraphModule):
            for n in m.graph.nodes:
                if n.op != "get_attr":
                    continue
                obj = m
                try:
                    for part in str(n.target).split("."):
                        obj = getattr(obj, part)
                except AttributeError:
                    continue
                if isinstance(obj, torch.Tensor) and id(obj) not in seen_params:
                    seen_params.add(id(obj))
                    yield obj


def stored_elements(module: nn.Module) -> int:
    """Every element ``module`` stores (see the module doc): parameters, buffers, tensor
    constants (each storage once) and the scalars of compensated norms."""
    total = tensor_elements(_module_tensors(module))
    for m in module.modules():
        if isinstance(m, fx.GraphModule):
            total += graph_scalar_elements(m.graph)
        elif isinstance(m, CompensatedLayerNorm):
            total += COMPENSATED_SCALARS
        elif isinstance(m, CompensatedRMSNorm):
            total += COMPENSATED_RMS_SCALARS
    return total
