"""Training loops and helpers for the Squeeze-Release cycle: :func:`train_epochs` (plain
supervised loop, optional distillation and cosine learning rate), :func:`accuracy`, and the
``torch.distributed`` helpers (unwrap a DDP model, rank, broadcast from rank 0)."""
from __future__ import annotations

import logging
import math
from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)

__all__ = ["train_epochs", "distillation_loss", "accuracy"]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _dist() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _rank() -> int:
    return torch.distributed.get_rank() if _dist() else 0


def _broadcast(value):
    if not _dist():
        return value
    obj = [value]
    torch.distributed.broadcast_object_list(obj, src=0)
    return obj[0]


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
