"""Squeeze-Release: pruning masks, mask holding, the release rule, the cycle, checkpoints/resume,
the single-pass baseline. Synthetic data only (seconds)."""
import json
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fxminimize
from fxminimize import training as sr
from fxminimize.passes.gathers import compose_gathers, is_index_select


def _data(n=256, d=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x[:, d // 2:] *= 0.02
    y = (x @ torch.randn(d, 3, generator=g)).argmax(-1)
    return x, y


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 48), nn.ReLU(), nn.Linear(48, 24), nn.ReLU(), nn.Linear(24, 3))


X, Y = _data()
CALLS = []


def train_fn(model, opt, epochs, info):
    CALLS.append(info["phase"])
    model.train()
    for _ in range(epochs):
        for i in range(0, X.shape[0], 64):
            opt.zero_grad()
            F.cross_entropy(model(X[i:i + 64]), Y[i:i + 64]).backward()
            opt.step()


def eval_fn(model):
    return sr.accuracy(model, X, Y)


def adam(params):
    return torch.optim.Adam(params, lr=1e-2)


def _sr(model, **kw):
    kw.setdefault("schedule", 0.9)
    kw.setdefault("max_cycles", 3)
    return sr.SqueezeRelease(model, (X[:4],), train_fn, eval_fn, optimizer_fn=adam, **kw)


def test_global_prune_masks_counts_and_nesting():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(10, 10, generator=g), "b": torch.rand(5, 4, generator=g) * 3}
    m1 = sr.global_prune_masks(scores, 0.5)
    assert sum(int((~m).sum()) for m in m1.values()) == 60
    thr = max(float(s[~m].max()) for s, m in zip(scores.values(), m1.values()))
    assert all(float(s[m].min()) >= thr for s, m in zip(scores.values(), m1.values()))
    m2 = sr.global_prune_masks(scores, 0.5, current=m1)
    assert sum(int(m.sum()) for m in m2.values()) == 30
    assert all(bool((m2[k] <= m1[k]).all()) for k in m1)
    with pytest.raises(ValueError):
        sr.global_prune_masks(scores, 1.5)


def test_global_prune_masks_never_drop_infinite_scores():
    scores = {"a": torch.tensor([1.0, float("inf"), 2.0]), "b": torch.tensor([[float("inf"), 0.5]])}
    masks = sr.global_prune_masks(scores, 1.0)
    assert masks["a"].tolist() == [False, True, False] and masks["b"].tolist() == [[True, False]]


def test_prunable_parameters_are_weights_only():
    names = set(sr.prunable_parameters(_mlp()))
    assert names == {"0.weight", "2.weight", "4.weight"}


def test_lamp_keeps_each_tensors_largest_entry():
    m = _mlp()
    ps = sr.prunable_parameters(m)
    s = sr.lamp_scores(m, ps)
    masks = sr.global_prune_masks(s, 0.99)
    for n, p in ps.items():
        assert bool(masks[n].reshape(-1)[p.detach().abs().reshape(-1).argmax()])


def test_taylor_scores_use_gradients():
    m = _mlp()
    crit = sr.TaylorScores(lambda mod, b: F.cross_entropy(mod(b[0]), b[1]), [(X[:64], Y[:64])])
    s = crit(m, sr.prunable_parameters(m))
    assert set(s) == set(sr.prunable_parameters(m)) and all(bool((v >= 0).all()) for v in s.values())
    assert all(p.grad is None for p in m.parameters())


def test_hold_masks_keeps_zeros_through_adam():
    m = _mlp()
    masks = sr.global_prune_masks(sr.magnitude_scores(m, sr.prunable_parameters(m)), 0.7)
    sr.apply_masks(m, masks)
    opt = adam(m.parameters())
    h = sr.hold_masks(opt, m, masks)
    train_fn(m, opt, 2, {"phase": "t"})
    params = dict(m.named_parameters())
    for n, mask in masks.items():
        assert bool((params[n][~mask] == 0).all())
        assert bool((params[n][mask] != 0).all())
    h.remove()


def test_release_rule():
    torch.manual_seed(0)
    w = nn.Linear(200, 100)
    with torch.no_grad():
        w.weight[:, :100] = 0
    before = w.weight.detach().clone()
    sigma = float(before[:, 100:].std())
    info = sr.release(w, 0.1, torch.Generator().manual_seed(1))
    assert info["released"] == 10000 and info["of"] == 20000
    torch.testing.assert_close(w.weight[:, 100:], before[:, 100:])
    new = w.weight[:, :100].detach()
    assert bool((new != 0).all())
    assert abs(float(new.std()) / (0.1 * sigma) - 1) < 0.05
    assert float(new.mean().abs()) < 0.01 * sigma


