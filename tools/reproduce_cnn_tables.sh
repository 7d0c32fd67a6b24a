#!/bin/bash
# Issue 14: docs/results.md's CNN tables and plot from the three per-seed runs of the reduced-budget comparison.
# Seed 0: tools/results/cnn_matched_short.json (committed). Seeds 1 and 2 ran as separate processes (one per seed,
# each its own --out and --ckpt-dir; /work/train_runs/cnn_seed.sh SEED, the seed-0 command with --seeds SEED).
# This script copies their JSON into tools/results/cnn_matched_short_seed{1,2}.json, prints the merged 3-seed tables
# (tools/reproduce_tables.py merges the files and refuses them unless they are the same comparison) between the
# <!-- CNN TABLES --> markers of docs/results.md, and redraws docs/results_cnn_matched_short.png.
# Usage: tools/reproduce_cnn_tables.sh [--partial] [SEED1_JSON SEED2_JSON]
#   defaults: /work/train_runs/cnn_short_seed1.json /work/train_runs/cnn_short_seed2.json
#   refused while a run has not finished, unless --partial (the tables then say PARTIAL and name what is missing)
#   environment: PYTHON (default python), PLOTPATH (a folder with matplotlib, added to PYTHONPATH)
set -e
partial=0
if [ "$1" = "--partial" ]; then partial=1; shift; fi
s1=${1:-/work/train_runs/cnn_short_seed1.json}
s2=${2:-/work/train_runs/cnn_short_seed2.json}
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
export PYTHONPATH=$PWD${PLOTPATH:+:$PLOTPATH}
for f in "$s1" "$s2"; do
  "$py" -c 'import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
if not (runs and all(r.get("done") for r in runs)):
    sys.exit(sys.argv[1] + ": the run has not finished" + ("" if sys.argv[2] == "1" else " (--partial to use it anyway)"))' \
    "$f" "$partial" || [ "$partial" = 1 ]
done
cp "$s1" tools/results/cnn_matched_short_seed1.json
cp "$s2" tools/results/cnn_matched_short_seed2.json
files=(tools/results/cnn_matched_short.json tools/results/cnn_matched_short_seed1.json
       tools/results/cnn_matched_short_seed2.json)
tables=$("$py" tools/reproduce_tables.py --cnn "${files[@]}" --table cnn --cycles --seeds 0 1 2)
"$py" tools/reproduce_tables.py --cnn "${files[@]}" --plot docs/results_cnn_matched_short.png
TABLES="$tables" "$py" - <<'PY'
import os
path = "docs/results.md"
s = open(path).read()
a = s.index("<!-- CNN TABLES -->") + len("<!-- CNN TABLES -->")
b = s.index("<!-- /CNN TABLES -->")
text = os.environ["TABLES"] + "\n\n![CNN, every method](results_cnn_matched_short.png)\n"
open(path, "w").write(s[:a] + "\n" + text + "\n" + s[b:])
PY
echo "docs/results.md CNN tables and docs/results_cnn_matched_short.png rewritten from ${files[*]}"
