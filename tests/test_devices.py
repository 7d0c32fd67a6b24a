"""Any device, any float dtype (issue 13, Build 6): a CNN and a transformer block minimize on
each device present (CPU always, CUDA where available), every tensor of the result stays on
the model's device and in its dtype, and outputs match (tolerances per dtype:
fxminimize.compare.TOLERANCES)."""
import pytest
import torch
import torch.nn as nn

import fxminimize
from fxminimize.compare import TOLERANCES

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.bn, self.d = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.d(torch.relu(self.bn(self.c(x)))).mean((2, 3)))


class Block(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.ln, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, 32), nn.Linear(32, d)

    def forward(self, x):
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln(x))))


def _masked(kind):
    torch.manual_seed(0)
    if kind == "cnn":
        m = CNN().eval()
        with torch.no_grad():
            m.c.weight[:3] = 0
            m.c.bias[:3] = 0
            m.bn.running_mean.uniform_(-0.2, 0.2)
        return m, (torch.randn(2, 3, 10, 10),)
    m = Block().eval()
    with torch.no_grad():
        m.fc1.weight[:10] = 0
        m.fc1.bias[:10] = 0
    return m, (torch.randn(2, 5, 16),)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["cnn", "transformer"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_minimizes_on_the_models_device_and_dtype(device, kind, dtype):
    m, ex = _masked(kind)
    m = m.to(device=device, dtype=dtype)
    ex = tuple(t.to(device=device, dtype=dtype) for t in ex)
    r = fxminimize.minimize(m, ex)
    assert r.report.params_after < r.report.params_before
    for name, t in list(r.module.named_parameters()) + list(r.module.named_buffers()):
        assert t.device.type == device, name
        if t.is_floating_point():
            assert t.dtype == dtype, (name, t.dtype)
    rtol, atol = TOLERANCES.get(dtype, TOLERANCES[torch.float32])
    x = tuple(torch.randn((3,) + tuple(t.shape[1:]), device=device).to(dtype) for t in ex)
    with torch.no_grad():
        want, got = m(*x), r.module(*x)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol * max(1.0, float(want.abs().max())))
