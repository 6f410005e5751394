// Devices and threads: CUDA availability, device synchronisation, streams and events (mirrors
// native/src/tensor/device.cc). On a CPU build every CUDA call except isAvailable/deviceCount throws a TorchError
// "CUDA is not available in this build (libtorch <version> CPU)".
import { native, type NativeCudaEvent, type NativeCudaGraph, type NativeCudaStream } from '../native/binding.js';
import { DisposedError, TorchRangeError, TorchTypeError } from '../native/errors.js';
import { expectDevice, expectTensorArg } from './args.js';
import { scope } from './scope.js';
import { describe, type Device, handleOf, type Tensor } from './tensor.js';

const kHandle = Symbol('dinov3.cuda.handle');

/**
 * A CUDA stream (from libtorch's stream pool, as `torch.cuda.Stream()`). Ops run on the current stream of their
 * device; make a stream current with `stream.run(fn)` or `cuda.setCurrentStream`.
 * @example
 * const s = new cuda.Stream();
 * s.run(() => y.copy_(x, true)); // queued on s
 * s.synchronize();
 * @throws TorchError on builds or machines without CUDA.
 */
export class CudaStream {
  /** @internal */ readonly [kHandle]: NativeCudaStream;

  constructor(o: { device?: number; priority?: 'normal' | 'high' } = {}) {
    if (typeof o !== 'object' || o === null)
      throw new TorchTypeError(`CudaStream: expected "options" to be an object { device?, priority? }, received ${describe(o)}`, 'ERR_INVALID_ARG');
    this[kHandle] = native.cudaNewStream(o.device ?? null, o.priority === 'high');
  }

  /** @internal Wraps an existing native stream handle. */
  static fromHandle(h: NativeCudaStream): CudaStream {
    const s = Object.create(CudaStream.prototype) as CudaStream;
    (s as { [kHandle]: NativeCudaStream })[kHandle] = h;
    return s;
  }

  /** Device index, stream id and priority (lower is more urgent). */
  get info(): { device: number; id: number; priority: number } {
    return native.cudaStreamInfo(this[kHandle]);
  }
  get device(): number {
    return this.info.device;
  }
  /** Blocks until all work queued on this stream has completed. */
  synchronize(): void {
    native.cudaStreamSynchronize(this[kHandle]);
  }
  /** True when all work queued on this stream has completed. */
  query(): boolean {
    return native.cudaStreamQuery(this[kHandle]);
  }
  /** Makes work queued on this stream from now on wait for `event`. */
  waitEvent(event: CudaEvent): void {
    native.cudaEventWait(eventHandle(event, 'cuda.Stream.waitEvent'), this[kHandle]);
  }
  /** Runs `fn` with this stream current on its device, then restores the previous current stream. */
  run<R>(fn: () => R): R {
    const prev = native.cudaCurrentStream(this.device);
    native.cudaSetCurrentStream(this[kHandle]);
    try {
      return fn();
    } finally {
      native.cudaSetCurrentStream(prev);
    }
  }
}

/**
 * A CUDA event, for ordering work between streams and for GPU timing.
 * @example
 * const start = new cuda.Event({ enableTiming: true }), end = new cuda.Event({ enableTiming: true });
 * start.record(); run(); end.record(); end.synchronize();
 * const ms = start.elapsedTime(end);
 * @throws TorchError on builds or machines without CUDA.
 */
export class CudaEvent {
  /** @internal */ readonly [kHandle]: NativeCudaEvent;

  constructor(o: { enableTiming?: boolean } = {}) {
    this[kHandle] = native.cudaNewEvent(o.enableTiming ?? false);
  }
  /** Records the event on `stream` (the current stream when absent). Returns this. */
  record(stream?: CudaStream): this {
    native.cudaEventRecord(this[kHandle], stream ? streamHandle(stream, 'cuda.Event.record') : null);
    return this;
  }
  /** Blocks until the work captured by the last record() has completed. */
  synchronize(): void {
    native.cudaEventSynchronize(this[kHandle]);
  }
  /** True when the work captured by the last record() has completed. */
  query(): boolean {
    return native.cudaEventQuery(this[kHandle]);
  }
  /** Makes work queued on `stream` (the current stream when absent) from now on wait for this event. */
  wait(stream?: CudaStream): void {
    native.cudaEventWait(this[kHandle], stream ? streamHandle(stream, 'cuda.Event.wait') : null);
  }
  /** Milliseconds from this event to `end` (both recorded, created with enableTiming, and completed). */
  elapsedTime(end: CudaEvent): number {
    return native.cudaEventElapsedTime(this[kHandle], eventHandle(end, 'cuda.Event.elapsedTime'));
  }
}

