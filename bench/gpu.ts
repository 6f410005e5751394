// GPU throughput from TypeScript: a bf16 matmul (TFLOP/s, to compare with the card's peak as PyTorch measures it in
// bench/peer/torch_gpu.py) and DINOv3 feature extraction (forward_features, ViT-S/16 and ViT-L/16, 224×224, batch 64:
// the official anchors' setting) with bf16 weights and with fp32 weights under bf16 autocast. Random weights: speed
// does not depend on their values. Timed with CUDA events around `iters` calls after `warmup` calls. Writes JSON to
// stdout and to bench/results/gpu-<label>.json.
//   node dist/bench/gpu.js --label h100 [--batch 64] [--res 224] [--iters 20] [--models vits16,vitl16] [--out path]
// `--device cpu` (with small sizes) runs the same code on the CPU: a dry run of this script where there is no GPU.
// Run on a GPU machine by scripts/gpu/check.sh.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { getPreset } from '../src/config/presets.js';
import { DinoVisionTransformer } from '../src/models/vision_transformer.js';
import { addonInfo } from '../src/native/binding.js';
import { Generator, randn } from '../src/tensor/creation.js';
import { cuda } from '../src/tensor/device.js';
import { autocast, noGrad } from '../src/tensor/grad_mode.js';
import { matmul } from '../src/ops/linalg.js';
import { memory, scope } from '../src/tensor/scope.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({
  options: {
    label: { type: 'string', default: 'gpu' },
    batch: { type: 'string', default: '64' },
    res: { type: 'string', default: '224' },
    iters: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    models: { type: 'string', default: 'vits16,vitl16' },
    matmul: { type: 'string', default: '8192' },
    out: { type: 'string' },
    device: { type: 'string', default: 'cuda' },
  },
});
const device = values.device as 'cuda' | 'cpu';
const batch = Number(values.batch);
const res = Number(values.res);
const iters = Number(values.iters);
const warmup = Number(values.warmup);
if (device === 'cuda' && (!addonInfo.cudaCompiled || !cuda.isAvailable()))
  throw new Error(`bench/gpu: needs a CUDA build with a visible GPU (this addon: libtorch ${addonInfo.torchVersion}, cudaCompiled ${addonInfo.cudaCompiled})`);

/** Milliseconds per call of `fn` (CUDA events; each call's tensors are freed by a scope). */
function timeMs(fn: () => unknown, n = iters, w = warmup): number {
  for (let i = 0; i < w; i++) scope(() => void fn());
  if (device === 'cpu') {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) scope(() => void fn());
    return (performance.now() - t0) / n;
  }
  cuda.synchronize();
  const start = new cuda.Event({ enableTiming: true });
  const end = new cuda.Event({ enableTiming: true });
  start.record();
  for (let i = 0; i < n; i++) scope(() => void fn());
  end.record();
  end.synchronize();
  return start.elapsedTime(end) / n;
}

function benchMatmul(n: number) {
  const a = randn([n, n], { device, dtype: 'bfloat16' });
  const b = randn([n, n], { device, dtype: 'bfloat16' });
  const ms = device === 'cpu' ? timeMs(() => matmul(a, b), 2, 1) : timeMs(() => matmul(a, b), 50, 5);
  a.dispose();
  b.dispose();
  return { n, dtype: 'bfloat16', msPerCall: +ms.toFixed(4), tflops: +((2 * n ** 3) / (ms * 1e-3) / 1e12).toFixed(1) };
}

function benchFeatures(name: string) {
  const out: Record<string, unknown> = { model: name };
  const x = randn([batch, 3, res, res], { device, generator: new Generator(1) });
  // bf16 weights and input.
  {
    const model = new DinoVisionTransformer(getPreset(name).config, { generator: new Generator(0) }).eval();
    model.to_({ device, dtype: 'bfloat16' });
    const xb = x.to('bfloat16');
    const ms = noGrad(() => timeMs(() => model.forwardFeatures(xb).patchTokens));
    out.bf16Weights = { msPerBatch: +ms.toFixed(3), imgPerSec: +((batch * 1000) / ms).toFixed(1) };
    xb.dispose();
    model.dispose();
  }
  // fp32 master weights, bf16 autocast (how the official training forward runs).
  {
    const model = new DinoVisionTransformer(getPreset(name).config, { generator: new Generator(0) }).eval();
    model.to_({ device });
    const ms = noGrad(() => timeMs(() => autocast(() => model.forwardFeatures(x).patchTokens, { device })));
    out.autocastBf16 = { msPerBatch: +ms.toFixed(3), imgPerSec: +((batch * 1000) / ms).toFixed(1) };
    model.dispose();
  }
  x.dispose();
  return out;
}

const before = memory().liveTensors;
const result = {
  benchmark: 'gpu: bf16 matmul and forward_features',
  label: values.label,
  libtorch: addonInfo.torchVersion,
  config: { resolution: res, batch, iters, warmup },
  matmul: benchMatmul(Number(values.matmul)),
  features: values.models!.split(',').filter(Boolean).map(benchFeatures),
  leakedTensors: memory().liveTensors - before,
  cudaMemory: memory(),
  date: new Date().toISOString(),
};
const json = JSON.stringify(result, null, 2);
process.stdout.write(json + '\n');
const file = values.out ? resolve(values.out) : join(root, 'bench', 'results', `gpu-${values.label}.json`);
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, json + '\n');
