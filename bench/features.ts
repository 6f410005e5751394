// Feature-extraction throughput: dinov3-ts vs onnxruntime-node (the CPU peer, ../shared/peers) in the same run.
// ViT-S/16 (4 registers) at 224×224, batch 8, float32, N intra-op threads for both. Weights are random (speed does
// not depend on their values). Writes JSON to stdout and to bench/results/features-<label>.json.
//
//   npm run build:ts && node dist/bench/features.js [--threads 2] [--batch 8] [--res 224] [--iters 10] [--label cpu-2core]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { getPreset } from '../src/config/presets.js';
import { DinoVisionTransformer } from '../src/models/vision_transformer.js';
import { addonInfo } from '../src/native/binding.js';
import { Generator, randn } from '../src/tensor/creation.js';
import { setNumThreads } from '../src/tensor/device.js';
import { noGrad } from '../src/tensor/grad_mode.js';
import { scope } from '../src/tensor/scope.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    batch: { type: 'string', default: '8' },
    res: { type: 'string', default: '224' },
    iters: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    label: { type: 'string', default: `cpu-${cpus().length}core` },
    peer: { type: 'string', default: join(root, '..', 'shared', 'peers') },
    only: { type: 'string', default: 'both' },
  },
});
const threads = Number(values.threads);
const batch = Number(values.batch);
const res = Number(values.res);
const iters = Number(values.iters);
const warmup = Number(values.warmup);

function stats(ms: number[]): { medianMs: number; minMs: number; imgPerSec: number } {
  const s = [...ms].sort((a, b) => a - b);
  const median = s[Math.floor(s.length / 2)]!;
  return { medianMs: +median.toFixed(2), minMs: +s[0]!.toFixed(2), imgPerSec: +((batch * 1000) / median).toFixed(2) };
}

async function benchOurs() {
  setNumThreads(threads);
  const model = new DinoVisionTransformer(getPreset('vits16').config, { generator: new Generator(0) }).eval();
  const x = randn([batch, 3, res, res], { generator: new Generator(1) });
  const times: number[] = [];
  noGrad(() => {
    for (let i = 0; i < warmup + iters; i++) {
      const t0 = performance.now();
      scope(() => {
        const f = model.forwardFeatures(x);
        f.patchTokens.data(); // materialise on the host, as a user would
      });
      if (i >= warmup) times.push(performance.now() - t0);
    }
  });
  x.dispose();
  model.dispose();
  return { name: 'dinov3-ts', libtorch: addonInfo.torchVersion, ...stats(times) };
}

async function benchPeer() {
  const dir = join(root, 'bench', 'out', 'peer');
  if (!existsSync(join(dir, 'dinov3_vits16.onnx.data'))) {
    mkdirSync(dir, { recursive: true });
    execFileSync(process.execPath, [join(values.peer!, 'make-weights.mjs'), dir], { stdio: 'ignore' });
  }
  const ort = (await import('onnxruntime-node')).default;
  const session = await ort.InferenceSession.create(join(dir, 'dinov3_vits16.onnx'), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const data = new Float32Array(batch * 3 * res * res);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i);
  const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', data, [batch, 3, res, res]) };
  const times: number[] = [];
  for (let i = 0; i < warmup + iters; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    if (i >= warmup) times.push(performance.now() - t0);
  }
  await session.release();
  return { name: 'onnxruntime-node', version: (await import('onnxruntime-node/package.json', { with: { type: 'json' } })).default.version, ...stats(times) };
}

const results = [];
if (values.only !== 'peer') results.push(await benchOurs());
if (values.only !== 'ours') results.push(await benchPeer());
const ours = results.find((r) => r.name === 'dinov3-ts');
const peer = results.find((r) => r.name === 'onnxruntime-node');
const out = {
  benchmark: 'features: ViT-S/16 forward_features',
  machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavgBefore: loadavg() },
  config: { model: 'vits16', resolution: res, batch, dtype: 'float32', threads, iters, warmup },
  results,
  speedupVsPeer: ours && peer ? +(ours.imgPerSec / peer.imgPerSec).toFixed(3) : null,
  date: new Date().toISOString(),
};
const json = JSON.stringify(out, null, 2);
process.stdout.write(json + '\n');
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(join(root, 'bench', 'results', `features-${values.label}.json`), json + '\n');
