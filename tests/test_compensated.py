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


class _LinLnLin(torch.nn.Module):
    def __init__(self, ln=None):
        super().__init__()
        self.a, self.ln, self.b = torch.nn.Linear(8, 6), ln or torch.nn.LayerNorm(6), torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.b(self.ln(self.a(x)))


def _make_const(model, c):
    """Channel c: CONST(a.bias[c] != 0) into the norm and CONST(β_c) out of it (γ_c = 0), which
    then folds into b's bias: minimize may remove it through the norm."""
    p = dict(model.named_parameters())
    with torch.no_grad():
        p["a.weight"][c].zero_()
        p["ln.weight"][c] = 0


def _compensated_nodes(gm):
    from fxminimize.compensated import COMPENSATED_LAYER_NORM
    from fxminimize.ir import bind
    return [bind(n) for n in gm.graph.nodes if n.target is COMPENSATED_LAYER_NORM]


def test_repeated_minimize_through_compensated_layernorm(tmp_path):
    """minimize() re-reduces its own compensated LayerNorm: three rounds each remove one more
    nonzero-CONST channel; each result equals the original model with all those channels CONST
    (assert_close rtol 1e-5, atol 1e-5 on fresh random inputs); count stays 6 and s1, s2
    accumulate the removed values. The last result also saves/loads as .pt2 and exports to ONNX."""
    import fxminimize

    torch.manual_seed(0)
    orig = _LinLnLin().eval()
    with torch.no_grad():
        orig.a.bias.uniform_(0.5, 1.5)       # removed values are nonzero: s1, s2 matter
        orig.ln.bias.uniform_(-1, 1)
    ref = _LinLnLin().eval()
    ref.load_state_dict(orig.state_dict())
    x = torch.randn(5, 8)
    current, present, removed = orig, list(range(6)), []
    for c in (2, 0, 5):
        _make_const(ref, c)
        _make_const(current, present.index(c))
        res = fxminimize.minimize(current, (x,))
        present.remove(c)
        removed.append(c)
        current = res.module
        assert tuple(current.get_parameter("a.weight").shape) == (len(present), 8)
        (node,) = _compensated_nodes(current)
        v = orig.a.bias.detach().double()[removed]
        assert node["count"] == 6
        assert node["s1"] == pytest.approx(float(v.sum()), rel=1e-6)
        assert node["s2"] == pytest.approx(float((v * v).sum()), rel=1e-6)
        xt = torch.randn(7, 8)
        with torch.no_grad():
            torch.testing.assert_close(current(xt), ref(xt), rtol=1e-5, atol=1e-5)
    res.save(str(tmp_path / "m.pt2"))
    loaded = fxminimize.load(str(tmp_path / "m.pt2"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(xt), ref(xt), rtol=1e-5, atol=1e-5)
    out = fxminimize.export_onnx(res, (x,), str(tmp_path / "m.onnx"), reference=ref)
    assert out.domains == ("",)


def test_minimize_through_channels_first_compensated_module():
    """A CompensatedLayerNorm module over dim 1 (ConvNeXt's downsampling norm) loses a further
    CONST channel: count stays, s1/s2 grow, output equals the module before (rtol/atol 1e-5)."""
    import fxminimize

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, 6, 1)
            self.ln = CompensatedLayerNorm(6, 9, s1=0.5, s2=1.25, dim=1)
            self.b = torch.nn.Conv2d(6, 2, 1)

        def forward(self, x):
            return self.b(self.ln(self.a(x)))

    torch.manual_seed(0)
    m = M().eval()
    with torch.no_grad():
        m.ln.weight.uniform_(0.5, 1.5)
        m.ln.bias.uniform_(-1, 1)
        m.a.weight[4].zero_()
        m.a.bias[4] = 0.75
        m.ln.weight[4] = 0
    x = torch.randn(2, 3, 5, 5)
    res = fxminimize.minimize(m, (x,))
    assert tuple(res.module.get_parameter("a.weight").shape) == (5, 3, 1, 1)
    (node,) = _compensated_nodes(res.module)
    assert (node["count"], node["dim"]) == (9, 1)
    assert node["s1"] == pytest.approx(0.5 + 0.75) and node["s2"] == pytest.approx(1.25 + 0.75 ** 2)
    xt = torch.randn(3, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(res.module(xt), m(xt), rtol=1e-5, atol=1e-5)


def test_compensated_layer_norm_gradients_equal_full_layer_norm():
    """Training a minimized model back-propagates through the operator: gradients w.r.t. the
    kept inputs, γ_K and β_K equal those of the full LayerNorm (float64, atol 1e-10)."""
    x, keep, removed, v, w, b = _case(3, 10, torch.float64, 0.0)
    xk = x[..., keep].clone().requires_grad_(True)
    wk, bk = w[keep].clone().requires_grad_(True), b[keep].clone().requires_grad_(True)
    xf, wf, bf = x.clone().requires_grad_(True), w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    g = torch.randn(*x.shape[:-1], len(keep), dtype=torch.float64)
    (compensated_layer_norm(xk, 10, float(v.sum()), float((v * v).sum()), wk, bk, 1e-5) * g).sum().backward()
    (F.layer_norm(xf, (10,), wf, bf, 1e-5)[..., keep] * g).sum().backward()
    for got, want in ((xk.grad, xf.grad[..., keep]), (wk.grad, wf.grad[keep]), (bk.grad, bf.grad[keep])):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
