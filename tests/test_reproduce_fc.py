"""tools/reproduce_fc.py end to end on a tiny synthetic Fashion-MNIST-shaped data set: the script
behind docs/results.md must run Squeeze-Release on the training split, score everything on the
validation split, record test accuracy only beside it, run the five budget-matched baselines at
the reported cycles, resume without retraining, and feed tools/reproduce_tables.py (seconds, no
real data)."""
import json

from helpers import run_tool
from helpers import synthetic_fashion_mnist as _dataset

METHODS = ("single_pass", "one_shot_release", "iterative_no_release", "scratch", "unstructured")


def test_reproduce_fc_small_run(tmp_path):
    _dataset(tmp_path)
    out = tmp_path / "fc.json"
    args = ["--data-dir", str(tmp_path), "--val-size", "128", "--seeds", "0", "--criterion", "unit", "--shrink", "0.7",
            "--cycle-ratios", "1.5", "3", "--shrink-steps", "10", "--max-cycles", "2", "--dense-epochs", "2",
            "--ft-epochs", "1", "--train-epochs", "1", "--floor", "0", "--label-smoothing", "0.2",
            "--report-ratios", "3", "--no-progress", "--out", str(out), "--ckpt-dir", str(tmp_path / "ck")]
    run_tool("reproduce_fc.py", args)
    res = json.loads(out.read_text())
    assert res["split"] == {"train": 384, "validation": 128, "validation_rule": "the last 128 images of the training file",
                            "test": 256}
    run = res["runs"][0]
    n0 = run["dense"]["params"]
    assert n0 == 266_610 and run["dense"]["accuracy"] > 0.3 and "test_accuracy" in run["dense"]
    hist = run["squeeze_release"]["history"]
    assert [r["cycle"] for r in hist] == [0, 1, 2]
    for rec, ratio in zip(hist[1:], (1.5, 3.0)):
        assert ratio <= rec["ratio"] <= 1.1 * ratio, (rec["ratio"], ratio)
        assert rec["max_abs_error"] is not None and rec["verified_checks"] > 0
        assert rec["test_accuracy"] is not None
    assert run["report_cycles"] == {"3.0": 2}
    for m in METHODS:
        (rec,) = run["baselines"][m]
        assert rec["cycle"] == 2 and rec["epochs_seen"] == hist[2]["epochs_seen"] == 2 + hist[2]["epochs_total"], m
    # the unstructured model holds as many nonzeros as the Squeeze-Release model stores elements
    assert run["baselines"]["unstructured"][0]["params"] == hist[2]["params"]
    assert run["baselines"]["scratch"][0]["params"] == hist[2]["params"]
    # the same command again: everything is there, nothing is retrained, the file is unchanged but for the log
    before = json.loads(out.read_text())
    run_tool("reproduce_fc.py", args)
    after = json.loads(out.read_text())
    assert after["runs"] == before["runs"] and len(after["commands"]) == 2
    text = run_tool("reproduce_tables.py", ["--fc", str(out), "--table", "fc"])
    assert "Squeeze-Release" in text and "unstructured" in text and "validation" in text
