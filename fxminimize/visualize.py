"""Views of a :class:`~fxminimize.report.Report`: a self-contained HTML page and graphviz DOT.

The HTML page needs no network: the data (one JSON object), the style sheet and the script are
inline. The page's template, style sheet and script are files of the package:
``fxminimize/report_assets/page.html``, ``page.css`` and ``page.js``. It shows

* a summary (parameters before/after, groups, barriers),
* the data-flow graph, one box per node, filled with the colour of the node's channel group
  (grey: no channel space), with kept/total channels; runs of identical repeated blocks
  (``layers.1`` ... ``layers.8`` after ``layers.0``) are collapsed into one box that expands
  on click; skip connections are drawn as arcs on the right,
* search (node name, module path or op), a filter by channel group, the table of groups with
  their kept/removed counts, and every barrier with its reason,
* per node, a map of its channels (kept / removed constant / removed unused); clicking one, or
  the "explain" form, shows why it is kept or removed. The page opens on the explanation named
  in its address as ``#explain=NODE:CHANNEL``.

Explanations in the page are computed by its script from the same per-channel links as
:mod:`fxminimize.explain` (stored run-length encoded) and use the same wording, so the page and
:meth:`Report.explain` agree line for line.
"""
from __future__ import annotations

import colorsys
import importlib.resources
import html as _html
import json
from typing import Optional

import numpy as np

from .explain import (COUPLED, READ, GraphInfo, NodeInfo, Provenance, fmt_value)

UNTRACKED_FILL = "#e4e4e4"


def _asset(name: str) -> str:
    """A file of ``fxminimize/report_assets`` (the page's HTML template, style sheet, script)."""
    return importlib.resources.files("fxminimize").joinpath("report_assets", name).read_text(encoding="utf-8")


def group_colors(n: int) -> list[tuple[str, str]]:
    """``(fill, border)`` hex colours for ``n`` groups (golden-angle hues, light fills)."""
    out = []
    for i in range(n):
        h = (i * 0.381966) % 1.0
        fill = colorsys.hls_to_rgb(h, (0.80, 0.87, 0.74)[i % 3], (0.70, 0.85, 0.55)[i % 3])
        line = colorsys.hls_to_rgb(h, 0.38, 0.65)
        out.append(tuple("#" + "".join(f"{int(round(x * 255)):02x}" for x in c) for c in (fill, line)))
    return out


def _graph(report) -> GraphInfo:
    """The report's graph, or one made of the plan's tracked nodes when it has none."""
    if report.graph is not None:
        return report.graph
    plan = report.plan
    names = [n for n in plan.node_names if n in plan.size] or sorted(plan.size)
    nodes = [NodeInfo(n, "call_function", plan.kind.get(n, ""), "", "", (), True) for n in names]
    nodes.append(NodeInfo("output", "output", "output", "", "", (), False))
    return GraphInfo(tuple(nodes))


def _display_nodes(report, graph: GraphInfo) -> list[NodeInfo]:
    plan = report.plan
    needed = set(plan.size) | {b.node for b in plan.barriers}
    if plan.required_by:
        for arr in plan.required_by.values():
            for r in np.unique(np.asarray(arr)):
                if r >= 0:
                    needed.add(plan.node_names[int(r)])
    return [n for n in graph.nodes if n.is_tensor or n.op == "output" or n.name in needed]


def _group_of(plan) -> dict[str, int]:
    return {s: g.index for g in plan.groups for s in g.spaces}


