"""The minimization report: what was removed, what was kept and why."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .analysis import BarrierInfo, GroupInfo, Plan
from .explain import GraphInfo


@dataclass
class Report:
    """Summary of one ``minimize()`` call.

    ``params_before``/``params_after`` count the stored elements (zeros included) of the user's
    model and of the minimized model (:func:`fxminimize.size.stored_elements`: parameters,
    buffers, tensor constants and the compensated LayerNorms' scalars, each storage once).
    ``max_abs_error``/``verified_checks`` come from verification; ``skipped_checks`` lists the
    input sets it skipped (the original model itself raises on them), with the reason. ``groups`` are the channel groups
    (connected components of the channel graph) with their kept/removed units; ``barriers`` the
    ops without a rule (or whose rule declined), with the reason; ``removed`` maps every node
    that lost channels to ``(channels before, channels after)``. ``graph`` describes the analysed
    graph (module path and op of every node) for :meth:`explain`, :meth:`to_html` and
    :meth:`to_dot`.
    """

    params_before: int
    params_after: int
    groups: tuple[GroupInfo, ...]
    barriers: tuple[BarrierInfo, ...]
    removed: dict[str, tuple[int, int]]
    max_abs_error: float = 0.0
    verified_checks: int = 0
    skipped_checks: list = field(default_factory=list)   # SkippedCheck: input sets verification skipped
    pass_stats: dict = field(default_factory=dict)       # counters of the rewrite passes (nodes rewritten, ...)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: outputs verification passed only against the original's float64 evaluation (ill-conditioned
    #: outputs, :mod:`fxminimize.compare`): one line each, also among ``notes``
    rounding: list[str] = field(default_factory=list)
    plan: Optional[Plan] = field(default=None, repr=False)
    graph: Optional[GraphInfo] = field(default=None, repr=False)
    #: keep_modules=True: module_elements, graph_elements, beyond_module_mode (elements graph
    #: mode removes that module mode keeps)
    module_mode: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.params_before / max(1, self.params_after)

    @property
    def groups_removed(self) -> int:
        """Groups that lost at least one unit."""
        return sum(1 for g in self.groups if g.units_removed)

    @property
    def groups_kept(self) -> int:
        return sum(1 for g in self.groups if not g.units_removed)

    def to_dict(self) -> dict:
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "ratio": self.ratio,
            "groups": [g.__dict__ for g in self.groups],
            "barriers": [b.__dict__ for b in self.barriers],
            "removed": {k: list(v) for k, v in self.removed.items()},
            "max_abs_error": self.max_abs_error,
            "verified_checks": self.verified_checks,
            "skipped_checks": [{"label": c.label, "reason": c.reason} for c in self.skipped_checks],
            "pass_stats": dict(self.pass_stats),
            "timings": dict(self.timings),
            "notes": list(self.notes),
            "rounding": list(self.rounding),
        }

    def __str__(self) -> str:
        lines = [f"params: {self.params_before:,} -> {self.params_after:,} ({self.ratio:.2f}x smaller)",
                 f"channel groups: {len(self.groups)} ({self.groups_removed} shrunk, {self.groups_kept} unchanged)",
                 f"verified: max abs error {self.max_abs_error:.3g} over {self.verified_checks} output checks"]
        lines.extend(f"  skipped {c.label}: {c.reason}" for c in self.skipped_checks)
        for name, (a, b) in list(self.removed.items())[:20]:
            lines.append(f"  {name}: {a} -> {b} channels")
        if len(self.removed) > 20:
            lines.append(f"  ... {len(self.removed) - 20} more")
        idle: dict[str, int] = {}
        for bi in self.barriers:
            if not bi.channels_kept:  # reads no channel space (masks, positions): blocks nothing
                idle[bi.op] = idle.get(bi.op, 0) + 1
                continue
            lines.append(f"barrier {bi.node} ({bi.op}{' in ' + bi.module if bi.module else ''}): {bi.reason}; "
                         f"{bi.channels_kept} input channels kept")
        if idle:
            ops = ", ".join(f"{op} x{k}" if k > 1 else op for op, k in sorted(idle.items()))
            lines.append(f"{sum(idle.values())} ops without a rule read no channels, so they block nothing: {ops}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    # ------------------------------------------------------------------ explanations and views
    def _provenance(self):
        if self.plan is None:
            raise ValueError("this report has no plan: explanations need the analysis result")
        prov = self.__dict__.get("_prov")
        if prov is None or prov.plan is not self.plan:
            from .explain import Provenance
            prov = Provenance(self.plan, self.graph)
            self.__dict__["_prov"] = prov
        return prov

    def explanation(self, node: str, channel: int):
        """The structured :class:`~fxminimize.explain.Explanation` behind :meth:`explain`."""
        from .explain import explain
        prov = self._provenance()
        return explain(self.plan, node, channel, self.graph, provenance=prov)

    def explain(self, node: str, channel: int) -> str:
        """Why channel ``channel`` of ``node`` is kept or removed, as text.

        ``node`` is an FX node name (``linear_20``) or a module path
        (``encoder.stages.2.layers.4.pwconv1``: that module's output node). A kept channel gets
        the chain that kept it, ending in a model output, a barrier, or a layer keeping its last
        channel; a removed one says whether it was a constant (folded) or unused.
        """
        return str(self.explanation(node, channel))

    def to_html(self, path: Optional[str] = None, *, explain: Optional[tuple[str, int]] = None) -> str:
        """A self-contained HTML page (no network needed) showing the channel groups, barriers
        and the graph, with per-channel explanations. Written to ``path`` when given; returned.
        ``explain=(node, channel)`` opens the page on that channel's explanation."""
        from .visualize import render_html
        html = render_html(self, explain=explain)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(html)
        return html

    def to_dot(self) -> str:
        """The same graph as :meth:`to_html`, in graphviz DOT (nodes filled by channel group)."""
        from .visualize import render_dot
        return render_dot(self)
