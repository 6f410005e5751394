// The SSL data loader: an infinite, rank-sharded, shuffled stream of dataset indices (as the official
// `dinov3/data/samplers.py::ShardedInfiniteSampler`), decoding + augmentation on worker_threads (crops come back as
// transferred ArrayBuffers), collation with iBOT masks on the main thread, a bounded prefetch of batches, and an async
// iterator of CollatedBatch. Every random draw is a function of (seed, iteration, rank, position in the batch), so
// the batches do not depend on the number of workers, and `state()` / `setState()` resume exactly.
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

import { ConfigError, DatasetError, ImageError, WorkerError } from '../native/errors.js';
import { type CollatedBatch, disposeBatch } from './batch.js';
import { type CollateOptions, collateDataAndCast, type CollateSample } from './collate.js';
import type { Dataset, DatasetSpec, SkippedSample } from './datasets/types.js';
import { loadTransform, runTask, type SampleResult, type SampleTask, type SampleTransform, type TransformModule } from './loader_task.js';
import { expectInt, expectObject } from '../tensor/args.js';
import { Rng } from './rng.js';

export type { MultiCropLike, SampleTransform, TransformModule } from './loader_task.js';

/**
 * Which dataset index comes at position `p` of a rank's stream (`dinov3/data/samplers.py::ShardedInfiniteSampler`):
 * one permutation of the whole dataset (from the seed), each rank takes every `worldSize`-th entry from `rank`
 * (the remainder is dropped, as the official slice does), and each pass over that slice is reshuffled with a stream
 * keyed by (seed, rank, pass). Position p is in pass ⌊p / count⌋, so any position is reachable without replaying
 * (the official `advance`). Without shuffling: rank, rank + worldSize, … in order, repeated.
 */
export class ShardedInfiniteSampler {
  readonly count: number;
  private readonly perm: Int32Array | null;
  private cache = new Map<number, Int32Array>();

  constructor(
    readonly size: number,
    readonly o: { seed: number; rank: number; worldSize: number; shuffle: boolean },
  ) {
    expectInt('ShardedInfiniteSampler', 'size', size);
    expectObject('ShardedInfiniteSampler', 'options', o);
    if (!Number.isInteger(o.worldSize) || o.worldSize < 1) throw new ConfigError(`sampler: worldSize must be a positive integer, got ${o.worldSize}`);
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) throw new ConfigError(`sampler: rank must be in [0, ${o.worldSize}), got ${o.rank}`);
    this.count = o.shuffle ? Math.floor(size / o.worldSize) : Math.ceil((size - o.rank) / o.worldSize);
    if (this.count < 1) throw new DatasetError(`the dataset has ${size} samples, too few for ${o.worldSize} ranks`);
    this.perm = o.shuffle ? Int32Array.from(Rng.derive(o.seed, 2).permutation(size)) : null;
  }

  private pass(k: number): Int32Array {
    let s = this.cache.get(k);
    if (s) return s;
    s = new Int32Array(this.count);
    for (let i = 0; i < this.count; i++) s[i] = this.perm![this.o.rank + i * this.o.worldSize]!;
    const rng = Rng.derive(this.o.seed, 3, this.o.rank, k);
    for (let i = this.count - 1; i > 0; i--) {
      const j = Math.floor(rng.random() * (i + 1));
      const t = s[i]!;
      s[i] = s[j]!;
      s[j] = t;
    }
    if (this.cache.size >= 2) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(k, s);
    return s;
  }

  /** The dataset index at position `p` (0-based) of this rank's stream. */
  at(p: number): number {
    const k = Math.floor(p / this.count);
    const off = p - k * this.count;
    if (!this.perm) return this.o.rank + off * this.o.worldSize;
    return this.pass(k)[off]!;
  }
}

/** Where a loader is: enough to resume the exact same stream. */
export interface LoaderState {
  /** The next batch's iteration. */
  iteration: number;
  seed: number;
  rank: number;
  worldSize: number;
  batchSize: number;
  datasetLength: number;
}

