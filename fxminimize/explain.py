"""Why is a channel kept or removed? Provenance chains over a :class:`~fxminimize.analysis.Plan`.

The analysis records, per channel, the consumer node that first *required* it
(``Plan.required_by``) and the *unit* it belongs to (``Plan.unit_of``: channels that are kept or
removed together). This module turns those two facts into a chain that ends in a reason a user
can act on:

* a model output needs the channel,
* a *barrier* (an op without a rule) reads it, and a barrier keeps all its inputs,
* the layer would otherwise lose every channel (a layer keeps at least one),
* an op whose output has no channel space reads it.

Every other link is either "coupled with channel c' of node M" (same unit) or "read by node Z,
whose channel j is kept" (and then why j is kept).

How the chain is chosen
-----------------------
``required_by`` alone can go round in circles: inside a unit, a channel is required by an
elementwise consumer whose own channel is kept only *because the unit is kept*. So the reasons
are derived once, bottom-up, by a breadth-first search from the terminal reasons:

1. a unit is *justified* by its first member that is required by a terminal reason, or by a
   node that is already justified;
2. a node is justified as soon as one of its kept channels is (that channel is remembered);
3. a unit's justifying member (its *root*) is the channel the chain goes through.

Each link moves to a unit justified strictly earlier in the search, so every chain is finite
and as short as the search allows. A removed channel needs no chain: it is either a constant
(CONST, folded into the layers that read it) or nothing kept reads it.

:class:`Provenance` holds the search result for one plan; :func:`explain` answers one question;
:func:`describe_graph` records what the text needs to name a node (module path, op).
"""
from __future__ import annotations

import difflib
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .analysis import Plan

# step kinds (the HTML report uses the same one-letter codes)
COUPLED = "C"      #: same unit as another channel
READ = "R"         #: read by a kept consumer, for one of its kept channels
OUTPUT = "O"       #: a model output
BARRIER = "B"      #: read by a barrier
SELF = "S"         #: the layer keeps one channel
UNTRACKED = "U"    #: read by an op whose output has no channel space
UNKNOWN = "X"      #: no recorded reason (should not happen)
CONST = "K"        #: removed: constant, folded
UNUSED = "D"       #: removed: nothing kept needs it

TERMINAL = (OUTPUT, BARRIER, SELF, UNTRACKED)


@dataclass(frozen=True)
class NodeInfo:
    """What the report knows about one FX node of the analysed graph."""

    name: str
    op: str            #: FX opcode: placeholder, call_function, output, ...
    target: str        #: short op name (``linear``, ``conv2d``, ``add``...)
    module: str        #: dotted path of the innermost user module ('' if unknown)
    module_type: str   #: class name of that module ('' if unknown)
    inputs: tuple[str, ...]  #: names of the tensor nodes it reads (weights excluded)
    is_tensor: bool
    shape: tuple = ()


@dataclass(frozen=True)
class GraphInfo:
    """The data-flow graph of the analysed module, in topological order (weights left out)."""

    nodes: tuple[NodeInfo, ...]

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {n.name: n for n in self.nodes})

    def get(self, name: str) -> Optional[NodeInfo]:
        return self._by_name.get(name)  # type: ignore[attr-defined]


def describe_graph(gm) -> GraphInfo:
    """Record name, op, module path and tensor inputs of every node of a canonical GraphModule.

    ``get_attr`` nodes (weights, buffers) are left out, and so are inputs that are not tensors.
    """
    from .ir import is_tensor, module_path, tensor_inputs

    out = []
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            continue
        stack = n.meta.get("nn_module_stack") or {}
        mtype = ""
        if stack:
            cls = list(stack.values())[-1][1]
            mtype = getattr(cls, "__name__", str(cls)).rsplit(".", 1)[-1]
        ins = tuple(x.name for x in tensor_inputs(n) if x.op != "get_attr")
        target = n.op if n.op in ("placeholder", "output") else getattr(n.target, "__name__", str(n.target))
        target = target.split(".")[0] if n.op == "call_function" else target
        shp = ()
        if is_tensor(n):
            shp = tuple(int(d) if isinstance(d, int) else str(d) for d in n.meta["val"].shape)
        out.append(NodeInfo(n.name, n.op, target, module_path(n), mtype, ins, is_tensor(n), shp))
    return GraphInfo(tuple(out))


