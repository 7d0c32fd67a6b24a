"""Squeeze-Release: iterative pruning with exact structural minimization.

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
   (:func:`compose_gathers`). The result is a smaller dense GraphModule with the zeros that did not
   kill a whole unit still inside its tensors.
4. **release** — those exact zeros become trainable again. Rule: in every prunable tensor ``W``
   of the minimized model, each exact zero is set to ``N(0, (α σ_W)²)`` where ``σ_W`` is the
   standard deviation of the nonzero entries of ``W`` (``α`` = ``release_scale``, default 0.05;
   a tensor with fewer than two nonzero entries uses ``σ_W = 1/sqrt(fan_in)``). The noise is
   drawn from a generator seeded by ``(seed, cycle)`` so every process of a distributed run
   draws the same. How far this moves the function is measured on the example inputs and
   recorded as ``release_drift`` = ``‖f_released(x) − f_squeezed(x)‖ / ‖f_squeezed(x)‖``.
5. **train** the released model without masks; evaluate; record; checkpoint.

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
model is minimized first and fine-tuned with its zeros held (cheaper; the same kept weights). ``eval_fn(module) -> float`` returns the accuracy (higher is
better) of an unwrapped module; under DDP rank 0's value is used on every rank.

Checkpoints (``checkpoint_dir``): ``cycle_NNN.pt2`` (a ``torch.export`` program: architecture and
weights, read back without unpickling arbitrary code) and ``history.json`` (config and one
record per cycle). ``run()`` resumes from the last completed cycle found there.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .api import minimize
from .masks import count_stored

log = logging.getLogger(__name__)

__all__ = ["SqueezeRelease", "SqueezeReleaseResult", "CycleRecord", "single_pass", "magnitude_scores",
           "TaylorScores", "lamp_scores", "unit_scores", "compose_gathers", "ShrinkTarget", "prunable_parameters", "global_prune_masks", "apply_masks", "hold_masks",
           "release", "function_drift", "deployable_size", "onnx_bytes", "train_epochs", "distillation_loss", "accuracy",
           "save_checkpoint", "load_checkpoint"]

Scores = Dict[str, torch.Tensor]
Criterion = Callable[[nn.Module, Dict[str, torch.Tensor]], Scores]


# --------------------------------------------------------------------------- helpers
def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _dist() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _rank() -> int:
    return torch.distributed.get_rank() if _dist() else 0


def deployable_size(module: nn.Module) -> int:
    """Stored parameter and buffer elements (zeros included): the deployable size."""
    return count_stored(module)


def onnx_bytes(module: nn.Module, example_inputs: tuple, strip_debug: bool = True) -> Optional[int]:
    """Size in bytes of ``module`` exported to ONNX (``torch.onnx.export``), None if export fails.

    ``strip_debug`` (default): the exporter's per-node debug metadata (``metadata_props``: Python
    stack traces, module names) is removed before measuring, leaving weights and graph. That
    metadata grows with the number of nodes, not with the weights: a minimized ConvNeXt-style
    CNN with 18,897 stored elements measured 210,694 bytes with it and 91,835 without (its
    LayerNorm compensation adds nodes), so with it the bytes would not track the model's size."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.onnx")
        try:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, example_inputs, path, dynamo=True, external_data=False,
                                  verbose=False)
        except Exception as exc:  # noqa: BLE001 - a size probe must not end a run
            log.warning("ONNX export failed: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:200])
            return None
        if strip_debug:
            import onnx

            from .onnx_export import strip_debug_metadata

            proto = onnx.load(path)
            strip_debug_metadata(proto)
            onnx.save(proto, path)
        return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def prunable_parameters(model: nn.Module) -> Dict[str, nn.Parameter]:
    """Floating-point parameters with at least two dims (Linear / conv weights), by name."""
    return {n: p for n, p in _unwrap(model).named_parameters() if p.is_floating_point() and p.dim() >= 2}


def _is_index_select(n) -> bool:
    return n.op == "call_function" and n.target in (torch.ops.aten.index_select.default, torch.index_select) \
        and len(n.args) == 3 and not n.kwargs and getattr(n.args[2], "op", None) == "get_attr"


def _owner(root: nn.Module, target: str):
    mod, _, name = target.rpartition(".")
    return (root.get_submodule(mod) if mod else root), name


def compose_gathers(module: nn.Module) -> int:
    """Fold chains of ``index_select`` along the same dim with constant indices into one.

    Each Squeeze-Release cycle that removes input channels (FC: pixels) makes the minimized model
    gather them with an ``index_select`` whose int64 index is a stored buffer; the next cycle
    gathers from that gather. ``index_select(index_select(x, d, a), d, b) == index_select(x, d,
    a[b])`` exactly, so the chain is replaced by one gather and the deployable size counts one
    index instead of one per cycle. Works in place on a ``torch.fx.GraphModule`` (anything else is
    left alone); returns the number of gathers removed."""
    import torch.fx as fx

    if not isinstance(module, fx.GraphModule):
        return 0
    graph, removed = module.graph, 0
    changed = True
    while changed:
        changed = False
        for outer in list(graph.nodes):
            if not _is_index_select(outer):
                continue
            inner = outer.args[0]
            if not (isinstance(inner, fx.Node) and _is_index_select(inner) and inner.args[1] == outer.args[1]
                    and len(inner.users) == 1):
                continue
            a_node, b_node = inner.args[2], outer.args[2]
            a_owner, a_name = _owner(module, a_node.target)
            b_owner, b_name = _owner(module, b_node.target)
            a, b = getattr(a_owner, a_name), getattr(b_owner, b_name)
            composed = a[b].clone()
            if b_name in b_owner._buffers:
                b_owner._buffers[b_name] = composed
            else:
                setattr(b_owner, b_name, composed)
            outer.args = (inner.args[0], outer.args[1], b_node)
            graph.erase_node(inner)
            if not a_node.users:
                graph.erase_node(a_node)
                if a_name in a_owner._buffers:
                    del a_owner._buffers[a_name]
                else:
                    delattr(a_owner, a_name)
            removed += 1
            changed = True
    if removed:
        graph.lint()
        module.recompile()
    return removed


# --------------------------------------------------------------------------- criteria
def magnitude_scores(model: nn.Module, params: Dict[str, torch.Tensor]) -> Scores:
    """Magnitude criterion: the score of an entry is ``|w|``."""
    return {n: p.detach().abs().float() for n, p in params.items()}


def lamp_scores(model: nn.Module, params: Dict[str, torch.Tensor]) -> Scores:
    """Layer-adaptive magnitude (LAMP, Lee et al. 2021): with a tensor's entries sorted by
    ``|w|`` ascending, the score of entry ``u`` is ``w_u² / Σ_{v ≥ u} w_v²``. Makes global
    ranking fair across tensors of different scale: each tensor's largest entry scores 1, so no
    tensor is ever emptied, and small layers (the ones whose units die first) are not spared."""
    out = {}
    for n, p in params.items():
        w2 = p.detach().float().reshape(-1) ** 2
        order = torch.argsort(w2, stable=True)
        sorted_w2 = w2[order]
        tail = torch.flip(torch.cumsum(torch.flip(sorted_w2, [0]), 0), [0])
        s = torch.empty_like(w2)
        s[order] = sorted_w2 / tail.clamp_min(1e-30)
        out[n] = s.reshape(p.shape)
    return out


def unit_scores(model: nn.Module, params: Dict[str, torch.Tensor]) -> Scores:
    """Magnitude weighted towards whole units: the score of ``W[i, j, ...]`` is
    ``|w| · (r_i / mean r) · (c_j / mean c)`` with ``r_i`` the L2 norm of output row ``i`` and
    ``c_j`` that of input column ``j`` of the same tensor. Entries of weak rows and columns rank
    lower together, so a prune fraction empties more whole rows (units) and columns (inputs),
    which is what the squeeze can remove; within a unit the order is still by magnitude."""
    out = {}
    for n, p in params.items():
        w = p.detach().float().abs()
        w2 = w.reshape(w.shape[0], w.shape[1], -1) ** 2
        r = w2.sum((1, 2)).sqrt()
        c = w2.sum((0, 2)).sqrt()
        r = r / r.mean().clamp_min(1e-30)
        c = c / c.mean().clamp_min(1e-30)
        shape = [-1, 1] + [1] * (w.dim() - 2)
        out[n] = w * r.reshape(shape) * c.reshape([1, -1] + [1] * (w.dim() - 2))
    return out


class TaylorScores:
    """First-order Taylor criterion: ``|w · ∂L/∂w|`` summed over ``batches`` (Molchanov et al.).

    ``loss_fn(model, batch) -> scalar loss``; ``batches``: an iterable re-iterated on each call
    (a list, or a loader), of which the first ``max_batches`` are used. Estimates how much the
    loss changes when the entry is set to zero.
    """

    def __init__(self, loss_fn: Callable[[nn.Module, Any], torch.Tensor], batches: Iterable, max_batches: int = 8):
        self.loss_fn, self.batches, self.max_batches = loss_fn, batches, max_batches

    def __call__(self, model: nn.Module, params: Dict[str, torch.Tensor]) -> Scores:
        scores = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
        for i, batch in enumerate(self.batches):
            if i >= self.max_batches:
                break
            for p in params.values():
                p.grad = None
            self.loss_fn(model, batch).backward()
            for n, p in params.items():
                if p.grad is not None:
                    scores[n] += (p.detach() * p.grad.detach()).abs().float()
        model.zero_grad(set_to_none=True)
        return scores


def global_prune_masks(scores: Scores, fraction: float, current: Optional[Dict[str, torch.Tensor]] = None
                       ) -> Dict[str, torch.Tensor]:
    """Masks (True keeps) dropping ``fraction`` of the entries still kept in ``current`` (default:
    all), the lowest scores first, ranked together across all tensors. Ties broken by order.
    Entries scored ``+inf`` are never dropped (a criterion's way to protect them)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"prune fraction must be in [0, 1], got {fraction}")
    names = list(scores)
    cur = {n: (current[n].bool() if current is not None and n in current else torch.ones_like(scores[n], dtype=torch.bool))
           for n in names}
    flat = torch.cat([torch.where(cur[n], scores[n].float(), torch.full_like(scores[n], math.inf, dtype=torch.float32)).reshape(-1)
                      for n in names])
    alive = int(sum(int(c.sum()) for c in cur.values()))
    n_drop = min(int(round(fraction * alive)), int(torch.isfinite(flat).sum()))  # +inf: never pruned
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if n_drop > 0:
        keep[torch.argsort(flat, stable=True)[:n_drop]] = False
    masks, off = {}, 0
    for n in names:
        k = scores[n].numel()
        masks[n] = keep[off:off + k].reshape(scores[n].shape) & cur[n]
        off += k
    return masks


def apply_masks(model: nn.Module, masks: Dict[str, torch.Tensor]) -> None:
    """Multiply each named parameter by its mask, in place."""
    params = dict(_unwrap(model).named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(m.to(params[n].dtype))


def hold_masks(optimizer: torch.optim.Optimizer, model: nn.Module, masks: Dict[str, torch.Tensor]):
    """Reapply ``masks`` after every ``optimizer.step()``; returns the hook handle."""
    def _hook(opt, args, kwargs):
        apply_masks(model, masks)
    return optimizer.register_step_post_hook(_hook)


def release(model: nn.Module, scale: float, generator: Optional[torch.Generator] = None) -> Dict[str, Any]:
    """Set every exact zero of every prunable tensor to ``N(0, (scale·σ)²)``, σ = std of the
    tensor's nonzero entries (``1/sqrt(fan_in)`` if it has fewer than two). Returns counts."""
    released, total = 0, 0
    per_tensor = {}
    with torch.no_grad():
        for n, p in prunable_parameters(model).items():
            zero = p == 0
            nz = p[~zero]
            total += p.numel()
            if not bool(zero.any()):
                continue
            fan_in = p[0].numel()
            sigma = float(nz.float().std()) if nz.numel() >= 2 else 1.0 / math.sqrt(max(fan_in, 1))
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.dtype) * (scale * sigma)
            p.copy_(torch.where(zero, noise, p))
            k = int(zero.sum())
            released += k
            per_tensor[n] = {"released": k, "of": p.numel(), "sigma": sigma}
    return {"released": released, "of": total, "per_tensor": per_tensor}


