"""tools/reproduce_fc.py end to end on a tiny synthetic Fashion-MNIST-shaped data set: the script
behind docs/results.md must run Squeeze-Release on the training split, score everything on the
validation split, record test accuracy only beside it, run the five budget-matched baselines at
the reported cycles, resume without retraining, and feed tools/reproduce_tables.py (seconds, no
real data)."""
import json
import os
import subprocess
import sys

from helpers import TOOLS, run_tool
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


def test_levers_reuse_the_dense_model_and_distil(tmp_path):
    """``--dense-from`` starts a lever run from an earlier run's dense model (same record, same
    weights, so the same options reproduce the same Squeeze-Release run), refuses a run whose
    dense options differ; ``--distill`` changes the training after the dense model only."""
    import pytest

    _dataset(tmp_path)
    common = ["--data-dir", str(tmp_path), "--val-size", "128", "--seeds", "0", "--criterion", "unit",
              "--shrink", "0.7", "--cycle-ratios", "2", "--shrink-steps", "8", "--max-cycles", "1", "--dense-epochs", "2",
              "--ft-epochs", "1", "--train-epochs", "1", "--floor", "0", "--report-ratios", "2", "--no-progress",
              "--methods", "scratch"]

    def go(name, *extra):
        out = tmp_path / f"{name}.json"
        run_tool("reproduce_fc.py", common + ["--out", str(out), "--ckpt-dir", str(tmp_path / name), *extra])
        return json.loads(out.read_text())["runs"][0]

    base = go("base")
    again = go("again", "--dense-from", str(tmp_path / "base.json"))
    assert again["dense"]["reused_from"] == str(tmp_path / "base.json")
    assert {k: v for k, v in again["dense"].items() if k != "reused_from"} == base["dense"]
    assert (tmp_path / "again" / "fc_seed0" / "dense.pt").read_bytes() == (tmp_path / "base" / "fc_seed0" / "dense.pt").read_bytes()
    key = [(h["accuracy"], h["params"], h["release_drift"]) for h in base["squeeze_release"]["history"]]
    assert [(h["accuracy"], h["params"], h["release_drift"]) for h in again["squeeze_release"]["history"]] == key
    assert again["baselines"]["scratch"][0]["accuracy"] == base["baselines"]["scratch"][0]["accuracy"]
    kd = go("kd", "--dense-from", str(tmp_path / "base.json"), "--distill", "0.9", "--distill-temperature", "2")
    assert kd["dense"]["accuracy"] == base["dense"]["accuracy"]
    # the masked fine-tuning before the squeeze distils: the weights it leaves differ, and so does
    # how far the release moves their function (a float that any weight change moves)
    assert kd["squeeze_release"]["history"][1]["release_drift"] != base["squeeze_release"]["history"][1]["release_drift"]
    # the structured criterion (lever): whole pixels and neurons go, next to nothing is left to release
    neuron = go("neuron", "--dense-from", str(tmp_path / "base.json"), "--criterion", "neuron", "--methods")
    rec = neuron["squeeze_release"]["history"][1]
    assert rec["ratio"] >= 1.9 and rec["released"] < 0.02 * rec["params"], rec
    assert base["squeeze_release"]["history"][1]["released"] > 0.3 * rec["params"]
    # the lever table: validation only, Squeeze-Release against its own run's scratch network
    text = run_tool("reproduce_tables.py", ["--levers", str(tmp_path / "kd.json"), "--base", str(tmp_path / "base.json")])
    kd_row = next(line for line in text.splitlines() if line.startswith("| kd.json"))
    c = kd["report_cycles"]["2.0"]
    a = next(h for h in kd["squeeze_release"]["history"] if h["cycle"] == c)["accuracy"] * 100
    b = kd["baselines"]["scratch"][0]["accuracy"] * 100
    assert "distillation from dense (alpha 0.9, T 2.0)" in kd_row and f"{a:.2f} / {b:.2f} / {a - b:+.2f}" in kd_row
    assert "test" not in text
    with pytest.raises(Exception, match="trained differently"):
        run_tool("reproduce_fc.py", common + ["--out", str(tmp_path / "bad.json"), "--ckpt-dir", str(tmp_path / "bad"),
                                              "--dense-from", str(tmp_path / "base.json"), "--lr", "3e-3"])


