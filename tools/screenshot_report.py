"""Regenerate docs/report.png: the HTML report of Hugging Face ConvNeXt-Tiny in headless Chromium.

    HF_HUB_OFFLINE=1 .venv/bin/python tools/screenshot_report.py [--out docs/report.png] [--html PATH]

The model is ``transformers.ConvNextModel(ConvNextConfig())`` (ConvNeXt-Tiny, random weights) with
every third hidden channel of ``encoder.stages.2.layers.4.pwconv1`` pruned (rows and biases zero)
and every second one of ``encoder.stages.1.layers.1.pwconv1`` (rows zero, biases kept: constants,
folded); the page opens on the explanation of channel 17 of ``encoder.stages.2.layers.4.pwconv1``.
Needs Debian's ``chromium`` (``apt-get install chromium``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_report():
    """Minimize the pruned ConvNeXt-Tiny and return the MinimizeResult."""
    import torch
    from transformers import ConvNextConfig, ConvNextModel

    import fxminimize
    from fxminimize.testing.zoo import induce_dead_channels

    torch.manual_seed(0)
    m = ConvNextModel(ConvNextConfig()).eval()
    induce_dead_channels(m, "encoder.stages.2.layers.4.pwconv1", list(range(0, 1536, 3)))
    induce_dead_channels(m, "encoder.stages.1.layers.1.pwconv1", list(range(0, 768, 2)), fold_bias=True)
    return fxminimize.minimize(m, (torch.randn(1, 3, 64, 64),))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "report.png"))
    ap.add_argument("--html", help="also keep the HTML page here")
    ap.add_argument("--size", default="1500,1000", help="browser window W,H")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.stderr.write("chromium not found (apt-get install chromium)\n")
        return 1
    res = build_report()
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(args.html) if args.html else Path(tmp) / "report.html"
        res.report.to_html(str(page), explain=("encoder.stages.2.layers.4.pwconv1", 17))
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp}/profile", f"--window-size={args.size}",
               f"--screenshot={os.path.abspath(args.out)}", page.resolve().as_uri()]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            return out.returncode
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
