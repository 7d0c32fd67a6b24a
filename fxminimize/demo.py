"""Built-in demo: minimize masked example models without any data set."""
from __future__ import annotations

import time

import torch

from .api import minimize
from .testing.zoo import ZOO, example_input, induce_dead_channels, magnitude_masks


def _lenet_masked():
    """LeNet-300-100 with a 90% global magnitude mask, border pixels without weights and 60% of
    the hidden units without incoming weights (what pruning leaves after training)."""
    m = ZOO["lenet_300_100"][0]()
    masks = magnitude_masks(m, 0.9)
    border = torch.ones(28, 28, dtype=torch.bool)
    border[4:-4, 4:-4] = False
    masks["fc1.weight"][:, border.reshape(-1)] = False
    g = torch.Generator().manual_seed(1)
    masks["fc1.weight"][torch.randperm(300, generator=g)[:180]] = False
    masks["fc2.weight"][torch.randperm(100, generator=g)[:60]] = False
    return m, masks


def _resnet_masked():
    """Small ResNet (BatchNorm, projection shortcuts) with half of every block's inner filters
    pruned away and an 80% magnitude mask elsewhere."""
    m = ZOO["resnet_small"][0]()
    for name, c in (("layer1.conv1", 16), ("layer2.conv1", 32), ("layer3.conv1", 64)):
        induce_dead_channels(m, name, list(range(0, c, 2)))
    return m, magnitude_masks(m, 0.8)


def _convnext_masked():
    """ConvNeXt-style net: 70% of every block's hidden MLP channels pruned (rows zero, biases
    kept, so GELU(b) must be folded into the next bias)."""
    m = ZOO["convnext_small"][0]()
    for name, mod in m.named_modules():
        if name.endswith("pwconv1"):
            induce_dead_channels(m, name, list(range(0, mod.out_features, 10)) +
                                 [i for i in range(mod.out_features) if i % 10 in (1, 2, 3, 4, 5, 6)],
                                 fold_bias=True)
    return m, None


DEMOS = {"lenet_300_100": (_lenet_masked, "lenet_300_100"),
         "resnet_small": (_resnet_masked, "resnet_small"),
         "convnext_small": (_convnext_masked, "convnext_small")}


def run_demo(write=print) -> list[dict]:
    """Minimize each demo model and write a table; returns the rows."""
    rows = []
    torch.manual_seed(0)
    for name, (build, zoo) in DEMOS.items():
        model, masks = build()
        t = time.perf_counter()
        res = minimize(model, (example_input(zoo),), masks=masks)
        rows.append({"model": name, "before": res.report.params_before, "after": res.report.params_after,
                     "ratio": res.report.ratio, "max_err": res.report.max_abs_error,
                     "seconds": time.perf_counter() - t})
    write(f"{'model':<16}{'params before':>15}{'params after':>14}{'ratio':>8}{'max abs err':>13}{'time s':>8}")
    for r in rows:
        write(f"{r['model']:<16}{r['before']:>15,}{r['after']:>14,}{r['ratio']:>7.2f}x{r['max_err']:>13.2e}"
              f"{r['seconds']:>8.2f}")
    write("Each minimized model was verified against its masked original "
          "(example and random inputs at the example batch, random inputs at batch 1 and one more, "
          "and at other image sizes where the model accepts them).")
    return rows
