// Feature-extraction throughput: dinov3-ts vs onnxruntime-node (the CPU peer, ../shared/peers) in the same run.
// ViT-S/16 (4 registers) at 224×224, batch 8, float32, N intra-op threads for both. Weights are random (speed does
// not depend on their values). Writes JSON to stdout and to bench/results/features-<label>.json: per implementation the
// median/min wall time, img/s and the median process CPU time per batch (all threads; on a busy machine it shows
// the work done, where wall time also shows waiting), our threading setup (OpenMP/OpenBLAS threads, wait policy), and
// the load average before and after. Our inference runs under noGrad, so the layers use the fused kernels.
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
import { addonInfo, native } from '../src/native/binding.js';
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

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

/** Wall-clock median/min and throughput, plus the median process CPU time per iteration (all threads). */
function stats(ms: number[], cpuMs: number[]): { medianMs: number; minMs: number; imgPerSec: number; medianCpuMs: number } {
  const m = median(ms);
  return {
    medianMs: +m.toFixed(2),
    minMs: +Math.min(...ms).toFixed(2),
    imgPerSec: +((batch * 1000) / m).toFixed(2),
    medianCpuMs: +median(cpuMs).toFixed(2),
  };
}

const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function benchOurs() {
  setNumThreads(threads);
  const model = new DinoVisionTransformer(getPreset('vits16').config, { generator: new Generator(0) }).eval();
  const x = randn([batch, 3, res, res], { generator: new Generator(1) });
  const times: number[] = [];
  const cpu: number[] = [];
  noGrad(() => {
    for (let i = 0; i < warmup + iters; i++) {
      const c0 = cpuNow();
      const t0 = performance.now();
      scope(() => {
        const f = model.forwardFeatures(x);
        f.patchTokens.data(); // materialise on the host, as a user would
      });
      if (i >= warmup) {
        times.push(performance.now() - t0);
        cpu.push(cpuNow() - c0);
      }
    }
  });
  x.dispose();
  model.dispose();
  const { parallelInfo: _, ...threading } = native.threadingInfo();
  return { name: 'dinov3-ts', libtorch: addonInfo.torchVersion, threading, ...stats(times, cpu) };
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
  const cpu: number[] = [];
  for (let i = 0; i < warmup + iters; i++) {
    const c0 = cpuNow();
    const t0 = performance.now();
    await session.run(feeds);
    if (i >= warmup) {
      times.push(performance.now() - t0);
      cpu.push(cpuNow() - c0);
    }
  }
  await session.release();
  return { name: 'onnxruntime-node', version: (await import('onnxruntime-node/package.json', { with: { type: 'json' } })).default.version, ...stats(times, cpu) };
}

const loadavgBefore = loadavg();
const results = [];
if (values.only !== 'peer') results.push(await benchOurs());
if (values.only !== 'ours') results.push(await benchPeer());
const ours = results.find((r) => r.name === 'dinov3-ts');
const peer = results.find((r) => r.name === 'onnxruntime-node');
const out = {
  benchmark: 'features: ViT-S/16 forward_features',
  machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavgBefore, loadavgAfter: loadavg() },
  config: { model: 'vits16', resolution: res, batch, dtype: 'float32', threads, iters, warmup },
  results,
  speedupVsPeer: ours && peer ? +(ours.imgPerSec / peer.imgPerSec).toFixed(3) : null,
  date: new Date().toISOString(),
};
const json = JSON.stringify(out, null, 2);
process.stdout.write(json + '\n');
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(join(root, 'bench', 'results', `features-${values.label}.json`), json + '\n');
