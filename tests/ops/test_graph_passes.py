"""passes/gather.py and passes/restore.py: the model's interface keeps its width."""
import torch
import torch.nn as nn

from oneop import dead, minimize_and_check, shapes


def test_unread_input_features_are_gathered():
    m = nn.Sequential(nn.Linear(6, 3)).eval()
    with torch.no_grad():
        m[0].weight[:, [1, 4]] = 0
    r = minimize_and_check(m, (torch.randn(2, 6),))
    assert shapes(r.module)["0.weight"] == (3, 4)
    assert r.module(torch.randn(3, 6)).shape == (3, 3)


def test_const_output_channels_are_restored():
    """A CONST output row of a Linear(64, 4) is dropped (65 elements) and restored at the output
    (an index, a mask and a value vector: 12 elements): it pays, so it is made."""
    m = nn.Sequential(nn.Linear(64, 4)).eval()
    dead(m[0], [2], bias=0.9)
    r = minimize_and_check(m, (torch.randn(2, 64),))
    assert shapes(r.module)["0.weight"] == (3, 64)
    y = r.module(torch.randn(3, 64))
    assert y.shape == (3, 4) and torch.all(y[:, 2] == 0.9)
