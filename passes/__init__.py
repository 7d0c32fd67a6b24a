"""Rewrite passes of fxminimize; installed as ``fxminimize.passes``.

Each pass is a function ``run(gm, plan) -> PassResult`` in its own module. A pass reads the
immutable :class:`fxminimize.analysis.Plan` and edits the working GraphModule: it slices
constant tensors, folds constants into biases, or fixes size arguments. A pass replaces the
tensors it shrinks (never mutates them) and each constant is read only by the pass of its
consumer, so the passes are independent of each other's order.
:data:`PIPELINE` lists them in the order :func:`fxminimize.rewrite.rewrite` runs them.
"""
from .base import PassResult
from . import (linear, conv, batchnorm, channel_params, concat, reshape, split, input_gather, embedding,
               attention, layernorm, reduce, output_restore, tie, cleanup)

PIPELINE = (
    linear.run,
    conv.run,
    batchnorm.run,
    channel_params.run,
    concat.run,
    reshape.run,
    split.run,
    input_gather.run,
    output_restore.run,
    embedding.run,
    attention.run,
    layernorm.run,
    reduce.run,
    tie.run,
    cleanup.run,
)

__all__ = ["PassResult", "PIPELINE"]
