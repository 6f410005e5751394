// Fully sharded data parallelism over flat parameter units (dinov3/fsdp/ac_compile_parallelize.py; the official code shards with
// torch.distributed.fsdp.fully_shard per block, see dinov3/fsdp/ac_compile_parallelize.py::ac_compile_parallelize).
//
// Each unit (a submodule such as a transformer block, plus a root unit for the parameters outside every unit) has its
// parameters flattened in registration order into one fp32 buffer padded to a multiple of the world size W; rank r
// keeps elements [r·S, (r+1)·S) (S = padded / W) as its master shard and its gradient shard. Between steps the
// module's parameters are empty: only the shards live. A unit's forward (every `forward*` method) first all-gathers
// its parameters (the next unit's gather is issued at the same time, so it overlaps this unit's compute) and points
// each parameter at its slice of the gathered buffer (parameter substitution: the Tensor objects and their autograd
// identity are kept, so layers stay as they are).
//   SHARD_GRAD_OP (the official default): a unit's parameters stay gathered from its forward to its backward.
//   FULL_SHARD: they are freed right after its forward (peak = one unit + the prefetched one) and gathered again when
//     backward reaches the unit (prefetching the unit before it).
// On a C10dProcessGroup the units are native (distributed/c10d.cc) and autograd hooks on each unit's outputs and
// inputs do this during backward: the output hook gathers (FULL_SHARD), the input hook — once the unit's backward is
// done — reduce-scatters (averages) the unit's flat gradient into its gradient shard and frees its parameters, so
// the reductions overlap the backward of the units before it. `backward(loss)` runs the backward pass, issues what
// the hooks did not (the root, a unit whose inputs need no gradient), and waits for all. On other groups (one
// process, test doubles) everything happens after backward. The optimizer works on `shardedParameters()`: per
// original parameter, the view of this rank's shard that holds its elements, with its gradient view set, so
// parameter groups (weight decay, lr multipliers) stay per parameter.
import { native, type NativeFsdpUnit } from '../native/binding.js';
import { TorchRangeError } from '../native/errors.js';
import { cat, flatten } from '../ops/shape.js';
import { sum } from '../ops/reduce.js';
import { empty, zeros } from '../tensor/creation.js';
import { expectMethods, expectObject } from '../tensor/args.js';
import { isGradEnabled, noGrad } from '../tensor/grad_mode.js';
import { keep, scope } from '../tensor/scope.js';
import { handleOf, Tensor, wrap } from '../tensor/tensor.js';
import type { Module, StateDict } from '../nn/module.js';
import { C10dProcessGroup } from './c10d.js';
import type { CollectiveGroup, Work } from './process_group.js';

export type ShardingStrategy = 'FULL_SHARD' | 'SHARD_GRAD_OP';

export interface FsdpOptions {
  group: CollectiveGroup;
  /** Default 'SHARD_GRAD_OP' (the official configs' default). */
  strategy?: ShardingStrategy;
  /**
   * Submodules that are each one flat unit, in forward order (their forward is wrapped). Parameters outside them
   * form the root unit, gathered at the root's forward. Default: every direct child.
   */
  units?: Module[];
  /** Broadcast rank 0's parameter values before sharding (default true), so every rank starts from the same model. */
  syncModuleStates?: boolean;
  /**
   * Methods of the module and of each unit that use their parameters, wrapped with the gather (and the release).
   * Default: every method whose name starts with "forward" (forward, forwardList, forwardFeaturesList, …) and
   * getIntermediateLayers. Nested calls of wrapped methods of one module act once, at the outermost.
   */
  methods?: readonly string[];
}

interface Segment {
  name: string;
  param: Tensor;
  shape: number[];
  offset: number; // in the flat buffer
  numel: number;
}

type Forward = (...args: unknown[]) => unknown;

/** @internal What a sharded checkpoint needs to know of a flat unit. */
export interface FlatUnitInfo {
  readonly name: string;
  readonly numel: number;
  readonly shardSize: number;
  readonly shard: Tensor;
  readonly segments: readonly { name: string; shape: number[]; offset: number; numel: number }[];
  readonly shardViews: readonly { name: string; view: Tensor; shardOffset: number }[];
}

