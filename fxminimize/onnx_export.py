"""ONNX export of a minimized model, checked in onnxruntime against the original torch model.

:func:`export_onnx` minimizes a model (or takes a :class:`~fxminimize.MinimizeResult`), exports it
with the dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``, one self-contained file
by default), runs ``onnx.checker`` and then onnxruntime on *fresh* random inputs (drawn as in
:mod:`fxminimize.verify`: same shapes, and batch 1 and B+1 when the batch is dynamic), and
compares every output with the original (masked) torch model.

Dynamic dims: with ``dynamic_batch`` dim 0 is the symbolic ``batch``; with ``dynamic_sizes``
(the default) every other input dim that the minimized graph keeps symbolic (sequence length,
image size: :func:`fxminimize.minimize` captures with them ``Dim.AUTO``) stays symbolic in the
ONNX graph too, and the check also runs onnxruntime at another value of each
(:func:`fxminimize.verify.input_sets`; the torch model runs first there, and where it rejects
those sizes the next of :func:`fxminimize.verify.size_fallbacks` is used, as in the
verification; if it rejects all of them that set is not compared). :attr:`OnnxExport.dynamic_dims`
lists them as the ONNX graph has them.

Tolerance and output matching: :mod:`fxminimize.compare`, as in :mod:`fxminimize.verify`; per
output y (torch) and ŷ (onnxruntime, cast to y's dtype):
``|ŷ − y| ≤ atol·max(1, max|y|) + rtol·|y|`` with rtol = 1e-4, atol = 1e-5 for float32
(:data:`fxminimize.compare.TOLERANCES`, per dtype); ``rtol``/``atol`` override it. A larger
difference raises :class:`~fxminimize.MinimizationError` (the file is left on disk for inspection).

The minimized graph contains aten ops and the operator ``fxminimize::compensated_layer_norm``,
emitted as the standard fused ``LayerNormalization`` between a Pad and a Slice
(:mod:`fxminimize.onnx_compensated`), so everything exports to standard ONNX operators (default
domain); :attr:`OnnxExport.domains` lists the operator domains found.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
from torch.export import Dim

from .errors import MinimizationError
from .capture import input_symbols
from .compare import Comparison, tensor_leaves
from .verify import input_sets, reference_at_other_sizes

log = logging.getLogger(__name__)


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote and measured."""

    path: str
    bytes_on_disk: int                      # the .onnx file plus any external data files
    max_abs_error: float                    # worst |onnxruntime − original torch| over all checks
    checks: int                             # float outputs compared
    input_sets: list = field(default_factory=list)
    dynamic_batch: bool = False
    dynamic_dims: dict = field(default_factory=dict)   # {(input index, dim): ONNX dim name} beyond the batch
    opset: Optional[int] = None
    domains: tuple = ()                     # operator domains in the graph ("" = standard ONNX)
    tolerance: str = ""
    result: object = field(default=None, repr=False)   # the MinimizeResult exported

    def __str__(self) -> str:
        return (f"{self.path}: {self.bytes_on_disk:,} bytes, onnxruntime vs torch max abs error "
                f"{self.max_abs_error:.3g} over {self.checks} output(s) on {len(self.input_sets)} input set(s) "
                f"({self.tolerance}){', dynamic batch' if self.dynamic_batch else ''}"
                f"{', dynamic ' + ', '.join(f'input {i} dim {d}' for i, d in self.dynamic_dims) if self.dynamic_dims else ''}")


def _reference_and_result(model_or_result, example_inputs, masks, reference):
    from .api import MinimizeResult, minimize
    from .masks import masked_copy
    if isinstance(model_or_result, MinimizeResult):
        res = model_or_result
        if reference is None:
            # the minimized module was verified against the original in minimize(); without
            # the original, onnxruntime is compared with it
            reference = res.module
        return res, reference
    if isinstance(model_or_result, torch.export.ExportedProgram):
        model_or_result = model_or_result.module()
    if not isinstance(model_or_result, nn.Module):
        raise MinimizationError("export_onnx expects an nn.Module, ExportedProgram or MinimizeResult, "
                                f"got {type(model_or_result).__name__}")
    res = minimize(model_or_result, example_inputs, masks=masks)
    if reference is None:
        reference = masked_copy(model_or_result, masks).eval()
    return res, reference


