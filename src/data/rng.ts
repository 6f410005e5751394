// Counter-derived random numbers for the data pipeline: every draw is a pure function of (seed, keys…), so the same
// seed gives the same crops and masks whatever the number of workers or the order samples are processed in. The
// official code seeds one stream per loader worker (`dinov3/data/loaders.py::_worker_init_fn`), which makes its
// crops depend on the worker count; deriving from (seed, iteration, sample index) removes that dependency.
import { ConfigError } from '../native/errors.js';

const U32 = 0x1_0000_0000;

/** 32-bit finaliser of MurmurHash3 (a bijection with good avalanche): mixes a key into the seed state. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function checkKey(key: number, what: string): void {
  if (!Number.isSafeInteger(key) || key < 0) {
    throw new ConfigError(`${what} must be a non-negative safe integer, got ${typeof key === 'object' && key !== null ? 'an object' : String(key)}`);
  }
}

/** The four 32-bit words of an sfc32 state. */
export type RngState = readonly [number, number, number, number];

/**
 * A small, fast generator (sfc32, period ≥ 2^32, 128-bit state) whose streams are derived from integer keys.
 * `Rng.derive(seed, iteration, index)` always returns the same stream; `fork(k)` derives a sub-stream (one per crop,
 * say) without consuming draws of the parent.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  private constructor(state: RngState) {
    // Reached from JS only by `new Rng(...)` on the class itself (the constructor is private in TS): refuse a bad state.
    if (!Array.isArray(state) || state.length !== 4)
      throw new ConfigError('Rng: construct generators with Rng.derive(seed, ...keys) or Rng.fromState(state) (a state is four 32-bit words)');
    [this.a, this.b, this.c, this.d] = state;
  }

  /** The stream for (seed, keys…). Keys are non-negative safe integers (iteration, sample index, crop index…). */
  static derive(seed: number, ...keys: number[]): Rng {
    checkKey(seed, 'seed');
    let h0 = fmix32((seed % U32) ^ 0x9e3779b9);
    let h1 = fmix32(Math.floor(seed / U32) ^ 0x7f4a7c15);
    for (const [i, key] of keys.entries()) {
      checkKey(key, `key ${i}`);
      h0 = fmix32(h0 ^ fmix32((key % U32) + 0x632be5ab * (i + 1)));
      h1 = fmix32(h1 ^ fmix32(Math.floor(key / U32) + 0x85157af5 * (i + 1)) ^ h0);
    }
    const rng = new Rng([h0, h1, fmix32(h0 ^ 0xdeadbeef), fmix32(h1 ^ 0x1234567) | 1]);
    for (let i = 0; i < 12; i++) rng.nextU32(); // warm up: decorrelate nearby keys
    return rng;
  }

  /** Restores a generator from `state()`. */
  static fromState(state: RngState): Rng {
    if (!Array.isArray(state) || state.length !== 4 || state.some((w) => !Number.isInteger(w) || w < 0 || w >= U32)) {
      throw new ConfigError('an Rng state is four unsigned 32-bit integers');
    }
    return new Rng(state);
  }

  /** A sub-stream keyed by `key`, independent of how many draws this generator has made. */
  fork(key: number): Rng {
    checkKey(key, 'fork key');
    const r = new Rng([fmix32(this.a ^ fmix32(key + 1)), fmix32(this.b ^ 0x5bd1e995), fmix32(this.c + key), this.d]);
    for (let i = 0; i < 12; i++) r.nextU32();
    return r;
  }

  state(): RngState {
    return [this.a >>> 0, this.b >>> 0, this.c >>> 0, this.d >>> 0];
  }

  /** Next unsigned 32-bit integer. */
  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  random(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.random();
  }

  /** Integer uniform in [lo, hi] inclusive (like Python's `random.randint`). */
  randint(lo: number, hi: number): number {
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo) {
      throw new ConfigError(`randint needs integers lo <= hi, got ${lo}, ${hi}`);
    }
    return lo + Math.floor(this.random() * (hi - lo + 1));
  }

  /** True with probability p. */
  bernoulli(p: number): boolean {
    return this.random() < p;
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.random());
  }

  /** A uniformly random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): number[] {
    const out = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      const t = out[i]!;
      out[i] = out[j]!;
      out[j] = t;
    }
    return out;
  }
}
