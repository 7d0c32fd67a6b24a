"""Inference speed of the masked dense model vs the minimized one, in torch eager and onnxruntime
(CPU), at batch 1 and 64, beside the FLOPs ratio and the parameter ratio.

    .venv/bin/python tools/bench_inference.py [--models lenet,convnext_tiny,gpt2]
        [--sparsities 0.25,0.5,0.75] [--repeats 5] [--res 224] [--threads N]
        [--eager-batches 1] [--json out.json]

Models (random weights: no download; speed does not depend on the values):

* ``lenet``: LeNet-300-100 (fxminimize.testing.zoo), input (B, 784).
* ``convnext_tiny``: Hugging Face ``ConvNextModel(ConvNextConfig())`` = ConvNeXt-Tiny, input
  (B, 3, res, res).
* ``gpt2``: a small GPT-2 (``GPT2Model``, 4 layers, width 256, 8 heads, vocab 1000), input
  (B, 64) token ids.

Pruning at structured sparsity s (what the minimizer can turn into smaller tensors):

1. global unstructured magnitude pruning of every Linear/Conv weight at 50%
   (``fxminimize.testing.zoo.magnitude_masks``; zeros inside kept rows do not make dense kernels faster,
   so this changes neither FLOPs ratio nor speed: it is there to show it does no harm);
2. channel zeroing by magnitude: the fraction s of lowest-L1 channels is zeroed
   * LeNet: hidden neurons of fc1 and fc2 (rows and biases);
   * ConvNeXt-Tiny: MLP hidden channels of every block (pwconv1 rows + bias, scored by
     |pwconv1 row|·|pwconv2 column|), and residual-stream channels of every stage (all writers:
     patch/downsampling conv rows, embeddings LayerNorm, depthwise conv, block LayerNorm γ/β and
     layer scale; the next reader's LayerNorm γ/β);
   * GPT-2: MLP hidden channels, attention heads (output-projection rows) and residual-stream
     channels (embeddings, every c_proj, every LayerNorm γ/β).

FLOPs: ``torch.utils.flop_counter`` (convolution, matmul, linear, sdpa) at batch 1. Parameter
ratio: stored elements, masked model / minimized model (``Report.ratio``). Timing: median of
``--repeats`` runs after one warm-up, dense and minimized interleaved, ``torch.set_num_threads``
and onnxruntime's intra-op threads both set to ``--threads`` (default: the core count). A benchmark, not a
test: on a shared machine timings are noisy; compare ratios measured in one run.

``--native`` compares with the physical limit instead (models and pruning: ``tools/bench_limit.py``):

    .venv/bin/python tools/bench_inference.py --native [--models gpt2_lm,vit,convnext]
        [--sparsities 0.25,0.5,0.75] [--repeats 20] [--runtimes ort,inductor] [--quick] [--json out.json]

For each model and sparsity: the masked model, the minimized one and the same architecture built
natively at the kept widths, in onnxruntime (CPU) and under ``torch.compile`` (inductor), one
thread, the three interleaved, medians of ``--repeats`` runs (default 20) after a warm-up. The
table gives ms per run and the ratio minimized/native (the acceptance figure: onnxruntime ≤ 1.03,
inductor ≤ 1.10) and masked/minimized, plus the ONNX node counts. ``--quick``: only the
acceptance points (GPT-2 LM and ViT at 50 %, ConvNeXt at 75 %), and the masked model only in
onnxruntime.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

import fxminimize  # noqa: E402
from fxminimize.testing.zoo import lenet_300_100, magnitude_masks  # noqa: E402


# ----------------------------------------------------------------------------- pruning
def _lowest(score: torch.Tensor, s: float) -> torch.Tensor:
    k = int(round(s * score.numel()))
    return torch.argsort(score, stable=True)[:k]


def _unstructured(model, s=0.5):
    with torch.no_grad():
        for name, m in magnitude_masks(model, s).items():
            model.get_parameter(name).mul_(m)


def prune_lenet(model, s):
    _unstructured(model)
    with torch.no_grad():
        for fc in (model.fc1, model.fc2):
            idx = _lowest(fc.weight.abs().sum(1), s)
            fc.weight[idx] = 0
            fc.bias[idx] = 0
    return model


def prune_convnext(model, s):
    with torch.no_grad():
        stages = model.encoder.stages
        emb = model.embeddings
        for i, st in enumerate(stages):
            writer = emb.patch_embeddings if i == 0 else st.downsampling_layer[1]
            score = writer.weight.abs().flatten(1).sum(1)
            for L in st.layers:
                score = score + L.pwconv2.weight.abs().sum(1)
            idx = _lowest(score, s)
            writer.weight[idx] = 0
            writer.bias[idx] = 0
            if i == 0:
                emb.layernorm.weight[idx] = 0
                emb.layernorm.bias[idx] = 0
            for L in st.layers:
                L.dwconv.weight[idx] = 0
                L.dwconv.bias[idx] = 0
                L.layernorm.weight[idx] = 0
                L.layernorm.bias[idx] = 0
                L.layer_scale_parameter[idx] = 0
                hid = _lowest(L.pwconv1.weight.abs().sum(1) * L.pwconv2.weight.abs().sum(0), s)
                L.pwconv1.weight[hid] = 0
                L.pwconv1.bias[hid] = 0
            reader = stages[i + 1].downsampling_layer[0] if i + 1 < len(stages) else model.layernorm
            reader.weight[idx] = 0
            reader.bias[idx] = 0
    _unstructured(model)
    return model


def prune_gpt2(model, s):
    with torch.no_grad():
        cfg = model.config
        C, H = cfg.n_embd, cfg.n_head
        dh = C // H
        score = model.wte.weight.abs().sum(0) + model.wpe.weight.abs().sum(0)
        for blk in model.h:
            score = score + blk.attn.c_proj.weight.abs().sum(0) + blk.mlp.c_proj.weight.abs().sum(0)
        st = _lowest(score, s)
        model.wte.weight[:, st] = 0
        model.wpe.weight[:, st] = 0
        for blk in model.h:
            a = blk.attn
            a.c_proj.weight[:, st] = 0
            a.c_proj.bias[st] = 0
            blk.mlp.c_proj.weight[:, st] = 0
            blk.mlp.c_proj.bias[st] = 0
            for ln in (blk.ln_1, blk.ln_2):
                ln.weight[st] = 0
                ln.bias[st] = 0
            heads = _lowest(a.c_proj.weight.abs().sum(1).reshape(H, dh).sum(1), s)
            for h in heads.tolist():
                a.c_proj.weight[h * dh:(h + 1) * dh, :] = 0
            hid = _lowest(blk.mlp.c_fc.weight.abs().sum(0) * blk.mlp.c_proj.weight.abs().sum(1), s)
            blk.mlp.c_fc.weight[:, hid] = 0
            blk.mlp.c_fc.bias[hid] = 0
        model.ln_f.weight[st] = 0
        model.ln_f.bias[st] = 0
    _unstructured(model)
    return model


def build(name, s, res):
    torch.manual_seed(0)
    if name == "lenet":
        return prune_lenet(lenet_300_100(), s), lambda b: torch.randn(b, 784)
    import transformers
    if name == "convnext_tiny":
        m = transformers.ConvNextModel(transformers.ConvNextConfig()).eval()
        return prune_convnext(m, s), lambda b: torch.randn(b, 3, res, res)
    if name == "gpt2":
        cfg = transformers.GPT2Config(n_embd=256, n_layer=4, n_head=8, vocab_size=1000, n_positions=128,
                                      use_cache=False, bos_token_id=0, eos_token_id=0)
        m = transformers.GPT2Model(cfg).eval()
        return prune_gpt2(m, s), lambda b: torch.randint(0, 1000, (b, 64))
    raise SystemExit(f"unknown model {name}")


# ----------------------------------------------------------------------------- measuring
def flops(model, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops()


def _time_pair(fa, fb, repeats):
    fa(), fb()                                    # warm-up
    ta, tb = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        fa()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        fb()
        tb.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def ort_session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def export_dense(model, x, path):
    import contextlib
    import io
    import logging
    from torch.export import Dim
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        prog = torch.onnx.export(model, (x,), None, dynamo=True, dynamic_shapes=({0: Dim("batch", min=1)},))
        prog.save(path)


def run_model(name, sparsities, batches, repeats, res, tmp, threads, log, eager_batches=None):
    rows = []
    dense_cache = {}
    for s in sparsities:
        model, make = build(name, s, res)
        t0 = time.perf_counter()
        result = fxminimize.minimize(model, (make(2),))
        t_min = time.perf_counter() - t0
        small = result.module
        x1 = make(1)
        f_dense, f_small = flops(model, x1), flops(small, x1)
        mpath = os.path.join(tmp, f"{name}_{s}_min.onnx")
        onx = fxminimize.export_onnx(result, (make(2),), mpath, dynamic_batch=True, dynamic_sizes=False, reference=model)
        dpath = os.path.join(tmp, f"{name}_dense.onnx")
        if not os.path.exists(dpath):
            export_dense(model, make(2), dpath)
        sd, sm = ort_session(dpath, threads), ort_session(mpath, threads)
        row = {"model": name, "sparsity": s, "params_before": result.report.params_before,
               "params_after": result.report.params_after, "param_ratio": result.report.ratio,
               "flops_dense": f_dense, "flops_min": f_small, "flops_ratio": f_dense / max(1, f_small),
               "onnx_bytes_dense": os.path.getsize(dpath), "onnx_bytes_min": onx.bytes_on_disk,
               "onnx_max_abs_error": onx.max_abs_error, "minimize_s": t_min}
        for b in batches:
            x = make(b)
            if eager_batches is None or b in eager_batches:
                with torch.no_grad():
                    te_d, te_m = _time_pair(lambda: model(x), lambda: small(x), repeats)
            else:
                te_d = te_m = float("nan")
            feed_d = {sd.get_inputs()[0].name: x.numpy()}
            feed_m = {sm.get_inputs()[0].name: x.numpy()}
            to_d, to_m = _time_pair(lambda: sd.run(None, feed_d), lambda: sm.run(None, feed_m), repeats)
            row[f"eager_b{b}"] = (te_d, te_m, te_d / te_m)
            row[f"ort_b{b}"] = (to_d, to_m, to_d / to_m)
        rows.append(row)
        log(_fmt(row, batches))
        dense_cache.clear()
    return rows


# ----------------------------------------------------------------------------- physical limit
QUICK = [("gpt2_lm", 0.5), ("vit", 0.5), ("convnext", 0.75)]


def _interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds per callable, the callables run in turn ``repeats`` times after a warm-up."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _onnx_nodes(path) -> int:
    import onnx
    return len(onnx.load(path, load_external_data=False).graph.node)


def run_native(name, s, runtimes, repeats, res, tmp, masked_compiled: bool):
    import bench_limit
    masked, native, make = bench_limit.build(name, s, res)
    x = make()
    t0 = time.perf_counter()
    result = fxminimize.minimize(masked, (make(2),))
    row = {"model": name, "sparsity": s, "input": list(x.shape), "minimize_s": time.perf_counter() - t0,
           "params_masked": result.report.params_before, "params_min": result.report.params_after,
           "params_native": sum(p.numel() for p in native.parameters())}
    small = result.module
    models = {"masked": masked, "min": small, "native": native}
    if "ort" in runtimes:
        paths = {k: os.path.join(tmp, f"{name}_{s}_{k}.onnx") for k in models}
        # batch-dynamic only, as the masked and native exports (export_dense): like for like
        onx = fxminimize.export_onnx(result, (make(2),), paths["min"], dynamic_batch=True, dynamic_sizes=False,
                                     reference=masked)
        row["onnx_max_abs_error"] = onx.max_abs_error
        for k in ("masked", "native"):
            export_dense(models[k], make(2), paths[k])
        sess = {k: ort_session(p, 1) for k, p in paths.items()}
        feeds = {k: {v.get_inputs()[0].name: x.numpy()} for k, v in sess.items()}
        t = _interleaved({k: (lambda k=k: sess[k].run(None, feeds[k])) for k in sess}, repeats)
        row["ort_ms"] = {k: v * 1e3 for k, v in t.items()}
        row["onnx_nodes"] = {k: _onnx_nodes(p) for k, p in paths.items()}
    if "inductor" in runtimes:
        keys = [k for k in models if k != "masked" or masked_compiled]
        with torch.no_grad():
            compiled = {k: torch.compile(models[k], backend="inductor", dynamic=False) for k in keys}
            t0 = time.perf_counter()
            got = compiled["min"](x)
            row["inductor_compile_min_s"] = time.perf_counter() - t0
            want = masked(x)
            g, w = (got.logits if hasattr(got, "logits") else got), (want.logits if hasattr(want, "logits") else want)
            row["inductor_max_abs_error"] = float((g - w).abs().max())
            t = _interleaved({k: (lambda k=k: compiled[k](x)) for k in keys}, repeats)
        row["inductor_ms"] = {k: v * 1e3 for k, v in t.items()}
    for rt in runtimes:
        ms = row[f"{rt}_ms"]
        row[f"{rt}_min_over_native"] = ms["min"] / ms["native"]
        if "masked" in ms:
            row[f"{rt}_masked_over_min"] = ms["masked"] / ms["min"]
    return row


def _fmt_native(r, runtimes):
    parts = [f"{r['model']:<9}", f"{r['sparsity']:>5.2f}", f"{r['params_min']:>11,}/{r['params_native']:<11,}"]
    for rt in runtimes:
        ms = r[f"{rt}_ms"]
        parts.append(f"{ms.get('masked', float('nan')):9.2f} {ms['min']:8.2f} {ms['native']:8.2f} "
                     f"{r[f'{rt}_min_over_native']:6.3f}x")
    if "onnx_nodes" in r:
        parts.append(f"{r['onnx_nodes']['min']:4d}/{r['onnx_nodes']['native']:<4d}")
    return " ".join(parts)


def main_native(args, hdr):
    runtimes = args.runtimes.split(",")
    if args.quick:
        points = QUICK
    else:
        models = args.models.split(",") if args.models else ["gpt2_lm", "vit", "convnext"]
        points = [(m, float(s)) for m in models for s in args.sparsities.split(",")]
    print(hdr, flush=True)
    cols = " ".join(f"{rt + ' masked/min/native ms':>27} {'min/nat':>7}" for rt in runtimes)
    print(f"{'model':<9} {'s':>5} {'params min/native':>23} {cols} onnx nodes min/native", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, s in points:
            row = run_native(name, s, runtimes, args.repeats, args.res, tmp, masked_compiled=not args.quick)
            rows.append(row)
            print(_fmt_native(row, runtimes), flush=True)
    return rows


def _fmt(r, batches):
    parts = [f"{r['model']:<14}", f"{r['sparsity']:>5.2f}", f"{r['param_ratio']:>6.2f}x", f"{r['flops_ratio']:>6.2f}x"]
    for b in batches:
        for k in ("eager", "ort"):
            d, m, sp = r[f"{k}_b{b}"]
            parts.append(f"{'-':>9} {'-':<9}{'-':>5} " if d != d else f"{d * 1e3:9.2f}/{m * 1e3:<9.2f}{sp:5.2f}x")
    return " ".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="default: lenet,gpt2,convnext_tiny (--native: gpt2_lm,vit,convnext)")
    ap.add_argument("--native", action="store_true",
                    help="masked / minimized / natively built at the kept widths, in onnxruntime and inductor")
    ap.add_argument("--runtimes", default="ort,inductor", help="--native: ort, inductor or both")
    ap.add_argument("--quick", action="store_true",
                    help="--native: only the acceptance points, masked model not compiled")
    ap.add_argument("--sparsities", default="0.25,0.5,0.75")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--repeats", type=int, help="timed runs per model (default 5; --native: 20)")
    ap.add_argument("--res", type=int, default=224, help="ConvNeXt input resolution")
    ap.add_argument("--eager-batches", help="batch sizes timed in torch eager (default: all of --batches)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch and onnxruntime intra-op threads (default: all cores; use 1 on a busy machine)")
    ap.add_argument("--json", help="write the rows as JSON")
    args = ap.parse_args()
    if args.native:
        args.threads = 1
    threads = args.threads
    torch.set_num_threads(threads)
    batches = [int(b) for b in args.batches.split(",")]
    sparsities = [float(s) for s in args.sparsities.split(",")]
    hdr = (f"# {platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} cores, "
           f"{threads} thread(s) used | ConvNeXt at {args.res}x{args.res} | "
           f"torch {torch.__version__} | onnxruntime {__import__('onnxruntime').__version__} | "
           f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    if args.native:
        args.repeats = args.repeats or 20
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        rows = main_native(args, hdr + f" | load average {load:.2f} at start")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": hdr, "load_average_start": load,
                           "load_average_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                           "rows": rows}, f, indent=1)
        return
    args.repeats = args.repeats or 5
    args.models = args.models or "lenet,gpt2,convnext_tiny"
    print(hdr, flush=True)
    cols = " ".join(f"{k} b{b} dense/min ms  speedup" for b in batches for k in ("eager", "ort"))
    print(f"{'model':<14} {'s':>5} {'params':>7} {'FLOPs':>7} {cols}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows += run_model(name, sparsities, batches, args.repeats, args.res, tmp, threads,
                              lambda s: print(s, flush=True),
                              [int(b) for b in args.eager_batches.split(",")] if args.eager_batches else None)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": hdr, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
