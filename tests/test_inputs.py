"""Bad and unusual input: each case gets a clear error or a documented behaviour, never a
silently wrong model (docs/inputs.md). Numerics: helpers.compare (rtol 1e-4, atol 1e-5·scale)
in float32; float16/bfloat16 models are compared in their own dtype by minimize()'s verifier
and here against a float32 reference with the dtype's resolution."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import fxminimize
from helpers import compare, shapes


def mlp():
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        m[0].weight[:4] = 0
        m[0].bias[:4] = 0
    return m


def test_data_dependent_control_flow_is_refused_with_the_source_line():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mlp()

        def forward(self, x):
            if x.sum() > 0:
                return self.m(x)
            return -self.m(x)

    with pytest.raises(fxminimize.MinimizationError, match="could not capture") as e:
        fxminimize.minimize(M().eval(), (torch.randn(2, 8),))
    assert "x.sum() > 0" in str(e.value) or "test_inputs.py" in str(e.value)


def test_in_place_ops():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mlp()

        def forward(self, x):
            y = self.m[0](x)
            y.relu_()
            y.add_(1)  # relu(0) + 1 = 1: CONST, folded into the next bias
            return self.m[2](y)

    m = M().eval()
    r = fxminimize.minimize(m, (torch.randn(2, 8),))
    compare(m, r.module, (torch.randn(5, 8),))
    assert shapes(r.module)["m.0.weight"] == (12, 8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models(dtype):
    m = mlp().to(dtype)
    r = fxminimize.minimize(m, (torch.randn(2, 8).to(dtype),))
    assert shapes(r.module)["0.weight"] == (12, 8)
    assert r.module.state_dict()["0.weight"].dtype == dtype
    x = torch.randn(5, 8).to(dtype)
    with torch.no_grad():
        torch.testing.assert_close(r.module(x), m(x))  # default tolerances of the dtype


def test_shared_module_is_kept_consistent():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.b = self.a  # one parameter read twice, on different channel spaces
            with torch.no_grad():
                self.a.weight[:3] = 0
                self.a.bias[:3] = 0

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    m = M().eval()
    r = fxminimize.minimize(m, (torch.randn(2, 8),))
    compare(m, r.module, (torch.randn(3, 8),))
    # the two readers slice the tensor on spaces that cannot shrink together: it stays whole
    # and stays one tensor
    ws = {k: tuple(v.shape) for k, v in r.module.state_dict().items() if k.endswith("weight")}
    assert set(ws.values()) == {(8, 8)}


def test_buffers_are_sliced():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mlp()
            self.register_buffer("scale", torch.full((16,), 2.0))

        def forward(self, x):
            return self.m[2](torch.relu(self.m[0](x)) * self.scale)

    m = M().eval()
    r = fxminimize.minimize(m, (torch.randn(2, 8),))
    compare(m, r.module, (torch.randn(3, 8),))
    assert tuple(r.module.state_dict()["scale"].shape) == (12,)


def test_dict_and_tuple_outputs_keep_their_structure():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mlp()

        def forward(self, x):
            y = self.m(x)
            return {"y": y, "z": (y * 2, y.sum(-1))}

    m = M().eval()
    r = fxminimize.minimize(m, (torch.randn(2, 8),))
    out = r.module(torch.randn(3, 8))
    assert set(out) == {"y", "z"} and isinstance(out["z"], tuple) and len(out["z"]) == 2
    compare(m, r.module, (torch.randn(3, 8),))


def test_batch_one_example_warns_and_keeps_batch_one():
    m = mlp()
    with pytest.warns(UserWarning, match="only the example batch size"):
        r = fxminimize.minimize(m, (torch.randn(1, 8),))
    compare(m, r.module, (torch.randn(1, 8),))
    assert r.dynamic_batch is False


def test_several_inputs():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mlp()
            self.n = nn.Linear(3, 16)
            with torch.no_grad():
                self.n.weight[:4] = 0
                self.n.bias[:4] = 0

        def forward(self, x, y):
            return self.m[2](torch.relu(self.m[0](x) + self.n(y)))

    m = M().eval()
    r = fxminimize.minimize(m, (torch.randn(2, 8), torch.randn(2, 3)))
    compare(m, r.module, (torch.randn(4, 8), torch.randn(4, 3)))
    assert shapes(r.module)["m.0.weight"] == (12, 8) and shapes(r.module)["n.weight"] == (12, 3)


def test_op_without_rule_is_a_reported_barrier():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mlp()

        def forward(self, x):
            return self.m[2](torch.cumsum(torch.relu(self.m[0](x)), -1))

    m = M().eval()
    r = fxminimize.minimize(m, (torch.randn(2, 8),))
    compare(m, r.module, (torch.randn(3, 8),))
    assert shapes(r.module)["m.0.weight"] == (16, 8)
    assert any("cumsum" in b.reason for b in r.report.barriers)


def test_result_never_aliases_the_users_model():
    """No copy of the model is held during minimize(); the result still owns its tensors."""
    m = mlp()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = fxminimize.minimize(m, (torch.randn(2, 8),))
    theirs = {t.untyped_storage().data_ptr() for t in m.parameters()}
    assert not any(t.untyped_storage().data_ptr() in theirs for t in r.module.parameters())
    with torch.no_grad():
        for p in r.module.parameters():
            p.add_(1.0)
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items())
