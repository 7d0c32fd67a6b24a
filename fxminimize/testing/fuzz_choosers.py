"""Choosers: where the fuzz generator's random decisions come from (fxminimize.testing.fuzz).

:class:`RandomChooser` draws from ``random.Random(seed)``; :class:`HypothesisChooser` draws
through hypothesis so a failing case shrinks. Both offer ``int``, ``choice``, ``p`` and
``subset``; the generator (:mod:`.fuzz_generator`) only ever calls those.
"""
from __future__ import annotations

import random
from typing import List, Optional


class RandomChooser:
    """Draws from ``random.Random(seed)``."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def choice(self, seq):
        return seq[self.r.randrange(len(seq))]

    def p(self, prob: float) -> bool:
        return self.r.random() < prob

    def subset(self, n: int, lo: int = 1, hi: Optional[int] = None) -> List[int]:
        hi = n if hi is None else min(hi, n)
        k = self.int(min(lo, hi), hi)
        return sorted(self.r.sample(range(n), k))


class HypothesisChooser:
    """Draws through a hypothesis ``draw`` function (so hypothesis can shrink the case)."""

    def __init__(self, draw) -> None:
        from hypothesis import strategies as st
        self.draw, self.st = draw, st

    def int(self, lo: int, hi: int) -> int:
        return self.draw(self.st.integers(lo, hi))

    def choice(self, seq):
        return seq[self.draw(self.st.integers(0, len(seq) - 1))]

    def p(self, prob: float) -> bool:
        # shrinks towards False; probability is only approximate under hypothesis
        return self.draw(self.st.integers(0, 999)) >= int(1000 * (1 - prob))

    def subset(self, n: int, lo: int = 1, hi: Optional[int] = None) -> List[int]:
        hi = n if hi is None else min(hi, n)
        k = self.int(min(lo, hi), hi)
        s = self.draw(self.st.lists(self.st.integers(0, n - 1), min_size=k, max_size=k, unique=True))
        return sorted(s)
