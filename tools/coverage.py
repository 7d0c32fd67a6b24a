"""Coverage of Hugging Face transformers architectures, masked as users prune them (issue "Real
models as users prune them", Build 7).

Every architecture of :data:`ARCHS` is built from a small config with random weights (given a
trained look: random BatchNorm running statistics, nonzero biases, LayerNorm scales away from 1),
put in eval mode, masked three ways and handed to ``fxminimize.minimize``:

(a) ``rows``: ``prune.ln_structured(amount=0.3, n=2, dim=0)`` on the weight of every Linear /
    Conv (output rows; dim 1 of transformers' ``Conv1D``, whose weight is (in, out)), biases
    kept, then ``prune.remove``;
(b) ``norm``: gamma and beta of 30% of the channels of every norm module (a 1-D ``weight``
    whose module class or attribute name says norm/ln/bn) set to 0;
(c) ``planted``: half the hidden units of every MLP zeroed (rows and bias of the up / fc1 /
    intermediate projection); the elements of those rows (with their bias entries) plus the
    matching columns of the down projection are a lower bound on what must go.

Per (model, mask) row: captured or why not (first line of the ``MinimizationError``), exact
(minimize verified, and outputs on a fresh input compared here with
``torch.testing.assert_close``, rtol 1e-4, atol 1e-5*max(1, max|y|)), stored elements before and
after (distinct tensor storages of parameters, buffers and graph tensor constants), removed vs.
the planted bound, the top barriers, and whether "never larger" holds.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python tools/coverage.py            # writes JSON + doc
    HF_HUB_OFFLINE=1 .venv/bin/python tools/coverage.py --only Bert,ResNet     # a few, no doc
    HF_HUB_OFFLINE=1 .venv/bin/python tools/coverage.py --doc-only             # doc from the JSON

The JSON (tools/results/coverage.json) is rewritten after every row, so a partial run survives;
``--resume`` skips the rows already in it.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
import warnings
from typing import Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.nn.utils import prune  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
JSON_PATH = os.path.join(ROOT, "tools", "results", "coverage.json")
DOC_PATH = os.path.join(ROOT, "docs", "coverage.md")
MASKS = ("rows", "norm", "planted")
RTOL = 1e-4
ROW_TIMEOUT_S = 300

# --------------------------------------------------------------------------- architectures
# (name, kind, config overrides). kind: "text" (encoder, <Name>Model), "causal" (ForCausalLM or
# LMHeadModel), "vision" (ForImageClassification, else Model), "t5enc" / "bartenc" / "whisperenc"
# (the encoder alone), "audio" (raw waveform, <Name>Model).
_TXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            vocab_size=128, max_position_embeddings=64)
_DEC = dict(_TXT, num_key_value_heads=2, head_dim=8)
_PATCH_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  image_size=32, patch_size=8)

ARCHS: list[tuple[str, str, dict]] = [
    # ---------------------------------------------------------------- vision, convolutional
    ("ResNet", "vision", dict(embedding_size=16, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1])),
    ("ConvNext", "vision", dict(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], image_size=32)),
    ("ConvNextV2", "vision", dict(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], image_size=32)),
    ("RegNet", "vision", dict(embedding_size=16, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                              groups_width=8)),
    ("MobileNetV1", "vision", dict(image_size=32, depth_multiplier=0.25)),
    ("MobileNetV2", "vision", dict(image_size=32, depth_multiplier=0.25)),
    ("EfficientNet", "vision", dict(image_size=32, width_coefficient=0.25, depth_coefficient=0.25,
                                    hidden_dim=320)),
    ("Bit", "vision", dict(embedding_size=16, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                           num_groups=4)),
    ("PoolFormer", "vision", dict(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1])),
    ("Van", "vision", dict(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], image_size=32)),
    ("FocalNet", "vision", dict(embed_dim=16, depths=[1, 1, 1, 1], image_size=32,
                                hidden_sizes=[32, 64, 128, 128])),
    # ---------------------------------------------------------------- vision, attention
    ("ViT", "vision", _PATCH_VIT),
    ("DeiT", "vision", _PATCH_VIT),
    ("Beit", "vision", dict(_PATCH_VIT, vocab_size=64)),
    ("Dinov2", "vision", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
                              image_size=32, patch_size=8)),
    ("Swin", "vision", dict(image_size=32, patch_size=2, embed_dim=16, depths=[1, 1], num_heads=[2, 4],
                            window_size=4)),
    ("Swinv2", "vision", dict(image_size=32, patch_size=2, embed_dim=16, depths=[1, 1], num_heads=[2, 4],
                              window_size=4)),
    ("Levit", "vision", dict(image_size=64, hidden_sizes=[32, 48, 64], num_attention_heads=[2, 3, 4],
                             depths=[1, 1, 1], key_dim=[8, 8, 8], patch_size=16,
                             down_ops=[["Subsample", 8, 2, 4, 2, 2], ["Subsample", 8, 3, 4, 2, 2]])),
    ("MobileViT", "vision", dict(image_size=64, hidden_sizes=[32, 48, 64],
                                 neck_hidden_sizes=[8, 16, 24, 32, 40, 48, 96], num_attention_heads=2)),
    ("MobileViTV2", "vision", dict(image_size=64, width_multiplier=0.25, n_attn_blocks=[1, 1, 1],
                                   base_attn_unit_dims=[32, 48, 64])),
    ("Pvt", "vision", dict(image_size=32, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                           num_attention_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2])),
    ("PvtV2", "vision", dict(image_size=32, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                             num_attention_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2])),
    ("Segformer", "vision", dict(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                                 num_attention_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2],
                                 decoder_hidden_size=32, image_size=32)),
    ("Cvt", "vision", dict(embed_dim=[16, 32, 64], num_heads=[1, 2, 4], depth=[1, 2, 3])),  # depth[i] > i: CvtStage indexes drop_path_rates by stage
    ("Hiera", "vision", dict(image_size=[64, 64], embed_dim=16, depths=[1, 1, 1, 1],
                             num_heads=[1, 2, 4, 8], num_query_pool=2, masked_unit_size=[8, 8])),
    # ---------------------------------------------------------------- text encoders
    ("Bert", "text", _TXT),
    ("Roberta", "text", dict(_TXT, pad_token_id=1)),
    ("Albert", "text", dict(_TXT, embedding_size=16)),
    ("Deberta", "text", _TXT),
    ("DebertaV2", "text", _TXT),
    ("Electra", "text", dict(_TXT, embedding_size=16)),
    ("MPNet", "text", _TXT),
    ("DistilBert", "text", dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=128,
                                max_position_embeddings=64)),
    ("T5", "t5enc", dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, vocab_size=128)),
    ("Bart", "bartenc", dict(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                             vocab_size=128, max_position_embeddings=64)),
    # ---------------------------------------------------------------- decoders
    ("GPT2", "causal", dict(n_embd=32, n_layer=2, n_head=4, n_inner=64, vocab_size=128, n_positions=64)),
    ("GPTNeo", "causal", dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                              vocab_size=128, max_position_embeddings=64,
                              attention_types=[[["global", "local"], 1]], window_size=4)),
    ("GPTJ", "causal", dict(n_embd=32, n_layer=2, n_head=4, n_inner=64, vocab_size=128, n_positions=64,
                            rotary_dim=4)),
    ("GPTNeoX", "causal", _TXT),
    ("OPT", "causal", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
                           word_embed_proj_dim=32, vocab_size=128, max_position_embeddings=64)),
    ("Bloom", "causal", dict(hidden_size=32, n_layer=2, n_head=4, vocab_size=128)),
    ("Falcon", "causal", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=128)),
    ("Llama", "causal", _DEC),
    ("Mistral", "causal", _DEC),
    ("Mixtral", "causal", dict(_DEC, num_local_experts=4, num_experts_per_tok=2)),
    ("Qwen2", "causal", _DEC),
    ("Qwen2Moe", "causal", dict(_DEC, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                shared_expert_intermediate_size=64)),
    ("Qwen3", "causal", _DEC),
    ("Phi", "causal", _TXT),
    ("Phi3", "causal", dict(_DEC, pad_token_id=0)),
    ("Gemma", "causal", _DEC),
    ("Gemma2", "causal", dict(_DEC, sliding_window=16)),
    ("Gemma3Text", "causal", dict(_DEC, sliding_window=16, _cls="Gemma3ForCausalLM")),
    ("StableLm", "causal", _DEC),
    ("Starcoder2", "causal", dict(_DEC, sliding_window=16)),
    ("Olmo", "causal", _DEC),
    ("Granite", "causal", _DEC),
    ("Cohere", "causal", _DEC),
    # ---------------------------------------------------------------- audio
    ("Whisper", "whisperenc", dict(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                                   decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                   vocab_size=128, num_mel_bins=16, max_source_positions=16,
                                   max_target_positions=16, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                   decoder_start_token_id=1, begin_suppress_tokens=[3])),
    ("Wav2Vec2", "audio", dict(_TXT, conv_dim=[16, 16], conv_stride=[5, 2], conv_kernel=[10, 3],
                               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)),
]

SEQ = 8
BATCH = 2


class RowTimeout(Exception):
    pass


def _alarm(_sig, _frm):
    raise RowTimeout(f"row took longer than {ROW_TIMEOUT_S} s")


# --------------------------------------------------------------------------- building
def build(name: str, kind: str, overrides: dict):
    """(model, example_inputs, fresh_inputs, class name): eval mode, small, trained look."""
    import transformers
    cfg_cls = getattr(transformers, name + "Config")
    overrides = dict(overrides)
    cls_name = overrides.pop("_cls", None)
    cfg = cfg_cls(**overrides)
    if hasattr(cfg, "use_cache"):
        cfg.use_cache = False
    if hasattr(cfg, "num_labels") and kind == "vision":
        cfg.num_labels = 5
    torch.manual_seed(0)
    if kind == "t5enc":
        model = transformers.T5EncoderModel(cfg)
    elif kind == "bartenc":
        model = transformers.BartModel(cfg).get_encoder()
    elif kind == "whisperenc":
        model = transformers.WhisperModel(cfg).get_encoder()
    elif cls_name:
        model = getattr(transformers, cls_name)(cfg)
    else:
        cands = {"vision": ("ForImageClassification", "Model"),
                 "causal": ("ForCausalLM", "LMHeadModel", "Model"),
                 "text": ("Model",), "audio": ("Model",)}[kind]
        cls = next((getattr(transformers, name + c) for c in cands if hasattr(transformers, name + c)), None)
        if cls is None:
            raise LookupError(f"no {name}{'/'.join(cands)} class in transformers")
        model = cls(cfg)
    model.eval()
    trained_look(model)

    def inputs(seed: int):
        g = torch.Generator().manual_seed(seed)
        if kind in ("text", "causal", "t5enc", "bartenc"):
            return (torch.randint(3, int(cfg.vocab_size), (BATCH, SEQ), generator=g),)
        if kind == "vision":
            size = getattr(cfg, "image_size", 32)
            h, w = (size, size) if isinstance(size, int) else tuple(size)
            return (torch.randn(BATCH, int(getattr(cfg, "num_channels", 3)), h, w, generator=g),)
        if kind == "whisperenc":
            return (torch.randn(BATCH, cfg.num_mel_bins, 2 * cfg.max_source_positions, generator=g),)
        if kind == "audio":
            return (torch.randn(BATCH, 800, generator=g),)
        raise ValueError(kind)

    return model, inputs(1), inputs(2), type(model).__name__


def trained_look(model: nn.Module) -> None:
    """Random BatchNorm running statistics, nonzero biases, norm scales away from 1."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None:
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
        for pname, p in model.named_parameters():
            leaf = pname.rsplit(".", 1)[-1]
            if leaf == "bias" or leaf.endswith("_bias"):
                if p.dim() == 1:
                    p.add_(0.05 * torch.randn(p.shape, generator=g))
            elif leaf == "weight" and p.dim() == 1:  # norm scales (and 1-D per-channel scales)
                p.add_(0.1 * torch.randn(p.shape, generator=g))


