// Multi-head self-attention with a fused qkv projection and RoPE on the patch tokens (dinov3/layers/attention.py).
// dinov3/layers/attention.py::SelfAttention, ::LinearKMaskedBias: qkv Linear(D → 3D) reshaped [B, N, 3, h, d]; LinearKMaskedBias multiplies the qkv bias by the
// `bias_mask` buffer (1 on q and v, 0 on k); SDPA with scale 1/√d; proj Linear(D → D). SelfAttention.apply_rope: RoPE on q and k
// of the last P tokens only, rot(x) = [−x₂, x₁] (half split), computed in the RoPE dtype and cast back.
import { ones_, zeros_ } from '../nn/init.js';
import { Linear } from '../nn/layers.js';
import { expectTensor, Module } from '../nn/module.js';
import { attention } from '../ops/kernels.js';
import { linear } from '../ops/linalg.js';
import { cat, chunk, narrow } from '../ops/shape.js';
import { type CreateOptions, empty } from '../tensor/creation.js';
import { expectOptions, expectPositiveInt } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { RopeTables } from './rope_position_encoding.js';
import { catKeepShapes, uncatWithShapes } from './utils.js';
import { TorchRangeError } from '../native/errors.js';

/** `[x₁, x₂] → [−x₂, x₁]` on the last dim. */
export function ropeRotateHalf(x: Tensor): Tensor {
  return scope(() => {
    const [x1, x2] = chunk(x, 2, -1) as [Tensor, Tensor];
    return cat([x2.neg(), x1], -1);
  });
}

/** `x ⊙ cos + rot(x) ⊙ sin`. */
export function ropeApply(x: Tensor, sin: Tensor, cos: Tensor): Tensor {
  expectTensor(x, 'ropeApply', 'x');
  expectTensor(sin, 'ropeApply', 'sin');
  expectTensor(cos, 'ropeApply', 'cos');
  return scope(() => x.mul(cos).add(ropeRotateHalf(x).mul(sin)));
}

/** Linear whose bias is multiplied by a fixed `bias_mask` buffer (zero on the key third), so the key bias is 0. */
export class LinearKMaskedBias extends Linear {
  readonly biasMask: Tensor | null;
  constructor(inFeatures: number, outFeatures: number, o: CreateOptions & { bias?: boolean } = {}) {
    super(inFeatures, outFeatures, o);
    if (outFeatures % 3 !== 0) throw new TorchRangeError(`LinearKMaskedBias: outFeatures (${outFeatures}) must be a multiple of 3`, 'ERR_INVALID_ARG');
    // Set by resetBiasMask() (model init) or loaded from a checkpoint; the official code fills it with NaN first.
    this.biasMask = this.bias ? this.registerBuffer('bias_mask', empty([outFeatures], o)) : null;
    if (this.biasMask) this.resetBiasMask();
  }
  /** `[1…1, 0…0, 1…1]`: ones on the q and v thirds, zeros on the k third. */
  resetBiasMask(): void {
    if (!this.biasMask) return;
    const o = this.outFeatures;
    ones_(this.biasMask);
    const kThird = narrow(this.biasMask, 0, o / 3, o / 3);
    zeros_(kThird);
    kThird.dispose();
  }
  override forward(x: Tensor): Tensor {
    if (!this.bias || !this.biasMask) return linear(x, this.weight, null);
    return scope(() => linear(x, this.weight, this.bias!.mul(this.biasMask!.to(this.bias!.dtype))));
  }
}

export interface AttentionOptions extends CreateOptions {
  qkvBias?: boolean;
  projBias?: boolean;
  maskKBias?: boolean;
}

export class SelfAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly headDim: number;

  constructor(
    readonly dim: number,
    readonly numHeads: number,
    o: AttentionOptions = {},
  ) {
    super();
    expectPositiveInt('SelfAttention', 'dim', dim);
    expectPositiveInt('SelfAttention', 'numHeads', numHeads);
    o = expectOptions('SelfAttention', 'options', o) ?? {};
    this.headDim = dim / numHeads;
    const qkvOpts = { dtype: o.dtype, device: o.device, bias: o.qkvBias ?? false };
    this.qkv = this.registerModule('qkv', o.maskKBias ? new LinearKMaskedBias(dim, 3 * dim, qkvOpts) : new Linear(dim, 3 * dim, qkvOpts));
    this.proj = this.registerModule('proj', new Linear(dim, dim, { dtype: o.dtype, device: o.device, bias: o.projBias ?? true }));
  }

  /**
   * RoPE on q and k `[B, h, N, d]` of the last P tokens, in the dtype of the tables, cast back to q/k's dtype
   * (SelfAttention.apply_rope). `attention` (ops/kernels.ts) applies the same composition inside; this method is the
   * layer-level reference of it.
   */
  applyRope(q: Tensor, k: Tensor, rope: RopeTables): [Tensor, Tensor] {
    return scope(() => {
      const n = q.shape[2]!;
      const p = rope.sin.shape.at(-2)!;
      const prefix = n - p;
      if (prefix < 0) throw new TorchRangeError(`SelfAttention: RoPE tables cover ${p} tokens but the sequence has only ${n}`, 'ERR_INVALID_ARG');
      const rot = (t: Tensor) => {
        const tr = t.to(rope.sin.dtype);
        const out = cat([narrow(tr, 2, 0, prefix), ropeApply(narrow(tr, 2, prefix, p), rope.sin, rope.cos)], 2);
        return out.to(t.dtype);
      };
      return [rot(q), rot(k)];
    });
  }

  /** Attention of already-projected `qkv` `[B, N, 3D]` → `[B, N, D]` (before `proj`); the kernel is chosen by the op. */
  computeAttention(qkv: Tensor, rope: RopeTables | null): Tensor {
    return attention(qkv, this.numHeads, rope);
  }

  forward(x: Tensor, rope: RopeTables | null = null): Tensor {
    return scope(() => this.proj.forward(this.computeAttention(this.qkv.forward(x), rope)));
  }

  /** One attention per group (own RoPE tables); the projections run on the concatenated tokens of all groups. */
  forwardList(xs: Tensor[], ropes: (RopeTables | null)[]): Tensor[] {
    if (xs.length !== ropes.length)
      throw new TorchRangeError(`SelfAttention.forwardList: ${xs.length} inputs but ${ropes.length} RoPE tables`, 'ERR_INVALID_ARG');
    return scope(() => {
      const a = catKeepShapes(xs);
      const qkvs = uncatWithShapes(this.qkv.forward(a.flat), a.shapes, a.numTokens);
      const outs = qkvs.map((qkv, i) => this.computeAttention(qkv, ropes[i]!));
      const o = catKeepShapes(outs);
      return uncatWithShapes(this.proj.forward(o.flat), o.shapes, o.numTokens);
    });
  }
}
