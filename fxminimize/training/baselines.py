"""Budget-matched baselines for Squeeze-Release (issue 14).

Every baseline gets the *same total budget* as the Squeeze-Release model it is compared with:
the epochs that model has seen, the dense training included (:func:`epochs_seen`), and the same
training step (the user's ``train_fn`` with its tricks, e.g. label smoothing or a cosine rate).
Each record carries ``epochs_seen`` so a table can show (and a test can check) the match.

* ``single_pass`` — prune once to the target size, fine-tune with the masks held for the whole
  budget, minimize; the zeros left inside the kept tensors are never released (the paper's
  baseline). :func:`fxminimize.training.single_pass`.
* ``one_shot_release`` — prune once to the target size, fine-tune (masks held) for the first
  cycle's fine-tuning epochs, minimize, **release**, train for the rest of the budget: one
  Squeeze-Release cycle with the whole budget. Against Squeeze-Release it isolates what
  *iterating* adds. :func:`one_shot_release`.
* ``iterative_no_release`` — the same cycles, sizes and epochs as Squeeze-Release with
  ``do_release=False``: zeros are held for ever. Against Squeeze-Release it isolates what
  *releasing* adds. :func:`iterative_no_release`.
* ``scratch`` — a dense network of exactly the Squeeze-Release model's shape, freshly
  initialised, trained for the whole budget. :func:`scratch`.
* ``unstructured`` — global magnitude pruning of the dense network to as many nonzero stored
  elements as the Squeeze-Release model stores elements (zeros included), never minimized: the
  reference the paper compresses against. Gradual: step ``k`` prunes to the nonzero count of
  Squeeze-Release cycle ``k`` and trains with the masks held for that cycle's epochs, so at every
  cycle the budgets match. :func:`unstructured`.

What each figure is measured on is the caller's: the tools pass ``eval_fn`` = validation
accuracy (every choice) and read the test set separately for the final tables.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .criteria import Criterion, apply_masks, global_prune_masks, hold_masks, magnitude_scores, prunable_parameters
from .cycle import CycleRecord, SqueezeRelease, SqueezeReleaseResult, single_pass
from .measure import deployable_size

log = logging.getLogger(__name__)

__all__ = ["METHODS", "BaselineRecord", "epochs_seen", "count_nonzero", "one_shot_release", "iterative_no_release",
           "scratch", "unstructured", "single_pass_record"]

#: the five baselines, in table order
METHODS = ("single_pass", "one_shot_release", "iterative_no_release", "scratch", "unstructured")


@dataclass
class BaselineRecord:
    """One baseline model. ``params``: its deployable size (stored elements of the minimized model;
    for ``unstructured``, which is never minimized, its nonzero stored elements); ``accuracy``:
    ``eval_fn``'s figure; ``epochs_seen``: every training epoch behind the model, dense included."""

    method: str
    params: int
    ratio: float
    accuracy: float
    epochs_seen: int
    cycle: Optional[int] = None          # the Squeeze-Release cycle whose size and budget it matches
    target_params: Optional[int] = None
    shapes: Dict[str, List[int]] = field(default_factory=dict)
    max_abs_error: Optional[float] = None
    verified_checks: Optional[int] = None
    stored: Optional[int] = None         # unstructured: every stored element, zeros included
    time_s: float = 0.0
    test_accuracy: Optional[float] = None  # filled by the caller for final tables only (never read back here)


def epochs_seen(history: Sequence, cycle: int, dense_epochs: int) -> int:
    """Epochs the Squeeze-Release model of ``cycle`` has seen: ``dense_epochs`` plus the cycles'
    cumulative ``epochs_total`` (records or their dicts)."""
    for r in history:
        c = r["cycle"] if isinstance(r, dict) else r.cycle
        if c == cycle:
            return dense_epochs + int(r["epochs_total"] if isinstance(r, dict) else r.epochs_total)
    raise KeyError(f"no cycle {cycle} in the history")


def count_nonzero(module: nn.Module) -> int:
    """Nonzero elements over all parameters and buffers (each tensor once)."""
    seen, n = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        n += int(torch.count_nonzero(t.detach()))
    return n


def _from_cycle(method: str, rec: CycleRecord, params_unpruned: int, dense_epochs: int, *,
                cycle: Optional[int] = None, target: Optional[int] = None, t0: float = 0.0) -> BaselineRecord:
    return BaselineRecord(method=method, params=rec.params, ratio=params_unpruned / rec.params, accuracy=rec.accuracy,
                          epochs_seen=dense_epochs + rec.epochs_total, cycle=cycle, target_params=target,
                          shapes=rec.shapes, max_abs_error=rec.max_abs_error, verified_checks=rec.verified_checks,
                          time_s=time.perf_counter() - t0 if t0 else rec.time_s)


