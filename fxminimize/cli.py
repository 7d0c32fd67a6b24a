"""Command line: ``fxminimize demo``, ``fxminimize explain``, ``fxminimize minimize``."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fxminimize",
                                     description="Rewrite masked PyTorch models into smaller dense models "
                                                 "that compute the same function.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="minimize built-in masked example models (no data needed) and print a table")
    _add_explain_parser(sub)
    _add_minimize_parser(sub)
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "cmd", None) == "minimize":
            _minimize_usage_error(f"unrecognized arguments: {' '.join(extra)}")
        _explain_extra(parser, args, extra)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from .errors import MinimizationError
    try:
        if args.cmd == "demo":
            from .demo import run_demo
            run_demo(lambda s: sys.stdout.write(s + "\n"))
        elif args.cmd == "explain":
            return _cmd_explain(args, lambda s: sys.stdout.write(s + "\n"))
        elif args.cmd == "minimize":
            return _cmd_minimize(args, lambda s: sys.stdout.write(s + "\n"))
    except MinimizationError as exc:
        sys.stderr.write(f"fxminimize: error: {exc}\n")
        return 2
    return 0


# ----------------------------------------------------------------------------- explain
def _add_explain_parser(sub) -> None:
    p = sub.add_parser(
        "explain", help="minimize a model and explain why a channel is kept or removed (or write the "
                        "report as HTML/DOT)",
        description="Minimize MODEL and explain channel CHANNEL of NODE. MODEL is a built-in demo model "
                    "(lenet_300_100, resnet_small, convnext_small: masked as in `fxminimize demo`), a model "
                    "of fxminimize.testing.zoo.ZOO (unmasked), or MODULE:FACTORY, a function returning a model "
                    "or (model, masks), MODULE a dotted name importable from the current directory or a path "
                    "to a .py file (the same rules as `fxminimize minimize --model`). NODE is an FX node "
                    "name or a module path (its output node). "
                    "Without CHANNEL, the node's kept/removed channels are listed; without NODE, every "
                    "node with a channel space.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("node", metavar="NODE", nargs="?")
    p.add_argument("channel", metavar="CHANNEL", nargs="?", type=int)
    p.add_argument("--input-shape", help="example input shape, e.g. 1,3,32,32 (needed for MODULE:FACTORY)")
    p.add_argument("--seed", type=int, default=0, help="torch seed for the model's weights and the input")
    p.add_argument("--html", metavar="PATH", help="also write the report as a self-contained HTML page")
    p.add_argument("--dot", metavar="PATH", help="also write the graph as graphviz DOT")


def _explain_extra(parser, args, extra) -> None:
    """argparse cannot take NODE CHANNEL after an option (``explain M --html f NODE 3``): fill them in."""
    if getattr(args, "cmd", None) != "explain" or any(e.startswith("-") for e in extra) or len(extra) > 2:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    for v in extra:
        if args.node is None:
            args.node = v
        elif args.channel is None:
            try:
                args.channel = int(v)
            except ValueError:
                parser.error(f"CHANNEL must be an integer, got {v!r}")
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")


def _load_model(spec: str, input_shape, seed: int):
    import torch

    from .demo import DEMOS
    from .errors import MinimizationError
    from .testing.zoo import ZOO

    torch.manual_seed(seed)
    masks = None
    shape = tuple(int(s) for s in input_shape.replace("x", ",").split(",")) if input_shape else None
    if spec in DEMOS:
        build, zoo = DEMOS[spec]
        model, masks = build()
        shape = shape or ZOO[zoo][1]
    elif spec in ZOO:
        model = ZOO[spec][0]()
        shape = shape or ZOO[spec][1]
    elif ":" in spec:
        from .cli_models import ModelSpecError, load_model
        try:
            model, masks = load_model(spec, option="MODEL")
        except ModelSpecError as exc:
            raise MinimizationError(str(exc)) from exc
        if shape is None:
            raise MinimizationError("--input-shape is needed for a MODULE:FACTORY model")
    else:
        raise MinimizationError(f"unknown model {spec!r}: use one of {', '.join(list(DEMOS) + list(ZOO))} "
                                "or MODULE:FACTORY")
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return model, masks, x


def _ranges(idx) -> str:
    out, start, prev = [], None, None
    for c in list(idx) + [None]:
        if c is not None and prev is not None and c == prev + 1:
            prev = c
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = c
    return ", ".join(out) or "none"


def _cmd_explain(args, write) -> int:
    from .api import minimize
    from .explain import node_label

    model, masks, x = _load_model(args.model, args.input_shape, args.seed)
    res = minimize(model, (x,), masks=masks)
    rep, plan = res.report, res.plan
    if args.html:
        rep.to_html(args.html, explain=(args.node, args.channel) if args.node and args.channel is not None else None)
    if args.dot:
        with open(args.dot, "w", encoding="utf-8") as f:
            f.write(rep.to_dot())
    try:
        if args.node is None:
            write(str(rep))
            write("nodes with a channel space (kept/total):")
            for name in plan.node_names:
                if name in plan.size:
                    write(f"  {node_label(name, rep.graph)}: {len(plan.keep[name])}/{plan.size[name]}")
        elif args.channel is None:
            from .explain import resolve_node
            name = resolve_node(plan, rep.graph, args.node)
            if name not in plan.size:
                write(f"{node_label(name, rep.graph)} has no channel space: nothing in it can be removed")
            else:
                write(f"{node_label(name, rep.graph)}: {len(plan.keep[name])} of {plan.size[name]} channels kept")
                write(f"  kept: {_ranges(plan.keep[name])}")
                write(f"  removed: {_ranges(plan.removed(name))}")
        else:
            write(rep.explain(args.node, args.channel))
    except (KeyError, ValueError) as exc:
        sys.stderr.write(f"fxminimize: error: {exc.args[0] if exc.args else exc}\n")
        return 2
    return 0


# ----------------------------------------------------------------------------- minimize
_MINIMIZE_HELP = """\
Minimize a masked model and write the smaller model (and optionally ONNX and an HTML report).