export interface DataLoaderOptions {
  dataset: Dataset;
  /** Images per batch on this rank. */
  batchSize: number;
  /** The augmentation: a module path (needed with worker threads) or a function (with `workers: 0`). */
  transform: TransformModule | SampleTransform;
  /** Masking and collation (the mask generator, ratios, dtype…). */
  collate: CollateOptions;
  seed?: number;
  rank?: number;
  worldSize?: number;
  /** Shuffle (default true). */
  shuffle?: boolean;
  /** Worker threads (default min(4, CPUs − 1)); 0 runs everything on the main thread. */
  workers?: number;
  /** Batches prepared ahead (default 2). */
  prefetch?: number;
  /** Start at this iteration (e.g. a resumed run's next iteration). */
  startIteration?: number;
  /** Stop after this many batches (default: never). */
  iterations?: number;
  /** Unreadable images: `'skip'` (default: replaced by the next index, counted, reported to onSkip) or `'fail'`. */
  onError?: 'skip' | 'fail';
  onSkip?: (s: SkippedSample) => void;
  /** The worker script (default: loader_worker.js next to this module). */
  workerUrl?: URL;
}

/** Replacement attempts for an unreadable sample before the loader gives up. */
const MAX_ATTEMPTS = 16;

interface Slot {
  iteration: number;
  results: (CollateSample | undefined)[];
  pending: number;
  resolve: (b: CollatedBatch) => void;
  reject: (e: unknown) => void;
  promise: Promise<CollatedBatch>;
  dead: boolean;
}

interface TaskInfo {
  slot: Slot;
  position: number;
  j: number;
  attempt: number;
  index: number;
}

interface PoolWorker {
  w: Worker;
  busy: Set<number>;
  index: number;
}

/**
 * Infinite stream of collated multi-crop batches.
 * @example
 * const loader = new DataLoader({ dataset, batchSize: 64, transform: { module: augUrl, export: 'DataAugmentationDINO', options }, collate: { maskGenerator } });
 * for await (const batch of loader) { train(batch); disposeBatch(batch); }
 * await loader.close();
 */
export class DataLoader implements AsyncIterableIterator<CollatedBatch> {
  readonly sampler: ShardedInfiniteSampler;
  /** Images skipped because they could not be read (with `onError: 'skip'`). */
  readonly skipped: SkippedSample[] = [];
  private readonly o: Required<Pick<DataLoaderOptions, 'seed' | 'rank' | 'worldSize' | 'batchSize' | 'prefetch' | 'onError'>> & DataLoaderOptions;
  private readonly nWorkers: number;
  private iteration: number;
  private issued: number;
  private yielded = 0;
  private readonly slots: Slot[] = [];
  private readonly tasks = new Map<number, TaskInfo>();
  private readonly queue: SampleTask[] = [];
  private nextId = 0;
  private pool: PoolWorker[] | null = null;
  private localTransform: Promise<SampleTransform> | null = null;
  private spec: DatasetSpec | undefined;
  private failure: Error | null = null;
  private closed = false;
  private readonly scratch = new Map<string, Float32Array>();

