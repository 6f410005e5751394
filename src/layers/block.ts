// Pre-norm transformer block (dinov3/layers/block.py::SelfAttentionBlock):
//   x ← x + LS1(Attn(Norm1(x)));  x ← x + LS2(FFN(Norm2(x)))
// Stochastic depth in train mode (rate p > 0, same in every block): per residual branch and per crop group of b
// images, a random subset of b_keep = max(⌊b(1−p)⌋, 1) images (randperm) gets the branch, scaled by b/b_keep; the
// others get no update. List forward: norms and linear layers on the concatenated tokens of all groups, attention per
// group with its own RoPE tables and its own drop-path subsets.
import { Module } from '../nn/module.js';
import { index, indexPut } from '../ops/index.js';
import { residualAdd } from '../ops/kernels.js';
import type { NormLayer, FfnLayer } from '../config/vit.js';
import { FFN_ALIGN } from '../config/vit.js';
import { type CreateOptions, type Generator, randperm } from '../tensor/creation.js';
import { hostToDevice } from '../tensor/device.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { SelfAttention } from './attention.js';
import { type FfnBase, GeGLUFFN, Mlp, SwiGLUFFN } from './ffn_layers.js';
import { LayerScale } from './layer_scale.js';
import { buildNorm, type Norm } from './norms.js';
import type { RopeTables } from './rope_position_encoding.js';
import { catKeepShapes, uncatWithShapes } from './utils.js';
import { TorchRangeError } from '../native/errors.js';

export interface BlockOptions extends CreateOptions {
  ffnRatio?: number;
  qkvBias?: boolean;
  projBias?: boolean;
  ffnBias?: boolean;
  /** Stochastic-depth rate p (student only). */
  dropPath?: number;
  /** LayerScale init; null/0 = no LayerScale. */
  initValues?: number | null;
  normLayer?: NormLayer;
  ffnLayer?: FfnLayer;
  maskKBias?: boolean;
  /** Source of the drop-path permutations (default: the global generator). */
  generator?: Generator;
}

/** `x` with `alpha · src` added to the rows `idx` (torch.index_add along dim 0). */
function indexAdd(x: Tensor, idx: Tensor, src: Tensor, alpha: number): Tensor {
  return scope(() => indexPut(x, [idx], index(x, [idx]).add(src.to(x.dtype), alpha)));
}

export class SelfAttentionBlock extends Module {
  readonly norm1: Norm;
  readonly attn: SelfAttention;
  readonly ls1: LayerScale | null;
  readonly norm2: Norm;
  readonly mlp: FfnBase;
  readonly ls2: LayerScale | null;
  readonly sampleDropRatio: number;
  generator: Generator | undefined;

  constructor(
    readonly dim: number,
    readonly numHeads: number,
    o: BlockOptions = {},
  ) {
    super();
    const co = { dtype: o.dtype, device: o.device };
    const normLayer = o.normLayer ?? 'layernorm';
    this.norm1 = this.registerModule('norm1', buildNorm(normLayer, dim, co));
    this.attn = this.registerModule(
      'attn',
      new SelfAttention(dim, numHeads, { ...co, qkvBias: o.qkvBias ?? false, projBias: o.projBias ?? true, maskKBias: o.maskKBias ?? false }),
    );
    this.ls1 = o.initValues ? this.registerModule('ls1', new LayerScale(dim, o.initValues, co)) : null;
    this.norm2 = this.registerModule('norm2', buildNorm(normLayer, dim, co));
    const hidden = Math.trunc(dim * (o.ffnRatio ?? 4));
    const ffnLayer = o.ffnLayer ?? 'mlp';
    const ffnOpts = { ...co, bias: o.ffnBias ?? true };
    this.mlp = this.registerModule(
      'mlp',
      ffnLayer === 'mlp'
        ? new Mlp(dim, hidden, ffnOpts)
        : ffnLayer === 'geglu'
          ? new GeGLUFFN(dim, hidden, ffnOpts)
          : new SwiGLUFFN(dim, hidden, { ...ffnOpts, alignTo: FFN_ALIGN[ffnLayer] }),
    );
    this.ls2 = o.initValues ? this.registerModule('ls2', new LayerScale(dim, o.initValues, co)) : null;
    this.sampleDropRatio = o.dropPath ?? 0;
    this.generator = o.generator;
  }

  forward(x: Tensor, rope: RopeTables | null = null): Tensor {
    return this.forwardList([x], [rope])[0]!;
  }

  /** The block on each crop group; see the header for what is shared between groups. */
  forwardList(xs: Tensor[], ropes: (RopeTables | null)[] = xs.map(() => null)): Tensor[] {
    if (xs.length !== ropes.length)
      throw new TorchRangeError(`SelfAttentionBlock.forwardList: ${xs.length} inputs but ${ropes.length} RoPE tables`, 'ERR_INVALID_ARG');
    const ls1 = (t: Tensor) => (this.ls1 ? this.ls1.forward(t) : t);
    const ls2 = (t: Tensor) => (this.ls2 ? this.ls2.forward(t) : t);
    return scope(() => {
      if (!(this.training && this.sampleDropRatio > 0)) {
        // x + ls(branch(x)) as one residualAdd(x, branch(x), γ) (ops/kernels.ts), γ null without LayerScale.
        return xs.map((x, i) => {
          const xAttn = residualAdd(x, this.attn.forward(this.norm1.forward(x), ropes[i]!), this.ls1?.gamma ?? null);
          return residualAdd(xAttn, this.mlp.forward(this.norm2.forward(xAttn)), this.ls2?.gamma ?? null);
        });
      }
      const bs = xs.map((x) => x.shape[0]!);
      const keep = bs.map((b) => Math.max(Math.trunc(b * (1 - this.sampleDropRatio)), 1));
      const scales = bs.map((b, i) => b / keep[i]!);
      // drawn on the CPU (where the Generator lives), moved without a host wait
      const subset = () => bs.map((b, i) => hostToDevice(randperm(b, { generator: this.generator }).narrow(0, 0, keep[i]!), xs[i]!.device));

      const idx1 = subset();
      const n1 = catKeepShapes(xs.map((x, i) => index(x, [idx1[i]!])));
      const norm1 = uncatWithShapes(this.norm1.forward(n1.flat), n1.shapes, n1.numTokens);
      const res1 = this.attn.forwardList(norm1, ropes);
      const xAttn = xs.map((x, i) => indexAdd(x, idx1[i]!, ls1(res1[i]!), scales[i]!));

      const idx2 = subset();
      const n2 = catKeepShapes(xAttn.map((x, i) => index(x, [idx2[i]!])));
      const norm2 = uncatWithShapes(this.norm2.forward(n2.flat), n2.shapes, n2.numTokens);
      const res2 = this.mlp.forwardList(norm2);
      return xAttn.map((x, i) => indexAdd(x, idx2[i]!, ls2(res2[i]!), scales[i]!));
    });
  }
}
