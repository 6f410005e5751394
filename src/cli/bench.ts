// `dinov3 bench features|train`: throughput, counted FLOPs (flops.ts), achieved FLOP/s against a matmul peak measured
// on the same device in the same process, and peak memory, as one JSON object. Weights and inputs are synthetic
// (speed does not depend on their values). The training step is a function handed in (`TrainStepFactory`), by default
// `sslTrainStep`: the real SSL iteration of train/ on batches shaped like the official collate (2 global crops with
// iBOT masks + n local crops).
import { loadavg } from 'node:os';

import { BACKBONE_PRESETS, getPreset } from '../config/presets.js';
import { parseVitConfig, type VitConfig } from '../config/vit.js';
import { type CollatedBatch, DevicePrefetcher, disposeBatch, type StagedBatch, withBatchOn } from '../data/batch.js';
import { DinoVisionTransformer } from '../models/vision_transformer.js';
import { addonInfo, native } from '../native/binding.js';
import { ConfigError } from '../native/errors.js';
import { deviceError } from './device.js';
import { kernelChoice } from '../ops/kernels.js';
import { linear, matmul } from '../ops/linalg.js';
import { Generator, randn, zeros } from '../tensor/creation.js';
import { cuda, getNumThreads, hostSyncs, setNumThreads } from '../tensor/device.js';
import { autocast, noGrad } from '../tensor/grad_mode.js';
import { keep, memory, scope } from '../tensor/scope.js';
import type { Device, Tensor } from '../tensor/tensor.js';
import { defaultSSLConfig, mergeConfig, parseSSLConfig } from '../train/config.js';
import { SSLMetaArch } from '../train/ssl_meta_arch.js';
import { SyntheticBatches } from '../train/synthetic.js';
import { buildOptimizer, trainIteration } from '../train/train.js';
import { type CropGroup, type HeadDims, OFFICIAL_HEAD, parseCrops, trainStepFlops, vitForwardFlops } from './flops.js';

/** A tiny ViT (and heads) for dry runs and tests: the bench's code paths in well under a second on a CPU. */
export const TINY_PRESET = {
  config: parseVitConfig({
    embed_dim: 32,
    depth: 2,
    num_heads: 2,
    ffn_ratio: 2,
    patch_size: 16,
    n_storage_tokens: 1,
    layerscale_init: 1e-5,
    qkv_bias: true,
    mask_k_bias: true,
    pos_embed_rope_dtype: 'fp32',
  }),
  head: { hiddenDim: 64, bottleneckDim: 32, prototypes: 128, nlayers: 3 } as HeadDims,
};

/** The ViT config of a bench preset: `tiny` or a released backbone (`vits16`, `vitl16`, …). */
export function benchPreset(name: string): { name: string; config: VitConfig; head: HeadDims } {
  if (name === 'tiny') return { name, ...TINY_PRESET };
  return { name, config: getPreset(name).config, head: OFFICIAL_HEAD };
}
export const BENCH_PRESET_NAMES = ['tiny', ...Object.keys(BACKBONE_PRESETS)];

export type BenchDType = 'float32' | 'bfloat16';

export interface BenchCommon {
  preset: string;
  batch: number;
  steps: number;
  warmup: number;
  device: Device;
  /** CPU intra-op threads (default: libtorch's). */
  threads?: number;
  /** n of the n×n matmul that measures the peak (0: no peak, MFU null). */
  peakN?: number;
}

export interface BenchFeaturesOptions extends BenchCommon {
  resolution: number;
  /** Weights and input dtype. */
  dtype: BenchDType;
  /** bfloat16 autocast over float32 weights (how the official training forward runs). */
  autocast?: boolean;
  /** CUDA only: capture the forward once in a CUDA graph and time its replays (cuda.Graph). */
  cudaGraph?: boolean;
}

export interface BenchTrainOptions extends BenchCommon {
  /** Global crops first, then local: `2x224,8x96`. */
  crops: string;
  /** bfloat16 autocast over float32 master weights (default on CUDA). */
  autocast?: boolean;
  /** Stochastic depth of the student (0). */
  dropPath?: number;
  /**
   * Also report where the step's time goes (`phases`: seconds per timed step of each phase of trainIteration). On CUDA
   * the phases are launch times unless something waits: use it on the CPU, or read it as a launch profile.
   */
  phases?: boolean;
  /** Head sizes (default: the official heads; the tiny preset's for `tiny`). */
  head?: Partial<HeadDims>;
  /**
   * Feed each step a host batch (two alternate), as a data loader does, instead of one batch kept on the device:
   * `prefetch` stages the next batch's copy on a copy stream during the step (Trainer.fit's DevicePrefetcher), `inline`
   * queues each batch's copy on the step's stream at its start (Trainer.step given a host batch).
   */
  hostBatches?: 'prefetch' | 'inline';
  /** Activation checkpointing of the student's blocks (`train.checkpointing`): less memory, one more block forward. */
  activationCheckpointing?: boolean;
}

