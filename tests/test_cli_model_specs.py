"""`fxminimize explain` and `fxminimize minimize` load models through one loader
(fxminimize.cli_models) with the same rules: MODULE:FACTORY with MODULE importable from the
current directory, and path/to/file.py:FACTORY. Both commands, both forms, in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FORMS = {"module": "fixtures_cli_model:masked", "file": os.path.join("tests", "fixtures_cli_model.py") + ":masked"}


def _run(cmd, spec, tmp_path):
    # the module form is importable only from tests/ (the cwd); the file form is a path relative to
    # the repository root, so each runs from the directory its spec names
    cwd = HERE if ":" in spec and not spec.startswith("tests") else os.path.dirname(HERE)
    if cmd == "explain":
        args = ["explain", spec, "--input-shape", "2,3,16,16", "conv2", "0"]
    else:
        args = ["minimize", "--model", spec, "--input-shape", "2,3,16,16", "--out", str(tmp_path / "s.pt2")]
    env = dict(os.environ, PYTHONSAFEPATH="1")
    return subprocess.run([sys.executable, "-m", "fxminimize", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("cmd", ["explain", "minimize"])
def test_both_commands_load_both_spec_forms(cmd, form, tmp_path):
    r = _run(cmd, FORMS[form], tmp_path)
    assert r.returncode == 0, r.stderr
    if cmd == "explain":   # conv2's even filters are masked out by the fixture: channel 0 is removed
        assert r.stdout.startswith("channel 0 of conv2") and "is removed" in r.stdout.splitlines()[0], r.stdout
    else:
        assert "params: 5,483 -> " in r.stdout and (tmp_path / "s.pt2").exists()


@pytest.mark.parametrize("cmd", ["explain", "minimize"])
def test_both_commands_report_a_missing_factory_the_same_way(cmd, tmp_path):
    r = _run(cmd, "fixtures_cli_model:nothere", tmp_path)
    assert r.returncode == 2
    assert "fixtures_cli_model has no function 'nothere'" in r.stderr
