import subprocess
import sys


def test_demo_runs_and_prints_table():
    out = subprocess.run([sys.executable, "-m", "fxminimize", "demo"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "params", "before"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:4]}
    assert set(rows) == {"lenet_300_100", "resnet_small", "convnext_small"}
    for r in rows.values():
        before, after = int(r[1].replace(",", "")), int(r[2].replace(",", ""))
        assert after < before
        assert float(r[4]) < 1e-4


def test_cli_help_and_bad_command():
    ok = subprocess.run([sys.executable, "-m", "fxminimize", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "demo" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "fxminimize", "nonsense"], capture_output=True, text=True)
    assert bad.returncode != 0 and "invalid choice" in bad.stderr
