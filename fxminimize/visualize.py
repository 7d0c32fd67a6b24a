"""Views of a :class:`~fxminimize.report.Report`: a self-contained HTML page and graphviz DOT.

The HTML page needs no network: the data (one JSON object), the style sheet and the script are
inline. It shows

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
import html as _html
import json
import re
from typing import Optional

import numpy as np

from .explain import (COUPLED, READ, GraphInfo, NodeInfo, Provenance, fmt_value)

UNTRACKED_FILL = "#e4e4e4"


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
    return (_PAGE.replace("%TITLE%", _html.escape(title)).replace("%CSS%", _CSS)
            .replace("%JS%", _JS).replace("%DATA%", blob))


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


# ------------------------------------------------------------------------------------ page
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<style>%CSS%</style></head>
<body>
<header>
  <h1>%TITLE%</h1>
  <div id="summary"></div>
</header>
<div id="toolbar">
  <input id="search" type="search" placeholder="search node, module or op" autocomplete="off">
  <span id="search-count"></span>
  <select id="group-filter"><option value="-1">all channel groups</option></select>
  <button id="expand-all" type="button">expand repeated blocks</button>
  <button id="collapse-all" type="button">collapse repeated blocks</button>
  <span class="legend"><span class="sw kept"></span>kept <span class="sw const"></span>removed: constant
  <span class="sw unused"></span>removed: unused <span class="sw barrier-sw"></span>barrier</span>
</div>
<main>
  <section id="graph-pane"><svg id="graph" xmlns="http://www.w3.org/2000/svg"></svg></section>
  <aside id="side">
    <section id="explain-box">
      <h2>Why is a channel kept?</h2>
      <form id="explain-form">
        <input id="ex-node" list="node-names" placeholder="node or module path" autocomplete="off">
        <input id="ex-chan" type="number" min="0" placeholder="channel">
        <button type="submit">explain</button>
      </form>
      <datalist id="node-names"></datalist>
      <div id="explanation"></div>
    </section>
    <section id="details"><h2>Node</h2><p class="hint">Click a node in the graph.</p></section>
    <section><h2>Barriers (<span id="barrier-count"></span>)</h2><div id="barriers"></div></section>
    <section><h2>Channel groups (<span id="group-count"></span>)</h2>
      <table id="groups"><thead><tr><th></th><th>group</th><th>spaces</th><th>channels kept</th>
      <th>units removed</th></tr></thead><tbody></tbody></table></section>
  </aside>
</main>
<script type="application/json" id="fxm-data">%DATA%</script>
<script>%JS%</script>
</body></html>
"""

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:13px/1.4 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d1d1f;background:#fafafa}
header{padding:10px 16px 4px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:18px;margin:0 0 4px}
h2{font-size:14px;margin:12px 0 6px}
#summary span{display:inline-block;margin-right:18px}
#summary b{font-weight:600}
#toolbar{position:sticky;top:0;z-index:5;background:#fff;padding:6px 16px;border-bottom:1px solid #ddd;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
#search{width:260px;padding:4px 6px}
.legend{margin-left:auto;color:#555}
.sw{display:inline-block;width:10px;height:10px;margin:0 3px 0 8px;vertical-align:middle;border:1px solid #888}
.sw.kept,.ch.kept{background:#3a9e5c}.sw.const,.ch.const{background:#5b8fd9}.sw.unused,.ch.unused{background:#d5d5d5}
.sw.barrier-sw{border:2px solid #d00000;background:#fff}
main{display:flex;align-items:flex-start}
#graph-pane{flex:1 1 auto;overflow:auto;padding:8px}
#side{flex:0 0 440px;max-width:440px;position:sticky;top:44px;max-height:calc(100vh - 44px);overflow:auto;padding:0 14px 20px;background:#fff;border-left:1px solid #ddd}
svg text{font:11px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;pointer-events:none}
g.node{cursor:pointer}
g.node rect.box{stroke-width:1}
g.node.barrier rect.box{stroke:#d00000;stroke-width:2.5}
g.node.shrunk rect.box{stroke-width:2}
g.node.dim{opacity:.18}
g.node.match rect.box{stroke:#000;stroke-width:2.5}
g.node.selected rect.box{stroke:#0047ff;stroke-width:3}
g.run rect.box{fill:#fff;stroke:#888;stroke-dasharray:4 3}
g.run.dim{opacity:.18}
path.edge{fill:none;stroke:#9a9a9a;stroke-width:1.1}
path.edge.dim{opacity:.15}
#explanation ol{padding-left:20px;margin:6px 0}
#explanation li{margin:3px 0}
#explanation .head{font-weight:600}
#explanation .err{color:#b00}
a.nl{color:#0047ff;cursor:pointer;text-decoration:underline dotted}
.chans{display:flex;flex-wrap:wrap;gap:1px;margin:6px 0}
.ch{width:9px;height:9px;cursor:pointer}
.ch:hover{outline:1px solid #000}
table{border-collapse:collapse;width:100%}
td,th{padding:2px 5px;border-bottom:1px solid #eee;text-align:left;font-weight:normal}
th{color:#666}
tr.group-row{cursor:pointer}
tr.group-row.active{background:#fff4c2}
.barrier-item{border-left:3px solid #d00000;padding:2px 8px;margin:4px 0}
.hint{color:#777}
input,select,button{font:inherit}
"""

_JS = r"""
(function(){
"use strict";
const D = JSON.parse(document.getElementById("fxm-data").textContent);
const N = D.nodes, byName = {};
N.forEach((n, i) => { byName[n.n] = i; });
const SVGNS = "http://www.w3.org/2000/svg";
const collapsed = D.runs.map(() => true);
let filterGroup = -1, query = "", selected = -1;

function el(tag, attrs, text){
  const e = document.createElement(tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function sv(tag, attrs){
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}
function fmt(x){ return x.toLocaleString("en-US"); }
function label(i){
  const n = N[i];
  if (!n) return "?";
  return n.m ? n.m + " (" + n.n + ", " + n.o + ")" : n.n + " (" + n.o + ")";
}
function fill(i){ const g = N[i].g; return g >= 0 ? D.colors[g] : [D.untracked, "#999999"]; }

/* ---------------- per-channel links (same data and wording as fxminimize.explain) */
const decoded = {};
function codes(i){
  if (decoded[i]) return decoded[i];
  const c = D.chan[i]; if (!c) return null;
  const k = [], a = [], b = [];
  for (let p = 0; p < c.r.length; p += 4){
    for (let j = 0; j < c.r[p]; j++){ k.push(c.r[p+1]); a.push(c.r[p+2]); b.push(c.r[p+3]); }
  }
  return (decoded[i] = {k: k, a: a, b: b, cv: c.cv});
}
function headline(i, c, kept, cv){
  const head = "channel " + c + " of " + label(i);
  if (!kept){
    if (cv !== undefined) return head + " is removed: its value is the constant " + cv +
      " for every input, so it is folded into the layers that read it";
    return head + " is removed: nothing that is kept needs it (no kept layer reads it with a nonzero weight)";
  }
  if (cv !== undefined) return head + " is kept (although its value is the constant " + cv + ") because:";
  return head + " is kept because:";
}
function explain(i, c){
  const n = N[i];
  if (!n) return {error: "no such node"};
  if (!n.s) return {error: label(i) + " has no channel space: the analysis does not track its channels, so nothing in it can be removed"};
  if (!(c >= 0 && c < n.s)) return {error: "channel " + c + " is out of range: " + label(i) + " has " + n.s + " channels (0.." + (n.s - 1) + ")"};
  const d = codes(i), k0 = d.k[c];
  const kept = !(k0 === "K" || k0 === "D");
  const lines = [headline(i, c, kept, d.cv[c])], steps = [];
  let t = i, ch = c;
  const seen = {};
  while (kept && !seen[t + ":" + ch]){
    seen[t + ":" + ch] = 1;
    const e = codes(t), k = e.k[ch], a = e.a[ch], b = e.b[ch];
    const head = "channel " + ch + " of " + label(t);
    if (k === "C"){ const rc = ch + b;
      steps.push([head + " is coupled with channel " + rc + " of " + label(a) + ": they are kept or removed together", a, rc]);
      t = a; ch = rc; continue; }
    if (k === "R"){ steps.push([head + " is needed by " + label(a) + ", whose channel " + b + " is kept", a, b]);
      t = a; ch = b; continue; }
    if (k === "O") steps.push([head + " is a model output", -1, -1]);
    else if (k === "B") steps.push([head + " is read by " + label(a) + ", a barrier (" + N[a].b + "): all its input channels are kept", a, -1]);
    else if (k === "S") steps.push([label(t) + " would lose every channel, and a layer keeps at least one: channel " + ch + " is that one", -1, -1]);
    else if (k === "U") steps.push([head + " is read by " + label(a) + ", whose output has no channel space: all its input channels are kept", a, -1]);
    else steps.push([head + ": no recorded reason (please report this model)", -1, -1]);
    break;
  }
  return {lines: lines, steps: steps, node: i, channel: c};
}
function showExplanation(i, c){
  const box = document.getElementById("explanation");
  box.textContent = "";
  const r = explain(i, c);
  if (r.error){ box.appendChild(el("p", {"class": "err"}, r.error)); return; }
  box.appendChild(el("p", {"class": "head", "data-node": N[i].n, "data-channel": String(c)}, r.lines[0]));
  const ol = el("ol", {id: "explanation-steps"});
  r.steps.forEach(s => {
    const li = el("li", {}); li.appendChild(el("span", {"class": "step"}, s[0]));
    if (s[1] >= 0 && s[2] >= 0 && N[s[1]].s){
      const a = el("a", {"class": "nl"}, " \u2192 explain");
      a.addEventListener("click", () => { selectNode(s[1], true); showExplanation(s[1], s[2]); });
      li.appendChild(a);
    }
    ol.appendChild(li);
  });
  box.appendChild(ol);
  document.getElementById("ex-node").value = N[i].m || N[i].n;
  if (N[i].m && resolve(N[i].m) !== i) document.getElementById("ex-node").value = N[i].n;
  document.getElementById("ex-chan").value = c;
  try { history.replaceState(null, "", "#explain=" + encodeURIComponent(N[i].n) + ":" + c); } catch (e) {}
}
function resolve(q){
  if (q in byName) return byName[q];
  let best = -1, bestTracked = -1;
  N.forEach((n, i) => { if (n.m === q || n.m.startsWith(q + ".")){ best = i; if (n.s) bestTracked = i; } });
  return bestTracked >= 0 ? bestTracked : best;
}

/* ---------------- summary, groups, barriers */
function summary(){
  const s = D.summary, box = document.getElementById("summary");
  const parts = [["parameters", fmt(s.params_before) + " \u2192 " + fmt(s.params_after) + " (" + s.ratio.toFixed(2) + "\u00d7 smaller)"],
    ["channel groups", s.groups + " (" + s.groups_shrunk + " shrunk)"], ["barriers", String(s.barriers)],
    ["nodes that lost channels", String(s.nodes_shrunk)], ["verified", "max abs error " + s.max_abs_error.toPrecision(3) + " over " + s.checks + " checks"]];
  parts.forEach(p => { const sp = el("span"); sp.appendChild(el("b", {}, p[0] + ": ")); sp.appendChild(document.createTextNode(p[1])); box.appendChild(sp); });
  s.notes.forEach(t => box.appendChild(el("div", {"class": "hint"}, "note: " + t)));
}
function groupsTable(){
  document.getElementById("group-count").textContent = D.groups.length;
  const tb = document.querySelector("#groups tbody"), sel = document.getElementById("group-filter");
  D.groups.forEach(g => {
    const tr = el("tr", {"class": "group-row", "data-group": String(g.i)});
    const sw = el("td"); const s = el("span", {"class": "sw"}); s.style.background = D.colors[g.i][0]; s.style.borderColor = D.colors[g.i][1]; sw.appendChild(s);
    tr.appendChild(sw);
    tr.appendChild(el("td", {}, String(g.i)));
    tr.appendChild(el("td", {}, String(g.spaces)));
    tr.appendChild(el("td", {"class": "kept-count"}, fmt(g.el - g.er) + " / " + fmt(g.el)));
    tr.appendChild(el("td", {"class": "units-removed"}, fmt(g.ur) + " / " + fmt(g.units)));
    tr.title = g.nodes.map(i => N[i].n).join(", ");
    tr.addEventListener("click", () => { setGroup(filterGroup === g.i ? -1 : g.i); });
    tb.appendChild(tr);
    const o = el("option", {value: String(g.i)}, "group " + g.i + " (" + g.spaces + " spaces, " + fmt(g.er) + " of " + fmt(g.el) + " channels removed)");
    sel.appendChild(o);
  });
  sel.addEventListener("change", () => setGroup(parseInt(sel.value, 10)));
}
function barriers(){
  document.getElementById("barrier-count").textContent = D.barriers.length;
  const box = document.getElementById("barriers");
  if (!D.barriers.length) box.appendChild(el("p", {"class": "hint"}, "none: every op has a rule"));
  D.barriers.forEach(b => {
    const d = el("div", {"class": "barrier-item"});
    const a = el("a", {"class": "nl"}, b.name);
    if (b.node >= 0) a.addEventListener("click", () => selectNode(b.node, true));
    d.appendChild(a);
    d.appendChild(document.createTextNode(" (" + b.op + (b.module ? " in " + b.module : "") + "): " + b.reason + "; " + b.kept + " input channels kept"));
    box.appendChild(d);
  });
}

/* ---------------- graph */
const ROW = 30, BOXH = 24, BOXW = 560, X0 = 8;
function items(){
  const out = [], itemOf = new Array(N.length);
  let i = 0;
  while (i < N.length){
    let run = -1;
    D.runs.forEach((r, k) => { if (run < 0 && collapsed[k] && r.start === i) run = k; });
    if (run >= 0){
      const r = D.runs[run];
      for (let j = r.start; j <= r.end; j++) itemOf[j] = out.length;
      out.push({run: run}); i = r.end + 1;
    } else { itemOf[i] = out.length; out.push({node: i}); i++; }
  }
  return [out, itemOf];
}
function matches(i){
  const n = N[i];
  if (filterGroup >= 0 && n.g !== filterGroup) return false;
  if (query){ const q = query.toLowerCase();
    if (n.n.toLowerCase().indexOf(q) < 0 && n.m.toLowerCase().indexOf(q) < 0 && n.o.toLowerCase().indexOf(q) < 0) return false; }
  return true;
}
function active(){ return filterGroup >= 0 || query.length > 0; }
function openRunsFor(pred){
  D.runs.forEach((r, k) => { for (let j = r.start; j <= r.end; j++) if (pred(j)){ collapsed[k] = false; break; } });
}
function fit(s, w){ const max = Math.floor(w / 6.6); return s.length > max ? s.slice(0, Math.max(0, max - 1)) + "\u2026" : s; }
function draw(){
  const svg = document.getElementById("graph");
  svg.textContent = "";
  const [its, itemOf] = items();
  const edges = {};
  N.forEach((n, j) => n.in.forEach(x => { const a = itemOf[x], b = itemOf[j]; if (a !== b) edges[a + ">" + b] = [Math.min(a, b), Math.max(a, b)]; }));
  const list = Object.values(edges).sort((p, q) => (p[1] - p[0]) - (q[1] - q[0]));
  const lanes = [];
  const laneOf = list.map(e => {
    if (e[1] - e[0] === 1) return -1;
    for (let l = 0; ; l++){
      lanes[l] = lanes[l] || [];
      if (lanes[l].every(o => o[1] <= e[0] || o[0] >= e[1])){ lanes[l].push(e); return l; }
    }
  });
  const width = X0 + BOXW + 24 + lanes.length * 8 + 20;
  svg.setAttribute("width", width); svg.setAttribute("height", its.length * ROW + 10);
  const any = active(), eg = sv("g", {}), ng = sv("g", {});
  svg.appendChild(eg); svg.appendChild(ng);
  list.forEach((e, k) => {
    const ya = e[0] * ROW + 4 + BOXH, yb = e[1] * ROW + 4;
    let d;
    if (laneOf[k] < 0) d = "M" + (X0 + 24) + " " + ya + " V" + yb;
    else { const xr = X0 + BOXW, xl = xr + 14 + laneOf[k] * 8, y1 = e[0] * ROW + 4 + BOXH / 2, y2 = e[1] * ROW + 4 + BOXH / 2;
      d = "M" + xr + " " + y1 + " H" + (xl - 4) + " Q" + xl + " " + y1 + " " + xl + " " + (y1 + 4) + " V" + (y2 - 4) + " Q" + xl + " " + y2 + " " + (xl - 4) + " " + y2 + " H" + xr; }
    eg.appendChild(sv("path", {d: d, "class": "edge" + (any ? " dim" : "")}));
  });
  its.forEach((it, k) => {
    const y = k * ROW + 4;
    if (it.run !== undefined){
      const r = D.runs[it.run];
      let shrunk = 0, hit = false;
      for (let j = r.start; j <= r.end; j++){ if (N[j].s && N[j].kc < N[j].s) shrunk++; if (any && matches(j)) hit = true; }
      const g = sv("g", {"class": "run" + (any && !hit ? " dim" : ""), "data-run": String(it.run), transform: "translate(" + X0 + "," + y + ")"});
      g.appendChild(sv("rect", {"class": "box", width: BOXW, height: BOXH, rx: 5}));
      const t = sv("text", {x: 10, y: 16});
      t.textContent = fit("\u25b8 " + r.label + ": " + r.count + " more block" + (r.count > 1 ? "s" : "") + " like " + r.first + " (" + (r.end - r.start + 1) + " nodes, " + shrunk + " shrunk) \u2014 click to expand", BOXW - 16);
      g.appendChild(t);
      g.style.cursor = "pointer";
      g.addEventListener("click", () => { collapsed[it.run] = false; draw(); });
      ng.appendChild(g);
      return;
    }
    const i = it.node, n = N[i], c = fill(i);
    let cls = "node";
    if (n.b !== undefined) cls += " barrier";
    if (n.s && n.kc < n.s) cls += " shrunk";
    if (any) cls += matches(i) ? " match" : " dim";
    if (i === selected) cls += " selected";
    const g = sv("g", {"class": cls, "data-node": n.n, "data-group": String(n.g), transform: "translate(" + X0 + "," + y + ")"});
    g.appendChild(sv("rect", {"class": "box", width: BOXW, height: BOXH, rx: 5, fill: c[0], stroke: c[1]}));
    const right = n.s ? n.kc + "/" + n.s : (n.b !== undefined ? "barrier" : "");
    const t = sv("text", {x: 8, y: 16});
    t.textContent = fit(n.n + "  " + n.o + (n.m ? "  " + n.m : ""), BOXW - 150);
    g.appendChild(t);
    if (n.s){
      const bw = 60, bx = BOXW - 140;
      g.appendChild(sv("rect", {x: bx, y: 8, width: bw, height: 8, fill: "#d5d5d5"}));
      g.appendChild(sv("rect", {x: bx, y: 8, width: bw * n.kc / n.s, height: 8, fill: "#3a9e5c"}));
    }
    const t2 = sv("text", {x: BOXW - 8, y: 16, "text-anchor": "end"});
    t2.textContent = right; g.appendChild(t2);
    const tt = sv("title", {}); tt.textContent = label(i) + (n.sh ? " [" + n.sh + "]" : "") + (n.g >= 0 ? ", group " + n.g : "") + (n.b !== undefined ? ", barrier: " + n.b : "");
    g.appendChild(tt);
    g.addEventListener("click", () => selectNode(i, false));
    ng.appendChild(g);
  });
}
function scrollToNode(i){
  const g = document.querySelector('g.node[data-node="' + CSS.escape(N[i].n) + '"]');
  if (g && g.scrollIntoView) g.scrollIntoView({block: "center"});
}
function setGroup(g){
  filterGroup = g;
  document.getElementById("group-filter").value = String(g);
  document.querySelectorAll("tr.group-row").forEach(tr => tr.classList.toggle("active", parseInt(tr.dataset.group, 10) === g));
  if (active()) openRunsFor(matches);
  draw();
  const first = N.findIndex((n, i) => active() && matches(i));
  if (first >= 0) scrollToNode(first);
}
function ranges(idx){
  const out = []; let s = -1, p = -2;
  idx.forEach(c => { if (c !== p + 1){ if (s >= 0) out.push(s === p ? String(s) : s + "\u2013" + p); s = c; } p = c; });
  if (s >= 0) out.push(s === p ? String(s) : s + "\u2013" + p);
  return out.join(", ");
}
function selectNode(i, scroll){
  selected = i;
  openRunsFor(j => j === i);
  draw();
  if (scroll) scrollToNode(i);
  const n = N[i], box = document.getElementById("details");
  box.textContent = "";
  box.appendChild(el("h2", {}, "Node " + n.n));
  const dl = el("div");
  [["op", n.o + (n.k && n.k !== n.o ? " (rule: " + n.k + ")" : "")], ["module", n.m ? n.m + (n.t ? " (" + n.t + ")" : "") : "\u2014"],
   ["shape", n.sh || "\u2014"], ["channel group", n.g >= 0 ? String(n.g) : "none (no channel space)"],
   ["channel dim", n.ax !== undefined ? String(n.ax) + (n.nat ? "" : " (source space: gathered)") : "\u2014"],
   ["channels", n.s ? n.kc + " of " + n.s + " kept" : "\u2014"]].forEach(p => {
    const d = el("div"); d.appendChild(el("b", {}, p[0] + ": ")); d.appendChild(document.createTextNode(p[1])); dl.appendChild(d); });
  if (n.b !== undefined){ const d = el("div", {"class": "barrier-item"}, "barrier: " + n.b + "; all its input channels are kept"); dl.appendChild(d); }
  box.appendChild(dl);
  if (n.s){
    const d = codes(i), kept = [], cst = [], unused = [];
    d.k.forEach((k, c) => { (k === "K" ? cst : k === "D" ? unused : kept).push(c); });
    [["kept", kept], ["removed, constant (folded)", cst], ["removed, unused", unused]].forEach(p => {
      if (p[1].length){ const q = el("details"); q.appendChild(el("summary", {}, p[0] + ": " + p[1].length)); q.appendChild(document.createTextNode(ranges(p[1]))); box.appendChild(q); } });
    if (n.s <= 4096){
      box.appendChild(el("div", {"class": "hint"}, "Each square is a channel; click one to see why it is kept or removed."));
      const grid = el("div", {"class": "chans"});
      d.k.forEach((k, c) => {
        const sq = el("span", {"class": "ch " + (k === "K" ? "const" : k === "D" ? "unused" : "kept"), title: "channel " + c});
        sq.addEventListener("click", () => showExplanation(i, c));
        grid.appendChild(sq);
      });
      box.appendChild(grid);
    }
  }
  const inp = n.in.map(x => N[x].n), outs = [];
  N.forEach((m, j) => { if (m.in.indexOf(i) >= 0) outs.push(j); });
  [["inputs", n.in], ["users", outs]].forEach(p => {
    if (!p[1].length) return;
    const q = el("div"); q.appendChild(el("b", {}, p[0] + ": "));
    p[1].forEach((x, k) => { const a = el("a", {"class": "nl"}, N[x].n); a.addEventListener("click", () => selectNode(x, true)); if (k) q.appendChild(document.createTextNode(", ")); q.appendChild(a); });
    box.appendChild(q);
  });
}

/* ---------------- wiring */
function init(){
  summary(); groupsTable(); barriers();
  const dlist = document.getElementById("node-names"), seenM = {};
  N.forEach(n => { if (n.s){ dlist.appendChild(el("option", {value: n.n})); if (n.m && !seenM[n.m]){ seenM[n.m] = 1; dlist.appendChild(el("option", {value: n.m})); } } });
  const s = document.getElementById("search");
  let timer = null;
  s.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => {
    query = s.value.trim(); if (active()) openRunsFor(matches); draw();
    const hits = N.filter((n, i) => query && matches(i)).length;
    document.getElementById("search-count").textContent = query ? hits + " match" + (hits === 1 ? "" : "es") : "";
    const first = N.findIndex((n, i) => query && matches(i)); if (first >= 0) scrollToNode(first); }, 150); });
  document.getElementById("expand-all").addEventListener("click", () => { collapsed.fill(false); draw(); });
  document.getElementById("collapse-all").addEventListener("click", () => { collapsed.fill(true); draw(); });
  document.getElementById("explain-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const i = resolve(document.getElementById("ex-node").value.trim());
    const c = parseInt(document.getElementById("ex-chan").value, 10);
    if (i < 0){ const b = document.getElementById("explanation"); b.textContent = ""; b.appendChild(el("p", {"class": "err"}, "no node or module with that name")); return; }
    selectNode(i, true); showExplanation(i, c);
  });
  draw();
  let open = D.open || null;
  const m = /^#explain=(.+):(\d+)$/.exec(location.hash || "");
  if (m){ const i = resolve(decodeURIComponent(m[1])); if (i >= 0) open = [N[i].n, parseInt(m[2], 10)]; }
  if (open && open[0] in byName){ selectNode(byName[open[0]], false); showExplanation(byName[open[0]], open[1]); }
  document.body.setAttribute("data-ready", "1");
}
init();
})();
"""
