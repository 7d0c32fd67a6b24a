"""Squeeze-Release under torchrun: two gloo processes run one short cycle with DDP (CPU)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).resolve().parent.parent / "tools" / "ddp_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_worker(tmp_path, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), str(tmp_path), *extra]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=180)
    result = tmp_path / "ddp_result.json"
    assert proc.returncode == 0, (f"exit {proc.returncode}; result written: {result.exists()}\n"
                                  + proc.stdout[-3000:] + proc.stderr[-3000:])
    return json.loads(result.read_text())


def test_two_process_cycle_keep_modules(tmp_path):
    """The same cycle in module mode: after the shrink the ranks re-wrap the user's own class
    (nn.Sequential, resized), train it under DDP, and agree on its weights."""
    out = _run_worker(tmp_path, "--keep-modules")
    assert out["module_class"] == "Sequential"
    assert all(wrapped for _, wrapped in out["seen"]) and [p for p, _ in out["seen"]] == ["dense", "finetune", "train"]
    h = out["history"]
    assert [r["cycle"] for r in h] == [0, 1] and h[1]["params"] < h[0]["params"]
    assert out["checksums"][0] == out["checksums"][1]
    assert (tmp_path / "ckpt" / "cycle_001").is_dir()


def test_two_process_cycle(tmp_path):
    out = _run_worker(tmp_path)
    assert out["world_size"] == 2
    # the user's train step saw a DDP-wrapped model in every phase, before and after the shrink
    assert [p for p, _ in out["seen"]] == ["dense", "finetune", "train"]
    assert all(wrapped for _, wrapped in out["seen"])
    h = out["history"]
    assert [r["cycle"] for r in h] == [0, 1] and h[1]["params"] < h[0]["params"]
    assert out["checksums"][0] == out["checksums"][1]      # ranks hold the same weights
    assert (tmp_path / "ckpt" / "cycle_001.pt2").exists()
