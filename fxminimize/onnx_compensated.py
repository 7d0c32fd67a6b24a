"""ONNX emission of ``fxminimize::compensated_layer_norm`` as one fused ``LayerNormalization``.

The operator (:mod:`fxminimize.compensated`) is LayerNorm over C = ``count`` channels of which
only the K kept ones are present; the R = C − K removed ones were CONST, and only
s1 = Σ_R v_r and s2 = Σ_R v_r² matter (μ and σ² depend on them alone). Left to the exporter it
is decomposed into ~15 elementary ONNX ops per norm, which onnxruntime runs as separate kernels
(GPT-2 LM at half width: 379 nodes against 244 for the natively built model, 4 % slower).

Emission (channels-last, ``dim`` = the last axis, R > 0). Put back R *pseudo-channels* whose
values have the same sum and sum of squares, normalise all C with the standard
``LayerNormalization`` and keep the K real ones:

    x_C = Pad(Pad(x, a × c1 before), b × c2 after)      a + b = R
    y_C = LayerNormalization(x_C, Pad(γ, 0), Pad(β, 0), ε)
    y_K = Slice(y_C, a, a + K)

The pseudo-values: with v̄ = s1/R and m2 = s2 − s1²/R (≥ 0, the removed values' spread),
a = ⌈R/2⌉, b = R − a, u = √(m2/R):

    c1 = v̄ + u·√(b/a),   c2 = v̄ − u·√(a/b)
    a·c1 + b·c2 = R·v̄ + u(√(ab) − √(ab)) = s1
    a·c1² + b·c2² = R·v̄² + u²(b + a) = s2            (the cross terms cancel the same way)

so the padded row has exactly the full row's Σx and Σx² over C channels, hence its μ and σ²
(:mod:`fxminimize.compensated`'s formula), and the kept outputs are γ_K (x_K − μ)/√(σ² + ε) + β_K.
When m2 = 0 (all removed values equal, e.g. ZERO channels, or R = 1) a single Pad with v̄
suffices (a = 0, b = R). The padded γ and β are constants the exporter's optimizer folds into
initializers, so each compensated norm costs Pad (one or two), LayerNormalization and Slice.
The only rounding beyond LayerNorm's own is c1, c2 in the input's dtype (relative 2⁻²⁴ in
float32). ``count == K`` (nothing removed) emits the plain ``LayerNormalization``.

Any other ``dim`` (channels-first, :class:`~fxminimize.compensated.CompensatedLayerNorm` with
``dim=1``) is emitted in elementary ops along that axis, the same formula as the torch operator.
"""
from __future__ import annotations

import math

from onnxscript import FLOAT
from onnxscript import opset18 as op


def pseudo_channels(removed: int, s1: float, s2: float) -> tuple:
    """(a, c1, b, c2): ``a`` channels of value c1 and ``b`` of value c2, a + b = ``removed``,
    with a·c1 + b·c2 = s1 and a·c1² + b·c2² = s2 (module doc; a = 0 when one value suffices)."""
    R = int(removed)
    if R <= 0:
        raise ValueError(f"removed={removed}: nothing to pad")
    vbar = float(s1) / R
    m2 = max(float(s2) - float(s1) * float(s1) / R, 0.0)
    if R == 1 or m2 == 0.0:
        return 0, vbar, R, vbar
    a = (R + 1) // 2
    b = R - a
    u = math.sqrt(m2 / R)
    return a, vbar + u * math.sqrt(b / a), b, vbar - u * math.sqrt(a / b)


def _const(v, like):
    return op.CastLike(op.Constant(value_float=float(v)), like)


def _elementary(x, count: int, s1: float, s2: float, weight, bias, eps: float, dim: int):
    """The operator's formula along ``dim`` in elementary ops (channels-first norms)."""
    rank = len(x.shape)
    d = dim % rank
    K = x.shape[d]
    R = int(count) - K
    axes = op.Constant(value_ints=[d])
    mu = op.Div(op.Add(op.ReduceSum(x, axes, keepdims=1), _const(s1, x)), _const(count, x))
    diff = op.Sub(x, mu)
    ss = op.ReduceSum(op.Mul(diff, diff), axes, keepdims=1)
    if R:
        vbar = float(s1) / R
        m2 = max(float(s2) - float(s1) * float(s1) / R, 0.0)
        dv = op.Sub(_const(vbar, x), mu)
        ss = op.Add(ss, op.Add(op.Mul(op.Mul(dv, dv), _const(R, x)), _const(m2, x)))
    var = op.Div(ss, _const(count, x))
    y = op.Div(diff, op.Sqrt(op.Add(var, _const(eps, x))))
    shape = op.Constant(value_ints=[K] + [1] * (rank - 1 - d))
    if weight is not None:
        y = op.Mul(y, op.Reshape(weight, shape))
    if bias is not None:
        y = op.Add(y, op.Reshape(bias, shape))
    return y


def compensated_layer_norm_onnx(x: FLOAT, count: int, s1: float, s2: float, weight: FLOAT = None,
                                bias: FLOAT = None, eps: float = 1e-5, dim: int = -1):
    """Translation of ``fxminimize::compensated_layer_norm`` for ``torch.onnx.export``'s
    ``custom_translation_table`` (module doc: Pad, LayerNormalization, Slice)."""
    rank = len(x.shape)
    K = x.shape[dim]
    if not isinstance(K, int):
        raise ValueError(f"compensated_layer_norm: the channel dim {dim} has no static size ({K})")
    if dim % rank != rank - 1:
        return _elementary(x, count, s1, s2, weight, bias, eps, dim)
    C = int(count)
    if C == K:                                    # nothing to compensate: the plain norm
        scale = weight if weight is not None else op.CastLike(op.Constant(value_floats=[1.0] * K), x)
        args = (x, scale) if bias is None else (x, scale, bias)
        return op.LayerNormalization(*args, axis=-1, epsilon=float(eps))[0]
    a, c1, b, c2 = pseudo_channels(C - K, s1, s2)
    xp = x
    if a:
        xp = op.Pad(xp, op.Constant(value_ints=[0] * (rank - 1) + [a] + [0] * rank), _const(c1, x))
    xp = op.Pad(xp, op.Constant(value_ints=[0] * (2 * rank - 1) + [b]), _const(c2, x))
    pads = op.Constant(value_ints=[a, b])
    if weight is not None:
        scale = op.Pad(weight, pads, _const(0.0, weight))
    else:
        scale = op.CastLike(op.Constant(value_floats=[1.0] * C), x)
    args = (xp, scale) if bias is None else (xp, scale, op.Pad(bias, pads, _const(0.0, bias)))
    y = op.LayerNormalization(*args, axis=-1, epsilon=float(eps))[0]
    return op.Slice(y, op.Constant(value_ints=[a]), op.Constant(value_ints=[a + K]), op.Constant(value_ints=[-1]))


def translation_table() -> dict:
    """The ``custom_translation_table`` entries :func:`fxminimize.export_onnx` passes."""
    from .compensated import COMPENSATED_LAYER_NORM
    return {COMPENSATED_LAYER_NORM: compensated_layer_norm_onnx}
