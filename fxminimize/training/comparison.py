"""One seed of the budget-matched comparison: Squeeze-Release and the baselines of
:mod:`.baselines`, resumable, writing its state as it goes.

:func:`run_comparison` fills ``state`` (a JSON-able dict) and calls ``save()`` after every
finished piece: the dense model, the Squeeze-Release run, each baseline at each reported cycle.
Called again with the state it saved (and the same ``ckpt_dir``), it skips what is there:
Squeeze-Release, iterative pruning without release and the unstructured run resume from their
per-cycle checkpoints; the dense model is read back from ``ckpt_dir/dense.pt``.

Selection rules (no test figure chooses anything): ``eval_fn`` (validation in the tools) is the
only figure the runs see (the accuracy floor, the records); the reported cycles are the ones
whose *size* is nearest each of ``report_ratios``; ``test_fn`` is called only to fill the
``test_accuracy`` fields of the final tables and is never read back.
"""
from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import asdict
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn as nn

from . import baselines as bl
from .checkpoints import load_checkpoint
from .cycle import SqueezeRelease
from .measure import deployable_size

log = logging.getLogger(__name__)

__all__ = ["run_comparison", "report_cycles"]


def report_cycles(history: Sequence[dict], ratios: Sequence[float]) -> List[int]:
    """For each ratio, the cycle (>= 1) whose deployable ratio is nearest to it in log scale."""
    import math

    out = []
    for r in ratios:
        best = min((h for h in history if h["cycle"] >= 1), key=lambda h: abs(math.log(h["ratio"] / r)))
        out.append(best["cycle"])
    return out