# --------------------------------------------------------------------------- masks
def _conv1d_cls():
    try:
        from transformers.pytorch_utils import Conv1D
        return Conv1D
    except ImportError:  # pragma: no cover
        return ()


def mask_rows(model: nn.Module) -> dict:
    """(a): L2 structured pruning of 30% of the output rows of every Linear/Conv."""
    conv1d = _conv1d_cls()
    n = 0
    for mod in model.modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) or (conv1d and isinstance(mod, conv1d)):
            w = getattr(mod, "weight", None)
            if not isinstance(w, nn.Parameter) or w.dim() < 2:
                continue
            dim = 1 if (conv1d and isinstance(mod, conv1d)) else 0
            prune.ln_structured(mod, "weight", amount=0.3, n=2, dim=dim)
            prune.remove(mod, "weight")
            n += 1
    return {"modules": n}


def _is_norm(qual: str, mod: nn.Module) -> bool:
    w = getattr(mod, "weight", None)
    if not isinstance(w, nn.Parameter) or w.dim() != 1:
        return False
    if isinstance(mod, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)):
        return True
    cls = type(mod).__name__.lower()
    attr = qual.rsplit(".", 1)[-1].lower()
    return "norm" in cls or "norm" in attr or attr.startswith(("ln", "bn")) or "layernorm" in attr


