#!/usr/bin/env bash
# The digits GAN table (README: GANs): no mixup, pixel, h1+pixel for SEEDS, JOBS one-thread runs at a time
# (training runs of other grids on the machine count too). Finished runs are skipped, interrupted ones resumed.
#   SEEDS="0 1" bash experiments/digits_gan.sh          # OUT=runs/dgan
set -euo pipefail
OUT=${OUT:-runs/dgan}
SEEDS=${SEEDS:-0 1}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=1
[ -f .venv/bin/activate ] && . .venv/bin/activate
mkdir -p "$OUT"
running() { pgrep -fc "^python -m (ssl|gan).train " || true; }
one_run() {
  local mix=$1 seed=$2 name start resume=""
  name=${mix/,/_}-s$seed start=$(date +%s)
  [ -f "$OUT/$name/checkpoint.pt" ] && resume="--resume"
  # shellcheck disable=SC2086
  python -m gan.train --config configs/gan/digits.yaml --mix "$mix" --seed "$seed" --steps 2000 \
    --out "$OUT/$name" --device cpu $resume >> "$OUT/$name.log" 2>&1 || { echo "FAILED $name"; return; }
  echo $(( $(date +%s) - start )) > "$OUT/$name.wall_s"
  echo "done $name in $(cat "$OUT/$name.wall_s") s"
}
for seed in $SEEDS; do for mix in none pixel h1,pixel; do
  name=${mix/,/_}-s$seed
  [ -f "$OUT/$name/summary.json" ] && continue
  pgrep -f "^python -m gan.train .*--out $OUT/$name " > /dev/null && continue
  while [ "$(running)" -ge "$JOBS" ]; do sleep 10; done
  one_run "$mix" "$seed" &
  sleep 5
done; done
[ -n "${NOWAIT:-}" ] || wait  # NOWAIT=1: return once the last run has started (chained grids)
