"""Budget-matched baselines (fxminimize.training.baselines, .comparison): every baseline trains
exactly the epochs the Squeeze-Release model it is compared with has seen (dense included), the
unstructured baseline holds exactly the nonzero count asked for, iterative pruning without
release never brings a zero back, and a comparison resumes from what it saved. Synthetic data
only (seconds)."""
import copy
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fxminimize import training as sr
from fxminimize.training import baselines as bl
from fxminimize.training.comparison import report_cycles, run_comparison


def _data(n=256, d=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x[:, d // 2:] *= 0.02
    y = (x @ torch.randn(d, 3, generator=g)).argmax(-1)
    return x, y


X, Y = _data()
XV, YV = _data(128, seed=1)
DENSE_EPOCHS = 2


class Counter:
    """A train step that counts the epochs it is asked to train (and trains them)."""

    def __init__(self):
        self.epochs = 0
        self.calls = []

    def __call__(self, model, opt, epochs, info):
        self.epochs += epochs
        self.calls.append((info.get("phase"), epochs))
        model.train()
        for _ in range(epochs):
            for i in range(0, X.shape[0], 64):
                opt.zero_grad()
                F.cross_entropy(model(X[i:i + 64]), Y[i:i + 64]).backward()
                opt.step()


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 48), nn.ReLU(), nn.Linear(48, 24), nn.ReLU(), nn.Linear(24, 3))


def _eval(model):
    return sr.accuracy(model, XV, YV)


def _adam(params):
    return torch.optim.Adam(params, lr=1e-2)


def _dense():
    m = _mlp()
    Counter()(m, _adam(m.parameters()), DENSE_EPOCHS, {"phase": "dense"})
    return m.eval()


SR_KW = dict(schedule=sr.ShrinkTarget(0.6, steps=8), finetune_epochs=1, train_epochs=[2, 1], max_cycles=2, seed=3)


def _squeeze_release(dense, **kw):
    count = Counter()
    run = sr.SqueezeRelease(copy.deepcopy(dense), (X[:4],), count, _eval, optimizer_fn=_adam, **dict(SR_KW, **kw))
    return run.run(resume=False), count


def test_every_baseline_trains_the_epochs_squeeze_release_saw():
    """For every cycle c: epochs counted by each baseline's train step (+ the dense epochs it
    starts from) == dense + the epochs Squeeze-Release trained up to c == its ``epochs_seen``."""
    dense = _dense()
    n0 = sr.deployable_size(dense)
    res, sr_count = _squeeze_release(dense)
    assert sr_count.epochs == res.history[-1].epochs_total == 5    # (1 + 2) + (1 + 1)
    for c in (1, 2):
        rec = res.history[c]
        budget = bl.epochs_seen(res.history, c, DENSE_EPOCHS)
        assert budget == DENSE_EPOCHS + sum(r.epochs for r in res.history[1:c + 1])
        shrink = sr.ShrinkTarget(0.5, lo=0.0, steps=12, sizes=[rec.params])

        count = Counter()
        _, sp = bl.single_pass_record(copy.deepcopy(dense), (X[:4],), count, _eval, optimizer_fn=_adam,
                                      schedule=shrink, budget=budget, dense_epochs=DENSE_EPOCHS, params_unpruned=n0)
        assert DENSE_EPOCHS + count.epochs == sp.epochs_seen == budget
        assert [p for p, _ in count.calls] == ["finetune"]
        assert sp.params <= rec.params and sp.verified_checks > 0

        count = Counter()
        _, os_ = bl.one_shot_release(copy.deepcopy(dense), (X[:4],), count, _eval, optimizer_fn=_adam,
                                     schedule=shrink, budget=budget, dense_epochs=DENSE_EPOCHS, finetune_epochs=1,
                                     params_unpruned=n0)
        assert DENSE_EPOCHS + count.epochs == os_.epochs_seen == budget
        assert count.calls == [("finetune", 1), ("train", budget - DENSE_EPOCHS - 1)]
        assert os_.params <= rec.params

        count = Counter()
        _, sc = bl.scratch(lambda: _mlp(seed=7), count, _eval, optimizer_fn=_adam, budget=budget, params_unpruned=n0)
        assert count.epochs == sc.epochs_seen == budget

    count = Counter()
    run = sr.SqueezeRelease(copy.deepcopy(dense), (X[:4],), count, _eval, optimizer_fn=_adam,
                            **dict(SR_KW, do_release=False))
    _, nr = bl.iterative_no_release(run, DENSE_EPOCHS)
    assert [r.epochs_seen for r in nr] == [bl.epochs_seen(res.history, c, DENSE_EPOCHS) for c in (1, 2)]
    assert DENSE_EPOCHS + count.epochs == nr[-1].epochs_seen

    count = Counter()
    steps = [(r.params, r.epochs) for r in res.history[1:]]
    _, un = bl.unstructured(copy.deepcopy(dense), count, _eval, optimizer_fn=_adam, steps=steps,
                            dense_epochs=DENSE_EPOCHS)
    assert [r.epochs_seen for r in un] == [bl.epochs_seen(res.history, c, DENSE_EPOCHS) for c in (1, 2)]
    assert DENSE_EPOCHS + count.epochs == un[-1].epochs_seen


