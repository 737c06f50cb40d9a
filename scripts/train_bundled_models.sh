#!/usr/bin/env bash
# Re-train the bundled default models from scratch on the PJS corpus (../shared/data/pjs), the way the
# committed ones were made (see src/canora/pretrained/README.md for steps, hours and measured quality).
# Both runs are resumable: run the script again to continue them. 2 CPU cores: one thread each, side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
PJS=${PJS:-../shared/data/pjs}
RUNS=${RUNS:-runs}
mkdir -p "$RUNS"
.venv/bin/canora train-refiner --data "$PJS" --out "$RUNS/refiner_pjs" --config default --steps 200000 \
  --max-minutes 110 --threads 1 --val-every 2000 --checkpoint-every 500 \
  > "$RUNS/refiner_pjs.log" 2>&1 &
# the vocoder shares the refiner's feature cache (same MelSpec and extractors): wait until it exists
sleep 300
.venv/bin/canora train-vocoder --arch nsf --wavs "$PJS" --out "$RUNS/nsf_pjs" --steps 16000 --max-minutes 85 \
  --threads 1 --cache-dir "$RUNS/refiner_pjs/cache" --val-every 1000 --checkpoint-every 500 --log-every 100 \
  > "$RUNS/nsf_pjs.log" 2>&1
wait
rm -rf src/canora/pretrained/refiner src/canora/pretrained/vocoder
mkdir -p src/canora/pretrained
cp -rL "$RUNS/refiner_pjs/export" src/canora/pretrained/refiner
cp -rL "$RUNS/nsf_pjs/export" src/canora/pretrained/vocoder
echo "bundled models updated from $RUNS"
