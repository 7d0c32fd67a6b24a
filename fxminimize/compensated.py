"""CompensatedLayerNorm and CompensatedRMSNorm: exact normalisation after CONST channels leave.

LayerNorm over C channels: μ = Σx/C, σ² = Σ(x−μ)²/C, y = γ(x−μ)/√(σ²+ε) + β. Let R be a set of
channels that are CONST(v_r) in every row (ZERO is v_r = 0) and K the kept channels. With
s1 = Σ_R v_r and s2 = Σ_R v_r², both independent of the input:

    μ  = (Σ_K x + s1) / C
    σ² = (Σ_K (x−μ)² + Σ_R (v_r−μ)²) / C = (Σ_K (x−μ)² + s2 − 2μ·s1 + |R|·μ²) / C
    y_K = γ_K (x_K − μ)/√(σ² + ε) + β_K

so the kept outputs are computed exactly from the kept inputs plus three scalars (C, s1, s2;
|R| = C − |K|). RMSNorm (y = γ x/√(Σx²/C + ε)) needs s2 alone: Σx² = Σ_K x² + s2.
Both are written with elementary ops (sum, mul, sub, rsqrt), so they export to plain ONNX.

The LayerNorm is the operator ``torch.ops.fxminimize.compensated_layer_norm`` (registered on
import of this module, CompositeImplicitAutograd: autograd and every backend run the elementary
ops above). It is an operator rather than a Python function so that ``torch.export`` keeps it as
one node: a later :func:`fxminimize.minimize` then recognises it and removes further CONST
channels through it, adding their values to s1 and s2 (the same formula with R grown). ONNX
export decomposes it (``run_decompositions``) into the elementary ops; a saved ``.pt2`` program
that contains it loads after ``import fxminimize``.
"""
from __future__ import annotations

import torch
import torch.nn as nn


OP_SCHEMA = ("compensated_layer_norm(Tensor x, int count, float s1, float s2, Tensor? weight=None, "
             "Tensor? bias=None, float eps=1e-05, int dim=-1) -> Tensor")


def _compensated_layer_norm_impl(x: torch.Tensor, count: int, s1: float, s2: float, weight=None, bias=None,
                                 eps: float = 1e-5, dim: int = -1) -> torch.Tensor:
    """The operator's body, in elementary ops (see the module doc for the math)."""
    removed = count - x.shape[dim]
    mu = (x.sum(dim, keepdim=True) + s1) / count
    d = x - mu
    # s2 − 2μ·s1 + |R|·μ² rewritten as m2 + |R|(v̄ − μ)² with v̄ = s1/|R|, m2 = s2 − s1²/|R|
    # (computed in float64 here): the same value without the cancellation of the expanded form
    if removed:
        vbar = float(s1) / removed
        m2 = max(float(s2) - float(s1) * float(s1) / removed, 0.0)
        extra = m2 + removed * (vbar - mu) ** 2
    else:
        extra = 0.0
    var = ((d * d).sum(dim, keepdim=True) + extra) / count
    y = d * torch.rsqrt(var + eps)
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def _register_op():
    try:
        return torch.ops.fxminimize.compensated_layer_norm.default
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("fxminimize", "FRAGMENT")
    lib.define(OP_SCHEMA)
    lib.impl("compensated_layer_norm", _compensated_layer_norm_impl, "CompositeImplicitAutograd")
    _register_op.lib = lib  # the registration lives as long as the Library object
    return torch.ops.fxminimize.compensated_layer_norm.default


#: the operator ``fxminimize::compensated_layer_norm`` (an OpOverload, the target of rewritten nodes)
COMPENSATED_LAYER_NORM = _register_op()


def compensated_layer_norm(x: torch.Tensor, count: int, s1: float, s2: float, weight=None, bias=None,
                           eps: float = 1e-5, dim: int = -1) -> torch.Tensor:
    """LayerNorm of the full C = ``count`` channels, evaluated on the kept channels ``x``
    (calls the operator ``torch.ops.fxminimize.compensated_layer_norm``)."""
    return COMPENSATED_LAYER_NORM(x, int(count), float(s1), float(s2), weight, bias, float(eps), int(dim))


