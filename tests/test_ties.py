"""Tied weights stay one tensor and the result is never larger than its input (issue 13)."""
import os

import pytest
import torch

import fxminimize

os.environ.setdefault("HF_HUB_OFFLINE", "1")
T = pytest.importorskip("transformers")


def stored(module) -> int:
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            total += t.numel()
    return total


def opt_lm():
    torch.manual_seed(0)
    cfg = T.OPTConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                      max_position_embeddings=64, word_embed_proj_dim=32, pad_token_id=1)
    m = T.OPTForCausalLM(cfg).eval()
    m.config.use_cache = False
    with torch.no_grad():
        m.model.decoder.embed_tokens.weight[1] = 0      # the padding row is zero
        for layer in m.model.decoder.layers:           # dead MLP channels
            layer.fc1.weight[:16] = 0
            layer.fc1.bias[:16] = 0
    assert m.lm_head.weight is m.model.decoder.embed_tokens.weight
    return m


def test_opt_tied_head_with_a_zero_padding_row_stays_tied_and_smaller():
    m = opt_lm()
    ids = torch.randint(2, 97, (2, 8))
    r = fxminimize.minimize(m, (ids,))
    readers = {str(n.target) for n in r.module.graph.nodes
               if n.op == "get_attr" and ("embed_tokens" in str(n.target) or "lm_head" in str(n.target))}
    assert len(readers) == 1, readers        # one table, read by the embedding and the head
    assert stored(r.module) < stored(m)
    with torch.no_grad():
        for b in (1, 3):
            x = torch.randint(0, 97, (b, 8))
            torch.testing.assert_close(r.module(x).logits, m(x).logits, rtol=1e-4, atol=1e-5)


def test_never_larger_a_rewrite_that_does_not_pay_is_not_made():
    """Dropping one CONST output row of a tiny Linear (5 elements) would cost an index, a mask and a
    value vector to restore it at the output (9 elements): the rewrite is not made."""
    m = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    with torch.no_grad():
        m[0].weight[1] = 0
    r = fxminimize.minimize(m, (torch.randn(2, 4),))
    assert r.report.params_after <= r.report.params_before == 15
    assert any("not made" in n for n in r.report.notes), r.report.notes
    x = torch.randn(3, 4)
    torch.testing.assert_close(r.module(x), m(x), rtol=1e-4, atol=1e-5)
