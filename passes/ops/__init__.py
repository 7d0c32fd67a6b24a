"""One module per op family: its analysis rule, its rewrite and its math, keyed by aten overloads.

Importing this package registers every rule in :mod:`fxminimize.passes.registry`.
"""
from . import (attention, conv, embedding, linear, norm, pointwise, reduce, shape,  # noqa: F401
               tuples)
from . import einsum, grouped_mm, index, matmul, stack, where  # noqa: F401  (transformer layouts, MoE)
from . import groupnorm, vector_norm  # noqa: F401
from . import expand  # noqa: F401  (expand / expand_as carrying the channel dim)
