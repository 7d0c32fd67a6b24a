"""Property test: CompensatedLayerNorm/RMSNorm on the kept channels equals the full-width norm
when the removed channels are CONST (float64 within 1e-12, float32 within 1e-5)."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from fxminimize.compensated import CompensatedLayerNorm, compensated_layer_norm, compensated_rms_norm

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def _case(seed, C, dtype, zero_frac):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, C, generator=g, dtype=dtype) * 2 + 0.5
    removed = torch.randperm(C, generator=g)[: torch.randint(1, C, (1,), generator=g).item()].sort().values
    v = torch.randn(len(removed), generator=g, dtype=dtype)
    v[torch.rand(len(removed), generator=g) < zero_frac] = 0
    x[..., removed] = v
    keep = torch.tensor([i for i in range(C) if i not in set(removed.tolist())], dtype=torch.long)
    w = torch.randn(C, generator=g, dtype=dtype)
    b = torch.randn(C, generator=g, dtype=dtype)
    return x, keep, removed, v, w, b


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), C=st.integers(2, 64), dtype=st.sampled_from([torch.float32, torch.float64]),
       zero_frac=st.sampled_from([0.0, 0.5, 1.0]))
def test_compensated_layer_norm_equals_full(seed, C, dtype, zero_frac):
    x, keep, removed, v, w, b = _case(seed, C, dtype, zero_frac)
    full = F.layer_norm(x, (C,), w, b, 1e-5)[..., keep]
    vd = v.double()
    got = compensated_layer_norm(x[..., keep], C, float(vd.sum()), float((vd * vd).sum()), w[keep], b[keep], 1e-5)
    torch.testing.assert_close(got, full, rtol=0, atol=TOL[dtype])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), C=st.integers(2, 64), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_compensated_rms_norm_equals_full(seed, C, dtype):
    x, keep, removed, v, w, _ = _case(seed, C, dtype, 0.3)
    full = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w)[..., keep]
    vd = v.double()
    got = compensated_rms_norm(x[..., keep], C, float((vd * vd).sum()), w[keep], 1e-6)
    torch.testing.assert_close(got, full, rtol=0, atol=TOL[dtype])


def test_module_channels_first_and_from_layer_norm():
    C = 12
    ln = torch.nn.LayerNorm(C)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(2, C, 4, 4)
    removed = torch.tensor([1, 5, 6])
    v = torch.tensor([0.0, 0.7, -1.2])
    x[:, removed] = v[None, :, None, None]
    keep = torch.tensor([i for i in range(C) if i not in (1, 5, 6)])
    m = CompensatedLayerNorm.from_layer_norm(ln, keep, v, dim=1)
    full = ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)[:, keep]
    torch.testing.assert_close(m(x[:, keep]), full, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        CompensatedLayerNorm(13, 12)


@pytest.mark.parametrize("kind", ["ln_last", "ln_first", "ln_nobias", "rms"])
def test_compensated_norms_export_to_onnx(kind, tmp_path):
    """The compensated norms are plain ops: the dynamo exporter emits a file stock onnxruntime
    runs, matching torch (rtol 1e-4, atol 1e-5)."""
    ort = pytest.importorskip("onnxruntime")
    from fxminimize.compensated import CompensatedRMSNorm

    torch.manual_seed(0)
    if kind == "rms":
        m = CompensatedRMSNorm(6, 9, s2=1.5)
        x = torch.randn(2, 5, 6)
    elif kind == "ln_first":
        m = CompensatedLayerNorm(6, 9, s1=0.5, s2=1.25, dim=1)
        x = torch.randn(2, 6, 4, 4)
    else:
        m = CompensatedLayerNorm(6, 9, s1=-1.0, s2=2.0, bias=(kind != "ln_nobias"))
        x = torch.randn(2, 5, 6)
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-1, 1)
    path = tmp_path / f"{kind}.onnx"
    torch.onnx.export(m.eval(), (x,), str(path), dynamo=True, external_data=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), m(x), rtol=1e-4, atol=1e-5)


@pytest.mark.xfail(strict=True, reason="known limitation (docs/results.md, CNN): minimize() writes a compensated "
                   "LayerNorm with elementary ops, and a second minimize() cannot remove more channels through "
                   "that form (the variance sum reads x - mu, which is not CONST)")
def test_second_minimize_through_compensated_layernorm():
    import fxminimize

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.ln, self.b = torch.nn.Linear(8, 6), torch.nn.LayerNorm(6), torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.b(self.ln(self.a(x)))

    def make_const(model, c):              # channel c: CONST into the norm, CONST out of it, unread after
        p = dict(model.named_parameters())
        with torch.no_grad():
            p["a.weight"][c].zero_()
            p["ln.weight"][c] = 0
            p["b.weight"][:, c].zero_()

    torch.manual_seed(0)
    m = M().eval()
    x = torch.randn(5, 8)
    make_const(m, 0)
    first = fxminimize.minimize(m, (x,)).module
    assert tuple(first.get_parameter("a.weight").shape) == (5, 8)
    make_const(first, 0)                   # original channel 1
    second = fxminimize.minimize(first, (x,)).module
    assert tuple(second.get_parameter("a.weight").shape) == (4, 8)
