"""fxminimize: rewrite masked (pruned) PyTorch models into genuinely smaller dense models
computing the same function, exactly up to floating-point rounding."""
from .errors import MinimizationError


def _source_checkout_passes() -> None:
    """passes/ sits at the repository root and installs as ``fxminimize.passes``; in a source
    checkout used through PYTHONPATH (not installed) load it from there under that name."""
    import importlib.util
    import sys
    from pathlib import Path

    if "fxminimize.passes" in sys.modules or importlib.util.find_spec("fxminimize.passes") is not None:
        return
    root = Path(__file__).resolve().parent.parent / "passes"
    if not (root / "__init__.py").exists():
        raise ImportError("fxminimize.passes is missing: install the package (pip install . or make venv)")
    spec = importlib.util.spec_from_file_location("fxminimize.passes", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fxminimize.passes"] = mod
    spec.loader.exec_module(mod)


_source_checkout_passes()
from .api import MinimizeResult, load, minimize
from .analysis import Plan, analyze
from .report import Report
from .onnx_export import OnnxExport, export_onnx
from .compensated import CompensatedLayerNorm, CompensatedRMSNorm
from .checkpoint import load_pretrained, save_pretrained

__all__ = ["minimize", "load", "MinimizeResult", "MinimizationError", "Plan", "Report", "analyze", "export_onnx", "OnnxExport",
           "CompensatedLayerNorm", "CompensatedRMSNorm", "save_pretrained", "load_pretrained"]
__version__ = "0.1.0"
