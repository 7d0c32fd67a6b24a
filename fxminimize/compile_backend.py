"""``torch.compile`` backend: ``torch.compile(model, backend="fxminimize")``.

Registered by name through the ``torch_dynamo_backends`` entry point (pyproject.toml); the
function itself is :func:`backend` and can be passed directly (``backend=fxminimize.compile_backend.backend``).

For every graph dynamo captures (one per graph break):

1. The graph passes through unchanged, with a logged reason, when autograd is enabled at compile
   time (training, or no ``torch.no_grad()``/``torch.inference_mode()``), when it calls an op in
   training mode (dropout, batch norm with ``training=True``), when it reads no parameters or
   buffers, when it cannot be minimized exactly (:class:`~fxminimize.MinimizationError`, any
   export failure), or when nothing can be removed.
2. Otherwise its parameters and buffers are *frozen*: they become the attributes of a wrapper
   module around the graph (:mod:`fxminimize.compile_graph`), and :func:`fxminimize.minimize`
   rewrites that wrapper (it re-exports to aten, analyses, rewrites and verifies the result
   against the graph), with the same dims dynamic as dynamo's graph: none on the first compile,
   and, once dynamo has seen another batch size, sequence length or image size and recompiled
   the graph with symbolic sizes, those dims (``dynamic_batch``/``dynamic_sizes``). The
   compiled function then calls the minimized module on the graph's other inputs.
3. ``options={"then": "inductor"}`` (any backend name or callable) hands the minimized graph, or
   the unchanged one on pass-through, on to that backend: once per shape when the minimized
   graph is static, as one dynamic graph when it keeps sizes symbolic.

Outputs always equal eager: minimization is verified (:mod:`fxminimize.verify` tolerances), and
at run time the compiled function falls back to the original graph if a frozen weight was
modified in place or replaced since compiling (``Tensor._version`` / identity check), or if an
input's size differs in a dim that the minimized graph keeps static (its plan needed the size;
the log names the dim when dynamo made it dynamic). Every decision is logged (logger
``fxminimize.compile_backend``) and recorded: :func:`history` returns one :class:`GraphRecord`
per compiled graph, with the parameter counts before and after and, per call, which graph ran
(``calls``, ``minimized_calls``, ``fallbacks``).
"""
from __future__ import annotations

import collections
import inspect
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import torch
import torch.fx as fx

from .compile_graph import Runner, dynamic_dims, frozen_module, plan_inputs, shapes_of, static_reason
from .size import graph_scalar_elements, stored_elements, tensor_elements

log = logging.getLogger(__name__)

_HISTORY: List["GraphRecord"] = []
MAX_CALLS = 256
"""Calls remembered per graph in :attr:`GraphRecord.calls`."""


@dataclass
class GraphRecord:
    """What the backend did with one captured graph."""

    index: int
    status: str                      # "minimized" or "passthrough"
    reason: str = ""
    params_before: int = 0           # elements of the frozen parameters/buffers the graph read
    params_after: int = 0            # stored elements of the graph that runs (fxminimize.size)
    max_abs_error: float = 0.0
    then: Optional[str] = None
    fallbacks: int = 0               # run-time calls that fell back to the original graph
    minimized_calls: int = 0         # run-time calls that ran the minimized graph
    #: the most recent calls (at most :data:`MAX_CALLS`), oldest first: (input shapes, "minimized"
    #: or "original"), so which graph ran at each call can be checked
    calls: Any = None
    variants: int = 0                # sets of frozen weights it was minimized for
    result: Any = None               # the MinimizeResult, when minimized

    def __post_init__(self):
        if self.calls is None:
            self.calls = collections.deque(maxlen=MAX_CALLS)

    def __str__(self) -> str:
        s = f"graph {self.index}: {self.status}"
        if self.status == "minimized":
            s += f", {self.params_before:,} -> {self.params_after:,} parameters"
        if self.reason:
            s += f" ({self.reason})"
        return s


def history() -> List[GraphRecord]:
    """Records of the graphs compiled so far in this process (oldest first)."""
    return list(_HISTORY)


def clear_history() -> None:
    _HISTORY.clear()


def _training_op(gm: fx.GraphModule) -> Optional[str]:
    """An op called with ``training=True`` (dropout, batch norm in training mode), if any."""
    for n in gm.graph.nodes:
        if n.op != "call_function" or not callable(n.target):
            continue
        try:
            sig = inspect.signature(n.target)
        except (TypeError, ValueError):
            continue
        names = [p for p in ("training", "train") if p in sig.parameters]
        if not names:
            continue
        try:
            bound = sig.bind(*n.args, **n.kwargs)
            bound.apply_defaults()
        except TypeError:
            continue
        flag = bound.arguments.get(names[0])
        if flag is True or (isinstance(flag, fx.Node)):
            return f"{getattr(n.target, '__name__', n.target)} in training mode ({n.name})"
    return None


def _lookup(then):
    if then is None or callable(then):
        return then
    from torch._dynamo.backends.registry import lookup_backend
    return lookup_backend(then)


# ----------------------------------------------------------------------------- backend
MAX_VARIANTS = 8
"""Distinct sets of frozen weights one compiled graph is minimized for (see :func:`backend`)."""


