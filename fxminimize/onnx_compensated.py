"""ONNX emission of ``fxminimize::compensated_layer_norm`` as one fused ``LayerNormalization``.

The operator (:mod:`fxminimize.compensated`) is LayerNorm over C = ``count`` channels of which
only the K kept ones are present; the R = C − K removed ones were CONST, and only
s1 = Σ_R v_r and s2 = Σ_R v_r² matter (μ and σ² depend on them alone). Left to the exporter it
is decomposed into ~15 elementary ONNX ops per norm, which onnxruntime runs as separate kernels
(GPT-2 LM at half width: 379 nodes against 244 for the natively built model, 4 % slower).

Emission (channels-last, ``dim`` = the last axis, R > 0). Put back the R removed channels as R
copies of their mean v̄ = s1/R, normalise all C channels with the standard ``LayerNormalization``
and keep the K real ones; the removed values' spread m2 = s2 − s1²/R (≥ 0) goes into ε:

    x_C = Pad(x, R × v̄ after)
    y_C = LayerNormalization(x_C, Pad(γ, 0), Pad(β, 0), ε' = ε + m2/C)
    y_K = Slice(y_C, 0, K)

Why exact: the padded row has the full row's sum, Σ_K x + R·v̄ = Σ_K x + s1, hence its mean μ;
its sum of squared deviations is the full row's less the removed values' own spread,
Σ_K (x−μ)² + R(v̄−μ)² = Σ_K (x−μ)² + Σ_R (v_r−μ)² − m2 (since Σ_R (v_r−μ)² = m2 + R(v̄−μ)²),
so its variance is σ² − m2/C and σ² + ε = (σ² − m2/C) + ε'. The kept outputs
γ_K (x_K − μ)/√(σ² + ε) + β_K follow (:mod:`fxminimize.compensated`'s formula). The padded γ and
β are constants the exporter's optimizer folds into initializers, so each compensated norm costs
three nodes: Pad, LayerNormalization, Slice. The only rounding beyond LayerNorm's own is v̄ and ε'
in float32 (relative 2⁻²⁴). ``count == K`` (nothing removed) emits the plain ``LayerNormalization``.

Why not fewer channels (the native model normalises K, this form C): no ``LayerNormalization``
over W < C channels, the K kept ones plus m = W − K appended values p (constants, or values
computed per row), gives these outputs without per-row ops after it, even allowing a constant
factor λ folded into γ. Matching the offset of every kept output needs the norm's mean μ_W = μ,
so Σp = s1 − (C − W)·μ (with Σ_K x = Cμ − s1); matching the slope needs
σ_W² + ε' = λ²(σ² + ε), and the Σ_K x² terms force λ² = C/W; what is left is
Σp² = s2 − (C − W)·μ² + Cε − Wε', negative once the row mean |μ| is large, while Σp² ≥ 0.
The alternative that stays O(K) — the
norm over K with its Mean/InvStdDev outputs and a per-row correction
(y = (z + t⊗γ'')/√u + β, 8 per-row ops and 4 full-width ones per norm) — was built and measured
(docs/deployment.md): slower than this form in onnxruntime on ConvNeXt-Tiny at 75 % (1.27× against
1.18× the native model, same run) and on the GPT-2 LM at 50 %, as were the elementary ops
(ConvNeXt: 1.39× for every norm, 1.27× for the norms with K ≥ 48, against 1.19× in another run),
because onnxruntime runs each of those small ops as its own kernel. So this form is emitted for every channels-last norm.

Any other ``dim`` (channels-first, :class:`~fxminimize.compensated.CompensatedLayerNorm` with
``dim=1``) is emitted in elementary ops along that axis, the same formula as the torch operator.
"""
from __future__ import annotations


from onnxscript import FLOAT
from onnxscript import opset18 as op


def pad_value_and_epsilon(count: int, kept: int, s1: float, s2: float, eps: float) -> tuple:
    """(v̄, ε'): the value of the R = ``count`` − ``kept`` padded channels and the epsilon of the
    ``LayerNormalization`` over all ``count`` (module doc: v̄ = s1/R, ε' = ε + m2/C)."""
    R = int(count) - int(kept)
    if R <= 0:
        raise ValueError(f"count={count}, kept={kept}: nothing to pad")
    vbar = float(s1) / R
    m2 = max(float(s2) - float(s1) * float(s1) / R, 0.0)
    return vbar, float(eps) + m2 / int(count)


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
    ``custom_translation_table`` (module doc: Pad, LayerNormalization with ε', Slice)."""
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
    vbar, eps_c = pad_value_and_epsilon(C, K, s1, s2, eps)
    xp = op.Pad(x, op.Constant(value_ints=[0] * (2 * rank - 1) + [C - K]), _const(vbar, x))
    pads = op.Constant(value_ints=[0, C - K])
    if weight is not None:
        scale = op.Pad(weight, pads, _const(0.0, weight))
    else:
        scale = op.CastLike(op.Constant(value_floats=[1.0] * C), x)
    args = (xp, scale) if bias is None else (xp, scale, op.Pad(bias, pads, _const(0.0, bias)))
    y = op.LayerNormalization(*args, axis=-1, epsilon=eps_c)[0]
    return op.Slice(y, op.Constant(value_ints=[0]), op.Constant(value_ints=[K]), op.Constant(value_ints=[-1]))


def translation_table() -> dict:
    """The ``custom_translation_table`` entries :func:`fxminimize.export_onnx` passes."""
    from .compensated import COMPENSATED_LAYER_NORM
    return {COMPENSATED_LAYER_NORM: compensated_layer_norm_onnx}
