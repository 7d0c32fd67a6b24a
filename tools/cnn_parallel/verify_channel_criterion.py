"""Check of reproduce_cnn.py's channel criterion: over five cycles on a random (16, 32) ConvNeXtFM, minimize removes exactly the chosen units,\neach cycle minimizing the previous cycle's minimized model (compensated LayerNorms included)."""
import sys, os, copy, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import reproduce_cnn as rc
from fxminimize import training as sr
from fxminimize import minimize
torch.manual_seed(0)
depths=(2,2)
m = rc.ConvNeXtFM((16,32), depths)
with torch.no_grad():
    for n,p in m.named_parameters():
        p.add_(0.1*torch.randn_like(p))
x = torch.randn(4,1,28,28)
prun = rc.stream_prunable(depths)
model = m
for cyc in range(1,6):
    crit = rc.ChannelScores(depths, keep=0.6, extra=0.2, max_drop_stream=0.0 if cyc==1 else 0.35)
    model.train()
    sel = crit.select(model)
    widths = {gid: w for gid, w, _ in rc.channel_units(model, depths)}
    scores = crit(model, prun(model))
    masks = sr.global_prune_masks(scores, 1.0)
    nz = sum(int((~mk).sum()) for mk in masks.values())
    sr.apply_masks(model, masks)
    model.eval()
    size_in = sr.deployable_size(model)
    res = minimize(model, (x,))
    small = res.module
    newwidths = {gid: w for gid, w, _ in rc.channel_units(small, depths)}
    exp = {g: widths[g] - len(sel.get(g, [])) for g in widths}
    gathers = [n for n in small.graph.nodes if 'index_select' in str(n.target)]
    with torch.no_grad():
        err = (small(x) - model(x)).abs().max().item()
    print(f"cycle {cyc}: size {size_in} -> {sr.deployable_size(small)} zeros {nz}; widths ok: {newwidths == exp}; gathers {len(gathers)}; max err {err:.2e}")
    print("  drop", crit.last)
    sr.release(small, 0.05, torch.Generator().manual_seed(cyc))
    path = f"/tmp/cnnruns/v_{cyc}.pt2"
    sr.save_checkpoint(small, (x,), path)
    model = sr.load_checkpoint(path)
    print("  family", rc.family_config({n: list(p.shape) for n,p in model.named_parameters()}, depths))
