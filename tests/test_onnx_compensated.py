"""ONNX emission of the compensated LayerNorm (fxminimize/onnx_compensated.py): Pad, the standard
fused LayerNormalization (the removed values' spread in its epsilon), Slice; exact against the full LayerNorm over all C channels with the
removed ones CONST, in onnxruntime.

Stated tolerance: float32, |ŷ − y| ≤ 1e-5 + 1e-4·|y| (fxminimize.verify's float32 values)."""
from __future__ import annotations

import collections
import contextlib
import io
import logging
import warnings

import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fxminimize
from fxminimize.compensated import COMPENSATED_LAYER_NORM, compensated_layer_norm
from fxminimize.onnx_compensated import pad_value_and_epsilon, translation_table

ort = pytest.importorskip("onnxruntime")
TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("R", [1, 2, 3, 7, 64])
def test_padded_row_has_the_full_rows_statistics(R):
    """R copies of v̄ plus ε' = ε + m2/C: the padded row's mean equals the full row's and its
    variance + ε' equals the full row's variance + ε (float64, the identity behind the emission)."""
    g = torch.Generator().manual_seed(R)
    K = 5
    v = torch.randn(R, generator=g, dtype=torch.float64) * 2 + 0.7
    x = torch.randn(K, generator=g, dtype=torch.float64)
    C = K + R
    vbar, eps_c = pad_value_and_epsilon(C, K, float(v.sum()), float((v * v).sum()), 1e-5)
    full, padded = torch.cat([x, v]), torch.cat([x, torch.full((R,), vbar, dtype=torch.float64)])
    assert abs(padded.mean() - full.mean()) <= 1e-12
    assert abs(padded.var(unbiased=False) + eps_c - full.var(unbiased=False) - 1e-5) <= 1e-12
    # equal removed values (ZERO channels): nothing goes into epsilon
    assert pad_value_and_epsilon(C, K, 0.0, 0.0, 1e-5) == (0.0, 1e-5)
    with pytest.raises(ValueError):
        pad_value_and_epsilon(K, K, 0.0, 0.0, 1e-5)


class OneNorm(nn.Module):
    """compensated_layer_norm over ``count`` channels of which ``kept`` are present."""

    def __init__(self, kept, count, s1, s2, affine=True, bias=True, dim=-1):
        super().__init__()
        self.count, self.s1, self.s2, self.dim = count, s1, s2, dim
        self.w = nn.Parameter(torch.rand(kept) + 0.5) if affine else None
        self.b = nn.Parameter(torch.randn(kept)) if affine and bias else None

    def forward(self, x):
        return compensated_layer_norm(x * 1.0, self.count, self.s1, self.s2, self.w, self.b, 1e-5, self.dim)


def _export(model, x, path):
    from torch.export import Dim
    shapes = ({0: Dim("batch", min=1), 1 if x.dim() == 3 else 2: Dim("length", min=2)},)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, (x,), None, dynamo=True, dynamic_shapes=shapes,
                                 custom_translation_table=translation_table())
        prog.save(str(path))
    g = onnx.load(str(path)).graph
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in g.node), lambda t: torch.from_numpy(
        sess.run(None, {sess.get_inputs()[0].name: t.numpy()})[0])