function checkDevice(device: Device): void {
  const e = deviceError('bench', device, { cudaAvailable: cuda.isAvailable(), ...addonInfo });
  if (e) throw e;
}

const isCuda = (d: Device) => d.startsWith('cuda');
const sync = (d: Device) => {
  if (isCuda(d)) cuda.synchronize();
};

/** Seconds per call of `fn` over `steps` calls after `warmup` (each call's tensors freed by a scope; CUDA synchronised at both ends). */
function timeSteps(device: Device, steps: number, warmup: number, fn: () => void): { sPerIter: number; minS: number } {
  for (let i = 0; i < warmup; i++) scope(fn);
  sync(device);
  const per: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    const ti = performance.now();
    scope(fn);
    if (!isCuda(device)) per.push((performance.now() - ti) / 1000);
  }
  sync(device);
  const sPerIter = (performance.now() - t0) / 1000 / steps;
  return { sPerIter, minS: per.length ? Math.min(...per) : sPerIter };
}

const peakCache = new Map<string, { flopsPerSec: number; dtype: BenchDType; n: number; sPerCall: number }>();

/**
 * The device's matmul peak as this addon reaches it: an n×n·n×n product (bfloat16 `matmul` on CUDA; on the CPU
 * float32 `linear` without autograd, the SGEMM the model's layers run), best of a few timed rounds.
 */
export function measureMatmulPeak(device: Device, dtype: BenchDType, n: number): { flopsPerSec: number; dtype: BenchDType; n: number; sPerCall: number } {
  const key = `${device}/${dtype}/${n}`;
  const hit = peakCache.get(key);
  if (hit) return hit;
  const g = new Generator(0);
  const [a, b] = scope(() => [randn([n, n], { generator: g }).to(device).to(dtype), randn([n, n], { generator: g }).to(device).to(dtype)]) as [Tensor, Tensor];
  const call = isCuda(device) ? () => void matmul(a, b) : () => void noGrad(() => linear(a, b));
  const reps = isCuda(device) ? 20 : Math.max(2, Math.round(2e9 / (2 * n ** 3)));
  let best = Infinity;
  for (let r = 0; r < 4; r++) best = Math.min(best, timeSteps(device, reps, r === 0 ? 1 : 0, call).sPerIter);
  a.dispose();
  b.dispose();
  const out = { flopsPerSec: (2 * n ** 3) / best, dtype, n, sPerCall: best };
  peakCache.set(key, out);
  return out;
}

/** Peak memory: the CUDA allocator's peak since the last reset, or the process's peak resident set on the CPU. */
function peakMemory(device: Device): { bytes: number; kind: 'cuda-allocated' | 'cpu-max-rss' } {
  if (isCuda(device)) return { bytes: native.cudaPeakMemory(deviceIndex(device)), kind: 'cuda-allocated' };
  return { bytes: process.resourceUsage().maxRSS * 1024, kind: 'cpu-max-rss' };
}
const deviceIndex = (d: Device) => (d.includes(':') ? Number(d.split(':')[1]) : 0);

function environment(device: Device) {
  return {
    libtorch: addonInfo.torchVersion,
    cudaCompiled: addonInfo.cudaCompiled,
    device,
    threads: getNumThreads(),
    loadavg: loadavg().map((v) => +v.toFixed(2)),
  };
}

function rate(flops: number, sPerIter: number, peak: { flopsPerSec: number } | null) {
  const flopsPerSec = flops / sPerIter;
  return { flopsPerSec: +flopsPerSec.toPrecision(4), mfu: peak ? +(flopsPerSec / peak.flopsPerSec).toPrecision(4) : null };
}

function setup(o: BenchCommon) {
  checkDevice(o.device);
  if (o.threads) setNumThreads(o.threads);
  if (isCuda(o.device)) native.cudaPeakMemory(deviceIndex(o.device), true);
}

