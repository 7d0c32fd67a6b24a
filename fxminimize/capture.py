"""Capture: any supported model form → a canonical GraphModule (see :mod:`fxminimize.ir`).

* ``nn.Module`` (including a ``torch.fx.GraphModule`` from ``symbolic_trace``):
  ``torch.export.export(model, args, strict=False)`` with the batch dim (dim 0 of every tensor
  input) marked ``Dim.AUTO``, so the captured graph keeps it symbolic unless the model itself
  specializes it, in which case a warning says the result only accepts the example batch size.
* ``torch.export.ExportedProgram``: used as is.

The canonical module is ``ep.module()`` with the export guard call removed: weights are
``get_attr`` nodes, ops are aten overloads, and the pytree codegen keeps the caller's
argument and output structure (tuples, dicts, Hugging Face output objects).
"""
from __future__ import annotations

import contextlib
import copy
import linecache
import logging
import re
import os
import traceback
import warnings
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn
from torch.export import Dim
from torch.utils import _pytree as pytree

from .constfold import fold_parameter_subgraphs, inline_scalar_constants
from .passes.experts import align_expert_units
from .passes.fused_qkv import split_fused_qkv
from .errors import MinimizationError
from .ir import static_int

log = logging.getLogger(__name__)


@dataclass
class Captured:
    gm: fx.GraphModule
    dynamic_batch: bool
    dynamic_shapes: object
    #: sizes of the example that the graph keeps symbolic beyond the batch (a sequence length,
    #: an image size): {symbol: example size}; the result accepts other values of these
    dynamic_sizes: dict = None
    #: the canonical module before parameter-only subgraphs were folded (``gm`` when none was)
    unfolded: fx.GraphModule = None


def all_dims_dynamic_shapes(example_inputs: tuple, static: frozenset = frozenset()):
    """The ``dynamic_shapes`` spec marking every dim of every tensor input ``Dim.AUTO`` except the
    (tensor input index, dim) pairs in ``static``: torch.export keeps symbolic whatever the
    model allows (batch, sequence length, image size) and specializes the rest (a Linear's
    in-features, a conv's channels)."""
    count = iter(range(1 << 30))

    def spec(t):
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            return None
        i = next(count)
        return {d: Dim.AUTO for d in range(t.dim()) if (i, d) not in static}

    return tuple(pytree.tree_map(spec, x) for x in example_inputs)


def pinned_dims(gm: fx.GraphModule) -> frozenset:
    """(tensor input index, dim) pairs whose symbol the export tied by an equation it could not
    solve for one symbol (``3·H·W = 48`` where a flatten feeds a Linear): the model only works at
    the example's values, so they are captured static (the analysis needs static shapes there)."""
    vals = [n.meta.get("val") for n in gm.graph.nodes if n.op == "placeholder"]
    fake = next((v.fake_mode for v in vals if isinstance(v, torch.Tensor) and hasattr(v, "fake_mode")), None)
    env = getattr(fake, "shape_env", None)
    if env is None:
        return frozenset()
    tied = set()
    for g in env.guards:
        expr = g.expr
        if (getattr(expr, "is_Equality", False) or type(expr).__name__ == "Eq") \
                and (expr.lhs.is_number or expr.rhs.is_number) \
                and not any(f in str(expr) for f in ("Mod", "FloorDiv", "floor", "ceiling")):
            # tied to a constant (3·H·W = 48); not s0 = s1, and not divisibility (H mod 2 = 0)
            tied |= {str(s) for s in expr.free_symbols}
    out = set()
    for i, dims in enumerate(input_symbols(gm)):
        out |= {(i, d) for d, s in dims.items() if s in tied}
    return frozenset(out)


def input_symbols(gm: fx.GraphModule) -> list:
    """Per tensor input (placeholder order, which is the order of the flattened inputs):
    {dim: symbol name} for its symbolic dims."""
    out = []
    for n in gm.graph.nodes:
        val = n.meta.get("val") if n.op == "placeholder" else None
        if isinstance(val, torch.Tensor):
            out.append({d: str(s.node.expr) for d, s in enumerate(val.shape)
                        if isinstance(s, torch.SymInt) and static_int(s) is None})
    return out


def symbolic_sizes(gm: fx.GraphModule) -> dict:
    """{symbol name: example size} for every input dim the graph keeps symbolic, except the
    symbols of dim 0 (the batch)."""
    batch, other = set(), {}
    for n in gm.graph.nodes:
        val = n.meta.get("val") if n.op == "placeholder" else None
        if isinstance(val, torch.Tensor):
            for d, s in enumerate(val.shape):
                if isinstance(s, torch.SymInt) and static_int(s) is None:
                    name = str(s.node.expr)
                    (batch.add(name) if d == 0 else other.__setitem__(name, int(s.node.hint)))
    return {k: v for k, v in other.items() if k not in batch and k.isidentifier()}


def batch_dynamic_shapes(example_inputs: tuple, dim=None):
    """The ``dynamic_shapes`` spec marking dim 0 of every tensor input with ``dim`` (default
    ``Dim.AUTO``; :func:`fxminimize.export_onnx` passes a named ``Dim("batch", min=1)``).
    Non-tensor inputs and 0-d tensors get ``None``."""
    dim = Dim.AUTO if dim is None else dim
    return tuple(pytree.tree_map(lambda t: {0: dim} if isinstance(t, torch.Tensor) and t.dim() > 0 else None,
                                 x) for x in example_inputs)


