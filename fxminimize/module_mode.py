"""Module mode: the plan applied to a deep copy of the user's own model (same class, same forward).

Graph mode returns a GraphModule whose rewrites may add ops (input gathers, restored outputs,
per-dim cos/sin gathers, a Linear reading only its live columns). A user's ``forward`` cannot
take those, so module mode asks the same analysis for a *wider* plan whose every step is a
resize of a module's tensors:

* source spaces (inputs whose unread features graph mode gathers away) are kept whole;
* model outputs are kept whole (no restore of CONST channels);
* attention keeps whole heads (all q/k dims and v dims of a kept head; whole kv groups), so the
  head dim and the softmax scale of the user's code stay valid; head counts change;
* a norm's output keeps the same channels as its input (one module, one width);
* a mean/sum over the channel dim is only rewritten inside an RMSNorm module (which becomes
  :class:`~fxminimize.compensated.CompensatedRMSNorm`); elsewhere its input is kept whole.

Widening is exact: a kept channel computes what it computed before, and every unit of the
channel graph is kept or removed whole (:meth:`ChannelAnalysis.widen` reruns the use fixpoint,
so whatever a newly kept channel reads is kept too). The widened plan is rewritten by the same
passes with ``structural=False``; the resulting tensors (same attribute names as the user's
parameters, plus biases created by folding) are put into a deep copy of the model, the
modules' size attributes are updated, LayerNorms that lost stream channels become
:class:`~fxminimize.compensated.CompensatedLayerNorm`, and the copy is verified against the
masked original like the graph result. Anything that cannot be mapped back to a module (a
constant the capture derived, a broken tie) or fails verification leaves the user's model
unshrunk (exact) and the report says why.
"""
from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from .analysis.channels import ChannelAnalysis
from .compensated import COMPENSATED_LAYER_NORM
from .errors import MinimizationError
from .ir import bind
from .module_build import CannotExpress, _get, build, dim_spaces, owner_class

log = logging.getLogger(__name__)
aten = torch.ops.aten

_NORMS = {aten.layer_norm.default, aten.native_layer_norm.default, COMPENSATED_LAYER_NORM,
          aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}
_REDUCE = {aten.mean.dim, aten.sum.dim_IntList, aten.amax.default}


def _mask(plan, name: str) -> np.ndarray:
    m = np.zeros(plan.size[name], dtype=bool)
    m[plan.keep[name]] = True
    return m


