"""Drawing the dead structure of a case spec (``spec["dead"]``): which rows, columns, heads,
stream channels, norm entries... are zeroed, each with the reason (see
:mod:`fxminimize.testing.fuzz` for the list)."""
from __future__ import annotations

from typing import List

from .fuzz_blocks_norm import EXTRA, extra_dead

def _segments_and_dead(ch, spec, model) -> List[dict]:
    """Draw dead structure. Returns a list of zeroing ops."""
    dead: List[dict] = []

    def op(p, dim, idx, why, expect=False):
        idx = sorted(set(int(i) for i in idx))
        if idx:
            d = {"p": p, "dim": dim, "idx": idx, "why": why}
            if expect:
                d["expect"] = True
            dead.append(d)

    params = dict(model.named_parameters())

    def rows(p, n=None, lo=1, hi=None):
        n = params[p].shape[0] if n is None else n
        return ch.subset(n, lo, hi if hi is not None else max(1, n - 1))

    # residual-stream segments: list of writers (param, dim, offset, size, kind)
    segments: List[dict] = []
    fam = spec["family"]
    st = spec["stem"]
    if st.get("tokens"):
        cur = {"c": st["c"], "writers": [("emb.weight", 1, 0, st["c"], "w")]}
    else:
        cur = {"c": st["c"], "writers": []}
    segments.append(cur)

    def new_seg(c, writers):
        nonlocal cur
        cur = {"c": c, "writers": writers}
        segments.append(cur)

    intensity = ch.choice([0.2, 0.4, 0.7])
    for i, b in enumerate(spec["blocks"]):
        P = f"b{i}."
        t, c = b["type"], b["c_in"]
        if t in EXTRA:
            wr = extra_dead(ch, b, P, c, op, rows, intensity)
            if isinstance(wr, tuple):
                new_seg(b["c_out"], wr[1])
            else:
                cur["writers"] += wr
        elif t == "lin":
            w = P + "fc.weight"
            if ch.p(intensity):
                r = rows(w)
                op(w, 0, r, "lin: zero rows")
                if b["bias"] and ch.p(0.6):
                    op(P + "fc.bias", 0, r, "lin: zero bias of zero rows")
            if ch.p(intensity / 2):
                op(w, 1, rows(w, c), "lin: zero columns")
            if b["bias"] and ch.p(intensity / 3):
                op(P + "fc.bias", 0, rows(w), "lin: zero bias entries")
            wr = [(w, 0, 0, b["out"], "w")] + ([(P + "fc.bias", 0, 0, b["out"], "b")] if b["bias"] else [])
            new_seg(b["out"], wr if b["act"] in ("relu", "gelu", "silu", "none") else [])
        elif t == "mlp":
            h = b["hidden"]
            if ch.p(intensity):
                r = rows(P + "fc1.weight")
                zb = (not b["bias"]) or ch.p(0.7)
                op(P + "fc1.weight", 0, r, "mlp: hidden units (fc1 rows)", expect=True)
                if b["bias"] and zb:
                    op(P + "fc1.bias", 0, r, "mlp: hidden units (fc1 bias)")
            if ch.p(intensity / 2):
                op(P + "fc2.weight", 1, rows(P + "fc2.weight", h), "mlp: hidden units unused (fc2 cols)", expect=True)
            if ch.p(intensity / 3):
                op(P + "fc1.weight", 1, rows(P + "fc1.weight", c), "mlp: fc1 input columns")
            if b["ls"] and ch.p(intensity / 2):
                op(P + "ls", 0, rows(P + "ls"), "mlp: layer-scale entries")
            if b["ln"] and ch.p(intensity / 2):
                r = rows(P + "ln.weight")
                op(P + "ln.weight", 0, r, "mlp: LayerNorm gamma entries")
                if ch.p(0.5):
                    op(P + "ln.bias", 0, r, "mlp: LayerNorm beta entries")
            if b["ls"] and ch.p(0.5):
                cur["writers"].append((P + "ls", 0, 0, c, "w"))
            else:
                cur["writers"] += [(P + "fc2.weight", 0, 0, c, "w")] + (
                    [(P + "fc2.bias", 0, 0, c, "b")] if b["bias"] else [])
        elif t == "ln":
            if ch.p(intensity / 2):
                r = rows(P + "ln.weight")
                op(P + "ln.weight", 0, r, "ln: gamma entries")
                if ch.p(0.5):
                    op(P + "ln.bias", 0, r, "ln: beta entries")
            new_seg(c, [(P + "ln.weight", 0, 0, c, "w"), (P + "ln.bias", 0, 0, c, "b")])
        elif t == "act":
            pass
        elif t in ("cat", "dense"):
            w = P + "fc.weight"
            if ch.p(intensity):
                r = rows(w, lo=1, hi=b["out"])
                op(w, 0, r, f"{t}: zero rows of the concatenated part")
                if ch.p(0.6):
                    op(P + "fc.bias", 0, r, f"{t}: zero bias of zero rows")
            old = [wr for wr in cur["writers"]]
            new_seg(b["c_out"], old + [(w, 0, c, b["out"], "w"), (P + "fc.bias", 0, c, b["out"], "b")])
        elif t == "split":
            if b["mode"] == "lin":
                w = P + "fc.weight"
                if ch.p(intensity):
                    r = rows(w, lo=1, hi=b["out"])
                    op(w, 0, r, "split: zero rows of the Linear on the first part")
                    if ch.p(0.6):
                        op(P + "fc.bias", 0, r, "split: zero bias")
            new_seg(b["c_out"], [])
        elif t in ("gate", "se"):
            if ch.p(intensity):
                r = rows(P + "fc1.weight")
                op(P + "fc1.weight", 0, r, f"{t}: hidden units (fc1 rows)", expect=True)
                op(P + "fc1.bias", 0, r, f"{t}: hidden units (fc1 bias)")
            new_seg(c, [])
        elif t == "attn":
            H, D = b["heads"], b["dh"]
            hd = H * D
            if b["impl"] == "mha":
                qw = kw = vw = P + "mha.in_proj_weight"
                qb = kb = vb = P + "mha.in_proj_bias"
                qo, ko, vo = 0, hd, 2 * hd
                ow, ob = P + "mha.out_proj.weight", P + "mha.out_proj.bias"
            else:
                qw, kw, vw, ow = P + "q.weight", P + "k.weight", P + "v.weight", P + "o.weight"
                qb, kb, vb, ob = P + "q.bias", P + "k.bias", P + "v.bias", P + "o.bias"
                qo = ko = vo = 0

            def head_dims(same):
                if same:
                    ds = ch.subset(D, 1, max(1, D - 1))
                    return [h * D + d for h in range(H) for d in ds]
                return [h * D + d for h in range(H) for d in ch.subset(D, 0, D)]

            if H > 1 and ch.p(intensity):
                heads = ch.subset(H, 1, H - 1)
                op(ow, 1, [h * D + d for h in heads for d in range(D)], "attn: whole heads (out-proj columns)",
                   expect=True)
            if ch.p(intensity / 2):
                r = head_dims(ch.p(0.6))
                op(qw, 0, [qo + i for i in r], "attn: q dims zero")
                if b["bias"]:
                    op(qb, 0, [qo + i for i in r], "attn: q bias zero")
            if ch.p(intensity / 2):
                r = head_dims(ch.p(0.6))
                op(kw, 0, [ko + i for i in r], "attn: k dims zero weight (bias kept: constant)")
                if b["bias"] and ch.p(0.3):
                    op(kb, 0, [ko + i for i in r], "attn: k bias zero")
            if ch.p(intensity / 2):
                r = head_dims(ch.p(0.6))
                op(vw, 0, [vo + i for i in r], "attn: v dims zero weight")
                if b["bias"] and ch.p(0.5):
                    op(vb, 0, [vo + i for i in r], "attn: v bias zero")
            if ch.p(intensity / 4):
                op(qw, 1, rows(qw, c), "attn: q input columns")
            if b["ls"] and ch.p(intensity / 2):
                op(P + "ls", 0, rows(P + "ls"), "attn: layer-scale entries")
            if b["ln"] and ch.p(intensity / 2):
                r = rows(P + "ln.weight")
                op(P + "ln.weight", 0, r, "attn: LayerNorm gamma entries")
                if ch.p(0.5):
                    op(P + "ln.bias", 0, r, "attn: LayerNorm beta entries")
            if b["ls"] and ch.p(0.5):
                cur["writers"].append((P + "ls", 0, 0, c, "w"))
            else:
                cur["writers"] += [(ow, 0, 0, c, "w")] + ([(ob, 0, 0, c, "b")] if b["bias"] else [])
        elif t == "tokpool":
            pass
        elif t == "conv":
            w = P + "conv.weight"
            out = b["out"]
            g = {"1": 1, "dw": c}.get(str(b["groups"]), b["groups"])
            if ch.p(intensity):
                if g > 1 and ch.p(0.5):
                    per = out // g
                    gs = ch.subset(g, 1, max(1, g - 1))
                    r = [gi * per + j for gi in gs for j in range(per)]
                    op(w, 0, r, "conv: whole groups (filters)")
                else:
                    r = rows(w)
                    op(w, 0, r, "conv: zero filters")
                if b["bias"] and ch.p(0.6):
                    op(P + "conv.bias", 0, r, "conv: zero bias of zero filters")
            if ch.p(intensity / 3) and c // g > 1:
                op(w, 1, rows(w, c // g), "conv: zero input channels (per group)")
            if b["bn"] and ch.p(intensity / 2):
                r = rows(P + "bn.weight")
                op(P + "bn.weight", 0, r, "conv: BatchNorm gamma zero")
                if ch.p(0.5):
                    op(P + "bn.bias", 0, r, "conv: BatchNorm beta zero")
            if b["bn"]:
                wr = [(P + "bn.weight", 0, 0, out, "w"), (P + "bn.bias", 0, 0, out, "b")]
            else:
                wr = [(w, 0, 0, out, "w")] + ([(P + "conv.bias", 0, 0, out, "b")] if b["bias"] else [])
            new_seg(out, wr)
        elif t == "resconv":
            if ch.p(intensity):
                r = rows(P + "conv1.weight")
                op(P + "conv1.weight", 0, r, "resconv: conv1 filters")
                if not b["bn"] and ch.p(0.6):
                    op(P + "conv1.bias", 0, r, "resconv: conv1 bias")
            if b["bn"] and ch.p(intensity / 2):
                r = rows(P + "bn1.weight")
                op(P + "bn1.weight", 0, r, "resconv: bn1 gamma")
                op(P + "bn1.bias", 0, r, "resconv: bn1 beta")
            if b["bn"]:
                cur["writers"] += [(P + "bn2.weight", 0, 0, c, "w"), (P + "bn2.bias", 0, 0, c, "b")]
            else:
                cur["writers"] += [(P + "conv2.weight", 0, 0, c, "w"), (P + "conv2.bias", 0, 0, c, "b")]
        elif t == "convnext":
            if ch.p(intensity):
                r = rows(P + "fc1.weight")
                op(P + "fc1.weight", 0, r, "convnext: hidden units (fc1 rows)", expect=True)
                op(P + "fc1.bias", 0, r, "convnext: hidden units (fc1 bias)")
            if ch.p(intensity / 2):
                r = rows(P + "ln.weight")
                op(P + "ln.weight", 0, r, "convnext: LayerNorm gamma")
                if ch.p(0.5):
                    op(P + "ln.bias", 0, r, "convnext: LayerNorm beta")
            if ch.p(intensity / 3):
                op(P + "dw.weight", 0, rows(P + "dw.weight"), "convnext: depthwise filters")
            if b["ls"] and ch.p(intensity / 2):
                op(P + "gamma", 0, rows(P + "gamma"), "convnext: layer-scale entries")
            if b["ls"] and ch.p(0.5):
                cur["writers"].append((P + "gamma", 0, 0, c, "w"))
            else:
                cur["writers"] += [(P + "fc2.weight", 0, 0, c, "w"), (P + "fc2.bias", 0, 0, c, "b")]
        elif t == "cfln":
            if ch.p(intensity / 2):
                r = rows(P + "ln.weight")
                op(P + "ln.weight", 0, r, "cfln: gamma entries")
                if ch.p(0.5):
                    op(P + "ln.bias", 0, r, "cfln: beta entries")
            new_seg(c, [(P + "ln.weight", 0, 0, c, "w"), (P + "ln.bias", 0, 0, c, "b")])
        elif t == "pool":
            pass
        elif t == "head":
            if b["mode"] == "flatten":
                new_seg(b["c_out"], [])
    # output layer
    if spec["out"]["n"]:
        w = "out.weight"
        if ch.p(intensity / 2):
            op(w, 1, rows(w, spec["out"]["c_in"]), "out: zero columns")
        if ch.p(intensity / 3) and spec["out"]["n"] > 1:
            op(w, 0, rows(w), "out: zero rows")
    # residual-stream channels zeroed in every writer
    for seg in segments:
        ws = [w for w in seg["writers"] if w[0] in params]
        if not ws or seg["c"] < 2 or not ch.p(intensity):
            continue
        S = ch.subset(seg["c"], 1, max(1, seg["c"] - 1))
        zero_bias = ch.p(0.7)
        for (p, dim, off, size, kind) in ws:
            if kind == "b" and not zero_bias:
                continue
            op(p, dim, [s - off for s in S if off <= s < off + size], f"stream channels {S} zeroed in every writer")
    return dead
