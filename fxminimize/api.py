"""Public entry points: :func:`minimize`, :class:`MinimizeResult`, :func:`load`."""
from __future__ import annotations

import copy
import ctypes
import dataclasses
import functools
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils import _pytree as pytree

from .analysis import Plan
from .analysis.channels import ChannelAnalysis
from .canonicalize import canonicalize
from .capture import _batch_is_dynamic, batch_dynamic_shapes, capture, input_symbols
from .errors import MinimizationError
from .explain import describe_graph
from .masks import check_model, masked_copy, needs_copy, unshare
from .report import Report
from .rewrite import rewrite
from .size import stored_elements
from .verify import verify

log = logging.getLogger(__name__)


@dataclass
class MinimizeResult:
    """``module``: the minimized model (a GraphModule, called like the original).
    ``report``: what was removed and kept, and why. ``plan``: the analysis result."""

    module: fx.GraphModule
    report: Report
    plan: Plan
    example_inputs: tuple
    dynamic_batch: bool
    dynamic_shapes: Any = None  # the spec the model was captured with
    #: None: module mode (``keep_modules=True``) builds no graph-mode result; run graph mode for it
    graph_module: Optional[fx.GraphModule] = None

    def save_pretrained(self, directory: str) -> None:
        """Module mode: write safetensors weights and a JSON description of every resized
        module (:mod:`fxminimize.checkpoint`; no pickle)."""
        from .checkpoint import save_pretrained
        save_pretrained(self.module, directory)

    def save(self, path: str) -> None:
        """Write the minimized model as a torch.export program (``.pt2``), with the same dims
        dynamic as the capture."""
        shapes = self.dynamic_shapes if self.dynamic_shapes is not None else (
            batch_dynamic_shapes(self.example_inputs) if self.dynamic_batch else None)
        ep = torch.export.export(self.module, self.example_inputs, dynamic_shapes=shapes, strict=False)
        torch.export.save(ep, path)


def load(path: str) -> nn.Module:
    """Load a model written by :meth:`MinimizeResult.save` (no arbitrary unpickling)."""
    return torch.export.load(path).module()


def _input_names(example_inputs: tuple):
    """(name, leaf) for every leaf of the example inputs: ``example_inputs[0]``, ``example_inputs[1]['ids']``."""
    flat, _ = pytree.tree_flatten_with_path(example_inputs)
    return [(f"example_inputs{pytree.keystr(path)}", leaf) for path, leaf in flat]


