"""tools/reproduce_fc.py end to end on a tiny synthetic Fashion-MNIST-shaped data set: the script
behind docs/results.md must run, land its cycles at the requested compressions, train both
baselines and the label-smoothing reference, and print its tables (seconds, no real data)."""
import json

from helpers import run_tool
from helpers import synthetic_fashion_mnist as _dataset


def test_reproduce_fc_small_run(tmp_path):
    _dataset(tmp_path)
    out = tmp_path / "fc.json"
    run_tool("reproduce_fc.py", ["--data-dir", str(tmp_path), "--seeds", "0", "--criterion", "unit", "--shrink", "0.7",
                       "--cycle-ratios", "1.5", "3", "--shrink-steps", "10", "--max-cycles", "2",
                       "--dense-epochs", "2", "--ft-epochs", "1", "--train-epochs", "1", "--floor", "0",
                       "--label-smoothing", "0.2", "--lr-schedule", "cosine", "--single-ratios", "3",
                       "--no-progress", "--out", str(out), "--ckpt-dir", str(tmp_path / "ck")])
    res = json.loads(out.read_text())
    run = res["runs"][0]
    n0 = run["dense"]["params"]
    assert n0 == 266_610 and run["dense"]["accuracy"] > 0.5
    assert run["dense_same_recipe"]["label_smoothing"] == 0.2
    hist = run["squeeze_release"]["history"]
    assert [r["cycle"] for r in hist] == [0, 1, 2]
    # each cycle lands at (or just past) the compression it was aimed at
    for rec, ratio in zip(hist[1:], (1.5, 3.0)):
        assert ratio <= rec["ratio"] <= 1.1 * ratio, (rec["ratio"], ratio)
        assert rec["onnx_bytes"] and rec["onnx_bytes"] < run["dense"]["onnx_bytes"]
    (sp,) = run["single_pass"]
    assert 3.0 <= sp["ratio"] <= 3.3 and sp["epochs_total"] == hist[-1]["epochs_total"]
    # one scratch network per cycle, of exactly that cycle's deployable size
    assert [s["params"] for s in run["scratch"]] == [r["params"] for r in hist[1:]]
    text = run_tool("reproduce_fc.py", ["--summary", "--out", str(out)])
    assert "Against the dense network trained with the same recipe" in text
    assert "| 2 |" in text and "single pass: target ratio" in text