def mask_norm(model: nn.Module) -> dict:
    """(b): gamma and beta of 30% of the channels of every norm module set to 0 (for a norm that
    scales by ``1 + w``, found by probing it, w = -1: the zero scale a user pruning it would set)."""
    g = torch.Generator().manual_seed(7)
    n = shifted = 0
    with torch.no_grad():
        for qual, mod in model.named_modules():
            if not _is_norm(qual, mod):
                continue
            c = mod.weight.numel()
            idx = torch.randperm(c, generator=g)[: int(round(0.3 * c))]
            mod.weight[idx] = 0
            b = getattr(mod, "bias", None)
            if isinstance(b, torch.Tensor) and b.shape == mod.weight.shape:
                b[idx] = 0
            if _scales_by_one_plus_weight(mod, idx):
                mod.weight[idx] = -1   # Gemma-style (1 + w): the zero scale a user would set
                shifted += 1
            n += 1
    return {"modules": n, "one_plus_weight": shifted}


def _scales_by_one_plus_weight(mod: nn.Module, idx: torch.Tensor) -> bool:
    """True for a custom last-dim norm whose zeroed channels are not zero but become zero with
    w = -1 (it scales by ``1 + w``, as Gemma's RMSNorm does): probed on a random input."""
    if isinstance(mod, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)) or not len(idx):
        return False
    x = torch.randn(2, 3, mod.weight.numel(), generator=torch.Generator().manual_seed(3))
    try:
        if mod(x)[..., idx].abs().max() == 0:
            return False
        saved = mod.weight[idx].clone()
        mod.weight[idx] = -1
        ok = bool(mod(x)[..., idx].abs().max() == 0)
        mod.weight[idx] = saved
        return ok
    except Exception:  # noqa: BLE001 - not a last-dim norm: leave the zero mask as it is
        return False