def _file_bytes(path: str) -> int:
    import onnx
    total = os.path.getsize(path)
    m = onnx.load(path, load_external_data=False)
    seen = set()
    for t in onnx.external_data_helper._get_all_tensors(m):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), None)
            if loc and loc not in seen:
                seen.add(loc)
                f = os.path.join(os.path.dirname(os.path.abspath(path)), loc)
                if os.path.exists(f):
                    total += os.path.getsize(f)
    return total


def strip_debug_metadata(proto) -> None:
    """Drop the exporter's per-node ``metadata_props`` (Python stack traces, module names) from an
    ``onnx.ModelProto`` in place, in the main graph and in every function: debugging aids that do
    not change what the graph computes."""
    for nodes in [proto.graph.node] + [f.node for f in proto.functions]:
        for node in nodes:
            node.ClearField("metadata_props")


def _dynamic_spec(module, example_inputs, dynamic_batch: bool, dynamic_sizes: bool):
    """The ``dynamic_shapes`` spec for the export: dim 0 a named ``batch`` (``dynamic_batch``),
    and ``Dim.AUTO`` for each other dim the minimized graph keeps symbolic (``dynamic_sizes``)."""
    import torch.utils._pytree as pytree
    symbols = iter(input_symbols(module))
    batch = Dim("batch", min=1)

    def spec(t):
        if not isinstance(t, torch.Tensor):
            return None
        dims = next(symbols, {})                  # one entry per tensor input, 0-d ones included
        if t.dim() == 0:
            return None
        out = {d: Dim.AUTO for d in dims if d and dynamic_sizes}
        if dynamic_batch:
            out[0] = batch
        return out or None

    shapes = tuple(pytree.tree_map(spec, x) for x in example_inputs)
    return shapes if any(pytree.tree_leaves(shapes)) else None


def _beyond_batch(shapes) -> bool:
    """Whether a ``dynamic_shapes`` spec marks any dim other than dim 0."""
    import torch.utils._pytree as pytree
    specs = pytree.tree_leaves(shapes, is_leaf=lambda x: isinstance(x, dict))
    return any(d != 0 for spec in specs if isinstance(spec, dict) for d in spec)


def _onnx_dims(proto, n_inputs: int) -> list:
    """Per ONNX graph input, {dim: name} for its symbolic dims beyond dim 0 (the form
    :func:`fxminimize.verify.input_sets` takes)."""
    symbols = []
    for inp in list(proto.graph.input)[:n_inputs]:
        dims = inp.type.tensor_type.shape.dim
        symbols.append({d: x.dim_param for d, x in enumerate(dims) if d and x.dim_param})
    return symbols


def _export(module, example_inputs, path, shapes, opset, external_data, table) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(module, example_inputs, None, dynamo=True, dynamic_shapes=shapes,
                                 opset_version=opset, verbose=False, custom_translation_table=table)
        prog.save(path, external_data=external_data)


