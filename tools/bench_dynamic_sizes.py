"""Capture cost of dynamic sizes: minimize() with dynamic_sizes=True against False, interleaved.

    HF_HUB_OFFLINE=1 .venv/bin/python tools/bench_dynamic_sizes.py

Prints the median of 3 interleaved runs per setting for a 2-layer GPT-2 LM and the zoo's
convnext_small, and the load average (docs/design.md, "Capture and the canonical IR").
"""
import os, time, statistics, torch, warnings
warnings.filterwarnings("ignore")
os.environ["HF_HUB_OFFLINE"] = "1"
import transformers as T, fxminimize
from fxminimize.testing.zoo import ZOO, example_input, induce_dead_channels
torch.manual_seed(0)
g = T.GPT2LMHeadModel(T.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=100, n_positions=64)).eval()
g.config.use_cache = False
with torch.no_grad():
    for b in g.transformer.h: b.mlp.c_fc.weight[:, :128] = 0; b.mlp.c_fc.bias[:128] = 0
c = ZOO["convnext_small"][0](); induce_dead_channels(c, "stages.0.blocks.0.pwconv1", [0, 5, 9])
cases = {"gpt2_lm": (g, (torch.randint(0, 100, (2, 16)),)), "convnext_small": (c, (example_input("convnext_small"),))}
for name, (m, ex) in cases.items():
    t = {True: [], False: []}
    for rep in range(3):
        for dyn in (False, True):
            t0 = time.perf_counter(); fxminimize.minimize(m, ex, dynamic_sizes=dyn); t[dyn].append(time.perf_counter() - t0)
    a, b = statistics.median(t[False]), statistics.median(t[True])
    print(f"{name}: batch-only {a:.2f}s, every size {b:.2f}s, ratio {b/a:.2f}")
print("load", os.getloadavg())
