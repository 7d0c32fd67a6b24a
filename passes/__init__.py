"""fxminimize's op rules and rewrite passes; installed as ``fxminimize.passes``.

- :mod:`.rule`, :mod:`.registry`: the rule interface and the aten-keyed table.
- :mod:`.ops`: one module per op family (rule + rewrite + math).
- :mod:`.infra`, :mod:`.infra_pass`: the rewrite context and pass contracts.
- :mod:`.gather`, :mod:`.restore`, :mod:`.tie`, :mod:`.cleanup`: graph-level passes.
- :mod:`.pipeline`: :func:`run_pipeline`, the passes in their declared order.
"""
from . import ops  # noqa: F401  (registers the built-in rules)
from .registry import BARRIER, IGNORE, lookup, register, register_many, table
from .rule import Barrier, Ignore, Rule

__all__ = ["Rule", "Barrier", "Ignore", "register", "register_many", "lookup", "table", "BARRIER", "IGNORE"]
