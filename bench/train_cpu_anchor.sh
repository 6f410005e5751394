#!/usr/bin/env bash
# The CPU training step beside the official one (../shared/peers/cpu_anchor_train.py: SSLMetaArch.forward_backward,
# clipping, AdamW, EMA in float32 on CPU) on the same machine, alternating runs (ROUNDS of each) so that the phases of
# a shared machine hit both. Default setting: the peer's README figure (ViT-S/16, batch 8, 2×112 + 4×48 crops, 4096
# prototypes, 2 threads). Writes bench/results/train-cpu-anchor-<label>.json with every run of both and the medians.
#   npx tsc -p tsconfig.json && bash bench/train_cpu_anchor.sh [label]
# Env: PEER_PY (python with torch, default /work/peer/venv/bin/python), PEER_PYTHONPATH (the official checkout and
# omegaconf, default as in the house notes), ROUNDS (2), ITERS (3), THREADS (2), DROP_PATH (0.3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LABEL=${1:-cpu-$(nproc)core}
PEER_PY=${PEER_PY:-/work/peer/venv/bin/python}
PEER_PYTHONPATH=${PEER_PYTHONPATH:-/work/peer/official:/work/peer/debs/usr/lib/python3/dist-packages}
PEER=${PEER:-../shared/peers/cpu_anchor_train.py}
ROUNDS=${ROUNDS:-2}
ITERS=${ITERS:-3}
THREADS=${THREADS:-2}
# Stochastic depth of the student on both sides: the official default (ssl_default_config.yaml, 0.3). Both skip the
# dropped samples' residual branches (batch subsetting), so it changes the work per step: the two must agree.
export DROP_PATH=${DROP_PATH:-0.3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  node dist/src/cli/main.js bench train --preset vits16 --batch 8 --crops 2x112,4x48 --prototypes 4096 \
    --drop-path "$DROP_PATH" --threads "$THREADS" --steps "$ITERS" --warmup 2 --peak-n 0 > "$tmp/ours-$r.json"
  PYTHONPATH=$PEER_PYTHONPATH "$PEER_PY" "$PEER" --arch vit_small --patch-size 16 --global-size 112 --local-size 48 \
    --n-local 4 --batch 8 --prototypes 4096 --iters "$ITERS" --warmup 2 --threads "$THREADS" \
    "student.drop_path_rate=$DROP_PATH" 2> "$tmp/peer-$r.log" |
    sed -n 's/^RESULT //p' > "$tmp/peer-$r.json"
done
mkdir -p bench/results
node -e '
  const fs = require("fs"), [dir, rounds, label] = process.argv.slice(1);
  const read = (f) => JSON.parse(fs.readFileSync(`${dir}/${f}`, "utf8"));
  const ours = [], peer = [];
  for (let r = 1; r <= +rounds; r++) { ours.push(read(`ours-${r}.json`)); peer.push(read(`peer-${r}.json`)); }
  const med = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const oursS = med(ours.map((j) => j.sPerIter));
  const peerS = med(peer.map((j) => j.s_per_iter ?? j.sPerIter ?? j.median_s_per_iter));
  // Each round runs ours then the peer back to back: the per-round ratio cancels most of the drift of a shared machine.
  const perRound = ours.map((o, i) => +((peer[i].s_per_iter ?? peer[i].sPerIter) / o.sPerIter).toFixed(3));
  const out = { benchmark: "CPU training step: dinov3 bench train vs the official step (cpu_anchor_train.py)", label,
    setting: `ViT-S/16, batch 8, 2x112 + 4x48 crops, 4096 prototypes, float32, drop path ${process.env.DROP_PATH}`,
    oursMedianSPerIter: oursS, peerMedianSPerIter: peerS, speedupVsPeer: peerS ? +(peerS / oursS).toFixed(3) : null,
    speedupPerRound: perRound, medianSpeedupPerRound: med(perRound), ours, peer, date: new Date().toISOString() };
  const file = `bench/results/train-cpu-anchor-${label}.json`;
  fs.writeFileSync(file + ".tmp", JSON.stringify(out, null, 2) + "\n"); fs.renameSync(file + ".tmp", file);
  console.log(JSON.stringify({ file, oursMedianSPerIter: oursS, peerMedianSPerIter: peerS, speedupVsPeer: out.speedupVsPeer,
    speedupPerRound: perRound }));
' "$tmp" "$ROUNDS" "$LABEL"