/**
 * A CUDA graph (torch.cuda.CUDAGraph): `capture(fn)` records the kernels that `fn` queues, without running them, and
 * `replay()` launches them all again at once, with no JavaScript, no handle bookkeeping and one launch instead of one
 * per op. This pays where a step is bound by launches (small models, small batches).
 *
 * What a captured `fn` must be: the same kernels every time. Inputs and outputs are static tensors: write new inputs
 * into the tensors `fn` read (`input.copy_(next)`) and read the outputs that `fn` returned, which replay overwrites in
 * place. `fn` must not wait for the device (no `item`, `toArray`, boolean masks, blocking copies between host and
 * device: libtorch refuses them while capturing) nor take values from the host that change later (they are baked in).
 * Lazy initialisations (cuBLAS handles, autotuning) must not happen during capture: `warmup` runs `fn` eagerly first,
 * on the capture stream, its results freed.
 * @example
 * const g = new cuda.Graph();
 * const out = g.capture(() => model.forwardFeatures(input).patchTokens, { warmup: 2 }); // recorded, not run
 * input.copy_(batch); g.replay(); // out now holds batch's features
 * @throws TorchError on builds or machines without CUDA, and when `fn` does what capture forbids (the capture is then
 *   abandoned: the stream, the allocator and the graph are back to normal).
 */
export class CudaGraph {
  #h: NativeCudaGraph | null;

  constructor() {
    this.#h = native.cudaNewGraph();
  }

  #live(op: string): NativeCudaGraph {
    if (this.#h) return this.#h;
    throw new DisposedError(`cuda.Graph.${op}: the graph has been disposed`);
  }

  /**
   * Records what `fn` queues on the current device and returns `fn`'s result (tensors allocated in the graph's pool,
   * filled by each replay; the other tensors `fn` made are freed as by `scope`). Runs on `stream` (a new side stream
   * when absent), after the work queued so far.
   */
  capture<R>(fn: () => R, o: { stream?: CudaStream; warmup?: number } = {}): R {
    const h = this.#live('capture');
    if (typeof fn !== 'function') throw new TorchTypeError(`cuda.Graph.capture: expected "fn" to be a function, received ${describe(fn)}`, 'ERR_INVALID_ARG');
    const warmup = o.warmup ?? 0;
    if (!Number.isInteger(warmup) || warmup < 0)
      throw new TorchRangeError(`cuda.Graph.capture: "warmup" must be an integer >= 0, received ${describe(warmup)}`, 'ERR_INVALID_ARG');
    const stream = o.stream ?? new CudaStream();
    stream.waitEvent(new CudaEvent().record()); // after what the current stream has queued
    const result = stream.run(() => {
      for (let i = 0; i < warmup; i++) scope(() => void fn());
      native.cudaGraphCaptureBegin(h);
      let r: R;
      try {
        r = scope(fn); // the intermediates' handles go now; their memory stays the graph's (its private pool)
      } catch (e) {
        native.cudaGraphCaptureEnd(h, true);
        throw e;
      }
      native.cudaGraphCaptureEnd(h, false);
      return r;
    });
    cuda.currentStream().waitEvent(new CudaEvent().record(stream)); // the warm-up runs finish before what follows
    return result;
  }

