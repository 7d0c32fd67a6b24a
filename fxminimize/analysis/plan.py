"""The immutable result of the channel analysis: what each rewrite needs, nothing mutable."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import networkx as nx
import numpy as np


@dataclass(frozen=True)
class BarrierInfo:
    node: str
    op: str
    module: str
    reason: str
    channels_kept: int


@dataclass(frozen=True)
class GroupInfo:
    """A connected component of the space graph."""

    index: int
    spaces: tuple[str, ...]
    units: int
    units_removed: int
    elements: int
    elements_removed: int


@dataclass(frozen=True)
class Plan:
    """The immutable result of the analysis. Passes only read it.

    For every tracked node name: ``axis`` (the channel dimension), ``size`` (channels before),
    ``keep`` (sorted int64 indices of the channels kept), ``const_mask``/``const_val`` (the value
    lattice per channel) and ``native`` (False for *source* spaces, whose removal needs a gather).
    ``kind`` maps every call_function node to its rule's kind (for reports) and ``rules`` to the
    rule object itself (the rewrite dispatches on it: the op family that analysed a node
    rewrites it). ``space_graph`` is a frozen networkx graph; ``regions`` hold frozen
    attention regions.
    ``required_by`` gives, per channel, the index into ``node_names`` of the consumer that first
    required it (-1: not required directly; it is then kept, if at all, because a coupled channel
    of its unit was required). This is the provenance behind "why was this channel kept?".
    """

    axis: Mapping[str, int]
    size: Mapping[str, int]
    keep: Mapping[str, np.ndarray]
    const_mask: Mapping[str, np.ndarray]
    const_val: Mapping[str, np.ndarray]
    native: Mapping[str, bool]
    kind: Mapping[str, str]
    rules: Mapping[str, object]
    barriers: tuple[BarrierInfo, ...]
    groups: tuple[GroupInfo, ...]
    space_graph: nx.Graph
    unit_of: Mapping[str, np.ndarray]
    required_by: Mapping[str, np.ndarray] = field(default_factory=dict)
    node_names: tuple[str, ...] = ()
    regions: Mapping[str, object] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    #: how many times a rule's ``require`` ran in the use fixpoint (grows linearly with depth)
    rule_calls: int = 0
    #: rounds of the use fixpoint (about the contraction depth of the longest path, plus 2)
    fixpoint_rounds: int = 0

    def tracked(self, name: str) -> bool:
        return name in self.axis

    def kept(self, node) -> Optional[np.ndarray]:
        """Kept channel indices of a node, or None when it is untracked."""
        return self.keep.get(getattr(node, "name", node))

    def shrinks(self, node) -> bool:
        """True when the node loses at least one channel."""
        name = getattr(node, "name", node)
        return name in self.keep and len(self.keep[name]) < self.size[name]

    def removed(self, node) -> np.ndarray:
        name = getattr(node, "name", node)
        mask = np.ones(self.size[name], dtype=bool)
        mask[self.keep[name]] = False
        return np.nonzero(mask)[0]

    @property
    def anything_removed(self) -> bool:
        return any(len(self.keep[k]) < self.size[k] for k in self.keep)


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


