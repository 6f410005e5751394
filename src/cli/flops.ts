// Counted FLOPs of the benchmarks (pure functions of the ViT config and the crop sizes). Convention: matrix products
// only — the linear layers, the patch-embedding convolution, the two attention products q·kᵀ and attn·v, and the
// projection heads — at 2 FLOPs per multiply-add; norms, activations, softmax and losses are not counted (they are
// a few percent and not what a matmul peak measures). A backward pass costs twice its forward (input and weight
// gradients), except the patch embedding, whose input needs no gradient (once).
import { maskTargets } from '../data/collate.js';
import { ffnHiddenDim, type VitConfig } from '../config/vit.js';
import { TorchRangeError } from '../native/errors.js';

/** FLOPs of one image through the backbone (forward), by part. */
export interface VitForwardFlops {
  /** Tokens per image: patches + CLS + storage tokens. */
  tokens: number;
  patches: number;
  patchEmbed: number;
  /** All blocks: qkv, proj and FFN linears. */
  linears: number;
  /** All blocks: q·kᵀ and attn·v. */
  attention: number;
  total: number;
}

/** Forward FLOPs of one `height`×`width` image (multiples of the patch size) through `cfg`'s backbone. */
export function vitForwardFlops(cfg: VitConfig, height: number, width = height): VitForwardFlops {
  const p = cfg.patch_size;
  if (height % p !== 0 || width % p !== 0)
    throw new TorchRangeError(`vitForwardFlops: ${height}×${width} is not a multiple of the patch size ${p}`, 'ERR_INVALID_ARG');
  const D = cfg.embed_dim;
  const patches = (height / p) * (width / p);
  const N = patches + 1 + cfg.n_storage_tokens;
  const F = ffnHiddenDim(D, cfg.ffn_ratio, cfg.ffn_layer);
  const ffnMacs = cfg.ffn_layer === 'mlp' ? 2 * D * F : 3 * D * F; // fc1 + fc2, or w1 + w2 + w3
  const patchEmbed = 2 * patches * cfg.in_chans * p * p * D;
  const linears = cfg.depth * 2 * N * (3 * D * D + D * D + ffnMacs);
  const attention = cfg.depth * 2 * 2 * N * N * D;
  return { tokens: N, patches, patchEmbed, linears, attention, total: patchEmbed + linears + attention };
}

/** The DINO / iBOT projection head (dinov3/layers/dino_head.py::DINOHead): MLP in → hidden^(nlayers−1) → bottleneck, prototypes. */
export interface HeadDims {
  hiddenDim: number;
  bottleneckDim: number;
  prototypes: number;
  nlayers: number;
}

/** The official heads: 3 layers, 2048 hidden, 256 bottleneck, 65,536 prototypes (ssl_default_config.yaml dino/ibot). */
export const OFFICIAL_HEAD: HeadDims = { hiddenDim: 2048, bottleneckDim: 256, prototypes: 65536, nlayers: 3 };

/** Forward FLOPs of one row through a head with input width `inDim`. */
export function headFlops(inDim: number, h: HeadDims): number {
  const dims = h.nlayers === 1 ? [inDim, h.bottleneckDim] : [inDim, ...Array<number>(h.nlayers - 1).fill(h.hiddenDim), h.bottleneckDim];
  let macs = 0;
  for (let i = 0; i + 1 < dims.length; i++) macs += dims[i]! * dims[i + 1]!;
  return 2 * (macs + h.bottleneckDim * h.prototypes);
}

export interface CropGroup {
  /** Crops of this size per image. */
  count: number;
  /** Side in pixels (square crops). */
  size: number;
}

/** Parses `2x224,8x96` into crop groups (the first is the global crops, the rest local). */
export function parseCrops(spec: string): CropGroup[] {
  const groups = spec.split(',').map((s) => {
    const m = /^\s*(\d+)\s*x\s*(\d+)\s*$/.exec(s);
    if (!m) throw new TorchRangeError(`crops: expected <count>x<size>[,<count>x<size>] such as 2x224,8x96, received "${spec}"`, 'ERR_INVALID_ARG');
    return { count: Number(m[1]), size: Number(m[2]) };
  });
  if (groups.length > 2 || groups.some((g) => g.count < 1 || g.size < 1))
    throw new TorchRangeError(
      `crops: expected one global group and at most one local group with positive counts and sizes, received "${spec}"`,
      'ERR_INVALID_ARG',
    );
  return groups;
}

/**
 * Masked patches of a batch of `globalImages` global crops with `patches` patches each, as the official collate
 * draws them (dinov3/data/collate.py::collate_data_and_cast): int(B·p) crops get masks with ratios
 * linspace(min, max, int(B·p) + 1)[i + 1], i.e. int(P·ratio) patches each; the rest none.
 */
export function maskedPatchCounts(globalImages: number, patches: number, probability = 0.5, ratioMinMax: [number, number] = [0.1, 0.5]): number[] {
  const nMasked = Math.trunc(globalImages * probability);
  const targets = maskTargets(patches, nMasked, ratioMinMax);
  return Array.from({ length: globalImages }, (_, i) => (i < nMasked ? targets[i]! : 0));
}

/** FLOPs of one SSL training step (dinov3/train/ssl_meta_arch.py: student on all crops, teacher on the global ones). */
export interface TrainStepFlops {
  studentForward: number;
  studentBackward: number;
  teacherForward: number;
  total: number;
  /** total / images in the batch */
  perImage: number;
  maskedPatches: number;
}

export interface TrainStepSpec {
  /** Images per step (each gives every crop). */
  batch: number;
  /** Global crops first, then local crops. */
  crops: CropGroup[];
  dinoHead: HeadDims;
  ibotHead: HeadDims;
  /** Masked patches over all global crops of the batch (default: the official collate's count). */
  maskedPatches?: number;
  /** Count the teacher's forward (true). */
  teacher?: boolean;
}

/**
 * FLOPs of a training step: the student backbone on every crop, the DINO head on every crop's CLS token and the
 * iBOT head on the masked patch tokens, forward and backward; the teacher backbone on the global crops with both
 * heads (CLS tokens of the global crops, the same masked patch positions), forward only.
 */
export function trainStepFlops(cfg: VitConfig, s: TrainStepSpec): TrainStepFlops {
  const [global, ...locals] = s.crops;
  if (!global) throw new TorchRangeError('trainStepFlops: expected at least the global crops', 'ERR_INVALID_ARG');
  const D = cfg.embed_dim;
  const g = vitForwardFlops(cfg, global.size);
  const globalImages = s.batch * global.count;
  const masked = s.maskedPatches ?? maskedPatchCounts(globalImages, g.patches).reduce((a, b) => a + b, 0);
  let backboneAll = globalImages * g.total;
  let embedAll = globalImages * g.patchEmbed;
  let cropImages = globalImages;
  for (const l of locals) {
    const f = vitForwardFlops(cfg, l.size);
    backboneAll += s.batch * l.count * f.total;
    embedAll += s.batch * l.count * f.patchEmbed;
    cropImages += s.batch * l.count;
  }
  const dino = headFlops(D, s.dinoHead);
  const ibot = headFlops(D, s.ibotHead);
  const studentForward = backboneAll + cropImages * dino + masked * ibot;
  const studentBackward = 2 * studentForward - embedAll;
  const teacherForward = s.teacher === false ? 0 : globalImages * g.total + globalImages * dino + masked * ibot;
  const total = studentForward + studentBackward + teacherForward;
  return { studentForward, studentBackward, teacherForward, total, perImage: total / s.batch, maskedPatches: masked };
}