def test_lever_table_pairs_only_runs_of_the_same_size_and_budget(tmp_path):
    """reproduce_tables.py --levers: a lever run without scratch rows is compared with the base
    run's (marked "(base)"); a run stopped early (no cycle of the reported size) says so instead of
    being paired with a scratch network of another size; the base is averaged over the levers' seeds."""
    def run(seed, cycles, scratch=None, stop_at=None):
        hist = [{"cycle": 0, "ratio": 1.0, "params": 100, "accuracy": 0.9, "epochs_seen": 10}]
        hist += [{"cycle": c, "ratio": 10.0 * c, "params": 10, "accuracy": a, "epochs_seen": 10 + 5 * c}
                 for c, a in cycles]
        r = {"seed": seed, "squeeze_release": {"history": hist, "done": True},
             "report_cycles": {"10.0": 1, "20.0": stop_at or 2}, "baselines": {}}
        if scratch:
            r["baselines"]["scratch"] = [{"cycle": c, "accuracy": a, "epochs_seen": 10 + 5 * c} for c, a in scratch]
        return r

    base = {"args": {"report_ratios": [10.0, 20.0], "release_scale": 0.05},
            "runs": [run(0, [(1, 0.80), (2, 0.70)], [(1, 0.85), (2, 0.75)]),
                     run(1, [(1, 0.90), (2, 0.80)], [(1, 0.95), (2, 0.85)])]}
    lever = {"args": {"release_scale": 1.0}, "runs": [run(0, [(1, 0.60)], stop_at=1)]}
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "lever.json").write_text(json.dumps(lever))
    text = run_tool("reproduce_tables.py", ["--levers", str(tmp_path / "lever.json"), "--base", str(tmp_path / "base.json")])
    base_row = next(line for line in text.splitlines() if line.startswith("| base.json"))
    lever_row = next(line for line in text.splitlines() if line.startswith("| lever.json"))
    assert "80.00 / 85.00 / -5.00 | 70.00 / 75.00 / -5.00 |" in base_row and base_row.endswith("| 0 |"), base_row
    assert "60.00 / 85.00 (base) / -25.00 | stopped early: seed 0 60.00 at 10.0x |" in lever_row, lever_row


