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
