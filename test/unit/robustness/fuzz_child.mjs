// Child process of fuzz_exports.test.ts: calls every public export of the compiled library (dist/) — functions,
// class constructors, the `init` namespace and the Tensor methods — with random arguments drawn from a pool of
// hostile values, and prints one line per call (`C <n>` before it, `R <n> <outcome>` after it), so that the parent
// can name the call that crashed the process. argv: <dist index.js> <seed> <calls per export>.
import { writeSync } from 'node:fs';

const [indexPath, seedArg, perArg] = process.argv.slice(2);
const lib = await import(indexPath);
const { Tensor, Dinov3Error } = lib;

// Exports that open network rendezvous, spawn processes or run whole training loops: their argument checks are
// tested elsewhere (distributed, train, cli tests); a random call could wait for peers that never come.
const SKIP = new Set([
  'initProcessGroup', 'launch', 'C10dProcessGroup', 'findFreePort', 'train', 'Trainer', 'MultiDistiller', 'runBatches',
  'stageRun', 'trainingLoader', 'DataLoader', 'openTrainingData', 'loadSharp',
  // Error classes: constructing one is not a failure of the library.
  'Dinov3Error', 'TorchError', 'TorchRangeError', 'TorchTypeError', 'DisposedError', 'CheckpointError', 'StateDictError',
  'ImageError', 'ConfigError', 'DatasetError', 'WorkerError', 'NanLossError', 'DistributedError', 'LoadError',
  // Handles a raw native handle (any value is trusted; the public API never hands a user-made one to native code).
  'Tensor',
]);

let state = Number(seedArg) >>> 0 || 1;
/** mulberry32: a small seeded PRNG, so a failing run can be replayed with its seed. */
function rand() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];

const scalars = [undefined, null, true, false, 0, 1, 2, 3, -1, 1.5, -0.5, NaN, Infinity, -Infinity, 2 ** 40, '', 'abc', 'float32', 'cpu',
  'cuda', '/nonexistent/dinov3-fuzz', Symbol('s'), 10n, () => 1, Object.create(null)];
function value(depth = 0) {
  const r = rand();
  if (r < 0.45 || depth > 1) return pick(scalars);
  if (r < 0.65) return lib.scope ? pickTensor() : null;
  if (r < 0.8) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1));
  if (r < 0.95) {
    const o = {};
    for (let i = Math.floor(rand() * 3); i > 0; i--) o[pick(['shape', 'dtype', 'device', 'dim', 'n', 'size', 'path', 'layers', 'batchSize', 'seed', 'eps'])] = value(depth + 1);
    return o;
  }
  return pick([new Uint8Array(5), new Float32Array(6), Buffer.from('abc'), new Map(), new Set([1]), new Date(0)]);
}
function pickTensor() {
  switch (Math.floor(rand() * 7)) {
    case 0: return lib.randn([2, 3]);
    case 1: return lib.tensor([0, 1, 2], { dtype: 'int64' });
    case 2: return lib.ones([2, 2], { dtype: 'bool' });
    case 3: return lib.tensor(2.5);
    case 4: return lib.randn([1, 3, 16, 16]);
    case 5: return lib.zeros([0]);
    default: {
      const t = lib.randn([2]);
      t.dispose();
      return t;
    }
  }
}

const out = (s) => writeSync(1, `${s}\n`);
const describe = (v) => {
  if (v instanceof Tensor) return `Tensor`;
  if (typeof v === 'function') return 'fn';
  if (typeof v === 'symbol' || typeof v === 'bigint') return String(v) + (typeof v === 'bigint' ? 'n' : '');
  try {
    return JSON.stringify(v, (_k, x) => (x instanceof Tensor ? 'Tensor' : typeof x === 'bigint' ? `${x}n` : x)) ?? String(v);
  } catch {
    return '?';
  }
};
const isClass = (f) => /^class[\s{]/.test(Function.prototype.toString.call(f));

function outcome(e) {
  if (e instanceof Dinov3Error && typeof e.code === 'string' && e.code.startsWith('ERR_')) return `ok-error ${e.code}`;
  const name = e?.constructor?.name ?? typeof e;
  return `BAD ${name}: ${String(e?.message ?? e).split('\n')[0].slice(0, 300)}`;
}

// A call slower than this is reported "slow" (a hostile argument that makes an export hang). Constructors that do real
// work with their defaults get more: `new DinoVisionTransformer()` builds the official default ViT-B/16 (86M
// parameters, about 4 s on a loaded 2-core machine).
const SLOW_MS = { DinoVisionTransformer: 30000 };
const slowMs = (name) => SLOW_MS[name] ?? 5000;

async function settle(r, limit) {
  const timeout = new Promise((res) => setTimeout(() => res('slow'), limit).unref());
  try {
    if (r && typeof r.then === 'function') return await Promise.race([r.then(() => 'ok'), timeout]);
    if (r && typeof r[Symbol.asyncIterator] === 'function' && typeof r.next === 'function') {
      const res = await Promise.race([r.next().then(() => 'ok'), timeout]);
      await r.return?.();
      return res;
    }
    return 'ok';
  } catch (e) {
    return outcome(e);
  }
}

const targets = [];
for (const [name, v] of Object.entries(lib)) if (typeof v === 'function' && !SKIP.has(name)) targets.push([name, v, isClass(v)]);
for (const [name, v] of Object.entries(lib.init ?? {})) if (typeof v === 'function') targets.push([`init.${name}`, v, false]);
const methods = Object.getOwnPropertyNames(Tensor.prototype).filter((m) => {
  if (m === 'constructor') return false;
  const d = Object.getOwnPropertyDescriptor(Tensor.prototype, m);
  return typeof d?.value === 'function';
});
for (const m of methods) targets.push([`Tensor#${m}`, m, 'method']);
process.on('unhandledRejection', (e) => out(`U ${outcome(e)}`));

const per = Number(perArg) || 4;
let n = 0;
const seed = Number(seedArg) >>> 0;
for (const [name, f, kind] of targets) {
  // Each export draws from its own stream (seed and name), so adding an export does not change the others' calls.
  state = seed;
  for (const ch of name) state = (Math.imul(state ^ ch.charCodeAt(0), 0x01000193) >>> 0) || 1;
  for (let i = 0; i < per; i++) {
    const args = Array.from({ length: Math.floor(rand() * 4) }, () => value());
    const self = kind === 'method' ? pickTensor() : undefined;
    out(`C ${n} ${name}(${args.map(describe).join(', ')})`);
    const t0 = performance.now();
    let res;
    try {
      const r = kind === 'method' ? self[f](...args) : kind ? new f(...args) : f(...args);
      res = await settle(r, slowMs(name));
    } catch (e) {
      res = outcome(e);
    }
    const ms = performance.now() - t0;
    out(`R ${n} ${ms > slowMs(name) ? 'slow' : res}`);
    n++;
  }
}
out(`DONE ${n}`);
process.exit(0);
