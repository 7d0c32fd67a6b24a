"""One minimized graph serves every sequence length and image size the model allows (issue 17,
Build 5): the capture keeps those dims symbolic, verification checks another size, and the
result is exact there without recapture."""
import os

import pytest
import torch
import torch.nn as nn

import fxminimize

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_gpt2_minimized_at_one_length_runs_exactly_at_others():
    T = pytest.importorskip("transformers")
    torch.manual_seed(0)
    m = T.GPT2LMHeadModel(T.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=50, n_positions=64)).eval()
    m.config.use_cache = False
    with torch.no_grad():
        for b in m.transformer.h:
            b.mlp.c_fc.weight[:, :64] = 0
            b.mlp.c_fc.bias[:64] = 0
    r = fxminimize.minimize(m, (torch.randint(0, 50, (2, 16)),))
    assert r.report.params_after < r.report.params_before
    assert any("accepts other sizes of: input 0 dim 1 (example 16)" in n for n in r.report.notes), r.report.notes
    for length in (64, 8, 20, 1):
        x = torch.randint(0, 50, (3, length))
        torch.testing.assert_close(r.module(x).logits, m(x).logits, rtol=1e-4, atol=1e-5)


def test_cnn_minimized_at_one_image_size_runs_at_others():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        m[0].weight[:3] = 0
        m[0].bias[:3] = 0
    r = fxminimize.minimize(m, (torch.randn(2, 3, 16, 16),))
    assert tuple(r.module.state_dict()["0.weight"].shape) == (5, 3, 3, 3)
    assert r.report.verified_checks == 5   # example, random, batch 1, batch 3, other sizes
    for hw in ((12, 13), (31, 20)):
        x = torch.randn(1, 3, *hw)
        torch.testing.assert_close(r.module(x), m(x), rtol=1e-4, atol=1e-5)


def test_dynamic_sizes_off_keeps_the_example_sizes():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    r = fxminimize.minimize(m, (torch.randn(2, 3, 8, 8),), dynamic_sizes=False)
    assert not any("other sizes" in n for n in r.report.notes)
    assert r.report.verified_checks == 4   # example, random, batch 1, batch 3
