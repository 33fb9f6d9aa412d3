#!/usr/bin/env bash
# The SSL laptop tier (README: Laptop tier): six methods x three seeds on real CIFAR-10, 4,000 labels,
# two one-thread runs at a time on a 2-core CPU. Every method of a seed uses the same split (the split
# is drawn from --seed). Each run's wall time goes to OUT/<name>/wall_s.
#   bash experiments/ssl_laptop_tier.sh [OUT=runs/laptop] [DATA=data/cifar10-jpeg75] [SEEDS="0 1 2"]
set -euo pipefail
OUT=${OUT:-runs/laptop}
DATA=${DATA:-data/cifar10-jpeg75}
SEEDS=${SEEDS:-0 1 2}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=1
declare -A METHODS=(
  [supervised]="--method supervised"
  [input]="--method input"
  [manifold]=""
  [manifold-ema]="--pseudolabels ema"
  [manifold-w0]="--w-max 0"
  [manifold-prob]="--consistency prob"
)
ORDER="supervised manifold input manifold-ema manifold-w0 manifold-prob"
for seed in $SEEDS; do
  for m in $ORDER; do
    name="$m-s$seed"
    [ -f "$OUT/$name/summary.json" ] && continue
    echo "$name|python -m ssl.train --config configs/ssl/cifar10-4k-laptop.yaml --data-dir $DATA --seed $seed ${METHODS[$m]} --out $OUT/$name --device cpu"
  done
done | xargs -P "$JOBS" -I{} bash -c '
  line="{}"; name=${line%%|*}; cmd=${line#*|}
  start=$(date +%s)
  resume=""; [ -d "'"$OUT"'/$name" ] && resume="--resume"
  $cmd $resume > "'"$OUT"'/$name.log" 2>&1 || { echo "FAILED $name"; exit 0; }
  echo $(( $(date +%s) - start )) > "'"$OUT"'/$name/wall_s"
  echo "done $name in $(cat "'"$OUT"'/$name/wall_s") s"
'
