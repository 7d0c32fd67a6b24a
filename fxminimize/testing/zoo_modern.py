"""Zoo models, part 2: squeeze-excitation, ShuffleNet, ConvNeXt and an MLP with an op fxminimize
does not know (see :mod:`fxminimize.testing.zoo`)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F




# --------------------------------------------------------------------------
# Squeeze-and-excitation
# --------------------------------------------------------------------------
class SqueezeExcite(nn.Module):
    """SE gate: ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))`` with 1x1 convs ``fc1``, ``fc2``."""

    def __init__(self, ch: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(ch, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class SENetSmall(nn.Module):
    """Conv stem (3->32)-ReLU, SE block (32->8->32), conv 32->32-Hardswish, mean, Linear(32, 10).

    Input ``(B, 3, 32, 32)``.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.se = SqueezeExcite(32, 8)
        self.conv = nn.Conv2d(32, 32, 3, padding=1)
        self.act = nn.Hardswish()
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = self.se(x)
        x = self.act(self.conv(x))
        x = x.mean((2, 3))
        return self.fc(x)


# --------------------------------------------------------------------------
# ShuffleNet-style block
# --------------------------------------------------------------------------
class ShuffleNetBlockSmall(nn.Module):
    """ShuffleNet-v1-style unit for ``(B, 3, 32, 32)``.

    Stem conv 3->16; grouped 1x1 conv (groups 4)-BN-ReLU; channel shuffle
    (view/transpose/reshape); depthwise 3x3-BN; grouped 1x1 conv (groups 4)-BN;
    residual add with the stem output; spatial mean; Linear(16, 10).
    """

    def __init__(self, num_classes: int = 10, groups: int = 4) -> None:
        super().__init__()
        self.groups = groups
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.gconv1 = nn.Conv2d(16, 16, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.gconv2 = nn.Conv2d(16, 16, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def channel_shuffle(self, x: torch.Tensor) -> torch.Tensor:
        """Interleave channels across ``self.groups`` groups."""
        b, c, h, w = x.shape
        g = self.groups
        return x.view(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = F.relu(self.bn1(self.gconv1(x)))
        out = self.channel_shuffle(out)
        out = self.bn2(self.dw(out))
        out = self.bn3(self.gconv2(out))
        x = out + x
        x = x.mean((2, 3))
        return self.fc(x)


# --------------------------------------------------------------------------
# ConvNeXt (small)
# --------------------------------------------------------------------------
class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel dim of an NCHW tensor (permute to NHWC, ``F.layer_norm``, permute back)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: dwconv7x7, NHWC LayerNorm, ``pwconv1`` (4x), GELU, ``pwconv2``, ``gamma`` scale, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-1 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)
        return shortcut + x


class _ConvNeXtStage(nn.Module):
    """A sequence of ConvNeXt blocks, stored as ``blocks``."""

    def __init__(self, dim: int, depth: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ConvNeXtSmall(nn.Module):
    """Tiny ConvNeXt for ``(B, 3, 32, 32)``.

    Stem Conv2d(3, 32, 4, stride 4) + channels-first LN; stage 0 (2 blocks, 32ch);
    downsample (channels-first LN + Conv2d(32, 64, 2, stride 2)); stage 1
    (2 blocks, 64ch); head: mean over (2, 3), LayerNorm(64), Linear(64, 10).
    Block linears are reachable as ``stages.{i}.blocks.{j}.pwconv1`` / ``pwconv2``.
    """

    def __init__(self, num_classes: int = 10, dims: Sequence[int] = (32, 64), depths: Sequence[int] = (2, 2)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, dims[0], 4, stride=4),
            ChannelsFirstLayerNorm(dims[0]),
        )
        self.downsample = nn.ModuleList()
        for i in range(len(dims) - 1):
            self.downsample.append(
                nn.Sequential(
                    ChannelsFirstLayerNorm(dims[i]),
                    nn.Conv2d(dims[i], dims[i + 1], 2, stride=2),
                )
            )
        self.stages = nn.ModuleList([_ConvNeXtStage(d, n) for d, n in zip(dims, depths)])
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.downsample[i - 1](x)
            x = stage(x)
        x = x.mean((2, 3))
        x = self.norm(x)
        return self.head(x)


# --------------------------------------------------------------------------
# MLP with an op that has no minimization rule
# --------------------------------------------------------------------------
class UnknownOpMLP(nn.Module):
    """MLP 20-32-32-10 with ``torch.cumsum(x, dim=-1)`` after fc1+ReLU.

    cumsum mixes features along the channel dim, so no minimization rule can
    drop channels across it; used to test conservative handling of unknown ops.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = torch.cumsum(x, dim=-1)
        x = F.relu(self.fc2(x))
        return self.fc3(x)
