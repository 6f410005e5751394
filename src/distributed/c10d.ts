// Multi-process groups over libtorch's c10d (native/src/distributed/c10d.cc): a TCPStore rendezvous, then Gloo for
// CPU tensors or NCCL for CUDA tensors. Official counterpart: torch.distributed as set up by
// dinov3/distributed/torch_distributed_wrapper.py::enable_distributed.
//
// Every collective is issued at once and returns a `Work`: `await work.wait()` lets the JS thread go on (two ranks
// can even live in one process), `work.waitSync()` blocks it. When a collective fails, the group looks at the
// ranks' heartbeats in the store and names the ranks that exited or stopped responding in the DistributedError.
import { native, type NativeDistGroup, type NativeDistWork } from '../native/binding.js';
import { DistributedError, type ErrorCode } from '../native/errors.js';
import { noGrad } from '../tensor/grad_mode.js';
import { handleOf, wrap, type Tensor } from '../tensor/tensor.js';
import { readDistributedEnv, type DistributedEnv } from './env.js';
import { checkReduceOp, checkStacked, type CollectiveGroup, type ReduceOp, type Work } from './process_group.js';

/** How to join a group; anything left out comes from the environment (see readDistributedEnv). */
export interface InitProcessGroupOptions {
  /** 'gloo' (CPU tensors, the default) or 'nccl' (CUDA tensors; CUDA builds with NCCL only). */
  backend?: 'gloo' | 'nccl';
  rank?: number;
  worldSize?: number;
  /** This process's index on its node (default LOCAL_RANK, else the rank): the CUDA device of an NCCL rank. */
  localRank?: number;
  /** Host of the rendezvous store (rank 0 serves it). */
  masterAddr?: string;
  masterPort?: number;
  /** Limit for the rendezvous and for each collective, in ms (default 30 minutes, as torch.distributed). */
  timeoutMs?: number;
  /** Heartbeat period in ms (default 500); a failure report waits 3 periods to tell the dead ranks from the live. */
  heartbeatMs?: number;
  /** Store key prefix, so that several groups can share one store (default "default"). */
  prefix?: string;
  /** Gloo: network interface to use (default $GLOO_SOCKET_IFNAME, else 127.0.0.1 for a loopback master, else the hostname). */
  deviceInterface?: string;
  /** Gloo: address (or hostname) to bind instead of an interface. */
  deviceHostname?: string;
  /** Gloo worker threads per group (default 2). */
  threads?: number;
  /** The environment to read (default process.env). */
  env?: Record<string, string | undefined>;
}

const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;

function isLoopback(addr: string): boolean {
  return addr === 'localhost' || addr.startsWith('127.') || addr === '::1';
}

function checkInt(v: number, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(v) || v < min || v > max)
    throw new DistributedError(`initProcessGroup: ${name} must be an integer in [${min}, ${max}], received ${v}`, 'ERR_DIST_BACKEND');
  return v;
}

/**
 * Joins (and for rank 0, hosts) a process group. Resolves once every rank has joined.
 * @example
 * // in each of the processes that `launch` (or torchrun) started:
 * const pg = await initProcessGroup();
 * await pg.allReduce(grad, 'avg').wait();
 * pg.destroy();
 * @throws DistributedError ERR_DIST_STORE when the store cannot be reached, ERR_DIST_TIMEOUT / ERR_DIST_NETWORK when
 *   the ranks do not all join in time, ERR_DIST_BACKEND for a backend this build lacks.
 */
export async function initProcessGroup(o: InitProcessGroupOptions = {}): Promise<C10dProcessGroup> {
  const needEnv = o.rank === undefined || o.worldSize === undefined || o.masterAddr === undefined || o.masterPort === undefined;
  const env: DistributedEnv | undefined = needEnv ? readDistributedEnv(o.env ?? process.env) : undefined;
  const rank = checkInt(o.rank ?? env!.rank, 'rank', 0);
  const worldSize = checkInt(o.worldSize ?? env!.worldSize, 'worldSize', 1);
  if (rank >= worldSize) throw new DistributedError(`initProcessGroup: rank (${rank}) must be below worldSize (${worldSize})`, 'ERR_DIST_BACKEND');
  const masterAddr = o.masterAddr ?? env!.masterAddr;
  const masterPort = checkInt(o.masterPort ?? env!.masterPort, 'masterPort', 0, 65535);
  const backend = o.backend ?? 'gloo';
  if (!native.distBackends().includes(backend))
    throw new DistributedError(
      `initProcessGroup: the ${backend} backend is not in this build (available: ${native.distBackends().join(', ') || 'none'})`,
      'ERR_DIST_BACKEND',
    );
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const heartbeatMs = o.heartbeatMs ?? 500;
  const ifname = o.deviceInterface ?? (o.env ?? process.env).GLOO_SOCKET_IFNAME;
  const deviceHostname = o.deviceHostname ?? (ifname ? undefined : isLoopback(masterAddr) ? '127.0.0.1' : undefined);
  let g: NativeDistGroup;
  try {
    g = await native.distCreate({
      host: masterAddr,
      port: masterPort,
      rank,
      worldSize,
      isServer: rank === 0,
      backend,
      prefix: o.prefix ?? 'default',
      ...(ifname ? { deviceInterface: ifname } : {}),
      ...(deviceHostname ? { deviceHostname } : {}),
      timeoutMs,
      heartbeatMs,
      threads: o.threads ?? 2,
    });
  } catch (e) {
    throw asDistributedError(e, [], 'ERR_DIST_NETWORK');
  }
  const localRank = o.localRank ?? (o.rank === undefined ? env?.localRank : undefined) ?? rank;
  return new C10dProcessGroup(g, rank, worldSize, backend, timeoutMs, heartbeatMs, localRank);
}

