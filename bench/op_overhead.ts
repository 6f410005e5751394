// Per-op call overhead of the addon: the same small ops timed from TypeScript (through the Tensor API) and from plain
// C++ against the same libtorch (bench/native/op_overhead.cc, built here with CMake). Both sides run the ops in batches
// of BATCH calls whose results stay alive until the batch ends: a `scope` of BATCH ops in TypeScript, a vector of
// BATCH tensors cleared at the end in C++. The overhead per op is TS µs − C++ µs; the target is < 5 µs on CPU.
//   ts:       add(a, b) → Tensor → owned by the scope → disposed at scope end (what user code pays)
//   tsNative: native.add(ha, hb) on raw handles, disposed at batch end (the N-API boundary alone, no Tensor objects)
// The machine is measured in ROUNDS rounds, each timing C++ then TypeScript (RUNS runs of ITERS calls per op, after a
// warm-up; between runs the event loop turns once, as in an application); the overhead is the median over rounds of
// the paired differences, so that slow phases of a shared machine hit both sides. Figures are process CPU time (on a
// busy machine wall time mostly measures waiting for a core), wall time alongside. Writes JSON to stdout and to
// bench/results/op_overhead-<machine>.json (machine: argv[2], or cpu-<cores>core).
// Run from the repository root: npx tsc -p tsconfig.json; node dist/bench/op_overhead.js [machine]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';

import { native, type NativeTensor } from '../src/native/binding.js';
import { add, addonInfo, getNumThreads, matmul, memory, mul, rand, reshape, scope, sum, type Tensor } from '../src/index.js';
import { handleOf } from '../src/tensor/tensor.js';