CASES = {  # name: (C, removed channels' values as a generator of R values, affine, bias)
    "zero": (24, lambda R, g: torch.zeros(R, dtype=torch.float64), True, True),
    "equal": (24, lambda R, g: torch.full((R,), 0.8, dtype=torch.float64), True, True),
    "spread": (24, lambda R, g: torch.randn(R, generator=g, dtype=torch.float64) * 3 + 1, True, True),
    "spread_odd_no_bias": (23, lambda R, g: torch.randn(R, generator=g, dtype=torch.float64) - 2, True, False),
    "no_affine": (16, lambda R, g: torch.randn(R, generator=g, dtype=torch.float64), False, False),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kept_frac", [0.25, 0.875])
def test_onnx_equals_full_layer_norm(case, kept_frac, tmp_path):
    """The masked original (F.layer_norm over all C channels, R of them CONST) against the
    exported compensated norm on the kept channels, in onnxruntime, at two batch sizes."""
    C, values, affine, bias = CASES[case]
    g = torch.Generator().manual_seed(C + int(kept_frac * 8))
    perm = torch.randperm(C, generator=g)
    K = max(1, int(C * kept_frac))
    keep, rem = perm[:K].sort().values, perm[K:].sort().values
    v = values(C - K, g)
    m = OneNorm(K, C, float(v.sum()), float((v * v).sum()), affine, bias).eval()
    gamma, beta = torch.zeros(C), torch.zeros(C)
    if affine:
        gamma[keep] = m.w.detach()
    if bias:
        beta[keep] = m.b.detach()
    counts, run = _export(m, torch.randn(3, 5, K), tmp_path / "n.onnx")
    for shape in [(3, 5, C), (1, 7, C)]:
        full = torch.randn(*shape, generator=g) * 2 + 0.5
        full[..., rem] = v.float()
        want = F.layer_norm(full, (C,), gamma if affine else None, beta if bias else None, 1e-5)[..., keep]
        torch.testing.assert_close(run(full[..., keep].contiguous()), want, **TOL)
    # what was removed: the ~15 elementary ops of the decomposition; one fused norm is left
    assert counts["LayerNormalization"] == 1
    assert counts["Slice"] == 1 and counts["Pad"] == 1
    assert not {"ReduceSum", "ReduceMean", "Sqrt", "Reciprocal", "Div", "Pow"} & set(counts), counts
    assert sum(counts.values()) == 3, counts


def test_nothing_removed_is_the_plain_norm(tmp_path):
    m = OneNorm(12, 12, 0.0, 0.0).eval()
    x = torch.randn(2, 4, 12)
    counts, run = _export(m, x, tmp_path / "p.onnx")
    assert counts == {"LayerNormalization": 1}, counts
    torch.testing.assert_close(run(x), F.layer_norm(x, (12,), m.w, m.b, 1e-5), **TOL)


def test_channels_first_is_exact(tmp_path):
    """dim=1 (ConvNeXt's channels-first norm): elementary ops along that axis, still exact."""
    C, K = 10, 6
    g = torch.Generator().manual_seed(1)
    v = torch.randn(C - K, generator=g, dtype=torch.float64)
    m = OneNorm(K, C, float(v.sum()), float((v * v).sum()), dim=1).eval()
    counts, run = _export(m, torch.randn(2, K, 4, 4), tmp_path / "cf.onnx")
    full = torch.randn(3, C, 4, 4, generator=g)
    full[:, K:] = v.float()[None, :, None, None]
    want = F.layer_norm(full.permute(0, 2, 3, 1), (C,), torch.cat([m.w.detach(), torch.zeros(C - K)]),
                        torch.cat([m.b.detach(), torch.zeros(C - K)]), 1e-5).permute(0, 3, 1, 2)[:, :K]
    torch.testing.assert_close(run(full[:, :K].contiguous()), want, **TOL)
    assert counts["ReduceSum"] == 2 and "LayerNormalization" not in counts


def test_minimized_gpt2_lm_uses_fused_norms(tmp_path):
    """A minimized GPT-2 LM whose stream lost CONST channels: every LayerNorm (compensated or
    not) is one LayerNormalization in ONNX, exact in onnxruntime against the masked original."""
    pytest.importorskip("transformers")
    import test_transformers
    torch.manual_seed(0)
    model, x, _ = test_transformers.MODELS["gpt2_lm"]()
    res = fxminimize.minimize(model, (x,))
    comp = sum(n.target is COMPENSATED_LAYER_NORM for n in res.module.graph.nodes)
    norms = sum(isinstance(mod, nn.LayerNorm) for mod in model.modules())
    assert comp == norms == 5
    out = fxminimize.export_onnx(res, (x,), str(tmp_path / "lm.onnx"), reference=model, dynamic_batch=True)
    assert out.max_abs_error <= 1e-4 and out.domains == ("",)
    counts = collections.Counter(n.op_type for n in onnx.load(out.path).graph.node)
    assert counts["LayerNormalization"] == norms
    assert not {"ReduceSum", "ReduceMean", "Sqrt", "Reciprocal"} & set(counts), counts
