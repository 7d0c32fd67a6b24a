"""GroupNorm (eval and train alike: it has no running statistics), channels on dim 1.

Math. C channels in G groups of C/G; for group g (channels c with c // (C/G) = g) over those
channels and every position: μ_g = mean x, σ²_g = mean (x − μ_g)²,
y_c = γ_c (x_c − μ_g)/√(σ²_g + ε) + β_c. PoolFormer uses G = 1 (a LayerNorm over C×H×W).

Values. γ_c = 0 ↦ CONST(β_c) whatever the input. A group whose inputs are all CONST(v_c) (uniform
over positions, so μ_g and σ²_g are those of the v_c with equal weights) has every output CONST:
the op evaluated on one float64 position. Otherwise LIVE.

What is exact to remove (written out in docs/rules.md):
- output c with γ_c = 0 is its own unit (not coupled to input c): it goes when its consumers
  fold β_c (a 1×1 conv, a Linear, a zero-padded conv when β_c = 0);
- input c enters the statistics of its group: while any output of its group is kept, every
  input of the group is required, LIVE or CONST (a CONST input would need per-group
  compensation, which this rule does not do: it keeps it);
- a group none of whose outputs is kept needs none of its inputs: the whole group goes, and its
  producers' rows go if nothing else reads them (γ = β = 0 on a whole group);
- a kept output requires its input (K_out ⊆ K_in).

Rewrite. With A the channels of the alive groups (G' of them, each whole): the input is
gathered to A if it keeps more (a dead group's channels kept for another reader),
``group_norm(x_A, G', γ_A, β_A, ε)``, then gathered to K_out if some scale-zero outputs went
(:func:`~.norm.gather_outputs`).
"""
from __future__ import annotations

import numpy as np
import torch

from fxminimize.ir import bind, static_int
from ..registry import register
from .common import _Channelwise, _f64
from .norm import couple_scaled, gather_outputs, scale_zero_mask

aten = torch.ops.aten


@register(aten.group_norm.default)
class GroupNormRule(_Channelwise):
    kind = "groupnorm"

    def groups(self, cx, n):
        """(G, C/G) when the rule applies, else None (with a hint)."""
        p = bind(n)
        C = static_int(n.args[0].meta["val"].shape[1]) if len(n.args[0].meta["val"].shape) > 1 else None
        G = int(p["num_groups"])
        if C is None or G <= 0 or C % G:
            cx.hint(n, "group_norm with a symbolic or indivisible channel count")
            return None
        for t in (p["weight"], p["bias"]):
            if t is not None and cx.tensor(t) is None:
                cx.hint(n, "group_norm weight or bias is not a constant tensor")
                return None
        return G, C // G

    def out_axis(self, cx, n, ax):
        return 1 if ax == 1 and self.groups(cx, n) is not None else None

    def declare(self, cx, n, inp):
        return 1 if inp is n.args[0] else None

    def couple(self, cx, n):
        couple_scaled(cx, self.src(n), n, scale_zero_mask(cx, bind(n)["weight"], cx.size_of(n)), self.kind)

    def affine(self, cx, n, C):
        p = bind(n)
        w, b = cx.tensor(p["weight"]), cx.tensor(p["bias"])
        return (np.ones(C) if w is None else _f64(w).reshape(-1)), (np.zeros(C) if b is None else _f64(b).reshape(-1))

    def value(self, cx, n):
        G, per = self.groups(cx, n)
        C = G * per
        m, v = cx.const_of(self.src(n))
        w, b = self.affine(cx, n, C)
        whole = np.repeat(m.reshape(G, per).all(1), per)  # groups with every input CONST
        out = np.where(w == 0, b, 0.0)
        if whole.any():  # μ_g, σ²_g of the constants (each channel weighs the same), float64
            vg = v.reshape(G, per)
            mu = vg.mean(1, keepdims=True)
            var = ((vg - mu) ** 2).mean(1, keepdims=True)
            y = ((vg - mu) / np.sqrt(var + float(bind(n)["eps"]))).reshape(-1) * w + b
            out = np.where(whole, y, out)
        cx.set_value(n, whole | (w == 0), out)

    def require(self, cx, n, kept):
        x = self.src(n)
        if kept is None:
            if not cx.is_native(n) and cx.has_space(x):
                cx.barrier(n, None)  # declined (the hint says why): every input channel is kept
            return cx.need(x, None, n)
        G, per = self.groups(cx, n)
        alive = np.repeat(kept.reshape(G, per).any(1), per)
        cx.need(x, alive, n)

    def rewrite(self, ctx, n) -> bool:
        plan = ctx.plan
        x = n.args[0]
        if not plan.tracked(n.name) or not plan.tracked(x.name):
            return False
        if not plan.shrinks(n) and not plan.shrinks(x):
            return False
        p = bind(n)
        C = plan.size[n.name]
        G = int(p["num_groups"])
        per = C // G
        alive_g = np.zeros(G, bool)
        alive_g[np.unique(plan.kept(n) // per)] = True
        A = np.nonzero(np.repeat(alive_g, per))[0]
        keep_x = plan.kept(x)
        if not np.array_equal(keep_x, A):  # x keeps channels of dead groups for other readers
            pos = np.searchsorted(keep_x, A)
            if pos.max(initial=0) >= len(keep_x) or not np.array_equal(keep_x[pos], A):
                raise AssertionError(f"internal: {n.name} lost an input of a kept group")
            val = x.meta.get("val")
            dev = val.device if isinstance(val, torch.Tensor) and val.device.type != "meta" else None
            idx = ctx.add_const(n, f"fxm_in_{n.name}", ctx.index(pos) if dev is None else ctx.index(pos).to(dev))
            with ctx.gm.graph.inserting_before(n):
                xa = ctx.gm.graph.call_function(aten.index_select.default, (x, 1, idx))
            n.replace_input_with(x, xa)
            ctx.stats["norm_inputs_gathered"] += 1
        for t in (p["weight"], p["bias"]):
            if t is not None:
                v = ctx.tensor(t).detach()
                ctx.replace_const(n, t, v[ctx.index(A, v)])
        args = list(n.args)
        args[1] = int(alive_g.sum())
        n.args = tuple(args)
        gather_outputs(ctx, n, 1, A, plan.kept(n))
        return True