def compensated_rms_norm(x: torch.Tensor, count: int, s2: float, weight=None, eps: float = 1e-6,
                         dim: int = -1) -> torch.Tensor:
    """RMSNorm of the full C = ``count`` channels, evaluated on the kept channels ``x``."""
    ms = ((x * x).sum(dim, keepdim=True) + s2) / count
    y = x * torch.rsqrt(ms + eps)
    if weight is not None:
        shape = [1] * x.dim()
        shape[dim] = x.shape[dim]
        y = y * weight.reshape(shape)
    return y


class CompensatedLayerNorm(nn.Module):
    """LayerNorm over ``count`` channels of which only the kept ones are stored (see module doc).

    ``dim=-1`` is channels-last (nn.LayerNorm); ``dim=1`` channels-first (ConvNeXt's
    downsampling norm). Extra state: ``count``, ``s1``, ``s2`` (zero when the removed
    channels were zero).
    """

    def __init__(self, kept: int, count: int, s1: float = 0.0, s2: float = 0.0, eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, dim: int = -1):
        super().__init__()
        if not 0 <= kept <= count:
            raise ValueError(f"kept={kept} must be within [0, count={count}]")
        self.count, self.s1, self.s2, self.eps, self.dim = int(count), float(s1), float(s2), float(eps), dim
        self.weight = nn.Parameter(torch.ones(kept)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(kept)) if elementwise_affine and bias else None

    @classmethod
    def from_layer_norm(cls, ln: nn.LayerNorm, keep: torch.Tensor, const_values: torch.Tensor, dim: int = -1):
        """Build from a LayerNorm whose channels outside ``keep`` are CONST(``const_values``).

        ``const_values`` has one value per *removed* channel, in increasing channel order.
        """
        (C,) = ln.normalized_shape
        v = const_values.double()
        m = cls(len(keep), C, float(v.sum()), float((v * v).sum()), ln.eps, ln.weight is not None,
                ln.bias is not None, dim)
        with torch.no_grad():
            if ln.weight is not None:
                m.weight.copy_(ln.weight[keep])
            if ln.bias is not None:
                m.bias.copy_(ln.bias[keep])
        return m

    def forward(self, x):
        return compensated_layer_norm(x, self.count, self.s1, self.s2, self.weight, self.bias, self.eps, self.dim)

    def extra_repr(self):
        return f"kept={self.weight.numel() if self.weight is not None else '?'}, count={self.count}, " \
               f"s1={self.s1:.6g}, s2={self.s2:.6g}, eps={self.eps}, dim={self.dim}"


class CompensatedRMSNorm(nn.Module):
    """RMSNorm over ``count`` channels of which only the kept ones are stored (extra state s2).

    Half-precision inputs are normalised in float32 and cast back before the weight is applied,
    as Hugging Face's Llama/Mistral/Qwen2 RMSNorm does (the module mode's replacement for it).
    """

    def __init__(self, kept: int, count: int, s2: float = 0.0, eps: float = 1e-6, elementwise_affine: bool = True,
                 dim: int = -1):
        super().__init__()
        self.count, self.s2, self.eps, self.dim = int(count), float(s2), float(eps), dim
        self.weight = nn.Parameter(torch.ones(kept)) if elementwise_affine else None

    def forward(self, x):
        if x.dtype in (torch.float16, torch.bfloat16):
            y = compensated_rms_norm(x.float(), self.count, self.s2, None, self.eps, self.dim).to(x.dtype)
            if self.weight is None:
                return y
            shape = [1] * x.dim()
            shape[self.dim] = x.shape[self.dim]
            return self.weight.reshape(shape) * y
        return compensated_rms_norm(x, self.count, self.s2, self.weight, self.eps, self.dim)

    def extra_repr(self):
        return f"kept={self.weight.numel() if self.weight is not None else '?'}, count={self.count}, " \
               f"s2={self.s2:.6g}, eps={self.eps}, dim={self.dim}"