const ITERS = Number(process.env.BENCH_ITERS ?? 20_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const TARGET_US = 5;
const OPS = ['add', 'mulScalar', 'matmul8x8', 'reshapeView', 'sum'] as const;
type OpName = (typeof OPS)[number];
type Timings = Record<OpName, number>;
interface Both {
  wall: Timings;
  cpu: Timings;
  /** The fastest run (CPU time): the least disturbed by other processes. */
  cpuMin: Timings;
}

const round = (v: number) => Math.round(v * 1000) / 1000;
const median = (v: number[]) => round([...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!);
const turnEventLoop = () => new Promise<void>((r) => setImmediate(r));

async function medianUsPerOp(runOnce: () => void): Promise<{ wall: number; cpu: number; cpuMin: number }> {
  runOnce(); // warm-up
  await turnEventLoop();
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    runOnce();
    const c = process.cpuUsage(c0);
    wall.push(Number(process.hrtime.bigint() - t0) / 1e3 / ITERS);
    cpu.push((c.user + c.system) / ITERS);
    await turnEventLoop();
  }
  return { wall: median(wall), cpu: median(cpu), cpuMin: round(Math.min(...cpu)) };
}

async function timeAll(ops: Record<OpName, () => void>): Promise<Both> {
  const out: Both = { wall: {} as Timings, cpu: {} as Timings, cpuMin: {} as Timings };
  for (const name of OPS) {
    const t = await medianUsPerOp(ops[name]);
    out.wall[name] = t.wall;
    out.cpu[name] = t.cpu;
    out.cpuMin[name] = t.cpuMin;
  }
  return out;
}

// Through the Tensor API: each call wraps its result, the scope tracks it and disposes it when the batch ends.
function timeTs(a: Tensor, b: Tensor, m: Tensor): Promise<Both> {
  const inScope = (fn: () => Tensor) => () => {
    for (let i = 0; i < ITERS; i += BATCH)
      scope(() => {
        for (let k = 0; k < BATCH; k++) fn();
      });
  };
  return timeAll({
    add: inScope(() => add(a, b)),
    mulScalar: inScope(() => mul(a, 2.5)),
    matmul8x8: inScope(() => matmul(m, m)),
    reshapeView: inScope(() => reshape(a, [2, 2])),
    sum: inScope(() => sum(a)),
  });
}

// The N-API boundary alone: raw handles, disposed when the batch ends.
function timeNative(ha: NativeTensor, hb: NativeTensor, hm: NativeTensor): Promise<Both> {
  const shape = [2, 2];
  const live: NativeTensor[] = new Array<NativeTensor>(BATCH);
  const loop = (fn: () => NativeTensor) => () => {
    for (let i = 0; i < ITERS; i += BATCH) {
      for (let k = 0; k < BATCH; k++) live[k] = fn();
      for (let k = 0; k < BATCH; k++) native.dispose(live[k]!);
    }
  };
  return timeAll({
    add: loop(() => native.add(ha, hb)),
    mulScalar: loop(() => native.mul(ha, 2.5)),
    matmul8x8: loop(() => native.matmul(hm, hm)),
    reshapeView: loop(() => native.reshape(ha, shape)),
    sum: loop(() => native.sum(ha)),
  });
}

function buildCpp(): string {
  const root = process.cwd();
  const dir = resolve(root, 'build-bench');
  const exe = resolve(dir, 'op_overhead');
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  if (!existsSync(resolve(dir, 'build.ninja'))) {
    const launcher = spawnSync('ccache', ['--version']).status === 0 ? ['-DCMAKE_CXX_COMPILER_LAUNCHER=ccache'] : [];
    run('cmake', ['-S', '.', '-B', dir, '-G', 'Ninja', '-DCMAKE_BUILD_TYPE=Release', '-DDINOV3_BUILD_BENCH=ON', '-DDINOV3_BUILD_ADDON=OFF', ...launcher]);
  }
  run('cmake', ['--build', dir, '--target', 'op_overhead']);
  return exe;
}

function timeCpp(exe: string, threads: number): Both {
  const r = spawnSync(exe, ['--iters', String(ITERS), '--runs', String(RUNS), '--threads', String(threads), '--batch', String(BATCH)], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`${exe} failed (${r.status}):\n${r.stderr}`);
  const j = JSON.parse(r.stdout) as { wallUsPerOp: Timings; cpuUsPerOp: Timings; cpuMinUsPerOp: Timings };
  return { wall: j.wallUsPerOp, cpu: j.cpuUsPerOp, cpuMin: j.cpuMinUsPerOp };
}

const minus = (x: Timings, y: Timings) => Object.fromEntries(OPS.map((k) => [k, round(x[k] - y[k])])) as Timings;
const medianOver = (xs: Timings[]) => Object.fromEntries(OPS.map((k) => [k, median(xs.map((x) => x[k]))])) as Timings;
const minOver = (xs: Timings[]) => Object.fromEntries(OPS.map((k) => [k, round(Math.min(...xs.map((x) => x[k])))])) as Timings;
const summarize = (xs: Both[]): Both => ({
  wall: medianOver(xs.map((x) => x.wall)),
  cpu: medianOver(xs.map((x) => x.cpu)),
  cpuMin: minOver(xs.map((x) => x.cpuMin)),
});

async function main(): Promise<void> {
  const machine = process.argv[2] ?? `cpu-${availableParallelism()}core`;
  const threads = getNumThreads();
  const exe = buildCpp(); // first, so that the compiler is not running while we measure
  const before = memory().liveTensors;
  const a = rand([4]);
  const b = rand([4]);
  const m = rand([8, 8]);
  const load0 = loadavg();
  const rounds: { cpp: Both; ts: Both; tsNative: Both }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const cpp = timeCpp(exe, threads);
    const ts = await timeTs(a, b, m);
    const tsNative = await timeNative(handleOf(a, 'bench', 'a'), handleOf(b, 'bench', 'b'), handleOf(m, 'bench', 'm'));
    rounds.push({ cpp, ts, tsNative });
  }
  for (const t of [a, b, m]) t.dispose();
  if (memory().liveTensors !== before) throw new Error(`op_overhead: ${memory().liveTensors - before} tensors leaked`);
  const load1 = loadavg();

  const paired = (side: 'ts' | 'tsNative', kind: 'cpu' | 'wall' | 'cpuMin') => medianOver(rounds.map((r) => minus(r[side][kind], r.cpp[kind])));
  const overhead = paired('ts', 'cpu');
  const busy = Math.max(load0[0]!, load1[0]!) > availableParallelism() * 0.75;
  const result = {
    bench: 'op_overhead',
    machine,
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    loadavg1mBefore: round(load0[0]!),
    loadavg1mAfter: round(load1[0]!),
    node: process.version,
    torchVersion: addonInfo.torchVersion,
    threads,
    iters: ITERS,
    runs: RUNS,
    rounds: ROUNDS,
    batch: BATCH,
    unit: "µs per op; per side the median over rounds of each round's median run; cpu = process CPU time, wall = elapsed time",
    cpp: summarize(rounds.map((r) => r.cpp)),
    ts: summarize(rounds.map((r) => r.ts)),
    tsNative: summarize(rounds.map((r) => r.tsNative)),
    /** TS − C++ in CPU time, paired per round, median over rounds: what the addon adds to each op. */
    overhead,
    /** The N-API boundary alone (raw handles, no Tensor objects or scopes) − C++, in CPU time. */
    overheadOfBoundary: paired('tsNative', 'cpu'),
    /** TS − C++ between each round's fastest runs (CPU time): the least disturbed estimate. */
    overheadFastestRuns: paired('ts', 'cpuMin'),
    overheadWall: paired('ts', 'wall'),
    targetUs: TARGET_US,
    withinTarget: Math.max(...Object.values(overhead)) < TARGET_US,
    note: busy
      ? `busy machine (load ${round(Math.max(load0[0]!, load1[0]!))} on ${availableParallelism()} cores): the medians include ` +
        'contention (caches, GC helper threads); overheadFastestRuns is the less disturbed estimate'
      : undefined,
  };
  const json = JSON.stringify(result, null, 2);
  const outDir = resolve(process.cwd(), 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(resolve(outDir, `op_overhead-${machine}.json`), json + '\n');
  process.stdout.write(json + '\n');
}

await main();