def strip_export_guards(gm: fx.GraphModule) -> fx.GraphModule:
    """Remove the input-guard call (``_guards_fn``) that ``ExportedProgram.module()`` adds, in
    place, and recompile: the canonical module, and one rebuilt from a saved program, check
    nothing on the call (verification and the graph's own shape ops do). Returns ``gm``."""
    for n in list(gm.graph.nodes):
        if n.op == "call_module" and str(n.target) == "_guards_fn":
            gm.graph.erase_node(n)
    if hasattr(gm, "_guards_fn"):
        delattr(gm, "_guards_fn")
    gm.recompile()
    return gm


def _user_frame(exc: BaseException) -> str:
    """The innermost source line outside torch that the failure came from, if any."""
    torch_dir = os.path.dirname(torch.__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(torch_dir)
              and "fxminimize" not in f.filename and not f.filename.startswith("<")]
    for line in str(exc).splitlines():
        m = re.match(r'\s*File "([^"]+)", line (\d+), in (\S+)', line)
        if m and torch_dir not in m.group(1) and not m.group(1).startswith("<"):
            src = linecache.getline(m.group(1), int(m.group(2))).strip()
            return f"{m.group(1)}:{m.group(2)} in {m.group(3)}: {src}"
    if frames:
        f = frames[-1]
        return f"{f.filename}:{f.lineno} in {f.name}: {f.line}"
    return ""


class _TorchErrorsToDebug(logging.Filter):
    """Handler filter: a record of a ``torch.*`` logger at ERROR or above, or carrying a
    traceback, goes to this module's debug log instead of the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("torch") and (record.levelno >= logging.ERROR or record.exc_info):
            log.debug("%s: %s", record.name, record.getMessage(), exc_info=record.exc_info)
            return False
        return True


@contextlib.contextmanager
def torch_errors_to_debug():
    """While active, torch's own error logs (e.g. the fake-tensor traceback ``torch.export``
    logs before raising on a shape mismatch) are logged at debug level by
    ``fxminimize.capture`` instead of printed: the failure reaches the user once, as a
    :class:`MinimizationError`. Warnings below ERROR pass unchanged."""
    flt = _TorchErrorsToDebug()
    handlers = []
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and (name == "torch" or name.startswith("torch.")):
            handlers.extend(h for h in lg.handlers if flt not in h.filters)
    handlers = list({id(h): h for h in handlers}.values())
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


def _export(model, example_inputs: tuple, shapes):
    """torch.export with torch's own error logs kept at debug level; every failure becomes one
    clear MinimizationError naming the innermost user source line when there is one."""
    try:
        with torch_errors_to_debug():
            return torch.export.export(model, example_inputs, dynamic_shapes=shapes, strict=False)
    except Exception as exc:  # noqa: BLE001 - every capture failure becomes one clear error
        where = _user_frame(exc)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.debug("torch.export failed", exc_info=exc)   # torch's traceback: debug log only
        raise MinimizationError(
            f"could not capture the model with torch.export ({type(exc).__name__}: {first})"
            + (f"\n  at {where}" if where else "")) from None


def capture(model, example_inputs: tuple, dynamic_batch: bool = True, dynamic_sizes: bool = False) -> Captured:
    """Capture ``model`` called on ``example_inputs`` as a canonical GraphModule. With
    ``dynamic_sizes`` every dim of every input is ``Dim.AUTO`` (see
    :func:`all_dims_dynamic_shapes`), otherwise only dim 0 when ``dynamic_batch``."""
    if isinstance(model, torch.export.ExportedProgram):
        ep = model
        shapes = None
    else:
        if not isinstance(model, nn.Module):
            raise MinimizationError(f"expected an nn.Module or ExportedProgram, got {type(model).__name__}")
        shapes = (all_dims_dynamic_shapes(example_inputs) if dynamic_sizes
                  else batch_dynamic_shapes(example_inputs) if dynamic_batch else None)
        ep = _export(model, example_inputs, shapes)
    gm = strip_export_guards(ep.module())
    pinned = pinned_dims(gm) if dynamic_sizes and shapes is not None else frozenset()
    if pinned:  # capture again with those dims static (the analysis needs their sizes)
        shapes = all_dims_dynamic_shapes(example_inputs, pinned)
        log.debug("sizes tied by the model, captured static: %s", sorted(pinned))
        ep = _export(model, example_inputs, shapes)  # on failure the caller falls back to a dynamic batch
        gm = strip_export_guards(ep.module())
    unfolded = fx.GraphModule(gm, copy.deepcopy(gm.graph))  # shares the tensors
    folded = fold_parameter_subgraphs(gm)
    if folded:
        log.debug("folded %d values computed from parameters alone", folded)
    if isinstance(model, nn.Module):
        state = {k for k, _ in model.named_parameters()} | {k for k, _ in model.named_buffers()}
        folded += inline_scalar_constants(gm, state)
    split_fused_qkv(gm)  # timm's reshape → permute → unbind qkv as the chunk form (exact)
    align_expert_units(gm)  # MoE experts' dead hidden units at the same positions (exact)
    dyn = _batch_is_dynamic(gm)
    if dynamic_batch and not dyn and shapes is not None and _has_batched_input(example_inputs):
        warnings.warn("the model specializes its batch size during capture; the minimized model "
                      "accepts only the example batch size", stacklevel=3)
    return Captured(gm, dyn, shapes, symbolic_sizes(gm) if dynamic_sizes else {}, unfolded if folded else gm)


def _has_batched_input(example_inputs) -> bool:
    return any(isinstance(t, torch.Tensor) and t.dim() > 0 for t in pytree.tree_leaves(example_inputs))


def _batch_is_dynamic(gm: fx.GraphModule) -> bool:
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            val = n.meta.get("val")
            if isinstance(val, torch.Tensor) and val.dim() > 0 and isinstance(val.shape[0], torch.SymInt) \
                    and static_int(val.shape[0]) is None:
                return True
    return False
