"""Squeeze-Release on LeNet-300-100 (784-300-100-10), Fashion-MNIST, against five budget-matched
baselines (issue 14). The exact commands behind docs/results.md are listed there.

    nice -n 19 python tools/reproduce_fc.py --seeds 0 1 2 --criterion unit --shrink 0.7 \
        --cycle-ratios 3 10 20 39 --ft-epochs 1 --train-epochs 4 --label-smoothing 0.2 \
        --out tools/results/fc_matched.json --ckpt-dir /tmp/fc_ckpt

Data: :func:`fxminimize.training.data.load_fashion_mnist_splits`: training = the first 50,000
training images, **validation = the last 10,000** (every figure a run reads: the accuracy
floor, the records), test = the 10,000 ``t10k`` images, evaluated only to *record*
``test_accuracy`` for the final tables (``test_fn`` is never read back).

Per seed (:func:`fxminimize.training.comparison.run_comparison`):
  * dense: LeNet-300-100 trained ``--dense-epochs`` epochs (AdamW, lr ``--lr``, ``--wd``, batch 128);
  * Squeeze-Release from that dense model (criterion ``--criterion``; each cycle's prune
    fraction found by ``ShrinkTarget(--shrink)``, cycle k aimed at ``--cycle-ratios`` k;
    ``--ft-epochs`` masked fine-tuning + ``--train-epochs`` after release per cycle);
  * at the cycles nearest ``--report-ratios`` (by size), each of ``--methods`` with the same
    budget (epochs seen, dense included) and the same training step (label smoothing, cosine
    rate): ``single_pass``, ``one_shot_release``, ``iterative_no_release``, ``scratch`` (a
    784-gather-h1-h2-10 MLP of that cycle's exact shape), ``unstructured`` (gradual global
    magnitude pruning to as many nonzeros as that cycle stores elements, never minimized;
    ``--unstructured-criterion lamp`` ranks by LAMP scores instead, which never empty a tensor);
    see :mod:`fxminimize.training.baselines`.

Levers (tools/reproduce_levers.sh; docs/results.md "Levers"): ``--criterion neuron`` (whole pixels
and neurons, :func:`neuron_scores`), ``--distill ALPHA`` (every training call after the dense
model distils from it, every method alike), ``--release-scale``, ``--train-epochs``;
``--dense-from JSON`` starts from an earlier run's dense models instead of retraining them.

Deployable size = every stored element of the minimized dense model (zeros and the int64 index
of kept pixels included). ``--out`` is rewritten after every finished piece; the same command
again resumes (finished pieces kept, unfinished ones from ``--ckpt-dir``). Tables and plots:
``tools/reproduce_tables.py``.
"""
from __future__ import annotations

import argparse
import functools
import datetime
import json
import logging
import os
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from fxminimize import training as sr
from fxminimize.training.baselines import METHODS
from fxminimize.training.comparison import run_comparison
from fxminimize.training.data import VAL_SIZE, TensorLoader, load_fashion_mnist_splits
from fxminimize.testing.zoo import LeNet300100

log = logging.getLogger("reproduce_fc")


def neuron_scores(model: nn.Module, params: dict) -> dict:
    """Structured criterion for LeNet-300-100 (``fc1``-``fc2``-``fc3``, also after squeezes): whole
    input pixels and hidden neurons, nothing inside them. Each unit gets a score (pixel ``j``: the
    L2 norm of ``fc1`` column ``j``; hidden neuron: the product of the norms of its incoming row
    and outgoing column; each relative to its group's mean); every weight entry scores the
    *lower* of its two units (``fc3``: its hidden unit; the 10 outputs never go). A global
    threshold then zeroes exactly the entries of the units below it, so the squeeze removes whole
    units and leaves no zero inside a kept tensor (but for the one unit a prune fraction may cut
    through, its entries tied): next to nothing to release, every kept weight a trained one."""
    w = [params[f"fc{i}.weight"].detach().float() for i in (1, 2, 3)]

    def rel(v):
        return v / v.mean().clamp_min(1e-30)

    pix = rel(w[0].norm(dim=0))
    h1 = rel(w[0].norm(dim=1)) * rel(w[1].norm(dim=0))
    h2 = rel(w[1].norm(dim=1)) * rel(w[2].norm(dim=0))
    return {"fc1.weight": torch.minimum(h1[:, None], pix[None, :]),
            "fc2.weight": torch.minimum(h2[:, None], h1[None, :]),
            "fc3.weight": h2[None, :].expand_as(w[2]).clone()}