# (up, down) child names of an MLP container
_PAIRS = [("fc1", "fc2"), ("up_proj", "down_proj"), ("c_fc", "c_proj"), ("dense_h_to_4h", "dense_4h_to_h"),
          ("wi", "wo"), ("wi_1", "wo"), ("fc_in", "fc_out"), ("lin1", "lin2"), ("pwconv1", "pwconv2"),
          ("intermediate_dense", "output_dense"), ("dense1", "dense2"), ("ffn", "ffn_output"),
          ("linear_up", "linear_down"), ("in_dense", "out_dense"), ("conv1", "conv2"), ("w1", "w2"),
          ("weights_in", "weights_out")]


def _lin(mod):
    """(weight, bias, out dim of weight, in dim) of a Linear / 1x1 conv / Conv1D, else None."""
    conv1d = _conv1d_cls()
    if isinstance(mod, nn.Linear):
        return mod.weight, mod.bias, 0, 1
    if conv1d and isinstance(mod, conv1d):
        return mod.weight, mod.bias, 1, 0
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)) and mod.groups == 1 and all(k == 1 for k in mod.kernel_size):
        return mod.weight, mod.bias, 0, 1
    if hasattr(mod, "linear") and isinstance(mod.linear, nn.Linear):  # LeViT MLPLayerWithBN
        return _lin(mod.linear)
    return None


def _mlp_pairs(model: nn.Module):
    out = []
    for qual, mod in model.named_modules():
        kids = dict(mod.named_children())
        for up, down in _PAIRS:
            if up in kids and down in kids:
                out.append((f"{qual}.{up}".lstrip("."), kids[up], f"{qual}.{down}".lstrip("."), kids[down],
                            kids.get("gate_proj")))
        if "gate_up_proj" in kids and "down_proj" in kids:  # Phi-3: fused (gate; up) Linear
            out.append((f"{qual}.gate_up_proj".lstrip("."), kids["gate_up_proj"],
                        f"{qual}.down_proj".lstrip("."), kids["down_proj"], "second-half"))
        inter, outp = kids.get("intermediate"), kids.get("output")  # BERT-style layer
        if inter is not None and outp is not None and hasattr(inter, "dense") and hasattr(outp, "dense"):
            out.append((f"{qual}.intermediate.dense".lstrip("."), inter.dense,
                        f"{qual}.output.dense".lstrip("."), outp.dense, None))
    good = []
    for up_name, up, down_name, down, half in out:
        a, b = _lin(up), _lin(down)
        if a is None or b is None:
            continue
        hid = a[0].shape[a[2]]
        off = 0
        if half == "second-half":  # rows [I, 2I) are the up projection (act(gate) * up)
            hid, off = hid // 2, hid // 2
        if b[0].shape[b[3]] != hid or hid < 2:
            continue
        good.append((up_name, a, down_name, b, off))
    return good


def _expert_pairs(model: nn.Module):
    """Fused MoE experts (transformers 5.x): 3-D ``gate_up_proj`` (E, 2I, H), ``down_proj`` (E, H, I)."""
    out = []
    for qual, mod in model.named_modules():
        gu, dn = getattr(mod, "gate_up_proj", None), getattr(mod, "down_proj", None)
        if isinstance(gu, nn.Parameter) and isinstance(dn, nn.Parameter) and gu.dim() == 3 and dn.dim() == 3 \
                and gu.shape[1] == 2 * dn.shape[2]:
            out.append((qual, gu, dn))
    return out


