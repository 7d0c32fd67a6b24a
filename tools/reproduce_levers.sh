#!/bin/bash
# Issue 14, levers on FC (LeNet-300-100), chosen on validation only. Each lever run starts from the
# dense models of the shortest-budget comparison (tools/results/fc_matched.json, --dense-from; its
# --ckpt-dir must still hold them) and changes only what follows the dense model, for
# Squeeze-Release and for the best baseline there (same shape from scratch) alike:
#   neuron         structured criterion (reproduce_fc.neuron_scores): whole pixels and neurons only, every kept
#                  weight a trained one, next to nothing to release; scratch is rerun (the shapes it picks differ)
#   rs0.3, rs1.0   release scale 0.3 / 1.0 (N(0, (scale * sigma)^2) for the released zeros; default 0.05);
#                  Squeeze-Release only: the scratch network has no zeros to release
#   kd0.5          distillation from the seed's dense model (alpha 0.5, T 4) in every training call after it
#   ep8            8 epochs after each release instead of 4 (every baseline's budget grows with it)
#   rs0            release scale 0: released entries start at exactly 0 (trainable); Squeeze-Release only
#   neuron_ep8     the two levers that helped on seed 0, together
# Usage: tools/reproduce_levers.sh [--explore] OUTDIR SEED... (one process at a time, niced; rerun to resume)
#   python tools/reproduce_tables.py --levers OUTDIR/fc_*.json --base tools/results/fc_matched.json
# --explore: for exploration seeds that are not reported seeds (no dense model in fc_matched.json): first a base
#   run (the inherited recipe, Squeeze-Release and scratch, OUTDIR/fc_base.json) trains the dense models, and every
#   lever starts from those; then the table is
#   python tools/reproduce_tables.py --levers OUTDIR/fc_[!b]*.json --base OUTDIR/fc_base.json
set -e
explore=0
if [ "$1" = "--explore" ]; then explore=1; shift; fi
out=$(mkdir -p "$1" && cd "$1" && pwd); shift
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
py=${PYTHON:-python}
common=(--criterion unit --shrink 0.7 --cycle-ratios 3 10 20 39 --shrink-steps 10 --max-cycles 4 --dense-epochs 10
        --ft-epochs 1 --floor 0.5 --label-smoothing 0.2 --lr-schedule cosine --report-ratios 10 39 --no-progress
        --seeds "$@")
dense_from=tools/results/fc_matched.json
if [ "$explore" = 1 ]; then
  nice -n 19 "$py" tools/reproduce_fc.py "${common[@]}" --train-epochs 4 --methods scratch \
    --out "$out/fc_base.json" --ckpt-dir "$out/ckpt_base"
  dense_from=$out/fc_base.json
fi
lever() {  # name, options...
  local name=$1; shift
  nice -n 19 "$py" tools/reproduce_fc.py "${common[@]}" --dense-from "$dense_from" "$@" \
    --out "$out/fc_$name.json" --ckpt-dir "$out/ckpt_$name"
}
lever neuron --train-epochs 4 --criterion neuron --methods scratch
lever kd0.5 --train-epochs 4 --distill 0.5 --methods scratch
lever rs0.3 --train-epochs 4 --release-scale 0.3 --methods
lever rs1.0 --train-epochs 4 --release-scale 1.0 --methods
lever ep8 --train-epochs 8 --methods scratch
lever rs0 --train-epochs 4 --release-scale 0 --methods
lever neuron_ep8 --train-epochs 8 --criterion neuron --methods scratch