CRITERIA = {"magnitude": sr.magnitude_scores, "lamp": sr.lamp_scores, "unit": sr.unit_scores,
            "neuron": neuron_scores}


class GatherMLP(nn.Module):
    """784 → (index_select kept pixels) → h1 → h2 → 10: the shape family of a minimized LeNet."""

    def __init__(self, keep: torch.Tensor, h1: int, h2: int):
        super().__init__()
        self.register_buffer("keep", keep.clone().long())
        self.fc1, self.fc2, self.fc3 = nn.Linear(len(keep), h1), nn.Linear(h1, h2), nn.Linear(h2, 10)

    def forward(self, x):
        x = x.index_select(1, self.keep)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def keep_index(module: nn.Module, n_in: int) -> torch.Tensor:
    """The input pixels a minimized LeNet reads: the composition of its chained input gathers
    (``index_select`` on the input, then on that, ... — one per cycle that removed pixels)."""
    import operator

    idx = torch.arange(n_in)
    graph = getattr(module, "graph", None)
    if graph is None:
        return idx
    chain = {n for n in graph.nodes if n.op == "placeholder"}
    for n in graph.nodes:
        if n.op == "call_function" and n.target is operator.getitem and n.args[0] in chain:
            chain.add(n)
        elif (n.op == "call_function" and "index_select" in str(n.target) and n.args[0] in chain
              and n.args[2].op == "get_attr"):
            idx = idx[getattr(module, n.args[2].target)]
            chain.add(n)
    return idx


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def run_seed(seed: int, args, data, state: dict, save) -> dict:
    """One seed of the budget-matched comparison (:func:`fxminimize.training.comparison.run_comparison`):
    every figure the run sees is validation accuracy; test accuracy is only recorded."""
    (xtr, ytr), (xva, yva), (xte, yte) = data
    example = (xtr[:16].clone(),)  # a copy: a view would make every checkpoint store the whole training set

    def dense_optimizer_fn(params):
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)

    def optimizer_fn(params):
        # everything after the dense model (Squeeze-Release and every baseline) uses --small-wd
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd if args.small_wd is None else args.small_wd)

    loader = TensorLoader(xtr, ytr, args.batch, seed=seed)
    ckpt_dir = os.path.join(args.ckpt_dir, f"fc_seed{seed}")
    reuse_dense(args, seed, state, ckpt_dir, f"fc_seed{seed}")
    if "dense" in state:  # reused or resumed: the batches that follow are the ones a run from scratch draws next
        loader.epoch = args.dense_epochs
    teacher = dense_teacher(args, ckpt_dir, LeNet300100)

    def train_fn(model, opt, epochs, info):
        phase = info.get("phase", "")
        ls = args.label_smoothing if phase != "dense" or args.dense_label_smoothing else 0.0
        sr.train_epochs(model, opt, loader, epochs, desc=f"seed {seed} {phase} c{info.get('cycle', '')}",
                        progress=not args.no_progress, lr_schedule=args.lr_schedule,
                        loss_fn=functools.partial(F.cross_entropy, label_smoothing=ls),
                        **teacher(phase))

    def eval_fn(model):   # validation: the only figure any choice (floor, reported cycle) may read
        return sr.accuracy(model, xva, yva)

    def test_fn(model):   # recorded for the final tables, never read back by the run
        return sr.accuracy(model, xte, yte)

    crit = CRITERIA[args.criterion]

    def make_dense():
        torch.manual_seed(seed)
        return LeNet300100()

    n0 = sr.deployable_size(LeNet300100())
    schedule = (sr.ShrinkTarget(args.shrink, steps=args.shrink_steps,
                                sizes=[round(n0 / r) for r in args.cycle_ratios] if args.cycle_ratios else None)
                if args.shrink else args.schedule)
    sr_kwargs = dict(schedule=schedule, finetune_epochs=args.ft_epochs, train_epochs=args.train_epochs,
                     release_scale=args.release_scale, max_cycles=args.max_cycles, accuracy_floor=args.floor,
                     criterion=crit, target_ratio=args.target_ratio, seed=seed)

    def target_prune(params: int, method: str) -> dict:
        # one prune of the dense model to `params` stored elements: bisection on the fraction
        return {"schedule": sr.ShrinkTarget(0.5, lo=0.0, steps=16, sizes=[params]), "criterion": crit}

    def build_same_shape(rec: dict, module: nn.Module) -> nn.Module:
        shapes = rec["shapes"]
        keep = keep_index(module, 784)
        assert len(keep) == shapes["fc1.weight"][1], (len(keep), shapes["fc1.weight"])
        torch.manual_seed(seed + 1000)
        return GatherMLP(keep, shapes["fc1.weight"][0], shapes["fc2.weight"][0])

    state.setdefault("seed", seed)
    return run_comparison(state, save, make_dense=make_dense, dense_epochs=args.dense_epochs, example_inputs=example,
                          train_fn=train_fn, eval_fn=eval_fn, test_fn=test_fn, optimizer_fn=optimizer_fn,
                          dense_optimizer_fn=dense_optimizer_fn, sr_kwargs=sr_kwargs,
                          report_ratios=args.report_ratios, methods=args.methods, target_prune=target_prune,
                          build_same_shape=build_same_shape, ckpt_dir=ckpt_dir,
                          unstructured_prune=unstructured_prune(args))


