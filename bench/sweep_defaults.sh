#!/usr/bin/env bash
# W2 of learned samples for strong-field settings, with the README's commands (issue 12, item 1).
#
#   bash bench/sweep_defaults.sh [L] [TARGET_DATA] [D_VALUES] [LAMBDAS] [SEEDS] [STEPS]
#   bash bench/sweep_defaults.sh 6 swissroll "0.5 1.5 3.0" "0.5" "0 1" 3000
#   bash bench/sweep_defaults.sh 40 swissroll "20" "0.5 0.194" "0" 3000
#
# For every end length d and noise lambda: `physfield targets --n 200000` (gaussian -> TARGET_DATA,
# plan paired, seed 0), then for each regression target (direction, velocity) and seed:
# `learn train --steps STEPS --seed S`, `learn sample --n 2000 --seed S`, and the W2 of the samples
# against 2000 reference draws (`learn eval`). Prints one line per run. Runs in a temporary folder.
set -euo pipefail
L=${1:-6}; DATA=${2:-swissroll}; DS=${3:-"0.5 1.5 3.0"}; LAMS=${4:-"0.5"}; SEEDS=${5:-"0 1"}; STEPS=${6:-3000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
for d in $DS; do
  for lam in $LAMS; do
    physfield targets --field strong --source gaussian --target "$DATA" --n 200000 --d "$d" --L "$L" \
      --lambda "$lam" --seed 0 -o t.h5 --overwrite > /dev/null
    for tgt in direction velocity; do
      for seed in $SEEDS; do
        rm -rf run
        learn train --targets t.h5 --out run --steps "$STEPS" --target "$tgt" --seed "$seed" --device cpu > /dev/null
        learn sample --checkpoint run --n 2000 -o s.npy --seed "$seed" > /dev/null
        w=$(learn eval --samples s.npy --reference "$DATA" --n 2000 --json | python3 -c \
            "import json, sys; print(round(json.load(sys.stdin)['w2'], 3))")
        echo "L=$L data=$DATA d=$d lambda=$lam target=$tgt seed=$seed W2=$w"
      done
    done
  done
done
