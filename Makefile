# fxminimize developer entry points.
#   make venv  - create .venv (torch 2.13.0 CPU first), (re)install the project
#   make demo  - run the command-line demo
#   make test  - run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.torch-2.13.0.stamp

.PHONY: venv demo test clean

# Creating the venv and installing torch is slow, so it is done once (stamp
# file). torch==2.13.0 is installed FIRST and on its own, so pip takes the
# local CPU wheel and never resolves a torch from the index itself.
$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install torch==2.13.0
	touch $(STAMP)

# The project itself is cheap: reinstall it (non-editable) every time; drop
# setuptools' build/ first so files deleted from the tree are not reinstalled.
venv: $(STAMP)
	rm -rf build
	$(BIN)/python -m pip install ".[test]"

demo: venv
	$(BIN)/fxminimize demo

# Tests must import the INSTALLED package (passes/ only exists as
# fxminimize.passes there), so keep the repo root off sys.path:
# PYTHONSAFEPATH=1 stops `python -m` from prepending the cwd, and pytest's
# --import-mode=append (pyproject) appends rather than prepends test dirs.
# pytest-xdist runs one worker per core (-n auto); --dist loadfile keeps each test file on one
# worker, so module-scoped fixtures (the Hugging Face models) are built once. One torch thread per
# worker: the workers already use every core.
test: venv
	HF_HUB_OFFLINE=1 PYTHONSAFEPATH=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist loadfile tests

clean:
	rm -rf build *.egg-info