  /** @throws ConfigError for bad options; DatasetError for an empty dataset. */
  constructor(options: DataLoaderOptions) {
    const o = { seed: 0, rank: 0, worldSize: 1, prefetch: 2, onError: 'skip' as const, ...options };
    this.o = o;
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1)
      throw new ConfigError(`DataLoader: batchSize must be a positive integer, got ${String(o.batchSize)}`);
    if (!Number.isInteger(o.prefetch) || o.prefetch < 1) throw new ConfigError(`DataLoader: prefetch must be a positive integer, got ${String(o.prefetch)}`);
    if (o.onError !== 'skip' && o.onError !== 'fail') throw new ConfigError(`DataLoader: onError must be "skip" or "fail", got "${String(o.onError)}"`);
    if (o.dataset.length === 0) throw new DatasetError('DataLoader: the dataset is empty');
    this.nWorkers = o.workers ?? Math.max(1, Math.min(4, cpus().length - 1));
    if (!Number.isInteger(this.nWorkers) || this.nWorkers < 0)
      throw new ConfigError(`DataLoader: workers must be a non-negative integer, got ${String(o.workers)}`);
    if (this.nWorkers > 0 && typeof o.transform === 'function')
      throw new ConfigError(
        'DataLoader: worker threads need the transform as a module path ({ module, export, options }); a function only works with workers: 0',
      );
    this.sampler = new ShardedInfiniteSampler(o.dataset.length, { seed: o.seed, rank: o.rank, worldSize: o.worldSize, shuffle: o.shuffle ?? true });
    this.iteration = o.startIteration ?? 0;
    this.issued = this.iteration;
    this.spec = o.dataset.spec();
  }

  /** The position to save for an exact resume (the next batch to be yielded). */
  state(): LoaderState {
    const o = this.o;
    return { iteration: this.iteration, seed: o.seed, rank: o.rank, worldSize: o.worldSize, batchSize: o.batchSize, datasetLength: o.dataset.length };
  }

  /**
   * Continues from a saved state: batches prepared ahead are dropped, the next batch is `s.iteration`'s.
   * @throws ConfigError if the state belongs to another seed, rank layout, batch size or dataset size.
   */
  setState(s: LoaderState): void {
    const cur = this.state();
    for (const k of ['seed', 'rank', 'worldSize', 'batchSize', 'datasetLength'] as const)
      if (s[k] !== cur[k]) throw new ConfigError(`DataLoader.setState: the state's ${k} is ${s[k]}, this loader's is ${cur[k]}`);
    if (!Number.isSafeInteger(s.iteration) || s.iteration < 0) throw new ConfigError(`DataLoader.setState: bad iteration ${String(s.iteration)}`);
    this.dropSlots();
    this.iteration = s.iteration;
    this.issued = s.iteration;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** The next batch (owned by the caller: `disposeBatch`). Rejects with WorkerError if a worker dies. */
  async next(): Promise<IteratorResult<CollatedBatch>> {
    if (this.failure) throw this.failure;
    if (this.closed || (this.o.iterations !== undefined && this.yielded >= this.o.iterations)) return { done: true, value: undefined };
    this.fill();
    const slot = this.slots[0]!;
    let batch: CollatedBatch;
    try {
      batch = await slot.promise;
    } catch (e) {
      if (slot.dead && !this.failure) {
        // dropped while awaited: by close() (the stream ends) or setState() (continue from the new position)
        if (this.closed) return { done: true, value: undefined };
        return this.next();
      }
      if (!this.failure) this.failure = e as Error;
      await this.close();
      throw e;
    }
    if (this.slots[0] === slot) this.slots.shift();
    this.iteration = slot.iteration + 1;
    this.yielded++;
    this.fill();
    return { done: false, value: batch };
  }

  async return(): Promise<IteratorResult<CollatedBatch>> {
    await this.close();
    return { done: true, value: undefined };
  }

  /** Stops the workers. Batches prepared ahead are dropped; next() then reports done. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.dropSlots();
    this.scratch.clear();
    const pool = this.pool;
    this.pool = null;
    if (pool) await Promise.all(pool.map((p) => p.w.terminate()));
  }

  /** Drops the batches prepared ahead (a collated one is freed). */
  private dropSlots(): void {
    for (const s of this.slots) {
      s.dead = true;
      s.promise.then(disposeBatch, () => undefined);
      s.reject(new ConfigError('DataLoader: batch dropped')); // a next() awaiting it moves on (no-op when settled)
    }
    this.slots.length = 0;
    this.queue.length = 0;
  }

  /** The worker threads (for tests that kill one). */
  get workers(): readonly Worker[] {
    return (this.pool ?? []).map((p) => p.w);
  }

  private fill(): void {
    const want = this.o.iterations === undefined ? this.o.prefetch : Math.min(this.o.prefetch, this.o.iterations - this.yielded);
    while (this.slots.length < want && !this.closed) this.startBatch(this.issued++);
  }

  private startBatch(iteration: number): void {
    const B = this.o.batchSize;
    let resolve!: (b: CollatedBatch) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<CollatedBatch>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => undefined); // seen when awaited
    const slot: Slot = { iteration, results: new Array(B).fill(undefined), pending: B, resolve, reject, promise, dead: false };
    this.slots.push(slot);
    for (let j = 0; j < B; j++) {
      const position = iteration * B + j;
      this.submit({ slot, position, j, attempt: 0, index: this.sampler.at(position) });
    }
  }

  private submit(info: TaskInfo): void {
    const id = this.nextId++;
    this.tasks.set(id, info);
    const o = this.o;
    const task: SampleTask = { id, index: info.index, keys: [o.seed, 0, info.slot.iteration, o.rank, info.j, info.attempt] };
    if (this.nWorkers === 0) {
      void this.runLocal(task);
      return;
    }
    if (!this.spec) {
      // The dataset cannot be rebuilt in a worker: read the pixels here and hand them over.
      void o.dataset.get(info.index).then(
        (s) => {
          task.image = { data: s.image.data.slice(), width: s.image.width, height: s.image.height };
          task.label = s.label;
          task.name = s.name;
          this.enqueue(task);
        },
        (e: unknown) => this.onResult({ id, ok: false, image: e instanceof ImageError, message: (e as Error).message, name: o.dataset.nameOf(info.index) }),
      );
      return;
    }
    this.enqueue(task);
  }

  private async runLocal(task: SampleTask): Promise<void> {
    this.localTransform ??= typeof this.o.transform === 'function' ? Promise.resolve(this.o.transform) : loadTransform(this.o.transform);
    let r: SampleResult;
    try {
      r = await runTask(this.o.dataset, await this.localTransform, task);
    } catch (e) {
      r = { id: task.id, ok: false, image: false, message: (e as Error).message, name: this.o.dataset.nameOf(task.index) };
    }
    this.onResult(r);
  }

  private workerUrl(): URL {
    const url = this.o.workerUrl ?? new URL('./loader_worker.js', import.meta.url);
    if (url.protocol === 'file:' && !existsSync(fileURLToPath(url)))
      throw new ConfigError(
        `DataLoader: the worker script ${fileURLToPath(url)} does not exist; worker threads need the compiled library (dist/) — run from dist/, pass workerUrl, or use workers: 0`,
      );
    return url;
  }

  private startPool(): PoolWorker[] {
    const url = this.workerUrl();
    const transform = this.o.transform as TransformModule;
    return Array.from({ length: this.nWorkers }, (_, index) => {
      const w = new Worker(url, { workerData: { dataset: this.spec ?? null, transform } });
      const p: PoolWorker = { w, busy: new Set(), index };
      w.on('message', (r: SampleResult) => {
        p.busy.delete(r.id);
        this.onResult(r);
        this.dispatch();
      });
      w.on('error', (e) => this.fail(new WorkerError(`data loader worker ${index} crashed: ${e.message}`, index)));
      w.on('exit', (code) => {
        if (!this.closed) this.fail(new WorkerError(`data loader worker ${index} exited (code ${code}) while the loader was running`, index));
      });
      return p;
    });
  }

  private enqueue(task: SampleTask): void {
    if (this.closed) return;
    this.queue.push(task);
    this.dispatch();
  }

  private dispatch(): void {
    if (this.closed || this.failure) return;
    try {
      this.pool ??= this.startPool();
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    // Each worker holds at most 2 tasks: one running, one waiting, so a slow sample does not stall the others.
    for (const p of this.pool) {
      while (p.busy.size < 2 && this.queue.length > 0) {
        const t = this.queue.shift()!;
        p.busy.add(t.id);
        p.w.postMessage(t);
      }
    }
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const s of this.slots) s.reject(e);
  }

  private onResult(r: SampleResult): void {
    const info = this.tasks.get(r.id);
    if (!info) return;
    this.tasks.delete(r.id);
    const { slot } = info;
    if (slot.dead || this.closed) return;
    if (!r.ok) {
      if (!r.image || this.o.onError === 'fail') {
        slot.reject(r.image ? new ImageError(r.message, r.name) : new DatasetError(r.message));
        return;
      }
      const s: SkippedSample = { index: info.index, name: r.name, message: r.message };
      this.skipped.push(s);
      this.o.onSkip?.(s);
      if (info.attempt + 1 >= MAX_ATTEMPTS) {
        slot.reject(new DatasetError(`${MAX_ATTEMPTS} unreadable images in a row around "${r.name}"; the dataset looks broken (last error: ${r.message})`));
        return;
      }
      // Deterministic replacement: the next dataset index, with a fresh random stream.
      this.submit({ ...info, attempt: info.attempt + 1, index: (info.index + 1) % this.o.dataset.length });
      return;
    }
    slot.results[info.j] = { global: r.global, local: r.local, gramTeacher: r.gramTeacher, label: r.label };
    if (--slot.pending > 0) return;
    try {
      const batch = collateDataAndCast(
        slot.results as CollateSample[],
        { ...this.o.collate, scratch: this.scratch },
        Rng.derive(this.o.seed, 1, slot.iteration, this.o.rank),
      );
      slot.results.fill(undefined);
      slot.resolve(batch);
    } catch (e) {
      slot.reject(e);
    }
  }
}
