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


# Custom ops of other libraries (their OpOverload exists only once that library is imported),
# keyed by the overload's qualified name, e.g. "transformers::grouped_mm_fallback.default".
_NAMED: dict[str, Rule] = {}


def register_named(*names: str) -> Callable[[type[Rule]], type[Rule]]:
    """Class decorator: register a rule under custom-op overload names ("ns::op.overload")."""

    def deco(cls: type[Rule]) -> type[Rule]:
        rule = cls()
        rule.targets = tuple(names)
        for name in names:
            if name in _NAMED:
                raise ValueError(f"two rules registered for {name}")
            _NAMED[name] = rule
        return cls

    return deco


def _qualname(target: object):
    name = getattr(target, "_name", None)
    return f"{name}.{target._overloadname}" if isinstance(name, str) and hasattr(target, "_overloadname") else None


def lookup(target: object) -> Rule:
    """The rule for an op target; :data:`BARRIER` when there is none."""
    rule = _TABLE.get(target)
    if rule is None and _NAMED:
        rule = _NAMED.get(_qualname(target))
    return BARRIER if rule is None else rule


def table() -> dict[object, Rule]:
    """A copy of the whole table (for docs and tests)."""
    return dict(_TABLE)
