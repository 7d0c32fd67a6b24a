"""Exact minimization of Hugging Face transformers and ConvNeXt-Tiny (random weights, no downloads).

Each model is masked so as to zero (a) some residual-stream channels in every writer, (b) whole
heads, (c) some q/k dims, (d) some MLP hidden channels. The minimized model must match the
original (helpers.compare: rtol 1e-4, atol 1e-5·max(1, max|y|), float32) at the example batch
and at other batch sizes, every zeroed structure must be gone (exact weight shapes), and the
ONNX export must match in onnxruntime (same tolerance).
"""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import fxminimize  # noqa: E402
from helpers import ATOL, RTOL, compare  # noqa: E402

S = [3, 7, 20]          # residual-stream channels zeroed in every writer
HID = [5, 40, 61]       # MLP hidden channels
DH = 8                  # head dim of the small configs (hidden 32, 4 heads)


def _heads_rows(dims, heads=4, dh=DH, offset=0):
    return [offset + h * dh + d for h in range(heads) for d in dims]


# --------------------------------------------------------------------------- model builders
def bert():
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, vocab_size=100, max_position_embeddings=64)
    m = transformers.BertModel(cfg).eval()
    with torch.no_grad():
        e = m.embeddings
        for t in (e.word_embeddings.weight, e.position_embeddings.weight, e.token_type_embeddings.weight):
            t[:, S] = 0
        e.LayerNorm.weight[S] = 0
        e.LayerNorm.bias[S] = 0
        for L in m.encoder.layer:
            at = L.attention
            at.output.dense.weight[S] = 0
            at.output.dense.bias[S] = 0
            at.output.LayerNorm.weight[S] = 0
            at.output.LayerNorm.bias[S] = 0
            L.output.dense.weight[S] = 0
            L.output.dense.bias[S] = 0
            L.output.LayerNorm.weight[S] = 0
            L.output.LayerNorm.bias[S] = 0
            at.output.dense.weight[:, 8:16] = 0                    # (b) head 1
            at.self.query.weight[_heads_rows([2])] = 0             # (c) q dim 2 ZERO
            at.self.query.bias[_heads_rows([2])] = 0
            at.self.key.weight[_heads_rows([5])] = 0               # (c) k dim 5 CONST (bias)
            L.intermediate.dense.weight[HID] = 0                   # (d)
            L.intermediate.dense.bias[HID] = 0
    x = torch.randint(0, 100, (2, 8))
    C = 32 - len(S)
    shapes = {"embeddings.word_embeddings.weight": (100, C),
              "encoder.layer.0.attention.self.query.weight": (3 * 6, C),
              "encoder.layer.0.attention.self.key.weight": (3 * 6, C),
              "encoder.layer.0.attention.self.value.weight": (3 * 8, C),
              "encoder.layer.1.attention.output.dense.weight": (C, 3 * 8),
              "encoder.layer.1.intermediate.dense.weight": (64 - len(HID), C),
              "encoder.layer.1.output.dense.weight": (C, 64 - len(HID))}
    return m, x, shapes


def _gpt2_mask(tr):
    with torch.no_grad():
        tr.wte.weight[:, S] = 0
        tr.wpe.weight[:, S] = 0
        for blk in tr.h:
            a = blk.attn
            a.c_proj.weight[:, S] = 0
            a.c_proj.bias[S] = 0
            blk.mlp.c_proj.weight[:, S] = 0
            blk.mlp.c_proj.bias[S] = 0
            for ln in (blk.ln_1, blk.ln_2):
                ln.weight[S] = 0
                ln.bias[S] = 0
            a.c_proj.weight[8:16, :] = 0                           # (b) head 1 (Conv1D: (in, out))
            a.c_attn.weight[:, _heads_rows([2])] = 0               # (c) q dim 2 ZERO
            a.c_attn.bias[_heads_rows([2])] = 0
            a.c_attn.weight[:, _heads_rows([5], offset=32)] = 0    # (c) k dim 5 CONST
            a.c_attn.weight[:, _heads_rows([6], offset=64)] = 0    # v dim 6 CONST: folded
            blk.mlp.c_fc.weight[:, HID] = 0                        # (d)
            blk.mlp.c_fc.bias[HID] = 0
        tr.ln_f.weight[S] = 0
        tr.ln_f.bias[S] = 0


