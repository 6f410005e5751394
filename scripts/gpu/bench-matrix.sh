#!/usr/bin/env bash
# The benchmark matrix of issue 12 through `dinov3 bench` (src/cli/bench.ts), one process per entry, each writing
# $OUT/bench-<name>.json (and its log beside it). A failing entry is reported and the others still run.
#   OUT=dir DEVICE=cuda bash scripts/gpu/bench-matrix.sh          the matrix (scripts/gpu/check.sh runs it)
#   OUT=dir DEVICE=cpu DRY=1 bash scripts/gpu/bench-matrix.sh     a dry run: same entries, tiny preset, tiny sizes
# ONLY=name,name runs some entries; EXTRAS=0|only (below). Needs the compiled CLI (dist/, scripts/gpu/pack.sh) and node on PATH.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${OUT:-/tmp/bench-matrix}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
DEVICE=${DEVICE:-cuda}
CLI=(node dist/src/cli/main.js bench)
failed=0

# name | command | options (issue 12 "Targets": official DINOv3 on one H200, batch 64, 2×224 + 8×96, 65,536 prototypes, bf16)
MATRIX=(
  "train-vitl16-b64|train|--preset vitl16 --batch 64 --crops 2x224,8x96 --steps 10 --warmup 3"
  "train-vits16-b64|train|--preset vits16 --batch 64 --crops 2x224,8x96 --steps 10 --warmup 3"
  "features-vitl16-224-b256|features|--preset vitl16 --resolution 224 --batch 256 --dtype bfloat16 --steps 10 --warmup 3"
  "features-vits16-224-b256|features|--preset vits16 --resolution 224 --batch 256 --dtype bfloat16 --steps 10 --warmup 3"
  "features-vitl16-512-b32|features|--preset vitl16 --resolution 512 --batch 32 --dtype bfloat16 --steps 10 --warmup 3"
  "features-vitl16-224-b256-autocast|features|--preset vitl16 --resolution 224 --batch 256 --autocast --steps 10 --warmup 3"
  "features-vits16-224-b256-graph|features|--preset vits16 --resolution 224 --batch 256 --dtype bfloat16 --cuda-graph --steps 10 --warmup 3"
  "features-vitl16-224-b256-graph|features|--preset vitl16 --resolution 224 --batch 256 --dtype bfloat16 --cuda-graph --steps 10 --warmup 3"
  "features-vits16-224-b64-graph|features|--preset vits16 --resolution 224 --batch 64 --dtype bfloat16 --cuda-graph --steps 20 --warmup 3"
  "features-vits16-224-b64|features|--preset vits16 --resolution 224 --batch 64 --dtype bfloat16 --steps 20 --warmup 3"
)
# Extras beside the targets (before/after figures): host batches through the prefetcher or inline, activation
# checkpointing. EXTRAS=0 skips them, EXTRAS=only runs only them (scripts/gpu/check.sh runs them after the peer).
EXTRA_MATRIX=(
  "train-vits16-b64-host-prefetch|train|--preset vits16 --batch 64 --crops 2x224,8x96 --steps 10 --warmup 3 --host-batches prefetch"
  "train-vits16-b64-host-inline|train|--preset vits16 --batch 64 --crops 2x224,8x96 --steps 10 --warmup 3 --host-batches inline"
  "train-vitl16-b64-checkpointing|train|--preset vitl16 --batch 64 --crops 2x224,8x96 --steps 10 --warmup 3 --activation-checkpointing"
)
case "${EXTRAS:-1}" in
  0) ;;
  only) MATRIX=("${EXTRA_MATRIX[@]}") ;;
  *) MATRIX+=("${EXTRA_MATRIX[@]}") ;;
esac
# The dry run keeps each entry's command, dtype, host-batch and checkpointing options, with the tiny preset and sizes that take a second
# (--cuda-graph needs CUDA: a CPU dry run leaves it out).
DRY_TRAIN="--preset tiny --batch 2 --crops 2x32,2x16 --steps 1 --warmup 0 --peak-n 64"
DRY_FEATURES="--preset tiny --resolution 32 --batch 2 --steps 1 --warmup 0 --peak-n 64"

for entry in "${MATRIX[@]}"; do
  IFS='|' read -r name cmd opts <<< "$entry"
  if [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
  if [ "${DRY:-0}" = 1 ]; then
    extra=$(grep -oE -- '--dtype [a-z0-9]+|--autocast|--cuda-graph|--host-batches [a-z]+|--activation-checkpointing' <<< "$opts" | tr '\n' ' ')
    [ "$DEVICE" = cpu ] && extra=${extra//--cuda-graph/}
    if [ "$cmd" = train ]; then opts="$DRY_TRAIN $extra"; else opts="$DRY_FEATURES $extra"; fi
  fi
  echo "[bench] $name: $cmd $opts --device $DEVICE"
  # shellcheck disable=SC2086
  if "${CLI[@]}" "$cmd" $opts --device "$DEVICE" --out "$OUT/bench-$name.json" > "$OUT/bench-$name.log" 2>&1; then
    echo "[bench] $name: $(node -e 'const j = require(process.argv[1]); console.log(`${j.imgPerSec} img/s, ${j.sPerIter} s/iter, MFU ${j.mfu}, peak memory ${(j.peakMemoryBytes / 2 ** 30).toFixed(2)} GiB${j.hostSyncsPerStep === undefined ? "" : `, host syncs/step ${j.hostSyncsPerStep}`}`)' "$OUT/bench-$name.json")"
  else
    failed=$((failed + 1))
    echo "[bench] $name: FAILED"
    tail -n 5 "$OUT/bench-$name.log"
  fi
done
exit $((failed > 0))
