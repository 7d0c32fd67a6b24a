"""Channel analysis: from a canonical FX graph to an immutable removal :class:`Plan`.

Model
-----
A *channel space* is one dimension of one FX value (a tensor produced by a node) that some op
rule declares to be a channel dimension: the output rows of a Linear, dim 1 of a conv, and
whatever elementwise ops, adds, concats, reshapes and permutes propagate them to. Each space
of size C contributes C *elements* (channel indices) to one global numbering.

Op rules add *coupling edges* between elements (``couple``). The networkx graph
``space_graph`` has one node per space and one edge per coupled pair of spaces; its connected
components are the *channel groups* reported to the user. At element level the same edges,
vectorised, are handed to ``scipy.sparse.csgraph.connected_components``: each component is a
*unit*, the set of channel indices that are removed together or not at all. Index maps
(offsets, block maps) are computed once per edge, when the edge is added.

Two facts per element:

* value (forward, one topological pass): CONST(v) — input-independent and uniform over every
  other dimension, ZERO being CONST(0) — or LIVE. Values do not change when channels are
  removed (the rewrite preserves the function), so one pass suffices.
* use (backward): an element is *required* when a kept consumer cannot compute its kept outputs
  without it: it reads it with a nonzero weight and cannot absorb it as a constant, or it is a
  model output, or it is read by a barrier.

A unit is kept iff it contains a required element; keeping a unit keeps all its elements,
which may require more inputs (a residual stream channel kept for one reader is computed in
every writer). ``require`` is monotone, so iterating "kept units → required inputs" reaches
the least fixpoint. Rounds grow with depth, but the loop is a worklist: after the first reverse
pass, a rule runs again only when the kept channels it reads changed, so the total work is
linear in depth (``Plan.rule_calls``; tests/test_scaling.py).
"""
from __future__ import annotations

import logging
import time
from types import MappingProxyType
from typing import Mapping, Optional

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
import torch
import torch.fx as fx

from fxminimize import passes as rules
from fxminimize.passes.ops import attention
from fxminimize.passes.restore import OUTPUT
from ..ir import is_tensor, module_path, shape, static_int, tensor_inputs
from .context import RuleContext
from .plan import BarrierInfo, GroupInfo, Plan, _frozen

log = logging.getLogger(__name__)