def _gpt2_cfg():
    return transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64,
                                   use_cache=False, bos_token_id=0, eos_token_id=0)


def _gpt2_shapes(prefix):
    C = 32 - len(S)
    return {f"{prefix}h.0.attn.c_attn.weight": (C, 18 + 18 + 21),
            f"{prefix}h.1.attn.c_proj.weight": (21, C),
            f"{prefix}h.0.mlp.c_fc.weight": (C, 128 - len(HID)),
            f"{prefix}wpe.weight": (64, C)}


def gpt2():
    m = transformers.GPT2Model(_gpt2_cfg()).eval()
    _gpt2_mask(m)
    return m, torch.randint(0, 100, (2, 8)), _gpt2_shapes("")


def gpt2_lm():
    m = transformers.GPT2LMHeadModel(_gpt2_cfg()).eval()
    _gpt2_mask(m.transformer)
    shapes = _gpt2_shapes("transformer.")
    shapes["lm_head.weight"] = (100, 32 - len(S))
    return m, torch.randint(0, 100, (2, 8)), shapes


def vit():
    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64, image_size=32, patch_size=8)
    m = transformers.ViTModel(cfg).eval()
    with torch.no_grad():
        e = m.embeddings
        e.patch_embeddings.projection.weight[S] = 0
        e.patch_embeddings.projection.bias[S] = 0
        e.cls_token[..., S] = 0
        e.position_embeddings[..., S] = 0
        for L in m.layers:
            for ln in (L.layernorm_before, L.layernorm_after):
                ln.weight[S] = 0
                ln.bias[S] = 0
            at = L.attention
            at.o_proj.weight[S] = 0
            at.o_proj.bias[S] = 0
            L.mlp.fc2.weight[S] = 0
            L.mlp.fc2.bias[S] = 0
            at.o_proj.weight[:, 8:16] = 0
            at.q_proj.weight[_heads_rows([2])] = 0
            at.q_proj.bias[_heads_rows([2])] = 0
            at.k_proj.weight[_heads_rows([5])] = 0
            L.mlp.fc1.weight[HID] = 0
            L.mlp.fc1.bias[HID] = 0
        m.layernorm.weight[S] = 0
        m.layernorm.bias[S] = 0
    C = 32 - len(S)
    shapes = {"embeddings.patch_embeddings.projection.weight": (C, 3, 8, 8),
              "embeddings.cls_token": (1, 1, C),
              "layers.0.attention.q_proj.weight": (18, C),
              "layers.0.attention.o_proj.weight": (C, 24),
              "layers.1.mlp.fc1.weight": (64 - len(HID), C)}
    return m, torch.randn(2, 3, 32, 32), shapes


def llama():
    cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=64, vocab_size=100,
                                   max_position_embeddings=64, use_cache=False)
    m = transformers.LlamaModel(cfg).eval()
    with torch.no_grad():
        m.embed_tokens.weight[:, S] = 0
        for L in m.layers:
            L.input_layernorm.weight[S] = 0
            L.post_attention_layernorm.weight[S] = 0
            a = L.self_attn
            a.o_proj.weight[S] = 0
            L.mlp.down_proj.weight[S] = 0
            a.o_proj.weight[:, 16:32] = 0                          # (b) query heads 2, 3 = kv group 1
            a.q_proj.weight[_heads_rows([1, 5])] = 0               # (c) RoPE pair (1, 5) ZERO in q
            L.mlp.gate_proj.weight[HID] = 0                        # (d) silu(0)·up = 0
        m.norm.weight[S] = 0
    C = 32 - len(S)
    shapes = {"embed_tokens.weight": (100, C),
              "layers.0.self_attn.q_proj.weight": (2 * 6, C),
              "layers.0.self_attn.k_proj.weight": (1 * 6, C),
              "layers.0.self_attn.v_proj.weight": (1 * 8, C),
              "layers.1.self_attn.o_proj.weight": (C, 2 * 8),
              "layers.1.mlp.up_proj.weight": (64 - len(HID), C),
              "norm.weight": (C,)}
    return m, torch.randint(0, 100, (2, 8)), shapes


