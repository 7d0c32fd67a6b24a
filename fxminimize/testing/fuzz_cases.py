"""Cases from specs: :func:`build_case` (model, example inputs, :class:`Description` with the
masks), :func:`random_case`, and the hypothesis strategies :func:`specs` / :func:`cases`."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from .fuzz_blocks import build_model, example_inputs
from .fuzz_choosers import HypothesisChooser
from .fuzz_generator import draw_spec, random_spec

@dataclass
class Description:
    """What ``random_case`` returns as its third item: the spec plus how the model is masked."""

    spec: dict
    masks: Optional[Dict[str, torch.Tensor]] = None
    text: str = ""
    all_masks: Dict[str, torch.Tensor] = field(default_factory=dict)  # every zeroing, for the reference

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> str:
        return json.dumps(self.spec, sort_keys=True)


def describe(spec) -> str:
    parts = []
    for b in spec["blocks"]:
        extra = {k: v for k, v in b.items() if k not in ("type", "c_in", "c_out")}
        parts.append(f"{b['type']}({b['c_in']}->{b['c_out']}{', ' if extra else ''}"
                     + ", ".join(f"{k}={v}" for k, v in extra.items()) + ")")
    head = f" -> out({spec['out']['n']})" if spec["out"]["n"] else ""
    whys = sorted({d["why"].split(" [")[0] for d in spec.get("dead", [])})
    return (f"{spec['family']} stem={spec['stem']} | " + " -> ".join(parts) + head
            + f" | via={spec.get('via')} sparsity={spec.get('sparsity')} | dead: " + "; ".join(whys))


def _zero_mask(p: torch.Tensor, dim: int, idx) -> torch.Tensor:
    m = torch.ones(p.shape, dtype=torch.bool)
    m.index_fill_(dim, torch.as_tensor(idx, dtype=torch.long), False)
    return m


def build_case(spec) -> Tuple[nn.Module, tuple, Description]:
    """``(model, example_inputs, description)`` for a spec; ``description.masks`` is the masks
    dict to pass to ``minimize`` (None unless ``spec['via'] == 'masks'``)."""
    model = build_model(spec)
    params = dict(model.named_parameters())
    masks: Dict[str, torch.Tensor] = {}
    for d in spec.get("dead", []):
        m = _zero_mask(params[d["p"]], d["dim"], d["idx"])
        masks[d["p"]] = masks[d["p"]] & m if d["p"] in masks else m
    if spec.get("sparsity"):
        g = torch.Generator().manual_seed(spec.get("mseed", 0))
        for name, p in params.items():
            if name.endswith("weight") and p.dim() >= 2 and torch.rand(1, generator=g).item() < 0.5:
                m = torch.rand(p.shape, generator=g) >= spec["sparsity"]
                masks[name] = masks[name] & m if name in masks else m
    via = spec.get("via", "zero")
    out_masks = None
    if via == "masks":
        out_masks = masks
    else:
        import torch.nn.utils.prune as prune
        mods = dict(model.named_modules())
        for name, m in masks.items():
            mod_name, _, attr = name.rpartition(".")
            mod = mods[mod_name]
            if via == "prune" and isinstance(mod, (nn.Linear, nn.Conv2d, nn.Embedding)) and attr in ("weight", "bias"):
                prune.custom_from_mask(mod, attr, m)
            else:
                with torch.no_grad():
                    params[name].mul_(m.to(params[name].dtype))
    return model, example_inputs(spec), Description(spec, out_masks, describe(spec), masks)


def random_case(seed: int) -> Tuple[nn.Module, tuple, Description]:
    """A reproducible random case: ``(model, example_inputs, description)`` (no hypothesis needed)."""
    return build_case(random_spec(seed))


# =========================================================================== hypothesis
def specs():
    """Hypothesis strategy of case specs (shrinkable)."""
    from hypothesis import strategies as st

    @st.composite
    def _spec(draw):
        return draw_spec(HypothesisChooser(draw))

    return _spec()


def cases():
    """Hypothesis strategy of ``(model, example_inputs, description)``."""
    return specs().map(build_case)