@dataclass(frozen=True)
class Step:
    """One link of a chain: channel ``channel`` of ``node`` is kept because ``kind`` (one of
    the codes above) involving ``other`` (and its channel ``other_channel``)."""

    kind: str
    node: str
    channel: int
    other: str = ""
    other_channel: int = -1
    reason: str = ""


@dataclass(frozen=True)
class Explanation:
    """The answer to "why is channel ``channel`` of ``node`` kept (or removed)?".

    ``status`` is ``"kept"`` or ``"removed"``; ``const`` is the channel's constant value when the
    analysis proved it input-independent (None otherwise); ``steps`` is the chain, ending in a
    terminal reason (empty for a removed channel). ``str()`` gives the text.
    """

    node: str
    channel: int
    status: str
    const: Optional[float]
    steps: tuple[Step, ...]
    lines: tuple[str, ...] = field(default=(), compare=False)

    @property
    def terminal(self) -> Optional[Step]:
        """The last step (the root reason), or None for a removed channel."""
        return self.steps[-1] if self.steps else None

    def __str__(self) -> str:
        return "\n".join(self.lines)


def fmt_value(v: float) -> str:
    """A constant as the report prints it (6 significant digits; the HTML report uses the same)."""
    return format(float(v), ".6g")


class Provenance:
    """The reason search for one plan (see the module docstring). Build once, ask many times."""

    def __init__(self, plan: Plan, graph: Optional[GraphInfo] = None):
        self.plan = plan
        self.graph = graph
        self.names = [n for n in plan.node_names if n in plan.size] or sorted(plan.size)
        self.tid = {n: i for i, n in enumerate(self.names)}          # tracked name -> id
        sizes = np.array([plan.size[n] for n in self.names], dtype=np.int64)
        self.off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total = int(self.off[-1])
        self.total = total
        self.el_node = np.repeat(np.arange(len(self.names)), sizes)
        self.el_chan = np.arange(total) - self.off[self.el_node]
        cat = (lambda arrs, dt: np.concatenate(arrs).astype(dt) if arrs else np.zeros(0, dt))
        self.unit = cat([np.asarray(plan.unit_of[n]) for n in self.names], np.int64)
        if plan.required_by:
            self.req = cat([np.asarray(plan.required_by[n]) for n in self.names], np.int64)
        else:
            self.req = np.full(total, -1, dtype=np.int64)
        self.kept = np.zeros(total, dtype=bool)
        for i, n in enumerate(self.names):
            self.kept[self.off[i] + np.asarray(plan.keep[n], dtype=np.int64)] = True
        self.barrier = {b.node: b for b in plan.barriers}
        self.output_names = {"output"}
        if graph is not None:
            self.output_names = {n.name for n in graph.nodes if n.op == "output"} or {"output"}
        self._search()

    # ------------------------------------------------------------------ the search
    def _search(self) -> None:
        total = self.total
        nunits = int(self.unit.max()) + 1 if total else 0
        self.root = np.full(nunits, -1, dtype=np.int64)       # unit -> justifying element
        self.node_just = np.full(len(self.names), -1, dtype=np.int64)  # tracked node -> element
        order = np.argsort(self.unit, kind="stable")
        bounds = np.searchsorted(self.unit[order], np.arange(nunits + 1))
        members = lambda u: order[bounds[u]:bounds[u + 1]]  # noqa: E731
        # elements required by each tracked requirer
        req_t = np.full(total, -1, dtype=np.int64)
        name_to_tid = np.full(len(self.plan.node_names), -1, dtype=np.int64)
        for i, n in enumerate(self.plan.node_names):
            name_to_tid[i] = self.tid.get(n, -1)
        ok = self.req >= 0
        req_t[ok] = name_to_tid[self.req[ok]]
        rorder = np.argsort(req_t, kind="stable")
        rb = np.searchsorted(req_t[rorder], np.arange(len(self.names) + 1))
        required_by_node = lambda t: rorder[rb[t]:rb[t + 1]]  # noqa: E731

        # terminal reasons, vectorised: per requirer index in plan.node_names
        nn_names = self.plan.node_names
        kind_of_req = np.array([OUTPUT if z in self.output_names else BARRIER if z in self.barrier
                                else "" if z in self.tid else UNTRACKED for z in nn_names] or [""], dtype="<U1")
        tk = np.full(total, "", dtype="<U1")
        tk[ok] = kind_of_req[self.req[ok]]
        self_req = ok & (req_t == self.el_node) & (tk == "")
        tk[self_req] = SELF
        tk[~self.kept] = ""
        self.term = {int(e): str(tk[e]) for e in np.nonzero(tk != "")[0]}
        queue: deque[int] = deque()
        for e in sorted(self.term):
            u = self.unit[e]
            if self.root[u] < 0:
                self.root[u] = e
                queue.append(int(u))
        while queue:
            u = queue.popleft()
            r = int(self.root[u])
            mem = members(u)
            for e in [r] + [int(x) for x in mem if x != r]:
                t = self.el_node[e]
                if self.node_just[t] >= 0:
                    continue
                self.node_just[t] = e
                for e2 in required_by_node(t):
                    u2 = self.unit[e2]
                    if self.root[u2] < 0 and self.kept[e2]:
                        self.root[u2] = e2
                        queue.append(int(u2))

    # ------------------------------------------------------------------ per element
    def element(self, node: str, channel: int) -> int:
        return int(self.off[self.tid[node]] + channel)

    def code(self, e: int) -> tuple[str, int, int]:
        """``(kind, other element or node id, extra)`` for element ``e``: the first link of its chain.

        COUPLED: (C, root element, 0); READ: (R, requirer's justifying element, requirer id);
        terminal kinds: (kind, requirer's index in ``plan.node_names``, 0); removed: (K|D, -1, 0).
        """
        if not self.kept[e]:
            return (CONST if self.plan.const_mask[self.names[self.el_node[e]]][self.el_chan[e]] else UNUSED, -1, 0)
        r = int(self.root[self.unit[e]])
        if r < 0:
            return (UNKNOWN, -1, 0)
        if r != e:
            return (COUPLED, r, 0)
        k = self.term.get(e)
        if k is not None:
            return (k, int(self.req[e]), 0)
        z = self.tid[self.plan.node_names[int(self.req[e])]]
        return (READ, int(self.node_just[z]), int(z))

    def chain(self, node: str, channel: int) -> list[Step]:
        """The steps for a kept channel (empty for a removed one)."""
        e = self.element(node, channel)
        steps: list[Step] = []
        seen = set()
        while e not in seen:
            seen.add(e)
            kind, other, extra = self.code(e)
            n, c = self.names[self.el_node[e]], int(self.el_chan[e])
            if kind in (CONST, UNUSED):
                break
            if kind == COUPLED:
                steps.append(Step(COUPLED, n, c, self.names[self.el_node[other]], int(self.el_chan[other])))
                e = other
                continue
            if kind == READ:
                steps.append(Step(READ, n, c, self.names[extra], int(self.el_chan[other])))
                e = other
                continue
            if kind == UNKNOWN:
                steps.append(Step(UNKNOWN, n, c))
                break
            z = self.plan.node_names[other]
            reason = self.barrier[z].reason if kind == BARRIER else ""
            steps.append(Step(kind, n, c, z, -1, reason))
            break
        return steps