def collapse_runs(nodes: list[NodeInfo]) -> list[dict]:
    """Runs of identical consecutive repeated blocks, to be shown collapsed.

    A *block* is a module whose path ends in an integer (``encoder.stages.2.layers.4``) and whose
    nodes are contiguous in topological order. Consecutive sibling blocks with the same
    structure (relative module paths and ops) form a run; everything after the run's first block
    is collapsed. Returns ``[{"start", "end", "label", "first", "count"}]`` (node positions,
    inclusive), outer runs before inner ones.
    """
    ranges: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        parts = n.module.split(".") if n.module else []
        for k in range(1, len(parts) + 1):
            if parts[k - 1].isdigit():
                ranges.setdefault(".".join(parts[:k]), []).append(i)
    blocks = []
    for b, idx in ranges.items():
        lo, hi = idx[0], idx[-1]
        if hi - lo + 1 != len(idx):
            continue  # not contiguous
        sig = tuple((nodes[i].module[len(b):], nodes[i].target) for i in idx)
        parent, num = b.rsplit(".", 1) if "." in b else ("", b)
        blocks.append((parent, int(num), lo, hi, sig, b))
    by_parent: dict[str, list] = {}
    for blk in blocks:
        by_parent.setdefault(blk[0], []).append(blk)
    runs = []
    for parent, bl in by_parent.items():
        bl.sort(key=lambda x: x[2])
        i = 0
        while i < len(bl):
            j = i
            while j + 1 < len(bl) and bl[j + 1][4] == bl[i][4] and bl[j + 1][2] == bl[j][3] + 1 \
                    and bl[j + 1][1] == bl[j][1] + 1:
                j += 1
            if j > i:
                first, second, last = bl[i], bl[i + 1], bl[j]
                prefix = f"{parent}." if parent else ""
                runs.append({"start": second[2], "end": last[3], "count": j - i,
                             "first": first[5],
                             "label": f"{prefix}{second[1]}\u2013{last[1]}" if j > i + 1 else second[5]})
            i = j + 1
    runs.sort(key=lambda r: (r["start"], -(r["end"] - r["start"])))
    return runs


def _rle(codes: list[tuple]) -> list:
    out: list = []
    prev, count = None, 0
    for t in codes:
        if t == prev:
            count += 1
            continue
        if prev is not None:
            out.extend([count, *prev])
        prev, count = t, 1
    if prev is not None:
        out.extend([count, *prev])
    return out


def report_data(report) -> dict:
    """Everything the HTML page shows, as one JSON-able dict."""
    plan = report.plan
    if plan is None:
        raise ValueError("this report has no plan: the HTML view needs the analysis result")
    graph = _graph(report)
    prov: Provenance = report._provenance()
    nodes = _display_nodes(report, graph)
    pos = {n.name: i for i, n in enumerate(nodes)}
    gof = _group_of(plan)
    barrier = {b.node: b for b in plan.barriers}
    jnodes = []
    for n in nodes:
        d = {"n": n.name, "o": n.target, "m": n.module, "t": n.module_type,
             "k": plan.kind.get(n.name, n.op if n.op != "call_function" else ""),
             "g": gof.get(n.name, -1), "s": int(plan.size.get(n.name, 0)),
             "kc": int(len(plan.keep[n.name])) if n.name in plan.keep else 0,
             "in": [pos[x] for x in n.inputs if x in pos],
             "sh": "\u00d7".join(str(d) for d in n.shape)}
        if n.name in plan.axis:
            d["ax"] = int(plan.axis[n.name])
            d["nat"] = bool(plan.native[n.name])
        if n.name in barrier:
            d["b"] = barrier[n.name].reason
        jnodes.append(d)
    chan = {}
    for name in plan.size:
        if name not in pos:
            continue
        codes = []
        t = prov.tid[name]
        for c in range(plan.size[name]):
            e = int(prov.off[t] + c)
            kind, other, extra = prov.code(e)
            if kind == COUPLED:
                codes.append((kind, pos[prov.names[prov.el_node[other]]], int(prov.el_chan[other]) - c))
            elif kind == READ:
                codes.append((kind, pos[prov.names[extra]], int(prov.el_chan[other])))
            elif other >= 0 and kind not in ("K", "D", "X"):
                codes.append((kind, pos.get(plan.node_names[other], -1), 0))
            else:
                codes.append((kind, 0, 0))
        cm = np.asarray(plan.const_mask[name])
        cv = np.asarray(plan.const_val[name])
        chan[pos[name]] = {"r": _rle(codes),
                           "cv": {int(c): fmt_value(cv[c]) for c in np.nonzero(cm)[0]}}
    groups = []
    for g in plan.groups:
        members = [pos[s] for s in g.spaces if s in pos]
        groups.append({"i": g.index, "spaces": len(g.spaces), "units": g.units, "ur": g.units_removed,
                       "el": g.elements, "er": g.elements_removed, "nodes": sorted(members)})
    colors = group_colors(len(plan.groups))
    return {
        "summary": {"params_before": report.params_before, "params_after": report.params_after,
                    "ratio": report.ratio, "groups": len(plan.groups), "groups_shrunk": report.groups_removed,
                    "barriers": len(plan.barriers), "nodes_shrunk": len(report.removed),
                    "max_abs_error": report.max_abs_error, "checks": report.verified_checks,
                    "notes": list(report.notes)},
        "nodes": jnodes, "groups": groups, "colors": colors, "untracked": UNTRACKED_FILL,
        "barriers": [{"node": pos.get(b.node, -1), "name": b.node, "op": b.op, "module": b.module,
                      "reason": b.reason, "kept": b.channels_kept} for b in plan.barriers],
        "runs": collapse_runs(nodes), "chan": chan,
    }