def run_comparison(state: dict, save: Callable[[], None], *, make_dense: Callable[[], nn.Module], dense_epochs: int,
                   example_inputs: tuple, train_fn: Callable, eval_fn: Callable, test_fn: Callable,
                   optimizer_fn: Callable, dense_optimizer_fn: Optional[Callable] = None, sr_kwargs: dict,
                   report_ratios: Sequence[float], methods: Sequence[str], target_prune: Callable[[int, str], dict],
                   build_same_shape: Callable[[dict, nn.Module], nn.Module], ckpt_dir: str,
                   unstructured_prune: Optional[dict] = None) -> dict:
    """Run (or resume) one seed. ``sr_kwargs``: the :class:`SqueezeRelease` keywords (schedule,
    criterion, prunable, epochs, release scale, stops, seed); iterative pruning without release
    uses the same with ``do_release=False`` up to the last reported cycle.
    ``target_prune(params, method) -> {"schedule", "criterion", "prunable"}``: how the one-shot
    methods (``method``: ``single_pass`` or ``one_shot_release``) prune the dense model to
    ``params`` stored elements. ``build_same_shape(cycle record,
    minimized module)``: a fresh network of that shape (scratch). ``unstructured_prune``:
    ``{"criterion", "prunable"}`` of the unstructured baseline (default: global ``|w|`` over the
    >= 2-D weights). ``methods``: a subset of :data:`baselines.METHODS`."""
    unknown = set(methods) - set(bl.METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; known: {bl.METHODS}")
    os.makedirs(ckpt_dir, exist_ok=True)
    dense_optimizer_fn = dense_optimizer_fn or optimizer_fn

    # -- dense ------------------------------------------------------------------------
    dense = make_dense()
    dense_path = os.path.join(ckpt_dir, "dense.pt")
    if os.path.exists(dense_path) and "dense" in state:
        dense.load_state_dict(torch.load(dense_path, weights_only=True))
    elif "dense" in state:
        # retraining would silently pair the saved results with a different dense model
        raise FileNotFoundError(f"the saved state has results for this seed but {dense_path} is missing: pass the "
                                f"checkpoint folder the run wrote, or drop the seed from the state to run it afresh")
    else:
        t0 = time.perf_counter()
        train_fn(dense, dense_optimizer_fn(dense.parameters()), dense_epochs, {"phase": "dense"})
        torch.save(dense.state_dict(), dense_path + ".tmp")
        os.replace(dense_path + ".tmp", dense_path)
        state["dense"] = {"params": deployable_size(dense), "accuracy": float(eval_fn(dense)),
                          "test_accuracy": float(test_fn(dense)), "epochs": dense_epochs,
                          "time_s": time.perf_counter() - t0}
        save()
    dense.eval()
    n0 = state["dense"]["params"]

    # -- Squeeze-Release --------------------------------------------------------------
    if not state.get("squeeze_release", {}).get("done"):
        t0 = time.perf_counter()
        run = SqueezeRelease(copy.deepcopy(dense), example_inputs, train_fn, eval_fn, optimizer_fn=optimizer_fn,
                             checkpoint_dir=os.path.join(ckpt_dir, "squeeze_release"), **sr_kwargs)
        res = run.run()
        hist = [asdict(r) for r in res.history]
        for h in hist:
            h["epochs_seen"] = dense_epochs + h["epochs_total"]
            h["test_accuracy"] = float(test_fn(load_checkpoint(h["checkpoint"]))) if h["checkpoint"] else None
        state["squeeze_release"] = {"history": hist, "stop_reason": res.stop_reason, "done": True,
                                    "time_s": time.perf_counter() - t0}
        save()
    hist = state["squeeze_release"]["history"]
    cycles = report_cycles(hist, report_ratios)
    state["report_cycles"] = dict(zip([str(r) for r in report_ratios], cycles))
    by_cycle = {h["cycle"]: h for h in hist}
    base = state.setdefault("baselines", {})
    last = max(cycles)

    def keep(method: str, rec: bl.BaselineRecord) -> None:
        base.setdefault(method, []).append(asdict(rec))
        save()

    def have(method: str, cycle: int) -> bool:
        return any(r["cycle"] == cycle for r in base.get(method, []))

    ft_first = sr_kwargs.get("finetune_epochs", 1)
    ft_first = ft_first[0] if isinstance(ft_first, (list, tuple)) else ft_first
    for c in sorted(set(cycles)):
        h = by_cycle[c]
        budget = bl.epochs_seen(hist, c, dense_epochs)
        if "single_pass" in methods and not have("single_pass", c):
            small, rec = bl.single_pass_record(copy.deepcopy(dense), example_inputs, train_fn, eval_fn,
                                               optimizer_fn=optimizer_fn, budget=budget, dense_epochs=dense_epochs,
                                               params_unpruned=n0, cycle=c, target=h["params"],
                                               **target_prune(h["params"], "single_pass"))
            rec.test_accuracy = float(test_fn(small))
            keep("single_pass", rec)
        if "one_shot_release" in methods and not have("one_shot_release", c):
            small, rec = bl.one_shot_release(copy.deepcopy(dense), example_inputs, train_fn, eval_fn,
                                             optimizer_fn=optimizer_fn, budget=budget, dense_epochs=dense_epochs,
                                             finetune_epochs=ft_first, params_unpruned=n0, cycle=c, target=h["params"],
                                             release_scale=sr_kwargs.get("release_scale", 0.05),
                                             seed=sr_kwargs.get("seed", 0),
                                             **target_prune(h["params"], "one_shot_release"))
            rec.test_accuracy = float(test_fn(small))
            keep("one_shot_release", rec)
        if "scratch" in methods and not have("scratch", c):
            shaped = load_checkpoint(h["checkpoint"])
            net, rec = bl.scratch(lambda: build_same_shape(h, shaped), train_fn, eval_fn, optimizer_fn=optimizer_fn,
                                  budget=budget, params_unpruned=n0, cycle=c)
            rec.test_accuracy = float(test_fn(net))
            keep("scratch", rec)

    if "iterative_no_release" in methods and not all(have("iterative_no_release", c) for c in cycles):
        kw = dict(sr_kwargs, max_cycles=last, target_ratio=None, target_params=None, do_release=False)
        run = SqueezeRelease(copy.deepcopy(dense), example_inputs, train_fn, eval_fn, optimizer_fn=optimizer_fn,
                             checkpoint_dir=os.path.join(ckpt_dir, "iterative_no_release"), **kw)
        res, recs = bl.iterative_no_release(run, dense_epochs)
        for r, rec in zip(res.history[1:], recs):
            if rec.cycle in cycles and not have("iterative_no_release", rec.cycle):
                rec.test_accuracy = float(test_fn(load_checkpoint(r.checkpoint)))
                keep("iterative_no_release", rec)

    if "unstructured" in methods and not all(have("unstructured", c) for c in cycles):
        steps = [(by_cycle[k]["params"], by_cycle[k]["epochs"]) for k in range(1, last + 1)]

        def on_step(model, rec):
            rec.test_accuracy = float(test_fn(model))

        _, recs = bl.unstructured(copy.deepcopy(dense), train_fn, eval_fn, optimizer_fn=optimizer_fn, steps=steps,
                                  dense_epochs=dense_epochs, checkpoint_dir=os.path.join(ckpt_dir, "unstructured"),
                                  on_step=on_step, **(unstructured_prune or {}))
        for rec in recs:
            if rec.cycle in cycles and not have("unstructured", rec.cycle):
                keep("unstructured", rec)
    state["done"] = True
    save()
    return state
