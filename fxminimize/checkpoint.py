"""Checkpoints of module-mode results without pickle: safetensors weights plus a JSON description.

``save_pretrained(model, dir)`` writes

* ``model.safetensors``: every parameter and buffer of the state dict (a tied tensor once, under
  its first name);
* ``fxminimize_modules.json``: format version, the model's class, and per module that holds
  tensors its type, the shape and dtype of each tensor, the size attributes its forward reads
  (``in_features``, ``out_channels``, ``groups``, ``num_features``, ``embedding_dim``, ``nf``,
  ``normalized_shape``, compensated-norm ``count``/``s1``/``s2``/``eps``/``dim``) and the
  head counts of attention modules (``num_heads``, ``num_key_value_heads``, ``split_size``,
  ...); the tie groups (names that share one tensor);
* ``config.json`` when the model has a Hugging Face ``config`` (so the user can rebuild the
  skeleton from it).

``load_pretrained(dir, skeleton)`` takes the original architecture (a module built from the
user's config, or a factory returning one), resizes every described module (replacing
LayerNorm/RMSNorm by the compensated modules where the checkpoint has them), reties, and loads
the weights with ``strict=True`` from safetensors. Nothing is unpickled. Any disagreement
between checkpoint and skeleton (a module missing, another type, an extra or missing tensor,
another class) raises :class:`~fxminimize.errors.MinimizationError` naming it.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Union

import torch
import torch.nn as nn

from .compensated import CompensatedLayerNorm, CompensatedRMSNorm
from .errors import MinimizationError

FORMAT = "fxminimize-modules/1"
WEIGHTS, DESCRIPTION = "model.safetensors", "fxminimize_modules.json"
_SIZE_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "groups", "num_features",
               "num_embeddings", "embedding_dim", "nf", "nx", "normalized_shape", "count", "s1", "s2", "eps", "dim",
               "num_heads", "num_attention_heads", "n_head", "n_heads", "num_key_value_heads", "num_kv_heads",
               "n_kv_heads", "split_size")
_COMPENSATED = {"CompensatedLayerNorm": CompensatedLayerNorm, "CompensatedRMSNorm": CompensatedRMSNorm}


def _qualname(obj) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v if isinstance(v, (int, float, bool, str)) or v is None else None


def describe(model: nn.Module) -> dict:
    """The JSON description of ``model`` (see module doc)."""
    modules, ties, seen = {}, [], {}
    for name, mod in model.named_modules():
        tensors = {k: {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                   for k, t in list(mod._parameters.items()) + list(mod._buffers.items())
                   if t is not None and k not in getattr(mod, "_non_persistent_buffers_set", ())}
        attrs = {a: _plain(getattr(mod, a)) for a in _SIZE_ATTRS
                 if a in vars(mod) and _plain(getattr(mod, a)) is not None}
        if tensors or attrs:
            modules[name] = {"type": type(mod).__name__, "tensors": tensors, "attrs": attrs,
                             "none": [k for k, t in mod._parameters.items() if t is None]}
    for name, t in model.state_dict(keep_vars=True).items():
        seen.setdefault(id(t), []).append(name)
    ties = [names for names in seen.values() if len(names) > 1]
    return {"format": FORMAT, "class": _qualname(model), "modules": modules, "ties": ties}


def save_pretrained(model: nn.Module, directory: str) -> None:
    """Write ``model`` (a module-mode result) to ``directory``: safetensors + JSON (module doc)."""
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    desc = describe(model)
    tied_aliases = {n for names in desc["ties"] for n in names[1:]}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in tied_aliases}
    save_file(state, os.path.join(directory, WEIGHTS), metadata={"format": FORMAT})
    with open(os.path.join(directory, DESCRIPTION), "w") as f:
        json.dump(desc, f, indent=1)
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "to_json_file"):
        cfg.to_json_file(os.path.join(directory, "config.json"))


def _get(root: nn.Module, fqn: str) -> nn.Module:
    try:
        return root.get_submodule(fqn) if fqn else root
    except AttributeError:
        raise MinimizationError(f"checkpoint and skeleton disagree: the skeleton has no module '{fqn}'") from None


def _set_module(root: nn.Module, fqn: str, new: nn.Module) -> None:
    parent, _, leaf = fqn.rpartition(".")
    setattr(_get(root, parent), leaf, new)


def load_pretrained(directory: str, skeleton: Union[nn.Module, Callable[[], nn.Module]]) -> nn.Module:
    """Rebuild a module-mode result from ``directory`` into ``skeleton`` (the original
    architecture, or a factory for it), resized as described; returns the loaded module."""
    from safetensors.torch import load_file

    with open(os.path.join(directory, DESCRIPTION)) as f:
        desc = json.load(f)
    if desc.get("format") != FORMAT:
        raise MinimizationError(f"{directory}: not an fxminimize module checkpoint (format {desc.get('format')!r})")
    model = skeleton() if not isinstance(skeleton, nn.Module) else skeleton
    if _qualname(model) != desc["class"]:
        raise MinimizationError(f"checkpoint and skeleton disagree: the checkpoint holds a {desc['class']}, "
                                f"the skeleton is a {_qualname(model)}")
    for fqn, d in desc["modules"].items():
        mod = _get(model, fqn)
        if d["type"] in _COMPENSATED and type(mod).__name__ != d["type"]:
            a = d["attrs"]
            shape = d["tensors"].get("weight", {}).get("shape", [0])
            if d["type"] == "CompensatedLayerNorm":
                new = CompensatedLayerNorm(shape[0], a["count"], a["s1"], a["s2"], a["eps"], "weight" in d["tensors"],
                                           "bias" in d["tensors"], a["dim"])
            else:
                new = CompensatedRMSNorm(shape[0], a["count"], a["s2"], a["eps"], "weight" in d["tensors"], a["dim"])
            new.train(mod.training)
            _set_module(model, fqn, new)
            mod = new
        elif type(mod).__name__ != d["type"]:
            raise MinimizationError(f"checkpoint and skeleton disagree: module '{fqn}' is a {d['type']} in the "
                                    f"checkpoint and a {type(mod).__name__} in the skeleton")
        for k, t in d["tensors"].items():
            dtype = getattr(torch, t["dtype"])
            if k in mod._parameters:
                old = mod._parameters[k]
                dev = old.device if old is not None else torch.device("cpu")
                grad = old.requires_grad if old is not None else True
                mod._parameters[k] = nn.Parameter(torch.empty(t["shape"], dtype=dtype, device=dev), requires_grad=grad)
            elif k in mod._buffers:
                old = mod._buffers[k]
                mod._buffers[k] = torch.empty(t["shape"], dtype=dtype, device=old.device if old is not None else "cpu")
            else:
                raise MinimizationError(f"checkpoint and skeleton disagree: module '{fqn}' "
                                        f"({type(mod).__name__}) has no tensor '{k}'")
        for k in d.get("none", []):
            if k in mod._parameters:
                mod._parameters[k] = None
        for a, v in d["attrs"].items():
            if a in vars(mod):
                setattr(mod, a, tuple(v) if isinstance(getattr(mod, a), tuple) else v)
    for names in desc["ties"]:
        first = names[0]
        mname, _, leaf = first.rpartition(".")
        t = getattr(_get(model, mname), leaf)
        for other in names[1:]:
            mn, _, lf = other.rpartition(".")
            owner = _get(model, mn)
            if lf in owner._parameters:
                owner._parameters[lf] = t
            else:
                owner._buffers[lf] = t
    state = load_file(os.path.join(directory, WEIGHTS))
    tied_aliases = {n for names in desc["ties"] for n in names[1:]}
    expected = {k for k in model.state_dict() if k not in tied_aliases}
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise MinimizationError("checkpoint and skeleton disagree: " + "; ".join(
            s for s in (f"missing in the checkpoint: {', '.join(missing[:5])}" if missing else "",
                        f"not in the skeleton: {', '.join(extra[:5])}" if extra else "") if s))
    own = model.state_dict(keep_vars=True)
    for k, v in state.items():
        target = own[k]
        if tuple(target.shape) != tuple(v.shape):
            raise MinimizationError(f"checkpoint and skeleton disagree: '{k}' has shape {tuple(v.shape)} in the "
                                    f"checkpoint and {tuple(target.shape)} in the skeleton")
        with torch.no_grad():
            target.copy_(v)
    return model
