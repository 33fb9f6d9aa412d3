#!/usr/bin/env bash
# Preprint Table 6 on the digits (docs/gan.md): GAN-GP (γ 10, no spectral norm) and SN-GAN, each without mixup,
# with FR and with FR+FF input mixes (α 0.2), plus G's mixup term (ICML eq. 6) on the GAN-GP mixup rows; SEEDS
# seeds each (ROWS="... gangp-frff-soft gangp-frff-perstep gangp-frff-uniform" adds departure rows: soft labels,
# λ per step, λ ~ U(0, 0.5)),
# STEPS generator updates, JOBS one-thread runs at a time (training runs of other grids on the
# machine count too). Finished runs are skipped, interrupted ones resumed. Then the table:
#   SEEDS="0 1 2" bash experiments/gan_table6.sh        # OUT=runs/table6
#   python -m gan.table6 runs/table6 --json docs/gan-table6.json --samples docs/gan-table6-samples.png
# DRY=1 prints the command of every run still to do (resumed ones with --resume) and starts nothing.
set -euo pipefail
OUT=${OUT:-runs/table6}
SEEDS=${SEEDS:-0 1 2}
STEPS=${STEPS:-1000}
JOBS=${JOBS:-2}
ROWS=${ROWS:-gangp-none gangp-fr gangp-frff gangp-fr-gmix gangp-frff-gmix sngan-none sngan-fr sngan-frff}
export OMP_NUM_THREADS=1
[ -f .venv/bin/activate ] && . .venv/bin/activate
mkdir -p "$OUT"
running() { pgrep -fc "^python -m (ssl|gan).train " || true; }
# the flags of a row: <base>-<pairs>[-gmix|-soft|-perstep|-uniform], base gangp|sngan, pairs none|fr|frff
row_flags() {
  local base pairs flags
  IFS=- read -r base pairs gmix <<< "$1"
  flags="--config configs/gan/table6-digits-$base.yaml"
  case $pairs in
    none) ;;
    fr) flags="$flags --mix pixel --mix-pairs fr" ;;
    frff) flags="$flags --mix pixel --mix-pairs fr,ff" ;;
    *) echo "unknown row $1" >&2; return 1 ;;
  esac
  case ${gmix:-} in
    "") ;;
    gmix) flags="$flags --g-mix" ;;
    soft) flags="$flags --mix-labels soft" ;;
    perstep) flags="$flags --mix-per-example false" ;;
    uniform) flags="$flags --mix-lam uniform --mix-alpha 0.5" ;;
    *) echo "unknown row $1" >&2; return 1 ;;
  esac
  echo "$flags"
}
one_run() {
  local row=$1 seed=$2 name start resume="" flags
  name=$row-s$seed start=$(date +%s) flags=$(row_flags "$row")
  [ -f "$OUT/$name/checkpoint.pt" ] && resume="--resume"
  if [ -n "${DRY:-}" ]; then
    echo "python -m gan.train $flags --seed $seed --steps $STEPS --out $OUT/$name --device cpu $resume"
    return
  fi
  # shellcheck disable=SC2086
  python -m gan.train $flags --seed "$seed" --steps "$STEPS" --out "$OUT/$name" --device cpu $resume \
    >> "$OUT/$name.log" 2>&1 || { echo "FAILED $name"; return; }
  echo $(( $(date +%s) - start )) > "$OUT/$name.wall_s"
  echo "done $name in $(cat "$OUT/$name.wall_s") s"
}
for seed in $SEEDS; do for row in $ROWS; do
  row_flags "$row" > /dev/null
  name=$row-s$seed
  [ -f "$OUT/$name/summary.json" ] && continue
  pgrep -f "^python -m gan.train .*--out $OUT/$name " > /dev/null && continue
  if [ -n "${DRY:-}" ]; then one_run "$row" "$seed"; continue; fi
  while [ "$(running)" -ge "$JOBS" ]; do sleep 10; done
  one_run "$row" "$seed" &
  sleep 5
done; done
[ -n "${NOWAIT:-}" ] || wait  # NOWAIT=1: return once the last run has started (chained grids)
