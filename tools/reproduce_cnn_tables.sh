#!/bin/bash
# Issue 14: docs/results.md's CNN tables and plot from three per-seed runs (one process per seed, each its own
# --out and --ckpt-dir; the per-seed commands are in docs/results.md). Two comparisons, one mode each:
#   default  the inherited recipe (lr 2e-3): seed 0 is tools/results/cnn_matched_short.json (committed); seeds 1 and 2
#            are copied from SEED1_JSON SEED2_JSON (defaults /work/train_runs/cnn_short_seed{1,2}.json) into
#            tools/results/cnn_matched_short_seed{1,2}.json; tables between <!-- CNN TABLES --> markers, plot
#            docs/results_cnn_matched_short.png.
#   --tuned  the validation-chosen recipe (lr 8e-3, LAMP for the unstructured baseline; chosen by
#            tools/tune_cnn_recipe.sh on exploration seeds 10 and 11): SEED0_JSON SEED1_JSON SEED2_JSON (defaults
#            /work/train_runs/final/cnn_val_seed{0,1,2}.json) are copied into tools/results/cnn_tuned_seed{0,1,2}.json;
#            tables between <!-- CNN TUNED TABLES --> markers, plot docs/results_cnn_tuned.png.
# tools/reproduce_tables.py merges the files and refuses them unless they are the same comparison.
# Usage: tools/reproduce_cnn_tables.sh [--tuned] [--partial] [JSON ...]
#   refused while a run has not finished, unless --partial (the tables then say PARTIAL and name what is missing)
#   environment: PYTHON (default python), PLOTPATH (a folder with matplotlib, added to PYTHONPATH)
set -e
partial=0
tuned=0
while [ "${1#--}" != "$1" ]; do
  case "$1" in
    --partial) partial=1 ;;
    --tuned) tuned=1 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
cd "$(dirname "$0")/.."
if [ "$tuned" = 1 ]; then
  src=("${1:-/work/train_runs/final/cnn_val_seed0.json}" "${2:-/work/train_runs/final/cnn_val_seed1.json}"
       "${3:-/work/train_runs/final/cnn_val_seed2.json}")
  files=(tools/results/cnn_tuned_seed0.json tools/results/cnn_tuned_seed1.json tools/results/cnn_tuned_seed2.json)
  marker="CNN TUNED TABLES"; plot=results_cnn_tuned.png; title="CNN, validation-chosen recipe, every method"
else
  src=("" "${1:-/work/train_runs/cnn_short_seed1.json}" "${2:-/work/train_runs/cnn_short_seed2.json}")
  files=(tools/results/cnn_matched_short.json tools/results/cnn_matched_short_seed1.json
         tools/results/cnn_matched_short_seed2.json)
  marker="CNN TABLES"; plot=results_cnn_matched_short.png; title="CNN, every method"
fi
py=${PYTHON:-python}
export PYTHONPATH=$PWD${PLOTPATH:+:$PLOTPATH}
for i in 0 1 2; do
  f=${src[$i]}
  [ -z "$f" ] && continue
  "$py" -c 'import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
if not (runs and all(r.get("done") for r in runs)):
    sys.exit(sys.argv[1] + ": the run has not finished" + ("" if sys.argv[2] == "1" else " (--partial to use it anyway)"))' \
    "$f" "$partial" || [ "$partial" = 1 ]
  cp "$f" "${files[$i]}"
done
tables=$("$py" tools/reproduce_tables.py --cnn "${files[@]}" --table cnn --cycles --seeds 0 1 2)
"$py" tools/reproduce_tables.py --cnn "${files[@]}" --plot "docs/$plot"
TABLES="$tables" MARKER="$marker" PLOT="$plot" TITLE="$title" "$py" - <<'PY'
import os
path = "docs/results.md"
s = open(path).read()
open_m, close_m = f"<!-- {os.environ['MARKER']} -->", f"<!-- /{os.environ['MARKER']} -->"
a = s.index(open_m) + len(open_m)
b = s.index(close_m)
text = os.environ["TABLES"] + f"\n\n![{os.environ['TITLE']}]({os.environ['PLOT']})\n"
open(path, "w").write(s[:a] + "\n" + text + "\n" + s[b:])
PY
echo "docs/results.md ($marker) and docs/$plot rewritten from ${files[*]}"
