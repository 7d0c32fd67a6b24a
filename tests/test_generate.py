"""Generation with a KV cache from module-mode results of small Hugging Face causal LMs
(tests/module_models.py: stream channels, a GQA group or a head, MLP channels pruned).

Greedy decoding of 32 new tokens (``generate(do_sample=False, use_cache=True)``) gives exactly
the masked original's tokens, and the logits of every step match (rtol 1e-4, atol 1e-5·max(1,
max|logit|), float32: the verification tolerance). All six architectures build offline.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from module_models import MODELS, ids, minimized  # noqa: E402


def _generate(model, x):
    return model.generate(x, do_sample=False, max_new_tokens=32, use_cache=True, eos_token_id=None, pad_token_id=0,
                          return_dict_in_generate=True, output_logits=True)


@pytest.mark.parametrize("name", list(MODELS))
def test_greedy_tokens_and_logits(name):
    model, res = minimized(name)
    small = res.module
    assert small.config.use_cache is False  # captured that way; generate turns the cache on per call
    for batch in (1, 2):
        x = ids(batch, length=5, seed=10 + batch)
        with torch.no_grad():
            ref, got = _generate(model, x), _generate(small, x)
        assert got.sequences.shape == (batch, 5 + 32)
        assert torch.equal(got.sequences, ref.sequences)
        assert len(got.logits) == len(ref.logits) == 32
        for r, g in zip(ref.logits, got.logits):
            scale = max(1.0, float(r.abs().max()))
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5 * scale)


def test_cache_is_used_and_smaller():
    """The KV cache of the Llama result holds one kv group per layer instead of two."""
    model, res = minimized("llama")
    x = ids(1, length=5)
    with torch.no_grad():
        out_ref = model(x, use_cache=True)
        out = res.module(x, use_cache=True)
    k_ref = out_ref.past_key_values.layers[0].keys
    k = out.past_key_values.layers[0].keys
    assert k_ref.shape[1] == 2 and k.shape[1] == 1 and k.shape[-1] == k_ref.shape[-1]
    torch.testing.assert_close(out.logits, out_ref.logits, rtol=1e-4, atol=1e-5 * max(1.0, float(out_ref.logits.abs().max())))
