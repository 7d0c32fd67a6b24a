"""Squeeze-Release: iterative pruning with exact structural minimization (the cycle).

One *cycle* on a dense model ``M`` (the user's trained model in cycle 1):

1. **prune** — score every entry of the prunable tensors (floating parameters with at least two
   dims: Linear and conv weights; biases, norms and layer scales are never pruned) with the
   criterion (default :func:`magnitude_scores`, ``|w|``; also built in: :class:`TaylorScores`,
   ``|w · ∂L/∂w|``; :func:`lamp_scores`; :func:`unit_scores`, magnitude weighted by the norms of
   the entry's row and column so whole units and inputs die together) and zero the fraction ``p_k`` (the schedule) of the lowest-scoring
   entries, ranked globally over all prunable tensors.
2. **fine-tune** with the masks held: the optimizer gets a step post-hook that multiplies every
   pruned tensor by its mask after each ``optimizer.step()``, so the zeros stay exact zeros.
3. **squeeze** — :func:`fxminimize.minimize` removes every unit the zeros make dead or constant
   (exactly; verified); chained input gathers left by earlier cycles are folded into one
   (:func:`fxminimize.passes.gathers.compose_gathers`). The result is a smaller dense GraphModule with the zeros that did not
   kill a whole unit still inside its tensors.
4. **release** — those exact zeros become trainable again. Rule: in every prunable tensor ``W``
   of the minimized model, each exact zero is set to ``N(0, (α σ_W)²)`` where ``σ_W`` is the
   standard deviation of the nonzero entries of ``W`` (``α`` = ``release_scale``, default 0.05;
   a tensor with fewer than two nonzero entries uses ``σ_W = 1/sqrt(fan_in)``). The noise is
   drawn from a generator seeded by ``(seed, cycle)`` so every process of a distributed run
   draws the same. How far this moves the function is measured on the example inputs and
   recorded as ``release_drift`` = ``‖f_released(x) − f_squeezed(x)‖ / ‖f_squeezed(x)‖``.
5. **train** the released model without masks; evaluate; record; checkpoint.

``do_release=False`` gives iterative pruning *without* release (a baseline): step 4 is skipped,
entries already zero are never unmasked again, and step 5 trains the same ``train_epochs`` with
every zero of the minimized model held, so the epochs match the run with release.

The run stops when a cycle removes no unit (the deployable size did not shrink), when the
deployable size reaches ``target_params`` (or ``target_ratio``), when the accuracy falls below
``accuracy_floor``, or after ``max_cycles``.

*Deployable size* (:func:`deployable_size`) = stored parameter and buffer elements of the
minimized dense model, zeros inside it included (the int64 index buffers of input gathers too);
``ratio`` = deployable size of the unpruned model / that.

The training step is the user's: ``train_fn(model, optimizer, epochs, info)`` trains ``model``
(wrapped in ``DistributedDataParallel`` when ``torch.distributed`` is initialised) for ``epochs``
epochs with ``optimizer`` (built by ``optimizer_fn(parameters)`` afresh after every shrink,
since the parameters are new tensors). ``info`` is a dict with ``cycle`` and ``phase``
(``"finetune"`` or ``"train"``). With ``shrink_before_finetune=True`` steps 2 and 3 swap: the pruned
model is minimized first and fine-tuned with its zeros held (cheaper; the same kept weights). ``eval_fn(module) -> float``
returns the accuracy (higher is better) of an unwrapped module on **held-out** data (:func:`.data.holdout`; the
records, the floor and any cycle you pick read it: never the test set); under DDP rank 0's value is used on every rank.

Checkpoints (``checkpoint_dir``): ``cycle_NNN.pt2`` (a ``torch.export`` program: architecture and
weights, read back without unpickling arbitrary code) and ``history.json`` (config and one
record per cycle, including the squeeze's self-check: ``max_abs_error`` and ``verified_checks``
of :func:`fxminimize.minimize`'s report). ``run()`` resumes from the last completed cycle found there.

``keep_modules=True`` (module mode; graph mode is the default): each squeeze is
``minimize(..., keep_modules=True)`` and the cycle carries ``result.module``, a resized copy of
the user's class, forward; the record's self-check is the module-mode result's own
(``report.module_mode``); ``compose_gathers`` is skipped (module mode inserts no gathers);
checkpoints are ``cycle_NNN/`` directories of :func:`fxminimize.checkpoint.save_pretrained`
(safetensors + JSON), read back by :func:`fxminimize.checkpoint.load_pretrained` into a deep copy
of ``model`` (whose architecture the cycle never changes). See docs/module_mode.md.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch
import torch.fx as fx
import torch.nn as nn

from ..api import minimize
from ..passes.gathers import compose_gathers
from .checkpoints import cycle_checkpoint_path, load_cycle_checkpoint, save_cycle_checkpoint
from .criteria import (Criterion, apply_masks, global_prune_masks, hold_masks, magnitude_scores,
                       prunable_parameters, release)
from .loops import _broadcast, _dist, _rank
from .measure import channels_removed, deployable_size, prunable_shapes
from .schedules import ShrinkTarget, per_cycle

log = logging.getLogger(__name__)

__all__ = ["SqueezeRelease", "SqueezeReleaseResult", "CycleRecord", "single_pass"]


@dataclass
class CycleRecord:
    """One line of the history (cycle 0 is the starting dense model)."""

    cycle: int
    params: int                  # deployable size after this cycle's squeeze
    ratio: float                 # unpruned deployable size / params
    channels_removed: int        # channel elements removed by this squeeze, summed over all channel spaces
    prune_fraction: float
    accuracy: float              # after release and training (the model carried forward)
    accuracy_pruned: Optional[float] = None   # the squeezed model before release (same size)
    release_drift: Optional[float] = None
    released: Optional[int] = None
    epochs: int = 0              # training epochs spent in this cycle
    epochs_total: int = 0        # cumulative
    time_s: float = 0.0
    shapes: Dict[str, List[int]] = field(default_factory=dict)
    checkpoint: Optional[str] = None
    # minimize's self-check of this cycle's squeeze (result.report): the worst absolute error of the
    # minimized model against the pruned one and the number of checks it ran (None: no squeeze)
    max_abs_error: Optional[float] = None
    verified_checks: Optional[int] = None

    def line(self) -> str:
        acc_p = f" pruned {100 * self.accuracy_pruned:.2f}%" if self.accuracy_pruned is not None else ""
        drift = f" drift {self.release_drift:.3g}" if self.release_drift is not None else ""
        return (f"cycle {self.cycle}: params {self.params:,} ({self.ratio:.2f}x) removed {self.channels_removed} channels, "
                f"acc {100 * self.accuracy:.2f}%{acc_p}{drift}, {self.time_s:.1f}s")


@dataclass
class SqueezeReleaseResult:
    module: nn.Module                       # the last model (released and trained)
    history: List[CycleRecord]
    params_unpruned: int
    stop_reason: str

    def best(self, accuracy_floor: float = 0.0) -> Optional[CycleRecord]:
        """The smallest cycle whose accuracy is at least ``accuracy_floor``."""
        ok = [r for r in self.history if r.accuracy >= accuracy_floor]
        return min(ok, key=lambda r: (r.params, -r.accuracy)) if ok else None


class SqueezeRelease:
    """The Squeeze-Release cycle (see the module docstring).

    ``schedule``: the fraction of the (dense) prunable entries pruned in each cycle: a float, a
    sequence (cycle k uses item k-1, the last repeating), ``callable(cycle) -> float``, or a
    :class:`ShrinkTarget` (the fraction that shrinks the deployable size by a set factor).
    ``criterion``: ``callable(model, {name: param}) -> {name: scores}``; higher scores are kept.
    ``prunable``: ``callable(model) -> {name: param}``, the tensors scored and masked (default
    :func:`prunable_parameters`; include 1-D tensors such as norm weights or layer scales when a
    structured criterion must zero them to make a channel constant).
    ``finetune_epochs``, ``train_epochs``: epochs of the masked fine-tuning and of the training
    after release, an int or a sequence (cycle k uses item k-1, the last repeating; e.g. cheap
    early cycles and a long last one for a run whose cycle count is known).
    ``carry_checkpoint``: start each cycle from the checkpoint just written (read back with
    :func:`load_checkpoint`, a graph of aten ops) instead of the in-memory minimized module; the
    same weights and function, as a resumed run would see them.
    ``keep_modules``: squeeze in module mode, keeping the user's class from cycle to cycle
    (module docstring); checkpoints are then safetensors + JSON directories.
    """

    def __init__(self, model: nn.Module, example_inputs: tuple, train_fn: Callable, eval_fn: Callable[[nn.Module], float],
                 *, optimizer_fn: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
                 schedule: Union[float, Sequence[float], Callable[[int], float]] = 0.8,
                 criterion: Criterion = magnitude_scores, finetune_epochs: Union[int, Sequence[int]] = 1,
                 train_epochs: Union[int, Sequence[int]] = 1, release_scale: float = 0.05, do_release: bool = True,
                 max_cycles: int = 20,
                 target_params: Optional[int] = None, target_ratio: Optional[float] = None,
                 accuracy_floor: Optional[float] = None, checkpoint_dir: Optional[str] = None,
                 seed: int = 0, ddp_kwargs: Optional[dict] = None, measure_pruned: bool = True,
                 shrink_before_finetune: bool = False,
                 prunable: Callable[[nn.Module], Dict[str, nn.Parameter]] = prunable_parameters,
                 carry_checkpoint: bool = False, keep_modules: bool = False):
        self.model = model
        self.example_inputs = example_inputs
        self.train_fn, self.eval_fn, self.optimizer_fn = train_fn, eval_fn, optimizer_fn
        self.schedule, self.criterion = schedule, criterion
        self.finetune_epochs, self.train_epochs = finetune_epochs, train_epochs
        self.release_scale, self.do_release = release_scale, do_release
        self.max_cycles = max_cycles
        self.target_params, self.target_ratio, self.accuracy_floor = target_params, target_ratio, accuracy_floor
        self.checkpoint_dir, self.seed = checkpoint_dir, seed
        self.ddp_kwargs = ddp_kwargs or {}
        self.measure_pruned = measure_pruned
        self.shrink_before_finetune = shrink_before_finetune
        self.prunable = prunable
        self.carry_checkpoint = carry_checkpoint
        self.keep_modules = keep_modules

    # -- pieces -----------------------------------------------------------------
    def fraction(self, cycle: int) -> float:
        s = self.schedule
        if callable(s):
            return float(s(cycle))
        return float(per_cycle(s, cycle))

    def epochs(self, cycle: int) -> tuple:
        """``(finetune, train)`` epochs of cycle ``cycle``."""
        return int(per_cycle(self.finetune_epochs, cycle)), int(per_cycle(self.train_epochs, cycle))

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP-wrap ``module`` when torch.distributed is initialised (syncs weights from rank 0)."""
        if _dist():
            return nn.parallel.DistributedDataParallel(module, **self.ddp_kwargs)
        return module

    def _train(self, module: nn.Module, epochs: int, info: dict, masks=None) -> None:
        if epochs <= 0:
            return
        wrapped = self.wrap(module)
        opt = self.optimizer_fn(module.parameters())
        handle = hold_masks(opt, module, masks) if masks else None
        try:
            self.train_fn(wrapped, opt, epochs, info)
        finally:
            if handle is not None:
                handle.remove()
        if masks:
            apply_masks(module, masks)

    def _eval(self, module: nn.Module) -> float:
        return float(_broadcast(self.eval_fn(module)))

    def _history_path(self) -> Optional[str]:
        return os.path.join(self.checkpoint_dir, "history.json") if self.checkpoint_dir else None

    def _write_history(self, history: List[CycleRecord], params_unpruned: int, stop: Optional[str]) -> None:
        if not self.checkpoint_dir or _rank() != 0:
            return
        data = {"params_unpruned": params_unpruned, "stop_reason": stop,
                "config": {"schedule": self.schedule if isinstance(self.schedule, (int, float, list, tuple))
                           else repr(self.schedule),
                           "criterion": getattr(self.criterion, "__name__", type(self.criterion).__name__),
                           "finetune_epochs": self.finetune_epochs, "train_epochs": self.train_epochs,
                           "release_scale": self.release_scale, "do_release": self.do_release, "seed": self.seed,
                           "keep_modules": self.keep_modules},
                "history": [asdict(r) for r in history]}
        tmp = self._history_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self._history_path())

    def _checkpoint(self, module: nn.Module, cycle: int) -> Optional[str]:
        if not self.checkpoint_dir:
            return None
        path = cycle_checkpoint_path(self.checkpoint_dir, cycle, self.keep_modules)
        if _rank() == 0:
            save_cycle_checkpoint(module, self.example_inputs, path)
        if _dist():
            torch.distributed.barrier()
        return path

    def _load(self, path: str) -> nn.Module:
        return load_cycle_checkpoint(path, self.model)

    def _resume(self):
        hp = self._history_path()
        if not hp or not os.path.exists(hp):
            return None
        with open(hp) as f:
            data = json.load(f)
        history = [CycleRecord(**r) for r in data["history"]]
        if not history or not history[-1].checkpoint or not os.path.exists(history[-1].checkpoint):
            return None
        module = self._load(history[-1].checkpoint)
        log.info("resuming after cycle %d from %s", history[-1].cycle, history[-1].checkpoint)
        return module, history, data["params_unpruned"], data.get("stop_reason")

    def _stop(self, rec: CycleRecord, params_unpruned: int) -> Optional[str]:
        if rec.channels_removed == 0:
            return "a cycle removed no unit"
        if self.accuracy_floor is not None and rec.accuracy < self.accuracy_floor:
            return f"accuracy {rec.accuracy:.4f} below the floor {self.accuracy_floor}"
        if self.target_params is not None and rec.params <= self.target_params:
            return f"reached the target size {self.target_params}"
        if self.target_ratio is not None and rec.ratio >= self.target_ratio:
            return f"reached the target ratio {self.target_ratio}"
        if rec.cycle >= self.max_cycles:
            return f"max_cycles={self.max_cycles}"
        return None

    # -- one cycle --------------------------------------------------------------
    def cycle(self, module: nn.Module, cycle: int, params_unpruned: int, epochs_before: int):
        """Run cycle ``cycle`` on the dense ``module``; returns ``(new module, record)``."""
        t0 = time.perf_counter()
        finetune_epochs, train_epochs = self.epochs(cycle)
        module.train()
        params_in = deployable_size(module)
        params = self.prunable(module)
        scores = self.criterion(module, params)
        if _dist():  # keep the ranks identical even for data-dependent criteria
            for s in scores.values():
                torch.distributed.all_reduce(s)
        if isinstance(self.schedule, ShrinkTarget):
            frac = self.schedule.search(module, scores, self.example_inputs, cycle)
        else:
            frac = self.fraction(cycle)
        masks = global_prune_masks(scores, frac)
        if not self.do_release:
            # without release a zero never comes back: entries already zero stay masked
            masks = {n: m & (params[n].detach() != 0) for n, m in masks.items()}
        apply_masks(module, masks)
        if not self.shrink_before_finetune:
            self._train(module, finetune_epochs, {"cycle": cycle, "phase": "finetune"}, masks)
        module.eval()
        res = minimize(module, self.example_inputs, keep_modules=self.keep_modules)
        small = res.module
        mm = res.report.module_mode if self.keep_modules else None
        if mm is not None and deployable_size(small) >= params_in and mm["graph_elements"] < params_in:
            log.warning("module mode did not shrink cycle %d (graph mode would store %d of %d elements): %s", cycle,
                        mm["graph_elements"], params_in, "; ".join(res.report.notes) or "no note")
        if not isinstance(small, fx.GraphModule):
            # module mode resizes the user's modules and inserts no input gathers: nothing to compose
            log.debug("compose_gathers skipped: %s is not a GraphModule", type(small).__name__)
        elif compose_gathers(small):
            # exact by construction; checked anyway on the example inputs
            with torch.no_grad():
                ref, got = module(*self.example_inputs), small(*self.example_inputs)
            if not torch.allclose(ref, got, rtol=1e-5, atol=1e-5):
                raise RuntimeError("compose_gathers changed the function")
        for p in small.parameters():
            p.requires_grad_(True)
        if self.shrink_before_finetune:
            # the same fine-tuning on the already minimized model (its zeros held): every kept
            # weight sees the same gradient; only the fold of removed constant units into the
            # next bias differs (a fixed fold instead of a trainable dead bias)
            small_masks = {n: p != 0 for n, p in prunable_parameters(small).items()}
            self._train(small, finetune_epochs, {"cycle": cycle, "phase": "finetune"}, small_masks)
        params_out = deployable_size(small)
        acc_pruned = self._eval(small) if self.measure_pruned else None
        drift = released = None
        if self.do_release:
            with torch.no_grad():
                out_before = small(*self.example_inputs)
            gen = torch.Generator().manual_seed(self.seed * 100003 + cycle)
            released = release(small, self.release_scale, gen)["released"]
            with torch.no_grad():
                out_after = small(*self.example_inputs)
            drift = float((out_after - out_before).norm() / out_before.norm().clamp_min(1e-12))
            self._train(small, train_epochs, {"cycle": cycle, "phase": "train"})
        elif train_epochs > 0:
            # iterative pruning without release: the same training, the zeros held
            held = {n: p.detach() != 0 for n, p in prunable_parameters(small).items()}
            self._train(small, train_epochs, {"cycle": cycle, "phase": "train"}, held)
        acc = self._eval(small)
        epochs = finetune_epochs + train_epochs
        # the self-check of the module carried forward (module mode: its own verification)
        check = mm if mm is not None and "max_abs_error" in mm else {
            "max_abs_error": res.report.max_abs_error, "verified_checks": res.report.verified_checks}
        rec = CycleRecord(cycle=cycle, params=params_out, ratio=params_unpruned / params_out,
                          channels_removed=channels_removed(res, self.keep_modules) if params_out < params_in else 0,
                          prune_fraction=frac,
                          accuracy=acc, accuracy_pruned=acc_pruned, release_drift=drift, released=released,
                          epochs=epochs, epochs_total=epochs_before + epochs, time_s=time.perf_counter() - t0,
                          shapes=prunable_shapes(small), max_abs_error=float(check["max_abs_error"]),
                          verified_checks=int(check["verified_checks"]))
        return small, rec

    # -- the run ------------------------------------------------------------------
    def run(self, resume: bool = True) -> SqueezeReleaseResult:
        if self.checkpoint_dir and _rank() == 0:
            os.makedirs(self.checkpoint_dir, exist_ok=True)
        state = self._resume() if resume else None
        if state is not None:
            module, history, params_unpruned, stop = state
            if stop is not None:
                return SqueezeReleaseResult(module, history, params_unpruned, stop)
        else:
            module = self.model
            params_unpruned = deployable_size(module)
            t0 = time.perf_counter()
            rec0 = CycleRecord(cycle=0, params=params_unpruned, ratio=1.0, channels_removed=0, prune_fraction=0.0,
                               accuracy=self._eval(module), time_s=time.perf_counter() - t0, shapes=prunable_shapes(module))
            rec0.checkpoint = self._checkpoint(module, 0)
            history = [rec0]
            log.info("squeeze-release %s", rec0.line())
            self._write_history(history, params_unpruned, None)
        stop = None
        while stop is None:
            k = history[-1].cycle + 1
            module, rec = self.cycle(module, k, params_unpruned, history[-1].epochs_total)
            rec.checkpoint = self._checkpoint(module, k)
            if self.carry_checkpoint and rec.checkpoint:
                module = self._load(rec.checkpoint)
            history.append(rec)
            log.info("squeeze-release %s", rec.line())
            stop = self._stop(rec, params_unpruned)
            self._write_history(history, params_unpruned, stop)
        log.info("squeeze-release stopped: %s", stop)
        return SqueezeReleaseResult(module, history, params_unpruned, stop)


