"""tools/tune_summary.py, the CNN recipe re-tune's table: accuracies compared at the same size
(interpolated in log ratio between the cycles that bracket 15x and 25x), ranked by their mean over
seeds, budget-changing variants shown apart, and the test figures never read."""
import json
import math

from helpers import run_tool


def _write(folder, seed, name, points):
    hist = [{"cycle": 0, "ratio": 1.0, "accuracy": 0.8}]
    hist += [{"cycle": i, "ratio": r, "accuracy": a} for i, (r, a) in enumerate(points, 1)]  # no test_accuracy
    run = {"seed": seed, "done": True, "squeeze_release": {"history": hist}}
    (folder / f"s{seed}").mkdir(exist_ok=True)
    (folder / f"s{seed}" / f"cnn_{name}.json").write_text(json.dumps({"runs": [run]}))


def test_tune_summary_compares_at_the_same_size_and_ranks(tmp_path):
    # "a" lands at 10x/20x/30x; nearest in log ratio (as comparison.report_cycles): 20x for 15x, 30x for 25x
    # (linearly both are ties). At exactly 15x: 0.82 + (log 15 - log 10) / (log 20 - log 10) * (0.78 - 0.82)
    _write(tmp_path, 10, "a", [(10.0, 0.82), (20.0, 0.78), (30.0, 0.74)])
    _write(tmp_path, 11, "a", [(10.0, 0.84), (20.0, 0.80), (30.0, 0.76)])
    _write(tmp_path, 10, "b", [(15.0, 0.81), (25.0, 0.79), (40.0, 0.70)])
    _write(tmp_path, 10, "more", [(15.0, 0.90), (25.0, 0.90), (40.0, 0.90)])
    text = run_tool("tune_summary.py", [str(tmp_path), "--info", "more"])
    t15 = (math.log(15) - math.log(10)) / (math.log(20) - math.log(10))
    t25 = (math.log(25) - math.log(20)) / (math.log(30) - math.log(20))
    a10 = (0.82 - 0.04 * t15, 0.78 - 0.04 * t25)
    assert f"| a | 10 | 78.00 @ 20.00x | 74.00 @ 30.00x | {a10[0] * 100:.2f} | {a10[1] * 100:.2f} |" in text
    mean_a = 50 * (sum(a10) + sum(x + 0.02 for x in a10)) / 2
    assert "| 1 | b | 10 | 80.00 |" in text
    assert f"| 2 | a | 10, 11 | {mean_a:.2f} |" in text
    assert "| (not ranked) | more | 10 | 90.00 |" in text and "| 3 |" not in text
