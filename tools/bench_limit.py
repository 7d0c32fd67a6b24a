"""The physical limit: the minimized model against the same architecture built natively at the
kept widths (used by ``tools/bench_inference.py --native``).

Models (random weights: no download; speed does not depend on the values), each with a head whose
output does not keep the pruned stream's width, so nothing is restored at the output:

* ``gpt2_lm``: ``GPT2LMHeadModel`` (width 256, 4 layers, 8 heads, MLP 1024, vocab 1000), input
  (8, 128) token ids (the model of issue 17).
* ``vit``: ``ViTForImageClassification`` (width 256, 4 layers, 8 heads, MLP 1024, 224×224,
  patch 16, 10 labels), input (4, 3, 224, 224).
* ``convnext``: ``ConvNextForImageClassification(ConvNextConfig(num_labels=10))`` =
  ConvNeXt-Tiny, input (1, 3, res, res).

Structured sparsity s (as ``tools/bench_inference.py``'s pruning, which it reuses for GPT-2 and
ConvNeXt): the fraction s of residual-stream channels (in every writer and in the norms), of the
attention heads and of the MLP hidden channels is zeroed, plus 50 % unstructured magnitude
pruning (kept inside the remaining rows). The *native* model is the same class built from its
config at the kept widths: stream C − round(sC), heads H − round(sH) (head dim unchanged), MLP
F − round(sF); ConvNeXt per stage, its MLP is 4× the stage width as in the pruned model.
"""
from __future__ import annotations

import torch


def _lowest(score: torch.Tensor, s: float) -> torch.Tensor:
    k = int(round(s * score.numel()))
    return torch.argsort(score, stable=True)[:k]


def _kept(n: int, s: float) -> int:
    return n - int(round(s * n))


def prune_vit(model, s, unstructured):
    """Stream channels (patch projection, cls token, positions, every o_proj/fc2 row, every
    LayerNorm's γ/β), heads (o_proj columns) and MLP hidden channels (fc1 rows) of a ViT."""
    vit = model.vit
    cfg = model.config
    C, H = cfg.hidden_size, cfg.num_attention_heads
    dh = C // H
    with torch.no_grad():
        e = vit.embeddings
        score = e.patch_embeddings.projection.weight.abs().flatten(1).sum(1)
        for L in vit.encoder.layer if hasattr(vit, "encoder") else vit.layers:
            score = score + L.attention.o_proj.weight.abs().sum(1) + L.mlp.fc2.weight.abs().sum(1)
        st = _lowest(score, s)
        e.patch_embeddings.projection.weight[st] = 0
        e.patch_embeddings.projection.bias[st] = 0
        e.cls_token[..., st] = 0
        e.position_embeddings[..., st] = 0
        for L in vit.encoder.layer if hasattr(vit, "encoder") else vit.layers:
            at = L.attention
            for ln in (L.layernorm_before, L.layernorm_after):
                ln.weight[st] = 0
                ln.bias[st] = 0
            at.o_proj.weight[st] = 0
            at.o_proj.bias[st] = 0
            L.mlp.fc2.weight[st] = 0
            L.mlp.fc2.bias[st] = 0
            heads = _lowest(at.o_proj.weight.abs().sum(0).reshape(H, dh).sum(1), s)
            for h in heads.tolist():
                at.o_proj.weight[:, h * dh:(h + 1) * dh] = 0
            hid = _lowest(L.mlp.fc1.weight.abs().sum(1) * L.mlp.fc2.weight.abs().sum(0), s)
            L.mlp.fc1.weight[hid] = 0
            L.mlp.fc1.bias[hid] = 0
        vit.layernorm.weight[st] = 0
        vit.layernorm.bias[st] = 0
    unstructured(model)
    return model


def build(name: str, s: float, res: int = 224):
    """(masked model, native model, make_input(batch=None)) for one model at sparsity ``s``."""
    import transformers
    from bench_inference import _unstructured, prune_convnext, prune_gpt2
    torch.manual_seed(0)
    if name == "gpt2_lm":
        def cfg(C, H, F):
            return transformers.GPT2Config(n_embd=C, n_layer=4, n_head=H, n_inner=F, vocab_size=1000,
                                           n_positions=128, use_cache=False, bos_token_id=0, eos_token_id=0)
        m = transformers.GPT2LMHeadModel(cfg(256, 8, 1024)).eval()
        prune_gpt2(m.transformer, s)
        native = transformers.GPT2LMHeadModel(cfg(_kept(256, s), _kept(8, s), _kept(1024, s))).eval()
        return m, native, lambda b=8: torch.randint(0, 1000, (b, 128))
    if name == "vit":
        def cfg(C, H, F):
            return transformers.ViTConfig(hidden_size=C, num_hidden_layers=4, num_attention_heads=H,
                                          intermediate_size=F, image_size=224, patch_size=16, num_labels=10)
        m = transformers.ViTForImageClassification(cfg(256, 8, 1024)).eval()
        prune_vit(m, s, _unstructured)
        native = transformers.ViTForImageClassification(cfg(_kept(256, s), _kept(8, s), _kept(1024, s))).eval()
        return m, native, lambda b=4: torch.randn(b, 3, 224, 224)
    if name == "convnext":
        m = transformers.ConvNextForImageClassification(transformers.ConvNextConfig(num_labels=10)).eval()
        prune_convnext(m.convnext, s)
        widths = [_kept(c, s) for c in m.config.hidden_sizes]
        native = transformers.ConvNextForImageClassification(
            transformers.ConvNextConfig(num_labels=10, hidden_sizes=widths)).eval()
        return m, native, lambda b=1: torch.randn(b, 3, res, res)
    raise SystemExit(f"unknown model {name} (--native models: gpt2_lm, vit, convnext)")
