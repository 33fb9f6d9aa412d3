#!/usr/bin/env bash
# The laptop tiers on real CIFAR-10 (README: Laptop tier; Supervised at laptop scale), JOBS one-thread runs at
# a time (2 on a 2-core CPU; runs of other grids on the machine count too). Every method of a seed uses the
# same split (drawn from --seed). A finished run (summary.json) is skipped, an interrupted one resumed, so the
# script can be stopped and started again. Each run's wall time goes to OUT/<name>.wall_s.
#   bash experiments/ssl_laptop_tier.sh                  # SSL, 4,000 labels: OUT=runs/laptop
#   TIER=supervised bash experiments/ssl_laptop_tier.sh  # every label:      OUT=runs/laptop-sup
set -euo pipefail
TIER=${TIER:-ssl}
DATA=${DATA:-data/cifar10-jpeg75}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=1
[ -f .venv/bin/activate ] && . .venv/bin/activate  # the project environment, when there is one
case $TIER in
  ssl) CONFIG=configs/ssl/cifar10-4k-laptop.yaml OUT=${OUT:-runs/laptop} ;;
  supervised) CONFIG=configs/ssl/cifar10-supervised-laptop.yaml OUT=${OUT:-runs/laptop-sup} ;;
  *) echo "TIER must be ssl or supervised, got '$TIER'" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
declare -A FLAGS=(
  [supervised]="--method supervised" [input]="--method input" [manifold]="--method manifold"
  [manifold-ema]="--pseudolabels ema" [manifold-w0]="--w-max 0" [manifold-prob]="--consistency prob"
)
jobs_in_order() {  # what a time-boxed session needs first: every method on seed 0, then the other seeds
  if [ "$TIER" = supervised ]; then
    for seed in 0 1 2; do echo supervised-s$seed manifold-s$seed input-s$seed; done
    return
  fi
  echo supervised-s0 manifold-s0 input-s0 manifold-ema-s0
  for seed in 1 2; do echo supervised-s$seed manifold-s$seed; done
  for seed in 1 2; do echo input-s$seed; done
  echo manifold-w0-s0 manifold-prob-s0
  for seed in 1 2; do echo manifold-ema-s$seed manifold-w0-s$seed manifold-prob-s$seed; done
}
busy() { pgrep -f "^python -m ssl.train .*--out $OUT/$1 " > /dev/null; }
running() { pgrep -fc "^python -m (ssl|gan).train " || true; }  # every training run on this machine
one_run() {
  local name=$1 m=${1%-s*} seed=${1##*-s} start resume=""
  start=$(date +%s)
  [ -f "$OUT/$name/checkpoint.pt" ] && resume="--resume"
  # shellcheck disable=SC2086
  python -m ssl.train --config "$CONFIG" --data-dir "$DATA" --seed "$seed" ${FLAGS[$m]} \
    --out "$OUT/$name" --device cpu $resume >> "$OUT/$name.log" 2>&1 || { echo "FAILED $name"; return; }
  echo $(( $(date +%s) - start )) > "$OUT/$name.wall_s"
  echo "done $name in $(cat "$OUT/$name.wall_s") s"
}
for name in $(jobs_in_order); do
  [ -f "$OUT/$name/summary.json" ] && continue
  busy "$name" && continue  # started by an earlier invocation that still runs
  while [ "$(running)" -ge "$JOBS" ]; do sleep 10; done
  one_run "$name" &
  sleep 5
done
[ -n "${NOWAIT:-}" ] || wait  # NOWAIT=1: return once the last run has started (chained grids)
