"""The op-rule table: aten overload → the :class:`~fxminimize.passes.rule.Rule` of its family.

Capture always yields aten ops (torch.export, and the compile backend re-exports its graph), so
the table is keyed by aten overloads only, plus ``operator.getitem`` (items of tuple-producing
ops) and fxminimize's own ``compensated_layer_norm`` operator. An op without a rule is a
*barrier* (:data:`BARRIER`): every channel of every tensor it reads is kept and the report
names the op. Nothing is ever guessed to be elementwise.
"""
from __future__ import annotations

from typing import Callable, Iterable

from .rule import Barrier, Ignore, Rule

_TABLE: dict[object, Rule] = {}


def register(*targets: object) -> Callable[[type[Rule]], type[Rule]]:
    """Class decorator: instantiate the rule and register it under every target given."""

    def deco(cls: type[Rule]) -> type[Rule]:
        register_many(cls(), targets)
        return cls

    return deco


def register_many(rule: Rule, targets: Iterable[object]) -> Rule:
    """Register one rule instance under several targets (families such as unary activations).
    Raises ``ValueError`` when a target already has another rule."""
    rule.targets = tuple(targets)
    for t in rule.targets:
        if t in _TABLE and _TABLE[t] is not rule:
            raise ValueError(f"two rules registered for {t}")
        _TABLE[t] = rule
    return rule


BARRIER = Barrier()
IGNORE = Ignore()


def lookup(target: object) -> Rule:
    """The rule for an op target; :data:`BARRIER` when there is none."""
    return _TABLE.get(target, BARRIER)


def table() -> dict[object, Rule]:
    """A copy of the whole table (for docs and tests)."""
    return dict(_TABLE)
