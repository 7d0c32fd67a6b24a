#!/bin/bash
# Issue 14: the re-tune of the inherited CNN recipe on VALIDATION (2026-11-30, session 5).
# Exploration seeds 10 and 11, which are not reported seeds (the tables report 0, 1, 2). Squeeze-Release only (no
# baselines), one lever per variant, everything else the recipe of docs/results.md's CNN section (its budget:
# 10,000 training images, dense 4 epochs, five cycles of 1 masked + 2 released epochs). Each seed's "recipe" run
# trains the dense model the other variants of that seed reuse (--dense-from); the lr variants train their own
# (lr is a dense option).
# Selection rule: among the variants with the recipe's budget, the highest validation accuracy at exactly 15x and
# 25x (interpolated linearly in log ratio between the cycles that bracket them), mean over the two sizes and the
# seeds a variant ran; within 0.1 points of the recipe keeps the recipe. As first written (before any variant's
# result) it read the cycles nearest 15x and 25x on seed 10 alone; the second seed and the interpolation were added
# after the first four seed-10 results, once a run proved to take ~5 minutes and the variants landed at different
# sizes (the nearest-cycle figures are printed beside). `ep3` (1 + 3 epochs per cycle) changes the budget, which was
# set by cost, and is reported for information only.
# Seed 11 ran the variants still in contention (successive halving, to fit the session): extra0 and extra0.1 had
# started before seed 10's lr4e-3 ended; once lr4e-3 led seed 10 by 1.4 points, only the runner-up (late), the leader
# and the next steps of its lever (lr 8e-3, then 1.6e-2 as 8e-3 led again; both seeds) ran on seed 11; rs0.2, ls0.1, distill0.5, lr1e-3
# (0.3-6.5 points behind the leader on seed 10) and ep3 (not ranked) did not.
# Usage: tools/tune_cnn_recipe.sh OUTDIR [SEED...]     then: python tools/tune_summary.py OUTDIR
# One variant at a time per seed; run two seeds in parallel on two cores. ~5 minutes per variant on an idle core.
set -e
out=$(realpath -m "$1"); shift
seeds=${*:-10 11}
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
py=${PYTHON:-python}
run() {  # SEED NAME OPTIONS...
  local seed=$1 name=$2; shift 2
  mkdir -p "$out/s$seed"
  nice -n 19 "$py" tools/reproduce_cnn.py --seeds "$seed" \
    --train-limit 10000 --dims 24 48 --depths 2 2 --dense-epochs 4 --ft-epochs 1 --train-epochs 2 --keep 0.51 \
    --max-drop-stream 0.35 --max-drop-hidden 0.6 --extra 0.2 --max-cycles 5 --floor 0.5 --label-smoothing 0 \
    --report-ratios 15 25 --no-progress --methods \
    "$@" --out "$out/s$seed/cnn_$name.json" --ckpt-dir "$out/s$seed/ckpt_$name" > "$out/s$seed/$name.log" 2>&1
}
# seed 10: every lever. seed 11: the recipe and what was still in contention (successive halving, below)
for seed in $seeds; do
  D="--dense-from $out/s$seed/cnn_recipe.json"
  run "$seed" recipe
  run "$seed" extra0 $D --extra 0
  run "$seed" extra0.1 $D --extra 0.1
  run "$seed" late $D --train-epochs 1 1 2 3 3
  run "$seed" lr4e-3 --lr 4e-3
  run "$seed" lr8e-3 --lr 8e-3
  run "$seed" lr1.6e-2 --lr 1.6e-2
  if [ "$seed" = 10 ]; then
    run "$seed" rs0.2 $D --release-scale 0.2
    run "$seed" ls0.1 $D --label-smoothing 0.1
    run "$seed" distill0.5 $D --distill 0.5
    run "$seed" lr1e-3 --lr 1e-3
    run "$seed" ep3 $D --train-epochs 3
  fi
done
