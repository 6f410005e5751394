// Process groups that stand in for a multi-rank world inside one process.
import type { ProcessGroup, Tensor } from '../../../src/index.js';

/** W ranks holding identical data: a sum is W·t, a gather W copies; no native max (tests the gather fallback). */
export class MirrorGroup implements ProcessGroup {
  readonly rank = 0;
  constructor(readonly worldSize: number) {}
  allReduceSum_(t: Tensor): Tensor {
    return t.mul_(this.worldSize);
  }
  allGather(t: Tensor): Tensor[] {
    return Array.from({ length: this.worldSize }, () => t.view(t.shape));
  }
}

/** This rank's tensor among fixed tensors of the other ranks (for the all-gather of the distributed KoLeo). */
export class PeersGroup implements ProcessGroup {
  constructor(
    readonly rank: number,
    private readonly others: Tensor[],
  ) {}
  get worldSize(): number {
    return this.others.length + 1;
  }
  allReduceSum_(): Tensor {
    throw new Error('PeersGroup: allReduceSum_ is not simulated');
  }
  allGather(t: Tensor): Tensor[] {
    const out = this.others.map((o) => o.view(o.shape));
    out.splice(this.rank, 0, t.view(t.shape));
    return out;
  }
}