def constraints(gm: fx.GraphModule, plan, why: Optional[dict] = None) -> dict[str, np.ndarray]:
    """Channels module mode must keep beyond ``plan`` (node name → bool mask); see module doc.
    ``why``, when given, receives {reason: channels added}."""
    extra: dict[str, np.ndarray] = {}
    reason = ""

    def add(name: str, mask) -> None:
        if name not in plan.size:
            return
        full = np.ones(plan.size[name], bool) if mask is None else np.asarray(mask, bool)
        new = full & ~_mask(plan, name) & ~extra.get(name, np.zeros(plan.size[name], bool))
        if why is not None and new.any():
            why[reason] = why.get(reason, 0) + int(new.sum())
        extra[name] = extra.get(name, np.zeros(plan.size[name], bool)) | full

    reason = "input features no module reads (graph mode gathers them)"
    for name, native in plan.native.items():
        if not native:
            add(name, None)
    for n in gm.graph.nodes:
        if n.op == "output":
            reason = "CONST output channels (graph mode restores them)"
            for x in n.all_input_nodes:
                add(x.name, None)
        elif n.op == "call_function" and n.target in _NORMS:
            reason = "norm outputs a module must compute with its inputs"
            x = n.args[0]
            if plan.tracked(n.name) and plan.tracked(x.name) and plan.size[n.name] == plan.size[x.name]:
                add(n.name, _mask(plan, x.name))
                add(x.name, _mask(plan, n.name))
        elif n.op == "call_function" and n.target is aten.mul.Tensor:
            reason = "scale-zero mul outputs a module must compute with its inputs"
            xs = [x for x in n.args[:2] if isinstance(x, fx.Node) and plan.tracked(x.name)]
            if len(xs) == 1 and plan.tracked(n.name) and plan.size[n.name] == plan.size[xs[0].name]:
                add(n.name, _mask(plan, xs[0].name))
                add(xs[0].name, _mask(plan, n.name))
        elif n.op == "call_function" and n.target in _REDUCE:
            x = n.args[0]
            if plan.tracked(n.name) or not plan.tracked(x.name):
                continue
            ax = plan.axis[x.name]
            dims = [d % len(x.meta["val"].shape) for d in (n.args[1] if len(n.args) > 1 else [])]
            rms = n.target is aten.mean.dim and owner_class(n).endswith("RMSNorm")
            if ax in dims and not rms:
                reason = f"a {n.target.__name__} over channels outside an RMSNorm module"
                add(x.name, None)
    reason = "per-dim q/k/v removal inside kept attention heads"
    for r in plan.regions.values():
        names = {s: r.source(s) for s in ("q", "k", "v")}
        if not all(v in plan.size for v in names.values()) or r.o_in not in plan.size:
            continue
        g_of = np.arange(r.Hq) // r.rep
        heads = _mask(plan, r.o_in).reshape(r.Hq, r.Dv).any(1) | _mask(plan, names["q"]).reshape(r.Hq, r.D).any(1)
        groups = _mask(plan, names["k"]).reshape(r.Hkv, r.D).any(1) | _mask(plan, names["v"]).reshape(r.Hkv, r.Dv).any(1)
        groups[g_of[heads]] = True
        heads = groups[g_of]
        add(names["q"], np.repeat(heads, r.D))
        add(names["k"], np.repeat(groups, r.D))
        add(names["v"], np.repeat(groups, r.Dv))
        add(r.o_in, np.repeat(heads, r.Dv))
    return {k: v for k, v in extra.items() if (v & ~_mask(plan, k)).any()}


def widen_plan(ca: ChannelAnalysis, gm: fx.GraphModule, plan, max_rounds: int = 8, why: Optional[dict] = None):
    """The module-mode plan: ``plan`` (the result of ``ca.run()``) widened until
    :func:`constraints` adds nothing; ``why`` receives {constraint: channels it kept directly}."""
    for _ in range(max_rounds):
        extra = constraints(gm, plan, why)
        if not extra:
            return plan
        plan = ca.widen(extra)
    raise CannotExpress("module-mode constraints did not settle")


def module_plan(gm: fx.GraphModule, max_rounds: int = 8, why: Optional[dict] = None):
    """(graph-mode plan, module-mode plan) of the canonical module ``gm`` (one analysis)."""
    ca = ChannelAnalysis(gm)
    first = ca.run()
    return first, widen_plan(ca, gm, first, max_rounds, why)


def _sliced_elements(gm: fx.GraphModule, plan, graph_mode: bool) -> dict[int, int]:
    """{id(constant): elements after the rewrite of ``plan``} for every constant ``gm`` reads:
    each dim sliced by the space :func:`~fxminimize.module_build.dim_spaces` gives it; with
    ``graph_mode`` a Linear also drops the CONST columns its rule folds and gathers the rest
    (``kept_const_columns``, the rule's own decision; the index counts too)."""
    out: dict[int, int] = {}
    ctx = SimpleNamespace(plan=plan, structural=graph_mode)
    for n in gm.graph.nodes:
        if n.op != "get_attr" or not n.users:
            continue
        t = _get(gm, str(n.target))
        if not isinstance(t, torch.Tensor) or id(t) in out:
            continue
        dims = list(t.shape)
        for d, sp in enumerate(dim_spaces(n, t.dim(), plan)):
            name = getattr(sp, "name", None)
            if name in plan.size and plan.size[name] == dims[d]:
                dims[d] = len(plan.keep[name])
        extra, folded = 0, False
        users = [u for u in n.users if u.op == "call_function"]
        u = users[0] if users else None
        p = bind(u) if u is not None and hasattr(u.target, "_schema") else {}
        x = p.get("input")
        if p.get("weight") is n and x is not None and plan.tracked(x.name) and plan.shrinks(x):
            folded = bool(plan.const_val[x.name][plan.removed(x)].any())   # W[:, removed]·v
        rule = plan.rules.get(u.name) if u is not None else None
        if graph_mode and hasattr(rule, "kept_const_columns") and plan.tracked(u.name):
            x, w, _ = rule.params(u)
            if w is n and plan.tracked(x.name) and plan.axis[x.name] == len(x.meta["val"].shape) - 1:
                narrow = rule.kept_const_columns(ctx, u, x, w)
                if narrow is not None:
                    dims[0 if rule.transposed else 1] = extra = len(narrow[2])
                    folded = folded or bool(narrow[1].any())
        if folded and "bias" in p and p["bias"] is None:  # the fold creates a bias (b = 0 + fold)
            extra += dims[0]
        out[id(t)] = int(np.prod(dims)) + extra
    return out