function asDistributedError(e: unknown, failedRanks: readonly number[], fallback: ErrorCode, prefix = ''): DistributedError {
  if (e instanceof DistributedError) return e;
  const code = (e as { code?: string }).code;
  const c: ErrorCode = typeof code === 'string' && code.startsWith('ERR_DIST_') ? (code as ErrorCode) : fallback;
  return new DistributedError(prefix + (e instanceof Error ? e.message : String(e)), c, failedRanks, { cause: e });
}

/** A group of processes joined through c10d. Create it with `initProcessGroup`. */
export class C10dProcessGroup implements CollectiveGroup {
  #g: NativeDistGroup | null;
  #failure: DistributedError | null = null;

  /** @internal (use initProcessGroup) */
  constructor(
    g: NativeDistGroup,
    readonly rank: number,
    readonly worldSize: number,
    readonly backend: 'gloo' | 'nccl',
    /** Limit of each collective, in ms. */
    readonly timeoutMs: number,
    private readonly heartbeatMs: number,
    /** This process's index on its node: use `cuda:${localRank}` for its tensors with the nccl backend. */
    readonly localRank: number = rank,
  ) {
    this.#g = g;
  }

  /** @internal The native group (for the native FSDP units). */
  get nativeGroup(): NativeDistGroup {
    return this.#group('nativeGroup');
  }

  /** The rendezvous store's address (rank 0 hosts it). */
  get store(): { host: string; port: number } {
    const i = native.distInfo(this.#group('store'));
    return { host: i.host, port: i.port };
  }

  #group(op: string): NativeDistGroup {
    if (this.#failure) throw new DistributedError(`${op}: the group failed earlier: ${this.#failure.message}`, this.#failure.code, this.#failure.failedRanks);
    if (!this.#g) throw new DistributedError(`${op}: the process group has been destroyed`, 'ERR_DIST_BACKEND');
    return this.#g;
  }

  // The error of a failed collective, with the ranks whose heartbeat stopped (or the store that is gone).
  #explain(e: unknown, probe: { silent: number[]; closed: number[]; storeError: string | null } | null): DistributedError {
    const base = e instanceof Error ? e.message : String(e);
    let failed: number[] = [];
    let why = '';
    if (probe?.storeError) {
      failed = [0];
      why = `rank 0 (which hosts the rendezvous store) is unreachable, its process exited or its host is down (store: ${probe.storeError})`;
    } else if (probe && probe.silent.length > 0) {
      failed = probe.silent;
      const closed = probe.silent.filter((r) => probe.closed.includes(r));
      const silent = probe.silent.filter((r) => !probe.closed.includes(r));
      const parts: string[] = [];
      if (silent.length) parts.push(`${silent.length === 1 ? 'rank' : 'ranks'} ${silent.join(', ')} stopped responding (process exited, killed or hung)`);
      if (closed.length) parts.push(`${closed.length === 1 ? 'rank' : 'ranks'} ${closed.join(', ')} closed the group`);
      why = parts.join('; ');
    }
    const code: ErrorCode = failed.length > 0 ? 'ERR_DIST_PEER' : ((e as { code?: ErrorCode }).code ?? 'ERR_DIST_NETWORK');
    if (!why && code === 'ERR_DIST_TIMEOUT')
      why = `no rank failed, but the collective did not complete within ${this.timeoutMs} ms (every rank must issue the same collectives in the same order)`;
    const msg = why ? `rank ${this.rank}: ${why}; ${base}` : `rank ${this.rank}: ${base}`;
    const err = new DistributedError(msg, code.startsWith('ERR_DIST_') ? code : 'ERR_DIST_NETWORK', failed, { cause: e });
    this.#failure = err;
    return err;
  }

  #work(h: NativeDistWork): Work {
    const self = this;
    let failure: DistributedError | null = null;
    return {
      async wait(): Promise<void> {
        if (failure) throw failure;
        try {
          await native.distWaitAsync(h, self.timeoutMs);
        } catch (e) {
          const g = self.#g;
          failure = self.#explain(e, g ? await native.distProbe(g, 3 * self.heartbeatMs).catch(() => null) : null);
          throw failure;
        }
      },
      waitSync(): void {
        if (failure) throw failure;
        try {
          native.distWait(h, self.timeoutMs);
        } catch (e) {
          const g = self.#g;
          failure = self.#explain(e, g ? native.distProbeSync(g, 3 * self.heartbeatMs) : null);
          throw failure;
        }
      },
      get completed(): boolean {
        return native.distIsCompleted(h);
      },
    };
  }

