"""Exceptions raised by fxminimize."""


class MinimizationError(RuntimeError):
    """fxminimize refused to minimize a model.

    Raised for bad input (a model that cannot be captured, an invalid mask, non-finite
    weights, BatchNorm in training mode) and when the minimized model fails verification.
    The user's model is never modified when this is raised.
    """