def export_onnx(model_or_result, example_inputs: tuple, path: str, *, masks=None, dynamic_batch: bool = False,
                dynamic_sizes: bool = True,
                external_data: bool = False, opset: Optional[int] = None, reference: Optional[nn.Module] = None,
                rtol: Optional[float] = None, atol: Optional[float] = None, check: bool = True,
                seed: int = 0, keep_debug_metadata: bool = False) -> OnnxExport:
    """Export the minimized model to ONNX and check it in onnxruntime.

    ``model_or_result``: an ``nn.Module``/``ExportedProgram`` (minimized first, with ``masks``)
    or a :class:`MinimizeResult`. ``example_inputs``: tuple of positional arguments.
    ``dynamic_batch``: dim 0 of every input (and output) is symbolic in the ONNX graph; the
    check then also runs at batch 1 and B+1. ``dynamic_sizes``: the other input dims the minimized
    graph keeps symbolic (sequence length, image size) stay symbolic in the ONNX graph; the check
    then also runs at other sizes. ``external_data``: weights in a side file
    (``<path>.data``) instead of one self-contained file. ``reference``: the model onnxruntime
    is compared with (default: the masked original when given a model; the minimized module when
    given a result). ``check=False`` skips the checker and onnxruntime.
    ``keep_debug_metadata``: keep the exporter's per-node ``metadata_props`` (Python stack traces
    and module names for debugging). Dropped by default: they do not change what the graph
    computes, and their size grows with the node count (for a minimized ConvNeXt-style CNN they
    were 168 kB of a 211 kB file).
    """
    if not isinstance(example_inputs, tuple):
        raise MinimizationError(f"example_inputs must be a tuple, got {type(example_inputs).__name__}")
    res, reference = _reference_and_result(model_or_result, example_inputs, masks, reference)
    if dynamic_batch and not res.dynamic_batch:
        raise MinimizationError("dynamic_batch=True, but the minimized model only accepts the example batch size "
                                "(captured with a static batch; a batch-1 example always is: use batch >= 2)")
    module = res.module
    from .onnx_compensated import translation_table   # onnxscript: imported when exporting
    # a named batch dim (the ONNX graph's inputs and outputs show "batch" as dim 0), the graph's
    # other symbolic dims Dim.AUTO
    shapes = _dynamic_spec(module, example_inputs, dynamic_batch, dynamic_sizes)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        try:
            _export(module, example_inputs, path, shapes, opset, external_data, translation_table())
        except Exception as exc:  # noqa: BLE001
            if not _beyond_batch(shapes):
                raise
            fixed = _dynamic_spec(module, example_inputs, dynamic_batch, False)
            # the sizes beyond the batch are a convenience: export at the example's sizes, say why
            log.info("ONNX export with symbolic sizes beyond the batch failed (%s: %s); exporting the "
                     "example's sizes", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            _export(module, example_inputs, path, fixed, opset, external_data, translation_table())
    except Exception as exc:  # noqa: BLE001
        raise MinimizationError(f"ONNX export failed ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    finally:
        quiet.setLevel(level)
    import onnx
    proto = onnx.load(path, load_external_data=False)
    if not keep_debug_metadata:
        strip_debug_metadata(proto)
        onnx.save(proto, path)                # initializers stored outside keep pointing at <path>.data
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    domains = tuple(sorted({n.domain for n in proto.graph.node} | {f.domain for f in proto.functions}))
    out = OnnxExport(path=path, bytes_on_disk=_file_bytes(path), max_abs_error=0.0, checks=0,
                     dynamic_batch=dynamic_batch, opset=opset_used, domains=domains, result=res)
    symbols = _onnx_dims(proto, len(tensor_leaves(example_inputs)))
    out.dynamic_dims = {(i, d): name for i, dims in enumerate(symbols) for d, name in dims.items()}
    if not check:
        return out
    onnx.checker.check_model(path, full_check=True)
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    cmp = Comparison(rtol=rtol, atol=atol, cast=True)
    sizes = {}
    for t, dims in zip(tensor_leaves(example_inputs), symbols):
        sizes.update({name: int(t.shape[d]) for d, name in dims.items()})
    for label, inputs in input_sets(example_inputs, dynamic_batch, seed + 1, symbols, sizes):
        if label == "example inputs":
            continue                          # fresh inputs only
        leaves = tensor_leaves(inputs)
        if len(leaves) != len(names):
            raise MinimizationError(f"the ONNX graph has {len(names)} inputs, the model {len(leaves)} tensor inputs")
        if label.startswith("random inputs at other sizes"):
            try:
                with torch.no_grad():
                    label, inputs, want = reference_at_other_sizes(reference, label, inputs, example_inputs,
                                                                   symbols, sizes)
            except Exception as exc:  # noqa: BLE001 - the torch model rejects every other size tried
                log.debug("the model rejects every other size tried (%s): not compared", exc)
                continue
            leaves = tensor_leaves(inputs)
        else:
            with torch.no_grad():
                want = reference(*inputs)
        feed = {n: t.detach().cpu().numpy() for n, t in zip(names, leaves)}
        got = [torch.from_numpy(a) for a in sess.run(None, feed)]
        if not cmp.check(want, got, label):
            raise MinimizationError(f"onnxruntime differs from the torch model: {cmp.failure.splitlines()[0]}; "
                                    f"file left at {path}")
    out.input_sets = list(cmp.compared)
    out.max_abs_error, out.checks, out.tolerance = cmp.max_abs_error, cmp.checks, cmp.tolerance_text
    log.info("%s", out)
    return out

