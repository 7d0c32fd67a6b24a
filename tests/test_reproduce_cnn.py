"""tools/reproduce_cnn.py end to end on a tiny synthetic Fashion-MNIST-shaped data set: the
structured criterion removes residual-stream channels in every cycle, each cycle minimizing the
previous cycle's output through its compensated LayerNorms (no rebuild), the release step gives
back the --extra zeros inside kept tensors, and the budget-matched baselines run."""
import json

from helpers import run_tool, synthetic_fashion_mnist


def _stage_dims(shapes, n_stages):
    """Stage widths of a (minimized) ConvNeXtFM of tools/reproduce_cnn.py, from its weight shapes."""
    return [shapes["stem.0.weight"][0]] + [shapes[f"downsample.{i}.1.weight"][0] for i in range(n_stages - 1)]


def test_reproduce_cnn_small_run(tmp_path):
    from fxminimize import training as sr
    from fxminimize.compensated import COMPENSATED_LAYER_NORM

    synthetic_fashion_mnist(tmp_path, n_train=256, n_test=128)
    out = tmp_path / "cnn.json"
    run_tool("reproduce_cnn.py", ["--data-dir", str(tmp_path), "--val-size", "64", "--seeds", "0", "--dims", "8", "16",
                                  "--depths", "1", "1", "--dense-epochs", "1", "--ft-epochs", "1", "--train-epochs", "1",
                                  "--keep", "0.6", "--max-drop-stream", "0.3", "--extra", "0.2", "--max-cycles", "3",
                                  "--floor", "0", "--label-smoothing", "0.1", "--report-ratios", "4",
                                  "--methods", "single_pass", "one_shot_release", "scratch",
                                  "--no-progress", "--out", str(out), "--ckpt-dir", str(tmp_path / "ck")])
    run = json.loads(out.read_text())["runs"][0]
    hist = run["squeeze_release"]["history"]
    assert [r["cycle"] for r in hist] == [0, 1, 2, 3]
    # the release is in play: every cycle gives back zeros left inside the kept tensors
    assert all(r["released"] > 0 for r in hist[1:]), [r["released"] for r in hist]
    dims = [_stage_dims(r["shapes"], 2) for r in hist]
    # stream channels of both stages leave in cycles 2 and 3 too: through the LayerNorms that
    # cycle 1 already compensated
    for before, after in zip(dims[1:], dims[2:]):
        assert all(a < b for a, b in zip(after, before)), dims
    sizes = [r["params"] for r in hist]
    assert all(b < a for a, b in zip(sizes, sizes[1:]))
    last = sr.load_checkpoint(hist[-1]["checkpoint"])
    norms = [(n.args[1], n.args[0].meta["val"].shape[-1]) for n in last.graph.nodes
             if n.target is COMPENSATED_LAYER_NORM]
    # (C of the original stream, channels present now) for the norms over both stages' streams
    assert (8, dims[-1][0]) in norms and (16, dims[-1][1]) in norms, norms
    (c,) = set(run["report_cycles"].values())
    for m in ("single_pass", "one_shot_release", "scratch"):
        (rec,) = run["baselines"][m]
        assert rec["epochs_seen"] == 1 + hist[c]["epochs_total"] == hist[c]["epochs_seen"], m
    # the same widths with plain LayerNorms: the cycle's size less the 3 scalars (count, s1, s2) each
    # compensated LayerNorm stores (fxminimize.size.stored_elements counts them)
    from fxminimize.size import graph_scalar_elements
    k = graph_scalar_elements(sr.load_checkpoint(hist[c]["checkpoint"]))
    assert k > 0
    assert run["baselines"]["scratch"][0]["params"] + k == hist[c]["params"]