def single_pass(model: nn.Module, example_inputs: tuple, train_fn: Callable, eval_fn: Callable[[nn.Module], float], *,
                optimizer_fn: Callable, sparsity: float, epochs: int, criterion: Criterion = magnitude_scores,
                params_unpruned: Optional[int] = None, shrink_before_finetune: bool = True,
                prunable: Callable[[nn.Module], Dict[str, nn.Parameter]] = prunable_parameters,
                keep_modules: bool = False) -> tuple:
    """Baseline: prune once to ``sparsity``, fine-tune ``epochs`` with the masks held, minimize
    (``keep_modules``: in module mode, as :class:`SqueezeRelease`).

    With ``shrink_before_finetune`` (default) the pruned model is minimized first and the
    fine-tuning runs on the smaller model with its zeros held: the same optimisation of the
    same kept weights, much cheaper when the budget is large.

    Returns ``(minimized module, CycleRecord)`` (cycle 1; ``accuracy`` is the minimized model's).
    ``model`` is modified (pruned and trained in place): pass a copy to keep it.
    """
    sr = SqueezeRelease(model, example_inputs, train_fn, eval_fn, optimizer_fn=optimizer_fn, schedule=sparsity,
                        criterion=criterion, finetune_epochs=epochs, train_epochs=0, do_release=False,
                        measure_pruned=False, shrink_before_finetune=shrink_before_finetune, prunable=prunable,
                        keep_modules=keep_modules)
    return sr.cycle(model, 1, params_unpruned or deployable_size(model), 0)
