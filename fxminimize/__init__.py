"""fxminimize: rewrite masked (pruned) PyTorch models into genuinely smaller dense models
computing the same function, exactly up to floating-point rounding."""
from .errors import MinimizationError
from .api import MinimizeResult, load, minimize
from .analysis import Plan, analyze
from .report import Report
from .onnx_export import OnnxExport, export_onnx

__all__ = ["minimize", "load", "MinimizeResult", "MinimizationError", "Plan", "Report", "analyze", "export_onnx", "OnnxExport"]
__version__ = "0.1.0"