def render_html(report, explain: Optional[tuple[str, int]] = None, title: str = "fxminimize report") -> str:
    """The self-contained HTML page (see the module docstring)."""
    data = report_data(report)
    if explain is not None:
        from .explain import resolve_node
        data["open"] = [resolve_node(report.plan, report.graph, explain[0]), int(explain[1])]
    blob = json.dumps(data, separators=(",", ":"))
    blob = blob.replace("</", "<\\/")  # never close the script element early
    page, css, js = _asset("page.html"), _asset("page.css"), _asset("page.js")
    return (page.replace("%TITLE%", _html.escape(title)).replace("%CSS%", css)
            .replace("%JS%", js).replace("%DATA%", blob))


# ------------------------------------------------------------------------------------ DOT
def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(report) -> str:
    """The graph in graphviz DOT: one box per node (filled by channel group, red outline for a
    barrier, label with name, op, module path and kept/total channels), one edge per data-flow
    input, and a legend node per group with its kept/removed counts."""
    plan = report.plan
    if plan is None:
        raise ValueError("this report has no plan: the DOT view needs the analysis result")
    graph = _graph(report)
    nodes = _display_nodes(report, graph)
    names = {n.name for n in nodes}
    gof = _group_of(plan)
    colors = group_colors(len(plan.groups))
    barrier = {b.node: b for b in plan.barriers}
    out = ["digraph fxminimize {", "  rankdir=TB;",
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
           '  edge [color="#777777", arrowsize=0.6];']
    for n in nodes:
        g = gof.get(n.name, -1)
        fill, line = colors[g] if g >= 0 else (UNTRACKED_FILL, "#999999")
        lab = [n.name, n.target + (f" \u00b7 {n.module}" if n.module else "")]
        if n.name in plan.size:
            lab.append(f"{len(plan.keep[n.name])}/{plan.size[n.name]} channels kept \u00b7 group {g}")
        attrs = {"label": "\n".join(lab), "fillcolor": fill, "color": line}
        if n.name in barrier:
            attrs["color"] = "#d00000"
            attrs["penwidth"] = "2.5"
            attrs["tooltip"] = "barrier: " + barrier[n.name].reason
        elif n.name in plan.size and len(plan.keep[n.name]) < plan.size[n.name]:
            attrs["penwidth"] = "2"
        out.append(f"  {_dot_str(n.name)} [" + ", ".join(f"{k}={_dot_str(v)}" for k, v in attrs.items()) + "];")
    for n in nodes:
        for x in n.inputs:
            if x in names:
                out.append(f"  {_dot_str(x)} -> {_dot_str(n.name)};")
    out.append('  subgraph cluster_legend { label="channel groups"; fontname="Helvetica";')
    for g in plan.groups:
        fill, line = colors[g.index]
        lab = (f"group {g.index}: {len(g.spaces)} spaces\n{g.elements - g.elements_removed}/{g.elements} "
               f"channels kept, {g.units_removed}/{g.units} units removed")
        out.append(f"    {_dot_str(f'group {g.index}')} [label={_dot_str(lab)}, fillcolor={_dot_str(fill)}, "
                   f"color={_dot_str(line)}];")
    out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"