def test_cycle_shrinks_records_and_checkpoints(tmp_path):
    model = _mlp()
    train_fn(model, adam(model.parameters()), 3, {"phase": "dense"})
    CALLS.clear()
    res = _sr(model, checkpoint_dir=str(tmp_path), max_cycles=2).run()
    h = res.history
    assert [r.cycle for r in h] == [0, 1, 2]
    assert h[0].params == sr.deployable_size(model) == res.params_unpruned
    assert h[1].params < h[0].params and h[2].params <= h[1].params
    assert all(abs(r.ratio - h[0].params / r.params) < 1e-9 for r in h)
    assert h[1].release_drift is not None and 0 < h[1].release_drift < 1
    assert h[1].accuracy_pruned is not None and h[1].epochs == 2 and h[2].epochs_total == 4
    assert CALLS == ["finetune", "train", "finetune", "train"]
    assert sr.deployable_size(res.module) == h[-1].params
    assert isinstance(res.module, torch.fx.GraphModule)
    # machine-readable record and per-cycle checkpoints that load without pickle of code
    data = json.loads((tmp_path / "history.json").read_text())
    assert [r["params"] for r in data["history"]] == [r.params for r in h]
    assert data["stop_reason"] == res.stop_reason
    for r in h:
        assert os.path.exists(r.checkpoint)
    loaded = fxminimize.load(h[-1].checkpoint)
    torch.testing.assert_close(loaded(X), res.module(X))
    assert sr.deployable_size(loaded) == h[-1].params


def test_resume_continues_from_last_cycle(tmp_path):
    model = _mlp()
    train_fn(model, adam(model.parameters()), 3, {"phase": "dense"})
    first = _sr(model, checkpoint_dir=str(tmp_path), max_cycles=1).run()
    assert first.history[-1].cycle == 1
    # a finished run is returned as is
    again = _sr(_mlp(), checkpoint_dir=str(tmp_path), max_cycles=1).run()
    assert [r.params for r in again.history] == [r.params for r in first.history]
    # clear the stop and raise max_cycles: the run resumes at cycle 2 from the checkpoint
    hp = tmp_path / "history.json"
    data = json.loads(hp.read_text())
    data["stop_reason"] = None
    hp.write_text(json.dumps(data))
    CALLS.clear()
    res = _sr(_mlp(seed=5), checkpoint_dir=str(tmp_path), max_cycles=2).run()
    assert [r.cycle for r in res.history] == [0, 1, 2]
    assert res.history[1].params == first.history[1].params
    assert CALLS == ["finetune", "train"]
    assert res.history[2].params <= res.history[1].params


def test_stops_when_no_unit_removed():
    model = _mlp()
    res = _sr(model, schedule=0.0, max_cycles=5).run()
    assert len(res.history) == 2 and res.stop_reason == "a cycle removed no unit"
    assert res.history[1].channels_removed == 0


def test_stops_at_target_and_floor():
    model = _mlp()
    train_fn(model, adam(model.parameters()), 3, {"phase": "dense"})
    target = sr.deployable_size(model) - 1
    res = _sr(model, target_params=target, max_cycles=5).run()
    assert res.history[-1].params <= target and "target size" in res.stop_reason
    res = _sr(_mlp(), schedule=0.9, accuracy_floor=1.01, max_cycles=5).run()
    assert len(res.history) == 2 and "floor" in res.stop_reason
    assert res.best(0.0) is not None and res.best(2.0) is None


def test_schedule_forms():
    s = _sr(_mlp(), schedule=[0.5, 0.7])
    assert [s.fraction(k) for k in (1, 2, 3)] == [0.5, 0.7, 0.7]
    assert _sr(_mlp(), schedule=lambda k: 0.1 * k).fraction(3) == pytest.approx(0.3)


def test_single_pass_baseline():
    model = _mlp()
    train_fn(model, adam(model.parameters()), 3, {"phase": "dense"})
    n0 = sr.deployable_size(model)
    CALLS.clear()
    small, rec = sr.single_pass(model, (X[:4],), train_fn, eval_fn, optimizer_fn=adam, sparsity=0.95, epochs=3)
    assert CALLS == ["finetune"] and rec.epochs == 3 and rec.release_drift is None
    assert rec.params == sr.deployable_size(small) < n0 and rec.ratio == pytest.approx(n0 / rec.params)
    # the minimized model is exactly the pruned one: its zeros are still there
    assert any(bool((p == 0).any()) for p in sr.prunable_parameters(small).values())


