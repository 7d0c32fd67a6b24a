"""Module-level canonicalization before capture: rewrite modules whose exported form hides
their structure into equivalent modules the analysis understands.

``nn.MultiheadAttention`` exports as one packed in-projection whose q/k/v are separated by
unflatten/select and whose heads are merged with the batch dim, which no channel rule can
follow. :class:`SplitMultiheadAttention` computes the same function with three projections
(the rows of ``in_proj_weight``), ``view(B, T, H, D)`` head splits and
``scaled_dot_product_attention``: the pattern :mod:`fxminimize.passes.ops.attention_match` matches.

Math: MHA(q, k, v) = W_o · concat_h softmax((W_q^h q)(W_k^h k)ᵀ/√D + mask) (W_v^h v) + b_o with
W_q = in_proj_weight[:E], W_k = [E:2E], W_v = [2E:] — the same products in another grouping, so
the results agree to float rounding (the verification step checks them). Calls the fast path
cannot take (attention weights requested, bias_k/bias_v, add_zero_attn, different
key/value sizes) run the original algorithm on the same weights.

Only the working copy made by :func:`fxminimize.minimize` is changed, never the user's model.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SplitMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` with separate q/k/v projections (same parameters, split)."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        E = mha.embed_dim
        self.embed_dim, self.num_heads, self.batch_first = E, mha.num_heads, mha.batch_first
        self.head_dim = E // mha.num_heads
        self.dropout = mha.dropout
        bias = mha.in_proj_bias is not None
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(E, E, bias=bias) for _ in range(3))
        with torch.no_grad():
            for i, lin in enumerate((self.q_proj, self.k_proj, self.v_proj)):
                lin.weight.copy_(mha.in_proj_weight[i * E:(i + 1) * E])
                if bias:
                    lin.bias.copy_(mha.in_proj_bias[i * E:(i + 1) * E])
        self.out_proj = nn.Linear(E, E, bias=mha.out_proj.bias is not None)
        with torch.no_grad():
            self.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                self.out_proj.bias.copy_(mha.out_proj.bias)

    @staticmethod
    def eligible(mha: nn.MultiheadAttention) -> bool:
        return bool(mha._qkv_same_embed_dim and mha.bias_k is None and mha.bias_v is None
                    and not mha.add_zero_attn and mha.embed_dim % mha.num_heads == 0)

    def _packed(self):
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        b = None if self.q_proj.bias is None else torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        return w, b

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if need_weights or query.dim() != 3:
            # the general algorithm on the same weights (kept whole: the packed weight is computed)
            w, b = self._packed()
            q, k, v = (t.transpose(0, 1) for t in (query, key, value)) if self.batch_first else (query, key, value)
            out, weights = F.multi_head_attention_forward(
                q, k, v, self.embed_dim, self.num_heads, w, b, None, None, False,
                self.dropout if self.training else 0.0, self.out_proj.weight, self.out_proj.bias,
                training=self.training, key_padding_mask=key_padding_mask, need_weights=need_weights,
                attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)
            return (out.transpose(0, 1) if self.batch_first else out), weights
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        B, T, _ = query.shape
        S = key.shape[1]
        H, D = self.num_heads, self.head_dim
        q = self.q_proj(query).view(B, T, H, D).transpose(1, 2)
        k = self.k_proj(key).view(B, S, H, D).transpose(1, 2)
        v = self.v_proj(value).view(B, S, H, D).transpose(1, 2)
        mask = None
        if attn_mask is not None:
            mask = attn_mask if attn_mask.dtype != torch.bool else \
                torch.zeros(attn_mask.shape, dtype=q.dtype).masked_fill(attn_mask, float("-inf"))
            mask = mask.view(-1, H, T, S) if mask.dim() == 3 else mask
        if key_padding_mask is not None:
            kp = key_padding_mask if key_padding_mask.dtype != torch.bool else \
                torch.zeros(key_padding_mask.shape, dtype=q.dtype).masked_fill(key_padding_mask, float("-inf"))
            kp = kp.view(B, 1, 1, S)
            mask = kp if mask is None else mask + kp
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=is_causal and mask is None)
        out = self.out_proj(y.transpose(1, 2).reshape(B, T, self.embed_dim))
        return (out if self.batch_first else out.transpose(0, 1)), None


def canonicalize(model: nn.Module) -> list[str]:
    """Replace, in place, the submodules of ``model`` that have a canonical form; return notes."""
    notes = []
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if type(child) is nn.MultiheadAttention and SplitMultiheadAttention.eligible(child):
                setattr(mod, child_name, SplitMultiheadAttention(child))
                full = f"{name}.{child_name}" if name else child_name
                notes.append(f"nn.MultiheadAttention '{full}' was split into q_proj/k_proj/v_proj "
                             "(same weights) so its heads and dims can be analysed")
    return notes
