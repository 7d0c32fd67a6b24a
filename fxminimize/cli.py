"""Command line: ``fxminimize demo``, ``fxminimize explain``."""
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
    args, extra = parser.parse_known_args(argv)
    if extra:
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
                    "of fxminimize.models.ZOO (unmasked), or MODULE:FACTORY, a function returning a model "
                    "or (model, masks). NODE is an FX node name or a module path (its output node). "
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
    import importlib

    import torch

    from .demo import DEMOS
    from .errors import MinimizationError
    from .models import ZOO

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
        mod, _, fn = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), fn)()
        except (ImportError, AttributeError) as exc:
            raise MinimizationError(f"cannot load {spec}: {exc}") from exc
        model, masks = obj if isinstance(obj, tuple) else (obj, None)
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


if __name__ == "__main__":
    sys.exit(main())
