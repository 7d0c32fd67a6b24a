"""Masks: exact zeros, ``torch.nn.utils.prune`` reparametrisations, or an explicit dict.

All three end as plain weights with exact zeros in a *copy* of the user's model; the user's
model is never touched. A dict maps parameter names (as in ``model.named_parameters()``) to
boolean tensors of the parameter's shape: True keeps an entry, False zeroes it.
"""
from __future__ import annotations

import copy
from typing import Mapping, Optional

import torch
import torch.nn as nn
from torch.nn.utils import prune

from .errors import MinimizationError
from .size import stored_elements


def check_model(model: nn.Module) -> None:
    """Reject models fxminimize cannot treat exactly (nothing is modified)."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise MinimizationError(f"parameter or buffer '{name}' contains NaN or Inf; "
                                    "minimization would not be exact")
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise MinimizationError(f"BatchNorm '{name or type(m).__name__}' is in training mode: its output "
                                    "depends on the batch; call model.eval() first")
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            raise MinimizationError(f"Dropout '{name}' is in training mode and therefore random; "
                                    "call model.eval() first")


def needs_copy(model: nn.Module, masks: Optional[Mapping[str, torch.Tensor]]) -> bool:
    """True when minimizing must work on a copy: masks to apply, prune reparametrisations to
    bake in, or ``nn.MultiheadAttention`` modules to canonicalize. Otherwise the model is
    captured as it is (capture reads, never writes) and :func:`unshare` gives the result its
    own tensors at the end, so no full copy of the model is ever held during minimize()."""
    if masks:
        return True
    for m in model.modules():
        if type(m) is nn.MultiheadAttention:
            return True
        if any(isinstance(h, prune.BasePruningMethod) for h in m._forward_pre_hooks.values()):
            return True
    return False


def unshare(result: nn.Module, model: nn.Module) -> int:
    """Replace every tensor of ``result`` that shares storage with ``model`` by a copy, so the
    result never aliases the user's model (training one must not change the other)."""
    owned = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    n = 0
    for mod in result.modules():
        for name, p in list(mod._parameters.items()):
            if p is not None and p.untyped_storage().data_ptr() in owned:
                mod._parameters[name] = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
                n += 1
        for name, b in list(mod._buffers.items()):
            if b is not None and b.untyped_storage().data_ptr() in owned:
                mod._buffers[name] = b.clone()
                n += 1
    return n


def masked_copy(model: nn.Module, masks: Optional[Mapping[str, torch.Tensor]]) -> nn.Module:
    """A deep copy of ``model`` with prune reparametrisations baked in and ``masks`` applied."""
    # tensors computed by prune's forward pre-hooks (weight = weight_orig * weight_mask) are not
    # graph leaves and refuse deepcopy: give the copy detached versions of them
    memo = {}
    for m in model.modules():
        for k, v in vars(m).items():
            if isinstance(v, torch.Tensor) and not v.is_leaf:
                memo[id(v)] = v.detach().clone()
    work = copy.deepcopy(model, memo)
    for m in work.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(m, hook._tensor_name)
    if masks:
        params = dict(work.named_parameters())
        for name, mask in masks.items():
            if name not in params:
                raise MinimizationError(f"mask '{name}' names no parameter of the model "
                                        f"(parameters: {', '.join(list(params)[:8])}{', ...' if len(params) > 8 else ''})")
            mask = torch.as_tensor(mask)
            if tuple(mask.shape) != tuple(params[name].shape):
                raise MinimizationError(f"mask '{name}' has shape {tuple(mask.shape)}, "
                                        f"parameter has shape {tuple(params[name].shape)}")
            if mask.dtype != torch.bool:
                if not bool(((mask == 0) | (mask == 1)).all()):
                    raise MinimizationError(f"mask '{name}' must be boolean (or 0/1)")
                mask = mask.bool()
            with torch.no_grad():
                params[name].mul_(mask.to(params[name].dtype))
    return work


def count_stored(module: nn.Module) -> int:
    """Number of stored elements (zeros included): :func:`fxminimize.size.stored_elements`
    (parameters, buffers, tensor constants, each storage once, and compensated-norm scalars)."""
    return stored_elements(module)
