"""The dynamo graph as a module, for :mod:`fxminimize.compile_backend`.

* :func:`plan_inputs` classifies a dynamo graph's placeholders: frozen weights (parameters and
  buffers of the compiled module), user tensors, and sizes of user tensors (dynamic shapes).
* :func:`frozen_module` holds the weights as attributes of a module whose ``forward`` takes
  the user tensors only: what :func:`fxminimize.minimize` captures and rewrites.
* :func:`dynamic_dims` says which dims of each user tensor dynamo made dynamic (symbolic in
  the placeholder's ``example_value``): once dynamo has seen a second sequence length or image
  size it recompiles the graph with that dim symbolic, and the backend then asks ``minimize``
  for a graph with the same dims symbolic (``dynamic_sizes``).
* :class:`Runner` calls the minimized graph at run time. A dim that is static in the minimized
  graph (the plan needed its size: the capture pinned it, or capturing it symbolic failed) is
  checked on every call; a call at another size of such a dim runs the original graph, and
  the compile-time log names the dim. Every other dim is free. With a next backend
  (``then``), the minimized graph is handed on once per shape when all its dims are static,
  and once as a dynamic graph (``torch.compile(..., dynamic=True)`` with that backend)
  when some are free, so a new sequence length does not recompile.
"""
from __future__ import annotations

import logging
import re
from typing import Optional

import torch
import torch.fx as fx
import torch.nn as nn

from .capture import input_symbols
from .ir import static_int

log = logging.getLogger("fxminimize.compile_backend")

_SEG = re.compile(r"\._(?:modules|parameters|buffers)\['([^']*)'\]")


def _source_name(node: fx.Node) -> str:
    ga = node.meta.get("grapharg")
    src = getattr(ga, "source", None)
    if src is None:
        return ""
    name = getattr(src, "name", "")
    return name() if callable(name) else str(name)


def _frozen_kind(node: fx.Node, value) -> Optional[str]:
    """'parameter' / 'buffer' for a placeholder that holds module state, else None."""
    if not isinstance(value, torch.Tensor):
        return None
    src = _source_name(node)
    if isinstance(value, nn.Parameter) or "._parameters[" in src:
        return "parameter"
    if "._buffers[" in src:
        return "buffer"
    return None


def _fqn(node: fx.Node) -> str:
    """``L['self']._modules['fc1']._parameters['weight']`` → ``fc1.weight``."""
    segs = _SEG.findall(_source_name(node))
    return ".".join(segs) if segs else ""


class Frozen(nn.Module):
    """The captured graph with its parameter/buffer inputs held as attributes.

    ``forward(*user_inputs)`` rebuilds the graph's full argument list: frozen tensors from the
    attributes, user tensors in order, and size placeholders (dynamic shapes) from the size of
    the tensor they were taken from."""

    def __init__(self, gm: fx.GraphModule, slots, frozen):
        super().__init__()
        self.graph_module = gm
        self._slots = slots          # per placeholder: ("frozen", attr path) | ("user", j) | ("size", j, dim)
        for path, kind, t in frozen:
            owner = self
            *mods, leaf = path.split(".")
            for m in mods:
                if m not in owner._modules:
                    owner.add_module(m, nn.Module())
                owner = owner._modules[m]
            if kind == "parameter":
                owner.register_parameter(leaf, t if isinstance(t, nn.Parameter)
                                         else nn.Parameter(t, requires_grad=False))
            else:
                owner.register_buffer(leaf, t)

    def _call(self, *user):
        args = []
        for s in self._slots:
            if s[0] == "frozen":
                args.append(self.get_parameter(s[1]) if s[2] == "parameter" else self.get_buffer(s[1]))
            elif s[0] == "user":
                args.append(user[s[1]])
            else:
                args.append(user[s[1]].size(s[2]))
        return self.graph_module(*args)



def frozen_module(gm, slots, frozen) -> Frozen:
    """A :class:`Frozen` whose ``forward`` takes exactly the user inputs, by position (export
    needs one named argument per input, not ``*args``)."""
    n = sum(1 for s in slots if s[0] == "user")
    names = ", ".join(f"x{i}" for i in range(n))
    ns = {}
    exec(f"def forward(self, {names}):\n    return self._call({names})\n", ns)  # noqa: S102 - fixed template
    cls = type("FrozenGraph", (Frozen,), {"forward": ns["forward"]})
    return cls(gm, slots, frozen)


def plan_inputs(gm: fx.GraphModule, example_inputs):
    """Classify the placeholders. Returns (slots, frozen, user_examples) or a reason."""
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(phs) != len(example_inputs):
        return f"{len(phs)} placeholders but {len(example_inputs)} example inputs"
    slots, frozen, user, user_src = [], [], [], {}
    used_paths = set()
    pending_sizes = []
    for i, (n, v) in enumerate(zip(phs, example_inputs)):
        kind = _frozen_kind(n, v)
        if kind is not None:
            path = _fqn(n) or re.sub(r"\W", "_", n.name)
            if path in used_paths or any(p.startswith(path + ".") or path.startswith(p + ".") for p in used_paths):
                path = re.sub(r"\W", "_", n.name)
            used_paths.add(path)
            frozen.append((path, kind, v.detach() if kind == "buffer" else v))
            slots.append(("frozen", path, kind))
        elif isinstance(v, torch.Tensor):
            user_src[_source_name(n)] = len(user)
            slots.append(("user", len(user)))
            user.append(v)
        elif isinstance(v, (int, torch.SymInt)):
            src = getattr(n.meta.get("grapharg"), "source", None)
            pending_sizes.append((i, src, n))
            slots.append(None)
        else:
            return f"unsupported graph input {n.name} of type {type(v).__name__}"
    for i, src, n in pending_sizes:
        base = getattr(src, "base", None)
        prop = getattr(getattr(src, "prop", None), "name", str(getattr(src, "prop", "")))
        idx = getattr(src, "idx", None)
        bname = base.name() if callable(getattr(base, "name", None)) else getattr(base, "name", None)
        if base is None or "SIZE" not in str(prop).upper() or idx is None or bname not in user_src:
            return f"size input {n.name} ({_source_name(n)}) is not the size of a graph input"
        slots[i] = ("size", user_src[bname], int(idx))
    if not frozen:
        return "the graph reads no parameters or buffers"
    return slots, frozen, user


