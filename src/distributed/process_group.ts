// Process groups: the collectives the losses need (the global sums of DINOLoss.sinkhorn_knopp_teacher, the
// gradient-carrying all-gather of KoLeoLossDistributed) and the fuller set sharded training needs (`CollectiveGroup`:
// in-place all-reduce, all-gather into one tensor, reduce-scatter, broadcast, barrier, each returning a `Work` to wait
// for). `LocalProcessGroup` is the single-process
// group (world size 1) used on one device and in tests; `C10dProcessGroup` (c10d.ts) is the multi-process one.
import { amax } from '../ops/reduce.js';
import { stack, view } from '../ops/shape.js';
import { TorchRangeError } from '../native/errors.js';
import { expectMethods, expectPositiveInt, expectString, expectTensorArg, showJson } from '../tensor/args.js';
import { noGrad } from '../tensor/grad_mode.js';
import { scope } from '../tensor/scope.js';
import { handleOf, type Tensor } from '../tensor/tensor.js';

/** The collectives used by the losses. Every rank must call them in the same order with same-shaped tensors. */
export interface ProcessGroup {
  /** This process's rank in the group, 0 ≤ rank < worldSize. */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly worldSize: number;
  /** Sums `t` over all ranks, in place (every rank ends with the sum); returns `t`. */
  allReduceSum_(t: Tensor): Tensor;
  /**
   * Elementwise maximum over all ranks, in place; returns `t`. Optional: without it `allReduceMax_` below falls back
   * to an all-gather (worldSize × the data).
   */
  allReduceMax_?(t: Tensor): Tensor;
  /**
   * `t` of every rank, in rank order (new tensors owned by the caller; in one process entry `rank` aliases `t`). The gather carries
   * gradients: the backward pass sends each rank its slice of the gradient (as torch.distributed.nn.all_gather).
   */
  allGather(t: Tensor): Tensor[];
}

/** How an all-reduce combines the ranks' tensors ('avg' divides the sum by the world size; floating dtypes only). */
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min' | 'product';

/** A collective in flight. Tensors passed to it must stay alive (not disposed) until it has been waited for. */
export interface Work {
  /** Resolves once the collective and its local part are done; rejects with a DistributedError. Never blocks. */
  wait(): Promise<void>;
  /** Blocks the JS thread until done (only for code whose peers are other processes). */
  waitSync(): void;
  /** Whether it is done (never blocks). */
  readonly completed: boolean;
}

/** The collectives of sharded data-parallel training, on top of the losses' `ProcessGroup`. */
export interface CollectiveGroup extends ProcessGroup {
  /** 'local' (one process), 'gloo' (CPU tensors) or 'nccl' (CUDA tensors). */
  readonly backend: 'local' | 'gloo' | 'nccl';
  /** Reduces `t` over all ranks in place (every rank ends with the result). */
  allReduce(t: Tensor, op?: ReduceOp): Work;
  /** Writes every rank's `input` [n, …] into `output` [W·n, …], rank r's in rows r·n…(r+1)·n (all_gather_into_tensor). */
  allGatherInto(output: Tensor, input: Tensor): Work;
  /** `output` [n, …] = the sum (or average) over ranks of their `input` [W·n, …] rows rank·n…(rank+1)·n. */
  reduceScatter(output: Tensor, input: Tensor, op?: 'sum' | 'avg'): Work;
  /** Copies rank `src`'s `t` into `t` on every rank. */
  broadcast(t: Tensor, src: number): Work;
  /** Completes once every rank has entered it. */
  barrier(): Work;
  /** Releases the group (idempotent); later calls throw. */
  destroy(): void;
}

/** A work that is already done (the one-process collectives). */
export const DONE: Work = Object.freeze({ wait: () => Promise.resolve(), waitSync: () => undefined, completed: true });

const OPS: readonly string[] = ['sum', 'avg', 'max', 'min', 'product'];

