// Distributed communication: (1) measured on this machine, two Gloo ranks on 127.0.0.1 started by `launch`: time and
// bus bandwidth of all-reduce, all-gather-into and reduce-scatter per buffer size, and how much of a collective hides
// behind compute when issued before it (the overlap FullyShardedModule's prefetch relies on); (2) computed: the
// communication volume per iteration and rank of sharded DINOv3 training for ViT-L and ViT-7B at 8 and 64 ranks, with
// the compute it has to hide behind. Writes JSON to stdout and to bench/results/distributed-<label>.json.
//
//   npm run build:ts && node dist/bench/distributed.js [--sizes 1,8,32] [--iters 5] [--label cpu-2core]
import { mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { initProcessGroup } from '../src/distributed/c10d.js';
import { launch } from '../src/distributed/launch.js';
import { atomicWriteFile } from '../src/io/safetensors.js';
import { addonInfo } from '../src/native/binding.js';
import { empty, randn } from '../src/tensor/creation.js';
import { scope } from '../src/tensor/scope.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1,8,32' }, // MiB per rank
    iters: { type: 'string', default: '5' },
    label: { type: 'string', default: `cpu-${cpus().length}core` },
  },
});

// ---- (2) computed volumes: SHARD_GRAD_OP as the official configs (bf16 parameter gathers, fp32 reductions) ----

/** DINOHead parameters: 3-layer MLP in → hidden → hidden → bottleneck, then bottleneck → prototypes (no bias). */
const headParams = (d: number, hidden: number, bottleneck: number, k: number) =>
  d * hidden + hidden + hidden * hidden + hidden + hidden * bottleneck + bottleneck + bottleneck * k;

interface Model {
  name: string;
  backbone: number; // parameters (released model sizes)
  heads: number;
  tokensPerImageStudent: number; // 2 global + 8 local crops, patches + cls + 4 registers
  tokensPerImageTeacher: number; // 2 global crops
  batchPerGpu: number;
}
const tok = (size: number) => (size / 16) ** 2 + 5;
const MODELS: Model[] = [
  {
    name: 'ViT-L/16 (ssl_default_config: 224/96 crops, batch 64/GPU, heads 65536×256, hidden 2048)',
    backbone: 300e6,
    heads: 2 * headParams(1024, 2048, 256, 65536),
    tokensPerImageStudent: 2 * tok(224) + 8 * tok(96),
    tokensPerImageTeacher: 2 * tok(224),
    batchPerGpu: 64,
  },
  {
    name: 'ViT-7B/16 (dinov3_vit7b16_pretrain: 256/112 crops, batch 16/GPU, DINO head 262144×512 hidden 8192, iBOT head 98304×384 hidden 4096)',
    backbone: 6716e6,
    heads: headParams(4096, 8192, 512, 262144) + headParams(4096, 4096, 384, 98304),
    tokensPerImageStudent: 2 * tok(256) + 8 * tok(112),
    tokensPerImageTeacher: 2 * tok(256),
    batchPerGpu: 16,
  },
];
// Assumptions for the time estimates (stated in the output): effective bf16 throughput per GPU, and ring bus bandwidth
// per GPU inside a node (NVLink) and across nodes (8 × 400 Gb/s InfiniBand per 8-GPU node).
const ASSUME = { flopsPerGpu: 400e12, busBwIntraNode: 200e9, busBwInterNode: 50e9 };

function volumes() {
  return MODELS.flatMap((m) =>
    [8, 64].map((world) => {
      const p = m.backbone + m.heads;
      const ring = (world - 1) / world; // bytes each rank sends per byte of the full buffer (ring all-gather / reduce-scatter)
      const gatherStudent = p * 2 * ring; // bf16 parameters, once (SHARD_GRAD_OP keeps them through backward)
      const gatherTeacher = m.backbone * 2 * ring + m.heads * 2 * ring; // EMA teacher forward (sharded the same way)
      const reduceGrads = p * 4 * ring; // fp32 gradient reduce-scatter
      const gatherGram = m.backbone * 2 * ring; // gram teacher forward, when the gram loss is on
      const perRank = gatherStudent + gatherTeacher + reduceGrads;
      const flops = 6 * m.backbone * m.tokensPerImageStudent * m.batchPerGpu + 2 * m.backbone * m.tokensPerImageTeacher * m.batchPerGpu;
      const computeS = flops / ASSUME.flopsPerGpu;
      const bw = world <= 8 ? ASSUME.busBwIntraNode : ASSUME.busBwInterNode;
      return {
        model: m.name,
        world,
        parameters: p,
        bytesPerRankPerIter: { gatherStudent, gatherTeacher, reduceGrads, total: perRank, gramTeacherExtra: gatherGram, fullShardExtra: gatherStudent },
        computeSecondsPerIter: computeS,
        commSecondsPerIter: perRank / bw,
        commOverCompute: perRank / bw / computeS,
      };
    }),
  );
}

