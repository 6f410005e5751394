// Memory of the data loader over a long run: 10,000 batches (default) of Fashion-MNIST images through worker
// threads (bench/crop_transform.ts: 2 global 32-px + 8 local 16-px crops), collated with iBOT masks into tensors and
// freed, sampling RSS, JS heap and live tensors every 500 batches. Flat = the last samples within a few MB of the
// ones after warm-up. Writes JSON to stdout and bench/results/loader_memory-cpu.json (or argv[2]).
// Run from the repository root: npm run build:ts && node dist/bench/loader_memory.js [out.json] [batches]
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

import { DataLoader, disposeBatch, MaskingGenerator, memory, openFashionMnist } from '../src/index.js';

const batches = Number(process.argv[3] ?? 10_000);
const B = 16;
const workers = Number(process.env.BENCH_WORKERS ?? 2);
const dataset = openFashionMnist('train');
const loader = new DataLoader({
  dataset,
  batchSize: B,
  transform: { module: new URL('./crop_transform.js', import.meta.url).href, options: { global: 32, local: 16 } },
  collate: { maskGenerator: new MaskingGenerator({ inputSize: 2, maxNumPatches: 2 }) },
  workers,
  prefetch: 4,
  seed: 1,
});
const mb = (v: number) => Math.round((v / 2 ** 20) * 10) / 10;
const samples: { batch: number; rssMB: number; heapUsedMB: number; externalMB: number; liveTensors: number; seconds: number }[] = [];
const t0 = Date.now();
let n = 0;
for await (const batch of loader) {
  disposeBatch(batch);
  n++;
  if (n % 500 === 0 || n === 1) {
    const m = process.memoryUsage();
    samples.push({
      batch: n,
      rssMB: mb(m.rss),
      heapUsedMB: mb(m.heapUsed),
      externalMB: mb(m.external + m.arrayBuffers),
      liveTensors: memory().liveTensors,
      seconds: (Date.now() - t0) / 1000,
    });
  }
  if (n >= batches) break;
}
await loader.close();
const afterWarmup = samples.find((s) => s.batch >= 1000) ?? samples[0]!;
const last = samples[samples.length - 1]!;
const result = {
  bench: 'loader_memory',
  node: process.version,
  workers,
  batchSize: B,
  crops: '2×32² + 8×16²',
  batches: n,
  seconds: last.seconds,
  batchesPerSecond: Math.round((n / last.seconds) * 10) / 10,
  rssGrowthAfterWarmupMB: Math.round((last.rssMB - afterWarmup.rssMB) * 10) / 10,
  heapGrowthAfterWarmupMB: Math.round((last.heapUsedMB - afterWarmup.heapUsedMB) * 10) / 10,
  skipped: loader.skipped.length,
  samples,
};
const json = JSON.stringify(result, null, 2);
process.stdout.write(`${json}\n`);
const out = resolve(process.argv[2] ?? 'bench/results/loader_memory-cpu.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(`${out}.tmp`, `${json}\n`);
renameSync(`${out}.tmp`, out);
