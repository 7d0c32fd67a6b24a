"""Attention, part 1: matching the region around sdpa (the rule and rewrite: :mod:`.attention`).

Attention: exact removal of heads, q/k dims and v dims around ``scaled_dot_product_attention``.

A *region* is everything between the three projection outputs q_src, k_src, v_src (tensors
(B, T, H·D) with the channel on the last dim, e.g. Linear outputs) and o_in, the (B, T, Hq·Dv)
tensor the output projection reads: the head split (view), transposes, RoPE, GQA's repeat_kv
and the sdpa call itself. The region is analysed as one op; its interior has no channel spaces.

Mathematics, per query head h (kv group g = g(h)), qk dim d, v dim e:

* scores s_ij = scale · Σ_d q_hd(i) k_gd(j). If k_gd is CONST (its projection row is zero),
  q_hd(i)·k_gd adds the same amount to every score of query i: softmax ignores it. If q_hd is
  ZERO the term is 0. Either way dim d of head h can go (d is removed from q and k together).
  With RoPE, dims d and d + D/2 are rotated together by a position-dependent angle, so the pair
  goes only when q or k is ZERO on both (a constant k is no longer constant after rotation).
  The softmax scale stays the original 1/√D (passed explicitly as ``scale=``).
* out_he = Σ_j p_ij v_ge(j). If v_ge is CONST(c), out_he = c (each softmax row sums to 1):
  o_in element (h, e) is CONST(c) and the output projection folds it into its bias.
* A head goes when nothing downstream reads it; a kv group goes with all its query heads.

Representation of what is kept (the choice for heads whose dims differ): a *rectangle* —
kept heads × one shared set S of qk dims and one shared set E of v dims, S and E being the
unions over kept heads of the dims each needs. Every head then has the same dims, so the
rewritten graph is plain sdpa on (B, H', T, |S|) with the original op sequence (RoPE slices,
cos/sin gathered once by S, repeat_kv); dims kept for one head but unneeded by another still
hold their original values, so the result is exact. The price is size: a dim needed by any
head is kept in all heads. (Padding each head to the largest kept count with zero rows would
be smaller when heads differ a lot, at the cost of per-head cos/sin gathers; not done yet.)
For GQA, the query heads of a kv group are kept or removed together, so the repeat factor
stays the same.

Anything that does not fit this pattern (other users of interior tensors, dropout in training,
unknown interior ops) leaves the region unmatched: sdpa is then a barrier.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.fx as fx

from fxminimize.ir import bind, shape, static_int

aten = torch.ops.aten

SDPA = aten.scaled_dot_product_attention.default
_PASS = {aten.clone.default, aten.contiguous.default, aten.alias.default, aten.to.dtype,
         aten._to_copy.default, aten.to.dtype_layout, aten.detach.default}
_VIEW = {aten.view.default, aten.reshape.default, aten._unsafe_view.default}
_BIG = 2 ** 62


@dataclass(frozen=True)
class Region:
    """One matched attention region (node names; the rewrite looks them up). Immutable."""

    sdpa: str
    o_in: str
    src: tuple  # ((stream "q"/"k"/"v", source node name), ...)
    Hq: int
    Hkv: int
    D: int
    Dv: int
    rope: bool
    scale: Optional[float]
    views: tuple = ()     # (node, ((out dim, "H"|"G"|"GR"|"D"|"V"|"HV"), ...))
    slices: tuple = ()    # (node, "lo" | "hi")
    posops: tuple = ()    # (mul node, operand index, operand dim of D)

    def source(self, stream: str) -> str:
        return dict(self.src)[stream]

    @property
    def rep(self) -> int:
        return self.Hq // self.Hkv


class _Form:
    """Where the head and dim axes of an interior tensor are."""

    def __init__(self, stream, hdim, ddim, heads, half=None):
        self.stream, self.hdim, self.ddim, self.heads = stream, hdim, ddim, heads
        self.half = half


class _NoMatch(Exception):
    pass


def _noop_slice(n) -> bool:
    """x[a:b] that keeps the whole dim (start 0, end past the size, step 1)."""
    if not isinstance(n, fx.Node) or n.target is not aten.slice.Tensor:
        return False
    p = bind(n)
    x = n.args[0]
    d = int(p["dim"]) % len(shape(x))
    size = static_int(shape(x)[d])
    end = p["end"]
    return (p["start"] in (None, 0) and p["step"] == 1 and isinstance(end, int)
            and (end >= _BIG or (size is not None and end >= size)))


def _dname(stream: str) -> str:
    return "V" if stream == "v" else "D"


def _int(v) -> int:
    r = static_int(v)
    if r is None:
        raise _NoMatch("symbolic head size")
    return r


class _Matcher:
    def __init__(self, cx, sdpa: fx.Node):
        self.cx, self.sdpa = cx, sdpa
        self.forms: dict = {}
        self.claimed: list = []
        self.views, self.slices, self.posops = [], [], []
        self.src: dict = {}
        self.size: dict = {}  # stream -> (H, D)
        self.rope = False

    def claim(self, n):
        if n not in self.claimed:
            self.claimed.append(n)

    def form(self, n: fx.Node, stream: str) -> _Form:
        if n in self.forms:
            return self.forms[n]
        f = self._form(n, stream)
        self.forms[n] = f
        self.claim(n)
        return f

    def _form(self, n, stream):
        if not isinstance(n, fx.Node) or n.op != "call_function":
            raise _NoMatch(f"{stream} is not computed inside the graph")
        t = n.target
        x = n.args[0] if n.args else None
        if t in _VIEW and isinstance(x, fx.Node) and x not in self.forms and len(shape(x)) == 3 \
                and self.cx.axis_of(x) == 2 and len(shape(n)) == 4:
            N = _int(shape(x)[2])
            H, D = _int(shape(n)[2]), _int(shape(n)[3])
            if H * D != N or stream in self.src:
                raise _NoMatch("head split does not match the projection")
            self.src[stream] = x
            self.size[stream] = (H, D)
            role = "H" if stream == "q" else "G"
            self.views.append((n, {2: role, 3: _dname(stream)}))
            return _Form(stream, 2, 3, role)
        if t in (aten.transpose.int, aten.permute.default):
            f = self.form(x, stream)
            nd = len(shape(n))
            if t is aten.permute.default:
                perm = [int(d) % nd for d in n.args[1]]
            else:
                perm = list(range(nd))
                i, j = int(n.args[1]) % nd, int(n.args[2]) % nd
                perm[i], perm[j] = perm[j], perm[i]
            return _Form(f.stream, perm.index(f.hdim), perm.index(f.ddim), f.heads, f.half)
        if t in _PASS or t is aten.neg.default or (t is aten.dropout.default and not bind(n).get("train")):
            f = self.form(x, stream)
            return f
        if _noop_slice(n):
            return self.form(x, stream)
        if t is aten.slice.Tensor:
            f = self.form(x, stream)
            p = bind(n)
            D = _int(shape(x)[f.ddim])
            if int(p["dim"]) % len(shape(x)) != f.ddim or f.half or p["step"] != 1:
                raise _NoMatch(f"slice {n.name} of the head dim other than RoPE halves")
            s, e = int(p["start"] or 0), int(p["end"] if p["end"] is not None else _BIG)
            if (s, min(e, D)) == (0, D // 2):
                half = "lo"
            elif s == D // 2 and e >= D:
                half = "hi"
            else:
                raise _NoMatch(f"slice {n.name} [{s}:{e}] of the head dim other than RoPE halves")
            self.slices.append((n, half))
            return _Form(f.stream, f.hdim, f.ddim, f.heads, half)
        if t is aten.cat.default:
            parts = list(n.args[0])
            dim = int(n.args[1]) if len(n.args) > 1 else 0
            fs = [self.form(p, stream) for p in parts]
            if len(fs) != 2 or dim % len(shape(n)) != fs[0].ddim or [f.half for f in fs] != ["hi", "lo"]:
                raise _NoMatch("concat inside attention other than RoPE's rotate_half")
            self.rope = True
            return _Form(fs[0].stream, fs[0].hdim, fs[0].ddim, fs[0].heads)
        if t in (aten.mul.Tensor, aten.add.Tensor):
            a0, a1 = n.args[0], n.args[1]
            inner = [i for i, v in enumerate((a0, a1)) if isinstance(v, fx.Node) and self._is_interior(v, stream)]
            if t is aten.add.Tensor:
                if len(inner) != 2:
                    raise _NoMatch("add inside attention with an outside operand")
                f0, f1 = self.form(a0, stream), self.form(a1, stream)
                if (f0.hdim, f0.ddim, f0.half) != (f1.hdim, f1.ddim, f1.half) or f0.half:
                    raise _NoMatch("add of unlike head layouts")
                return _Form(f0.stream, f0.hdim, f0.ddim, f0.heads)
            if len(inner) != 1:
                raise _NoMatch("product of two attention tensors outside sdpa")
            i = inner[0]
            f = self.form(n.args[i], stream)
            other = n.args[1 - i]
            if isinstance(other, fx.Node):
                so = shape(other)
                k_h = f.hdim - (len(shape(n)) - len(so))
                k_d = f.ddim - (len(shape(n)) - len(so))
                if (k_h >= 0 and _int(so[k_h]) != 1) or other in self.forms:
                    raise _NoMatch("a per-head operand inside attention")
                if k_d >= 0 and _int(so[k_d]) != 1:
                    if f.half:
                        raise _NoMatch("per-dim operand on half a head")
                    self.posops.append((n, 1 - i, k_d))
            return f
        if t in _VIEW and isinstance(x, fx.Node) and getattr(x, "target", None) is aten.expand.default:
            # repeat_kv: x[:, :, None].expand(B, G, rep, T, D).reshape(B, G·rep, T, D)
            un = self.skip_noop(x.args[0])
            if getattr(un, "target", None) is not aten.unsqueeze.default or int(un.args[1]) != 2:
                raise _NoMatch("expand inside attention other than repeat_kv")
            f = self.form(un.args[0], stream)
            if (f.hdim, f.ddim, len(shape(un.args[0]))) != (1, 3, 4):
                raise _NoMatch("repeat_kv on an unexpected layout")
            self.claim(un)
            self.claim(x)
            self.views.append((x, {1: "G", 4: _dname(stream)}))
            self.views.append((n, {1: "GR", 3: _dname(stream)}))
            return _Form(f.stream, 1, 3, "GR")
        if t in _VIEW and isinstance(x, fx.Node) and tuple(shape(x)) == tuple(shape(n)):
            f = self.form(x, stream)
            self.views.append((n, {f.hdim: f.heads, f.ddim: _dname(stream)}))
            return f
        raise _NoMatch(f"op {getattr(t, '__name__', t)} inside attention")

    def skip_noop(self, n):
        """Claim full-range slices (``x[:, :, None]`` exports them) and return what they read."""
        while _noop_slice(n):
            self.claim(n)
            n = n.args[0]
        return n

    def _is_interior(self, v, stream) -> bool:
        """True when v derives from this stream's head split (cos/sin and masks do not)."""
        seen, todo = set(), [v]
        while todo:
            m = todo.pop()
            if m in seen or not isinstance(m, fx.Node):
                continue
            seen.add(m)
            if m in self.forms:
                return True
            if m.op != "call_function" or (self.cx.axis_of(m) == 2 and len(shape(m)) == 3):
                continue
            if m.target in _VIEW and m.args and isinstance(m.args[0], fx.Node) \
                    and self.cx.axis_of(m.args[0]) == 2 and len(shape(m)) == 4:
                return True
            todo.extend(x for x in m.args if isinstance(x, fx.Node))
            todo.extend(x for aa in m.args if isinstance(aa, (list, tuple)) for x in aa if isinstance(x, fx.Node))
        return False

    def sdpa_args(self) -> dict:
        """query/key/value/enable_gqa of an sdpa call, or of hand-written attention
        ``softmax(q @ kᵀ ∘ c [+ mask]) @ v`` (∘ a multiplication or division by a number; the
        scale is then part of the graph and unaffected by the head dim)."""
        n = self.sdpa
        if n.target is SDPA:
            p = bind(n)
            if p["dropout_p"]:
                raise _NoMatch("attention dropout")
            return {"query": p["query"], "key": p["key"], "value": p["value"], "kT": False,
                    "enable_gqa": p["enable_gqa"], "scale": p["scale"]}
        probs, v = n.args[0], n.args[1]
        if probs.target not in (aten.softmax.int, aten._softmax.default) or int(probs.args[1]) % 4 != 3:
            raise _NoMatch("matmul is not softmax(...) @ v")
        self.claim(probs)
        s = probs.args[0]
        if s.target is aten.add.Tensor:
            inner = [x for x in s.args if isinstance(x, fx.Node) and x.target in (aten.div.Tensor, aten.mul.Tensor,
                                                                                  aten.matmul.default)]
            if len(inner) != 1:
                raise _NoMatch("attention scores with an unknown addend")
            self.claim(s)
            s = inner[0]
        if s.target in (aten.div.Tensor, aten.mul.Tensor):
            if not isinstance(s.args[1], (int, float)):
                raise _NoMatch("attention scores scaled by a tensor")
            self.claim(s)
            s = s.args[0]
        if s.target is not aten.matmul.default:
            raise _NoMatch("attention scores are not q @ kᵀ")
        self.claim(s)
        return {"query": s.args[0], "key": s.args[1], "value": v, "kT": True, "enable_gqa": False, "scale": None}

    def run(self) -> Region:
        p = self.sdpa_args()
        fq = self.form(p["query"], "q")
        fk = self.form(p["key"], "k")
        fv = self.form(p["value"], "v")
        for f, want in ((fq, 3), (fk, 2 if p["kT"] else 3), (fv, 3)):
            if (f.hdim, f.ddim, f.half) != (1, want, None):
                raise _NoMatch("attention inputs are not (B, H, T, D)")
        if set(self.src) != {"q", "k", "v"}:
            raise _NoMatch("projection not found")
        (Hq, D), (Hkv, Dk), (Hv, Dv) = self.size["q"], self.size["k"], self.size["v"]
        if Dk != D or Hv != Hkv or Hq % Hkv:
            raise _NoMatch("inconsistent head sizes")
        if Hkv != Hq and not (fk.heads == "GR" and fv.heads == "GR") and not p["enable_gqa"]:
            raise _NoMatch("GQA without repeat_kv or enable_gqa")
        if self.rope and D % 2:
            raise _NoMatch("RoPE with an odd head dim")
        # the output side: sdpa -> [same-shape reshape] -> transpose(1, 2) -> reshape (B, T, Hq·Dv)
        self.claim(self.sdpa)
        n = self.sdpa
        while True:
            if len(n.users) != 1:
                raise _NoMatch("attention output read more than once")
            u = next(iter(n.users))
            if u.target in _VIEW and tuple(shape(u)) == tuple(shape(n)) and len(shape(u)) == 4:
                self.views.append((u, {1: "H", 3: "V"}))
            elif u.target is aten.transpose.int and sorted(int(d) % 4 for d in u.args[1:3]) == [1, 2]:
                pass
            elif u.target in _VIEW and len(shape(u)) == 3 and _int(shape(u)[2]) == Hq * Dv:
                o_in = self.o_in = u
                self.views.append((u, {2: "HV"}))
                break
            else:
                raise _NoMatch("attention output is not merged back into (B, T, H·D)")
            self.claim(u)
            n = u
        for m in self.claimed:
            if any(u not in self.claimed and u is not o_in for u in m.users):
                raise _NoMatch(f"{m.name} inside attention is read elsewhere")
        scale = p["scale"] if p["scale"] is not None else 1.0 / math.sqrt(D)
        if self.sdpa.target is not SDPA:
            scale = None  # hand-written: the graph holds its own scale
        return Region(self.sdpa.name, o_in.name, tuple(sorted((k, v.name) for k, v in self.src.items())),
                      Hq, Hkv, D, Dv, self.rope, scale,
                      tuple((m.name, tuple(sorted(dims.items()))) for m, dims in self.views),
                      tuple((m.name, h) for m, h in self.slices),
                      tuple((m.name, i, k) for m, i, k in self.posops))


def is_candidate(n: fx.Node) -> bool:
    """sdpa, or the ``probs @ v`` matmul of hand-written attention."""
    if n.target is SDPA:
        return True
    return (n.target is aten.matmul.default and isinstance(n.args[0], fx.Node)
            and n.args[0].target in (aten.softmax.int, aten._softmax.default) and len(shape(n)) == 4)


def match(cx, sdpa: fx.Node) -> Optional[tuple[Region, list, fx.Node]]:
    """Match the region around ``sdpa``: (region, claimed nodes, o_in) or None (with a hint)."""
    m = _Matcher(cx, sdpa)
    try:
        region = m.run()
    except _NoMatch as exc:
        cx.hint(sdpa, f"attention not matched: {exc}")
        return None
    return region, list(m.claimed), m.o_in