// ---- (1) measured ----

async function worker(): Promise<void> {
  const pg = await initProcessGroup({ timeoutMs: 120_000 });
  const W = pg.worldSize;
  const iters = Number(values.iters);
  const time = async (f: () => Promise<void>) => {
    await f(); // warm-up
    const t: number[] = [];
    for (let i = 0; i < iters; i++) {
      await pg.barrier().wait();
      const t0 = performance.now();
      await f();
      t.push(performance.now() - t0);
    }
    t.sort((a, b) => a - b);
    return t[Math.floor(t.length / 2)]!;
  };
  const collectives = [];
  for (const mib of values.sizes.split(',').map(Number)) {
    const n = Math.floor((mib * 2 ** 20) / 4 / W) * W; // float32 elements, a multiple of W
    const bytes = n * 4;
    const buf = randn([n]);
    const out = empty([n * W]);
    const shard = empty([n / W]);
    const ar = await time(() => pg.allReduce(buf).wait());
    const ag = await time(() => pg.allGatherInto(out, buf).wait());
    const rs = await time(() => pg.reduceScatter(shard, buf).wait());
    // Bus bandwidth as nccl-tests defines it: all-reduce 2(W−1)/W·S/t, all-gather (W−1)/W·S_out/t, reduce-scatter (W−1)/W·S_in/t.
    collectives.push({
      mibPerRank: mib,
      allReduceMs: ar,
      allReduceBusGBs: (((2 * (W - 1)) / W) * bytes) / ar / 1e6,
      allGatherIntoMs: ag,
      allGatherBusGBs: (((W - 1) / W) * bytes * W) / ag / 1e6,
      reduceScatterMs: rs,
      reduceScatterBusGBs: (((W - 1) / W) * bytes) / rs / 1e6,
    });
    for (const t of [buf, out, shard]) t.dispose();
  }
  // Overlap: a 32 MiB all-gather against a matmul loop of comparable length.
  const n = Math.floor((32 * 2 ** 20) / 4 / W) * W;
  const buf = randn([n]);
  const out = empty([n * W]);
  const a = randn([384, 384]);
  const compute = () => scope(() => void [0, 1, 2, 3, 4, 5, 6, 7].reduce((x) => x.matmul(a).tanh(), a));
  const commMs = await time(() => pg.allGatherInto(out, buf).wait());
  const computeMs = await time(async () => compute());
  const bothMs = await time(async () => {
    const w = pg.allGatherInto(out, buf);
    compute();
    await w.wait();
  });
  for (const t of [buf, out, a]) t.dispose();
  if (pg.rank === 0) {
    const result = {
      bench: 'distributed',
      label: values.label,
      date: new Date().toISOString(),
      libtorch: addonInfo.torchVersion,
      backend: pg.backend,
      world: W,
      cpus: cpus().length,
      loadavg: loadavg(),
      measured: {
        collectives,
        overlap: {
          allGather32MiBMs: commMs,
          computeMs,
          issuedBeforeComputeMs: bothMs,
          hiddenFraction: (commMs + computeMs - bothMs) / Math.min(commMs, computeMs),
        },
      },
      computed: { assumptions: ASSUME, strategy: 'SHARD_GRAD_OP, bf16 gathers, fp32 reduce-scatter, ring algorithms', rows: volumes() },
    };
    const text = JSON.stringify(result, null, 2);
    process.stdout.write(text + '\n');
    mkdirSync(join(root, 'bench', 'results'), { recursive: true });
    const file = join(root, 'bench', 'results', `distributed-${values.label}.json`);
    await atomicWriteFile(file, [Buffer.from(text + '\n')]);
  }
  pg.destroy();
}

const r = await launch({
  nprocPerNode: 2,
  argv: [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
  env: { OMP_NUM_THREADS: '1' },
});
if (r.role === 'worker') await worker();