/** `dinov3 bench features`: forward_features (no autograd) of a batch at one resolution. */
export function benchFeatures(o: BenchFeaturesOptions): Record<string, unknown> {
  if (o.cudaGraph && !isCuda(o.device)) throw new ConfigError('bench features: --cuda-graph needs --device cuda');
  setup(o);
  const p = benchPreset(o.preset);
  const before = memory().liveTensors;
  const model = new DinoVisionTransformer(p.config, { generator: new Generator(0) }).eval();
  model.to_({ device: o.device, dtype: o.autocast ? 'float32' : o.dtype });
  const x = scope(() =>
    randn([o.batch, 3, o.resolution, o.resolution], { generator: new Generator(1) })
      .to(o.device)
      .to(o.autocast ? 'float32' : o.dtype),
  );
  const features = () =>
    noGrad(() => {
      const run = () => model.forwardFeatures(x).patchTokens;
      return o.autocast ? autocast(run, { device: isCuda(o.device) ? 'cuda' : 'cpu' }) : run();
    });
  // With --cuda-graph the forward is captured once (after warm-up runs on the capture stream) and each timed call is a
  // replay over the same static input; without it, each call runs the forward eagerly (on the CPU, read on the host as
  // a user would).
  const graph = o.cudaGraph ? new cuda.Graph() : null;
  const captured = graph ? keep(graph.capture(features, { warmup: Math.max(1, o.warmup) })) : null;
  const forward = graph
    ? () => graph.replay()
    : () => {
        const out = features();
        if (!isCuda(o.device)) out.data();
      };
  const kernels = noGrad(() => ({
    linear: kernelChoice('linear', x),
    attention: kernelChoice('attention', x),
    residualAdd: kernelChoice('residualAdd', x),
  }));
  const t = timeSteps(o.device, o.steps, o.warmup, forward);
  const mem = peakMemory(o.device);
  captured?.dispose();
  graph?.dispose();
  x.dispose();
  model.dispose();
  const computeDtype: BenchDType = o.autocast ? 'bfloat16' : o.dtype;
  const peak = o.peakN === 0 ? null : measureMatmulPeak(o.device, computeDtype, o.peakN ?? (isCuda(o.device) ? 8192 : 1024));
  const perImage = vitForwardFlops(p.config, o.resolution).total;
  return {
    bench: 'features',
    preset: p.name,
    ...environment(o.device),
    dtype: o.dtype,
    autocast: o.autocast ?? false,
    cudaGraph: o.cudaGraph ?? false,
    batch: o.batch,
    resolution: o.resolution,
    steps: o.steps,
    warmup: o.warmup,
    sPerIter: +t.sPerIter.toPrecision(4),
    minSPerIter: +t.minS.toPrecision(4),
    imgPerSec: +(o.batch / t.sPerIter).toPrecision(4),
    flops: { perImage, perIter: perImage * o.batch },
    ...rate(perImage * o.batch, t.sPerIter, peak),
    peak: peak && { ...peak, flopsPerSec: +peak.flopsPerSec.toPrecision(4), sPerCall: +peak.sPerCall.toPrecision(4) },
    peakMemoryBytes: mem.bytes,
    memoryKind: mem.kind,
    kernels,
    leakedTensors: memory().liveTensors - before,
    date: new Date().toISOString(),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Training step

/** What a training step is given: the architecture, the heads, the device and the batch layout. */
export interface TrainStepContext {
  config: VitConfig;
  dinoHead: HeadDims;
  ibotHead: HeadDims;
  device: Device;
  batch: number;
  crops: CropGroup[];
  /** bfloat16 autocast over float32 master weights. */
  autocast: boolean;
  dropPath: number;
  /** Activation checkpointing of the student's blocks (`train.checkpointing`). */
  checkpointing?: boolean;
  /** When given, the step adds each phase's milliseconds to it (trainIteration's `timings`). */
  timings?: Record<string, number>;
}

/** One training step per `run(batch)` (forward, backward, optimizer, EMA); the bench times it. */
export interface TrainStep {
  /** What runs, for the JSON. */
  readonly name: string;
  run(batch: CollatedBatch): void;
  dispose(): void;
}

export type TrainStepFactory = (ctx: TrainStepContext) => TrainStep;

/**
 * A synthetic batch with the official collate's layout (dinov3/data/collate.py::collate_data_and_cast): global and
 * local crops crop-major, iBOT masks on int(2B·0.5) global crops with int(P·linspace(0.1, 0.5)[i+1]) random patches
 * each, the flat masked indices, their weights 1/(masked patches of the crop) and M (train/synthetic.ts).
 */
export function syntheticBatch(o: { batch: number; crops: CropGroup[]; patchSize: number; device: Device; seed?: number }): CollatedBatch {
  const [global, local] = o.crops as [CropGroup, CropGroup | undefined];
  if (global.count !== 2) throw new ConfigError(`bench train: the SSL step takes 2 global crops, got ${global.count}`);
  return new SyntheticBatches({
    batchSize: o.batch,
    globalSize: global.size,
    localSize: local?.size ?? o.patchSize,
    nLocal: local?.count ?? 0,
    patchSize: o.patchSize,
    seed: o.seed,
    device: o.device,
  }).batch(0);
}

/**
 * The real SSL training iteration (train/train.ts `trainIteration`: SSLMetaArch forward and backward with DINO, iBOT
 * and KoLeo losses and Sinkhorn-Knopp targets, per-submodule clipping, AdamW with the official parameter groups, the
 * teacher EMA) for the bench's architecture, heads and crops; constant lr/wd/momentum/temperature.
 */
export const sslTrainStep: TrainStepFactory = (ctx) => {
  const c = ctx.config;
  const [g, l] = ctx.crops as [CropGroup, CropGroup | undefined];
  if (!l || l.count < 1) throw new ConfigError('bench train: the SSL step needs local crops (e.g. --crops 2x224,8x96)');
  const head = (h: HeadDims) => ({
    head_n_prototypes: h.prototypes,
    head_hidden_dim: h.hiddenDim,
    head_bottleneck_dim: h.bottleneckDim,
    head_nlayers: h.nlayers,
  });
  const cfg = parseSSLConfig(
    mergeConfig(defaultSSLConfig(), {
      MODEL: { DEVICE: ctx.device },
      student: {
        arch: 'vit_custom',
        embed_dim: c.embed_dim,
        depth: c.depth,
        num_heads: c.num_heads,
        ffn_ratio: c.ffn_ratio,
        patch_size: c.patch_size,
        n_storage_tokens: c.n_storage_tokens,
        layerscale: c.layerscale_init,
        mask_k_bias: c.mask_k_bias,
        norm_layer: c.norm_layer,
        ffn_layer: c.ffn_layer,
        qkv_bias: c.qkv_bias,
        proj_bias: c.proj_bias,
        ffn_bias: c.ffn_bias,
        untie_cls_and_patch_norms: c.untie_cls_and_patch_norms,
        untie_global_and_local_cls_norm: c.untie_global_and_local_cls_norm,
        drop_path_rate: ctx.dropPath,
      },
      dino: head(ctx.dinoHead),
      ibot: head(ctx.ibotHead),
      crops: { global_crops_size: g.size, local_crops_size: l.size, local_crops_number: l.count },
      train: { batch_size_per_gpu: ctx.batch, checkpointing: ctx.checkpointing ?? false },
      compute_precision: { param_dtype: ctx.autocast ? 'bf16' : 'fp32' },
    }),
  );
  const model = new SSLMetaArch(cfg, { device: ctx.device, generator: new Generator(0) });
  const optimizer = buildOptimizer(model, cfg.optim);
  let iteration = 0;
  return {
    name: 'SSL iteration (src/train/train.ts trainIteration): SSLMetaArch fwd+bwd (DINO, iBOT, KoLeo, Sinkhorn-Knopp), clipping, AdamW groups, EMA',
    run(batch) {
      trainIteration(model, optimizer, batch, {
        iteration: iteration++,
        values: { lr: 1e-4, wd: 0.04, momentum: 0.996, teacherTemp: 0.07, lastLayerLr: 1e-4 },
        clipGrad: cfg.optim.clip_grad,
        timings: ctx.timings,
      });
    },
    dispose() {
      optimizer.dispose();
      model.dispose();
    },
  };
};

/** `dinov3 bench train`: one SSL training step per iteration on synthetic multi-crop batches. */
export function benchTrain(o: BenchTrainOptions, factory: TrainStepFactory = sslTrainStep): Record<string, unknown> {
  setup(o);
  const p = benchPreset(o.preset);
  const crops = parseCrops(o.crops);
  for (const c of crops)
    if (c.size % p.config.patch_size !== 0)
      throw new ConfigError(`bench train: crop size ${c.size} is not a multiple of the patch size ${p.config.patch_size}`);
  const head: HeadDims = { ...p.head, ...o.head };
  const useAutocast = o.autocast ?? isCuda(o.device);
  const before = memory().liveTensors;
  if (o.hostBatches !== undefined && o.hostBatches !== 'prefetch' && o.hostBatches !== 'inline')
    throw new ConfigError(`bench train: hostBatches must be "prefetch" or "inline", got ${String(o.hostBatches)}`);
  const batchOn = (device: Device, seed: number) => syntheticBatch({ batch: o.batch, crops, patchSize: p.config.patch_size, device, seed });
  const batch = batchOn(o.hostBatches ? 'cpu' : o.device, 0);
  const second = o.hostBatches ? batchOn('cpu', 1) : null;
  // What the student (autograd) and the teacher (no autograd) run, on float32 inputs of the device.
  const kernels = scope(() => {
    const probe = zeros([1, 1, 3], { device: o.device });
    const choice = () => ({
      linear: kernelChoice('linear', probe),
      attention: kernelChoice('attention', probe),
      residualAdd: kernelChoice('residualAdd', probe),
    });
    return { student: choice(), teacher: noGrad(choice) };
  });
  const timings: Record<string, number> | undefined = o.phases ? {} : undefined;
  const step = factory({
    config: p.config,
    dinoHead: head,
    ibotHead: head,
    device: o.device,
    batch: o.batch,
    crops,
    autocast: useAutocast,
    dropPath: o.dropPath ?? 0,
    checkpointing: o.activationCheckpointing ?? false,
    timings,
  });
  // The step's batch: the device batch, or host batches 0, 1, 0, … moved as hostBatches says.
  const prefetch = o.hostBatches === 'prefetch' ? new DevicePrefetcher(o.device) : null;
  const hosts = second ? [batch, second] : null;
  let staged: StagedBatch | null = null;
  const runStep = (i: number) => {
    if (!hosts) return step.run(batch);
    if (prefetch) {
      const cur = staged ?? prefetch.stage(hosts[i % 2]!);
      staged = prefetch.stage(hosts[(i + 1) % 2]!);
      try {
        step.run(prefetch.take(cur));
      } finally {
        for (const t of cur.moved) t.dispose();
      }
    } else withBatchOn(hosts[i % 2]!, o.device, (b) => step.run(b));
  };
  let t: { sPerIter: number; minS: number };
  let syncs = 0;
  let calls = 0;
  try {
    t = timeSteps(o.device, o.steps, o.warmup, () => {
      if (calls === o.warmup && timings) for (const k of Object.keys(timings)) delete timings[k]; // timed steps only
      const s0 = hostSyncs();
      runStep(calls++);
      syncs += hostSyncs() - s0;
    });
  } finally {
    step.dispose();
    for (const x of (staged as StagedBatch | null)?.moved ?? []) x.dispose();
  }
  const mem = peakMemory(o.device);
  const maskedPatches = batch.upperbound;
  disposeBatch(batch);
  if (second) disposeBatch(second);
  const computeDtype: BenchDType = useAutocast ? 'bfloat16' : 'float32';
  const peak = o.peakN === 0 ? null : measureMatmulPeak(o.device, computeDtype, o.peakN ?? (isCuda(o.device) ? 8192 : 1024));
  const flops = trainStepFlops(p.config, { batch: o.batch, crops, dinoHead: head, ibotHead: head, maskedPatches });
  return {
    bench: 'train',
    preset: p.name,
    step: step.name,
    ...environment(o.device),
    autocast: useAutocast,
    batch: o.batch,
    crops: o.crops,
    heads: head,
    dropPath: o.dropPath ?? 0,
    hostBatches: o.hostBatches ?? null,
    activationCheckpointing: o.activationCheckpointing ?? false,
    steps: o.steps,
    warmup: o.warmup,
    sPerIter: +t.sPerIter.toPrecision(4),
    minSPerIter: +t.minS.toPrecision(4),
    imgPerSec: +(o.batch / t.sPerIter).toPrecision(4),
    flops,
    ...rate(flops.total, t.sPerIter, peak),
    peak: peak && { ...peak, flopsPerSec: +peak.flopsPerSec.toPrecision(4), sPerCall: +peak.sPerCall.toPrecision(4) },
    peakMemoryBytes: mem.bytes,
    memoryKind: mem.kind,
    kernels,
    hostSyncsPerStep: syncs / (o.steps + o.warmup),
    ...(timings && { phases: Object.fromEntries(Object.entries(timings).map(([k, ms]) => [k, +(ms / 1000 / o.steps).toPrecision(4)])) }),
    leakedTensors: memory().liveTensors - before,
    date: new Date().toISOString(),
  };
}
