#!/usr/bin/env bash
# Runs on a GPU machine (NVIDIA card, CUDA, a PyTorch 2.x with its libtorch, cmake, g++; no Node), in the repository
# root, after scripts/gpu/pack.sh here. One call does everything and leaves its results in $OUT:
#   1. unpacks node and the node_modules subset (.gpu/)
#   2. builds the addon with plain cmake against torch.utils.cmake_prefix_path (CUDA paths on) → build-cuda/
#   3. runs the CUDA-marked tests (test/cuda) and the device/robustness tests with vitest
#   4. the `dinov3 bench` matrix (scripts/gpu/bench-matrix.sh: training steps and forward_features of ViT-S/16 and
#      ViT-L/16 with img/s, counted FLOPs, MFU against the card's measured bf16 matmul peak, peak memory)
#      → $OUT/bench-<entry>.json, and bench/peer/torch_gpu.py (PyTorch on the same card: the matmul peak and an
#      eager DINOv3 ViT) → $OUT/gpu-<card>-torch.json; the card and versions → $OUT/card.json; then the extras
#      (host batches prefetched or inline, activation checkpointing: before/after figures)
#   5. the unit suite on the CUDA build, if time is left (CHECK_FULL_SUITE=0 skips it), less what needs sharp or
#      the cmake-js build (cli, data, features, build)
# Usage (device tool): command "bash scripts/gpu/check.sh", carry [".gpu", "dist"], timeout ≤ 600 s.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
log() { echo "[check $(date +%T)] $*" | tee -a "$OUT/check.log"; }
step() { local name=$1; shift; log "$name: $*"; "$@" > "$OUT/$name.log" 2>&1; local rc=$?; log "$name: exit $rc"; tail -n 25 "$OUT/$name.log"; return $rc; }

mkdir -p /tmp/node/bin
xz -dc .gpu/node.xz > /tmp/node/bin/node && chmod +x /tmp/node/bin/node
export PATH=/tmp/node/bin:$PATH
[ -d node_modules/vitest ] || tar -xJf .gpu/node_modules.tar.xz
log "node $(node --version); $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr 'A-Z ' 'a-z-' | sed 's/[^a-z0-9-]//g; s/^nvidia-//')
CARD=${CARD:-gpu}

PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
# LIBTORCH (the torch root) goes first in CMAKE_PREFIX_PATH (CMakeLists.txt), so its lib/ wins over any system libtorch.
export LIBTORCH=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')
TORCH_LIB=$LIBTORCH/lib
log "torch $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)') at $PREFIX"
export LD_LIBRARY_PATH=$TORCH_LIB:${LD_LIBRARY_PATH:-}
# PyTorch's CMake config finds the CUDA toolkit through nvcc: in /usr/local/cuda*, on PATH (often a wrapper script,
# hence last but one), or a pip nvidia-cuda-nvcc.
NVCC=$(ls /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc 2>/dev/null | head -1)
[ -n "$NVCC" ] || NVCC=$(command -v nvcc || ls "$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null)"/*/bin/nvcc 2>/dev/null | head -1)
CUDA_ARGS=()
if [ -n "$NVCC" ]; then
  NVCC=$(readlink -f "$NVCC")  # a /usr/local/bin/nvcc link must not make /usr/local the toolkit root
  export PATH=$PATH:$(dirname "$NVCC")
  CUDA_ARGS=(-DCUDAToolkit_ROOT="$(dirname "$(dirname "$NVCC")")" -DCMAKE_CUDA_COMPILER="$NVCC")
  log "nvcc: $NVCC ($("$NVCC" --version | tail -1))"
else
  log "no nvcc found (PATH, /usr/local/cuda*, pip nvidia packages): PyTorch's CMake config will not find CUDA"
fi
GEN="Unix Makefiles"; command -v ninja > /dev/null && GEN=Ninja
step configure cmake -S . -B build-cuda -G "$GEN" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" "${CUDA_ARGS[@]}" \
  -DNODE_API_INC="$PWD/node_modules/node-api-headers/include" -DNODE_ADDON_API_DIR="$PWD/node_modules/node-addon-api" || exit 1
step build cmake --build build-cuda -j "$(nproc)" || exit 1
export DINOV3_ADDON=$PWD/build-cuda/dinov3.node
node -e "import('./dist/src/index.js').then((m) => console.log(JSON.stringify({ addon: m.addonInfo, cuda: m.cuda.isAvailable(), devices: m.cuda.deviceCount() })))" | tee -a "$OUT/check.log"

VITEST="node node_modules/vitest/vitest.mjs run --reporter=default"
step cuda-tests $VITEST test/cuda test/unit/ops/device.test.ts test/unit/robustness test/unit/leak
TORCH_VER=$(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1 | CARD="$CARD" TORCH_VER="$TORCH_VER" node -e '
  let s = "";
  process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const [name, memory, driver] = s.trim().split(/, */);
    const e = process.env;
    console.log(JSON.stringify({ card: e.CARD, name, memory, driver, torch: e.TORCH_VER, node: process.version, date: new Date().toISOString() }));
  });' > "$OUT/card.json"
OUT="$OUT" DEVICE=cuda EXTRAS=0 step bench-matrix bash scripts/gpu/bench-matrix.sh
step bench-torch python3 bench/peer/torch_gpu.py --out "$OUT/gpu-$CARD-torch.json" ${CHECK_COMPILE:+--compile}
OUT="$OUT" DEVICE=cuda EXTRAS=only step bench-extras bash scripts/gpu/bench-matrix.sh
[ "${CHECK_FULL_SUITE:-1}" = 1 ] && step full-suite timeout 240 $VITEST test/unit \
  --exclude 'test/unit/cli/**' --exclude 'test/unit/data/**' --exclude 'test/unit/features/**' --exclude 'test/unit/build/**'
log done
