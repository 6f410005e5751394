// Multi-head self-attention with a fused qkv projection and RoPE on the patch tokens (dinov3/layers/attention.py).
// RECIPE §1.4: qkv Linear(D → 3D) reshaped [B, N, 3, h, d]; LinearKMaskedBias multiplies the qkv bias by the
// `bias_mask` buffer (1 on q and v, 0 on k); SDPA with scale 1/√d; proj Linear(D → D). RECIPE §1.3: RoPE on q and k
// of the last P tokens only, rot(x) = [−x₂, x₁] (half split), computed in the RoPE dtype and cast back.
import { ones_, zeros_ } from '../nn/init.js';
import { Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { linear } from '../ops/linalg.js';
import { scaledDotProductAttention } from '../ops/nn.js';
import { cat, chunk, narrow, unbind } from '../ops/shape.js';
import { type CreateOptions, empty } from '../tensor/creation.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { attentionQkv, fusable, fusedLinear, linearForward } from './fused.js';
import type { RopeTables } from './rope_position_encoding.js';
import { catKeepShapes, uncatWithShapes } from './utils.js';

/** `[x₁, x₂] → [−x₂, x₁]` on the last dim. */
export function ropeRotateHalf(x: Tensor): Tensor {
  return scope(() => {
    const [x1, x2] = chunk(x, 2, -1) as [Tensor, Tensor];
    return cat([x2.neg(), x1], -1);
  });
}

/** `x ⊙ cos + rot(x) ⊙ sin`. */
export function ropeApply(x: Tensor, sin: Tensor, cos: Tensor): Tensor {
  return scope(() => x.mul(cos).add(ropeRotateHalf(x).mul(sin)));
}

/** Linear whose bias is multiplied by a fixed `bias_mask` buffer (zero on the key third), so the key bias is 0. */
export class LinearKMaskedBias extends Linear {
  readonly biasMask: Tensor | null;
  constructor(inFeatures: number, outFeatures: number, o: CreateOptions & { bias?: boolean } = {}) {
    super(inFeatures, outFeatures, o);
    if (outFeatures % 3 !== 0) throw new RangeError(`LinearKMaskedBias: outFeatures (${outFeatures}) must be a multiple of 3`);
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
    if (!this.bias || !this.biasMask) return fusable(x) ? fusedLinear(x, this.weight, this.bias) : super.forward(x);
    const lin = fusable(x) ? fusedLinear : linear;
    return scope(() => lin(x, this.weight, this.bias!.mul(this.biasMask!.to(this.bias!.dtype))));
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

  constructor(readonly dim: number, readonly numHeads: number, o: AttentionOptions = {}) {
    super();
    this.headDim = dim / numHeads;
    const qkvOpts = { dtype: o.dtype, device: o.device, bias: o.qkvBias ?? false };
    this.qkv = this.registerModule('qkv', o.maskKBias ? new LinearKMaskedBias(dim, 3 * dim, qkvOpts) : new Linear(dim, 3 * dim, qkvOpts));
    this.proj = this.registerModule('proj', new Linear(dim, dim, { dtype: o.dtype, device: o.device, bias: o.projBias ?? true }));
  }

  /** RoPE on q and k of the last P tokens, in the dtype of the tables, cast back to q/k's dtype. */
  applyRope(q: Tensor, k: Tensor, rope: RopeTables): [Tensor, Tensor] {
    return scope(() => {
      const n = q.shape[2]!;
      const p = rope.sin.shape.at(-2)!;
      const prefix = n - p;
      if (prefix < 0) throw new RangeError(`SelfAttention: RoPE tables cover ${p} tokens but the sequence has only ${n}`);
      const rot = (t: Tensor) => {
        const tr = t.to(rope.sin.dtype);
        const out = cat([narrow(tr, 2, 0, prefix), ropeApply(narrow(tr, 2, prefix, p), rope.sin, rope.cos)], 2);
        return out.to(t.dtype);
      };
      return [rot(q), rot(k)];
    });
  }

  /**
   * Attention of already-projected `qkv` `[B, N, 3D]` → `[B, N, D]` (before `proj`). Without autograd, in float32
   * on the CPU (and float32 RoPE tables), one fused native kernel does the whole computation (same math).
   */
  computeAttention(qkv: Tensor, rope: RopeTables | null): Tensor {
    if (fusable(qkv) && (!rope || (rope.sin.dtype === 'float32' && rope.cos.dtype === 'float32' && rope.sin.device === 'cpu'))) {
      const p = rope ? rope.sin.shape.at(-2)! : 0;
      if (p > qkv.shape[1]!) throw new RangeError(`SelfAttention: RoPE tables cover ${p} tokens but the sequence has only ${qkv.shape[1]}`);
      return attentionQkv(qkv, this.numHeads, rope, 1 / Math.sqrt(this.headDim));
    }
    return scope(() => {
      const [b, n] = qkv.shape as [number, number, number];
      const [q0, k0, v0] = unbind(qkv.reshape([b, n, 3, this.numHeads, this.headDim]), 2).map((t) => t.transpose(1, 2)) as [
        Tensor,
        Tensor,
        Tensor,
      ]; // [B, h, N, d]
      const [q, k] = rope ? this.applyRope(q0, k0, rope) : [q0, k0];
      const x = scaledDotProductAttention(q, k, v0); // [B, h, N, d]
      return x.transpose(1, 2).reshape([b, n, this.dim]);
    });
  }

  forward(x: Tensor, rope: RopeTables | null = null): Tensor {
    return scope(() => linearForward(this.proj, this.computeAttention(linearForward(this.qkv, x), rope)));
  }

  /** One attention per group (own RoPE tables); the projections run on the concatenated tokens of all groups. */
  forwardList(xs: Tensor[], ropes: (RopeTables | null)[]): Tensor[] {
    if (xs.length !== ropes.length) throw new RangeError(`SelfAttention.forwardList: ${xs.length} inputs but ${ropes.length} RoPE tables`);
    return scope(() => {
      const a = catKeepShapes(xs);
      const qkvs = uncatWithShapes(linearForward(this.qkv, a.flat), a.shapes, a.numTokens);
      const outs = qkvs.map((qkv, i) => this.computeAttention(qkv, ropes[i]!));
      const o = catKeepShapes(outs);
      return uncatWithShapes(linearForward(this.proj, o.flat), o.shapes, o.numTokens);
    });
  }
}
