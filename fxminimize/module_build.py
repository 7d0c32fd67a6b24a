"""Module mode, part 2: put the rewritten tensors of the widened plan into a deep copy of the
user's model (the plan and entry point: :mod:`fxminimize.module_mode`, whose docstring has the
reasoning). Tensors replace the user's parameters and buffers by name (every holder of a tied
tensor gets the same new Parameter); a bias created by folding goes to the module of the op's
weight; size attributes, compensated norms and attention head counts are updated.
"""
from __future__ import annotations

import copy
import logging
from typing import Optional

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from .compensated import COMPENSATED_LAYER_NORM, CompensatedLayerNorm, CompensatedRMSNorm
from .ir import bind

log = logging.getLogger(__name__)
aten = torch.ops.aten

_HEADS = ("num_heads", "num_attention_heads", "n_head", "n_heads")
_KV_HEADS = ("num_key_value_heads", "num_kv_heads", "n_kv_heads")


class CannotExpress(Exception):
    """A step of the plan that module mode cannot apply to the user's modules."""


def owner(n: fx.Node) -> Optional[str]:
    """FQN of the innermost module whose forward produced node ``n`` (None: the top level)."""
    stack = n.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else None


def owner_class(n: fx.Node) -> str:
    stack = n.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    cls = list(stack.values())[-1][1]
    return cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))

def _get(root: nn.Module, fqn: str):
    obj = root
    for part in fqn.split("."):
        obj = getattr(obj, part)
    return obj


def _holders(model: nn.Module) -> dict[int, list]:
    """id(tensor) → [(module, attribute name, is parameter)] for every parameter and buffer
    (a tied tensor has several holders)."""
    out: dict[int, list] = {}
    for mod in model.modules():
        for k, p in mod._parameters.items():
            if p is not None:
                out.setdefault(id(p), []).append((mod, k, True))
        for k, b in mod._buffers.items():
            if b is not None:
                out.setdefault(id(b), []).append((mod, k, False))
    return out


def _own(new: torch.Tensor, like: Optional[torch.Tensor], param: bool, owned: set):
    """``new`` (a tensor the rewrite made) as ``like``'s dtype/device, a Parameter when ``param``.
    Not copied unless it shares storage with the user's model (``owned``: storage pointers) or
    is a view of a larger storage: the rewrite's own tensors move into the module as they are."""
    t = new.detach()
    if like is not None:
        t = t.to(device=like.device, dtype=like.dtype)
    try:
        st = t.untyped_storage()
        if st.data_ptr() in owned or st.nbytes() > t.numel() * t.element_size():
            t = t.clone()
    except (RuntimeError, NotImplementedError):
        t = t.clone()
    if param:
        return nn.Parameter(t, requires_grad=like.requires_grad if isinstance(like, nn.Parameter) else True)
    return t


def _set_sizes(mod: nn.Module, groups: Optional[int] = None) -> None:
    """Update the size attributes a resized module's forward (or repr) reads."""
    w = getattr(mod, "weight", None)
    if isinstance(mod, nn.Linear):
        mod.out_features, mod.in_features = w.shape
    elif isinstance(mod, nn.modules.conv._ConvNd):
        if groups is not None:
            mod.groups = groups
        mod.out_channels, mod.in_channels = w.shape[0], w.shape[1] * mod.groups
    elif isinstance(mod, nn.modules.batchnorm._NormBase):
        ref = w if w is not None else mod.running_mean
        mod.num_features = ref.shape[0]
    elif isinstance(mod, nn.Embedding):
        mod.num_embeddings, mod.embedding_dim = w.shape
    elif isinstance(mod, nn.LayerNorm) and w is not None:
        mod.normalized_shape = (w.shape[0],)
    elif type(mod).__name__ == "Conv1D" and w is not None:  # Hugging Face GPT-2: weight (nx, nf)
        mod.nx, mod.nf = w.shape


def _replace_module(model: nn.Module, fqn: str, new: nn.Module) -> None:
    parent, _, leaf = fqn.rpartition(".")
    setattr(_get(model, parent) if parent else model, leaf, new)


