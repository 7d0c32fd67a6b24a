"""Channel analysis: from a canonical FX graph to an immutable removal :class:`Plan`.

- :mod:`.channels`: :class:`ChannelAnalysis` (spaces, coupling, value lattice, use fixpoint).
- :mod:`.context`: :class:`RuleContext`, the only view of it that op rules get.
- :mod:`.plan`: :class:`Plan`, :class:`BarrierInfo`, :class:`GroupInfo`.
"""
from .channels import ChannelAnalysis, analyze
from .context import RuleContext
from .plan import BarrierInfo, GroupInfo, Plan

__all__ = ["analyze", "ChannelAnalysis", "RuleContext", "Plan", "BarrierInfo", "GroupInfo"]
