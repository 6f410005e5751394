// Per-rank memory of sharded SSL training (issue 11): N ranks started by `launch` build the Trainer for a real
// architecture (student + EMA teacher, official heads) sharded over a Gloo group, optionally run a few iterations on
// synthetic batches, and report what each rank holds: parameter shards (student + teacher), gradient shards and AdamW
// moments, against the unsharded totals, plus the process's resident memory. Writes JSON to stdout and to
// bench/results/train_sharded_memory-<label>.json.
//
//   npm run build:ts && node dist/bench/train_sharded_memory.js [--nproc 2] [--arch vit_small] [--strategy SHARD_GRAD_OP]
//     [--steps 0] [--label cpu-2core]
import { mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { initProcessGroup } from '../src/distributed/c10d.js';
import { launch } from '../src/distributed/launch.js';
import { atomicWriteFile } from '../src/io/safetensors.js';
import { tensor, zeros } from '../src/tensor/creation.js';
import { loadSSLConfig } from '../src/train/config.js';
import { SyntheticBatches } from '../src/train/synthetic.js';
import { Trainer } from '../src/train/trainer.js';
import type { TrainerSharding } from '../src/train/sharded.js';
import { batchTensors } from '../src/data/batch.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const { values } = parseArgs({
  options: {
    nproc: { type: 'string', default: '2' },
    arch: { type: 'string', default: 'vit_small' },
    strategy: { type: 'string', default: 'SHARD_GRAD_OP' },
    steps: { type: 'string', default: '0' },
    label: { type: 'string', default: `cpu-${cpus().length}core` },
  },
});

const FIELDS = ['paramBytes', 'gradBytes', 'optimizerBytes', 'unshardedParamBytes', 'unshardedOptimizerBytes', 'fraction', 'rssBytes'] as const;

async function worker(): Promise<void> {
  const pg = await initProcessGroup({ timeoutMs: 600_000 });
  const W = pg.worldSize;
  // Official heads (ssl_default: 65536 prototypes, hidden 2048, bottleneck 256); small crops keep the optional steps short.
  const cfg = await loadSSLConfig('ssl_default', [
    `student.arch=${values.arch}`,
    'student.patch_size=16',
    'crops.global_crops_size=32',
    'crops.local_crops_size=16',
    'crops.local_crops_number=2',
    'train.batch_size_per_gpu=2',
    'compute_precision.param_dtype=fp32',
    'student.drop_path_rate=0',
  ]);
  const t = await Trainer.create(cfg, { group: pg, sharding: values.strategy as TrainerSharding });
  const steps = Number(values.steps);
  const data = new SyntheticBatches({ batchSize: 2, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 16, seed: 1, rank: pg.rank, worldSize: W });
  for (let it = 0; it < steps; it++) {
    const b = data.batch(it);
    t.step(b);
    for (const x of batchTensors(b)) x.dispose();
  }
  const m = t.memoryReport()!;
  const mine = { ...m, rssBytes: process.memoryUsage().rss };
  const all = zeros([W * FIELDS.length], { dtype: 'float64' });
  const local = tensor(
    FIELDS.map((f) => mine[f]),
    { dtype: 'float64' },
  );
  pg.allGatherInto(all, local).waitSync();
  const flat = all.toArray() as number[];
  if (pg.rank === 0) {
    const ranks = Array.from({ length: W }, (_, r) => Object.fromEntries(FIELDS.map((f, i) => [f, flat[r * FIELDS.length + i]!])));
    const result = {
      bench: 'train_sharded_memory',
      label: values.label,
      date: new Date().toISOString(),
      arch: values.arch,
      strategy: m.strategy,
      world: W,
      steps,
      note: 'bytes on each rank: parameter shards (student + EMA teacher), gradient shards, AdamW moments; fraction = (params + optimizer) / unsharded (params + optimizer)',
      ranks,
    };
    const text = JSON.stringify(result, null, 2);
    process.stdout.write(text + '\n');
    mkdirSync(join(root, 'bench', 'results'), { recursive: true });
    await atomicWriteFile(join(root, 'bench', 'results', `train_sharded_memory-${values.label}.json`), [Buffer.from(text + '\n')]);
  }
  await pg.barrier().wait();
  t.dispose();
  pg.destroy();
}

const r = await launch({
  nprocPerNode: Number(values.nproc),
  argv: [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
  env: { OMP_NUM_THREADS: '1' },
});
if (r.role === 'worker') await worker();