  /** Launches the captured work on the current stream (asynchronously, like any kernel). */
  replay(): void {
    native.cudaGraphReplay(this.#live('replay'));
  }

  /** Frees the capture and its memory pool; the graph can capture again. Outputs of the old capture must not be read. */
  reset(): void {
    native.cudaGraphReset(this.#live('reset'));
  }

  /** Frees the graph now (idempotent). */
  dispose(): void {
    if (!this.#h) return;
    native.cudaGraphReset(this.#h);
    this.#h = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function streamHandle(s: unknown, op: string): NativeCudaStream {
  if (s instanceof CudaStream) return s[kHandle];
  throw new TorchTypeError(`${op}: expected "stream" to be a cuda.Stream, received ${describe(s)}`, 'ERR_INVALID_ARG');
}
function eventHandle(e: unknown, op: string): NativeCudaEvent {
  if (e instanceof CudaEvent) return e[kHandle];
  throw new TorchTypeError(`${op}: expected "event" to be a cuda.Event, received ${describe(e)}`, 'ERR_INVALID_ARG');
}

/** libtorch's CUDA sync debug modes (`cuda.syncDebugMode`). */
export type SyncDebugMode = 'default' | 'warn' | 'error';

export const cuda = {
  isAvailable: (): boolean => native.cudaIsAvailable(),
  deviceCount: (): number => native.cudaDeviceCount(),
  /** Waits for all work on the device (the current one when absent), on every stream. */
  synchronize: (device?: number): void => native.synchronize(device ?? null),
  Stream: CudaStream,
  Event: CudaEvent,
  Graph: CudaGraph,
  /** The current stream of the device (the current device when absent). */
  currentStream: (device?: number): CudaStream => CudaStream.fromHandle(native.cudaCurrentStream(device ?? null)),
  /** The default (legacy null) stream of the device. */
  defaultStream: (device?: number): CudaStream => CudaStream.fromHandle(native.cudaDefaultStream(device ?? null)),
  /**
   * libtorch's CUDA sync debug mode (torch.cuda.set_sync_debug_mode): with 'warn' every call that makes the host wait
   * for the device raises a TorchWarning ("…called a synchronizing CUDA operation"), with 'error' it throws. Sets the
   * mode when given and returns the one before; `withSyncDebugMode` restores it for you.
   */
  syncDebugMode: (mode?: SyncDebugMode): SyncDebugMode => {
    if (mode !== undefined && mode !== 'default' && mode !== 'warn' && mode !== 'error')
      throw new TorchTypeError(`cuda.syncDebugMode: expected "mode" to be "default", "warn" or "error", received ${describe(mode)}`, 'ERR_INVALID_ARG');
    return mode === undefined ? native.cudaSyncDebugMode() : native.cudaSyncDebugMode(mode);
  },
  /** Runs `fn` under the sync debug mode `mode`, then restores the previous mode (also when `fn` throws). */
  withSyncDebugMode<R>(mode: SyncDebugMode, fn: () => R): R {
    const previous = cuda.syncDebugMode(mode);
    try {
      return fn();
    } finally {
      cuda.syncDebugMode(previous);
    }
  },
  /**
   * Tensor.record_stream: tells the caching allocator that `tensor`'s memory is used by the work queued on `stream`, so
   * that once disposed it is not reused before that work is done. Needed when a tensor allocated on one stream (a copy
   * stream) is read on another.
   */
  recordStream: (tensor: Tensor, stream: CudaStream): void =>
    native.cudaRecordStream(handleOf(tensor, 'cuda.recordStream', 'tensor'), streamHandle(stream, 'cuda.recordStream')),
  /** Makes `stream` current on its device. Prefer `stream.run(fn)`, which restores the previous stream. */
  setCurrentStream: (stream: CudaStream): void => native.cudaSetCurrentStream(streamHandle(stream, 'cuda.setCurrentStream')),
};

/**
 * `t` on `device` without making the host wait: a host tensor goes to CUDA through pinned memory with a non-blocking
 * copy, queued on the current stream (libtorch keeps the pinned block until the copy is done). A plain `to('cuda')`
 * from pageable memory waits for the stream first. Anything else is `t.to(device)`. The caller owns the result.
 */
export function hostToDevice(t: Tensor, device: Device): Tensor {
  expectTensorArg('hostToDevice', 't', t);
  expectDevice('hostToDevice', 'device', device);
  if (!device.startsWith('cuda') || t.device !== 'cpu') return t.to(device);
  const pinned = t.pinMemory();
  try {
    return pinned.to({ device, nonBlocking: true });
  } finally {
    pinned.dispose();
  }
}

/**
 * Host synchronisation points passed so far in this process: every read of tensor values on the host (`item`,
 * `toArray`, `toFloat32Array`, `data`, `dataAsync`, `toString`), every op whose output size depends on values
 * (`maskedSelect`, `nonzero`, indexing with a boolean mask), every blocking copy between the host and CUDA (`to`,
 * `copy_`, `tensor(…, { device: 'cuda' })`) and every `synchronize`. On CUDA each one waits for the device to finish
 * the work queued before it. Reads and value-dependent sizes are counted on every device, so that a test on CPU can
 * bound how often a loop would wait (the training step: once, to read its metrics); on CUDA,
 * `cuda.withSyncDebugMode('warn', fn)` names each wait libtorch sees.
 *
 *   const before = hostSyncs(); step(); const syncs = hostSyncs() - before;
 */
export function hostSyncs(): number {
  return native.hostSyncs();
}

/** Sets the number of intra-op threads (default: the machine's cores). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1)
    throw new TorchRangeError(`setNumThreads: expected a positive integer, received ${typeof n === 'number' ? n : describe(n)}`, 'ERR_INVALID_ARG');
  native.setNumThreads(n);
}
export const getNumThreads = (): number => native.getNumThreads();
