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

from .zoo_cnn import (BasicBlock, DenseLayer, DenseNetSmall, InvertedResidual, LeNet5, LeNet300100,
                      MobileNetV2Small, ResNetSmall)
from .zoo_modern import (ChannelsFirstLayerNorm, ConvNeXtBlock, ConvNeXtSmall, SENetSmall, ShuffleNetBlockSmall,
                         SqueezeExcite, UnknownOpMLP)

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