# ---------------------------------------------------------------------- text
def node_label(name: str, graph: Optional[GraphInfo]) -> str:
    """``module.path (name, op)`` or ``name (op)``: how explanations name a node."""
    info = graph.get(name) if graph is not None else None
    if info is None:
        return name
    if info.module:
        return f"{info.module} ({name}, {info.target})"
    return f"{name} ({info.target})"


def step_text(s: Step, graph: Optional[GraphInfo]) -> str:
    """One line of an explanation (the HTML report renders the same wording in JavaScript)."""
    L = lambda n: node_label(n, graph)  # noqa: E731
    head = f"channel {s.channel} of {L(s.node)}"
    if s.kind == COUPLED:
        return f"{head} is coupled with channel {s.other_channel} of {L(s.other)}: they are kept or removed together"
    if s.kind == READ:
        return f"{head} is needed by {L(s.other)}, whose channel {s.other_channel} is kept"
    if s.kind == OUTPUT:
        return f"{head} is a model output"
    if s.kind == BARRIER:
        return f"{head} is read by {L(s.other)}, a barrier ({s.reason}): all its input channels are kept"
    if s.kind == SELF:
        return f"{L(s.node)} would lose every channel, and a layer keeps at least one: channel {s.channel} is that one"
    if s.kind == UNTRACKED:
        return f"{head} is read by {L(s.other)}, whose output has no channel space: all its input channels are kept"
    return f"{head}: no recorded reason (please report this model)"


