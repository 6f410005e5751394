// Where the ViT-S/16 features forward spends its time on the CPU (issue 12): each op of one block through the same
// entries the layers call (ops/kernels.ts, ops/linalg.ts, ops/nn.ts) at the shapes of batch 8 at 224 (8·201 tokens,
// D 384, 6 heads, RoPE on 196 patch tokens), times its count per forward, beside the whole forward_features. No
// autograd (the fused CPU kernels). Per op: the median over rounds of the mean of 12 calls, with the achieved FLOP/s of
// the GEMM ops. The ops run on inputs and weights that stay in cache between calls; the whole forward also pays for
// reading each block's weights and activations from memory, so the sum of the parts is below the whole.
//
//   npm run build:ts && node dist/bench/forward_breakdown.js [--threads 2] [--rounds 7] [--out file.json]
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';

import { vitForwardFlops } from '../src/cli/flops.js';
import { getPreset } from '../src/config/presets.js';
import { DinoVisionTransformer } from '../src/models/vision_transformer.js';
import { addonInfo } from '../src/native/binding.js';
import { attention, residualAdd } from '../src/ops/kernels.js';
import { linear } from '../src/ops/linalg.js';
import { layerNorm } from '../src/ops/nn.js';
import { Generator, randn } from '../src/tensor/creation.js';
import { setNumThreads } from '../src/tensor/device.js';
import { noGrad } from '../src/tensor/grad_mode.js';
import { scope } from '../src/tensor/scope.js';
import type { Tensor } from '../src/tensor/tensor.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '7' },
    out: { type: 'string' },
  },
});
const threads = Number(values.threads);
const rounds = Number(values.rounds);
setNumThreads(threads);

const cfg = getPreset('vits16').config;
const B = 8;
const res = 224;
const flops = vitForwardFlops(cfg, res);
const N = flops.tokens;
const D = cfg.embed_dim;
const H = cfg.num_heads;
const F = 4 * D;
const P = flops.patches;
const M = B * N;
const depth = cfg.depth;

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

const g = new Generator(0);
const keep: Tensor[] = [];
const r = (shape: number[], s = 1) => {
  const t = scope(() => randn(shape, { generator: g }).mul(s));
  keep.push(t);
  return t;
};
const x = r([B, N, D]);
const hidden = r([B, N, F]);
const qkv = r([B, N, 3 * D]);
const sin = r([P, D / H]);
const cos = r([P, D / H]);
const [wQkv, bQkv, wProj, bProj, w1, b1, w2, b2] = [r([3 * D, D], 0.02), r([3 * D]), r([D, D], 0.02), r([D]), r([F, D], 0.02), r([F]), r([D, F], 0.02), r([D])];
const [lnW, lnB, gamma] = [r([D]), r([D]), r([D])];

// name → [call, FLOPs per call, calls per forward]
const ops: Record<string, [() => unknown, number, number]> = {
  'qkv linear': [() => linear(x, wQkv, bQkv), 2 * M * D * 3 * D, depth],
  'proj linear': [() => linear(x, wProj, bProj), 2 * M * D * D, depth],
  'fc1 linear + GELU': [() => linear(x, w1, b1, 'gelu'), 2 * M * D * F, depth],
  'fc2 linear': [() => linear(hidden, w2, b2), 2 * M * F * D, depth],
  attention: [() => attention(qkv, H, { sin, cos }), (flops.attention / depth) * B, depth],
  layerNorm: [() => layerNorm(x, [D], lnW, lnB, 1e-6), 0, 2 * depth + 1],
  'residual add (LayerScale)': [() => residualAdd(x, x, gamma), 0, 2 * depth],
};

const model = new DinoVisionTransformer(cfg, { generator: new Generator(1) }).eval();
const input = r([B, 3, res, res]);
const forward = () => noGrad(() => scope(() => void model.forwardFeatures(input).patchTokens.data()));

const times: Record<string, number[]> = { forward: [] };
for (let i = 0; i < 2; i++) forward();
for (let round = 0; round < rounds; round++) {
  let t = performance.now();
  forward();
  times.forward!.push(performance.now() - t);
  for (const [name, [call]] of Object.entries(ops)) {
    t = performance.now();
    for (let i = 0; i < 12; i++) noGrad(() => scope(() => void call()));
    (times[name] ??= []).push((performance.now() - t) / 12);
  }
}

const perOp: Record<string, { msPerCall: number; calls: number; msPerForward: number; gflopsPerSec: number | null }> = {};
let sum = 0;
for (const [name, [, fl, calls]] of Object.entries(ops)) {
  const ms = median(times[name]!);
  sum += ms * calls;
  perOp[name] = { msPerCall: +ms.toFixed(3), calls, msPerForward: +(ms * calls).toFixed(1), gflopsPerSec: fl ? +(fl / ms / 1e6).toFixed(1) : null };
}
const forwardMs = median(times.forward!);
const out = {
  benchmark: 'forward breakdown: ViT-S/16 forward_features, batch 8 at 224, float32, no autograd',
  date: new Date().toISOString(),
  libtorch: addonInfo.torchVersion,
  threads,
  rounds,
  loadavg: loadavg().map((v) => +v.toFixed(2)),
  forward: {
    ms: +forwardMs.toFixed(1),
    imgPerSec: +((B * 1000) / forwardMs).toFixed(2),
    gflopsPerSec: +((flops.total * B) / forwardMs / 1e6).toFixed(1),
    flopsPerImage: flops.total,
  },
  perOp,
  sumOfOpsMs: +sum.toFixed(1),
  notCoveredMs: +(forwardMs - sum).toFixed(1),
};
for (const t of keep) t.dispose();
model.dispose();
const json = JSON.stringify(out, null, 2);
console.log(json);
if (values.out) writeFileSync(values.out, `${json}\n`);