def backend(gm: fx.GraphModule, example_inputs, options: Optional[dict] = None, **kwargs) -> Callable:
    """The ``fxminimize`` dynamo backend (see the module docstring).

    ``options``: ``then`` (a backend name such as ``"inductor"``, or a backend callable; default
    None: run the minimized graph eagerly), ``then_options`` (passed on to it as ``options``),
    ``verify`` (default True; False skips the verification inside :func:`fxminimize.minimize`).

    One dynamo graph can serve several modules of the same class (the blocks of a transformer
    when a graph break splits the model per block), and weights can change after compiling.
    The minimized graph is therefore keyed by the identity and version of the frozen tensors:
    a new set is minimized (and verified) on its first call, up to :data:`MAX_VARIANTS` sets,
    beyond which calls run the original graph.
    """
    options = dict(options or {})
    then = options.pop("then", None)
    then_options = options.pop("then_options", None)
    do_verify = options.pop("verify", True)
    if options:
        raise ValueError(f"fxminimize backend: unknown options {sorted(options)} "
                         "(known: then, then_options, verify)")
    then_fn = _lookup(then)
    then_name = then if isinstance(then, str) else getattr(then, "__name__", None)
    rec = GraphRecord(index=len(_HISTORY), status="passthrough", then=then_name)
    _HISTORY.append(rec)

    def hand_on(module, inputs):
        if then_fn is None:
            return module.forward
        return then_fn(module, list(inputs), **({"options": then_options} if then_options else {}))

    def passthrough(reason: str, level=logging.INFO):
        rec.reason = reason
        log.log(level, "fxminimize backend: graph %d passed through unchanged: %s", rec.index, reason)
        return hand_on(gm, example_inputs)

    if torch.is_grad_enabled():
        return passthrough("autograd is enabled (training, or no torch.no_grad()/inference_mode()): "
                           "weights cannot be frozen")
    why = _training_op(gm)
    if why:
        return passthrough(f"{why}: the model is in training mode")
    planned = plan_inputs(gm, example_inputs)
    if isinstance(planned, str):
        return passthrough(planned)
    slots, frozen, _ = planned
    frozen_pos = [i for i, s in enumerate(slots) if s[0] == "frozen"]
    user_pos = [i for i, s in enumerate(slots) if s[0] == "user"]
    dyn = dynamic_dims(gm, slots)   # per user input: the dims dynamo made dynamic
    fallback_fn = gm.forward

    def key_of(args):
        return tuple((id(args[i]), args[i]._version) for i in frozen_pos)

    def make_variant(args):
        """Minimize the graph for the frozen tensors in ``args``: a runner, or a reason string."""
        user = [args[i] for i in user_pos]
        user = [t.clone() if isinstance(t, torch.Tensor) and t.is_inference() else t for t in user]
        tensors = [(path, kind, args[i].detach() if kind == "buffer" else args[i])
                   for (path, kind, _), i in zip(frozen, frozen_pos)]
        from .api import minimize
        from .errors import MinimizationError
        try:
            wrapper = frozen_module(gm, slots, tensors).eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # export cannot trace inference tensors, and must not see dynamo's tracing context
                with torch.inference_mode(False), torch._guards.tracing(None):
                    res = minimize(wrapper, tuple(user), verify_result=do_verify, dynamic_batch=any(dyn),
                                   dynamic_sizes=any(d - {0} for d in dyn))
        except MinimizationError as exc:
            return f"cannot be minimized exactly: {str(exc).splitlines()[0]}", None
        except Exception as exc:  # noqa: BLE001 - any failure falls back to the unchanged graph
            first = str(exc).splitlines()[0] if str(exc) else ""
            return f"minimization failed ({type(exc).__name__}: {first})", None
        if not res.plan.anything_removed:
            return "nothing to remove", None
        small = res.module
        runner = Runner(rec.index, small, user, dyn, then_fn, hand_on, static_reason(res))
        before = tensor_elements(t for _, _, t in tensors) + graph_scalar_elements(gm.graph)
        after = stored_elements(small)
        return runner, (res, before, after, [args[i] for i in frozen_pos])

    variants = {}
    runner, info = make_variant(example_inputs)
    if info is None:
        return passthrough(runner, logging.INFO if runner == "nothing to remove" else logging.WARNING)
    res, rec.params_before, rec.params_after, _ = info
    variants[key_of(example_inputs)] = (runner, info)
    rec.status, rec.result, rec.max_abs_error = "minimized", res, res.report.max_abs_error
    rec.variants = 1
    log.info("fxminimize backend: graph %d minimized: %d -> %d parameters (max abs error %.3g)",
             rec.index, rec.params_before, rec.params_after, rec.max_abs_error)

    def fallback(args, why_not):
        rec.fallbacks += 1
        rec.calls.append((shapes_of(args[i] for i in user_pos), "original"))
        if rec.fallbacks == 1:
            log.warning("fxminimize backend: graph %d runs unminimized: %s", rec.index, why_not)
        return fallback_fn(*args)

    def run(*args):
        k = key_of(args)
        v = variants.get(k)
        if v is None:
            if len(variants) >= MAX_VARIANTS:
                return fallback(args, f"more than {MAX_VARIANTS} distinct sets of weights (weights changed "
                                      "in place or replaced, or one graph shared by many modules)")
            v = variants[k] = make_variant(args)   # keeps the tensors alive, so ids stay unique
            if v[1] is not None:
                rec.variants += 1
                log.info("fxminimize backend: graph %d minimized for a new set of weights: %d -> %d parameters",
                         rec.index, v[1][1], v[1][2])
            else:
                log.warning("fxminimize backend: graph %d: new set of weights %s", rec.index, v[0])
        fn, info = v
        if info is None:
            return fallback(args, fn)
        out, why_not = fn([args[i] for i in user_pos])
        if why_not:
            return fallback(args, why_not)
        rec.minimized_calls += 1
        rec.calls.append((shapes_of(args[i] for i in user_pos), "minimized"))
        return out

    run.fxminimize_record = rec
    return run
