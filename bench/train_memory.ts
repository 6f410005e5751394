// Memory over 1,000 training iterations: RSS and live native tensors sampled every 50 iterations of Trainer.step on
// a small ViT (synthetic batches, fp32 or --param-dtype bf16, CPU). Flat means no per-iteration growth after warm-up.
//   npm run build:ts && node dist/bench/train_memory.js [--iterations 1000] [--label cpu-2core] [--param-dtype fp32|bf16]
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { batchTensors } from '../src/data/batch.js';
import { setNumThreads } from '../src/tensor/device.js';
import { memory } from '../src/tensor/scope.js';
import { loadSSLConfig } from '../src/train/config.js';
import { SyntheticBatches } from '../src/train/synthetic.js';
import { Trainer } from '../src/train/trainer.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '1000' },
    threads: { type: 'string', default: '2' },
    label: { type: 'string', default: `cpu-${cpus().length}core` },
    'param-dtype': { type: 'string', default: 'fp32' },
  },
});
const pd = values['param-dtype']!;
const N = Number(values.iterations);
setNumThreads(Number(values.threads));
const cfg = await loadSSLConfig('ssl_default', [
  'student.arch=vit_test',
  'student.patch_size=8',
  'student.n_storage_tokens=4',
  'student.drop_path_rate=0.1',
  'crops.global_crops_size=32',
  'crops.local_crops_size=16',
  'crops.local_crops_number=4',
  'dino.head_n_prototypes=256',
  'ibot.head_n_prototypes=256',
  'train.batch_size_per_gpu=8',
  `compute_precision.param_dtype=${pd}`,
  'optim.epochs=10',
  'train.OFFICIAL_EPOCH_LENGTH=100',
]);
const trainer = await Trainer.create(cfg, {});
const data = new SyntheticBatches({ batchSize: 8, globalSize: 32, localSize: 16, nLocal: 4, patchSize: 8 });
const samples: { iteration: number; rss_mb: number; live_tensors: number; tensor_mb: number }[] = [];
const t0 = performance.now();
for (let i = 0; i < N; i++) {
  const b = data.batch(i);
  trainer.step(b);
  for (const t of batchTensors(b)) t.dispose();
  if (i % 10 === 0) await new Promise((r) => setImmediate(r)); // a real loop awaits its loader
  if ((i + 1) % 50 === 0) {
    const m = memory();
    samples.push({
      iteration: i + 1,
      rss_mb: +(process.memoryUsage.rss() / 2 ** 20).toFixed(1),
      live_tensors: m.liveTensors,
      tensor_mb: +(m.cpuBytes / 2 ** 20).toFixed(2),
    });
  }
}
const seconds = (performance.now() - t0) / 1000;
trainer.dispose();
const after = samples.filter((s) => s.iteration >= 200);
const res = {
  bench: 'train_memory',
  param_dtype: pd,
  iterations: N,
  seconds: +seconds.toFixed(1),
  live_tensors_after_warmup: [Math.min(...after.map((s) => s.live_tensors)), Math.max(...after.map((s) => s.live_tensors))],
  rss_mb_after_warmup: [Math.min(...after.map((s) => s.rss_mb)), Math.max(...after.map((s) => s.rss_mb))],
  samples,
  loadavg: loadavg().map((x) => +x.toFixed(2)),
  date: new Date().toISOString(),
};
const text = JSON.stringify(res, null, 1);
process.stdout.write(`${text}\n`);
const dir = join(root, 'bench', 'results');
if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, `train_memory-${values.label}${pd === 'fp32' ? '' : `-${pd}`}.json`), `${text}\n`);