def convnext_tiny():
    cfg = transformers.ConvNextConfig()  # the default config is ConvNeXt-Tiny
    m = transformers.ConvNextModel(cfg).eval()
    st = [1, 9, 50]                       # stage-0 stream channels (96 wide)
    hid = [4, 100, 300]                   # hidden channels of stage-0 block MLPs (384 wide)
    with torch.no_grad():
        e = m.embeddings
        e.patch_embeddings.weight[st] = 0
        e.patch_embeddings.bias[st] = 0
        e.layernorm.weight[st] = 0
        e.layernorm.bias[st] = 0
        for L in m.encoder.stages[0].layers:
            L.dwconv.weight[st] = 0
            L.dwconv.bias[st] = 0
            L.layernorm.weight[st] = 0
            L.layernorm.bias[st] = 0
            L.layer_scale_parameter[st] = 0
            L.pwconv1.weight[hid] = 0
            L.pwconv1.bias[hid] = 0
        ds = m.encoder.stages[1].downsampling_layer[0]
        ds.weight[st] = 0
        ds.bias[st] = 0
    shapes = {"embeddings.patch_embeddings.weight": (93, 3, 4, 4),
              "encoder.stages.0.layers.0.dwconv.weight": (93, 1, 7, 7),
              "encoder.stages.0.layers.2.pwconv1.weight": (381, 93),
              "encoder.stages.0.layers.1.pwconv2.weight": (93, 381),
              "encoder.stages.1.downsampling_layer.1.weight": (192, 93, 2, 2)}
    return m, torch.randn(2, 3, 64, 64), shapes


MODELS = {"bert": bert, "gpt2": gpt2, "gpt2_lm": gpt2_lm, "vit": vit, "llama": llama,
          "convnext_tiny": convnext_tiny}


def _outputs(y):
    if isinstance(y, torch.Tensor):
        return [y]
    if hasattr(y, "to_tuple"):
        y = y.to_tuple()
    out = []
    for v in (y.values() if isinstance(y, dict) else y):
        out.extend(_outputs(v))
    return out


@pytest.fixture(scope="module", params=list(MODELS))
def minimized(request):
    torch.manual_seed(0)
    model, x, shapes = MODELS[request.param]()
    result = fxminimize.minimize(model, (x,))
    return request.param, model, x, shapes, result


def test_outputs_match(minimized):
    name, model, x, _, result = minimized
    for batch in (1, x.shape[0], 5):
        xb = x[:1].expand(batch, *x.shape[1:]).clone() if batch == 1 else (
            torch.randint(0, 100, (batch,) + tuple(x.shape[1:])) if x.dtype == torch.long
            else torch.randn(batch, *x.shape[1:]))
        compare(model, result.module, (xb,))


def test_zeroed_structures_are_gone(minimized):
    name, model, x, shapes, result = minimized
    got = {k: tuple(v.shape) for k, v in result.module.state_dict().items()}
    for k, want in shapes.items():
        assert got.get(k) == want, (k, got.get(k), want)
    assert result.report.params_after < result.report.params_before


