"""Drawing case specs: the architecture (:func:`_draw_blocks`) and, through
:mod:`.fuzz_dead`, its dead structure. :func:`draw_spec` is the one code path shared by
:func:`random_spec` (plain ``random``) and the hypothesis strategies (:mod:`.fuzz_cases`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from .fuzz_blocks import build_model
from .fuzz_choosers import RandomChooser
from .fuzz_blocks_norm import draw_extra
from .fuzz_dead import _segments_and_dead

# =========================================================================== drawing specs
WIDTHS = (4, 6, 8, 12)


def _draw_blocks(ch, family: str, c: int, hw: int) -> Tuple[List[dict], int]:
    """Draw the block list. Returns (blocks, final channel count); each block has c_in/c_out."""
    blocks: List[dict] = []
    nblocks = ch.int(1, 4)
    state = family  # vec | seq | img
    for _ in range(nblocks):
        b: Dict[str, Any]
        if state == "img":
            t = ch.choice(["conv", "conv", "resconv", "dense", "split", "se", "convnext", "cfln", "pool", "head",
                           "gnblock", "grn", "wstd", "scale1p"])
            if t == "pool" and hw < 4:
                t = "conv"
            if t in ("gnblock", "grn", "wstd", "scale1p"):
                b, c_out, hw = draw_extra(ch, t, c, hw)
                c_out = b["out"] if c_out is None else c_out
            elif t == "conv":
                gk = ch.choice(["1", "1", "dw", "g"])
                k = ch.choice([1, 3, 3])
                pad = ch.choice([0, k // 2]) if k > 1 and hw > 3 else k // 2
                stride = 2 if (hw >= 6 and ch.p(0.15)) else 1
                if gk == "dw":
                    out, groups = c * ch.choice([1, 1, 2]), "dw"
                elif gk == "g":
                    g = ch.choice([d for d in (2, 3, 4) if c % d == 0] or [1])
                    out, groups = g * ch.int(1, 3), g
                else:
                    out, groups = ch.choice(WIDTHS), "1"
                b = dict(type="conv", out=out, k=k, pad=pad, stride=stride, groups=groups,
                         bias=ch.p(0.6), bn=ch.p(0.5), act=ch.choice(["relu", "gelu", "silu", "none"]))
                hw = (hw + 2 * pad - k) // stride + 1
                c_out = out
            elif t == "resconv":
                b = dict(type="resconv", dw=ch.p(0.4), bn=ch.p(0.6), act=ch.choice(["relu", "silu"]))
                c_out = c
            elif t == "dense":
                b = dict(type="dense", img=True, out=ch.choice([2, 4]), k=ch.choice([1, 3]),
                         act=ch.choice(["relu", "none"]))
                c_out = c + b["out"]
            elif t == "split":
                mode = ch.choice(["glu", "add", "lin", "swap"] if c % 2 == 0 else ["lin", "swap"])
                b = dict(type="split", img=True, mode=mode)
                if mode in ("lin", "swap"):
                    b["first"] = ch.int(1, c - 1)
                if mode == "lin":
                    b["out"] = ch.choice([2, 4])
                c_out = {"glu": c // 2, "add": c // 2, "swap": c}.get(mode, c - b.get("first", 0) + b.get("out", 0))
            elif t == "se":
                b = dict(type="se", img=True, hidden=ch.choice([2, 3, 4]))
                c_out = c
            elif t == "convnext":
                b = dict(type="convnext", hidden=c * ch.choice([1, 2]), ls=ch.p(0.6))
                c_out = c
            elif t == "cfln":
                b = dict(type="cfln")
                c_out = c
            elif t == "pool":
                b = dict(type="pool", mode=ch.choice(["max", "avg"]))
                hw //= 2
                c_out = c
            else:  # head
                b = dict(type="head", mode=ch.choice(["mean", "adaptive", "flatten"]))
                c_out = c * hw * hw if b["mode"] == "flatten" else c
                state = "vec"
        else:
            opts = ["lin", "mlp", "mlp", "ln", "cat", "split", "gate", "act", "tied", "scale1p"]
            if state == "seq":
                opts += ["attn", "attn", "attn", "tokpool"]
            t = ch.choice(opts)
            if t in ("tied", "scale1p"):
                b, c_out, _ = draw_extra(ch, t, c, 0)
            elif t == "lin":
                b = dict(type="lin", out=ch.choice(WIDTHS), bias=ch.p(0.7), act=ch.choice(["relu", "gelu", "silu", "none"]))
                c_out = b["out"]
            elif t == "mlp":
                b = dict(type="mlp", hidden=ch.choice([4, 8, 12]), bias=ch.p(0.8), ln=ch.p(0.4), ls=ch.p(0.4),
                         act=ch.choice(["relu", "gelu", "silu"]))
                c_out = c
            elif t == "ln":
                b = dict(type="ln")
                c_out = c
            elif t == "act":
                b = dict(type="act", act=ch.choice(["relu", "gelu", "silu"]))
                c_out = c
            elif t == "cat":
                b = dict(type="cat", out=ch.choice([2, 4]), act=ch.choice(["relu", "none"]))
                c_out = c + b["out"]
            elif t == "split":
                mode = ch.choice(["glu", "add", "lin", "swap"] if c % 2 == 0 else ["lin", "swap"])
                b = dict(type="split", mode=mode)
                if mode in ("lin", "swap"):
                    b["first"] = ch.int(1, c - 1)
                if mode == "lin":
                    b["out"] = ch.choice([2, 4])
                c_out = {"glu": c // 2, "add": c // 2, "swap": c}.get(mode, c - b.get("first", 0) + b.get("out", 0))
            elif t == "gate":
                b = dict(type="gate", hidden=ch.choice([2, 3, 4]), seq=state == "seq")
                c_out = c
            elif t == "attn":
                impl = ch.choice(["sdpa", "manual", "mha"])
                if impl == "mha":
                    heads = ch.choice([h for h in (1, 2, 4) if c % h == 0])
                    dh = c // heads
                else:
                    heads, dh = ch.int(1, 3), ch.choice([2, 4])
                b = dict(type="attn", impl=impl, heads=heads, dh=dh, bias=ch.p(0.7), ln=ch.p(0.5), ls=ch.p(0.3),
                         causal=impl == "sdpa" and ch.p(0.3), view_m1=ch.p(0.3))
                c_out = c
            else:  # tokpool
                b = dict(type="tokpool", mode=ch.choice(["mean", "first"]))
                c_out = c
                state = "vec"
        b["c_in"], b["c_out"] = c, c_out
        blocks.append(b)
        c = c_out
        if c < 2 and state != "img":
            break
    return blocks, c, state


def draw_spec(ch) -> dict:
    """Draw one case spec with a chooser (RandomChooser or HypothesisChooser)."""
    family = ch.choice(["vec", "seq", "img"])
    stem: Dict[str, Any] = {"c": ch.choice(WIDTHS)}
    if family == "img":
        stem["hw"] = ch.choice([4, 5, 6])
    if family == "seq":
        stem["t"] = ch.choice([3, 5])
        if ch.p(0.25):
            stem["tokens"] = True
            stem["vocab"] = 11
    blocks, c, state = _draw_blocks(ch, family, stem["c"], stem.get("hw", 0))
    n_out = ch.choice([0, 3, 5, 5]) if state != "img" else ch.choice([0, 0, 3])
    if state == "img" and n_out:
        n_out = 0  # an image state feeds no Linear head
    out = {"n": n_out, "bias": ch.p(0.7), "c_in": c, "aux": bool(n_out) and ch.p(0.1)}
    spec = {"family": family, "stem": stem, "blocks": blocks, "out": out, "wseed": ch.int(0, 2 ** 31 - 1)}
    model = build_model(spec)
    spec["dead"] = _segments_and_dead(ch, spec, model)
    spec["via"] = ch.choice(["zero", "zero", "zero", "masks", "prune"])
    spec["sparsity"] = ch.choice([0.0, 0.0, 0.0, 0.3, 0.7])
    spec["mseed"] = ch.int(0, 2 ** 31 - 1)
    return spec


def random_spec(seed: int) -> dict:
    return draw_spec(RandomChooser(seed))