MODEL is MODULE:FACTORY: an importable module (the current directory is searched) or a Python
file (path/to/model.py), and the name of a function in it that takes no arguments and returns
the model, or a tuple (model, masks) with masks a {parameter name: bool tensor} dict. Weights
that are exactly zero, torch.nn.utils.prune masks and the masks are what make it smaller.

exit status: 0 on success, 2 for a bad command line or input file, 1 when the model cannot be
minimized or exported exactly. Every error is one line on stderr.

example:
  fxminimize minimize --model mymodels.py:pruned_resnet --checkpoint ckpt.pt \\
      --input-shape 1,3,224,224 --out small.pt2 --onnx small.onnx --report report.html
"""


def _minimize_usage_error(message: str):
    sys.stderr.write(f"fxminimize minimize: error: {message} (see fxminimize minimize --help)\n")
    sys.exit(2)


def _shape(text: str):
    parts = text.replace("x", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"invalid --input-shape {text!r}: expected positive integers "
                                         "separated by commas, such as 1,3,224,224")
    return dims


def _add_minimize_parser(sub) -> None:
    p = sub.add_parser("minimize", help="minimize a model from a Python file or module and save it "
                                        "(optionally as ONNX, checked in onnxruntime, and an HTML report)",
                       description=_MINIMIZE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.error = _minimize_usage_error   # errors: one line, exit status 2
    p.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                   help="where the model comes from: MODULE (dotted name or path to a .py file) and FACTORY, "
                        "a function returning the model or (model, masks)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="state dict to load into the model, read with torch.load(weights_only=True): a "
                        "state dict, or a dict holding one under 'state_dict', 'model' or "
                        "'model_state_dict' (optional 'masks' beside it); torch.nn.utils.prune entries "
                        "(weight_orig, weight_mask) are applied")
    p.add_argument("--input-shape", required=True, type=_shape, action="append", metavar="SHAPE",
                   help="shape of the example input, e.g. 1,3,224,224; repeat for a model taking several "
                        "inputs. Use batch >= 2 for a model that accepts any batch size (a batch-1 "
                        "example fixes the batch size to 1)")
    p.add_argument("--input-dtype", default="float32", choices=["float32", "float64", "int64"],
                   help="dtype of the example input(s) (int64 for token ids; default float32)")
    p.add_argument("--int-high", type=int, default=100, metavar="N",
                   help="int64 inputs are drawn from [0, N) (e.g. the vocabulary size; default 100)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="where to write the minimized model (a torch.export program; load it with "
                        "fxminimize.load(FILE) or torch.export.load(FILE).module())")
    p.add_argument("--onnx", metavar="FILE",
                   help="also export the minimized model to ONNX and check it in onnxruntime against the "
                        "original model on fresh inputs")
    p.add_argument("--onnx-dynamic-batch", action="store_true",
                   help="make the batch dim of the ONNX model symbolic (needs batch >= 2 in --input-shape)")
    p.add_argument("--report", metavar="FILE", help="also write the report as a self-contained HTML page")
    p.add_argument("--seed", type=int, default=0, help="seed for the factory's weights and the example input")


class _CliError(Exception):
    """A bad command line or input file (exit status 2)."""


def _load_model_or_cli_error(spec: str):
    from .cli_models import ModelSpecError, load_model
    try:
        return load_model(spec, option="--model")
    except ModelSpecError as exc:
        raise _CliError(str(exc)) from exc


def _apply_checkpoint(model, path: str, masks):
    import os

    import torch
    if not os.path.isfile(path):
        raise _CliError(f"--checkpoint: file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors, unsafe globals
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise _CliError(f"--checkpoint: cannot read {path} with torch.load(weights_only=True) "
                        f"({type(exc).__name__}: {first})") from exc
    if isinstance(obj, dict):
        for k in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(k), dict):
                if isinstance(obj.get("masks"), dict):
                    masks = {**(masks or {}), **obj["masks"]}
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise _CliError(f"--checkpoint: {path} does not hold a state dict (a dict of tensors)")
    sd = dict(obj)
    for key in [k for k in sd if k.endswith("_orig")]:      # torch.nn.utils.prune reparametrisation
        base = key[: -len("_orig")]
        if base + "_mask" in sd and base not in sd:
            sd[base] = sd.pop(key) * sd.pop(base + "_mask")
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        def few(xs):
            return ", ".join(xs[:4]) + (f" and {len(xs) - 4} more" if len(xs) > 4 else "")
        parts = ([f"missing {few(missing)}"] if missing else []) + ([f"unexpected {few(unexpected)}"] if unexpected else [])
        raise _CliError(f"--checkpoint: {path} does not fit the model: {'; '.join(parts)}")
    bad = [k for k in own if tuple(own[k].shape) != tuple(sd[k].shape)]
    if bad:
        k = bad[0]
        raise _CliError(f"--checkpoint: {k} has shape {tuple(sd[k].shape)} in {path}, "
                        f"{tuple(own[k].shape)} in the model")
    model.load_state_dict(sd)
    return masks


def _cmd_minimize(args, write) -> int:
    import os

    import torch

    from .errors import MinimizationError
    try:
        torch.manual_seed(args.seed)
        model, masks = _load_model_or_cli_error(args.model)
        if args.checkpoint:
            masks = _apply_checkpoint(model, args.checkpoint, masks)
        model.eval()
        for opt in ("out", "onnx", "report"):
            path = getattr(args, opt)
            d = os.path.dirname(os.path.abspath(path)) if path else None
            if d and not os.path.isdir(d):
                raise _CliError(f"--{opt}: directory does not exist: {d}")
        gen = torch.Generator().manual_seed(args.seed)
        dtype = getattr(torch, args.input_dtype)
        if dtype == torch.int64:
            xs = tuple(torch.randint(0, args.int_high, s, generator=gen) for s in args.input_shape)
        else:
            xs = tuple(torch.randn(s, generator=gen, dtype=dtype) for s in args.input_shape)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from .api import minimize
            try:
                with torch.no_grad():
                    model(*xs)
            except Exception as exc:  # noqa: BLE001 - say it is the input that does not fit
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise _CliError(f"the model does not accept inputs of shape "
                                f"{', '.join(str(tuple(s)) for s in args.input_shape)} and dtype {args.input_dtype} "
                                f"({type(exc).__name__}: {first})") from exc
            res = minimize(model, xs, masks=masks)
            rep = res.report
            res.save(args.out)
            write(f"params: {rep.params_before:,} -> {rep.params_after:,} ({rep.ratio:.2f}x smaller), "
                  f"max abs error vs original {rep.max_abs_error:.3g}")
            write(f"wrote {args.out} ({os.path.getsize(args.out):,} bytes; load with fxminimize.load)")
            if args.report:
                rep.to_html(args.report)
                write(f"wrote {args.report}")
            if args.onnx:
                from .onnx_export import export_onnx
                from .masks import masked_copy
                out = export_onnx(res, xs, args.onnx, dynamic_batch=args.onnx_dynamic_batch,
                                  reference=masked_copy(model, masks).eval())
                write(f"wrote {args.onnx} ({out.bytes_on_disk:,} bytes; onnxruntime vs original max abs error "
                      f"{out.max_abs_error:.3g}, {out.tolerance})")
        for w in caught:
            if issubclass(w.category, UserWarning) and "fxminimize" in (w.filename or "") or \
                    "specializes its batch size" in str(w.message):
                sys.stderr.write(f"fxminimize: note: {w.message}\n")
    except _CliError as exc:
        sys.stderr.write(f"fxminimize minimize: error: {exc}\n")
        return 2
    except MinimizationError as exc:
        msg = " ".join(str(exc).split("\n")[:1])
        sys.stderr.write(f"fxminimize minimize: error: {msg}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"fxminimize minimize: error: {exc.strerror or exc}: {exc.filename or ''}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
