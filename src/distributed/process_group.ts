// Process groups: the collectives the losses need (RECIPE §5.1 global sums, §5.4 gradient-carrying all-gather, §9).
// `LocalProcessGroup` is the single-process group (world size 1) used on one device and in tests; the sharded
// training work plugs a c10d-backed group in behind the same interface.
import { amax } from '../ops/reduce.js';
import { stack, view } from '../ops/shape.js';
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
   * `t` of every rank, in rank order (new tensors owned by the caller; entry `rank` aliases `t`). The gather carries
   * gradients: the backward pass sends each rank its slice of the gradient (as torch.distributed.nn.all_gather).
   */
  allGather(t: Tensor): Tensor[];
}

/**
 * The world of one process: sums are identities and the gather returns the input itself (a new handle sharing its
 * storage and its autograd history).
 * @example
 * const pg = new LocalProcessGroup();
 * const [mine] = pg.allGather(x); // mine aliases x
 */
export class LocalProcessGroup implements ProcessGroup {
  readonly rank = 0;
  readonly worldSize = 1;
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
}

/** Elementwise maximum of `t` over the ranks of `group`, in place (the group's own max-reduce, else an all-gather). */
export function allReduceMax_(group: ProcessGroup, t: Tensor): Tensor {
  if (group.allReduceMax_) return group.allReduceMax_(t);
  if (group.worldSize === 1) return t;
  return scope(() => {
    const all = group.allGather(t);
    return noGrad(() => t.copy_(amax(stack(all), 0)));
  });
}

/** The default group of the losses when none is given. */
export const LOCAL_PROCESS_GROUP: ProcessGroup = new LocalProcessGroup();