def unstructured_prune(args) -> dict:
    """``--unstructured-criterion``: the ``unstructured_prune`` of ``run_comparison``."""
    return {"criterion": sr.lamp_scores if args.unstructured_criterion == "lamp" else sr.magnitude_scores}


#: the options that make two runs' dense models the same (``--dense-from`` checks them)
DENSE_KEYS = ("dense_epochs", "lr", "wd", "batch", "train_limit", "val_size", "lr_schedule", "dense_label_smoothing",
              "data_dir", "dims", "depths")


def reuse_dense(args, seed: int, state: dict, ckpt_dir: str, sub: str) -> None:
    """``--dense-from SRC.json``: start this seed from the dense model another run of the same
    tool trained (its ``dense`` record and ``<its --ckpt-dir>/<sub>/dense.pt``), so that a run
    that changes only what happens after the dense model (a lever) does not retrain it. Refused
    unless every option in :data:`DENSE_KEYS` is the same in both runs."""
    import shutil

    if not args.dense_from or "dense" in state:
        return
    with open(args.dense_from) as f:
        src = json.load(f)
    mine = vars(args)
    diff = {k: (src["args"].get(k), mine.get(k)) for k in DENSE_KEYS if src["args"].get(k) != mine.get(k)}
    if diff:
        raise SystemExit(f"--dense-from {args.dense_from}: its dense model was trained differently: {diff}")
    run = next((r for r in src["runs"] if r["seed"] == seed and "dense" in r), None)
    if run is None:
        raise SystemExit(f"--dense-from {args.dense_from} has no dense model for seed {seed}")
    os.makedirs(ckpt_dir, exist_ok=True)
    shutil.copyfile(os.path.join(src["args"]["ckpt_dir"], sub, "dense.pt"), os.path.join(ckpt_dir, "dense.pt"))
    state["dense"] = dict(run["dense"], reused_from=args.dense_from)
    log.info("seed %d: dense model reused from %s", seed, args.dense_from)


