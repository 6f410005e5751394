// The DINOv3 ViT backbone (dinov3/models/vision_transformer.py DinoVisionTransformer), read top-down.
// Official: dinov3/models/vision_transformer.py::DinoVisionTransformer (prepare_tokens_with_masks, forward_features_list,
// get_intermediate_layers, init_weights); the module names below are its state-dict keys.
import { parseVitConfig, ROPE_TENSOR_DTYPE, type VitConfig, type VitConfigInput } from '../config/vit.js';
import { SelfAttentionBlock } from '../layers/block.js';
import { LinearKMaskedBias } from '../layers/attention.js';
import { LayerScale } from '../layers/layer_scale.js';
import { buildNorm, LayerNorm, type Norm, RMSNorm } from '../layers/norms.js';
import { PatchEmbed } from '../layers/patch_embed.js';
import { drawInto } from '../layers/utils.js';
import { RopePositionEmbedding, type RopeTables } from '../layers/rope_position_encoding.js';
import { CheckpointedChain } from '../nn/checkpoint.js';
import { normal_, truncNormal_, zeros_ } from '../nn/init.js';
import { Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { TorchRangeError, TorchTypeError } from '../native/errors.js';
import { where } from '../ops/pointwise.js';
import { cat, narrow, select } from '../ops/shape.js';
import { type CreateOptions, empty, type Generator } from '../tensor/creation.js';
import { isGradEnabled } from '../tensor/grad_mode.js';
import { scope } from '../tensor/scope.js';
import { type DType, Tensor } from '../tensor/tensor.js';

/** Outputs of `forwardFeatures` for one crop group (official keys in comments). */
export interface BackboneFeatures {
  /** `x_norm_clstoken` [N, D] */
  clsToken: Tensor;
  /** `x_storage_tokens` [N, R, D] (normed) */
  storageTokens: Tensor;
  /** `x_norm_patchtokens` [N, P, D] */
  patchTokens: Tensor;
  /** `x_prenorm` [N, 1+R+P, D] */
  prenorm: Tensor;
  /** `masks`: the input mask [N, P] (not owned by the output) */
  masks: Tensor | null;
}

export interface IntermediateLayersOptions {
  /** The last n blocks (number) or 0-based block indices (array). Default 1. */
  n?: number | number[];
  /** Patches as `[N, D, H/p, W/p]` instead of `[N, P, D]`. */
  reshape?: boolean;
  returnClassToken?: boolean;
  returnExtraTokens?: boolean;
  /** Apply the final norm (default true). */
  norm?: boolean;
}

export interface BackboneOptions extends CreateOptions {
  /** Initialise as `init_weights` (default true; skipped on the meta device). */
  init?: boolean;
  /** Generator for init and for the train-mode draws (drop path, RoPE augmentation). Default: the global one. */
  generator?: Generator;
  /**
   * Casts the RoPE sin/cos tables to this dtype before they enter the blocks. The official trainer wraps every block
   * in FSDP2 (`dinov3/fsdp/ac_compile_parallelize.py::fsdp_transformer`), whose mixed-precision policy casts each
   * floating block input to the parameter dtype: the bf16 tables of a training-built backbone are therefore
   * rounded to bf16 and then rotate q/k in the parameter dtype (fp32 or bf16). Default: no cast (the hub models).
   */
  ropeTablesDtype?: DType;
}

class ModuleList<M extends Module> extends Module {
  constructor(readonly items: M[]) {
    super();
    items.forEach((m, i) => this.registerModule(String(i), m));
  }
}

export class DinoVisionTransformer extends Module {
  readonly config: VitConfig;
  readonly embedDim: number;
  readonly nBlocks: number;
  readonly numHeads: number;
  readonly patchSize: number;
  readonly nStorageTokens: number;
  readonly clsToken: Tensor;
  readonly storageTokens: Tensor | null;
  readonly maskToken: Tensor;
  readonly patchEmbed: PatchEmbed;
  readonly ropeEmbed: RopePositionEmbedding;
  readonly blocks: SelfAttentionBlock[];
  readonly norm: Norm;
  readonly clsNorm: Norm | null;
  readonly localClsNorm: Norm | null;
  #generator: Generator | undefined;
  readonly #ropeTablesDtype: DType | undefined;
  /**
   * Activation checkpointing of the blocks in training (`train.checkpointing`): a forward with autograd keeps only
   * each block's input, and `backwardCheckpointed()`, after the loss's backward, recomputes the blocks to finish it.
   */
  activationCheckpointing = false;
  /** Checkpointed forwards since the last `backwardCheckpointed()`, oldest first. */
  #checkpoints: CheckpointedChain[] = [];

  /**
   * Builds the backbone from an architecture config (official constructor keyword names, validated; missing keys
   * take the official defaults).
   * @example const vit = new DinoVisionTransformer(getPreset('vits16').config, { generator: new Generator(0) });
   * @throws ConfigError for an invalid config
   */
  constructor(config: VitConfigInput | VitConfig, o: BackboneOptions = {}) {
    super();
    const c = (this.config = parseVitConfig(config));
    const co: CreateOptions = { dtype: o.dtype, device: o.device };
    this.embedDim = c.embed_dim;
    this.nBlocks = c.depth;
    this.numHeads = c.num_heads;
    this.patchSize = c.patch_size;
    this.nStorageTokens = c.n_storage_tokens;
    this.#generator = o.generator;
    this.#ropeTablesDtype = o.ropeTablesDtype;

    // Root parameters first (torch's state-dict order: own parameters, then children).
    this.clsToken = this.registerParameter('cls_token', empty([1, 1, c.embed_dim], co));
    this.storageTokens = c.n_storage_tokens > 0 ? this.registerParameter('storage_tokens', empty([1, c.n_storage_tokens, c.embed_dim], co)) : null;
    this.maskToken = this.registerParameter('mask_token', empty([1, c.embed_dim], co));
    this.patchEmbed = this.registerModule('patch_embed', new PatchEmbed(c.img_size, c.patch_size, c.in_chans, c.embed_dim, co));
    this.ropeEmbed = this.registerModule(
      'rope_embed',
      new RopePositionEmbedding(c.embed_dim, {
        numHeads: c.num_heads,
        base: c.pos_embed_rope_base,
        minPeriod: c.pos_embed_rope_min_period,
        maxPeriod: c.pos_embed_rope_max_period,
        normalizeCoords: c.pos_embed_rope_normalize_coords,
        shiftCoords: c.pos_embed_rope_shift_coords,
        jitterCoords: c.pos_embed_rope_jitter_coords,
        rescaleCoords: c.pos_embed_rope_rescale_coords,
        dtype: ROPE_TENSOR_DTYPE[c.pos_embed_rope_dtype],
        device: o.device,
        generator: o.generator,
      }),
    );
    this.blocks = Array.from(
      { length: c.depth },
      () =>
        new SelfAttentionBlock(c.embed_dim, c.num_heads, {
          ...co,
          ffnRatio: c.ffn_ratio,
          qkvBias: c.qkv_bias,
          projBias: c.proj_bias,
          ffnBias: c.ffn_bias,
          dropPath: c.drop_path_rate,
          initValues: c.layerscale_init,
          normLayer: c.norm_layer,
          ffnLayer: c.ffn_layer,
          maskKBias: c.mask_k_bias,
          generator: o.generator,
        }),
    );
    this.registerModule('blocks', new ModuleList(this.blocks));
    this.norm = this.registerModule('norm', buildNorm(c.norm_layer, c.embed_dim, co));
    this.clsNorm = c.untie_cls_and_patch_norms ? this.registerModule('cls_norm', buildNorm(c.norm_layer, c.embed_dim, co)) : null;
    this.localClsNorm = c.untie_global_and_local_cls_norm ? this.registerModule('local_cls_norm', buildNorm(c.norm_layer, c.embed_dim, co)) : null;
    if (o.init ?? true) this.initWeights(o.generator);
  }

  /** Official `DinoVisionTransformer.init_weights` and `init_weights_vit`, drawing from `generator` (default: the one given at construction). */
  initWeights(generator = this.#generator): void {
    if (this.clsToken.device === 'meta') return;
    this.ropeEmbed.resetParameters();
    drawInto(this.clsToken, (t) => normal_(t, { std: 0.02, generator }));
    if (this.storageTokens) drawInto(this.storageTokens, (t) => normal_(t, { std: 0.02, generator }));
    zeros_(this.maskToken);
    // named_apply(init_weights_vit): children before their parent, in registration order.
    const visit = (m: Module) => {
      for (const [, child] of m.children()) visit(child);
      if (m instanceof Linear) {
        drawInto(m.weight, (t) => truncNormal_(t, { std: 0.02, generator }));
        if (m.bias) zeros_(m.bias);
        if (m instanceof LinearKMaskedBias) m.resetBiasMask();
      } else if (m instanceof LayerNorm || m instanceof RMSNorm || m instanceof LayerScale) m.resetParameters();
      else if (m instanceof PatchEmbed) m.resetParameters(generator);
    };
    visit(this);
  }

  /** Patch embedding, mask tokens and prefix tokens: `[N, 1+R+P, D]` and the patch grid (official `prepare_tokens_with_masks`). */
  prepareTokensWithMasks(x: Tensor, masks: Tensor | null = null): { tokens: Tensor; H: number; W: number } {
    return scope(() => {
      const wdtype = this.patchEmbed.proj.weight.dtype;
      const emb = this.patchEmbed.forward(x.dtype === wdtype ? x : x.to(wdtype)); // [B, H, W, D]
      const [b, h, w] = emb.shape as [number, number, number, number];
      let patches = emb.flatten(1, 2); // [B, P, D]
      let cls: Tensor;
      if (masks) {
        if (masks.dtype !== 'bool' || masks.ndim !== 2 || masks.shape[0] !== b || masks.shape[1] !== h * w)
          throw new TorchTypeError(
            `forwardFeatures: expected "masks" to be a bool Tensor [${b}, ${h * w}], received ${masks.dtype} Tensor [${masks.shape.join(', ')}]`,
            'ERR_INVALID_ARG',
          );
        patches = where(masks.unsqueeze(-1), this.maskToken.to(patches.dtype).unsqueeze(0), patches);
        cls = this.clsToken;
      } else {
        cls = this.clsToken.add(this.maskToken.mul(0)); // keeps mask_token in the graph (zero gradient)
      }
      const parts = [cls.expand([b, -1, -1])];
      if (this.storageTokens) parts.push(this.storageTokens.expand([b, -1, -1]));
      parts.push(patches);
      return { tokens: cat(parts, 1), H: h, W: w };
    });
  }

  /** The final norm of one group's tokens → (normed prefix tokens, normed patches), as in official `forward_features_list`. */
  #finalNorm(x: Tensor, groupIndex: number): { prefix: Tensor; patches: Tensor } {
    const r1 = this.nStorageTokens + 1;
    const n = x.shape[1]!;
    if (this.clsNorm || this.localClsNorm) {
      const prefixNorm = this.localClsNorm && this.training && groupIndex === 1 ? this.localClsNorm : (this.clsNorm ?? this.norm);
      return { prefix: prefixNorm.forward(narrow(x, 1, 0, r1)), patches: this.norm.forward(narrow(x, 1, r1, n - r1)) };
    }
    const xn = this.norm.forward(x);
    return { prefix: narrow(xn, 1, 0, r1), patches: narrow(xn, 1, r1, n - r1) };
  }

  /**
   * Official `forward_features_list`: every crop group runs through the blocks together (RoPE tables recomputed
   * per block and per group; drop path per group). In training the prefix tokens of the second group (local crops)
   * use `local_cls_norm` when it exists.
   */
  forwardFeaturesList(xs: Tensor[], masksList: (Tensor | null)[] = xs.map(() => null)): BackboneFeatures[] {
    if (!Array.isArray(xs)) throw new TorchTypeError('forwardFeaturesList: expected "xs" to be an array of Tensors', 'ERR_INVALID_ARG');
    if (!Array.isArray(masksList))
      throw new TorchTypeError('forwardFeaturesList: expected "masksList" to be an array of bool Tensors or nulls', 'ERR_INVALID_ARG');
    if (xs.length !== masksList.length) throw new TorchRangeError(`forwardFeaturesList: ${xs.length} inputs but ${masksList.length} masks`, 'ERR_INVALID_ARG');
    for (const [i, x] of xs.entries()) {
      checkImageBatch(x, 'forwardFeatures', xs.length === 1 ? '"x"' : `input ${i}`);
      const m = masksList[i];
      if (m !== null && m !== undefined && !(m instanceof Tensor))
        throw new TorchTypeError(`forwardFeatures: expected "masks" ${i} to be a bool Tensor or null, received ${describeValue(m)}`, 'ERR_INVALID_ARG');
    }
    return scope(() => {
      const prepared = xs.map((x, i) => this.prepareTokensWithMasks(x, masksList[i] ?? null));
      let tokens = prepared.map((p) => p.tokens);
      // In eval mode the tables are deterministic: compute them once per group instead of once per block.
      const evalRopes = this.ropeEmbed.training ? null : prepared.map((p) => this.#rope(p));
      const chain = this.activationCheckpointing && this.training && isGradEnabled() ? new CheckpointedChain(tokens) : null;
      if (chain) this.#checkpoints.push(chain);
      for (const blk of this.blocks) {
        const ropes: RopeTables[] = evalRopes ?? prepared.map((p) => this.#rope(p));
        if (!chain) {
          tokens = blk.forwardList(tokens, ropes);
          continue;
        }
        // The tables are drawn here, once (not redrawn by the recomputation): the segment holds them.
        const hold = ropes.flatMap((r) => [r.sin, r.cos]);
        const unpack = (h: Tensor[]) => ropes.map((_, i) => ({ sin: h[2 * i]!, cos: h[2 * i + 1]! }));
        chain.segment((ts, held) => blk.forwardList(ts, unpack(held)), { generator: blk.generator, hold });
      }
      if (chain) tokens = chain.output();
      return tokens.map((x, i) => {
        const { prefix, patches } = this.#finalNorm(x, i);
        return {
          clsToken: select(prefix, 1, 0),
          storageTokens: narrow(prefix, 1, 1, this.nStorageTokens),
          patchTokens: patches,
          prenorm: x,
          masks: masksList[i] ?? null,
        };
      });
    });
  }

  /**
   * Finishes the backward of the checkpointed forwards since the last call (see `activationCheckpointing`): call it
   * after the backward of a loss computed from their outputs, under the same autocast as the forwards. Each forward
   * that the backward reached has its blocks recomputed one at a time, last first (the latest forward first), and
   * the gradients reach every parameter as without checkpointing; a forward it did not reach is freed.
   */
  backwardCheckpointed(): void {
    const pending = this.#checkpoints.reverse();
    this.#checkpoints = [];
    try {
      for (const c of pending) if (c.reached) c.backward();
    } finally {
      for (const c of pending) c.dispose(); // the ones not reached, and all of them if a backward throws
    }
  }

  override dispose(): void {
    for (const c of this.#checkpoints) c.dispose();
    this.#checkpoints = [];
    super.dispose();
  }

  /** The RoPE tables of an H×W grid, cast to `ropeTablesDtype` when set. */
  #rope(grid: { H: number; W: number }): RopeTables {
    const t = this.ropeEmbed.forward(grid);
    const d = this.#ropeTablesDtype;
    return d === undefined || t.sin.dtype === d ? t : { sin: t.sin.to(d), cos: t.cos.to(d) };
  }

  /** Official `forward_features` on one batch: normed CLS, storage and patch tokens, pre-norm tokens. */
  forwardFeatures(x: Tensor, masks: Tensor | null = null): BackboneFeatures {
    return this.forwardFeaturesList([x], [masks])[0]!;
  }

  /** The normed CLS token `[N, D]` (official `forward` without `is_training`, in either mode). */
  forward(x: Tensor): Tensor {
    return scope(() => this.forwardFeatures(x).clsToken);
  }

  /**
   * Official `get_intermediate_layers`: outputs of the last `n` blocks (or of the listed blocks), each
   * optionally normed, split into patches (optionally `[N, D, H/p, W/p]`), CLS and storage tokens. Call it on an
   * eval-mode model. Each layer gives `patches`, `[patches, cls]`, `[patches, storage]` or `[patches, cls, storage]`.
   */
  getIntermediateLayers(x: Tensor, o?: IntermediateLayersOptions & { returnClassToken?: false; returnExtraTokens?: false }): Tensor[];
  getIntermediateLayers(x: Tensor, o: IntermediateLayersOptions & { returnClassToken: true; returnExtraTokens?: false }): [Tensor, Tensor][];
  getIntermediateLayers(x: Tensor, o: IntermediateLayersOptions & { returnClassToken?: false; returnExtraTokens: true }): [Tensor, Tensor][];
  getIntermediateLayers(x: Tensor, o: IntermediateLayersOptions & { returnClassToken: true; returnExtraTokens: true }): [Tensor, Tensor, Tensor][];
  getIntermediateLayers(x: Tensor, o: IntermediateLayersOptions = {}): (Tensor | Tensor[])[] {
    const n = o.n ?? 1;
    const take = typeof n === 'number' ? Array.from({ length: n }, (_, i) => this.nBlocks - n + i) : n;
    for (const i of take)
      if (!Number.isInteger(i) || i < 0 || i >= this.nBlocks)
        throw new TorchRangeError(`getIntermediateLayers: block index ${i} is out of range for a ${this.nBlocks}-block model`, 'ERR_INVALID_ARG');
    checkImageBatch(x, 'getIntermediateLayers', '"x"');
    return scope(() => {
      const { tokens, H, W } = this.prepareTokensWithMasks(x);
      const r1 = this.nStorageTokens + 1;
      const outputs: Tensor[] = [];
      let h = tokens;
      // In eval mode the tables are deterministic: computed once instead of once per block.
      const evalRope = this.ropeEmbed.training ? null : this.#rope({ H, W });
      this.blocks.forEach((blk, i) => {
        h = blk.forward(h, evalRope ?? this.#rope({ H, W }));
        if (take.includes(i)) outputs.push(h);
      });
      return outputs.map((out) => {
        let normed = out;
        if (o.norm ?? true) {
          if (this.clsNorm) {
            const t = out.shape[1]!;
            normed = cat([this.clsNorm.forward(narrow(out, 1, 0, r1)), this.norm.forward(narrow(out, 1, r1, t - r1))], 1);
          } else normed = this.norm.forward(out);
        }
        const cls = select(normed, 1, 0);
        const extra = narrow(normed, 1, 1, this.nStorageTokens);
        let patches = narrow(normed, 1, r1, normed.shape[1]! - r1);
        if (o.reshape) patches = patches.reshape([normed.shape[0]!, H, W, -1]).permute([0, 3, 1, 2]).contiguous();
        if (o.returnClassToken && o.returnExtraTokens) return [patches, cls, extra];
        if (o.returnClassToken) return [patches, cls];
        if (o.returnExtraTokens) return [patches, extra];
        return patches;
      });
    });
  }
}

/** Throws unless `x` is a 4-D Tensor (an image batch). */
function checkImageBatch(x: unknown, op: string, what: string): asserts x is Tensor {
  if (!(x instanceof Tensor) || x.ndim !== 4)
    throw new TorchTypeError(`${op}: expected ${what} to be an image batch Tensor [B, C, H, W], received ${describeValue(x)}`, 'ERR_INVALID_ARG');
}

/** A short description of a value for error messages: a Tensor's dtype and shape, or a JS value's kind. */
function describeValue(v: unknown): string {
  if (v instanceof Tensor) return `${v.dtype} Tensor [${v.shape.join(', ')}]`;
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}