/** @internal Checks a reduce op name and that 'avg' is asked of a floating tensor (shared by the groups). */
export function checkReduceOp(op: string, t: Tensor, where: string): void {
  expectString('checkReduceOp', 'where', where);
  if (!OPS.includes(op))
    throw new TorchRangeError(`${where}: op must be one of ${OPS.map((o) => `"${o}"`).join(', ')}, received ${showJson(op)}`, 'ERR_INVALID_ARG');
  expectTensorArg(where, 'input', t);
  if (op === 'avg' && !t.dtype.startsWith('float') && t.dtype !== 'bfloat16')
    throw new TorchRangeError(`${where}: op "avg" needs a floating-point tensor, received ${t.dtype}`, 'ERR_INVALID_ARG');
}

/** @internal Checks that `big` is `small` with `world` × its first dimension (all-gather and reduce-scatter shapes). */
export function checkStacked(big: Tensor, small: Tensor, world: number, where: string, bigName: string, smallName: string): void {
  expectTensorArg(where, bigName, big);
  expectTensorArg(where, smallName, small);
  expectPositiveInt(where, 'world size', world);
  const b = big.shape;
  const s = small.shape;
  if (s.length === 0 || b.length !== s.length || b[0] !== s[0]! * world || b.some((d, i) => i > 0 && d !== s[i]) || big.dtype !== small.dtype)
    throw new TorchRangeError(
      `${where}: expected "${bigName}" to be "${smallName}"'s dtype with ${world} × its first dimension, received ${bigName} ${big.dtype} [${b.join(', ')}] and ${smallName} ${small.dtype} [${s.join(', ')}]`,
      'ERR_INVALID_ARG',
    );
}

/**
 * The world of one process: sums are identities and the gather returns the input itself (a new handle sharing its
 * storage and its autograd history).
 * @example
 * const pg = new LocalProcessGroup();
 * const [mine] = pg.allGather(x); // mine aliases x
 */
export class LocalProcessGroup implements CollectiveGroup {
  readonly rank = 0;
  readonly worldSize = 1;
  readonly backend = 'local';
  allReduceSum_(t: Tensor): Tensor {
    handleOf(t, 'allReduceSum_', 'tensor');
    return t;
  }
  allReduceMax_(t: Tensor): Tensor {
    handleOf(t, 'allReduceMax_', 'tensor');
    return t;
  }
  allGather(t: Tensor): Tensor[] {
    return [view(t, t.shape)];
  }
  allReduce(t: Tensor, op: ReduceOp = 'sum'): Work {
    handleOf(t, 'allReduce', 'tensor');
    checkReduceOp(op, t, 'allReduce');
    return DONE;
  }
  allGatherInto(output: Tensor, input: Tensor): Work {
    handleOf(output, 'allGatherInto', 'output');
    handleOf(input, 'allGatherInto', 'input');
    checkStacked(output, input, 1, 'allGatherInto', 'output', 'input');
    noGrad(() => output.copy_(input));
    return DONE;
  }
  reduceScatter(output: Tensor, input: Tensor, op: 'sum' | 'avg' = 'sum'): Work {
    handleOf(output, 'reduceScatter', 'output');
    handleOf(input, 'reduceScatter', 'input');
    checkStacked(input, output, 1, 'reduceScatter', 'input', 'output');
    checkReduceOp(op, input, 'reduceScatter');
    noGrad(() => output.copy_(input));
    return DONE;
  }
  broadcast(t: Tensor, src: number): Work {
    handleOf(t, 'broadcast', 'tensor');
    if (src !== 0) throw new TorchRangeError(`broadcast: src must be 0 in a one-process group, received ${src}`, 'ERR_INVALID_ARG');
    return DONE;
  }
  barrier(): Work {
    return DONE;
  }
  destroy(): void {}
}

/** Elementwise maximum of `t` over the ranks of `group`, in place (the group's own max-reduce, else an all-gather). */
export function allReduceMax_(group: ProcessGroup, t: Tensor): Tensor {
  expectMethods('allReduceMax_', 'group', group, 'a ProcessGroup', ['allGather']);
  expectTensorArg('allReduceMax_', 't', t);
  if (group.allReduceMax_) return group.allReduceMax_(t);
  if (group.worldSize === 1) return t;
  return scope(() => {
    const all = group.allGather(t);
    return noGrad(() => t.copy_(amax(stack(all), 0)));
  });
}

/** The default group of the losses when none is given. */
export const LOCAL_PROCESS_GROUP: CollectiveGroup = new LocalProcessGroup();