def graph_mode_elements(gm: fx.GraphModule, graph_plan, module: nn.Module, work: nn.Module,
                        module_elements: int) -> tuple[int, int]:
    """(elements graph mode would store, elements of tensors the forward never reads), from the
    graph plan, without building the graph-mode rewrite: every constant the graph reads sliced
    by the graph plan (:func:`_sliced_elements`, biases its folds create included), plus what
    ``module`` stores besides those constants, the biases module mode created and the tensors its
    forward never reads (BatchNorm's ``num_batches_tracked``, which the graph drops), plus the
    index of every input gather. Not counted: buffers graph mode adds to restore CONST outputs."""
    g = _sliced_elements(gm, graph_plan, True)
    read = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr" and n.users}
    names: dict[int, list] = {}
    for k, t in module.state_dict(keep_vars=True).items():
        names.setdefault(id(t), []).append((k, t))
    unread = sum(v[0][1].numel() for v in names.values() if not any(k in read for k, _ in v))
    covered: dict[int, int] = {}
    estimate = 0
    for n in gm.graph.nodes:
        if n.op != "get_attr" or not n.users:
            continue
        try:
            t = _get(module, str(n.target))
        except AttributeError:  # a constant the capture derived: not in the module (nor counted)
            continue
        if isinstance(t, torch.Tensor) and id(t) not in covered:
            covered[id(t)] = t.numel()
            estimate += g.get(id(_get(gm, str(n.target))), 0)
    known = set(work.state_dict().keys())
    for k, t in module.named_parameters():
        if k not in known:  # a bias module mode created (the graph estimate has its own)
            covered.setdefault(id(t), t.numel())
    gathers = sum(len(graph_plan.keep[k]) for k, native in graph_plan.native.items()
                  if not native and graph_plan.shrinks(k))
    return estimate + module_elements - sum(covered.values()) - unread + gathers, unread


@dataclass
class ModuleRun:
    """What :func:`minimize_modules` hands back to :func:`fxminimize.minimize`."""

    module: nn.Module
    plan: object          # the module-mode plan (the graph-mode plan when module mode fell back)
    resized: bool         # False: ``module`` is the unshrunk copy (``notes`` say why)
    notes: list
    stats: dict           # report.module_mode
    pass_stats: dict
    verified: object      # verify.VerifyResult or None
    times: tuple          # perf_counter at the end of analysis and of rewrite + build