def dense_teacher(args, ckpt_dir: str, build):
    """``phase -> train_epochs keywords``: with ``--distill ALPHA`` every training call after the
    dense model (Squeeze-Release's and every baseline's alike) distils from this seed's dense
    model (``build()`` with ``ckpt_dir/dense.pt``, read when first needed); none otherwise."""
    cache = {}

    def kwargs(phase: str) -> dict:
        if not args.distill or phase == "dense":
            return {}
        if "t" not in cache:
            t = build()
            t.load_state_dict(torch.load(os.path.join(ckpt_dir, "dense.pt"), weights_only=True))
            cache["t"] = t.eval().requires_grad_(False)
        return dict(teacher=cache["t"], distill_alpha=args.distill, distill_temperature=args.distill_temperature)
    return kwargs


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """Options shared by reproduce_fc.py and reproduce_cnn.py: the comparison and its bookkeeping."""
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                    help="baselines to run, each with the budget (epochs seen, dense included) of the "
                         "Squeeze-Release cycle it is compared with: " + ", ".join(METHODS) + " (default: all; "
                         "none: Squeeze-Release only)")
    ap.add_argument("--report-ratios", type=float, nargs="+", default=[10.0, 39.0],
                    help="the baselines are run at the Squeeze-Release cycles whose size is nearest these ratios")
    ap.add_argument("--release-scale", type=float, default=0.05)
    ap.add_argument("--label-smoothing", type=float, default=0.0,
                    help="label smoothing of the cross-entropy in every training call after the dense model "
                         "(Squeeze-Release and every baseline alike)")
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], default="cosine",
                    help="learning rate within every training call (dense, each phase of a cycle, baselines)")
    ap.add_argument("--target-ratio", type=float, default=None, help="stop Squeeze-Release at this compression")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    ap.add_argument("--val-size", type=int, default=VAL_SIZE,
                    help="validation split: the last N training images (default 10,000)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="JSON results, rewritten after every finished piece")
    ap.add_argument("--ckpt-dir", required=True, help="checkpoints: a run resumes from them")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--distill", type=float, default=0.0, metavar="ALPHA",
                    help="lever: every training call after the dense model (Squeeze-Release and every baseline) "
                         "distils from the seed's dense model with weight ALPHA (0: off)")
    ap.add_argument("--distill-temperature", type=float, default=4.0)
    ap.add_argument("--unstructured-criterion", choices=["magnitude", "lamp"], default="magnitude",
                    help="score of the unstructured baseline's gradual pruning: global |w| (default) or LAMP "
                         "(training.lamp_scores: global ranking that never empties a tensor)")
    ap.add_argument("--dense-from", default=None, metavar="JSON",
                    help="reuse the dense models of an earlier run of this tool (its JSON; its --ckpt-dir must "
                         "still hold them): refused unless the dense training options are the same")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    ap.add_argument("--dense-epochs", type=int, default=15)
    ap.add_argument("--dense-label-smoothing", action="store_true",
                    help="train the dense model with --label-smoothing too (by default only what follows it)")
    ap.add_argument("--ft-epochs", type=int, default=2)
    ap.add_argument("--train-epochs", type=int, default=3)
    ap.add_argument("--schedule", type=float, default=0.98)
    ap.add_argument("--shrink", type=float, default=0.6,
                    help="size-targeted schedule: each cycle keeps about this share of the deployable size "
                         "(ShrinkTarget); overrides --schedule")
    ap.add_argument("--cycle-ratios", type=float, nargs="+", default=None, metavar="R",
                    help="with --shrink: cycle k aims at compression R_k (deployable size dense/R_k), e.g. "
                         "3 10 20 39; cycles after the list shrink by --shrink")
    ap.add_argument("--shrink-steps", type=int, default=7, help="bisection steps of ShrinkTarget per cycle")
    ap.add_argument("--max-cycles", type=int, default=9)
    ap.add_argument("--floor", type=float, default=0.80, help="stop below this validation accuracy")
    ap.add_argument("--criterion", choices=sorted(CRITERIA), default="magnitude")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--small-wd", type=float, default=None,
                    help="AdamW weight decay for every training call after the dense model; default: --wd")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    data = load_fashion_mnist_splits(args.data_dir, flatten=True, val_size=args.val_size)
    if args.train_limit:
        data = data._replace(train=(data.train[0][:args.train_limit], data.train[1][:args.train_limit]))
    run_seeds(args, data, run_seed, {"model": "LeNet-300-100 (784-300-100-10)", "dataset": "Fashion-MNIST"})


def run_seeds(args, data, run_seed, header: dict) -> dict:
    """``run_seed(seed, args, data, state, save)`` for every seed of ``args.seeds``, one after the
    other. ``--out`` is rewritten after every finished piece (``save``); a run started again with
    the same ``--out`` and ``--ckpt-dir`` resumes: finished pieces are kept, unfinished ones
    continue from their checkpoints. ``header``: what the JSON says of the model."""
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
        log.info("resuming %s", args.out)
    else:
        results = dict(header, runs=[])
    results.update(commands=results.get("commands", []) + [" ".join([os.path.basename(sys.executable)] + sys.argv)],
                   args=vars(args), machine=machine(), split={
                       "train": int(data.train[0].shape[0]), "validation": int(data.val[0].shape[0]),
                       "validation_rule": f"the last {data.val[0].shape[0]} images of the training file",
                       "test": int(data.test[0].shape[0])})
    results.setdefault("dates", [])
    today = datetime.date.today().isoformat()
    if today not in results["dates"]:
        results["dates"].append(today)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    def save():
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.out)

    runs = {r["seed"]: r for r in results["runs"]}
    for seed in args.seeds:
        if seed not in runs:
            runs[seed] = {"seed": seed}
            results["runs"].append(runs[seed])
        if runs[seed].get("done"):
            continue
        t0 = time.perf_counter()
        run_seed(seed, args, data, runs[seed], save)
        runs[seed]["time_s"] = runs[seed].get("time_s", 0.0) + time.perf_counter() - t0
        save()
    save()
    log.info("done -> %s", args.out)
    return results


if __name__ == "__main__":
    main()
