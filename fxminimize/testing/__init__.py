"""Test support for fxminimize (not needed to minimize a model).

* :mod:`fxminimize.testing.zoo`: small example models (``ZOO``), example inputs and mask helpers,
  used by ``fxminimize demo``, the tests and the benchmarks;
* :mod:`fxminimize.testing.fuzz`: random architectures with random dead structure and the
  oracle that checks ``minimize`` on them (docs/fuzzing.md).
"""
from . import fuzz
from .fuzz import Description, Outcome, build_case, check_case, random_case, random_spec
from .zoo import ZOO, example_input, induce_dead_channels, magnitude_masks

__all__ = ["ZOO", "example_input", "magnitude_masks", "induce_dead_channels", "fuzz", "random_case",
           "random_spec", "build_case", "check_case", "Outcome", "Description"]
