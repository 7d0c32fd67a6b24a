"""Module-mode checkpoints without pickle (fxminimize.checkpoint): safetensors + JSON.

Round trip per Hugging Face architecture of tests/module_models.py and for a zoo CNN: save the
module-mode result, rebuild the original architecture from the user's config (or factory),
resize, load; outputs equal the saved model's (rtol 0, atol 0: the same weights, the same
ops). Loading is refused, naming the difference, when checkpoint and skeleton disagree.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

pytest.importorskip("transformers")

import fxminimize  # noqa: E402
from fxminimize.errors import MinimizationError  # noqa: E402
from fxminimize.testing.zoo import ZOO, example_input  # noqa: E402
from module_models import MODELS, ids, minimized  # noqa: E402
from shape_pins import zoo_cases  # noqa: E402


def _same(a, b, x):
    with torch.no_grad():
        ya, yb = a(x), b(x)
    ya = ya.logits if hasattr(ya, "logits") else ya
    yb = yb.logits if hasattr(yb, "logits") else yb
    torch.testing.assert_close(yb, ya, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_hf_round_trip(name, tmp_path):
    model, res = minimized(name)
    res.save_pretrained(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["config.json", "fxminimize_modules.json", "model.safetensors"]
    torch.manual_seed(123)  # the skeleton's own random weights must not matter
    loaded = fxminimize.load_pretrained(str(tmp_path), type(model)(model.config).eval())
    assert type(loaded) is type(model)
    _same(res.module, loaded, ids(3, length=7, seed=4))
    if name in ("gpt2", "opt"):
        assert loaded.lm_head.weight is loaded.get_input_embeddings().weight
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in res.module.state_dict().items()}


def test_zoo_round_trip_with_factory(tmp_path):
    name, model, ex, masks = next(c for c in zoo_cases() if c[0] == "convnext_small/rows")
    res = fxminimize.minimize(model, ex, masks=masks, keep_modules=True)
    fxminimize.save_pretrained(res.module, str(tmp_path))
    loaded = fxminimize.load_pretrained(str(tmp_path), ZOO["convnext_small"][0])
    _same(res.module, loaded, example_input("convnext_small", seed=5))


def test_disagreeing_skeleton_is_refused(tmp_path):
    model, res = minimized("llama")
    res.save_pretrained(str(tmp_path))
    cfg = type(model.config).from_dict({**model.config.to_dict(), "num_hidden_layers": 1})
    with pytest.raises(MinimizationError, match="checkpoint and skeleton disagree.*no module 'model.layers.1"):
        fxminimize.load_pretrained(str(tmp_path), type(model)(cfg))
    other, _ = minimized("gpt2")
    with pytest.raises(MinimizationError, match="checkpoint and skeleton disagree.*LlamaForCausalLM.*GPT2LMHeadModel"):
        fxminimize.load_pretrained(str(tmp_path), type(other)(other.config))
    desc = json.loads((tmp_path / "fxminimize_modules.json").read_text())
    desc["modules"]["model.layers.0.mlp.up_proj"]["type"] = "Conv1d"
    (tmp_path / "fxminimize_modules.json").write_text(json.dumps(desc))
    with pytest.raises(MinimizationError, match="'model.layers.0.mlp.up_proj' is a Conv1d in the checkpoint"):
        fxminimize.load_pretrained(str(tmp_path), type(model)(model.config))


def test_weights_file_is_safetensors(tmp_path):
    _, res = minimized("opt")
    res.save_pretrained(str(tmp_path))
    from safetensors import safe_open
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "lm_head.weight" not in keys or "model.decoder.embed_tokens.weight" not in keys  # a tie stored once


@pytest.mark.parametrize("name", list(MODELS))
def test_skeleton_with_fewer_layers_is_refused(name, tmp_path):
    """Per architecture: a skeleton built from a config with one layer less than the checkpoint
    is refused, naming the module it lacks; the full skeleton still loads."""
    model, res = minimized(name)
    res.save_pretrained(str(tmp_path))
    d = model.config.to_dict()
    d.pop("layer_types", None)  # Qwen2: one per layer, rebuilt from the layer count
    key = "n_layer" if "n_layer" in d else "num_hidden_layers"
    small_cfg = type(model.config).from_dict({**d, key: d[key] - 1})
    with pytest.raises(MinimizationError, match="checkpoint and skeleton disagree.*no module"):
        fxminimize.load_pretrained(str(tmp_path), type(model)(small_cfg))
    _same(res.module, fxminimize.load_pretrained(str(tmp_path), type(model)(model.config).eval()), ids(2, seed=9))
