// Feature-extraction throughput: dinov3-ts vs onnxruntime-node (the CPU peer, ../shared/peers) in the same run.
// ViT-S/16 (4 registers) at 224×224, batch 8, float32, N intra-op threads for both. Weights are random (speed does
// not depend on their values). Writes JSON to stdout and to bench/results/features-<label>.json: per implementation the
// median/min wall time, img/s and the median process CPU time per batch (all threads; on a busy machine it shows
// the work done, where wall time also shows waiting), our threading setup (OpenMP/OpenBLAS threads, wait policy), and
// the load average before and after. Our inference runs under noGrad, so the ops pick the fused CPU kernels. Both
// implementations live in this process and take turns in rounds (see ROUND), so machine noise hits them alike.
//
// With --bf16, a third contender runs our forward with bfloat16 weights and input (oneDNN's AVX512-BF16 GEMMs where the
// CPU has them); the JSON then also holds how far its features are from our float32 ones on the same input.
//
//   npm run build:ts && node dist/bench/features.js [--threads 2] [--batch 8] [--res 224] [--iters 10] [--bf16] [--label cpu-2core]
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
    bf16: { type: 'boolean', default: false },
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

interface Contender {
  name: string;
  /** Our contenders: the patch tokens of the timed input, as float32 on the host. */
  features?(): Float32Array;
  /** Runs one batch to completion (features on the host). */
  run(): Promise<void>;
  info: Record<string, unknown>;
  close(): Promise<void>;
}

async function ours(dtype: 'float32' | 'bfloat16' = 'float32'): Promise<Contender> {
  setNumThreads(threads);
  const model = new DinoVisionTransformer(getPreset('vits16').config, { generator: new Generator(0) }).eval();
  const x0 = randn([batch, 3, res, res], { generator: new Generator(1) });
  const x = dtype === 'float32' ? x0 : x0.to(dtype); // the float32 contender's input, rounded
  if (dtype !== 'float32') {
    x0.dispose();
    model.to_({ dtype });
  }
  const { parallelInfo: _, ...threading } = native.threadingInfo();
  return {
    name: dtype === 'float32' ? 'dinov3-ts' : 'dinov3-ts bf16',
    info: { libtorch: addonInfo.torchVersion, dtype, threading },
    run: async () =>
      noGrad(() =>
        scope(() => {
          model.forwardFeatures(x).patchTokens.data(); // materialise on the host, as a user would
        }),
      ),
    features: () => noGrad(() => scope(() => model.forwardFeatures(x).patchTokens.toFloat32Array())),
    close: async () => {
      x.dispose();
      model.dispose();
    },
  };
}

async function peer(): Promise<Contender> {
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
  const version = (await import('onnxruntime-node/package.json', { with: { type: 'json' } })).default.version;
  return {
    name: 'onnxruntime-node',
    info: { version },
    run: async () => void (await session.run(feeds)),
    close: () => session.release(),
  };
}

/** How far the bf16 patch tokens are from the float32 ones: per-token cosine (mean, min) and relative L2 error. */
function featureError(f32: Float32Array, b16: Float32Array): { cosineMean: number; cosineMin: number; relativeL2: number } {
  const D = getPreset('vits16').config.embed_dim;
  let sum = 0;
  let min = 1;
  let num = 0;
  let den = 0;
  for (let t = 0; t < f32.length / D; t++) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let i = t * D; i < (t + 1) * D; i++) {
      ab += f32[i]! * b16[i]!;
      aa += f32[i]! * f32[i]!;
      bb += b16[i]! * b16[i]!;
      num += (f32[i]! - b16[i]!) ** 2;
    }
    den += aa;
    const c = ab / Math.sqrt(aa * bb);
    sum += c;
    min = Math.min(min, c);
  }
  return { cosineMean: +(sum / (f32.length / D)).toFixed(6), cosineMin: +min.toFixed(6), relativeL2: +Math.sqrt(num / den).toFixed(6) };
}

// The contenders take turns in rounds of ROUND batches (after `warmup` batches each), so that the slow and fast phases
// of a shared machine hit both; each round's first batch is not timed (the other's worker threads may still spin).
const ROUND = 4;
const loadavgBefore = loadavg();
const contenders: Contender[] = [];
if (values.only !== 'peer') contenders.push(await ours());
if (values.only !== 'peer' && values.bf16) contenders.push(await ours('bfloat16'));
if (values.only !== 'ours') contenders.push(await peer());
const times = contenders.map(() => [] as number[]);
const cpuTimes = contenders.map(() => [] as number[]);
for (const c of contenders) for (let i = 0; i < warmup; i++) await c.run();
for (let done = 0; done < iters; done += ROUND - 1) {
  for (const [k, c] of contenders.entries()) {
    await c.run();
    for (let i = 1; i < ROUND; i++) {
      const c0 = cpuNow();
      const t0 = performance.now();
      await c.run();
      times[k]!.push(performance.now() - t0);
      cpuTimes[k]!.push(cpuNow() - c0);
    }
  }
}
const results = contenders.map((c, k) => ({ name: c.name, ...c.info, ...stats(times[k]!, cpuTimes[k]!) }));
const bf16Error = values.bf16 && values.only !== 'peer' ? featureError(contenders[0]!.features!(), contenders[1]!.features!()) : null;
for (const c of contenders) await c.close();
const oursResult = results.find((r) => r.name === 'dinov3-ts');
const peerResult = results.find((r) => r.name === 'onnxruntime-node');
const bf16Result = results.find((r) => r.name === 'dinov3-ts bf16');
const out = {
  benchmark: 'features: ViT-S/16 forward_features',
  machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavgBefore, loadavgAfter: loadavg() },
  config: { model: 'vits16', resolution: res, batch, dtype: 'float32', threads, iters, warmup, interleavedRoundsOf: ROUND },
  results,
  speedupVsPeer: oursResult && peerResult ? +(oursResult.imgPerSec / peerResult.imgPerSec).toFixed(3) : null,
  ...(bf16Result ? { bf16SpeedupVsPeer: peerResult ? +(bf16Result.imgPerSec / peerResult.imgPerSec).toFixed(3) : null, bf16VsFloat32Features: bf16Error } : {}),
  date: new Date().toISOString(),
};
const json = JSON.stringify(out, null, 2);
process.stdout.write(json + '\n');
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(join(root, 'bench', 'results', `features-${values.label}.json`), json + '\n');
