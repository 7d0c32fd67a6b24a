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
from typing import Optional

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from .analysis.channels import ChannelAnalysis
from .compensated import COMPENSATED_LAYER_NORM
from .module_build import CannotExpress, build, owner_class

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


def module_plan(gm: fx.GraphModule, max_rounds: int = 8, why: Optional[dict] = None):
    """(graph-mode plan, module-mode plan) of the canonical module ``gm``; ``why`` receives
    {constraint: channels it kept directly}."""
    ca = ChannelAnalysis(gm)
    plan = first = ca.run()
    for _ in range(max_rounds):
        extra = constraints(gm, plan, why)
        if not extra:
            return first, plan
        plan = ca.widen(extra)
    raise CannotExpress("module-mode constraints did not settle")



# ---------------------------------------------------------------------------- the entry point
def minimize_modules(work: nn.Module, cap, example_inputs: tuple, graph_elements: int, verify_result: bool = True):
    """Module mode on a captured model: (module, plan, notes, stats).

    ``work`` is the masked original (never modified), ``cap`` its capture, ``graph_elements``
    the stored elements of the graph-mode result (for the report's difference). The returned
    module is a deep copy of ``work`` (its class), resized, verified; if module mode cannot
    express the plan or its result does not verify, it is ``work``'s unshrunk copy and the
    notes say why (never a wrong model).
    """
    from fxminimize.passes.pipeline import run_pipeline

    from .capture import input_symbols
    from .size import stored_elements
    from .verify import verify

    notes: list[str] = []
    before = stored_elements(work)
    try:
        why: dict = {}
        graph_plan, plan = module_plan(cap.gm, why=why)
        origin: dict = {}
        check = os.environ.get("FXMINIMIZE_DEBUG", "") not in ("", "0")  # as fxminimize.rewrite
        small, stats = run_pipeline(cap.gm, plan, check=check, structural=False, origin=origin)
        for key in ("gathers_inserted", "outputs_restored", "ties_broken"):
            if stats.get(key):
                raise CannotExpress(f"the module plan still needs {key.replace('_', ' ')} ({stats[key]})")
        module, kept_index = build(work, cap.gm, small, plan, origin)
        module.train(work.training)
        after = stored_elements(module)
        if after > before:
            raise CannotExpress(f"it would store {after:,} elements against {before:,}")
        if verify_result:
            try:
                res = verify(work, module, example_inputs, cap.dynamic_batch, input_symbols(cap.gm),
                             cap.dynamic_sizes)
            except Exception as exc:  # noqa: BLE001 - the user's forward rejects its resized modules
                raise CannotExpress(f"the resized model raises ({type(exc).__name__}: "
                                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from exc
            if not res.ok:
                raise CannotExpress("the resized modules do not match the original: " + res.message)
        else:
            res = None
    except Exception as exc:  # noqa: BLE001 - never a wrong or half-built model: the unshrunk copy
        if not isinstance(exc, CannotExpress):
            exc = CannotExpress(f"internal error {type(exc).__name__}: {exc}; please report this model")
        log.warning("module mode keeps the model unshrunk: %s", exc)
        notes.append(f"module mode cannot resize the user's modules ({exc}); the returned module is an "
                     "unshrunk copy of the masked model")
        module = copy.deepcopy(work)
        return module, None, notes, {"module_elements": before, "graph_elements": graph_elements,
                                     "beyond_module_mode": max(0, before - graph_elements), "kept_by": {},
                                     "kept_index": {}}, None
    diff = after - graph_elements
    if diff > 0:
        read = {str(n.target) for n in cap.gm.graph.nodes if n.op == "get_attr"}
        unread = sum(t.numel() for k, t in module.state_dict().items() if k not in read)
        kept = "; ".join(f"{k}: {v} channels" for k, v in why.items())
        notes.append(f"graph mode removes {diff:,} elements more than module mode, which keeps "
                     + (f"directly {kept} (and what they read); " if kept else "")
                     + (f"{unread:,} elements of tensors its forward never reads (e.g. BatchNorm's "
                        "num_batches_tracked; the graph drops them); " if unread else "")
                     + "whole Linear inputs, CONST columns included (graph mode gathers the live ones)")
    return module, plan, notes, {"module_elements": after, "graph_elements": graph_elements,
                                 "beyond_module_mode": max(0, diff), "kept_by": why,
                                 "kept_index": kept_index}, res
