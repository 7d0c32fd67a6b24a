"""One module per op family: its analysis rule, its rewrite and its math, keyed by aten overloads.

Importing this package registers every rule in :mod:`fxminimize.passes.registry`.
"""
from . import (attention, conv, embedding, linear, matmul, norm, pointwise, reduce,  # noqa: F401
               shape, tuples)