class FlatUnit implements FlatUnitInfo {
  readonly segments: Segment[];
  readonly numel: number;
  readonly padded: number;
  readonly shardSize: number;
  readonly shard: Tensor;
  readonly gradShard: Tensor;
  /** Per segment, its part of this rank's shard (absent when none of its elements is here). */
  readonly shardViews: { name: string; view: Tensor; grad: Tensor; shardOffset: number }[] = [];
  #full: Tensor | null = null;
  #pending: Work | null = null;
  #empty: Tensor;

  constructor(
    readonly name: string,
    params: [string, Tensor][],
    readonly group: CollectiveGroup,
    sync: boolean,
  ) {
    const W = group.worldSize;
    let offset = 0;
    this.segments = params.map(([n, p]) => {
      const s = { name: n, param: p, shape: p.shape, offset, numel: p.numel };
      offset += p.numel;
      return s;
    });
    for (const s of this.segments)
      if (s.param.dtype !== 'float32')
        throw new TorchRangeError(
          `FullyShardedModule: parameter "${s.name}" is ${s.param.dtype}; sharding keeps fp32 masters (convert the module to float32 first)`,
          'ERR_INVALID_ARG',
        );
    this.numel = offset;
    this.shardSize = Math.max(1, Math.ceil(offset / W));
    this.padded = this.shardSize * W;
    const device = this.segments[0]?.param.device ?? 'cpu';
    this.#empty = keep(empty([0], { device }));
    const flat = scope(() => {
      const parts = this.segments.map((s) => flatten(s.param.detach()));
      if (this.padded > offset) parts.push(zeros([this.padded - offset], { device }));
      return cat(parts);
    });
    if (sync && W > 1) group.broadcast(flat, 0).waitSync();
    const r = group.rank;
    this.shard = keep(noGrad(() => scope(() => flat.narrow(0, r * this.shardSize, this.shardSize).clone())));
    this.gradShard = keep(zeros([this.shardSize], { device }));
    flat.dispose();
    const lo = r * this.shardSize;
    const hi = lo + this.shardSize;
    for (const s of this.segments) {
      const a = Math.max(lo, s.offset);
      const b = Math.min(hi, s.offset + s.numel);
      if (b > a)
        this.shardViews.push({
          name: s.name,
          view: keep(this.shard.narrow(0, a - lo, b - a)),
          grad: keep(this.gradShard.narrow(0, a - lo, b - a)),
          shardOffset: a - lo,
        });
    }
    // On a c10d group the gathers, releases and reduce-scatters run natively, so that autograd hooks can run them in
    // the middle of backward; on any other group (one process, test doubles) they run here, at the end of backward.
    if (group instanceof C10dProcessGroup)
      this.native = native.distFsdpUnit(
        group.nativeGroup,
        this.segments.map((x, i) => handleOf(x.param, 'FullyShardedModule', `${name || 'root'} parameters[${i}]`)),
        handleOf(this.shard, 'FullyShardedModule', 'shard'),
        handleOf(this.gradShard, 'FullyShardedModule', 'gradShard'),
        this.segments.map((x) => x.offset),
        this.padded,
      );
    this.release();
  }

  /** The native unit (c10d groups only). */
  readonly native: NativeFsdpUnit | null = null;
  /** Whether an output hook was placed since the last step (its backward will gather the unit again). */
  outputHooked = false;
  /**
   * Whether the unit ran a forward with autograd on since the last step. One that did not (checkpointed blocks, which
   * run without autograd and again, hooked, in their recomputation) needs no gather before the backward.
   */
  usedWithGrad = false;

  get gathered(): boolean {
    return this.native ? native.distFsdpIsGathered(this.native) : this.#full !== null;
  }

