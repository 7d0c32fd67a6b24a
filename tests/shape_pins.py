"""Masked versions of every zoo model and a few Hugging Face models, used to pin the
weight shapes that minimize() produces (tests/data/shape_pins.json, recorded before the
one-home-per-op redesign by ``python tests/shape_pins.py --record``).

Each case: random BatchNorm statistics and nonzero biases (so folding bugs show), a 30 %
structured row mask on every Linear/conv but the last (half of them keep their biases, so
the dead outputs are constants to fold) and an 80 % unstructured magnitude mask.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import torch
import torch.nn as nn

PINS = Path(__file__).parent / "data" / "shape_pins.json"


def _zoo():
    from fxminimize.testing.zoo import ZOO, example_input, magnitude_masks
    return ZOO, example_input, magnitude_masks


def _trained_look(model: nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def _rows_dead(model: nn.Module, g: torch.Generator) -> None:
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))][:-1]
    with torch.no_grad():
        for i, m in enumerate(layers):
            k = max(1, int(0.3 * m.weight.shape[0]))
            rows = torch.randperm(m.weight.shape[0], generator=g)[:k]
            m.weight[rows] = 0
            if i % 2 and m.bias is not None:
                m.bias[rows] = 0


def zoo_cases():
    ZOO, example_input, magnitude_masks = _zoo()
    for name in ZOO:
        for variant in ("rows", "rows+magnitude"):
            g = torch.Generator().manual_seed(0)
            torch.manual_seed(0)  # the zoo's default initialisation decides the magnitude mask
            model = ZOO[name][0]()
            _trained_look(model, g)
            _rows_dead(model, g)
            masks = magnitude_masks(model, 0.8) if variant == "rows+magnitude" else None
            yield f"{name}/{variant}", model, (example_input(name),), masks


def hf_cases():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers as T
    torch.manual_seed(0)
    cfgs = {
        "gpt2": (T.GPT2LMHeadModel, T.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=50, n_positions=32)),
        "llama": (T.LlamaForCausalLM, T.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                    num_attention_heads=4, num_key_value_heads=2, vocab_size=50)),
        "bert": (T.BertModel, T.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=64, vocab_size=50)),
    }
    for name, (cls, cfg) in cfgs.items():
        g = torch.Generator().manual_seed(1)
        model = cls(cfg).eval()
        model.config.use_cache = False
        with torch.no_grad():
            for mn, m in model.named_modules():
                if isinstance(m, nn.Linear) and any(k in mn for k in ("mlp.c_fc", "up_proj", "intermediate.dense")):
                    rows = torch.randperm(m.weight.shape[0], generator=g)[: m.weight.shape[0] // 2]
                    m.weight[rows] = 0
                    if m.bias is not None:
                        m.bias[rows] = 0
                if name == "llama" and mn.endswith("gate_proj"):
                    m.weight[: m.weight.shape[0] // 4] = 0
        ids = torch.randint(0, 50, (2, 8), generator=g)
        yield f"hf/{name}", model, (ids,), None


def all_cases():
    yield from zoo_cases()
    yield from hf_cases()


def minimized_shapes(model, example, masks):
    import fxminimize
    res = fxminimize.minimize(model, example, masks=masks)
    return {k: list(v.shape) for k, v in res.module.state_dict().items() if not k.startswith("fxm_keep")}


if __name__ == "__main__" and "--record" in sys.argv:
    out = {name: minimized_shapes(m, ex, masks) for name, m, ex, masks in all_cases()}
    text = json.dumps(out, indent=1, sort_keys=True)
    PINS.write_text(re.sub(r"\[\s+([^\]]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text) + "\n")
    print(f"wrote {len(out)} cases to {PINS}")