def test_onnx_roundtrip(minimized, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    name, model, x, _, result = minimized
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(result.module, (x,), str(path), dynamo=True, external_data=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    got = [torch.from_numpy(a) for a in sess.run(None, feed)]
    with torch.no_grad():
        want = _outputs(model(x))
    assert len(got) == len(want)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, rtol=RTOL, atol=ATOL * max(1.0, float(w.abs().max())))


def test_gpt2_lm_head_stays_tied():
    torch.manual_seed(0)
    model, x, _ = gpt2_lm()
    result = fxminimize.minimize(model, (x,))
    params = dict(result.module.named_parameters(remove_duplicate=False))
    names = [n for n in result.module.graph.nodes if n.op == "get_attr" and "lm_head" in str(n.target)]
    assert len({str(n.target) for n in names}) == 1, [str(n.target) for n in names]
    assert len([k for k in params if k.startswith("lm_head")]) == 1


class _Attn(torch.nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.h, self.d = heads, dim // heads
        self.q, self.k, self.v, self.o = (torch.nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        B, T, _ = x.shape

        def split(t):
            return t.view(B, T, self.h, self.d).transpose(1, 2)

        y = torch.nn.functional.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.o(y.transpose(1, 2).reshape(B, T, -1))


def test_attention_unequal_heads():
    """Heads zero different qk dims: the kept set is heads × union of needed dims (exact)."""
    torch.manual_seed(0)
    m = _Attn().eval()
    with torch.no_grad():
        # head 0 loses q dims {0, 1}, head 1 loses {1}, heads 2 and 3 lose {1, 2} (k CONST there)
        for h, dims in {0: [0, 1], 1: [1], 2: [1, 2], 3: [1, 2]}.items():
            rows = [h * 8 + d for d in dims]
            if h < 2:
                m.q.weight[rows] = 0
                m.q.bias[rows] = 0
            else:
                m.k.weight[rows] = 0
        m.o.weight[:, 8:16] = 0  # head 1 unused
    x = torch.randn(2, 6, 32)
    r = fxminimize.minimize(m, (x,))
    compare(m, r.module, (torch.randn(5, 6, 32),))
    # dim 1 is removable in every kept head (0, 2, 3); dim 0 only in head 0 and dim 2 only in
    # heads 2, 3: the union keeps them, so 3 heads × 7 dims
    sd = r.module.state_dict()
    assert tuple(sd["q.weight"].shape) == (21, 32)
    assert tuple(sd["k.weight"].shape) == (21, 32)
    assert tuple(sd["v.weight"].shape) == (24, 32)
    assert tuple(sd["o.weight"].shape) == (32, 24)


def test_attention_dropout_in_training_is_a_barrier():
    torch.manual_seed(0)

    class Drop(_Attn):
        def forward(self, x):
            B, T, _ = x.shape
            s = lambda t: t.view(B, T, self.h, self.d).transpose(1, 2)  # noqa: E731
            y = torch.nn.functional.scaled_dot_product_attention(s(self.q(x)), s(self.k(x)), s(self.v(x)),
                                                                 dropout_p=0.5)
            return self.o(y.transpose(1, 2).reshape(B, T, -1))

    m = Drop().eval()
    with torch.no_grad():
        m.o.weight[:, 8:16] = 0
    plan = fxminimize.analyze(fxminimize.capture.capture(m, (torch.randn(2, 6, 32),)).gm)
    reasons = [b.reason for b in plan.barriers if "scaled_dot_product_attention" in b.op]
    assert reasons and "attention dropout" in reasons[0]


class _HandWritten(_Attn):
    """softmax(q kᵀ / √d + mask) v written out, as many research models do."""

    def forward(self, x):
        B, T, _ = x.shape
        s = lambda t: t.view(B, T, self.h, self.d).transpose(1, 2)  # noqa: E731
        mask = torch.triu(torch.full((T, T), float("-inf")), 1)
        a = (s(self.q(x)) @ s(self.k(x)).transpose(-2, -1)) / self.d ** 0.5 + mask
        y = a.softmax(-1) @ s(self.v(x))
        return self.o(y.transpose(1, 2).reshape(B, T, -1))


def test_hand_written_attention():
    torch.manual_seed(0)
    m = _HandWritten().eval()
    with torch.no_grad():
        m.o.weight[:, 16:24] = 0                      # head 2 unused
        m.q.weight[_heads_rows([3])] = 0              # q dim 3 ZERO in every head
        m.q.bias[_heads_rows([3])] = 0
        m.v.weight[_heads_rows([0])] = 0              # v dim 0 CONST(bias): folded into o's bias
    x = torch.randn(2, 6, 32)
    r = fxminimize.minimize(m, (x,))
    compare(m, r.module, (torch.randn(3, 6, 32),))
    sd = r.module.state_dict()
    assert tuple(sd["q.weight"].shape) == (3 * 7, 32)
    assert tuple(sd["k.weight"].shape) == (3 * 7, 32)
    assert tuple(sd["v.weight"].shape) == (3 * 7, 32)
    assert tuple(sd["o.weight"].shape) == (32, 3 * 7)


@pytest.mark.parametrize("batch_first", [True, False])
def test_nn_multihead_attention(batch_first):
    """nn.MultiheadAttention is split into q/k/v projections (same weights) and minimized."""
    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(32, 4, batch_first=batch_first)
            self.fc = torch.nn.Linear(32, 10)

        def forward(self, x):
            return self.fc(self.attn(x, x, x, need_weights=False)[0])

    m = Block().eval()
    with torch.no_grad():
        m.attn.out_proj.weight[:, 0:8] = 0                          # head 0 unused
        m.attn.in_proj_weight[_heads_rows([4])] = 0                 # q dim 4 ZERO
        m.attn.in_proj_bias[_heads_rows([4])] = 0
    x = torch.randn(2, 6, 32) if batch_first else torch.randn(6, 2, 32)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    if not batch_first:  # the batch is dim 1: keep it static
        r = fxminimize.minimize(m, (x,), dynamic_batch=False)
        compare(m, r.module, (torch.randn(6, 2, 32),))
    else:
        r = fxminimize.minimize(m, (x,))
        compare(m, r.module, (torch.randn(3, 6, 32),))
    sd = r.module.state_dict()
    assert tuple(sd["attn.q_proj.weight"].shape) == (3 * 7, 32)
    assert tuple(sd["attn.v_proj.weight"].shape) == (3 * 8, 32)
    assert tuple(sd["attn.out_proj.weight"].shape) == (32, 24)
    assert any("MultiheadAttention" in n for n in r.report.notes)
    assert type(m.attn) is torch.nn.MultiheadAttention  # the user's model is untouched
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items())


class _GQACross(torch.nn.Module):
    """Cross-attention with sdpa(enable_gqa=True): 4 query heads, 2 kv heads, keys from y."""

    def __init__(self):
        super().__init__()
        self.q, self.o = torch.nn.Linear(32, 32), torch.nn.Linear(32, 32)
        self.k, self.v = torch.nn.Linear(24, 16), torch.nn.Linear(24, 16)

    def forward(self, x, y):
        B, T, _ = x.shape
        S = y.shape[1]
        q = self.q(x).view(B, T, 4, 8).transpose(1, 2)
        k = self.k(y).view(B, S, 2, 8).transpose(1, 2)
        v = self.v(y).view(B, S, 2, 8).transpose(1, 2)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        return self.o(a.transpose(1, 2).reshape(B, T, 32))


def test_gqa_cross_attention_with_enable_gqa():
    torch.manual_seed(0)
    m = _GQACross().eval()
    with torch.no_grad():
        m.o.weight[:, 0:16] = 0                      # query heads 0, 1 = kv group 0 unused
        m.k.weight[[5, 13]] = 0                      # k dim 5 CONST in both groups
    x, y = torch.randn(2, 5, 32), torch.randn(2, 7, 24)
    r = fxminimize.minimize(m, (x, y))
    compare(m, r.module, (torch.randn(3, 5, 32), torch.randn(3, 7, 24)))
    sd = r.module.state_dict()
    assert tuple(sd["q.weight"].shape) == (2 * 7, 32)
    assert tuple(sd["k.weight"].shape) == (1 * 7, 24)
    assert tuple(sd["v.weight"].shape) == (1 * 8, 24)
    assert tuple(sd["o.weight"].shape) == (32, 16)
