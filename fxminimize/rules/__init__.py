"""The op-rule table.

Every op the channel analysis understands has exactly one :class:`Rule`, registered with
:func:`register` under *every spelling* of the op: the ``nn.Module`` class, the torch
function(s) and the ``aten`` overload(s). The canonical IR produced by capture contains aten
overloads; the other spellings make the table usable from the graphs that
``torch.fx.symbolic_trace`` and ``torch.compile`` produce, and document what the rule covers.

An op without a rule is a *barrier* (:class:`Barrier`): every channel of every tensor it reads
is kept and the report names the op. Nothing is ever guessed to be elementwise.
"""
from __future__ import annotations

from typing import Callable, Iterable

from .base import Barrier, Ignore, Rule

_TABLE: dict[object, Rule] = {}


def register(*targets: object) -> Callable[[type[Rule]], type[Rule]]:
    """Class decorator: instantiate the rule and register it under every target given."""

    def deco(cls: type[Rule]) -> type[Rule]:
        rule = cls()
        rule.targets = tuple(targets)
        for t in targets:
            if t in _TABLE and _TABLE[t] is not rule:
                raise ValueError(f"two rules registered for {t}")
            _TABLE[t] = rule
        return cls

    return deco


def register_many(rule: Rule, targets: Iterable[object]) -> Rule:
    """Register an already-built rule instance (used for families like unary activations)."""
    rule.targets = tuple(targets)
    for t in targets:
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


from . import ops, transformer  # noqa: E402,F401  (registers the built-in rules)

__all__ = ["Rule", "Barrier", "Ignore", "register", "register_many", "lookup", "table", "BARRIER"]
