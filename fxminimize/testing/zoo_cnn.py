"""Zoo models, part 1: LeNet-300-100, LeNet-5, and small ResNet, DenseNet and MobileNetV2
(see :mod:`fxminimize.testing.zoo`)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------
# LeNet-300-100
# --------------------------------------------------------------------------
class LeNet300100(nn.Module):
    """784-300-100-10 MLP with ReLU; input ``(B, 784)``, output ``(B, 10)``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


# --------------------------------------------------------------------------
# LeNet-5
# --------------------------------------------------------------------------
class LeNet5(nn.Module):
    """Classic LeNet-5 for ``(B, 1, 28, 28)`` inputs.

    conv1 (1->6, 5x5, pad 2) - ReLU - maxpool2 - conv2 (6->16, 5x5) - ReLU -
    maxpool2 - flatten (400) - fc1 (120) - ReLU - fc2 (84) - ReLU - fc3 (10).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


# --------------------------------------------------------------------------
# ResNet (small, CIFAR-like)
# --------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU.

    ``shortcut`` is ``None`` for an identity shortcut, otherwise an
    ``nn.Sequential(Conv2d 1x1 (stride), BatchNorm2d)`` projection.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: Optional[nn.Sequential]
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class ResNetSmall(nn.Module):
    """Tiny ResNet for ``(B, 3, 32, 32)``: stem 16ch, blocks 16->16, 16->32/2, 32->64/2, FC 10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# --------------------------------------------------------------------------
# DenseNet (small)
# --------------------------------------------------------------------------
class DenseLayer(nn.Module):
    """DenseNet bottleneck layer: BN-ReLU-conv1x1(in->32)-BN-ReLU-conv3x3(32->growth); concat with input."""

    def __init__(self, in_ch: int, growth: int = 8, bottleneck: int = 32) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, bottleneck, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(bottleneck)
        self.conv2 = nn.Conv2d(bottleneck, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv1(F.relu(self.bn1(x)))
        new = self.conv2(F.relu(self.bn2(new)))
        return torch.cat([x, new], 1)


class _Transition(nn.Module):
    """DenseNet transition: BN-ReLU-conv1x1-avgpool2."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(F.relu(self.bn(x))))


class DenseNetSmall(nn.Module):
    """Tiny DenseNet for ``(B, 3, 32, 32)``.

    Stem conv 3->16; dense block 1 (3 layers, growth 8: 16->40 channels);
    transition 40->20 with avgpool; dense block 2 (20->44 channels);
    final BN-ReLU, ``x.mean((2, 3))``, Linear(44, 10).
    """

    def __init__(self, num_classes: int = 10, growth: int = 8, layers: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        ch = 16
        block1 = []
        for _ in range(layers):
            block1.append(DenseLayer(ch, growth))
            ch += growth
        self.block1 = nn.Sequential(*block1)
        self.trans1 = _Transition(ch, ch // 2)
        ch = ch // 2
        block2 = []
        for _ in range(layers):
            block2.append(DenseLayer(ch, growth))
            ch += growth
        self.block2 = nn.Sequential(*block2)
        self.bn = nn.BatchNorm2d(ch)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.block1(x)
        x = self.trans1(x)
        x = self.block2(x)
        x = F.relu(self.bn(x))
        x = x.mean((2, 3))
        return self.fc(x)


# --------------------------------------------------------------------------
# MobileNetV2 (small)
# --------------------------------------------------------------------------
class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual: expand 1x1-BN-ReLU6, depthwise 3x3-BN-ReLU6, project 1x1-BN.

    Adds the input back when ``stride == 1`` and ``in_ch == out_ch``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.use_res = stride == 1 and in_ch == out_ch
        self.expand = nn.Conv2d(in_ch, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act1 = nn.ReLU6()
        self.dw = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.act2 = nn.ReLU6()
        self.project = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.expand(x)))
        out = self.act2(self.bn2(self.dw(out)))
        out = self.bn3(self.project(out))
        if self.use_res:
            out = out + x
        return out


class MobileNetV2Small(nn.Module):
    """Tiny MobileNetV2 for ``(B, 3, 32, 32)``.

    Stem conv3x3/2 (3->16)-BN-ReLU6; blocks (16->16, e4, s1), (16->24, e4, s2),
    (24->24, e4, s1); head conv1x1 ->64-BN-ReLU6; avgpool; Dropout(0.2); Linear(64, 10).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU6(),
        )
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 4),
            InvertedResidual(16, 24, 2, 4),
            InvertedResidual(24, 24, 1, 4),
        )
        self.head = nn.Sequential(
            nn.Conv2d(24, 64, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU6(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.blocks(x)
        x = self.head(x)
        x = torch.flatten(self.pool(x), 1)
        x = self.dropout(x)
        return self.classifier(x)
