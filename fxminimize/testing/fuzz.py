"""Random architectures with random dead structure, for fuzzing :func:`fxminimize.minimize`.

A *case* is a JSON-able ``spec`` (architecture + weight seed + dead structure + how it is
masked). :func:`build_case` turns a spec into ``(model, example_inputs, description)``; the
same spec always gives the same model, so a spec saved to a file reproduces a failure even
after the generator changes.

Two ways to draw specs, sharing one code path (:func:`draw_spec`):

- :func:`random_case(seed)` / :func:`random_spec(seed)`: a plain ``random.Random`` (no
  hypothesis needed at run time);
- :func:`specs` / :func:`cases`: hypothesis strategies (shrinkable).

:func:`check_case` runs ``minimize`` on a case and classifies the outcome (see
``docs/fuzzing.md``): ``ok``, ``refused`` (a MinimizationError with a clear reason),
``missed`` (an obviously removable structure and no channel removed), ``wrong`` (the
minimized model differs from the masked original on fresh inputs: a silent wrong answer),
``internal`` (anything else raised, or MinimizationError "internal error" / "does not match
the original"), ``mutated`` (the user's model was modified), ``invalid`` (the generated model
itself is unusable, e.g. non-finite outputs: a generator problem, not a minimize failure).

Families and blocks (names used in specs):

- ``vec`` (B, C) and ``seq`` (B, T, C), channels last: ``lin`` (Linear + act), ``mlp``
  (residual MLP, optional pre-LayerNorm and layer scale), ``ln``, ``cat`` (x ++ act(W x)),
  ``split`` (chunk/split: GLU, a+b, Linear on one part), ``gate`` (SE-style sigmoid gate),
  ``act``; ``seq`` only: ``attn`` (``sdpa`` with a view/transpose head split, hand-written
  ``softmax(q kᵀ/√d) v``, ``nn.MultiheadAttention(need_weights=False)``), ``tokpool``
  (mean over tokens or token 0, to ``vec``). ``seq`` inputs are float features or token ids
  (``nn.Embedding``).
- ``img`` (B, C, H, W): ``conv`` (plain / depthwise / grouped, BN, padding, stride, act),
  ``resconv`` (conv-BN-act-conv-BN + x), ``dense`` (cat with a conv), ``split``, ``se``,
  ``convnext`` (dwconv, permute, LayerNorm, pointwise MLP, layer scale, permute, + x),
  ``cfln`` (channels-first LayerNorm via permute), ``pool`` (max/avg 2x2), ``head`` (mean,
  adaptive pool or flatten, to ``vec``), ``gnblock`` (PoolFormer mixer with GroupNorm),
  ``grn`` (ConvNeXt-V2 block with GRN), ``wstd`` (weight standardized in ``forward``),
  ``scale1p`` (x·(1 + s)); ``vec``/``seq`` also ``tied`` (one weight, two Linears) and
  ``scale1p`` (:mod:`.fuzz_blocks_norm`).

Dead structure (``spec["dead"]``, each ``{"p": param, "dim": d, "idx": [...], "why": ...}``,
applied as exact zeros, a ``masks`` dict or ``torch.nn.utils.prune``): zero rows (with or
without the bias), zero columns, zero bias entries, residual-stream channels zeroed in every
writer, MLP/SE hidden units, whole attention heads (zero output-projection columns), q dims
(zero rows and bias), k dims (zero rows, bias kept: constant), v dims, layer-scale entries,
LayerNorm/BatchNorm/GroupNorm gamma/beta entries (GroupNorm: also whole groups), GRN weight
entries, rows/columns of a tied weight, conv filters (also weight-standardized ones), input
channels and whole groups, plus random unstructured sparsity.

The code lives in: :mod:`.fuzz_choosers` (random / hypothesis choosers), :mod:`.fuzz_blocks`
(blocks, models and inputs of a spec), :mod:`.fuzz_generator` and :mod:`.fuzz_dead` (drawing
specs), :mod:`.fuzz_cases` (cases and hypothesis strategies) and :mod:`.fuzz_oracle` (checking).
"""
from __future__ import annotations

from .fuzz_blocks import ACTS, EXAMPLE_BATCH, build_model, example_inputs
from .fuzz_cases import Description, build_case, cases, describe, random_case, specs
from .fuzz_choosers import HypothesisChooser, RandomChooser
from .fuzz_generator import WIDTHS, draw_spec, random_spec
from .fuzz_oracle import CHECK_BATCHES, Outcome, check_case, compare_outputs

__all__ = ["random_case", "random_spec", "build_case", "build_model", "draw_spec", "check_case",
           "Outcome", "Description", "specs", "cases", "CHECK_BATCHES", "describe",
           "example_inputs", "compare_outputs", "RandomChooser", "HypothesisChooser", "ACTS",
           "EXAMPLE_BATCH", "WIDTHS"]
