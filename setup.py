"""Package discovery for fxminimize (all metadata lives in pyproject.toml).

Installs ``fxminimize`` with every subpackage found under ``fxminimize/``, plus
the top-level ``passes/`` directory (and its subpackages) as
``fxminimize.passes`` via the ``package-dir`` mapping in pyproject.toml.
No top-level ``passes`` package is installed.
"""

from setuptools import find_packages, setup

packages = find_packages(include=["fxminimize", "fxminimize.*"])
packages += ["fxminimize.passes"]
packages += ["fxminimize.passes." + p for p in find_packages("passes")]

setup(packages=sorted(set(packages)))