def function_drift(reference: nn.Module, candidate: nn.Module, inputs: tuple) -> float:
    """``‖candidate(x) − reference(x)‖₂ / ‖reference(x)‖₂`` on ``inputs`` (no grad)."""
    with torch.no_grad():
        a, b = reference(*inputs), candidate(*inputs)
    return float((b - a).norm() / a.norm().clamp_min(1e-12))


# --------------------------------------------------------------------------- training helpers
def train_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable, epochs: int, *,
                 loss_fn: Callable = F.cross_entropy, desc: str = "train", progress: bool = True,
                 lr_schedule: str = "constant", teacher: Optional[nn.Module] = None,
                 distill_alpha: float = 0.5, distill_temperature: float = 4.0) -> float:
    """Plain supervised loop with a progress bar per epoch; returns the last epoch's mean loss.

    ``teacher``: knowledge distillation (Hinton et al., 2015) from a fixed model, e.g. the dense
    model Squeeze-Release started from. The loss becomes
    ``(1 − α)·loss_fn(z, y) + α·T²·KL(softmax(z_t/T) ‖ softmax(z/T))`` with ``z`` the model's
    logits, ``z_t`` the teacher's (evaluated in eval mode without gradients), ``α`` =
    ``distill_alpha`` and ``T`` = ``distill_temperature`` (:func:`distillation_loss`).

    ``lr_schedule``: ``"constant"`` or ``"cosine"`` (the optimizer's learning rates decay to zero
    along a half cosine over the ``epochs`` of this call, stepped every batch, and are restored
    at the end, so each call, e.g. each phase of a cycle, runs its own schedule)."""
    from tqdm.auto import tqdm

    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    base = [g["lr"] for g in optimizer.param_groups]
    try:
        n_batches = len(loader)  # type: ignore[arg-type]
    except TypeError:
        n_batches = None
    total_steps = (n_batches or 0) * epochs
    step = 0
    model.train()
    if teacher is not None:
        if not 0.0 <= distill_alpha <= 1.0 or distill_temperature <= 0:
            raise ValueError(f"distill_alpha must be in [0, 1] and distill_temperature > 0, got "
                             f"{distill_alpha}, {distill_temperature}")
        teacher.eval()
    last = float("nan")
    for ep in range(epochs):
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"{desc} epoch {ep + 1}/{epochs}", leave=False, disable=not progress,
                   mininterval=2.0)
        for x, y in bar:
            if lr_schedule == "cosine" and total_steps:
                f = 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
                for g, b in zip(optimizer.param_groups, base):
                    g["lr"] = b * f
                step += 1
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = loss_fn(out, y)
            if teacher is not None:
                with torch.no_grad():
                    z_t = teacher(x)
                loss = distillation_loss(out, z_t, loss, distill_alpha, distill_temperature)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        last = total / max(count, 1)
        log.debug("%s epoch %d/%d loss %.4f", desc, ep + 1, epochs, last)
    for g, b in zip(optimizer.param_groups, base):
        g["lr"] = b
    return last


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, hard_loss: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """``(1 − α)·hard_loss + α·T²·KL(softmax(z_t/T) ‖ softmax(z/T))``, the KL averaged over the
    batch. The ``T²`` keeps the soft term's gradient scale independent of ``T``."""
    t = temperature
    soft = F.kl_div(F.log_softmax(logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                    reduction="batchmean", log_target=True) * (t * t)
    return (1.0 - alpha) * hard_loss + alpha * soft


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, in [0, 1]."""
    was = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
    model.train(was)
    return correct / max(x.shape[0], 1)


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(module: nn.Module, example_inputs: tuple, path: str) -> None:
    """Write ``module`` (architecture and weights) as a ``torch.export`` program (``.pt2``)."""
    from .capture import batch_dynamic_shapes

    module = _unwrap(module)
    # the example inputs are stored in the program: a view (x_train[:16]) would store its whole
    # base tensor (the training set) in every checkpoint, so copy them
    example_inputs = tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in example_inputs)
    was = module.training
    module.eval()
    try:
        ep = torch.export.export(module, example_inputs, dynamic_shapes=batch_dynamic_shapes(example_inputs),
                                 strict=False)
    finally:
        module.train(was)
    tmp = path + ".partial.pt2"
    torch.export.save(ep, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> nn.Module:
    """Read a ``.pt2`` checkpoint back as a trainable module (no arbitrary unpickling)."""
    import torch.fx as fx

    ep_module = torch.export.load(path).module()
    # ep.module() refuses .train(); rebuild a plain GraphModule over the same graph (without the
    # export guard call) so the checkpoint can be trained on like the module that was saved
    graph = ep_module.graph
    for n in list(graph.nodes):
        if n.op == "call_module" and str(n.target) == "_guards_fn":
            graph.erase_node(n)
    m = fx.GraphModule(ep_module, graph, class_name="MinimizedModule")
    for attr in ("_in_spec", "_out_spec"):
        if hasattr(ep_module, attr):
            setattr(m, attr, getattr(ep_module, attr))
    m.recompile()
    for p in m.parameters():
        p.requires_grad_(True)
    return m


# --------------------------------------------------------------------------- records
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


def _shapes(module: nn.Module) -> Dict[str, List[int]]:
    return {n: list(p.shape) for n, p in prunable_parameters(module).items()}


def _channels_removed(result) -> int:
    return int(sum(size - kept for size, kept in result.report.removed.values())) if result.report.removed else 0


def _broadcast(value):
    if not _dist():
        return value
    obj = [value]
    torch.distributed.broadcast_object_list(obj, src=0)
    return obj[0]


# --------------------------------------------------------------------------- size-targeted schedule
class ShrinkTarget:
    """A schedule that picks each cycle's prune fraction by bisection so that the squeeze keeps
    about ``keep`` of the cycle's deployable size (e.g. 0.6: each cycle removes ~40%).

    For a candidate fraction the masks are applied to a copy and the copy is minimized without
    verification (``steps`` times per cycle, between ``lo`` and ``hi``); the smallest fraction
    reaching the size is used. The fraction found is recorded in the history. How many units a
    fraction kills changes from cycle to cycle (after release the surviving weights are dense
    again and evenly spread), so a fixed fraction shrinks less and less; this one does not.

    ``sizes``: absolute deployable sizes to aim at, one per cycle (cycle ``k`` aims at
    ``sizes[k-1]``; later cycles fall back to ``keep``), e.g. ``[round(n0 / r) for r in (2, 5,
    10, 39)]`` to measure a model at exactly those compressions. A target at or above the
    current size falls back to ``keep`` too (a cycle always shrinks).
    """

    def __init__(self, keep: float = 0.6, lo: float = 0.5, hi: float = 0.9995, steps: int = 7,
                 sizes: Optional[Sequence[int]] = None):
        if not 0 < keep < 1:
            raise ValueError(f"keep must be in (0, 1), got {keep}")
        if sizes is not None and any(int(v) <= 0 for v in sizes):
            raise ValueError(f"sizes must be positive element counts, got {list(sizes)}")
        self.keep, self.lo, self.hi, self.steps = keep, lo, hi, steps
        self.sizes = [int(v) for v in sizes] if sizes is not None else None

    def __repr__(self) -> str:
        extra = f", sizes={self.sizes}" if self.sizes else ""
        return f"ShrinkTarget(keep={self.keep}, lo={self.lo}, hi={self.hi}, steps={self.steps}{extra})"

    def target(self, current: int, cycle: Optional[int] = None) -> float:
        """The deployable size cycle ``cycle`` aims at, from the ``current`` size."""
        if self.sizes and cycle is not None and 1 <= cycle <= len(self.sizes) and self.sizes[cycle - 1] < current:
            return float(self.sizes[cycle - 1])
        return self.keep * current

    def search(self, module: nn.Module, scores: Scores, example_inputs: tuple, cycle: Optional[int] = None) -> float:
        import copy

        target = self.target(deployable_size(module), cycle)
        lo, hi = self.lo, self.hi

        def size_at(f: float) -> int:
            trial = copy.deepcopy(_unwrap(module)).eval()
            apply_masks(trial, global_prune_masks(scores, f))
            small = minimize(trial, example_inputs, verify_result=False).module
            compose_gathers(small)
            return deployable_size(small)

        if size_at(hi) > target:
            return hi
        for _ in range(self.steps):
            mid = (lo + hi) / 2
            if size_at(mid) <= target:
                hi = mid
            else:
                lo = mid
        return hi


# --------------------------------------------------------------------------- the cycle
def _per_cycle(value, cycle: int):
    """``value`` itself, or item ``cycle``-1 of a sequence (the last repeating)."""
    if isinstance(value, (list, tuple)):
        return value[min(cycle - 1, len(value) - 1)]
    return value


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
                 carry_checkpoint: bool = False):
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

    # -- pieces -----------------------------------------------------------------
    def fraction(self, cycle: int) -> float:
        s = self.schedule
        if callable(s):
            return float(s(cycle))
        return float(_per_cycle(s, cycle))

    def epochs(self, cycle: int) -> tuple:
        """``(finetune, train)`` epochs of cycle ``cycle``."""
        return int(_per_cycle(self.finetune_epochs, cycle)), int(_per_cycle(self.train_epochs, cycle))

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
                           "release_scale": self.release_scale, "do_release": self.do_release, "seed": self.seed},
                "history": [asdict(r) for r in history]}
        tmp = self._history_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self._history_path())

    def _checkpoint(self, module: nn.Module, cycle: int) -> Optional[str]:
        if not self.checkpoint_dir:
            return None
        path = os.path.join(self.checkpoint_dir, f"cycle_{cycle:03d}.pt2")
        if _rank() == 0:
            save_checkpoint(module, self.example_inputs, path)
        if _dist():
            torch.distributed.barrier()
        return path

    def _resume(self):
        hp = self._history_path()
        if not hp or not os.path.exists(hp):
            return None
        with open(hp) as f:
            data = json.load(f)
        history = [CycleRecord(**r) for r in data["history"]]
        if not history or not history[-1].checkpoint or not os.path.exists(history[-1].checkpoint):
            return None
        module = load_checkpoint(history[-1].checkpoint)
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
        apply_masks(module, masks)
        if not self.shrink_before_finetune:
            self._train(module, finetune_epochs, {"cycle": cycle, "phase": "finetune"}, masks)
        module.eval()
        res = minimize(module, self.example_inputs)
        small = res.module
        if compose_gathers(small):
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
        acc = self._eval(small)
        epochs = finetune_epochs + (train_epochs if self.do_release else 0)
        rec = CycleRecord(cycle=cycle, params=params_out, ratio=params_unpruned / params_out,
                          channels_removed=_channels_removed(res) if params_out < params_in else 0, prune_fraction=frac,
                          accuracy=acc, accuracy_pruned=acc_pruned, release_drift=drift, released=released,
                          epochs=epochs, epochs_total=epochs_before + epochs, time_s=time.perf_counter() - t0,
                          shapes=_shapes(small))
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
                               accuracy=self._eval(module), time_s=time.perf_counter() - t0, shapes=_shapes(module))
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
                module = load_checkpoint(rec.checkpoint)
            history.append(rec)
            log.info("squeeze-release %s", rec.line())
            stop = self._stop(rec, params_unpruned)
            self._write_history(history, params_unpruned, stop)
        log.info("squeeze-release stopped: %s", stop)
        return SqueezeReleaseResult(module, history, params_unpruned, stop)


# --------------------------------------------------------------------------- baseline
def single_pass(model: nn.Module, example_inputs: tuple, train_fn: Callable, eval_fn: Callable[[nn.Module], float], *,
                optimizer_fn: Callable, sparsity: float, epochs: int, criterion: Criterion = magnitude_scores,
                params_unpruned: Optional[int] = None, shrink_before_finetune: bool = True,
                prunable: Callable[[nn.Module], Dict[str, nn.Parameter]] = prunable_parameters) -> tuple:
    """Baseline: prune once to ``sparsity``, fine-tune ``epochs`` with the masks held, minimize.

    With ``shrink_before_finetune`` (default) the pruned model is minimized first and the
    fine-tuning runs on the smaller model with its zeros held: the same optimisation of the
    same kept weights, much cheaper when the budget is large.

    Returns ``(minimized module, CycleRecord)`` (cycle 1; ``accuracy`` is the minimized model's).
    ``model`` is modified (pruned and trained in place): pass a copy to keep it.
    """
    sr = SqueezeRelease(model, example_inputs, train_fn, eval_fn, optimizer_fn=optimizer_fn, schedule=sparsity,
                        criterion=criterion, finetune_epochs=epochs, train_epochs=0, do_release=False,
                        measure_pruned=False, shrink_before_finetune=shrink_before_finetune, prunable=prunable)
    params_unpruned = params_unpruned or deployable_size(model)
    module, rec = sr.cycle(model, 1, params_unpruned, 0)
    return module, rec
