#!/usr/bin/env bash
# The laptop tiers on real CIFAR-10 (README: Laptop tier; Supervised at laptop scale), JOBS one-thread runs at
# a time (2 on a 2-core CPU; runs of other grids on the machine count too). Every method of a seed uses the
# same split (drawn from --seed). A finished run (summary.json) is skipped, an interrupted one resumed, so the
# script can be stopped and started again. Each run's wall time goes to OUT/<name>.wall_s.
#   bash experiments/ssl_laptop_tier.sh                  # SSL, 4,000 labels: OUT=runs/laptop
#   TIER=supervised bash experiments/ssl_laptop_tier.sh  # every label:      OUT=runs/laptop-sup
#   TIER=lowlabel bash experiments/ssl_laptop_tier.sh    # 4,000 labels and nothing else: OUT=runs/lowlabel
#   TIER=ssl-long bash experiments/ssl_laptop_tier.sh    # SSL, 6,000 updates, no mixup vs manifold: OUT=runs/laptop-long
#   TIER=digits bash experiments/ssl_laptop_tier.sh      # bundled digits SSL (docs/ssl.md), 1-5 min a run: OUT=runs/digits
#     (3 methods x 3 seeds first, then the α, layer-set and loss ablations on seeds 0 and 1; ONLY=main stops
#     after the 3 x 3, ONLY=ablations runs the ablations alone, ABLATIONS="manifold-a1 manifold-a4" a subset,
#     ABLATION_SEEDS="0 1 2" other seeds; NAMES="supervised-s1 manifold-s1" runs exactly the runs named, in order)
set -euo pipefail
TIER=${TIER:-ssl}
DATA=${DATA:-data/cifar10-jpeg75}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=1
[ -f .venv/bin/activate ] && . .venv/bin/activate  # the project environment, when there is one
case $TIER in
  ssl) CONFIG=configs/ssl/cifar10-4k-laptop.yaml OUT=${OUT:-runs/laptop} ;;
  supervised) CONFIG=configs/ssl/cifar10-supervised-laptop.yaml OUT=${OUT:-runs/laptop-sup} ;;
  lowlabel) CONFIG=configs/ssl/cifar10-4k-supervised.yaml OUT=${OUT:-runs/lowlabel} ;;
  ssl-long) CONFIG=configs/ssl/cifar10-4k-laptop-long.yaml OUT=${OUT:-runs/laptop-long} ;;
  digits) CONFIG=configs/ssl/digits.yaml OUT=${OUT:-runs/digits} ;;  # --data-dir is ignored for digits
  *) echo "TIER must be ssl, supervised, lowlabel, ssl-long or digits, got '$TIER'" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
declare -A FLAGS=(
  [supervised]="--method supervised" [input]="--method input" [manifold]="--method manifold"
  [manifold-ema]="--pseudolabels ema" [manifold-w0]="--w-max 0" [manifold-prob]="--consistency prob"
  [input-prob]="--method input --consistency prob"
  # lowlabel ablations: α of Manifold Mixup (ICML Table 4's question), eligible sets at α 2 (ICML Table 6's), loss
  [manifold-a0.5]="--method manifold --alpha-sup 0.5" [manifold-a1]="--method manifold --alpha-sup 1"
  [manifold-a4]="--method manifold --alpha-sup 4"
  [set-pixel]="--method manifold --mix-points pixel" [set-h1]="--method manifold --mix-points h1"
  [set-pixel-h1]="--method manifold --mix-points pixel,h1" [set-h1-h2]="--method manifold --mix-points h1,h2"
  [set-all]="--method manifold --mix-points pixel,h1,h2,h3"
  [supervised-bce]="--method supervised --loss bce" [manifold-bce]="--method manifold --loss bce"
)
ABLATIONS=${ABLATIONS:-manifold-a1 manifold-a4 manifold-a0.5 supervised-bce manifold-bce set-pixel-h1 set-h1 set-pixel
  set-h1-h2 set-all}  # in the order a time-boxed session needs them (ABLATIONS="..." runs a subset)
jobs_in_order() {  # what a time-boxed session needs first: every method on seed 0, then the other seeds
  if [ -n "${NAMES:-}" ]; then
    echo "$NAMES"
    return
  fi
  if [ "$TIER" = lowlabel ]; then
    if [ "${ONLY:-}" != ablations ]; then
      for seed in 0 1 2; do echo supervised-s$seed manifold-s$seed input-s$seed; done
    fi
    if [ "${ONLY:-}" != main ]; then
      for seed in ${ABLATION_SEEDS:-0 1}; do for a in $ABLATIONS; do echo "$a-s$seed"; done; done
    fi
    return
  fi
  if [ "$TIER" = ssl-long ]; then
    for seed in 0 1 2; do echo supervised-s$seed manifold-s$seed; done
    return
  fi
  if [ "$TIER" = digits ]; then  # docs/ssl.md's digits table: 4 rows, then the softmax-consistency rows
    for seed in 0 1 2; do echo supervised-s$seed input-s$seed manifold-s$seed manifold-w0-s$seed; done
    for seed in 0 1 2; do echo input-prob-s$seed manifold-prob-s$seed; done
    return
  fi
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
for name in ${NAMES:-}; do  # a typo in NAMES is an error before anything starts
  m=${name%-s*}
  [[ $name =~ -s[0-9]+$ && -n "${FLAGS[$m]:-}" ]] || {
    echo "unknown run '$name' in NAMES: write METHOD-sSEED with METHOD one of: ${!FLAGS[*]}" >&2; exit 2; }
done
for name in $(jobs_in_order); do
  [ -f "$OUT/$name/summary.json" ] && continue
  busy "$name" && continue  # started by an earlier invocation that still runs
  while [ "$(running)" -ge "$JOBS" ]; do sleep 10; done
  one_run "$name" &
  sleep 5
done
[ -n "${NOWAIT:-}" ] || wait  # NOWAIT=1: return once the last run has started (chained grids)
