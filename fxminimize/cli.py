"""Command line: ``fxminimize demo``."""
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from .errors import MinimizationError
    try:
        if args.cmd == "demo":
            from .demo import run_demo
            run_demo(lambda s: sys.stdout.write(s + "\n"))
    except MinimizationError as exc:
        sys.stderr.write(f"fxminimize: error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