def build(work: nn.Module, gm: fx.GraphModule, small: fx.GraphModule, plan, origin: dict):
    """(model, kept index): a copy of ``work`` with the tensors of the rewritten graph ``small``
    put into its modules (see module doc), and per resized tensor (by its original name) the
    original indices each dim keeps (:func:`_index`). Raises :class:`CannotExpress`.

    No full-size copy is ever held: ``copy.deepcopy`` runs with a memo that maps each resized
    tensor of ``work`` to its new (already sliced) Parameter, so only the tensors the plan keeps
    whole are copied, and a tied tensor maps to one new Parameter in every holder (ties stay)."""
    holders = _holders(work)
    names = {id(m): k for k, m in work.named_modules(remove_duplicate=False)}
    owned = {t.untyped_storage().data_ptr() for t in list(work.parameters()) + list(work.buffers())}
    memo: dict = {}
    index: dict[str, tuple] = {}
    changed: set = set()
    biases: dict[str, torch.Tensor] = {}

    def orig_of(target: str) -> str:
        return origin.get(target, target)

    for n in small.graph.nodes:
        if n.op != "get_attr":
            continue
        t = str(n.target)
        new = _get(small, t)
        if not isinstance(new, torch.Tensor):
            continue
        try:
            old = _get(work, orig_of(t))
        except AttributeError:
            old = None
        if isinstance(old, torch.Tensor):
            if new is old or id(old) in memo or (old.shape == new.shape and torch.equal(old.detach(), new.detach())):
                continue
            if id(old) not in holders:
                raise CannotExpress(f"tensor {t} is not a parameter or buffer of a module")
            memo[id(old)] = _own(new, old, isinstance(old, nn.Parameter), owned)
            index[orig_of(t)] = _index(n, old.shape, new.shape, plan)
            changed.update(names[id(mod)] for mod, _, _ in holders[id(old)])
            continue
        # a bias created by folding constants: the module of its op's weight gains a bias
        users = [u for u in n.users if u.op == "call_function"]
        if len(users) != 1:
            raise CannotExpress(f"new constant {t} has {len(users)} readers")
        u = users[0]
        p = bind(u)
        w = p.get("weight") if "weight" in p else (u.args[2] if u.target is aten.addmm.default else None)
        is_bias = (p.get("bias") is n) or (u.target is aten.addmm.default and u.args[0] is n)
        if w is None or not is_bias or w.op != "get_attr":
            raise CannotExpress(f"constant {t} read by {u.target} cannot be placed in a module")
        modname = orig_of(str(w.target)).rpartition(".")[0]
        mod = _get(work, modname) if modname else work
        if getattr(mod, "bias", None) is not None or "bias" not in dir(mod):
            raise CannotExpress(f"constant {t}: module {modname} has no free bias slot")
        biases[modname] = new
    groups: dict[str, int] = {}
    for n in small.graph.nodes:
        if n.op == "call_function" and n.target in _CONV:
            w = bind(n)["weight"]
            if w.op == "get_attr":
                groups[orig_of(str(w.target)).rpartition(".")[0]] = int(bind(n)["groups"])
    model = copy.deepcopy(work, memo)
    del memo
    for modname, new in biases.items():
        mod = _get(model, modname) if modname else model
        mod.bias = _own(new, getattr(mod, "weight", None), True, owned)
        changed.add(modname)
    for name in changed:
        _set_sizes(_get(model, name) if name else model, groups.get(name))
    _norms(model, small, plan, orig_of)
    _rms_norms(model, gm, plan)
    _heads(model, gm, plan)
    return model, index


_CONV = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default, aten.conv1d.padding, aten.conv2d.padding,
         aten.conv3d.padding, aten.convolution.default}


_LAYER_NORMS = {aten.layer_norm.default, aten.native_layer_norm.default, COMPENSATED_LAYER_NORM}


def dim_spaces(attr: fx.Node, ndim: int, plan) -> list:
    """Per dim of the constant ``attr``: the node whose channel space slices it (None: not
    known here). Linear W (out, in), addmm W (in, out), conv W (out, in) for groups 1,
    embedding (rows, dim), a vector: its reader's output space (a LayerNorm's: its input's, as
    the norm rewrite slices it; untracked output: the input's)."""
    users = [u for u in attr.users if u.op == "call_function"]
    u = users[0] if users else None
    spaces: list = [None] * ndim
    if u is not None:
        p = bind(u) if hasattr(u.target, "_schema") else {}
        x = p.get("input")
        if u.target is aten.linear.default and p.get("weight") is attr:
            spaces = [u, x]
        elif u.target is aten.addmm.default and u.args[2] is attr:
            spaces = [u.args[1], u]
        elif u.target in _CONV and p.get("weight") is attr:
            spaces = [u, x if int(p.get("groups", 1)) == 1 else None] + [None] * (ndim - 2)
        elif u.target is aten.embedding.default:
            spaces = [None, u]
        elif ndim == 1:
            rule = plan.rules.get(u.name)
            out = rule.out_node(u) if hasattr(rule, "out_node") else u   # BatchNorm: its item 0
            x = u.args[0] if u.target in _LAYER_NORMS else x   # the compensated op names it ``x``
            spaces = [x if u.target in _LAYER_NORMS or out is None or not plan.tracked(out.name) else out]
    return spaces