def test_one_shot_release_refuses_a_budget_below_its_fine_tuning():
    dense = _dense()
    with pytest.raises(ValueError, match="budget"):
        bl.one_shot_release(dense, (X[:4],), Counter(), _eval, optimizer_fn=_adam, schedule=0.5, budget=2,
                            dense_epochs=DENSE_EPOCHS, finetune_epochs=1, params_unpruned=100)


def test_unstructured_holds_exactly_the_nonzeros_asked_and_is_never_minimized(tmp_path):
    dense = _dense()
    n0 = sr.deployable_size(dense)
    targets = [n0 // 3, n0 // 7]
    model, recs = bl.unstructured(copy.deepcopy(dense), Counter(), _eval, optimizer_fn=_adam,
                                  steps=[(t, 1) for t in targets], dense_epochs=DENSE_EPOCHS,
                                  checkpoint_dir=str(tmp_path))
    assert [r.params for r in recs] == targets and bl.count_nonzero(model) == targets[-1]
    assert all(r.stored == n0 for r in recs)                       # the architecture never shrinks
    assert [r.ratio for r in recs] == pytest.approx([n0 / t for t in targets])
    # masks accumulate: an entry pruned at step 1 is still pruned at step 2
    state = torch.load(tmp_path / "step_002.pt", weights_only=True)
    first = torch.load(tmp_path / "step_001.pt", weights_only=True)
    for n, m in state["masks"].items():
        assert not bool((m & ~first["masks"][n]).any())          # once pruned, pruned for good
    # resume: a second call with more steps continues after step 2 (no step trained twice)
    count = Counter()
    _, recs2 = bl.unstructured(copy.deepcopy(dense), count, _eval, optimizer_fn=_adam,
                               steps=[(t, 1) for t in targets] + [(n0 // 10, 2)], dense_epochs=DENSE_EPOCHS,
                               checkpoint_dir=str(tmp_path))
    assert count.calls == [("unstructured", 2)] and recs2[-1].params == n0 // 10
    assert recs2[-1].epochs_seen == DENSE_EPOCHS + 4


def test_unstructured_with_lamp_never_empties_a_tensor(tmp_path):
    """The unstructured baseline's ``criterion`` (the tools' ``--unstructured-criterion``): with
    global |w| a layer of small weights (the CNN's downsampling conv) is emptied first and the
    network is cut in two; LAMP scores hold the same nonzero count and keep every tensor alive."""
    dense = _dense()
    with torch.no_grad():
        dense[2].weight.mul_(1e-3)          # a layer of small weights
    target = sr.deployable_size(dense) // 7
    kept = {}
    for name, crit in (("magnitude", sr.magnitude_scores), ("lamp", sr.lamp_scores)):
        model, (rec,) = bl.unstructured(copy.deepcopy(dense), Counter(), _eval, optimizer_fn=_adam,
                                        steps=[(target, 0)], dense_epochs=DENSE_EPOCHS, criterion=crit,
                                        checkpoint_dir=str(tmp_path / name))
        assert rec.params == target and bl.count_nonzero(model) == target
        kept[name] = {n: int(m.sum()) for n, m in torch.load(tmp_path / name / "step_001.pt",
                                                              weights_only=True)["masks"].items()}
    assert kept["magnitude"]["2.weight"] == 0
    assert min(kept["lamp"].values()) > 0, kept["lamp"]


def test_iterative_without_release_never_brings_a_zero_back():
    """do_release=False: the zeros each squeeze leaves stay zero through the training that follows
    and through the next cycle (while with release they are all trained)."""
    dense = _dense()
    nr, _ = _squeeze_release(dense, do_release=False, max_cycles=1)
    rel, _ = _squeeze_release(dense, max_cycles=1)
    assert nr.history[1].released is None and rel.history[1].released > 0
    zeros_nr = sum(int((p == 0).sum()) for p in sr.prunable_parameters(nr.module).values())
    zeros_rel = sum(int((p == 0).sum()) for p in sr.prunable_parameters(rel.module).values())
    assert zeros_nr > 0 and zeros_rel == 0
    assert nr.history[1].epochs == rel.history[1].epochs == 3         # trained as long, zeros held
    # one more cycle: every entry that was zero is still zero
    before = {n: (p == 0).clone() for n, p in sr.prunable_parameters(nr.module).items()}
    count = Counter()
    run = sr.SqueezeRelease(nr.module, (X[:4],), count, _eval, optimizer_fn=_adam, schedule=0.3, finetune_epochs=1,
                            train_epochs=1, do_release=False, max_cycles=1)
    module = nr.module
    # the cycle prunes, fine-tunes and trains `module` in place before minimizing it: check it after
    small, rec = run.cycle(module, 2, nr.params_unpruned, nr.history[1].epochs_total)
    for n, p in sr.prunable_parameters(module).items():
        assert bool((p[before[n]] == 0).all()), n
    assert count.calls == [("finetune", 1), ("train", 1)] and rec.released is None


def test_report_cycles_are_chosen_by_size():
    hist = [{"cycle": 0, "ratio": 1.0}, {"cycle": 1, "ratio": 3.1}, {"cycle": 2, "ratio": 9.0},
            {"cycle": 3, "ratio": 21.0}, {"cycle": 4, "ratio": 41.0}]
    assert report_cycles(hist, [10, 39, 3]) == [2, 4, 1]


def test_comparison_records_validation_and_test_and_resumes(tmp_path):
    """run_comparison: every method at each reported cycle with the cycle's budget; accuracy is
    eval_fn's, test_accuracy test_fn's; state saved as it goes; a second call trains nothing."""
    saved = []
    state: dict = {}
    count = Counter()
    XT, YT = _data(64, seed=2)
    test_calls = []

    def test_fn(m):
        test_calls.append(1)
        return sr.accuracy(m, XT, YT)

    def save():
        saved.append(json.loads(json.dumps(state)))

    def target_prune(params, method):
        return {"schedule": sr.ShrinkTarget(0.5, lo=0.0, steps=12, sizes=[params])}

    def build(rec, module):
        torch.manual_seed(11)
        w = [rec["shapes"][k] for k in ("0.weight", "2.weight", "4.weight")]
        return nn.Sequential(nn.Linear(24, w[0][0]), nn.ReLU(), nn.Linear(w[0][0], w[1][0]), nn.ReLU(),
                             nn.Linear(w[1][0], 3))

    kw = dict(make_dense=_mlp, dense_epochs=DENSE_EPOCHS, example_inputs=(X[:4],), train_fn=count, eval_fn=_eval,
              test_fn=test_fn, optimizer_fn=_adam, sr_kwargs=SR_KW, report_ratios=[1.5, 100.0],
              methods=list(bl.METHODS), target_prune=target_prune, build_same_shape=build, ckpt_dir=str(tmp_path))
    run_comparison(state, save, **kw)
    hist = state["squeeze_release"]["history"]
    cycles = sorted(set(state["report_cycles"].values()))
    assert cycles == [1, 2]
    for method in bl.METHODS:
        recs = {r["cycle"]: r for r in state["baselines"][method]}
        assert sorted(recs) == cycles, method
        for c in cycles:
            assert recs[c]["epochs_seen"] == hist[c]["epochs_seen"] == DENSE_EPOCHS + hist[c]["epochs_total"], method
            assert 0 <= recs[c]["test_accuracy"] <= 1 and 0 <= recs[c]["accuracy"] <= 1
    assert all(h["test_accuracy"] is not None for h in hist) and all(h["max_abs_error"] is not None for h in hist[1:])
    assert state["done"] and len(saved) >= 2 + len(bl.METHODS) * 2
    # resumed with the saved state: nothing is trained again
    trained = count.epochs
    run_comparison(json.loads(json.dumps(state)), lambda: None, **dict(kw, train_fn=Counter()))
    assert count.epochs == trained
    # from a state saved after Squeeze-Release only: the baselines run, Squeeze-Release does not
    mid = next(s for s in saved if "squeeze_release" in s and not s.get("baselines"))
    again = Counter()
    out = run_comparison(mid, lambda: None, **dict(kw, train_fn=again))
    assert ("dense", DENSE_EPOCHS) not in again.calls
    assert {m: [r["epochs_seen"] for r in out["baselines"][m]] for m in bl.METHODS} == \
        {m: [r["epochs_seen"] for r in state["baselines"][m]] for m in bl.METHODS}


def test_comparison_refuses_saved_results_without_their_dense_checkpoint(tmp_path):
    """A saved state whose dense checkpoint is gone would be paired with a retrained dense model:
    refused, with the way out named."""
    state = {"dense": {"params": 1, "accuracy": 0.5, "test_accuracy": 0.5, "epochs": 2}}
    with pytest.raises(FileNotFoundError, match="checkpoint folder"):
        run_comparison(state, lambda: None, make_dense=_mlp, dense_epochs=DENSE_EPOCHS, example_inputs=(X[:4],),
                       train_fn=Counter(), eval_fn=_eval, test_fn=_eval, optimizer_fn=_adam, sr_kwargs=SR_KW,
                       report_ratios=[2.0], methods=[], target_prune=None, build_same_shape=None,
                       ckpt_dir=str(tmp_path))