def minimize_modules(work: nn.Module, cap, example_inputs: tuple, verify_result: bool = True,
                     ref_out=None) -> ModuleRun:
    """Module mode on a captured model (the only analysis, rewrite and verification it gets).

    ``work`` is the masked original (never modified), ``cap`` its capture, ``ref_out`` its
    outputs on the example inputs (when known). One :class:`ChannelAnalysis` gives the
    graph-mode plan and, widened, the module plan; only the module plan is rewritten. The
    returned module is a copy of ``work`` (its class), resized (:func:`build`: no full-size
    copy is held), verified once; if module mode cannot express the plan or its result does
    not verify, it is ``work``'s unshrunk copy and the notes say why (never a wrong model).
    What graph mode would remove beyond it comes from the plans (:func:`graph_mode_elements`).
    """
    from fxminimize.passes.pipeline import run_pipeline

    from .api import release_heap
    from .capture import input_symbols
    from .size import stored_elements
    from .verify import verify

    notes: list[str] = []
    before = stored_elements(work)
    try:
        ca = ChannelAnalysis(cap.gm)
        graph_plan = ca.run()
    except Exception as exc:  # noqa: BLE001 - as graph mode: an internal failure is a refusal
        raise MinimizationError(f"internal error while minimizing ({type(exc).__name__}: {exc}); "
                                "the model was not changed. Please report this model.") from exc
    t_an = t_rw = None
    try:
        why: dict = {}
        plan = widen_plan(ca, cap.gm, graph_plan, why=why)
        release_heap(ca)  # its weight patterns (a bool per weight element) go before the rewrite
        del ca
        t_an = time.perf_counter()
        origin: dict = {}
        check = os.environ.get("FXMINIMIZE_DEBUG", "") not in ("", "0")  # as fxminimize.rewrite
        small, stats = run_pipeline(cap.gm, plan, check=check, structural=False, origin=origin)
        for key in ("gathers_inserted", "outputs_restored", "ties_broken"):
            if stats.get(key):
                raise CannotExpress(f"the module plan still needs {key.replace('_', ' ')} ({stats[key]})")
        module, kept_index = build(work, cap.gm, small, plan, origin)
        del small  # its new tensors now live in ``module``; nothing else of it is needed
        module.train(work.training)
        t_rw = time.perf_counter()
        after = stored_elements(module)
        if after > before:
            raise CannotExpress(f"it would store {after:,} elements against {before:,}")
        res = None
        if verify_result:
            try:
                res = verify(work, module, example_inputs, cap.dynamic_batch, input_symbols(cap.gm),
                             cap.dynamic_sizes, ref_out)
            except Exception as exc:  # noqa: BLE001 - the user's forward rejects its resized modules
                raise CannotExpress(f"the resized model raises ({type(exc).__name__}: "
                                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from exc
            if not res.ok:
                raise CannotExpress("the resized modules do not match the original: " + res.message)
        graph_elements, unread = graph_mode_elements(cap.gm, graph_plan, module, work, after)
    except Exception as exc:  # noqa: BLE001 - never a wrong or half-built model: the unshrunk copy
        if not isinstance(exc, CannotExpress):
            exc = CannotExpress(f"internal error {type(exc).__name__}: {exc}; please report this model")
        log.warning("module mode keeps the model unshrunk: %s", exc)
        notes.append(f"module mode cannot resize the user's modules ({exc}); the returned module is an "
                     "unshrunk copy of the masked model")
        module = small = None  # drop a half-built copy before making the unshrunk one
        module = copy.deepcopy(work)
        try:
            graph_elements = graph_mode_elements(cap.gm, graph_plan, module, work, before)[0]
        except Exception:  # noqa: BLE001 - the estimate is only for the report
            log.debug("no graph-mode estimate", exc_info=True)
            graph_elements = before
        now = time.perf_counter()
        return ModuleRun(module, graph_plan, False, notes,
                         {"module_elements": before, "graph_elements": graph_elements,
                          "beyond_module_mode": max(0, before - graph_elements), "kept_by": {}, "kept_index": {}},
                         {}, None, (t_an or now, t_rw or now))
    diff = after - graph_elements
    if diff > 0:
        kept = "; ".join(f"{k}: {v} channels" for k, v in why.items())
        notes.append(f"graph mode removes {diff:,} elements more than module mode, which keeps "
                     + (f"directly {kept} (and what they read); " if kept else "")
                     + (f"{unread:,} elements of tensors its forward never reads (e.g. BatchNorm's "
                        "num_batches_tracked; the graph drops them); " if unread else "")
                     + "whole Linear inputs, CONST columns included (graph mode gathers the live ones)")
    mstats = {"module_elements": after, "graph_elements": graph_elements, "beyond_module_mode": max(0, diff),
              "kept_by": why, "kept_index": kept_index}
    if res is not None:
        mstats["max_abs_error"], mstats["verified_checks"] = res.max_abs_error, res.checks
    return ModuleRun(module, plan, True, notes, mstats, dict(stats), res, (t_an, t_rw))