def headline(node: str, channel: int, status: str, const: Optional[float], graph: Optional[GraphInfo]) -> str:
    """First line of an explanation."""
    head = f"channel {channel} of {node_label(node, graph)}"
    if status == "removed":
        if const is not None:
            return (f"{head} is removed: its value is the constant {fmt_value(const)} for every input, "
                    "so it is folded into the layers that read it")
        return f"{head} is removed: nothing that is kept needs it (no kept layer reads it with a nonzero weight)"
    if const is not None:
        return f"{head} is kept (although its value is the constant {fmt_value(const)}) because:"
    return f"{head} is kept because:"


# ---------------------------------------------------------------------- lookup
def resolve_node(plan: Plan, graph: Optional[GraphInfo], name: str) -> str:
    """Map a node name or a module path (e.g. ``encoder.stages.2.layers.4.pwconv1``) to a node name.

    A module path names the last tracked node computed inside that module (its output); when none
    is tracked, the last node of the module. Raises ``KeyError`` with close matches otherwise.
    """
    if name in plan.size or (graph is not None and graph.get(name) is not None):
        return name
    if graph is not None:
        inside = [n for n in graph.nodes if n.module == name or n.module.startswith(name + ".")]
        tracked = [n for n in inside if n.name in plan.size]
        if tracked or inside:
            return (tracked or inside)[-1].name
        pool = sorted({n.name for n in graph.nodes} | {n.module for n in graph.nodes if n.module})
    else:
        pool = sorted(plan.size)
    close = difflib.get_close_matches(name, pool, n=5, cutoff=0.5)
    raise KeyError(f"no node or module named {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))


def explain(plan: Plan, node: str, channel: int, graph: Optional[GraphInfo] = None,
            provenance: Optional[Provenance] = None) -> Explanation:
    """Explain why channel ``channel`` of ``node`` (a node name or module path) is kept or removed.

    Raises ``KeyError`` for an unknown node, ``ValueError`` for a node without a channel space or
    a channel out of range. Pass ``provenance`` to reuse the search between calls.
    """
    name = resolve_node(plan, graph, node)
    if name not in plan.size:
        raise ValueError(f"{node_label(name, graph)} has no channel space: the analysis does not track its "
                         "channels, so nothing in it can be removed")
    size = plan.size[name]
    if not isinstance(channel, (int, np.integer)) or not 0 <= channel < size:
        raise ValueError(f"channel {channel} is out of range: {node_label(name, graph)} has {size} channels "
                         f"(0..{size - 1})")
    channel = int(channel)
    prov = provenance or Provenance(plan, graph)
    kept = bool(prov.kept[prov.element(name, channel)])
    const = float(plan.const_val[name][channel]) if plan.const_mask[name][channel] else None
    status = "kept" if kept else "removed"
    steps = tuple(prov.chain(name, channel)) if kept else ()
    lines = [headline(name, channel, status, const, graph)] + ["  - " + step_text(s, graph) for s in steps]
    return Explanation(name, channel, status, const, steps, tuple(lines))
