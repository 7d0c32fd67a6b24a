"""ONNX bytes (without debug metadata) of a CNN run's checkpoints: onnx_check.py CKPT_DIR CYCLE..."""
import sys, torch
from fxminimize import training as sr
from fxminimize.training.data import load_fashion_mnist
xtr, _ = load_fashion_mnist("train", limit=8)
ex = (xtr[:4].clone(),)
ck = sys.argv.pop(1) + "/cycle_%03d.pt2"  # the run's checkpoint folder; then cycle numbers
order = [int(a) for a in sys.argv[1:]]
for c in order:
    m = sr.load_checkpoint(ck % c).eval()
    print(c, sr.deployable_size(m), sr.onnx_bytes(m, ex), flush=True)