def test_onnx_bytes():
    small, _ = sr.single_pass(_mlp(), (X[:4],), train_fn, eval_fn, optimizer_fn=adam, sparsity=0.9, epochs=1)
    size = sr.onnx_bytes(small, (X[:4],))
    raw = sr.onnx_bytes(small, (X[:4],), strip_debug=False)
    n = sr.deployable_size(small)
    # float32 weights plus a small graph; the exporter's debug metadata only in the raw file
    assert size is not None and raw is not None
    assert 4 * n * 0.9 < size < raw and size < 4 * n + 20_000, (n, size, raw)


def test_shrink_target_schedule():
    model = _mlp()
    train_fn(model, adam(model.parameters()), 3, {"phase": "dense"})
    n0 = sr.deployable_size(model)
    res = _sr(model, schedule=sr.ShrinkTarget(keep=0.6, steps=6), max_cycles=1).run()
    rec = res.history[1]
    assert rec.params <= 0.6 * n0 and 0.5 <= rec.prune_fraction <= 0.9995
    with pytest.raises(ValueError):
        sr.ShrinkTarget(keep=1.5)


def test_shrink_target_absolute_sizes_per_cycle():
    model = _mlp()
    train_fn(model, adam(model.parameters()), 3, {"phase": "dense"})
    n0 = sr.deployable_size(model)
    sizes = [round(n0 / 1.5), round(n0 / 4.0)]
    res = _sr(model, schedule=sr.ShrinkTarget(keep=0.9, steps=10, sizes=sizes), max_cycles=3).run()
    got = [r.params for r in res.history[1:]]
    # each listed cycle lands at or just below its size (bisection), the third falls back to keep=0.9
    assert sizes[0] * 0.9 <= got[0] <= sizes[0] and sizes[1] * 0.85 <= got[1] <= sizes[1], (sizes, got)
    assert got[2] <= 0.9 * got[1]
    st = sr.ShrinkTarget(keep=0.5, sizes=[100])
    assert st.target(1000, 1) == 100 and st.target(1000, 2) == 500 and st.target(80, 1) == 40
    with pytest.raises(ValueError):
        sr.ShrinkTarget(sizes=[0])


def test_cosine_lr_schedule_decays_and_restores():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    class Loader:
        def __len__(self):
            return 4

        def __iter__(self):
            for i in range(4):
                yield X[i * 8:(i + 1) * 8], Y[i * 8:(i + 1) * 8]

    opt.register_step_pre_hook(lambda o, a, k: seen.append(o.param_groups[0]["lr"]))
    sr.train_epochs(model, opt, Loader(), 2, progress=False, lr_schedule="cosine")
    assert len(seen) == 8 and seen[0] == pytest.approx(0.1) and all(a >= b for a, b in zip(seen, seen[1:])) and seen[-1] < 0.01
    assert opt.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError):
        sr.train_epochs(model, opt, Loader(), 1, progress=False, lr_schedule="step")


def test_unit_scores_favour_whole_rows():
    w = torch.ones(4, 6)
    w[1] *= 0.5  # a weak row: all its entries rank below equal-magnitude entries elsewhere
    lin = nn.Linear(6, 4)
    with torch.no_grad():
        lin.weight.copy_(w)
    s = sr.unit_scores(lin, {"weight": lin.weight})["weight"]
    assert s.shape == w.shape and bool((s[1] < s[0].min()).all())
    masks = sr.global_prune_masks({"weight": s}, 0.25)
    assert not bool(masks["weight"][1].any()) and bool(masks["weight"][[0, 2, 3]].all())


def test_prunable_option_masks_one_dim_tensors():
    """A custom ``prunable`` lets a structured criterion zero 1-D tensors (here a layer scale)."""

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(24, 16), nn.Linear(16, 3)
            self.scale = nn.Parameter(torch.ones(16))

        def forward(self, x):
            return self.fc2(self.scale * F.relu(self.fc1(x)))

    torch.manual_seed(0)
    model = Scaled()

    def prunable(m):
        return {n: p for n, p in m.named_parameters() if p.dim() >= 2 or n.endswith("scale")}

    def criterion(m, params):
        scores = {n: torch.ones_like(p) for n, p in params.items()}
        scores["scale"][:4] = 0.0  # the first four hidden units go through their scale alone
        return scores

    n_scale = 16
    frac = 4 / sum(p.numel() for p in prunable(model).values())
    res = _sr(model, schedule=frac, criterion=criterion, prunable=prunable, max_cycles=1, do_release=False,
              finetune_epochs=0, train_epochs=0).run(resume=False)
    assert res.history[1].shapes["fc1.weight"][0] == n_scale - 4


