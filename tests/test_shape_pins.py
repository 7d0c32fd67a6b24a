"""Every zoo model (and GPT-2, Llama, BERT) keeps exactly the weight shapes recorded before the
one-home-per-op redesign: a refactor of the rules and passes must not change what is removed."""
import json

import pytest

from shape_pins import PINS, all_cases, minimized_shapes

RECORDED = json.loads(PINS.read_text())


@pytest.mark.parametrize("case", list(all_cases()), ids=lambda c: c[0])
def test_minimized_shapes_match_the_recorded_table(case):
    name, model, example, masks = case
    assert name in RECORDED, f"{name} has no recorded shapes"
    assert minimized_shapes(model, example, masks) == RECORDED[name]