def flat_module(gm: fx.GraphModule):
    """A copy of a canonical module (pytree codegen) taking and returning flat tensors, as
    dynamo backends expect, and a function that puts its outputs back into the structure the
    canonical module returns (``None`` and constant outputs included)."""
    g = fx.Graph()
    env = {}
    for n in gm.graph.nodes:
        if n.op == "output":
            outs = list(n.args[0]) if isinstance(n.args[0], (list, tuple)) else [n.args[0]]
            g.output(tuple(env[o] if isinstance(o, fx.Node) else o for o in outs))
        else:
            env[n] = g.node_copy(n, lambda m: env[m])
    info = getattr(gm.graph._codegen, "pytree_info", None)
    out_spec = getattr(info, "out_spec", None)

    def restore(flat):
        return torch.utils._pytree.tree_unflatten(list(flat), out_spec) if out_spec is not None else flat
    return fx.GraphModule(gm, g, "FxMinimizedGraph"), restore




def dynamic_dims(gm: fx.GraphModule, slots) -> list:
    """Per user input (in order): the set of dims dynamo made dynamic, read from the symbolic
    sizes of the placeholder's ``example_value`` and from the size placeholders."""
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    out = {s[1]: set() for s in slots if s[0] == "user"}
    for n, s in zip(phs, slots):
        if s[0] == "user":
            ev = n.meta.get("example_value")
            if isinstance(ev, torch.Tensor):
                out[s[1]] |= {d for d, v in enumerate(ev.shape)
                              if isinstance(v, torch.SymInt) and static_int(v) is None}
        elif s[0] == "size":
            out[s[1]].add(s[2])
    return [out[j] for j in sorted(out)]


def shapes_of(xs) -> tuple:
    return tuple(tuple(x.shape) if isinstance(x, torch.Tensor) else x for x in xs)


def static_reason(res) -> str:
    """Why the minimized graph keeps the example's sizes (the report's note), or ''."""
    return next((n for n in res.report.notes if n.startswith("only the example's sizes")), "")


class Runner:
    """Calls the minimized graph ``small`` on the user tensors (see the module doc).
    ``__call__(xs)`` returns ``(outputs, None)``, or ``(None, reason)`` when ``xs`` needs the
    original graph."""

    def __init__(self, index: int, small: fx.GraphModule, user: list, dyn: list, then_fn, hand_on,
                 why_static: str = ""):
        self.small, self.then_fn, self.hand_on = small, then_fn, hand_on
        syms = input_symbols(small)
        if len(syms) != len(user):   # not one placeholder per user tensor: trust no dim to be free
            syms = [{}] * len(user)
        self.shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else None for t in user]
        #: per user input: the dims whose size the minimized graph was made for
        self.fixed = [[d for d in range(len(s)) if d not in sym] if s is not None else []
                      for s, sym in zip(self.shapes, syms)]
        self.free = any(sym for sym in syms)
        self.compiled = {}   # input shapes (or "dynamic") → (function of the next backend, restore)
        needed = [(j, d) for j, dims in enumerate(dyn) for d in sorted(dims) if d in self.fixed[j]]
        if needed:
            log.warning("fxminimize backend: graph %d: the minimized graph needs the size of %s, which dynamo "
                        "made dynamic; calls at other sizes run the original graph%s", index,
                        ", ".join(f"input {j} dim {d} (compiled at {self.shapes[j][d]})" for j, d in needed),
                        f" ({why_static})" if why_static else "")

    def mismatch(self, xs) -> Optional[str]:
        for j, (s, a) in enumerate(zip(self.shapes, xs)):
            if s is None:
                continue
            if a.dim() != len(s):
                return f"input {j} has {a.dim()} dims, the minimized graph takes {len(s)}"
            for d in self.fixed[j]:
                if a.shape[d] != s[d]:
                    return (f"input {j} dim {d} is {a.shape[d]}, the minimized graph needs {s[d]} (its plan "
                            f"depends on that size); input shape {tuple(a.shape)} differs from the compiled {s}")
        return None

    def __call__(self, xs):
        why = self.mismatch(xs)
        if why:
            return None, why
        if self.then_fn is None:
            return self.small(*xs), None   # returns the graph's own output structure
        k = "dynamic" if self.free else shapes_of(xs)
        fn = self.compiled.get(k)
        if fn is None:
            flat, restore = flat_module(self.small)
            if self.free:   # one dynamic graph for every size the minimized graph accepts
                hand_on = self.hand_on
                fn = (torch.compile(flat, backend=lambda g, ex: hand_on(g, ex), dynamic=True), restore)
            else:
                fn = (self.hand_on(flat, xs), restore)
            self.compiled[k] = fn
        return fn[1](fn[0](*xs)), None
