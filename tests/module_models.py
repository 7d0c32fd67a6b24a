"""Small Hugging Face causal LMs (random, trained-looking weights; no downloads) masked for the
module-mode, generation and checkpoint tests: residual-stream channels ``S`` zeroed in every
writer and norm, the query heads of one kv group (GQA) or one head unread by the output
projection, MLP hidden channels ``HID`` dead. Used by tests/test_module_mode*.py,
test_generate*.py and test_checkpoint*.py."""
from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

S = [3, 7, 20]          # stream channels zeroed in every writer
HID = [5, 40, 61]       # MLP hidden channels
HIDDEN, HEADS, KV, DH, VOCAB = 32, 4, 2, 8, 100


def _trained_look(model, g):
    """Norm weights and biases away from their 1/0 initialisation, nonzero biases."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() or "ln" in name.split(".")[-2:][0]:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def _llama_like(cls_name, cfg_name, **extra):
    import transformers as T
    cfg = getattr(T, cfg_name)(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=HEADS,
                               num_key_value_heads=KV, intermediate_size=64, vocab_size=VOCAB,
                               max_position_embeddings=128, use_cache=False, tie_word_embeddings=False,
                               pad_token_id=0, bos_token_id=1, eos_token_id=2, **extra)
    torch.manual_seed(0)
    m = getattr(T, cls_name)(cfg).eval()
    g = torch.Generator().manual_seed(1)
    _trained_look(m, g)
    base = m.model
    with torch.no_grad():
        base.embed_tokens.weight[:, S] = 0
        for L in base.layers:
            L.input_layernorm.weight[S] = 0
            L.post_attention_layernorm.weight[S] = 0
            a = L.self_attn
            a.o_proj.weight[S] = 0
            if a.o_proj.bias is not None:
                a.o_proj.bias[S] = 0
            L.mlp.down_proj.weight[S] = 0
            a.o_proj.weight[:, 2 * DH:4 * DH] = 0          # query heads 2, 3 = kv group 1
            L.mlp.gate_proj.weight[HID] = 0                 # silu(0)·up = 0
        base.norm.weight[S] = 0
    return m


def llama():
    return _llama_like("LlamaForCausalLM", "LlamaConfig")


def mistral():
    return _llama_like("MistralForCausalLM", "MistralConfig")


def qwen2():
    return _llama_like("Qwen2ForCausalLM", "Qwen2Config")


def phi3():
    import transformers as T
    cfg = T.Phi3Config(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=HEADS, num_key_value_heads=KV,
                       intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=128, use_cache=False,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    m = T.Phi3ForCausalLM(cfg).eval()
    _trained_look(m, torch.Generator().manual_seed(1))
    base = m.model
    with torch.no_grad():
        base.embed_tokens.weight[:, S] = 0
        for L in base.layers:
            L.input_layernorm.weight[S] = 0
            L.post_attention_layernorm.weight[S] = 0
            L.self_attn.o_proj.weight[S] = 0
            L.mlp.down_proj.weight[S] = 0
            L.self_attn.o_proj.weight[:, 2 * DH:4 * DH] = 0
            L.mlp.gate_up_proj.weight[HID] = 0
        base.norm.weight[S] = 0
    return m


def gpt2():
    import transformers as T
    cfg = T.GPT2Config(n_embd=HIDDEN, n_layer=2, n_head=HEADS, vocab_size=VOCAB, n_positions=128, use_cache=False,
                       bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    m = T.GPT2LMHeadModel(cfg).eval()       # lm_head tied to wte
    _trained_look(m, torch.Generator().manual_seed(1))
    tr = m.transformer
    with torch.no_grad():
        tr.wte.weight[:, S] = 0
        tr.wpe.weight[:, S] = 0
        for blk in tr.h:
            a = blk.attn
            a.c_proj.weight[:, S] = 0                      # Conv1D: weight (in, out)
            a.c_proj.bias[S] = 0
            blk.mlp.c_proj.weight[:, S] = 0
            blk.mlp.c_proj.bias[S] = 0
            for ln in (blk.ln_1, blk.ln_2):
                ln.weight[S] = 0
                ln.bias[S] = 0
            a.c_proj.weight[DH:2 * DH, :] = 0                # head 1 unread
            blk.mlp.c_fc.weight[:, HID] = 0
            blk.mlp.c_fc.bias[HID] = 0
        tr.ln_f.weight[S] = 0
        tr.ln_f.bias[S] = 0
    return m


def opt():
    import transformers as T
    cfg = T.OPTConfig(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=HEADS, ffn_dim=64,
                      vocab_size=VOCAB, max_position_embeddings=128, word_embed_proj_dim=HIDDEN, use_cache=False,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2, enable_bias=True)
    torch.manual_seed(0)
    m = T.OPTForCausalLM(cfg).eval()        # lm_head tied to embed_tokens
    _trained_look(m, torch.Generator().manual_seed(1))
    d = m.model.decoder
    with torch.no_grad():
        d.embed_tokens.weight[:, S] = 0
        d.embed_positions.weight[:, S] = 0
        for L in d.layers:
            a = L.self_attn
            a.out_proj.weight[S] = 0
            a.out_proj.bias[S] = 0
            L.fc2.weight[S] = 0
            L.fc2.bias[S] = 0
            for ln in (L.self_attn_layer_norm, L.final_layer_norm):
                ln.weight[S] = 0
                ln.bias[S] = 0
            a.out_proj.weight[:, DH:2 * DH] = 0             # head 1 unread
            L.fc1.weight[HID] = 0
            L.fc1.bias[HID] = 0
        d.final_layer_norm.weight[S] = 0
        d.final_layer_norm.bias[S] = 0
    return m


#: name -> builder; all causal LMs taking (B, T) token ids
MODELS = {"llama": llama, "mistral": mistral, "qwen2": qwen2, "gpt2": gpt2, "opt": opt, "phi3": phi3}


def ids(batch: int, length: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, length), generator=g)


_CACHE: dict = {}


def minimized(name: str):
    """(masked model, module-mode result) for ``MODELS[name]``, once per test process."""
    if name not in _CACHE:
        import fxminimize
        m = MODELS[name]()
        _CACHE[name] = (m, fxminimize.minimize(m, (ids(2),), keep_modules=True))
    return _CACHE[name]