def test_compose_gathers_folds_input_index_chain():
    """Two cycles that both drop inputs: the second model's chained input gathers fold into one."""
    x = X.clone()
    model = _mlp()
    train_fn(model, adam(model.parameters()), 3, {"phase": "dense"})
    with torch.no_grad():
        model[0].weight[:, 20:] = 0  # inputs 20.. unread
    first = fxminimize.minimize(model.eval(), (x[:4],)).module
    with torch.no_grad():
        first.get_parameter("0.weight")[:, 10:] = 0  # of the 20 kept, 10.. unread
    second = fxminimize.minimize(first.eval(), (x[:4],)).module
    gathers = lambda m: sum(1 for n in m.graph.nodes if is_index_select(n))  # noqa: E731
    # the index_select rule re-bases the first gather: minimize itself leaves one, no chain
    assert gathers(second) == 1 and compose_gathers(second) == 0
    # a chain built by hand (what minimize made before that rule) still folds into one
    g = second.graph
    sel = next(n for n in g.nodes if is_index_select(n))
    second.register_buffer("chain_idx", torch.arange(len(getattr(second, sel.args[2].target))).flip(0))
    with g.inserting_after(sel):
        attr = g.get_attr("chain_idx")
    with g.inserting_after(attr):
        outer = g.call_function(torch.ops.aten.index_select.default, (sel, sel.args[1], attr))
    sel.replace_all_uses_with(outer)
    outer.args = (sel, sel.args[1], attr)
    with torch.no_grad():
        lin = second.get_parameter("0.weight")
        lin.copy_(lin.flip(1))   # reads the reversed features: the same function
    second.recompile()
    ref = second(x)
    n_before = sr.deployable_size(second)
    assert compose_gathers(second) == 1 and gathers(second) == 1
    assert torch.equal(second(x), ref) and sr.deployable_size(second) < n_before
    assert compose_gathers(model) == 0  # not a GraphModule: left alone


def test_checkpoint_does_not_store_the_base_of_a_view(tmp_path):
    big = torch.randn(20000, 24)
    model = _mlp().eval()
    path = str(tmp_path / "m.pt2")
    sr.save_checkpoint(model, (big[:4],), path)
    assert os.path.getsize(path) < 4 * big.numel() / 4  # far below the 1.9 MB base tensor
    assert torch.allclose(sr.load_checkpoint(path)(X[:4]), model(X[:4]))


