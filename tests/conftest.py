import os
import sys

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")


@pytest.fixture()
def import_tool():
    """Import a script of tools/ by name; its main() may call logging.basicConfig, so the root
    logger's handlers and level are restored afterwards."""
    import importlib
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sys.path.insert(0, TOOLS)
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(TOOLS)
        root.handlers[:], root.level = handlers, level