  /**
   * The DistributedError for a failure of a communication this group did not issue itself (the native FSDP units'
   * gathers and reduce-scatters, a collective inside autograd): the ranks whose heartbeat stopped are named, and the
   * group is marked failed. A DistributedError passes through; an error that is not about communication (its code
   * does not start with ERR_DIST_) is returned unchanged.
   */
  explainFailure(e: unknown): unknown {
    if (e instanceof DistributedError) return e;
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code !== 'string' || !code.startsWith('ERR_DIST_')) return e;
    if (this.#failure) return new DistributedError(`${this.#failure.message}`, this.#failure.code, this.#failure.failedRanks, { cause: e });
    const g = this.#g;
    return this.#explain(e, g ? native.distProbeSync(g, 3 * this.heartbeatMs) : null);
  }

  // ---- ProcessGroup (the losses' synchronous surface) ----

  allReduceSum_(t: Tensor): Tensor {
    this.allReduce(t, 'sum').waitSync();
    return t;
  }
  allReduceMax_(t: Tensor): Tensor {
    this.allReduce(t, 'max').waitSync();
    return t;
  }
  /** Every rank's `t` (gradient-carrying: the backward pass reduce-scatters the gradient, as torch.distributed.nn). */
  allGather(t: Tensor): Tensor[] {
    const g = this.#group('allGather');
    let all: Tensor;
    try {
      all = wrap(native.distAllGatherAutograd(g, handleOf(t, 'allGather', 'tensor')));
    } catch (e) {
      if ((e as { code?: string }).code?.startsWith('ERR_DIST_')) throw this.#explain(e, native.distProbeSync(g, 3 * this.heartbeatMs));
      throw e;
    }
    const n = t.shape[0]!;
    const parts = Array.from({ length: this.worldSize }, (_, r) => all.narrow(0, r * n, n));
    all.dispose();
    return parts;
  }

  // ---- CollectiveGroup ----

  allReduce(t: Tensor, op: ReduceOp = 'sum'): Work {
    const g = this.#group('allReduce');
    checkReduceOp(op, t, 'allReduce');
    const h = native.distAllReduce(g, handleOf(t, 'allReduce', 'tensor'), op === 'avg' ? 'sum' : op);
    return op === 'avg' ? this.#then(h, () => noGrad(() => t.div_(this.worldSize))) : this.#work(h);
  }
  allGatherInto(output: Tensor, input: Tensor): Work {
    const g = this.#group('allGatherInto');
    checkStacked(output, input, this.worldSize, 'allGatherInto', 'output', 'input');
    return this.#work(native.distAllGatherInto(g, handleOf(output, 'allGatherInto', 'output'), handleOf(input, 'allGatherInto', 'input')));
  }
  reduceScatter(output: Tensor, input: Tensor, op: 'sum' | 'avg' = 'sum'): Work {
    const g = this.#group('reduceScatter');
    checkStacked(input, output, this.worldSize, 'reduceScatter', 'input', 'output');
    checkReduceOp(op, input, 'reduceScatter');
    const h = native.distReduceScatter(g, handleOf(output, 'reduceScatter', 'output'), handleOf(input, 'reduceScatter', 'input'));
    return op === 'avg' ? this.#then(h, () => noGrad(() => output.div_(this.worldSize))) : this.#work(h);
  }
  /** All-to-all with equal splits along dim 0: rank r's rows block j lands in rank j's `output` rows block r. */
  allToAll(output: Tensor, input: Tensor): Work {
    const g = this.#group('allToAll');
    return this.#work(native.distAllToAll(g, handleOf(output, 'allToAll', 'output'), handleOf(input, 'allToAll', 'input')));
  }
  broadcast(t: Tensor, src: number): Work {
    const g = this.#group('broadcast');
    return this.#work(native.distBroadcast(g, handleOf(t, 'broadcast', 'tensor'), src));
  }
  barrier(): Work {
    return this.#work(native.distBarrier(this.#group('barrier')));
  }
  /** Leaves the group: the other ranks' failure reports say this rank closed it. Idempotent. */
  destroy(): void {
    if (!this.#g) return;
    const g = this.#g;
    this.#g = null;
    native.distDestroy(g);
  }
  [Symbol.dispose](): void {
    this.destroy();
  }

  // A work followed by a local step once it is done (run once, by whichever wait comes first).
  #then(h: NativeDistWork, after: () => void): Work {
    const inner = this.#work(h);
    let done = false;
    const finish = (): void => {
      if (!done) {
        done = true;
        after();
      }
    };
    return {
      wait: async () => {
        await inner.wait();
        finish();
      },
      waitSync: () => {
        inner.waitSync();
        finish();
      },
      get completed() {
        return done;
      },
    };
  }
}
