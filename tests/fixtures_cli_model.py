"""A model file for the `fxminimize minimize` command-line tests (tests/test_cli_minimize.py)."""
import torch
import torch.nn as nn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


def masked():
    """A model and masks: half the filters of conv2 are masked out."""
    m = SmallCNN().eval()
    mask = torch.ones_like(m.conv2.weight, dtype=torch.bool)
    mask[::2] = False
    return m, {"conv2.weight": mask, "conv2.bias": mask[:, 0, 0, 0].clone()}


def plain():
    """The unmasked model (a checkpoint with zeros or prune masks makes it smaller)."""
    return SmallCNN().eval()


def broken():
    raise RuntimeError("factory failed on purpose")