class ChannelAnalysis:
    """Builds the channel graph of a canonical GraphModule and computes a :class:`Plan`."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.nodes: list[fx.Node] = list(gm.graph.nodes)
        self.consts: dict[fx.Node, torch.Tensor] = {}
        for n in self.nodes:
            if n.op == "get_attr":
                obj = gm
                for part in str(n.target).split("."):
                    obj = getattr(obj, part)
                if isinstance(obj, torch.Tensor):
                    self.consts[n] = obj.detach()
        self.ax: dict[fx.Node, int] = {}
        self.native: dict[fx.Node, bool] = {}
        self.off: dict[fx.Node, int] = {}
        self.size: dict[fx.Node, int] = {}
        self._barriers: dict[fx.Node, str] = {}
        self._barrier_hint: dict[fx.Node, str] = {}
        self._ea: list[np.ndarray] = []
        self._eb: list[np.ndarray] = []
        self.space_graph = nx.Graph()
        self.total = 0
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.claimed: dict[fx.Node, rules.Rule] = {}
        self.regions: dict[str, attention.Region] = {}
        self.kept_now = np.zeros(0, dtype=bool)
        self.memo: dict = {}
        self.rule_calls = 0
        self.cx = RuleContext(self)

    # ----------------------------------------------------------------- helpers for rules
    def rule(self, n: fx.Node) -> rules.Rule:
        if n in self.claimed:
            return self.claimed[n]
        if n.op == "call_function":
            return rules.lookup(n.target)
        if n.op == "output":
            return OUTPUT
        if n.op == "call_module":
            return rules.BARRIER
        return rules.IGNORE

    def tensor(self, n) -> Optional[torch.Tensor]:
        """The constant tensor behind a get_attr node (None otherwise)."""
        return self.consts.get(n) if isinstance(n, fx.Node) else None

    def axis_of(self, n) -> Optional[int]:
        return self.ax.get(n) if isinstance(n, fx.Node) else None

    def sl(self, n: fx.Node) -> slice:
        o = self.off[n]
        return slice(o, o + self.size[n])

    def const_of(self, n: fx.Node) -> tuple[np.ndarray, np.ndarray]:
        s = self.sl(n)
        return self.const[s], self.cval[s]

    def set_value(self, n: fx.Node, mask: np.ndarray, val: np.ndarray) -> None:
        s = self.sl(n)
        mask = np.asarray(mask, dtype=bool)
        val = np.where(mask, np.asarray(val, dtype=np.float64), 0.0)
        bad = mask & ~np.isfinite(val)
        mask = mask & ~bad
        self.const[s] = mask
        self.cval[s] = np.where(mask, val, 0.0)

    def couple(self, x: fx.Node, y: fx.Node, ix: np.ndarray, iy: np.ndarray, kind: str) -> None:
        """Couple element ``ix[k]`` of ``x`` with element ``iy[k]`` of ``y`` for all k."""
        if x not in self.off or y not in self.off or len(ix) == 0:
            return
        self._ea.append(self.off[x] + np.asarray(ix, dtype=np.int64))
        self._eb.append(self.off[y] + np.asarray(iy, dtype=np.int64))
        self.space_graph.add_edge(x.name, y.name, kind=kind)

    def couple_identity(self, x: fx.Node, y: fx.Node, kind: str = "elementwise") -> None:
        if x in self.off and y in self.off:
            if self.size[x] != self.size[y]:
                raise AssertionError(f"identity coupling of unequal spaces {x} {y}")
            idx = np.arange(self.size[x])
            self.couple(x, y, idx, idx, kind)

    def need(self, x, mask: Optional[np.ndarray], by: fx.Node) -> None:
        """Mark elements of ``x`` required (all of them when ``mask`` is None)."""
        if not isinstance(x, fx.Node) or x not in self.off:
            return
        s = self.sl(x)
        new = ~self.req[s] if mask is None else (np.asarray(mask, dtype=bool) & ~self.req[s])
        if new.any():
            self.why[s][new] = self.index.get(by, -1)
            self.req[s] |= new

    def mark_barrier(self, n: fx.Node, reason: str) -> None:
        self._barriers.setdefault(n, reason)

    def hint_barrier(self, n: fx.Node, reason: str) -> None:
        """A rule that declines records why (used when it then acts as a barrier)."""
        self._barrier_hint.setdefault(n, reason)

    def barrier_reason(self, n: fx.Node) -> Optional[str]:
        return self._barrier_hint.get(n)

    # ----------------------------------------------------------------- phases
    def run(self) -> Plan:
        t0 = time.perf_counter()
        self._axes()
        self._allocate()
        for n in self.nodes:
            if n in self.off and self.native.get(n):
                self.rule(n).couple(self.cx, n)
        self._tie()
        for n in self.nodes:
            if n in self.off and self.native.get(n):
                self.rule(n).value(self.cx, n)
        self._units()
        self._require()
        return self._stamped_plan(t0)

    def widen(self, extra: Mapping[str, np.ndarray]) -> Plan:
        """After :meth:`run`: the plan again with the channels in ``extra`` (node name → bool
        mask) required as well, and everything they need in turn (module mode's constraints).
        ``req`` only grows and the rules are monotone, so resuming the fixpoint from the current
        requirements gives the least fixpoint of the rules plus ``extra``; spaces, couplings,
        values and units are reused."""
        t0 = time.perf_counter()
        by_name = {n.name: n for n in self.off}
        for name, mask in extra.items():
            self.need(by_name[name], mask, by_name[name])
        self._require()
        return self._stamped_plan(t0)

    def _stamped_plan(self, t0: float) -> Plan:
        """The plan, with the analysis time since ``t0``, the rule calls and fixpoint rounds."""
        plan = self._plan()
        object.__setattr__(plan, "timings", MappingProxyType({"analysis": time.perf_counter() - t0}))
        object.__setattr__(plan, "rule_calls", self.rule_calls)
        object.__setattr__(plan, "fixpoint_rounds", self.rounds)
        return plan

    def _axes(self) -> None:
        for n in self.nodes:
            if n.op == "call_function" and n not in self.claimed and attention.is_candidate(n):
                self._claim_attention(n)
            if n.op == "call_function" and is_tensor(n):
                ax = self.rule(n).axis(self.cx, n)
                if ax is not None:
                    self.ax[n] = ax % len(shape(n)) if len(shape(n)) else ax
                    self.native[n] = True
            if n not in self.ax and is_tensor(n) and n.op != "get_attr":
                declared = set()
                for u in n.users:
                    if u.op == "call_function":
                        d = self.rule(u).declare(self.cx, u, n)
                        if d is not None:
                            declared.add(d % len(shape(n)))
                if len(declared) == 1:
                    self.ax[n] = declared.pop()
                    self.native[n] = False

    def _claim_attention(self, sdpa: fx.Node) -> None:
        """Match the attention region around ``sdpa``: its interior nodes lose their spaces and
        the merged output gets the region's rule (:mod:`fxminimize.passes.ops.attention`)."""
        res = attention.claim(self.cx, sdpa)
        if res is None:
            return
        region, claimed, o_in, out_rule = res
        for c in claimed:
            self.claimed[c] = attention.INTERIOR
            self.ax.pop(c, None)
            self.native.pop(c, None)
        self.claimed[o_in] = out_rule
        self.regions[o_in.name] = region

    def _allocate(self) -> None:
        off = 0
        for n in self.nodes:
            if n in self.ax:
                c = static_int(shape(n)[self.ax[n]])
                if c is None:
                    del self.ax[n]
                    self.native.pop(n, None)
                    continue
                self.off[n] = off
                self.size[n] = c
                self.space_graph.add_node(n.name, size=c)
                off += c
        self.total = off
        self.const = np.zeros(off, dtype=bool)
        self.cval = np.zeros(off, dtype=np.float64)
        self.req = np.zeros(off, dtype=bool)
        self.why = np.full(off, -1, dtype=np.int64)

    def _tie(self) -> None:
        """Tied weights: every space that slices the same dim of one constant is coupled, so all
        readers keep the same indices; a reader that cannot slice that dim pins the others."""
        by_dim: dict = {}
        for n in self.nodes:
            if n.op == "call_function" and (n in self.off or any(x in self.off for x in tensor_inputs(n))):
                for w, d, space in self.rule(n).weight_axes(self.cx, n):
                    if isinstance(w, fx.Node) and len(w.users) > 1:
                        by_dim.setdefault((w, d), []).append(space)
        self.pinned: list = []
        for (w, d), spaces in by_dim.items():
            tracked = [s for s in spaces if s is not None]
            if len(tracked) < len(spaces):
                self.pinned.extend(tracked)
            for s in tracked[1:]:
                if self.size[s] == self.size[tracked[0]]:
                    self.couple_identity(tracked[0], s, "tied")
                else:
                    self.pinned.extend(tracked)

    def _units(self) -> None:
        if self._ea:
            a = np.concatenate(self._ea)
            b = np.concatenate(self._eb)
        else:
            a = b = np.zeros(0, dtype=np.int64)
        m = sp.coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(self.total, self.total))
        self.nunits, self.unit = connected_components(m, directed=False)

    def _require(self) -> None:
        """Least fixpoint of "kept units → required inputs", as a worklist: after the first
        reverse pass, a rule runs again only when the kept channels it reads changed (its own
        output's, plus ``Rule.kept_deps``), so the total work grows with the changes, not with
        rounds × nodes."""
        order = [n for n in reversed(self.nodes) if n.op in ("call_function", "output", "call_module")]
        spaced = [n for n in self.nodes if n in self.off]
        starts = np.array([self.off[n] for n in spaced], dtype=np.int64)
        nonempty = np.array([self.size[n] > 0 for n in spaced], dtype=bool)
        watchers: dict = {}
        for n in order:
            for d in self.rule(n).kept_deps(self.cx, n):
                watchers.setdefault(d, []).append(n)
        prev = None
        rounds = calls = 0
        while True:
            rounds += 1
            unit_kept = np.zeros(self.nunits, dtype=bool)
            unit_kept[self.unit[self.req]] = True
            kept = unit_kept[self.unit]
            self.kept_now = kept
            before = int(self.req.sum())
            for s in self.pinned:
                self.need(s, None, s)  # a tied reader that cannot shrink pins the others
            if prev is None:
                todo = order
            else:
                changed = kept != prev
                dirty = set()
                if changed.any() and len(spaced):
                    per = np.zeros(len(spaced), dtype=bool)
                    per[nonempty] = np.logical_or.reduceat(changed, starts[nonempty]) if nonempty.any() else False
                    for i in np.nonzero(per)[0]:
                        n = spaced[i]
                        dirty.add(n)
                        dirty.update(watchers.get(n, ()))
                todo = [n for n in order if n in dirty]
            for n in todo:
                calls += 1
                self.rule_calls += 1
                r = self.rule(n)
                if n.op == "call_function" and n in self.off and not self.native.get(n):
                    r.require(self.cx, n, None)  # a source space: its producer computes it whole
                else:
                    r.require(self.cx, n, kept[self.sl(n)] if (n in self.off and self.native.get(n)) else None)
            prev = kept
            if int(self.req.sum()) == before:
                # no tensor loses every channel: zero-width tensors break convs, views and
                # gathers downstream, so a space with nothing kept keeps its channel 0 (this
                # is where a fully dead layer keeps one channel, see _Contraction.keeps_one)
                for n in spaced:
                    if self.size[n] and not kept[self.sl(n)].any() and any(True for _ in n.users):
                        first = np.zeros(self.size[n], dtype=bool)
                        first[0] = True
                        self.need(n, first, n)  # required by itself: a layer keeps one channel
                if int(self.req.sum()) == before:
                    break
        self.kept_units = unit_kept
        self.kept_el = kept
        self.rounds = rounds
        log.debug("use analysis converged in %d rounds, %d rule calls", rounds, calls)

    def _plan(self) -> Plan:
        keep, axis, size, cm, cv, native, unit_of, why = {}, {}, {}, {}, {}, {}, {}, {}
        for n in self.off:
            s = self.sl(n)
            keep[n.name] = _frozen(np.nonzero(self.kept_el[s])[0].astype(np.int64))
            axis[n.name] = self.ax[n]
            size[n.name] = self.size[n]
            cm[n.name] = _frozen(self.const[s].copy())
            cv[n.name] = _frozen(self.cval[s].copy())
            native[n.name] = bool(self.native.get(n))
            unit_of[n.name] = _frozen(self.unit[s].copy())
            why[n.name] = _frozen(self.why[s].copy())
        kind = {n.name: self.rule(n).kind for n in self.nodes if n.op == "call_function"}
        rules_of = {n.name: self.rule(n) for n in self.nodes if n.op == "call_function"}
        barriers = []
        for n, reason in self._barriers.items():
            kept = sum(self.size[x] for x in tensor_inputs(n) if x in self.size)
            barriers.append(BarrierInfo(n.name, getattr(n.target, "__name__", str(n.target)),
                                        module_path(n), reason, kept))
        groups = []
        by_name = {n.name: n for n in self.off}
        for i, comp in enumerate(sorted(nx.connected_components(self.space_graph),
                                        key=lambda c: min(self.off[by_name[x]] for x in c))):
            els = np.concatenate([np.arange(self.off[by_name[x]], self.off[by_name[x]] + self.size[by_name[x]])
                                  for x in comp])
            units = np.unique(self.unit[els])
            groups.append(GroupInfo(i, tuple(sorted(comp)), len(units),
                                    int((~self.kept_units[units]).sum()), len(els),
                                    int((~self.kept_el[els]).sum())))
        return Plan(MappingProxyType(axis), MappingProxyType(size), MappingProxyType(keep),
                    MappingProxyType(cm), MappingProxyType(cv), MappingProxyType(native),
                    MappingProxyType(kind), MappingProxyType(rules_of), tuple(barriers), tuple(groups),
                    nx.freeze(self.space_graph.copy()),
                    MappingProxyType(unit_of), MappingProxyType(why),
                    tuple(n.name for n in self.nodes), MappingProxyType(dict(self.regions)))




def analyze(gm: fx.GraphModule) -> Plan:
    """Run the channel analysis on a canonical GraphModule."""
    return ChannelAnalysis(gm).run()