def _index(attr: fx.Node, old_shape, new_shape, plan) -> tuple:
    """Per dim of a resized tensor: the original indices it keeps (None: the dim is whole, or
    its index is not known here; the spaces: :func:`dim_spaces`)."""
    spaces = dim_spaces(attr, len(old_shape), plan)
    out = []
    for d, (a, b) in enumerate(zip(old_shape, new_shape)):
        name = getattr(spaces[d] if d < len(spaces) else None, "name", None)
        if a == b:
            out.append(None)
        elif name in plan.size and plan.size[name] == a and len(plan.keep[name]) == b:
            out.append(plan.keep[name].tolist())
        else:
            out.append(None)
    return tuple(out)


def _norms(model, small, plan, orig_of) -> None:
    """LayerNorms rewritten to the compensated operator become CompensatedLayerNorm modules."""
    for n in small.graph.nodes:
        if n.op != "call_function" or n.target is not COMPENSATED_LAYER_NORM:
            continue
        p = bind(n)
        w = p["weight"]
        fqn = orig_of(str(w.target)).rpartition(".")[0] if w is not None else owner(n)
        if fqn is None:
            raise CannotExpress("a compensated LayerNorm outside any module")
        old = _get(model, fqn)
        if not isinstance(old, (nn.LayerNorm, CompensatedLayerNorm)):
            raise CannotExpress(f"LayerNorm {fqn} is a {type(old).__name__}, not nn.LayerNorm")
        kept = int(n.args[0].meta["val"].shape[p["dim"]]) if "val" in n.args[0].meta else old.weight.shape[0]
        new = CompensatedLayerNorm(old.weight.shape[0] if old.weight is not None else kept, p["count"], p["s1"],
                                   p["s2"], p["eps"], old.weight is not None, getattr(old, "bias", None) is not None,
                                   p["dim"])
        with torch.no_grad():
            if old.weight is not None:
                new.weight = old.weight
            if getattr(old, "bias", None) is not None:
                new.bias = old.bias
        new.train(old.training)
        _replace_module(model, fqn, new)


def _rms_norms(model, gm, plan) -> None:
    """An RMSNorm module whose input lost CONST channels becomes CompensatedRMSNorm:
    mean(x²) over C = (Σ_K x² + s2)/C with s2 = Σ_removed v² (the values of x² there)."""
    for n in gm.graph.nodes:
        if n.op != "call_function" or n.target is not aten.mean.dim or not owner_class(n).endswith("RMSNorm"):
            continue
        x = n.args[0]
        if plan.tracked(n.name) or not plan.tracked(x.name) or not plan.shrinks(x):
            continue
        rem = plan.removed(x)
        if not plan.const_mask[x.name][rem].all():
            raise CannotExpress(f"RMSNorm {owner(n)} loses a LIVE channel")
        fqn = owner(n)
        old = _get(model, fqn)
        eps = getattr(old, "variance_epsilon", getattr(old, "eps", None))
        w = getattr(old, "weight", None)
        if eps is None or not isinstance(w, torch.Tensor) or w.dim() != 1:
            raise CannotExpress(f"RMSNorm {fqn}: no weight/eps attributes")
        new = CompensatedRMSNorm(w.shape[0], plan.size[x.name], float(plan.const_val[x.name][rem].sum()), eps)
        new.weight = w
        new.train(old.training)
        _replace_module(model, fqn, new)


def _heads(model, gm, plan) -> None:
    """Head-count attributes of attention modules that lost heads (whole heads only here)."""
    by_name = {n.name: n for n in gm.graph.nodes}
    for r in plan.regions.values():
        if r.o_in not in plan.size:
            continue
        Hq = len(np.unique(plan.keep[r.source("q")] // r.D))
        G = len(np.unique(plan.keep[r.source("k")] // r.D))
        if Hq == r.Hq and G == r.Hkv:
            continue
        fqn = owner(by_name[r.sdpa])
        mod = _get(model, fqn) if fqn else model
        for attr in _HEADS:
            if getattr(mod, attr, None) == r.Hq:
                setattr(mod, attr, Hq)
        for attr in _KV_HEADS:
            if getattr(mod, attr, None) == r.Hkv:
                setattr(mod, attr, G)
        if getattr(mod, "split_size", None) == r.Hq * r.D:
            mod.split_size = Hq * r.D
        log.debug("attention %s: %d -> %d heads, %d -> %d kv heads", fqn, r.Hq, Hq, r.Hkv, G)