def test_tables_merge_per_seed_files(tmp_path):
    """tools/reproduce_tables.py with one JSON per seed (runs started separately, each its own
    --out/--ckpt-dir): the merged tables equal those of one file holding every seed, --merge-out
    writes that file, and files that are not the same comparison are refused, naming why."""
    def rec(cycle, acc, ratio=10.0, ep=20):
        return {"cycle": cycle, "ratio": ratio, "accuracy": acc, "test_accuracy": acc - 0.01, "epochs_seen": ep}

    def run(seed, acc):
        hist = [dict(rec(0, 0.9, 1.0, 10), params=100), dict(rec(1, acc), params=10)]
        return {"seed": seed, "dense": {"params": 100, "accuracy": 0.9, "test_accuracy": 0.89, "epochs": 10},
                "squeeze_release": {"history": hist}, "report_cycles": {"10.0": 1},
                "baselines": {m: [rec(1, acc - 0.02)] for m in METHODS}}

    def result(seeds, accs, **args):
        a = {"report_ratios": [10.0], "seeds": seeds, "keep": 0.5, "out": f"/o{seeds}", "ckpt_dir": f"/c{seeds}"}
        a.update(args)
        return {"model": "m", "dataset": "d", "split": {"train": 10}, "machine": "box", "dates": ["2026-11-30"],
                "commands": [f"run {seeds}"], "args": {k: v for k, v in a.items() if v is not None},
                "runs": [run(s, x) for s, x in zip(seeds, accs)]}

    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps(result([0, 1, 2], [0.86, 0.88, 0.87])))
    # seed 0's file was written by an older tool without --distill: counts as --distill 0 (its default)
    parts = [result([0], [0.86], distill=None), result([2], [0.87], distill=0.0), result([1], [0.88], distill=0.0)]
    names = []
    for i, p in enumerate(parts):
        names.append(str(tmp_path / f"seed{i}.json"))
        (tmp_path / f"seed{i}.json").write_text(json.dumps(p))
    ref = run_tool("reproduce_tables.py", ["--cnn", str(whole), "--table", "cnn"])
    merged_out = tmp_path / "merged.json"
    text = run_tool("reproduce_tables.py", ["--cnn", *names, "--table", "cnn", "--merge-out", str(merged_out)])
    tables = lambda t: [line for line in t.splitlines() if line.startswith("|")]  # noqa: E731
    assert tables(text) == tables(ref) and "PARTIAL" not in text
    assert "| 86.00 ± 1.00 | 87.00 ± 1.00 | 20 | 0, 1, 2 |" in text
    assert "Merged from: seed0.json: seeds [0]; seed1.json: seeds [2]; seed2.json: seeds [1]" in text
    merged = json.loads(merged_out.read_text())
    assert [r["seed"] for r in merged["runs"]] == [0, 1, 2] and merged["args"]["seeds"] == [0, 1, 2]
    assert merged["commands"] == ["run [0]", "run [2]", "run [1]"]
    assert tables(run_tool("reproduce_tables.py", ["--cnn", str(merged_out), "--table", "cnn"])) == tables(ref)

    def refused(part, why):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(part))
        out = subprocess.run([sys.executable, os.path.join(TOOLS, "reproduce_tables.py"), "--cnn", names[0], str(bad),
                              "--table", "cnn"], capture_output=True, text=True, env=dict(os.environ, PYTHONSAFEPATH="1"))
        assert out.returncode != 0 and why in out.stderr, out.stderr

    refused(result([1], [0.88], keep=0.6), "option 'keep' differs")
    refused(result([0], [0.88]), "seed 0 is in both")
    refused(result([1], [0.88], extra=0.2), "has no option 'extra'")
    refused(dict(result([1], [0.88]), split={"train": 20}), "split")


def test_no_test_figure_chooses_anything(tmp_path):
    """The claim of docs/results.md that no test-set figure chooses anything, checked by running:
    the same small comparison on two data sets that differ only in the test labels (every test
    label shifted by one class) chooses exactly the same: every record but its ``test_accuracy``
    (validation accuracy, sizes, shapes, reported cycles, released zeros, the self-check) is
    identical, while the test figures do differ (the test set is read, only to be recorded)."""
    import gzip
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    _dataset(a)
    shutil.copytree(a, b)
    path = b / "t10k-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(path.read_bytes()))
    labels[8:] = bytes((x + 1) % 10 for x in labels[8:])     # IDX: 8-byte header, then one byte per label
    path.write_bytes(gzip.compress(bytes(labels)))
    results = []
    for d in (a, b):
        out = d / "fc.json"
        run_tool("reproduce_fc.py", ["--data-dir", str(d), "--val-size", "128", "--seeds", "0", "--criterion", "unit",
                                     "--shrink", "0.7", "--cycle-ratios", "1.5", "3", "--shrink-steps", "10",
                                     "--max-cycles", "2", "--dense-epochs", "2", "--ft-epochs", "1", "--train-epochs", "1",
                                     "--floor", "0", "--report-ratios", "3", "--no-progress", "--out", str(out),
                                     "--ckpt-dir", str(d / "ck")])
        results.append(json.loads(out.read_text())["runs"])

    tests = []

    def strip(x):
        if isinstance(x, dict):
            if "test_accuracy" in x:
                tests.append(x["test_accuracy"])
            return {k: strip(v) for k, v in x.items() if k not in ("test_accuracy", "time_s", "checkpoint")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    first = strip(results[0])
    n = len(tests)
    assert strip(results[1]) == first
    assert n > 5 and len(tests) == 2 * n
    assert tests[:n] != tests[n:]
