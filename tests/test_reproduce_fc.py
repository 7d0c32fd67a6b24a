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


def test_tables_label_missing_seeds_and_methods_partial(tmp_path):
    """tools/reproduce_tables.py: mean ± sd over the seeds that have a row, validation beside test,
    and a table missing a seed or a method says PARTIAL and names what is missing."""
    def rec(cycle, acc, test, ratio=10.0, ep=20):
        return {"cycle": cycle, "ratio": ratio, "accuracy": acc, "test_accuracy": test, "epochs_seen": ep}

    def run(seed, acc):
        hist = [dict(rec(0, 0.9, 0.9, 1.0, 10), params=100), dict(rec(1, acc, acc - 0.01), params=10)]
        base = {m: [rec(1, 0.8, 0.79)] for m in METHODS if m != "unstructured"}
        return {"seed": seed, "dense": {"params": 100, "accuracy": 0.9, "test_accuracy": 0.89, "epochs": 10},
                "squeeze_release": {"history": hist}, "report_cycles": {"10.0": 1}, "baselines": base}

    path = tmp_path / "r.json"
    path.write_text(json.dumps({"model": "m", "dataset": "d", "args": {"report_ratios": [10.0]},
                                "runs": [run(0, 0.86), run(1, 0.88)]}))
    text = run_tool("reproduce_tables.py", ["--fc", str(path), "--table", "fc", "--seeds", "0", "1", "2"])
    assert "PARTIAL" in text and "Squeeze-Release: seed 2" in text and "unstructured magnitude" in text
    sr_row = next(line for line in text.splitlines() if line.startswith("| Squeeze-Release"))
    # test 85.00 / 87.00 -> 86.00 ± 1.41; validation 86 / 88 -> 87.00 ± 1.41
    assert "| 86.00 ± 1.41 | 87.00 ± 1.41 | 20 | 0, 1 |" in sr_row, sr_row
    full = run_tool("reproduce_tables.py", ["--fc", str(path), "--table", "fc", "--seeds", "0", "1"])
    assert "PARTIAL (missing: unstructured magnitude (never minimized; nonzeros): seeds 0, 1)" in full
