"""Where the onnxruntime time of a minimized model goes, against the natively built model: per
node type, from onnxruntime's own profiler (``SessionOptions.enable_profiling``), 1 thread.

    PYTHONPATH=$PWD:tools .venv/bin/python tools/profile_ort.py [--points gpt2_lm:0.5,convnext:0.75]
        [--runs 30] [--json out.json]

For each point (models and pruning: ``tools/bench_limit.py``) the minimized model and the native
one are exported as ``tools/bench_inference.py --native`` exports them (batch-dynamic only), both
sessions are profiled over the same ``--runs`` interleaved runs after a warm-up, and the kernel
times (``cat == "Node"``, ``*_kernel_time`` events) are summed per op type and divided by the
runs. The table lists µs per run per op type, minimized and native, and the difference; the op
types' sum is the kernel time, the rest of the session time (``model_run`` events less the
kernels) is onnxruntime's per-node overhead. Every node of a compensated norm (the Pad, the
LayerNormalization and the Slice of :mod:`fxminimize.onnx_compensated`, or the elementary ops of a
channels-first one) is also summed under ``compensated norms`` via its node name, which the
exporter derives from the ``compensated_layer_norm`` call.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import fxminimize  # noqa: E402


def _session(path, prefix):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = prefix
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _node_kinds(path) -> dict:
    """Node name → (op type, is part of a compensated norm) in the optimized graph's source: the
    exported model; names of fused/optimized nodes not found here count under their op type."""
    import onnx
    g = onnx.load(path, load_external_data=False).graph
    return {n.name: "compensated_layer_norm" in n.name or "compensated" in n.name for n in g.node}


def _summarize(trace_path, runs, comp_names):
    with open(trace_path) as f:
        events = json.load(f)
    per_op = collections.Counter()
    comp = 0.0
    total_run = 0.0
    nruns = 0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            total_run += e["dur"]
            nruns += 1
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        op_type = e["args"].get("op_name", "?")
        node = e["name"][: -len("_kernel_time")]
        per_op[op_type] += e["dur"]
        if comp_names.get(node, False):
            comp += e["dur"]
    # the warm-up run is in the trace too: average over every model_run the trace holds
    n = max(nruns, 1)
    kernels = sum(per_op.values())
    return {"per_op_us": {k: v / n for k, v in per_op.most_common()}, "kernels_us": kernels / n,
            "run_us": total_run / n, "overhead_us": (total_run - kernels) / n,
            "compensated_us": comp / n, "runs": n}


def profile_point(name, s, runs, tmp):
    import bench_limit
    from bench_inference import export_dense
    masked, native, make = bench_limit.build(name, s)
    x = make()
    result = fxminimize.minimize(masked, (make(2),))
    paths = {k: os.path.join(tmp, f"{name}_{s}_{k}.onnx") for k in ("min", "native")}
    fxminimize.export_onnx(result, (make(2),), paths["min"], dynamic_batch=True, dynamic_sizes=False,
                           reference=masked)
    export_dense(native, make(2), paths["native"])
    sess = {k: _session(p, os.path.join(tmp, f"prof_{name}_{k}")) for k, p in paths.items()}
    feeds = {k: {v.get_inputs()[0].name: x.numpy()} for k, v in sess.items()}
    for k in sess:                                  # warm-up
        sess[k].run(None, feeds[k])
    for _ in range(runs):
        for k in sess:
            sess[k].run(None, feeds[k])
    out = {}
    for k in sess:
        trace = sess[k].end_profiling()
        out[k] = _summarize(trace, runs, _node_kinds(paths[k]))
        out[k]["nodes"] = len(__import__("onnx").load(paths[k], load_external_data=False).graph.node)
    return out


def _table(name, s, prof):
    mn, nt = prof["min"], prof["native"]
    ops = sorted(set(mn["per_op_us"]) | set(nt["per_op_us"]),
                 key=lambda o: -(mn["per_op_us"].get(o, 0) + nt["per_op_us"].get(o, 0)))
    lines = [f"## {name} {s:.0%}: session {mn['run_us']:.0f} / {nt['run_us']:.0f} µs per run "
             f"(min/native {mn['run_us'] / nt['run_us']:.3f}x), nodes {mn['nodes']}/{nt['nodes']}",
             f"{'op type':<24} {'min µs':>9} {'native µs':>9} {'min-nat':>9}"]
    for o in ops:
        a, b = mn["per_op_us"].get(o, 0.0), nt["per_op_us"].get(o, 0.0)
        lines.append(f"{o:<24} {a:9.1f} {b:9.1f} {a - b:9.1f}")
    lines.append(f"{'kernels':<24} {mn['kernels_us']:9.1f} {nt['kernels_us']:9.1f} "
                 f"{mn['kernels_us'] - nt['kernels_us']:9.1f}")
    lines.append(f"{'overhead (run-kernels)':<24} {mn['overhead_us']:9.1f} {nt['overhead_us']:9.1f} "
                 f"{mn['overhead_us'] - nt['overhead_us']:9.1f}")
    lines.append(f"{'compensated norms':<24} {mn['compensated_us']:9.1f}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", default="gpt2_lm:0.5,convnext:0.75")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", default=None)
    ap.add_argument("--dir", default=None, help="keep the ONNX files and traces here (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()}", flush=True)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.dir:
            os.makedirs(args.dir, exist_ok=True)
            tmp = args.dir
        for p in args.points.split(","):
            name, s = p.split(":")
            prof = profile_point(name, float(s), args.runs, tmp)
            res[p] = prof
            print(_table(name, float(s), prof), flush=True)
    print(f"load average {os.getloadavg()}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