def single_pass_record(model: nn.Module, example_inputs: tuple, train_fn: Callable, eval_fn: Callable, *,
                       optimizer_fn: Callable, schedule, budget: int, dense_epochs: int, params_unpruned: int,
                       cycle: Optional[int] = None, target: Optional[int] = None,
                       criterion: Criterion = magnitude_scores,
                       prunable: Callable = prunable_parameters) -> Tuple[nn.Module, BaselineRecord]:
    """The single pass (:func:`single_pass`) with the budget ``budget`` (epochs seen, dense
    included): ``budget - dense_epochs`` epochs of masked fine-tuning. ``schedule``: a prune
    fraction or a :class:`ShrinkTarget` aimed at the target size."""
    t0 = time.perf_counter()
    small, rec = single_pass(model, example_inputs, train_fn, eval_fn, optimizer_fn=optimizer_fn, sparsity=schedule,
                             epochs=budget - dense_epochs, criterion=criterion, params_unpruned=params_unpruned,
                             prunable=prunable)
    return small, _from_cycle("single_pass", rec, params_unpruned, dense_epochs, cycle=cycle, target=target, t0=t0)


def one_shot_release(model: nn.Module, example_inputs: tuple, train_fn: Callable, eval_fn: Callable, *,
                     optimizer_fn: Callable, schedule, budget: int, dense_epochs: int, finetune_epochs: int,
                     params_unpruned: int, release_scale: float = 0.05, seed: int = 0,
                     cycle: Optional[int] = None, target: Optional[int] = None,
                     criterion: Criterion = magnitude_scores, prunable: Callable = prunable_parameters
                     ) -> Tuple[nn.Module, BaselineRecord]:
    """Prune once (``schedule``: fraction or :class:`ShrinkTarget`), fine-tune ``finetune_epochs``
    with the masks held, minimize, release, train ``budget - dense_epochs - finetune_epochs``
    epochs. ``model`` is modified; pass a copy."""
    rest = budget - dense_epochs - finetune_epochs
    if rest < 0:
        raise ValueError(f"budget {budget} is below dense {dense_epochs} + fine-tuning {finetune_epochs} epochs")
    t0 = time.perf_counter()
    run = SqueezeRelease(model, example_inputs, train_fn, eval_fn, optimizer_fn=optimizer_fn, schedule=schedule,
                         criterion=criterion, finetune_epochs=finetune_epochs, train_epochs=rest,
                         release_scale=release_scale, max_cycles=1, seed=seed, measure_pruned=False, prunable=prunable)
    small, rec = run.cycle(model, 1, params_unpruned, 0)
    return small, _from_cycle("one_shot_release", rec, params_unpruned, dense_epochs, cycle=cycle, target=target, t0=t0)


def iterative_no_release(run: SqueezeRelease, dense_epochs: int) -> Tuple[SqueezeReleaseResult, List[BaselineRecord]]:
    """Run ``run`` (a :class:`SqueezeRelease` configured like the Squeeze-Release run it is
    compared with, but with ``do_release=False``; resumable through its ``checkpoint_dir``) and
    return its result and one record per cycle (same order as ``result.history[1:]``)."""
    if run.do_release:
        raise ValueError("iterative_no_release needs a SqueezeRelease with do_release=False")
    res = run.run()
    return res, [_from_cycle("iterative_no_release", r, res.params_unpruned, dense_epochs, cycle=r.cycle)
                 for r in res.history[1:]]


def scratch(build: Callable[[], nn.Module], train_fn: Callable, eval_fn: Callable, *, optimizer_fn: Callable,
            budget: int, params_unpruned: int, cycle: Optional[int] = None) -> Tuple[nn.Module, BaselineRecord]:
    """``build()`` (a freshly initialised network of the target shape) trained ``budget`` epochs."""
    t0 = time.perf_counter()
    net = build()
    train_fn(net, optimizer_fn(net.parameters()), budget, {"phase": "scratch", "cycle": cycle})
    n = deployable_size(net)
    return net, BaselineRecord(method="scratch", params=n, ratio=params_unpruned / n, accuracy=float(eval_fn(net)),
                               epochs_seen=budget, cycle=cycle, target_params=n,
                               shapes={k: list(p.shape) for k, p in prunable_parameters(net).items()},
                               time_s=time.perf_counter() - t0)


