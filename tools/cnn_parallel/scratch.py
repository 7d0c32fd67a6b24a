"""Scratch baseline of reproduce_cnn.py for given cycles of a finished/ongoing SR history, in its
own process: ConvNeXtFM at the cycle's widths, torch.manual_seed(seed + 1000), dense-epochs epochs,
same optimizer / lr schedule / batch as the script."""
import json, os, sys, time, argparse, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import reproduce_cnn as rc
from fxminimize import training as sr
from fxminimize.training.data import TensorLoader, load_fashion_mnist
ap = argparse.ArgumentParser()
ap.add_argument("--history"); ap.add_argument("--cycles", type=int, nargs="+"); ap.add_argument("--out")
ap.add_argument("--seed", type=int, default=0); ap.add_argument("--epochs", type=int, default=6)
ap.add_argument("--depths", type=int, nargs="+", default=[2, 2])
a = ap.parse_args()
torch.set_num_threads(1)
xtr, ytr = load_fashion_mnist("train"); xte, yte = load_fashion_mnist("test")
hist = {r["cycle"]: r for r in json.load(open(a.history))["history"]}
res = []
for c in a.cycles:
    rec = hist[c]
    cfg = rc.family_config(rec["shapes"], a.depths)
    torch.manual_seed(a.seed + 1000)
    net = rc.ConvNeXtFM(cfg["dims"], cfg["depths"], cfg["hidden"])
    loader = TensorLoader(xtr, ytr, 128, seed=a.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.05)
    t0 = time.perf_counter()
    sr.train_epochs(net, opt, loader, a.epochs, progress=False, lr_schedule="cosine")
    res.append({"cycle": c, "params": sr.deployable_size(net), "sr_params": rec["params"], "config": cfg,
                "accuracy": sr.accuracy(net, xte, yte, batch_size=500), "epochs": a.epochs,
                "time_s": time.perf_counter() - t0})
    print(res[-1], flush=True)
    json.dump({"args": vars(a), "runs": [{"scratch": res}]}, open(a.out, "w"), indent=1)
