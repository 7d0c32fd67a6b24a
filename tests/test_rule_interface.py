"""The redesign's structural rules, checked on the source:

- a rule sees only its narrow context (``cx``): no rule module touches analysis internals;
- passes share no hidden state: nothing in passes/ or the analysis reads or writes ``gm.meta``;
- every rewrite pass declares its predecessors, and the pipeline's order satisfies them.
"""
import re
from pathlib import Path

import fxminimize.passes as passes_pkg
from fxminimize.analysis.context import RuleContext
from fxminimize.passes.pipeline import PASSES

PASSES_DIR = Path(passes_pkg.__file__).parent
ALLOWED = {m for m in dir(RuleContext) if not m.startswith("_")}


def rule_sources():
    return sorted(PASSES_DIR.glob("ops/*.py")) + [PASSES_DIR / "rule.py", PASSES_DIR / "restore.py"]


def test_rule_context_exposes_only_its_methods():
    assert RuleContext.__slots__ == ("__a",)
    assert ALLOWED == {"tensor", "axis_of", "size_of", "has_space", "is_native", "rule_of", "is_after", "memo",
                       "couple", "couple_identity", "const_of", "set_value", "need", "kept", "hint", "barrier"}


def test_rules_use_only_the_context_interface():
    bad = []
    for f in rule_sources():
        src = f.read_text()
        for m in re.finditer(r"\bcx\.(\w+)", src):
            if m.group(1) not in ALLOWED:
                bad.append(f"{f.name}: cx.{m.group(1)}")
        if "_RuleContext__a" in src or "fxminimize.analysis" in src.replace("fxminimize.analysis.context", ""):
            bad.append(f"{f.name}: reaches into the analysis")
    assert bad == []


def test_no_gm_meta_side_channels():
    roots = list(PASSES_DIR.rglob("*.py")) + list((PASSES_DIR.parent / "analysis").rglob("*.py"))
    hits = [f.name for f in roots if re.search(r"\bgm\.meta\b|\.meta\[\"fxminimize", f.read_text())]
    assert hits == []


def test_passes_declare_an_order_the_pipeline_keeps():
    names = [p.name for p in PASSES]
    assert len(set(names)) == len(names)
    for i, p in enumerate(PASSES):
        for a in p.after:
            assert a in names[:i], (p.name, a)
    assert names[-1] == "cleanup"


def test_no_library_module_over_400_lines():
    """One home per op keeps modules small: nothing in fxminimize/ or passes/ is over ~400 lines
    (the HTML report's page, style and script are resource files, not Python strings)."""
    import fxminimize
    roots = [Path(fxminimize.__file__).parent, PASSES_DIR]
    long = {str(f.relative_to(r.parent)): n for r in roots for f in r.rglob("*.py")
            if (n := len(f.read_text().splitlines())) > 400}
    assert long == {}
