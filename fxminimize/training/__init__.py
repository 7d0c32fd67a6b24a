"""Squeeze-Release: iterative pruning with exact structural minimization (a user of the
compiler pass, :func:`fxminimize.minimize`).

* :mod:`.criteria`: pruning criteria, masks, release of exact zeros;
* :mod:`.schedules`: per-cycle prune fractions, :class:`ShrinkTarget` (size-targeted search);
* :mod:`.loops`: :func:`train_epochs`, :func:`accuracy`, distillation, DDP helpers;
* :mod:`.measure`: :func:`deployable_size`, :func:`onnx_bytes`, :func:`function_drift`;
* :mod:`.checkpoints`: ``.pt2`` checkpoints;
* :mod:`.cycle`: :class:`SqueezeRelease` (the cycle, described there) and :func:`single_pass`;
* :mod:`.data`: Fashion-MNIST from IDX files, with a fixed validation split; :func:`holdout`,
  the same split for any tensors (score every choice on it, never on the test set);
* :mod:`.baselines`: the five budget-matched baselines (single pass, one-shot with release,
  iterative without release, same shape from scratch, unstructured magnitude);
* :mod:`.comparison`: :func:`run_comparison`, one seed of Squeeze-Release against them, resumable.

The graph rewrite that folds chained input gathers is a pass: :func:`fxminimize.passes.gathers.compose_gathers`.
"""
from .baselines import METHODS, BaselineRecord, count_nonzero, epochs_seen
from .checkpoints import load_checkpoint, save_checkpoint
from .comparison import run_comparison
from .criteria import (Criterion, Scores, TaylorScores, apply_masks, global_prune_masks, hold_masks, lamp_scores,
                       magnitude_scores, prunable_parameters, release, unit_scores)
from .cycle import CycleRecord, SqueezeRelease, SqueezeReleaseResult, single_pass
from .data import TensorLoader, holdout
from .loops import accuracy, distillation_loss, train_epochs
from .measure import deployable_size, function_drift, onnx_bytes
from .schedules import ShrinkTarget, per_cycle

__all__ = ["SqueezeRelease", "SqueezeReleaseResult", "CycleRecord", "single_pass", "ShrinkTarget", "per_cycle",
           "magnitude_scores", "TaylorScores", "lamp_scores", "unit_scores", "prunable_parameters",
           "global_prune_masks", "apply_masks", "hold_masks", "release", "Scores", "Criterion",
           "train_epochs", "distillation_loss", "accuracy", "deployable_size", "onnx_bytes", "function_drift",
           "save_checkpoint", "load_checkpoint", "METHODS", "BaselineRecord", "count_nonzero", "epochs_seen",
           "run_comparison", "holdout", "TensorLoader"]