  // The Tensor objects cache their shape: refresh them after the native side changed their data.
  #refresh(): void {
    for (const s of this.segments) scope(() => s.param.replaceData(s.param.detach()));
  }

  /** Issues the all-gather of this unit's parameters (no-op when gathered or in flight). */
  prefetch(): void {
    if (this.native) return native.distFsdpPrefetch(this.native);
    if (this.#full || this.#pending) return;
    const full = keep(empty([this.padded], { device: this.shard.device }));
    this.#pending = this.group.allGatherInto(full, this.shard);
    this.#fullInFlight = full;
  }
  #fullInFlight: Tensor | null = null;

  /** Waits for the gather and points every parameter at its slice of the gathered buffer. */
  gather(): void {
    if (this.native) {
      native.distFsdpGather(this.native);
      return this.#refresh();
    }
    if (this.#full) return;
    this.prefetch();
    this.#pending!.waitSync();
    this.#pending = null;
    const full = this.#fullInFlight!;
    this.#fullInFlight = null;
    this.#full = full;
    for (const s of this.segments) scope(() => s.param.replaceData(full.narrow(0, s.offset, s.numel).view(s.shape)));
  }

  /** Frees the gathered parameters (they become empty tensors until the next gather); waits for a prefetch. */
  release(): void {
    if (this.native) {
      native.distFsdpRelease(this.native);
      for (const s of this.segments) s.param.replaceData(this.#empty);
      return;
    }
    if (this.#pending) {
      this.#pending.waitSync();
      this.#pending = null;
      this.#fullInFlight?.dispose();
      this.#fullInFlight = null;
    }
    for (const s of this.segments) s.param.replaceData(this.#empty);
    this.#full?.dispose();
    this.#full = null;
  }

  /** Issues the reduce-scatter (average over ranks) of the parameters' gradients into the gradient shard. */
  reduceGradients(): { work: Work; flat: Tensor } {
    const device = this.shard.device;
    const flat = keep(
      noGrad(() =>
        scope(() => {
          const parts = this.segments.map((s) => {
            const g = s.param.grad;
            return g ? flatten(g) : zeros([s.numel], { device });
          });
          if (this.padded > this.numel) parts.push(zeros([this.padded - this.numel], { device }));
          return cat(parts);
        }),
      ),
    );
    for (const s of this.segments) s.param.grad = null;
    return { work: this.group.reduceScatter(this.gradShard, flat, 'avg'), flat };
  }

  dispose(): void {
    this.release();
    if (this.native) native.distFsdpDispose(this.native);
    for (const v of this.shardViews) {
      v.view.grad = null;
      v.view.dispose();
      v.grad.dispose();
    }
    this.shard.dispose();
    this.gradShard.dispose();
    this.#empty.dispose();
  }
}

// A tensor, or an array of tensors, through a unit's hook (anything else unchanged; the same value when nothing changed).
function hookTensors(v: unknown, unit: FlatUnit, kind: 0 | 1): unknown {
  if (v instanceof Tensor) return v.requiresGrad ? wrap(native.distFsdpHook(unit.native!, handleOf(v, 'FullyShardedModule', 'tensor'), kind)) : v;
  if (Array.isArray(v) && v.length > 0 && v.every((x) => x instanceof Tensor)) {
    const out = v.map((x) => hookTensors(x, unit, kind));
    return out.some((x, i) => x !== v[i]) ? out : v;
  }
  return v;
}

/**
 * A module whose parameters, gradients and optimizer state are sharded over the ranks of `group`.
 * @example
 * const fsdp = new FullyShardedModule(model, { group: pg, units: model.blocks });
 * const opt = new AdamW(fsdp.shardedParameters());
 * const loss = lossOf(model.forward(x));   // the units gather their parameters as they run
 * fsdp.backward(loss);                      // gradients reduce-scattered into the shards
 * opt.step();
 */
export class FullyShardedModule<M extends Module> {
  readonly strategy: ShardingStrategy;
  readonly group: CollectiveGroup;
  readonly #units: FlatUnit[];
  readonly #root: FlatUnit;
  readonly #restore: [Module, string, Forward | undefined][] = [];
  #disposed = false;

  constructor(
    readonly module: M,
    o: FsdpOptions,
  ) {
    expectMethods('FullyShardedModule', 'module', module, 'a Module', ['children', 'namedModules']);
    expectObject('FullyShardedModule', 'options', o);
    expectMethods('FullyShardedModule', 'options.group', o.group, 'a collective process group', ['allGatherInto', 'reduceScatter', 'broadcast']);
    this.group = o.group;
    this.strategy = o.strategy ?? 'SHARD_GRAD_OP';
    if (this.strategy !== 'FULL_SHARD' && this.strategy !== 'SHARD_GRAD_OP')
      throw new TorchRangeError(
        `FullyShardedModule: strategy must be "FULL_SHARD" or "SHARD_GRAD_OP", received ${JSON.stringify(this.strategy)}`,
        'ERR_INVALID_ARG',
      );
    const sync = o.syncModuleStates ?? true;
    const unitModules = o.units ?? module.children().map(([, m]) => m);
    const names = new Map(module.namedModules().map(([n, m]) => [m, n] as const));
    const owned = new Set<Tensor>();
    this.#units = unitModules.map((m, i) => {
      const name = names.get(m);
      if (name === undefined || name === '') throw new TorchRangeError(`FullyShardedModule: units[${i}] is not a submodule of the module`, 'ERR_INVALID_ARG');
      const params = m.namedParameters(name).filter(([, t]) => !owned.has(t));
      for (const [, t] of params) owned.add(t);
      return new FlatUnit(name, params, this.group, sync);
    });
    this.#root = new FlatUnit(
      '',
      module.namedParameters().filter(([, t]) => !owned.has(t)),
      this.group,
      sync,
    );
    // Pre-forward hooks: the root gathers its own parameters and prefetches the first unit; each unit waits for its
    // gather and prefetches the next.
    // Without autograd (an EMA teacher, evaluation) nothing needs the parameters after a forward: they are freed at
    // once whatever the strategy.
    this.#wrap(
      module,
      o.methods,
      () => {
        if (isGradEnabled()) this.#root.usedWithGrad = true;
        this.#root.gather();
        this.#units[0]?.prefetch();
      },
      () => {
        if (!isGradEnabled()) this.reshard();
      },
    );
    this.#units.forEach((u, i) => {
      const m = unitModules[i]!;
      this.#wrap(
        m,
        o.methods,
        () => {
          if (isGradEnabled()) u.usedWithGrad = true;
          u.gather();
          this.#units[i + 1]?.prefetch();
        },
        () => {
          // FULL_SHARD frees a unit after its forward when its backward will gather it again: native units (the
          // output hook does) and only those; other units stay gathered until the backward, which a recomputed
          // (checkpointed) unit runs right after this forward, outside the pass that `beforeBackward` prepares.
          if (!isGradEnabled() || (this.strategy === 'FULL_SHARD' && u.native)) u.release();
        },
        u,
      );
      // In backward, a unit's gradient arriving prefetches the unit before it.
      if (u.native) native.distFsdpSetPrev(u.native, this.#units[i - 1]?.native ?? null);
    });
  }

  // Replaces the module's parameter-using methods (own properties shadowing the prototype's) by wrappers that run
  // `before` at the outermost call and `after` when it returns.
  // With a native unit and autograd on, the tensors going in go through the unit's input hook (whose backward
  // reduce-scatters the unit's gradients and frees its parameters once the unit's backward is done) and the tensors
  // coming out through its output hook (whose backward gathers the parameters again first).
  #wrap(m: Module, methods: readonly string[] | undefined, before: () => void, after: () => void, unit?: FlatUnit): void {
    const host = m as unknown as Record<string, unknown>;
    const names = new Set<string>();
    if (methods) for (const n of methods) names.add(n);
    else
      for (let proto = Object.getPrototypeOf(m) as object | null; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto) as object | null)
        for (const n of Object.getOwnPropertyNames(proto))
          if ((n.startsWith('forward') || n === 'getIntermediateLayers') && typeof host[n] === 'function') names.add(n);
    const wrapped = [...names].filter((n) => typeof host[n] === 'function');
    if (wrapped.length === 0)
      throw new TorchRangeError(
        `FullyShardedModule: ${m.constructor.name} has none of the methods to wrap (${methods ? methods.join(', ') : 'forward…'})`,
        'ERR_INVALID_ARG',
      );
    let depth = 0;
    const self = this;
    for (const n of wrapped) {
      const orig = host[n] as Forward;
      this.#restore.push([m, n, Object.prototype.hasOwnProperty.call(m, n) ? orig : undefined]);
      host[n] = function (this: unknown, ...args: unknown[]): unknown {
        self.#live(n);
        const outer = depth++ === 0;
        if (outer) before();
        try {
          const hooks = outer && unit?.native && isGradEnabled() ? unit : null;
          if (!hooks) return orig.apply(this, args);
          const out = orig.apply(
            this,
            args.map((a) => hookTensors(a, hooks, 0)),
          );
          const hooked = hookTensors(out, hooks, 1);
          if (hooked !== out) hooks.outputHooked = true;
          return hooked;
        } finally {
          if (--depth === 0) after();
        }
      };
    }
  }

  #live(op: string): void {
    if (this.#disposed) throw new TorchRangeError(`FullyShardedModule.${op}: disposed`, 'ERR_INVALID_ARG');
  }

  /**
   * Backward of `loss` (FULL_SHARD first gathers every unit again), then each unit's gradient averaged over the ranks
   * into its gradient shard; the gathered parameters are freed. Every rank must call it once per step.
   */
  backward(loss: Tensor, opts: { retainGraph?: boolean } = {}): void {
    this.beforeBackward();
    loss.backward({ retainGraph: opts.retainGraph ?? false });
    this.afterBackward();
  }

  /**
   * The part of `backward` before the backward pass (FULL_SHARD: gathers again the units whose backward will not).
   * With several sharded modules under one loss: `beforeBackward()` on each, one `loss.backward()`, then
   * `afterBackward()` on each, in the same order on every rank.
   */
  beforeBackward(): void {
    this.#live('backward');
    const all = [this.#root, ...this.#units];
    // FULL_SHARD freed the units after their forward; those whose backward will not gather them (no output hook:
    // a group without native units, or outputs that are not tensors) are gathered now, if a forward with autograd
    // used them.
    if (this.strategy === 'FULL_SHARD') {
      const again = all.filter((u) => u.usedWithGrad && !(u.native && u.outputHooked));
      for (const u of again) u.prefetch();
      for (const u of again) u.gather();
    }
  }

  /** The part of `backward` after the backward pass: the gradients reduce-scattered into the shards, parameters freed. */
  afterBackward(): void {
    this.#live('backward');
    const all = [this.#root, ...this.#units];
    // Native units: the input hooks issued most reduce-scatters during backward; issue the rest (last unit first, as
    // backward reaches them), then wait for all. Other groups: all reduce-scatters now, in flight together.
    const reversed = [...all].reverse();
    const inFlight: { work: Work; flat: Tensor }[] = [];
    for (const u of reversed) {
      if (u.native) native.distFsdpIssueReduce(u.native);
      else inFlight.push(u.reduceGradients());
    }
    for (const u of reversed) if (u.native) native.distFsdpFinishReduce(u.native);
    for (const { work, flat } of inFlight) {
      work.waitSync();
      flat.dispose();
    }
    for (const u of all) {
      u.release();
      u.outputHooked = false;
      u.usedWithGrad = false;
      for (const v of u.shardViews) v.view.grad = v.grad;
    }
  }

  /**
   * Frees every gathered parameter now (waiting for prefetches in flight). `backward` and no-grad forwards do it
   * themselves; call it after a forward with autograd on that is not followed by `backward` (the gathered values
   * would otherwise be reused by the next forward, stale once the shards have been stepped).
   */
  reshard(): void {
    for (const u of [this.#root, ...this.#units]) {
      if (u.native) native.distFsdpFinishReduce(u.native); // also forgets the hooks of a forward without backward
      u.release();
      u.outputHooked = false;
      u.usedWithGrad = false;
    }
  }

  /**
   * The master shard buffers, root first: the EMA teacher update on shards is
   * `emaUpdate(teacher.flatShards(), student.flatShards(), m)` for a teacher sharded with the same units.
   */
  flatShards(): Tensor[] {
    return [this.#root, ...this.#units].map((u) => u.shard);
  }

  /** @internal The flat units, root first (for sharded checkpoints). */
  get flatUnits(): readonly FlatUnitInfo[] {
    return [this.#root, ...this.#units];
  }

  /** Per original parameter with elements on this rank: its view of the master shard (what the optimizer updates). */
  namedShardedParameters(): [string, Tensor][] {
    return [this.#root, ...this.#units].flatMap((u) => u.shardViews.map((v) => [v.name, v.view] as [string, Tensor]));
  }
  shardedParameters(): Tensor[] {
    return this.namedShardedParameters().map(([, t]) => t);
  }

  /** Drops the shard gradients (set again by the next backward). */
  zeroGrad(): void {
    for (const u of [this.#root, ...this.#units]) for (const v of u.shardViews) v.view.grad = null;
  }

  /**
   * Scales the shard gradients so that their global L2 norm is at most `maxNorm`: each is multiplied by
   * min(1, maxNorm / (norm + 1e-6)) (torch.nn.utils.clip_grad_norm_ over the whole sharded module: the squared norms of
   * the shards are all-reduced). Returns the norm before clipping as a float32 0-d tensor on the shards' device, owned by
   * the caller; nothing is read on the host (the coefficient stays a tensor), so a step reads all its norms at once.
   */
  clipGradNorm_(maxNorm: number): Tensor {
    if (typeof maxNorm !== 'number' || !(maxNorm >= 0))
      throw new TorchRangeError(`FullyShardedModule.clipGradNorm_: "maxNorm" must be a number >= 0, received ${String(maxNorm)}`, 'ERR_INVALID_ARG');
    return noGrad(() =>
      scope(() => {
        const units = [this.#root, ...this.#units];
        const sq = zeros([1], { device: this.#root.gradShard.device });
        for (const u of units) sq.add_(sum(u.gradShard.mul(u.gradShard)));
        this.group.allReduce(sq, 'sum').waitSync();
        const norm = sq.sqrt().reshape([]);
        const coef = norm.add(1e-6).reciprocal().mul(maxNorm).clampMax(1);
        for (const u of units) u.gradShard.mul_(coef);
        return norm;
      }),
    );
  }

  /**
   * The module's state dict with the full parameters (gathered on every rank) and copies of its persistent buffers,
   * in the module's key order; new tensors owned by the caller. Every rank must call it.
   */
  fullStateDict(): StateDict {
    this.#live('fullStateDict');
    const params = new Map<string, Tensor>();
    for (const u of [this.#root, ...this.#units]) {
      const full = empty([u.padded], { device: u.shard.device });
      this.group.allGatherInto(full, u.shard).waitSync();
      for (const s of u.segments) params.set(s.name, keep(noGrad(() => scope(() => full.narrow(0, s.offset, s.numel).view(s.shape).clone()))));
      full.dispose();
    }
    // The module's state-dict order, its persistent buffers included (copies).
    const out: StateDict = new Map();
    for (const [k, t] of this.module.stateDict()) out.set(k, params.get(k) ?? keep(noGrad(() => t.clone())));
    return out;
  }

  /**
   * Per unit (root first, by name): how many gathers (FULL_SHARD re-gathers) and gradient reduce-scatters its autograd
   * hooks ran during backward so far; null for units without native hooks (groups other than C10dProcessGroup).
   */
  hookStats(): { unit: string; hookGathers: number; hookReduces: number }[] | null {
    if (!this.#root.native) return null;
    return [this.#root, ...this.#units].map((u) => ({ unit: u.name, ...native.distFsdpStats(u.native!) }));
  }

  /** Bytes held on this rank by the parameter shards and gradient shards (optimizer state: see the optimizer). */
  shardBytes(): { params: number; grads: number; unshardedParams: number } {
    const units = [this.#root, ...this.#units];
    return {
      params: units.reduce((a, u) => a + u.shardSize * 4, 0),
      grads: units.reduce((a, u) => a + u.shardSize * 4, 0),
      unshardedParams: units.reduce((a, u) => a + u.numel * 4, 0),
    };
  }

  /** Frees the shards and restores the module's forward methods (its parameters stay empty). Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const [m, n, own] of this.#restore) {
      const host = m as unknown as Record<string, unknown>;
      if (own) host[n] = own;
      else delete host[n];
    }
    for (const u of [this.#root, ...this.#units]) u.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
