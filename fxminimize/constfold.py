"""Fold what ``forward`` computes from parameters and buffers alone into constants.

Weight standardization (``(w − mean(w)) / std(w)``), a qkv bias built with ``cat`` from pieces,
``1 + w`` scales: any subgraph whose inputs are all constants (``get_attr``) is evaluated once and
its frontier values (those read by the rest of the graph) become new constants. The analysis
then sees plain constant weights, so a standardized conv shrinks like a plain one.

Rules: only deterministic, non-mutating ops are folded (nothing random, nothing in-place); a
subgraph must start from at least one constant (``arange(16)`` is left alone: folding it would
store what is now computed); a folded value that derives from a trainable parameter becomes a
parameter itself (training the minimized model trains it); a value more than twice the size
of the constants it is computed from is not folded (a small table expanded into a large one,
such as an attention-bias table indexed into heads × N × N), and a value larger than them at
all only where a reader slices it as a weight (:func:`_worth_folding`). ``minimize`` keeps the unfolded
capture too: if the minimized result would still store more than the input, it returns that.
"""
from __future__ import annotations

import copy
import logging

import torch
import torch.fx as fx
import torch.nn as nn

from .ir import drop_unread_attributes

log = logging.getLogger(__name__)


def _tensor(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _pure(n: fx.Node) -> bool:
    t = n.target
    if t is getattr(__import__("operator"), "getitem"):
        return True
    if not isinstance(t, torch._ops.OpOverload):
        return False
    if t in (torch.ops.aten.detach_.default, torch.ops.aten.lift_fresh_copy.default):
        return True  # value-preserving (export writes them around tensors created in forward)
    if t._schema.is_mutable or torch.Tag.nondeterministic_seeded in t.tags:
        return False
    return True


_A = torch.ops.aten
#: ops whose constant operands the channel rules slice as weights (a folded value read by one of
#: these lets its reader shrink); elementwise ops count only for a per-channel vector
_WEIGHT_READERS = {_A.linear.default, _A.addmm.default, _A.conv1d.default, _A.conv2d.default,
                   _A.conv3d.default, _A.convolution.default, _A.layer_norm.default,
                   _A.group_norm.default, _A.batch_norm.default,
                   _A._native_batch_norm_legit_no_training.default, _A.mm.default,
                   _A.matmul.default, _A.bmm.default, _A.einsum.default, _A.embedding.default}
_ELEMENTWISE = {_A.add.Tensor, _A.sub.Tensor, _A.mul.Tensor, _A.div.Tensor}


def _worth_folding(n: fx.Node, val: torch.Tensor, sources: dict, env: dict) -> bool:
    """A folded value no larger than the constants it is computed from is always folded. A larger
    one (at most twice: a qkv bias built with ``cat`` from q and v pieces) only when a reader
    slices it as a weight: a Linear/conv/norm/matmul, or an elementwise op with a per-channel
    vector (one dim larger than 1). Otherwise the fold would only enlarge the model (Swin's
    relative-position bias: a 49×H table and a 256-entry index expanded to H×16×16 scores)."""
    size = sum(sources.values())
    if val.numel() <= size:
        return True
    if val.numel() > 2 * size:
        return False
    for u in n.users:
        if u in env:
            continue
        if u.target in _WEIGHT_READERS:
            continue
        if u.target in _ELEMENTWISE and sum(1 for d in val.shape if d > 1) <= 1:
            continue
        return False
    return True


def fold_parameter_subgraphs(gm: fx.GraphModule) -> int:
    """Fold constant-only subgraphs of ``gm`` in place; returns how many values were folded."""
    env: dict = {}
    trainable: dict = {}
    sources: dict = {}  # node -> the constant attributes it is computed from
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            t = _tensor(gm, str(n.target))
            if isinstance(t, torch.Tensor):
                env[n] = t.detach()
                trainable[n] = isinstance(t, nn.Parameter) and t.requires_grad
                sources[n] = {str(n.target): t.numel()}
        elif n.op == "call_function" and n.all_input_nodes and all(a in env for a in n.all_input_nodes) \
                and any(a.op == "get_attr" or a in trainable for a in n.all_input_nodes) and _pure(n):
            args = fx.node.map_arg(n.args, lambda a: env[a])
            kwargs = fx.node.map_arg(n.kwargs, lambda a: env[a])
            try:
                with torch.no_grad():
                    env[n] = n.target(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - cannot evaluate: leave it to the analysis
                log.debug("not folded: %s (%s)", n.name, exc)
                continue
            trainable[n] = any(trainable.get(a, False) for a in n.all_input_nodes)
            sources[n] = {k: v for a in n.all_input_nodes for k, v in sources.get(a, {}).items()}
    frontier = [n for n in env if n.op == "call_function" and isinstance(env[n], torch.Tensor)
                and any(u not in env for u in n.users) and _worth_folding(n, env[n], sources[n], env)]
    if not frontier:
        return 0
    graph = copy.deepcopy(gm.graph)  # work on a copy: kept only if it does not store more
    same = dict(zip(gm.graph.nodes, graph.nodes))
    trial = fx.GraphModule(gm, graph)
    for k, n in enumerate(frontier):
        val = env[n].clone().contiguous()
        name = f"fxm_folded_{n.name}"
        val = nn.Parameter(val) if trainable[n] and val.is_floating_point() else val
        (trial.register_parameter if isinstance(val, nn.Parameter) else trial.register_buffer)(name, val)
        node = same[n]
        with graph.inserting_before(node):
            new = graph.get_attr(name)
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
    graph.eliminate_dead_code()
    for n in reversed([same[m] for m in env if m.op == "call_function"]):
        # in-place detach_ on a fresh copy: DCE keeps it (a node DCE already erased is skipped)
        if not n.users and n.graph is graph and not getattr(n, "_erased", False):
            graph.erase_node(n)
    graph.eliminate_dead_code()
    used = {str(n.target) for n in graph.nodes if n.op == "get_attr"}
    gm.graph = graph
    drop_unread_attributes(gm)
    # a value folded from one attribute that nothing else reads keeps that attribute's name
    # (a rotary inv_freq cast to float stays model.rotary_emb.inv_freq)
    names = {f"fxm_folded_{n.name}": next(iter(sources[n])) for n in frontier if len(sources[n]) == 1}
    taken = set(used)
    for node in graph.nodes:
        name = str(node.target)
        if node.op != "get_attr" or not name.startswith("fxm_folded_"):
            continue
        v = _tensor(trial, name)
        new = names.get(name)
        if new is not None and new not in taken and _tensor(gm, new) is None:
            taken.add(new)
            node.target = new
            name = new
        _set(gm, name, v)
    gm.recompile()
    return len(frontier)


def _set(gm: nn.Module, name: str, value: torch.Tensor) -> None:
    *path, leaf = name.split(".")
    mod = gm
    for p in path:
        if not hasattr(mod, p):
            mod.add_module(p, nn.Module())
        mod = getattr(mod, p)
    (mod.register_parameter if isinstance(value, nn.Parameter) else mod.register_buffer)(leaf, value)


_SCALAR_OPS = {torch.ops.aten.add.Tensor, torch.ops.aten.sub.Tensor, torch.ops.aten.mul.Tensor,
               torch.ops.aten.div.Tensor}


def inline_scalar_constants(gm: fx.GraphModule, user_state: set) -> int:
    """Tensors of one element that ``forward`` creates (a softmax scale ``torch.tensor(d) ** 0.5``,
    not a parameter or buffer of the model) and that ``torch.export`` would store as constants
    become Python numbers in the graph when every reader is the second operand of an
    add/sub/mul/div: the model keeps computing the same value, and stores nothing for it."""
    done = 0
    for n in list(gm.graph.nodes):
        if n.op != "get_attr" or str(n.target) in user_state:
            continue
        t = _tensor(gm, str(n.target))
        if not isinstance(t, torch.Tensor) or isinstance(t, nn.Parameter) or t.numel() != 1 \
                or not t.is_floating_point():
            continue
        users = list(n.users)
        if not users or any(u.target not in _SCALAR_OPS or len(u.args) < 2 or u.args[1] is not n
                            or u.args[0] is n for u in users):
            continue
        value = float(t.detach().reshape(()).item())
        for u in users:
            u.args = (u.args[0], value) + tuple(u.args[2:])
        gm.graph.erase_node(n)
        done += 1
    if done:
        used = {str(m.target) for m in gm.graph.nodes if m.op == "get_attr"}
        for name, _ in list(gm.named_buffers()):
            if name not in used and name not in user_state:
                *path, leaf = name.split(".")
                mod = gm
                for p in path:
                    mod = getattr(mod, p)
                delattr(mod, leaf)
        gm.recompile()
    return done