def _prune_to_nonzeros(model: nn.Module, target: int, criterion: Criterion, prunable: Callable,
                       current: Optional[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Masks leaving ``target`` nonzero stored elements in ``model`` (ranked by ``criterion``
    over the prunable tensors, globally); entries masked in ``current`` stay masked."""
    params = prunable(model)
    cur = {n: (current[n] if current is not None else torch.ones_like(p, dtype=torch.bool)) & (p.detach() != 0)
           for n, p in params.items()}
    alive = int(sum(int(m.sum()) for m in cur.values()))
    other = count_nonzero(model) - alive          # nonzero elements outside the prunable entries
    keep = target - other
    if keep < 1:
        raise ValueError(f"{target} nonzero elements cannot be reached: {other} are outside the prunable tensors")
    n_drop = max(0, alive - keep)
    masks = global_prune_masks(criterion(model, params), n_drop / alive if alive else 0.0, cur)
    return masks


def unstructured(model: nn.Module, train_fn: Callable, eval_fn: Callable, *, optimizer_fn: Callable,
                 steps: Sequence[Tuple[int, int]], dense_epochs: int, criterion: Criterion = magnitude_scores,
                 prunable: Callable = prunable_parameters, checkpoint_dir: Optional[str] = None,
                 cycles: Optional[Sequence[int]] = None,
                 on_step: Optional[Callable[[nn.Module, BaselineRecord], None]] = None
                 ) -> Tuple[nn.Module, List[BaselineRecord]]:
    """Gradual global magnitude pruning, never minimized. ``steps``: ``(nonzeros, epochs)`` per
    step: prune (lowest ``criterion`` scores first, masks accumulating) until the model holds
    ``nonzeros`` nonzero stored elements, then train ``epochs`` with the masks held. ``cycles``
    names the Squeeze-Release cycle each step matches (default 1, 2, ...). ``model``'s
    architecture never changes: its stored size stays the dense one (``stored`` in the records).

    ``checkpoint_dir``: after every step the state dict and masks (``step_NNN.pt``, read back
    with ``weights_only=True``) and ``history.json``; a later call resumes after the last step.
    ``on_step(model, record)`` runs after each step, before its checkpoint (e.g. to fill
    ``record.test_accuracy`` for a final table)."""
    cycles = list(cycles) if cycles is not None else list(range(1, len(steps) + 1))
    base = deployable_size(model)
    records: List[BaselineRecord] = []
    masks: Optional[Dict[str, torch.Tensor]] = None
    done_epochs = 0
    hist_path = os.path.join(checkpoint_dir, "history.json") if checkpoint_dir else None
    if hist_path and os.path.exists(hist_path):
        with open(hist_path) as f:
            saved = json.load(f)
        records = [BaselineRecord(**r) for r in saved["history"]]
        if records:
            state = torch.load(saved["checkpoint"], weights_only=True)
            model.load_state_dict(state["model"])
            masks = state["masks"]
            done_epochs = records[-1].epochs_seen - dense_epochs
            log.info("unstructured: resuming after step %d", len(records))
    for i in range(len(records), len(steps)):
        target, epochs = steps[i]
        t0 = time.perf_counter()
        masks = _prune_to_nonzeros(model, target, criterion, prunable, masks)
        apply_masks(model, masks)
        if epochs > 0:
            opt = optimizer_fn(model.parameters())
            handle = hold_masks(opt, model, masks)
            try:
                train_fn(model, opt, epochs, {"phase": "unstructured", "cycle": cycles[i]})
            finally:
                handle.remove()
            apply_masks(model, masks)
        done_epochs += epochs
        nz = count_nonzero(model)
        rec = BaselineRecord(method="unstructured", params=nz, ratio=base / nz, accuracy=float(eval_fn(model)),
                             epochs_seen=dense_epochs + done_epochs, cycle=cycles[i], target_params=target,
                             stored=deployable_size(model), time_s=time.perf_counter() - t0)
        records.append(rec)
        log.info("unstructured step %d: %d nonzero (%.2fx) acc %.4f", i + 1, nz, rec.ratio, rec.accuracy)
        if on_step is not None:
            on_step(model, rec)
        if checkpoint_dir:
            os.makedirs(checkpoint_dir, exist_ok=True)
            ck = os.path.join(checkpoint_dir, f"step_{i + 1:03d}.pt")
            torch.save({"model": model.state_dict(), "masks": masks}, ck + ".tmp")
            os.replace(ck + ".tmp", ck)
            with open(hist_path + ".tmp", "w") as f:
                json.dump({"checkpoint": ck, "history": [asdict(r) for r in records]}, f, indent=1)
            os.replace(hist_path + ".tmp", hist_path)
    return model, records
