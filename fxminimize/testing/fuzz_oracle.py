"""The fuzzer's oracle: run ``minimize`` on a case and classify the outcome (:func:`check_case`,
:class:`Outcome`; statuses in :mod:`fxminimize.testing.fuzz`).

The reference is the masked original built independently of fxminimize; outputs are compared
by :func:`compare_outputs`, which is :func:`fxminimize.compare.compare_outputs` (the same
tolerances as minimize's own verification, and the same second judgement of an output that
fails: against the reference run in float64, the tolerance widened by the reference's own
float32 rounding error on those inputs; see :mod:`fxminimize.compare`). The float64 reference
is a float64 copy of the independently built reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import torch
from torch.utils import _pytree as pytree

from fxminimize.compare import compare_outputs as _compare
from fxminimize.compare import float64_evaluator

from .fuzz_blocks import build_model, example_inputs
from .fuzz_cases import Description

CHECK_BATCHES = (1, 5)          # fresh random inputs at these batch sizes (example batch: 2)

@dataclass
class Outcome:
    status: str                  # ok | refused | missed | wrong | internal | mutated | invalid
    message: str = ""
    params_before: int = 0
    params_after: int = 0
    max_err: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("wrong", "internal", "mutated")


def _reference(spec, masks):
    """The masked original, built independently of fxminimize: fresh weights times the masks."""
    ref = build_model(spec)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name in masks:
                p.mul_(masks[name].to(p.dtype))
    return ref


def compare_outputs(ref_out, got_out, exact=None) -> Tuple[bool, float, str]:
    """(ok, max abs error, first mismatch) by the one comparison of :mod:`fxminimize.compare`
    (per-dtype tolerances, the absolute one scaled by max(1, max|y|); ``exact``: the reference's
    float64 outputs on demand, for an ill-conditioned output)."""
    c = _compare(ref_out, got_out, exact=exact)
    return c.ok, c.max_abs_error, (c.failure.splitlines()[0] if c.failure else "")


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_case(model, example, description: Description, *, seed: int = 12345) -> Outcome:
    """Minimize one case and classify the outcome (see module docstring)."""
    import fxminimize
    from fxminimize import MinimizationError

    masks = description.masks
    ref = _reference(description.spec, description.all_masks)
    g = torch.Generator().manual_seed(seed)
    spec = description.spec
    inputs = []
    for bsz in CHECK_BATCHES:
        x = example_inputs(spec, bsz, seed=int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g)))
        inputs.append(x)
    with torch.no_grad():
        try:
            refs = [ref(*x) for x in inputs] + [ref(*example)]
        except Exception as e:  # noqa: BLE001
            return Outcome("invalid", f"reference model fails: {type(e).__name__}: {e}")
    if not all(bool(torch.isfinite(t).all()) for o in refs for t in pytree.tree_leaves(o)):
        return Outcome("invalid", "reference outputs are not finite")
    before = _state(model)
    try:
        res = fxminimize.minimize(model, example, masks=masks)
    except MinimizationError as e:
        msg = str(e)
        if "internal error" in msg or "does not match the original" in msg:
            return Outcome("internal", f"MinimizationError: {msg}")
        return Outcome("refused", msg)
    except Exception as e:  # noqa: BLE001
        return Outcome("internal", f"{type(e).__name__} (not MinimizationError): {e}")
    after = model.state_dict()
    if set(after) != set(before) or any(not torch.equal(after[k], before[k]) for k in before):
        return Outcome("mutated", "minimize() modified the user's model")
    rep = res.report
    worst = 0.0
    ev, judged = float64_evaluator(ref), []

    def exact(x):
        judged.append(x)   # the plain check failed on this output set: judged against float64
        return ev(x)
    with torch.no_grad():
        for x, r in zip(inputs, refs):
            try:
                got = res.module(*x)
            except Exception as e:  # noqa: BLE001
                return Outcome("wrong", f"minimized model raises at batch {x[0].shape[0]}: {type(e).__name__}: {e}",
                               rep.params_before, rep.params_after)
            ok, err, why = compare_outputs(r, got, exact=lambda: exact(x))
            worst = max(worst, err)
            if not ok:
                return Outcome("wrong", f"batch {x[0].shape[0]}: {why}", rep.params_before, rep.params_after, worst)
    expect = [d["why"] for d in spec.get("dead", []) if d.get("expect")]
    # "missed": the analysis removed no channel anywhere. (Comparing parameter counts is not
    # enough: restoring CONST model-output channels adds index buffers, which can outweigh a
    # removed hidden unit; and minimize does not make a rewrite that would store more, "never
    # larger", so on tiny models the plan's removals may be found but not applied.)
    plan = getattr(rep, "plan", None)
    if expect and not rep.removed and not (plan is not None and plan.anything_removed):
        return Outcome("missed", "nothing removed although: " + "; ".join(expect),
                       rep.params_before, rep.params_after, worst)
    # outputs passed only against the float64 reference (ill-conditioned), here and in minimize
    rounding = len(judged) + len(rep.rounding)
    return Outcome("ok", "", rep.params_before, rep.params_after, worst, {"float64_judged": rounding} if rounding else {})
