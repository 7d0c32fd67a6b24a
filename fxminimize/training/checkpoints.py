"""Squeeze-Release checkpoints, one per cycle, read back without unpickling arbitrary code:
in graph mode a ``torch.export`` program (``.pt2``) read back as a trainable GraphModule; in
module mode (``keep_modules=True``) a folder of safetensors weights plus a JSON description of
the resized modules (:mod:`fxminimize.checkpoint`), read back into a copy of the user's model."""
from __future__ import annotations

import copy
import os
import shutil

import torch
import torch.nn as nn

from .loops import _unwrap

__all__ = ["save_checkpoint", "load_checkpoint", "cycle_checkpoint_path", "save_cycle_checkpoint",
           "load_cycle_checkpoint"]


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


def cycle_checkpoint_path(directory: str, cycle: int, keep_modules: bool) -> str:
    """``cycle_NNN.pt2`` (graph mode) or the folder ``cycle_NNN`` (module mode)."""
    return os.path.join(directory, f"cycle_{cycle:03d}" + ("" if keep_modules else ".pt2"))


def save_cycle_checkpoint(module: nn.Module, example_inputs: tuple, path: str) -> None:
    """Write one cycle's model to ``path`` (see :func:`cycle_checkpoint_path`); a folder is
    written beside it first and then moved into place, so a crash leaves the old one whole."""
    if path.endswith(".pt2"):
        save_checkpoint(module, example_inputs, path)
        return
    from ..checkpoint import save_pretrained

    tmp = path + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(_unwrap(module), tmp)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def load_cycle_checkpoint(path: str, model: nn.Module) -> nn.Module:
    """Read a cycle checkpoint back: a ``.pt2`` as a GraphModule, a module-mode folder into a
    deep copy of ``model`` (the original architecture, resized to the checkpoint)."""
    if path.endswith(".pt2"):
        return load_checkpoint(path)
    from ..checkpoint import load_pretrained

    module = load_pretrained(path, lambda: copy.deepcopy(model))
    for p in module.parameters():
        p.requires_grad_(True)
    return module
