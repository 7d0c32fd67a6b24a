"""A zoo of small example models used by the fxminimize demo and tests.

Every factory returns a freshly initialised model in eval mode. Models are pure
PyTorch (no torchvision) and deterministic given ``torch.manual_seed``: call
``torch.manual_seed(s)`` before the factory to get reproducible weights.

``ZOO`` maps a model name to ``(factory, example_input_shape)`` (batch 2).
``magnitude_masks`` and ``induce_dead_channels`` help build masked / pruned
variants of these models.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "LeNet300100",
    "LeNet5",
    "BasicBlock",
    "ResNetSmall",
    "DenseLayer",
    "DenseNetSmall",
    "InvertedResidual",
    "MobileNetV2Small",
    "SqueezeExcite",
    "SENetSmall",
    "ShuffleNetBlockSmall",
    "ChannelsFirstLayerNorm",
    "ConvNeXtBlock",
    "ConvNeXtSmall",
    "UnknownOpMLP",
    "lenet_300_100",
    "lenet5",
    "resnet_small",
    "densenet_small",
    "mobilenetv2_small",
    "se_net_small",
    "shufflenet_block_small",
    "convnext_small",
    "unknown_op_mlp",
    "ZOO",
    "example_input",
    "magnitude_masks",
    "induce_dead_channels",
]


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


# --------------------------------------------------------------------------
# Factories
# --------------------------------------------------------------------------
def lenet_300_100() -> LeNet300100:
    """LeNet-300-100 MLP (input ``(B, 784)``), eval mode."""
    return LeNet300100().eval()


def lenet5() -> LeNet5:
    """LeNet-5 CNN (input ``(B, 1, 28, 28)``), eval mode."""
    return LeNet5().eval()


def resnet_small() -> ResNetSmall:
    """Tiny 3-block ResNet (input ``(B, 3, 32, 32)``), eval mode."""
    return ResNetSmall().eval()


def densenet_small() -> DenseNetSmall:
    """Tiny 2-dense-block DenseNet (input ``(B, 3, 32, 32)``), eval mode."""
    return DenseNetSmall().eval()


def mobilenetv2_small() -> MobileNetV2Small:
    """Tiny MobileNetV2 with 3 inverted residuals (input ``(B, 3, 32, 32)``), eval mode."""
    return MobileNetV2Small().eval()


def se_net_small() -> SENetSmall:
    """Conv net with one squeeze-excitation block (input ``(B, 3, 32, 32)``), eval mode."""
    return SENetSmall().eval()


def shufflenet_block_small() -> ShuffleNetBlockSmall:
    """Single ShuffleNet-style unit with channel shuffle (input ``(B, 3, 32, 32)``), eval mode."""
    return ShuffleNetBlockSmall().eval()


def convnext_small() -> ConvNeXtSmall:
    """Tiny 2-stage ConvNeXt (input ``(B, 3, 32, 32)``), eval mode."""
    return ConvNeXtSmall().eval()


def unknown_op_mlp() -> UnknownOpMLP:
    """MLP 20-32-32-10 containing a cumsum (input ``(B, 20)``), eval mode."""
    return UnknownOpMLP().eval()


ZOO: Dict[str, Tuple[Callable[[], nn.Module], Tuple[int, ...]]] = {
    "lenet_300_100": (lenet_300_100, (2, 784)),
    "lenet5": (lenet5, (2, 1, 28, 28)),
    "resnet_small": (resnet_small, (2, 3, 32, 32)),
    "densenet_small": (densenet_small, (2, 3, 32, 32)),
    "mobilenetv2_small": (mobilenetv2_small, (2, 3, 32, 32)),
    "se_net_small": (se_net_small, (2, 3, 32, 32)),
    "shufflenet_block_small": (shufflenet_block_small, (2, 3, 32, 32)),
    "convnext_small": (convnext_small, (2, 3, 32, 32)),
    "unknown_op_mlp": (unknown_op_mlp, (2, 20)),
}
"""Registry ``name -> (factory, example_input_shape)``; example batch size is 2."""


def example_input(name: str, seed: Optional[int] = 0) -> torch.Tensor:
    """Return a random example input of the shape registered in ``ZOO`` for ``name``.

    If ``seed`` is not None a private generator seeded with it is used, so the
    global RNG state is left untouched.
    """
    _, shape = ZOO[name]
    gen = None
    if seed is not None:
        gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen)


# --------------------------------------------------------------------------
# Mask helpers
# --------------------------------------------------------------------------
_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def magnitude_masks(
    model: nn.Module,
    sparsity: float,
    include: Iterable[str] = ("weight",),
) -> Dict[str, torch.Tensor]:
    """Global unstructured magnitude pruning masks.

    Considers the parameters named in ``include`` (default: only ``weight``) of
    every ``nn.Linear`` / ``nn.Conv{1,2,3}d`` submodule, ranks all their entries
    together by absolute value and drops (sets to ``False``) the smallest
    ``round(sparsity * total)`` entries. Ties at the threshold are broken by
    order, so exactly that many entries are dropped.

    Args:
        model: the model whose parameters are ranked (not modified).
        sparsity: fraction in ``[0, 1]`` of entries to remove.
        include: parameter attribute names to consider on each module.

    Returns:
        ``{qualified_param_name: bool tensor}`` (same shape as the parameter;
        ``True`` = keep), e.g. ``{"fc1.weight": ...}``.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    include = tuple(include)
    params: Dict[str, torch.Tensor] = {}
    for mod_name, mod in model.named_modules():
        if not isinstance(mod, _PRUNABLE):
            continue
        for attr in include:
            p = getattr(mod, attr, None)
            if isinstance(p, torch.Tensor):
                params[f"{mod_name}.{attr}" if mod_name else attr] = p
    if not params:
        return {}
    with torch.no_grad():
        flat = torch.cat([p.detach().abs().reshape(-1).float() for p in params.values()])
        n_drop = int(round(sparsity * flat.numel()))
        keep_flat = torch.ones(flat.numel(), dtype=torch.bool)
        if n_drop > 0:
            order = torch.argsort(flat, stable=True)
            keep_flat[order[:n_drop]] = False
    masks: Dict[str, torch.Tensor] = {}
    offset = 0
    for name, p in params.items():
        n = p.numel()
        masks[name] = keep_flat[offset : offset + n].reshape(p.shape).clone()
        offset += n
    return masks


def induce_dead_channels(
    model: nn.Module,
    module_name: str,
    channels: Sequence[int],
    fold_bias: bool = False,
) -> nn.Module:
    """Zero output channels of a Linear/Conv module in place.

    Sets ``weight[channels] = 0`` (the output rows / filters) of the submodule
    ``module_name`` and, unless ``fold_bias`` is True, also ``bias[channels] = 0``
    so the channels are exactly dead (output constantly zero before any
    following op). With ``fold_bias=True`` the bias is kept, making the
    channels constant (non-zero) rather than zero.

    Returns ``model`` for chaining.
    """
    mod = model.get_submodule(module_name)
    if not isinstance(mod, _PRUNABLE):
        raise TypeError(f"{module_name!r} is {type(mod).__name__}, expected Linear or Conv")
    idx = torch.as_tensor(list(channels), dtype=torch.long)
    with torch.no_grad():
        mod.weight[idx] = 0
        if not fold_bias and mod.bias is not None:
            mod.bias[idx] = 0
    return model