def test_distillation_loss_formula():
    g = torch.Generator().manual_seed(3)
    z, zt = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    hard = F.cross_entropy(z, y)
    t = 3.0
    p_t = F.softmax(zt / t, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(z / t, -1))).sum(-1).mean() * t * t
    torch.testing.assert_close(sr.distillation_loss(z, zt, hard, 0.25, t), 0.75 * hard + 0.25 * kl,
                               rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(sr.distillation_loss(z, zt, hard, 0.0, t), hard)
    # a student equal to its teacher pays nothing for the soft term
    torch.testing.assert_close(sr.distillation_loss(z, z, hard, 1.0, t), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_train_epochs_with_teacher_moves_towards_it():
    teacher = _mlp(seed=1)
    student = _mlp(seed=2)
    loader = [(X[i:i + 64], Y[i:i + 64]) for i in range(0, X.shape[0], 64)]

    def gap(m):
        with torch.no_grad():
            return F.kl_div(F.log_softmax(m(X), -1), F.log_softmax(teacher(X), -1), reduction="batchmean",
                            log_target=True).item()

    before = gap(student)
    sr.train_epochs(student, torch.optim.Adam(student.parameters(), 1e-2), loader, 20, progress=False,
                    teacher=teacher, distill_alpha=1.0, distill_temperature=1.0)
    assert gap(student) < 0.25 * before
    assert not teacher.training
    with pytest.raises(ValueError, match="distill_alpha"):
        sr.train_epochs(student, torch.optim.Adam(student.parameters()), loader, 1, progress=False,
                        teacher=teacher, distill_alpha=1.5)


def test_readme_squeeze_release_example_runs(tmp_path, monkeypatch):
    """The README's Squeeze-Release snippet, run as written on synthetic data."""
    import re
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    section = readme.split("## Squeeze-Release", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    model = _mlp()
    train_fn(model, adam(model.parameters()), 5, {"phase": "dense"})
    ns = {"torch": torch, "model": model, "example_inputs": (X[:8],), "x_test": X, "y_test": Y,
          "x_train": X, "y_train": Y,   # for a snippet that holds out its own validation split (docs/results.md's)
          "loader": [(X[i:i + 64], Y[i:i + 64]) for i in range(0, X.shape[0], 64)]}
    exec(compile(code, "README.md", "exec"), ns)
    result = ns["result"]
    assert result.history[-1].ratio > 2.0, [r.line() for r in result.history]
    assert len(result.history) >= 2 and os.path.exists(os.path.join("runs", "sr", "history.json"))
    assert sr.deployable_size(result.module) == result.history[-1].params


def test_results_doc_validation_example_runs(tmp_path, monkeypatch):
    """docs/results.md's snippet (every choice on a held-out split, the test set read once at the
    end), run as written on synthetic data: the records' accuracy is the held-out split's."""
    import re
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "results.md")).read()
    code = re.search(r"```python\n(.*?)```", doc.split("## Choosing on validation", 1)[1], re.S).group(1)
    assert "x_test" not in code.split("result = run.run()")[0]   # nothing before the end reads the test set
    monkeypatch.chdir(tmp_path)
    x, y = _data(720)
    model = _mlp()
    train_fn(model, adam(model.parameters()), 5, {"phase": "dense"})
    ns = {"torch": torch, "model": model, "example_inputs": (x[:8],), "x_train": x[:600], "y_train": y[:600],
          "x_test": x[600:], "y_test": y[600:]}
    exec(compile(code, "docs/results.md", "exec"), ns)
    result = ns["result"]
    assert result.history[-1].ratio > 2.0, [r.line() for r in result.history]
    assert result.history[-1].accuracy == sr.accuracy(result.module, x[500:600], y[500:600])
    assert ns["test_acc"] == sr.accuracy(result.module, x[600:], y[600:])
    with pytest.raises(ValueError, match="validation size"):
        sr.holdout(x, y, 720)
    with pytest.raises(ValueError, match="examples"):
        sr.holdout(x, y[:5], 10)


def test_per_cycle_epochs_sequence():
    """finetune_epochs / train_epochs as sequences: cycle k uses item k-1, the last repeating;
    the records and the training calls follow them."""
    epochs_seen = []

    def counting_train_fn(model, opt, epochs, info):
        epochs_seen.append((info["cycle"], info["phase"], epochs))
        train_fn(model, opt, epochs, info)

    run = sr.SqueezeRelease(_mlp(), (X[:4],), counting_train_fn, eval_fn, optimizer_fn=adam, schedule=0.5,
                            max_cycles=3, finetune_epochs=[1, 0], train_epochs=[2, 1, 3])
    assert [run.epochs(k) for k in (1, 2, 3, 4)] == [(1, 2), (0, 1), (0, 3), (0, 3)]
    res = run.run(resume=False)
    assert [(r.epochs, r.epochs_total) for r in res.history[1:]] == [(3, 3), (1, 4), (3, 7)]
    assert epochs_seen == [(1, "finetune", 1), (1, "train", 2), (2, "train", 1), (3, "train", 3)]


def test_history_records_the_self_check(tmp_path):
    """Every cycle's record, in memory and in history.json, holds minimize's self-check of its
    squeeze: the report's max_abs_error and verified_checks (cycle 0, no squeeze: None)."""
    from fxminimize.training import cycle as cycle_mod

    reports = []
    real_minimize = cycle_mod.minimize

    def spying_minimize(*args, **kw):
        res = real_minimize(*args, **kw)
        reports.append(res.report)
        return res

    model = _mlp()
    train_fn(model, adam(model.parameters()), 3, {"phase": "dense"})
    cycle_mod.minimize = spying_minimize
    try:
        res = _sr(model, schedule=0.5, max_cycles=2, checkpoint_dir=str(tmp_path)).run(resume=False)
    finally:
        cycle_mod.minimize = real_minimize
    h = res.history
    assert len(h) == 3 and len(reports) == 2
    assert h[0].max_abs_error is None and h[0].verified_checks is None
    data = json.loads((tmp_path / "history.json").read_text())["history"]
    for rec, saved, rep in zip(h[1:], data[1:], reports):
        assert rep.verified_checks > 0
        assert rec.verified_checks == saved["verified_checks"] == rep.verified_checks
        assert rec.max_abs_error == saved["max_abs_error"] == rep.max_abs_error
        assert 0.0 <= rec.max_abs_error < 1e-3