def check_inputs(model: nn.Module, example_inputs: tuple) -> None:
    """Refuse a model or example inputs on the meta device (nothing to run, nothing to verify)."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_meta:
            raise MinimizationError(f"meta tensors cannot be verified: parameter or buffer '{name}' is on the meta "
                                    "device and has no values; load real weights first (e.g. "
                                    "model.to_empty(device='cpu') then load_state_dict)")
    for name, t in _input_names(example_inputs):
        if isinstance(t, torch.Tensor) and t.is_meta:
            raise MinimizationError(f"meta tensors cannot be verified: {name} is on the meta device; "
                                    "pass real example inputs")


_DTYPE_ERROR = re.compile(r"dtype|scalar type|Long|Int|Float|Double|Half|BFloat16", re.I)


def run_on_examples(model: nn.Module, example_inputs: tuple):
    """Call ``model`` once on its example inputs (no grad) so that inputs the model itself
    rejects (a wrong shape, integers where it computes in float) are refused before capture,
    with the cause named, rather than deep inside torch.export or verification. Returns the
    outputs (verification compares with them: the original runs once on the example inputs)."""
    try:
        with torch.no_grad():
            return model(*example_inputs)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's own model on its inputs
        log.debug("the model raises on its example inputs", exc_info=exc)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        msg = f"the model raises on its example inputs ({type(exc).__name__}{': ' + first if first else ''})"
        floats = sorted({str(t.dtype) for t in list(model.parameters()) + list(model.buffers())
                         if t.is_floating_point()})
        ints = [(name, t.dtype) for name, t in _input_names(example_inputs)
                if isinstance(t, torch.Tensor) and not t.is_floating_point() and not t.is_complex()
                and t.dtype != torch.bool]
        if floats and ints and _DTYPE_ERROR.search(first):
            msg += "; " + ", ".join(f"{name} is {dtype}" for name, dtype in ints) + \
                   f" but the model's weights are {'/'.join(floats)}: pass floating-point inputs (e.g. x.float())"
        raise MinimizationError(msg + "; the model was not changed") from None


def minimize(model, example_inputs: tuple, masks: Optional[Mapping[str, torch.Tensor]] = None, *,
             verify_result: bool = True, dynamic_batch: bool = True, dynamic_sizes: bool = True,
             keep_modules: bool = False) -> MinimizeResult:
    """Rewrite a masked model into a smaller dense model computing the same function.

    ``model``: an ``nn.Module`` (weights with exact zeros, ``torch.nn.utils.prune``
    reparametrisations, or any model plus ``masks``), a ``torch.fx.GraphModule`` or a
    ``torch.export.ExportedProgram``. ``example_inputs``: a tuple of positional arguments.
    ``masks``: optional ``{parameter name: bool tensor}`` (True keeps).

    ``dynamic_batch``: the result accepts other batch sizes. ``dynamic_sizes`` (with
    ``dynamic_batch``): it also accepts other values of whatever other input sizes the model
    allows (sequence length, image size); if capturing or verifying that way fails, the
    capture falls back to a dynamic batch only, and the report says so.

    The result is checked against the masked model on the example inputs and fresh random
    inputs (also at other batch sizes and other sizes); if any output differs beyond the
    tolerance stated in :mod:`fxminimize.verify`, :class:`MinimizationError` is raised. The
    result never stores more elements than the input (a rewrite that would is not made). The
    user's model is never modified.

    ``keep_modules``: ``result.module`` is a deep copy of the user's model, of its class, with
    its modules resized (:mod:`fxminimize.module_mode`), verified the same way; no graph-mode
    result is built (``result.graph_module`` is None); the report describes the module and
    estimates from the plan what graph mode would remove beyond it.
    """
    if not isinstance(example_inputs, tuple):
        raise MinimizationError("example_inputs must be a tuple of positional arguments, "
                                f"got {type(example_inputs).__name__}")
    t0 = time.perf_counter()
    program = None
    if isinstance(model, torch.export.ExportedProgram):
        # keep the program's own batch-size contract: dynamic only if it was exported so
        dynamic_batch = dynamic_batch and _batch_is_dynamic(model.graph_module)
        program, model = model, model.module()
    if not isinstance(model, nn.Module):
        raise MinimizationError(f"expected an nn.Module, GraphModule or ExportedProgram, got {type(model).__name__}")
    check_inputs(model, example_inputs)
    check_model(model)
    copied = needs_copy(model, masks)
    work = masked_copy(model, masks) if copied else model
    if copied:
        check_model(work)
    ref_out = run_on_examples(work, example_inputs)
    canon, notes = work, []
    if program is not None and not copied:
        canon = program   # captured already: used as is (its own dynamic dims), not exported again
    elif any(type(m) is nn.MultiheadAttention for m in work.modules()):
        canon = copy.deepcopy(work)  # verification still compares against the unchanged copy
        notes = canonicalize(canon)
    sizes = dynamic_batch and dynamic_sizes
    try:
        run = _run(canon, work, example_inputs, dynamic_batch, sizes, verify_result, ref_out, keep_modules)
    except MinimizationError as exc:
        if not sizes or canon is program:
            raise
        log.debug("capture with every size dynamic failed; retrying with a dynamic batch only", exc_info=exc)
        run = _run(canon, work, example_inputs, dynamic_batch, False, verify_result, ref_out, keep_modules)
        notes.append("only the example's sizes (beyond the batch) are accepted: with them dynamic, "
                     f"{str(exc).splitlines()[0]}")
    cap, plan, small, stats, res, times, mrun = run
    t_end = time.perf_counter()
    removed = {name: (plan.size[name], len(plan.keep[name])) for name in plan.keep
               if len(plan.keep[name]) < plan.size[name]} if mrun is None or mrun.resized else {}
    compact_storages(small)
    before, after = stored_elements(work), stored_elements(small)
    if after > before and mrun is None:  # never larger: the rewrite does not pay (restore buffers, index tensors)
        notes.append(f"the rewrite would store {after:,} elements against {before:,}: not made; "
                     "the returned model is the captured original")
        small, stats, removed = _unrewritten(cap.unfolded, model.training), {}, {}
        compact_storages(small)
        after = stored_elements(small)
        if after > before:
            notes.append(f"the captured model itself stores {after - before:,} elements more than the model's "
                         "parameters and buffers: its forward creates constants (cached tables, masks) that "
                         "the graph must keep")
        if verify_result:
            res = verify(work, small, example_inputs, cap.dynamic_batch, input_symbols(cap.gm), cap.dynamic_sizes,
                         ref_out)
            if not res.ok:
                raise MinimizationError("the captured model does not match the original; refusing to return it. "
                                        + res.message)
    groups = plan.groups if mrun is None or mrun.resized else tuple(  # module mode's unshrunk copy
        dataclasses.replace(g, units_removed=0, elements_removed=0) for g in plan.groups)
    report = Report(params_before=before, params_after=after, groups=groups,
                    barriers=plan.barriers, removed=removed, plan=plan, graph=describe_graph(cap.gm))
    report.notes.extend(notes)
    report.pass_stats = dict(stats)
    if cap.dynamic_sizes:
        where: dict = {}
        for i, dims in enumerate(input_symbols(cap.gm)):
            for d, sym in dims.items():
                where.setdefault(sym, f"input {i} dim {d}")
        report.notes.append("accepts other sizes of: " + ", ".join(
            f"{where.get(k, k)} (example {v})" for k, v in sorted(cap.dynamic_sizes.items(), key=lambda kv: where.get(kv[0], kv[0]))))
    if not plan.anything_removed:
        report.notes.append("nothing to remove: no channel is unused or constant-foldable; "
                            "the returned model is equal to the input")
    if res is not None:
        report.max_abs_error = res.max_abs_error
        report.verified_checks = res.checks
        report.skipped_checks = list(res.skipped)
        report.rounding = list(res.rounding)  # outputs passed against float64 (fxminimize.compare)
        report.notes.extend(res.rounding)
        for c in res.skipped:
            log.info("verification skipped %s", c)
    if not copied:
        unshare(small, model)  # the result owns its tensors (only now: no full copy held before)
    report.timings = {"capture": times[0] - t0, "analysis": times[1] - times[0], "rewrite": times[2] - times[1],
                      "verify": t_end - times[2]}
    log.info("minimized: %d -> %d params", report.params_before, report.params_after)
    if mrun is not None:  # module mode: the report describes result.module (module_mode.py)
        report.notes.extend(mrun.notes)
        report.module_mode = mrun.stats
    return MinimizeResult(small, report, plan, example_inputs, cap.dynamic_batch, cap.dynamic_shapes)


def compact_storages(gm: nn.Module) -> None:
    """Replace every stored tensor that is a view of a larger storage (a slice of a lifted
    constant or of a shared table) by a compact copy, so the result holds only what it uses."""
    for mod in gm.modules():
        for name, t in list(mod._parameters.items()) + list(mod._buffers.items()) + \
                [(k, v) for k, v in vars(mod).items() if isinstance(v, torch.Tensor)]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            try:
                full = t.untyped_storage().nbytes() // max(1, t.element_size())
            except (RuntimeError, NotImplementedError):
                continue
            if full <= t.numel():
                continue
            new = t.detach().clone()
            if isinstance(t, nn.Parameter):
                mod._parameters[name] = nn.Parameter(new, requires_grad=t.requires_grad)
            elif name in mod._buffers:
                mod._buffers[name] = new
            else:
                setattr(mod, name, new)


def release_heap(analysis=None) -> None:
    """Free what a finished analysis leaves behind before the rewrite allocates the new weights:
    its memo (the weights' nonzero patterns, a bool per weight element: 0.25x the fp32 parameter
    bytes), which a reference cycle (analysis <-> rule context) would keep until Python's next
    automatic collection; then give freed heap memory back to the OS (glibc's ``malloc_trim``;
    elsewhere a no-op), since glibc keeps freed blocks of that size in its heap."""
    if analysis is not None:
        analysis.memo.clear()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def _unrewritten(gm: fx.GraphModule, training: bool) -> fx.GraphModule:
    out = fx.GraphModule(gm, copy.deepcopy(gm.graph), class_name="MinimizedModule")
    out.train(training)
    return out


def _run(canon, work, example_inputs, dynamic_batch: bool, dynamic_sizes: bool, verify_result: bool, ref_out=None,
         keep_modules: bool = False):
    """Capture, analyse, rewrite and verify once: (captured, plan, module, pass stats, verify
    result or None, (t_capture, t_analysis, t_rewrite) end times, module_mode.ModuleRun or
    None). With ``keep_modules`` only module mode's analysis, rewrite and verification run."""
    cap = capture(canon, example_inputs, dynamic_batch=dynamic_batch, dynamic_sizes=dynamic_sizes)
    t1 = time.perf_counter()
    if keep_modules:
        from .module_mode import minimize_modules
        m = minimize_modules(work, cap, example_inputs, verify_result, ref_out)
        return (cap, m.plan, m.module, m.pass_stats, m.verified,
                (t1,) + m.times, m)
    try:
        ca = ChannelAnalysis(cap.gm)
        plan = ca.run()
        release_heap(ca)
        t2 = time.perf_counter()
        small, stats = rewrite(cap.gm, plan)
        small.train(work.training)  # same mode as the user's model (check_model: eval-safe)
    except Exception as exc:  # noqa: BLE001 - an internal failure must not surface half-done
        raise MinimizationError(f"internal error while minimizing ({type(exc).__name__}: {exc}); "
                                "the model was not changed. Please report this model.") from exc
    t3 = time.perf_counter()
    res = None
    if verify_result:
        res = verify(work, small, example_inputs, cap.dynamic_batch, input_symbols(cap.gm), cap.dynamic_sizes,
                     ref_out)
        if not res.ok:
            raise MinimizationError("the minimized model does not match the original; refusing to return it. "
                                    + res.message)
    return cap, plan, small, stats, res, (t1, t2, t3), None
