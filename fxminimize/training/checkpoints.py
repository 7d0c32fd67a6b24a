"""Squeeze-Release checkpoints: a ``torch.export`` program (``.pt2``) per cycle, read back as a
trainable module without unpickling arbitrary code."""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from .loops import _unwrap

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(module: nn.Module, example_inputs: tuple, path: str) -> None:
    """Write ``module`` (architecture and weights) as a ``torch.export`` program (``.pt2``)."""
    from ..capture import batch_dynamic_shapes

    module = _unwrap(module)
    # the example inputs are stored in the program: a view (x_train[:16]) would store its whole
    # base tensor (the training set) in every checkpoint, so copy them
    example_inputs = tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in example_inputs)
    was = module.training
    module.eval()
    try:
        ep = torch.export.export(module, example_inputs, dynamic_shapes=batch_dynamic_shapes(example_inputs),
                                 strict=False)
    finally:
        module.train(was)
    tmp = path + ".partial.pt2"
    torch.export.save(ep, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> nn.Module:
    """Read a ``.pt2`` checkpoint back as a trainable module (no arbitrary unpickling)."""
    import torch.fx as fx

    from fxminimize.capture import strip_export_guards

    # ep.module() refuses .train(); rebuild a plain GraphModule over the same graph (without the
    # export guard call) so the checkpoint can be trained on like the module that was saved
    ep_module = strip_export_guards(torch.export.load(path).module())
    m = fx.GraphModule(ep_module, ep_module.graph, class_name="MinimizedModule")
    for attr in ("_in_spec", "_out_spec"):
        if hasattr(ep_module, attr):
            setattr(m, attr, getattr(ep_module, attr))
    m.recompile()
    for p in m.parameters():
        p.requires_grad_(True)
    return m
