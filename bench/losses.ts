// Micro-benchmark of the DINO teacher/student loss path on CPU (RECIPE §4 step 3, §5.1, §5.2) at the default
// config's head size: B = 64 images per rank, K = 65,536 prototypes, 2 global crops.
//   teacher CLS logits     [2·B, K] = [128, 65536]   → Sinkhorn-Knopp (τ_t = 0.07, 3 iterations) → targets [2, B, K]
//   student global logits  [2, B, K] = [2, 64, 65536] → DINO global term (same-view pairs ignored, τ_s = 0.1)
// Each timed quantity is measured separately (after warm-up) and reported in milliseconds as JSON on stdout; the
// same JSON goes to bench/results/losses-cpu-<threads>core.json (or the path in argv[2]), relative to the cwd.
// Run from the repository root: npm run build:ts && node dist/bench/losses.js
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';

import { addonInfo, dinoClsTokenLoss, Generator, getNumThreads, memory, randn, scope, setNumThreads, sinkhornKnopp, type Tensor } from '../src/index.js';

const B = 64;
const K = 65_536;
const WARMUP = 2;
const ITERS = 10;

function time(fn: () => void): { medianMs: number; minMs: number; meanMs: number } {
  for (let i = 0; i < WARMUP; i++) fn();
  const ms: number[] = [];
  for (let i = 0; i < ITERS; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((a, b) => a - b);
  const r = (v: number) => Math.round(v * 100) / 100;
  return { medianMs: r(ms[Math.floor(ITERS / 2)]!), minMs: r(ms[0]!), meanMs: r(ms.reduce((a, b) => a + b, 0) / ITERS) };
}

// libtorch threads: BENCH_THREADS, else every available core.
setNumThreads(Number(process.env.BENCH_THREADS ?? availableParallelism()));
const gen = new Generator(0);
const teacher = randn([2 * B, K], { generator: gen }).keep(); // [128, 65536]
const student = randn([2, B, K], { generator: gen }).keep(); // [2, 64, 65536]
const before = memory().liveTensors;

const sinkhorn = time(() => scope(() => void sinkhornKnopp(teacher, 0.07)));
const targets = scope(() => sinkhornKnopp(teacher, 0.07).view([2, B, K])).keep(); // [2, 64, 65536]
const lossForward = time(() => scope(() => void dinoClsTokenLoss(student, targets, { ignoreDiagonal: true }).item()));
const lossForwardBackward = time(() =>
  scope(() => {
    const s: Tensor = student.detach().requiresGrad_();
    dinoClsTokenLoss(s, targets, { ignoreDiagonal: true }).backward();
  }),
);
const total = time(() =>
  scope(() => {
    const s: Tensor = student.detach().requiresGrad_();
    const t = sinkhornKnopp(teacher, 0.07).view([2, B, K]);
    dinoClsTokenLoss(s, t, { ignoreDiagonal: true }).backward();
  }),
);
targets.dispose();
const leaked = memory().liveTensors - before;
teacher.dispose();
student.dispose();

const threads = getNumThreads();
const result = {
  bench: 'losses',
  device: 'cpu',
  threads,
  torch: addonInfo.torchVersion,
  node: process.version,
  shapes: { teacherLogits: [2 * B, K], studentGlobalLogits: [2, B, K], targets: [2, B, K] },
  settings: { teacherTemp: 0.07, studentTemp: 0.1, sinkhornIterations: 3, ignoreDiagonal: true, warmup: WARMUP, iters: ITERS },
  sinkhornKnopp: sinkhorn,
  dinoLossForward: lossForward,
  dinoLossForwardBackward: lossForwardBackward,
  sinkhornPlusDinoLossForwardBackward: total,
  leakedTensors: leaked,
  // 1-minute load average when the run ended: on a shared machine, a load above `threads` inflates every figure.
  loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
};
const json = JSON.stringify(result, null, 2);
process.stdout.write(`${json}\n`);
const out = resolve(process.argv[2] ?? `bench/results/losses-cpu-${threads}core.json`); // relative to the repository root
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${json}\n`);
