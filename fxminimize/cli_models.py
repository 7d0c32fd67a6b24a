"""The one model loader of the command line (``fxminimize explain`` and ``fxminimize minimize``).

A model spec is ``MODULE:FACTORY``:

* ``MODULE`` is a dotted module name, importable from the current directory (the current
  directory is put on ``sys.path``, so ``mymodels:build`` finds ``./mymodels.py``), or the
  path of a Python file (``path/to/file.py``; a name ending in ``.py`` or holding a path
  separator);
* ``FACTORY`` is a function in it that takes no arguments and returns the model, or a tuple
  ``(model, masks)`` with ``masks`` a ``{parameter name: bool tensor}`` dict.

Errors in the spec or the file raise :class:`ModelSpecError` (a bad command line, one line of
text); an exception raised by the user's code while importing or calling raises
:class:`fxminimize.MinimizationError` naming it.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Dict, Optional, Tuple

__all__ = ["ModelSpecError", "load_factory", "load_model"]


class ModelSpecError(Exception):
    """A bad model spec or model file (the command line exits with status 2)."""


def load_factory(spec: str, option: str = "--model") -> Callable:
    """The factory function named by ``spec`` (``MODULE:FACTORY``); ``option`` prefixes messages."""
    from .errors import MinimizationError

    mod_name, sep, fn = spec.rpartition(":")
    if not sep or not mod_name or not fn:
        raise ModelSpecError(f"{option} {spec!r}: expected MODULE:FACTORY, e.g. mymodels.py:build or "
                             "mypkg.models:build")
    try:
        if mod_name.endswith(".py") or os.sep in mod_name:
            if not os.path.isfile(mod_name):
                raise ModelSpecError(f"{option}: file not found: {mod_name}")
            uspec = importlib.util.spec_from_file_location(
                os.path.splitext(os.path.basename(mod_name))[0], os.path.abspath(mod_name))
            module = importlib.util.module_from_spec(uspec)
            uspec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(mod_name)
    except ModelSpecError:
        raise
    except ImportError as exc:
        raise ModelSpecError(f"{option}: cannot import {mod_name}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the user's module failed to run
        raise MinimizationError(f"{option}: importing {mod_name} raised {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, fn, None)
    if not callable(factory):
        raise ModelSpecError(f"{option}: {mod_name} has no function {fn!r}")
    return factory


def load_model(spec: str, option: str = "--model") -> Tuple[Any, Optional[Dict]]:
    """``(model, masks)`` from ``spec`` (``masks`` None when the factory returns a model alone).
    Seed torch before calling for reproducible weights."""
    import torch.nn as nn

    from .errors import MinimizationError

    factory = load_factory(spec, option)
    try:
        obj = factory()
    except Exception as exc:  # noqa: BLE001
        raise MinimizationError(f"{option}: {spec}() raised {type(exc).__name__}: {exc}") from exc
    model, masks = obj if isinstance(obj, tuple) and len(obj) == 2 else (obj, None)
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"{option}: {spec}() returned {type(model).__name__}, not an nn.Module "
                             "(or a tuple (model, masks))")
    return model, masks
