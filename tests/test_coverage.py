"""tools/coverage.py: the per-row function on three tiny architectures (a CNN, a text encoder, a
decoder with RMSNorm/RoPE/GQA), each masked one way: the row must be captured, exact, never
larger, and for the planted mask remove at least the planted bound."""
from __future__ import annotations

import os
import sys

import pytest

pytest.importorskip("transformers")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))

import coverage  # noqa: E402

ARCHS = {name: (kind, ov) for name, kind, ov in coverage.ARCHS}


@pytest.mark.parametrize("name,mask", [("ResNet", "rows"), ("Bert", "norm"), ("Llama", "planted")])
def test_coverage_row(name, mask):
    kind, ov = ARCHS[name]
    (row,) = coverage.run_arch(name, kind, ov, masks=(mask,))
    assert row["built"], row
    assert row["captured"], row.get("error")
    assert row["exact"], row.get("error")
    assert row["never_larger"] and row["after"] <= row["before"]
    if mask == "planted":
        assert row["bound"] and row["bound_met"], (row["removed"], row["bound"])
    else:
        assert row["removed"] >= 0


def test_coverage_not_built_is_a_row():
    rows = coverage.run_arch("NoSuchArch", "text", {})
    assert rows == [{"arch": "NoSuchArch", "kind": "text", "built": False, "error": rows[0]["error"]}]
    assert "NoSuchArchConfig" in rows[0]["error"]


def test_coverage_doc(tmp_path):
    rows = [{"arch": "X", "kind": "text", "built": False, "error": "E: nope"},
            {"arch": "Y", "kind": "text", "built": True, "cls": "YModel", "mask": "planted", "captured": True,
             "exact": True, "before": 10, "after": 8, "removed": 2, "bound": 4, "bound_met": False,
             "never_larger": True, "barriers": [], "seconds": 1.0, "error": None}]
    meta = {"command": "c", "machine": "m", "date": "d", "torch": "t", "transformers": "tr", "python": "p"}
    coverage.write_doc({"meta": meta, "rows": rows}, str(tmp_path / "c.md"))
    text = (tmp_path / "c.md").read_text()
    assert "built: 1" in text and "removed 2 < bound 4" in text and "**X**: not built" in text