def mask_planted(model: nn.Module) -> dict:
    """(c): half the hidden units of every MLP zeroed; returns the lower bound on what must go."""
    g = torch.Generator().manual_seed(11)
    bound = 0
    pairs = []
    with torch.no_grad():
        for up_name, (uw, ub, uo, ui), down_name, (dw, db, do, di), off in _mlp_pairs(model):
            hid = dw.shape[di]
            idx = torch.randperm(hid, generator=g)[: hid // 2]
            uw.index_fill_(uo, idx + off, 0.0)
            if ub is not None:
                ub[idx + off] = 0
            per_row = uw.numel() // uw.shape[uo] + (1 if ub is not None else 0)
            per_col = dw.numel() // dw.shape[di]
            bound += len(idx) * (per_row + per_col)
            pairs.append(f"{up_name}->{down_name}")
        for qual, gu, dn in _expert_pairs(model):
            E, H, inter = dn.shape
            for e in range(E):  # rows [I, 2I) of gate_up are "up" (act(gate) * up)
                idx = torch.randperm(inter, generator=g)[: inter // 2]
                gu[e, inter + idx] = 0
                bound += len(idx) * (gu.shape[2] + H)
            pairs.append(f"{qual}.experts")
    return {"pairs": pairs, "bound": bound if pairs else None}


APPLY = {"rows": mask_rows, "norm": mask_norm, "planted": mask_planted}


# --------------------------------------------------------------------------- measuring
def stored(module: nn.Module) -> int:
    """Elements of the distinct storages of parameters, buffers and (GraphModule) tensor constants."""
    tensors = [t for _, t in module.named_parameters(remove_duplicate=False)]
    tensors += [t for _, t in module.named_buffers(remove_duplicate=False)]
    for sub in module.modules():
        for v in vars(sub).values():
            if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter):
                tensors.append(v)
    seen: dict = {}
    for t in tensors:
        try:
            key = (t.untyped_storage().data_ptr(), t.device)
            n = t.untyped_storage().nbytes() // max(1, t.element_size())
        except (RuntimeError, NotImplementedError):
            key, n = ("id", id(t)), t.numel()
        if key[0] == 0:
            key = ("id", id(t))
        seen[key] = max(seen.get(key, 0), n)
    return sum(seen.values())


def _leaves(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _leaves(o)]
    return []


def compare_fresh(ref: nn.Module, small: nn.Module, x) -> tuple[bool, Optional[str], float]:
    with torch.no_grad():
        ya, yb = _leaves(ref(*x)), _leaves(small(*x))
    if len(ya) != len(yb):
        return False, f"{len(ya)} output tensors vs {len(yb)}", float("nan")
    err = 0.0
    for a, b in zip(ya, yb):
        if a.shape != b.shape:
            return False, f"output shape {tuple(a.shape)} vs {tuple(b.shape)}", float("nan")
        if a.is_floating_point():
            err = max(err, float((a - b).abs().max()) if a.numel() else 0.0)
            atol = 1e-5 * max(1.0, float(a.abs().max()) if a.numel() else 1.0)
        else:
            atol = 0
        try:
            torch.testing.assert_close(b, a, rtol=RTOL if a.is_floating_point() else 0, atol=atol)
        except AssertionError as exc:
            return False, str(exc).strip().splitlines()[0], err
    return True, None, err


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip()
    return f"{type(exc).__name__}: {s.splitlines()[0] if s else ''}"[:400]


def top_barriers(report, k: int = 4) -> list[dict]:
    """Barriers that keep channels, grouped by (op, reason), the largest first."""
    agg: dict = {}
    for b in report.barriers:
        if not b.channels_kept:
            continue
        key = (b.op, b.reason.splitlines()[0][:160] if b.reason else "")
        n, kept = agg.get(key, (0, 0))
        agg[key] = (n + 1, kept + b.channels_kept)
    rows = sorted(agg.items(), key=lambda kv: -kv[1][1])[:k]
    return [{"op": op, "reason": reason, "count": n, "channels_kept": kept} for (op, reason), (n, kept) in rows]


def run_row(model: nn.Module, x, fresh, mask: str) -> dict[str, Any]:
    """Mask a copy of ``model`` with ``mask``, minimize it, measure it. Never raises."""
    import fxminimize
    row: dict[str, Any] = {"mask": mask, "captured": False, "exact": False, "error": None}
    t0 = time.perf_counter()
    try:
        m = copy.deepcopy(model)
        info = APPLY[mask](m)
        row["mask_info"] = {k: (v if k != "pairs" else len(v)) for k, v in info.items()}
        row["bound"] = info.get("bound")
        row["before"] = stored(m)
        try:
            res = fxminimize.minimize(m, x)
        except fxminimize.MinimizationError as exc:
            row["error"] = _first_line(exc)
            row["stage"] = "minimize"
            return row
        row["captured"] = True
        row["after"] = stored(res.module)
        row["removed"] = row["before"] - row["after"]
        row["never_larger"] = row["after"] <= row["before"]
        row["report_params"] = [res.report.params_before, res.report.params_after]
        row["max_abs_error_verify"] = res.report.max_abs_error
        row["barriers"] = top_barriers(res.report)
        row["n_barriers_keeping"] = sum(1 for b in res.report.barriers if b.channels_kept)
        ok, why, err = compare_fresh(m, res.module, fresh)
        row["exact"] = ok
        row["max_abs_error_fresh"] = err
        if not ok:
            row["error"] = f"fresh-input mismatch: {why}"
        if row["bound"] is not None:
            row["bound_met"] = row["removed"] >= row["bound"]
    except RowTimeout as exc:
        row["error"] = _first_line(exc)
        row["stage"] = "timeout"
    except Exception as exc:  # noqa: BLE001 - every failure is a table entry
        row["error"] = _first_line(exc)
        row["stage"] = "tool"
        row["traceback"] = traceback.format_exc(limit=-3)
    finally:
        row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def run_arch(name: str, kind: str, overrides: dict, masks=MASKS) -> list[dict]:
    """All rows of one architecture (a single row with ``built: False`` if it does not build)."""
    base = {"arch": name, "kind": kind}
    try:
        model, x, fresh, cls = build(name, kind, overrides)
        with torch.no_grad():
            model(*x)
    except Exception as exc:  # noqa: BLE001
        return [dict(base, built=False, error=_first_line(exc))]
    base.update(built=True, cls=cls)
    timed = signal.getsignal(signal.SIGALRM) is _alarm
    rows = []
    for mask in masks:
        if timed:
            signal.alarm(ROW_TIMEOUT_S)
        try:
            rows.append(dict(base, **run_row(model, x, fresh, mask)))
        finally:
            if timed:
                signal.alarm(0)
    return rows


# --------------------------------------------------------------------------- the document
def _fmt(n):
    return "" if n is None else f"{n:,}"


def summary(rows: list[dict]) -> dict:
    archs = {r["arch"] for r in rows}
    built = {r["arch"] for r in rows if r.get("built")}
    mrows = [r for r in rows if r.get("built")]
    cap = [r for r in mrows if r["captured"]]
    bound = [r for r in cap if r.get("bound") is not None]
    return {"architectures": len(archs), "built": len(built), "rows": len(mrows), "captured": len(cap),
            "exact": sum(1 for r in cap if r["exact"]), "inexact": sum(1 for r in cap if not r["exact"]),
            "planted_rows_with_bound": len(bound), "bound_met": sum(1 for r in bound if r.get("bound_met")),
            "planted_no_mlp_found": sum(1 for r in mrows if r["mask"] == "planted" and r.get("bound") is None
                                        and "mask_info" in r),
            "never_larger_violations": sum(1 for r in cap if not r.get("never_larger", True)),
            "captured_all_masks": len({r["arch"] for r in cap} - {r["arch"] for r in mrows if not r["captured"]})}


def _pct(a, b):
    return f"{100.0 * a / b:.0f}%" if b else "n/a"


def write_doc(data: dict, path: str = DOC_PATH, json_path: str = JSON_PATH) -> None:
    rows, meta = data["rows"], data["meta"]
    s = summary(rows)
    L = ["# Coverage: Hugging Face architectures, masked as users prune them", "",
         f"Generated by `tools/coverage.py` (raw results: `{os.path.relpath(json_path, ROOT)}`).", "",
         *(["A subset run (`--only`) on newer code than the full table in [coverage.md](coverage.md), "
            "for the architectures named in its command; where the two disagree, this one is current.", ""]
           if "--only" in meta["command"] else []),
         "```", meta["command"], "```", "",
         f"Code: commit {meta.get('commit', 'unknown')}. "
         f"Machine: {meta['machine']}. Date: {meta['date']}. torch {meta['torch']}, "
         f"transformers {meta['transformers']}, Python {meta['python']}. "
         f"Wall time of the run: {meta.get('wall_s', 0) / 60:.1f} min.", "",
         "Every model is built from a small config (hidden 16-64, 1-2 layers or one block per stage, "
         "vocab 128, images 32-64 px, sequence 8, batch 2) with random weights given a trained look "
         "(random BatchNorm running statistics, nonzero biases, norm scales 1 + N(0, 0.1)), in eval "
         "mode with `use_cache=False`. Masks: **rows** = `prune.ln_structured(amount=0.3, n=2, dim=0)` "
         "on every Linear/Conv weight (dim 1 for transformers' `Conv1D`), biases kept, then "
         "`prune.remove`; **norm** = gamma and beta of 30% of the channels of every norm module set to "
         "0 (weight -1 for a norm that scales by `1 + weight`); **planted** = half the hidden units of every MLP zeroed (up-projection rows and bias); its "
         "*bound* = elements of those rows and bias entries plus the matching down-projection columns, "
         "a lower bound on what an exact minimizer must remove.", "",
         "*exact*: `minimize` verified its result and the outputs on a fresh input match "
         f"(`torch.testing.assert_close`, rtol {RTOL:g}, atol 1e-5·max(1, max|y|)). *before/after*: "
         "elements of the distinct storages of parameters, buffers and tensor constants (counted by the "
         "tool, not by the library). *barriers*: ops that keep channels (`result.report.barriers` with "
         "`channels_kept > 0`), grouped by op and reason, count × and channels kept.", "",
         "Torch-Pruning column: " + meta.get("torch_pruning", "skipped"), "",
         "## Summary", "",
         f"- architectures tried: {s['architectures']}; built: {s['built']}; (model, mask) rows: {s['rows']}",
         f"- captured (minimize returned a model): {s['captured']}/{s['rows']} ({_pct(s['captured'], s['rows'])}); "
         f"architectures captured under all three masks: {s['captured_all_masks']}/{s['built']}",
         f"- exact: {s['exact']}; inexact (captured but the fresh-input comparison failed): {s['inexact']}",
         f"- planted-mask bound met: {s['bound_met']}/{s['planted_rows_with_bound']} captured planted rows "
         f"({_pct(s['bound_met'], s['planted_rows_with_bound'])}); planted rows where no MLP pair was found "
         f"(no bound): {s['planted_no_mlp_found']}",
         f"- never-larger violations (after > before): {s['never_larger_violations']}", "",
         "## Per row", "",
         "| model | class | mask | captured | exact | before | after | removed | bound | bound met | "
         "never larger | s | top barriers / error |",
         "|---|---|---|---|---|---:|---:|---:|---:|---|---|---:|---|"]
    for r in rows:
        if not r.get("built"):
            L.append(f"| {r['arch']} | | | not built | | | | | | | | | {_esc(r.get('error'))} |")
            continue
        bar = "; ".join(f"{b['op']} ×{b['count']} ({b['channels_kept']}): {b['reason'][:70]}"
                        for b in r.get("barriers", [])[:3])
        note = bar if r["captured"] and r["exact"] else (r.get("error") or "")
        bm = "" if r.get("bound") is None or not r["captured"] else ("yes" if r.get("bound_met") else "**no**")
        nl = "" if not r["captured"] else ("yes" if r.get("never_larger") else "**no**")
        L.append(f"| {r['arch']} | {r.get('cls', '')} | {r['mask']} | {'yes' if r['captured'] else '**no**'} | "
                 f"{('yes' if r['exact'] else '**no**') if r['captured'] else ''} | {_fmt(r.get('before'))} | "
                 f"{_fmt(r.get('after'))} | {_fmt(r.get('removed'))} | {_fmt(r.get('bound'))} | {bm} | {nl} | "
                 f"{r.get('seconds', '')} | {_esc(note)} |")
    L += ["", "## Not captured, inexact or short of the bound", ""]
    bad = 0
    for r in rows:
        if not r.get("built"):
            L.append(f"- **{r['arch']}**: not built: {_esc(r.get('error'))}")
            bad += 1
        elif not r["captured"]:
            L.append(f"- **{r['arch']}** / {r['mask']}: not captured ({r.get('stage', '')}): {_esc(r.get('error'))}")
            bad += 1
        elif not r["exact"]:
            L.append(f"- **{r['arch']}** / {r['mask']}: inexact: {_esc(r.get('error'))}")
            bad += 1
        elif r.get("bound") is not None and not r.get("bound_met"):
            top = "; ".join(f"{b['op']}: {b['reason'][:100]}" for b in r.get("barriers", [])[:2]) or "no barrier"
            L.append(f"- **{r['arch']}** / planted: removed {_fmt(r.get('removed'))} < bound {_fmt(r['bound'])} "
                     f"({100.0 * r.get('removed', 0) / r['bound']:.1f}% of it); top barriers: {_esc(top)}"
                     + ("; also never-larger violated" if not r.get("never_larger", True) else ""))
            bad += 1
        elif not r.get("never_larger", True):
            L.append(f"- **{r['arch']}** / {r['mask']}: never-larger violated: {_fmt(r['before'])} -> "
                     f"{_fmt(r['after'])} elements (library's own count: {r.get('report_params')})")
            bad += 1
        elif r["mask"] == "planted" and r.get("bound") is None:
            L.append(f"- **{r['arch']}** / planted: no MLP (up, down) pair recognised by the tool, so no "
                     "planted mask and no bound (a gap of the tool, not of the library)")
            bad += 1
    if not bad:
        L.append("- none")
    L += ["", "## Notes", "", *meta.get("notes", []), ""]
    with open(path, "w") as f:
        f.write("\n".join(L))


def _esc(s) -> str:
    return (s or "").replace("|", "\\|").replace("\n", " ")


NOTES = [
    "- Gemma-family RMSNorms scale by `(1 + weight)`: the *norm* mask finds such norms by probing "
    "them (the zeroed channels are not zero, and are with weight -1) and sets weight = -1 there, the "
    "zero scale a user pruning those norms would set (the `one_plus_weight` count in the row's mask info).",
    "- Mixture-of-experts models (Mixtral, Qwen2-MoE) keep their experts in fused 3-D parameters "
    "(`gate_up_proj` (E, 2I, H), `down_proj` (E, H, I)) in transformers 5.x: the *rows* mask touches "
    "only Linear/Conv modules (router, attention, shared expert); the *planted* mask zeroes the "
    "up half (rows I..2I) of every expert's `gate_up_proj` as well, and the bound counts those rows "
    "and the matching `down_proj` columns. Phi-3's fused `gate_up_proj` Linear is handled the same way.",
    "- The tool recognises an MLP by child names (fc1/fc2, up_proj/down_proj, c_fc/c_proj, "
    "dense_h_to_4h/dense_4h_to_h, wi/wo, fc_in/fc_out, lin1/lin2, pwconv1/pwconv2, "
    "intermediate_dense/output_dense, dense1/dense2, ffn/ffn_output, conv1/conv2 1x1, "
    "intermediate.dense/output.dense, ...); the bound counts only those.",
    "- `torch.export` lifts tensors the original model creates inside `forward` (a scalar attention "
    "scale, an attention-bias tensor) into stored constants of the result, which the original does "
    "not store; scalars are inlined (`constfold.inline_scalar_constants`) and a value computed from "
    "parameters is folded only where it does not store more than its sources, so these no longer "
    "show as never-larger violations or bound shortfalls.",
    "- The norm mask zeroes different random channels in each norm, so a residual-stream channel is "
    "rarely dead in every writer: what goes on LayerNorm models is mostly the columns of the "
    "consumers that read a zero-scale channel, and the producers' rows that fed only it.",
    "- Row timeout: %d s (SIGALRM)." % ROW_TIMEOUT_S,
]


# --------------------------------------------------------------------------- main
def _meta(argv) -> dict:
    import transformers
    try:
        import torch_pruning  # noqa: F401
        tp = "torch_pruning is importable but no column was implemented"
    except ImportError:
        tp = "skipped: `torch_pruning` is not installed (installing it would pull torchvision / another torch)"
    cpu = platform.processor() or platform.machine()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"command": "HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python tools/coverage.py " + " ".join(argv),
            "commit": commit,
            "machine": f"{os.cpu_count()}-core {platform.machine()} CPU ({cpu}), no GPU, {platform.system()}",
            "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "torch_pruning": tp, "notes": NOTES}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated architecture names")
    ap.add_argument("--json", default=JSON_PATH)
    ap.add_argument("--doc", default=DOC_PATH)
    ap.add_argument("--resume", action="store_true", help="skip architectures already in the JSON")
    ap.add_argument("--doc-only", action="store_true", help="rewrite the doc from the JSON")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.doc_only:
        with open(args.json) as f:
            data = json.load(f)
        data["meta"]["notes"] = NOTES
        write_doc(data, args.doc, args.json)
        return
    from tqdm import tqdm
    archs = ARCHS
    if args.only:
        want = set(args.only.split(","))
        archs = [a for a in ARCHS if a[0] in want]
    data = {"meta": _meta(argv), "rows": []}
    done = set()
    if args.resume and os.path.exists(args.json):
        with open(args.json) as f:
            old = json.load(f)
        data["rows"] = [r for r in old["rows"] if r["arch"] in {a[0] for a in archs}]
        done = {r["arch"] for r in data["rows"]}
        data["meta"]["wall_s"] = old["meta"].get("wall_s", 0)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    signal.signal(signal.SIGALRM, _alarm)
    t0 = time.perf_counter() - data["meta"].get("wall_s", 0)
    bar = tqdm([a for a in archs if a[0] not in done], unit="arch")
    for name, kind, ov in bar:
        bar.set_postfix_str(name)
        try:
            rows = run_arch(name, kind, ov)
        except RowTimeout as exc:  # an alarm outside run_row (between rows)
            rows = [{"arch": name, "kind": kind, "built": False, "error": _first_line(exc)}]
        for r in rows:
            r.pop("traceback", None) if r.get("stage") != "tool" else None
            tqdm.write(f"{name:14s} {r.get('mask', '-'):8s} captured={r.get('captured')} exact={r.get('exact')} "
                       f"{r.get('before')}->{r.get('after')} bound={r.get('bound')} {r.get('seconds')}s "
                       f"{(r.get('error') or '')[:100]}")
        data["rows"].extend(rows)
        data["meta"]["wall_s"] = time.perf_counter() - t0
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1, default=str)
    if not args.only:
        write_doc(data, args.doc, args.json)


if __name__ == "__main__":
    main()
