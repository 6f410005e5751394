// The self-supervised meta-architecture (official `dinov3/train/ssl_meta_arch.py::SSLMetaArch`): a student
// (backbone + DINO head + iBOT head) trained against an EMA teacher with Sinkhorn-Knopp targets, the DINO loss on
// CLS tokens of global and local crops, KoLeo on the student's global CLS tokens, the iBOT loss on masked patches
// and, optionally, the Gram loss against a gram teacher. `forwardBackward` is one forward and backward on a
// collated batch; the rest of an iteration (schedules, clipping, optimizer, EMA) is `train.ts::trainIteration`.
import { trainingBackboneConfig, type StudentArchConfig } from '../config/presets.js';
import type { CollatedBatch } from '../data/batch.js';
import { LOCAL_PROCESS_GROUP, type ProcessGroup } from '../distributed/process_group.js';
import { DINOHead } from '../layers/dino_head.js';
import { DINOLoss } from '../loss/dino_clstoken_loss.js';
import { gramLoss } from '../loss/gram_loss.js';
import { IBOTPatchLoss } from '../loss/ibot_patch_loss.js';
import { koleoLoss, koleoLossDistributed } from '../loss/koleo_loss.js';
import { DinoVisionTransformer } from '../models/vision_transformer.js';
import { ConfigError, TorchRangeError } from '../native/errors.js';
import { Module, type StateDict } from '../nn/module.js';
import { index, indexSelect } from '../ops/index.js';
import { logicalNot } from '../ops/pointwise.js';
import { cat, flatten, split, unflatten } from '../ops/shape.js';
import { type Generator, getRngState, setRngState } from '../tensor/creation.js';
import { autocast, noGrad } from '../tensor/grad_mode.js';
import { expectConfig, expectOptions } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import type { Device, DType, Tensor } from '../tensor/tensor.js';
import { emaUpdate } from '../optim/ema.js';
import { resizePatchTokens } from './gram.js';
import { type Schedule, linearWarmupCosineDecay } from './schedules.js';

/** A `v2` schedule entry as in the config (`dino.local_loss_weight_schedule`, `gram.loss_weight_schedule`). */
export interface WeightScheduleConfig {
  start: number;
  peak: number;
  end: number;
  warmup_epochs: number;
  cosine_epochs?: number | null;
}

/** The config keys the meta-architecture reads (official names; the training config is a superset). */
export interface SSLMetaArchConfig {
  student: StudentArchConfig;
  dino: {
    loss_weight: number;
    global_ignore_diagonal: boolean;
    head_n_prototypes: number;
    head_bottleneck_dim: number;
    head_nlayers: number;
    head_hidden_dim: number;
    koleo_loss_weight: number;
    koleo_loss_distributed: boolean;
    koleo_topk: number;
    koleo_distributed_loss_group_size: number | null;
    reweight_dino_local_loss: boolean;
    local_loss_weight_schedule?: WeightScheduleConfig | null;
  };
  ibot: {
    loss_weight: number;
    mask_ratio_min_max: readonly number[];
    mask_sample_probability: number;
    separate_head: boolean;
    head_n_prototypes: number;
    head_bottleneck_dim: number;
    head_nlayers: number;
    head_hidden_dim: number;
  };
  gram: {
    use_loss: boolean;
    compute_stats: boolean;
    loss_weight: number;
    ema_teacher: boolean;
    ckpt: string | null;
    it_load_ema_teacher: number;
    rep_update: boolean;
    normalized: boolean;
    img_level: boolean;
    remove_neg: boolean;
    remove_only_teacher_neg: boolean;
    tokens_used: string;
    global_teacher_resize_method: string;
    global_teacher_resize_antialias: boolean;
    loss_weight_schedule?: WeightScheduleConfig | null;
  };
  crops: { global_crops_size: number | readonly number[]; local_crops_number: number; gram_teacher_crops_size: number | readonly number[] | null };
  /** `checkpointing`: activation checkpointing of the student's blocks (absent: off). */
  train: { OFFICIAL_EPOCH_LENGTH: number; centering: string; checkpointing?: boolean };
  optim: { epochs: number };
  compute_precision: { param_dtype: string };
  distillation?: { enabled: boolean };
}

export interface SSLMetaArchOptions {
  /** Generator for the initial weights (student; the teacher starts as its copy) and train-mode draws. */
  generator?: Generator;
  /** Ranks sharing Sinkhorn-Knopp, KoLeo (distributed) and the loss statistics (default: this process). */
  group?: ProcessGroup;
  device?: Device;
}

/** Student or teacher: `backbone`, `dino_head`, `ibot_head` (the official `nn.ModuleDict` keys and order). */
export class SSLModel extends Module {
  readonly backbone: DinoVisionTransformer;
  readonly dinoHead: DINOHead;
  readonly ibotHead: DINOHead;
  constructor(backbone: DinoVisionTransformer, dinoHead: DINOHead, ibotHead: DINOHead) {
    super();
    this.backbone = this.registerModule('backbone', backbone);
    this.dinoHead = this.registerModule('dino_head', dinoHead);
    this.ibotHead = this.registerModule('ibot_head', ibotHead);
  }
}

/** A backbone alone under the key `backbone` (the gram teacher; official `gram_model_dict`). */
export class BackboneOnly extends Module {
  readonly backbone: DinoVisionTransformer;
  constructor(backbone: DinoVisionTransformer) {
    super();
    this.backbone = this.registerModule('backbone', backbone);
  }
}

/** Per-crop-group outputs (official dict keys in comments). The teacher's is also what a distillation teacher gives
 * every student (`multidist_meta_arch.ts`). */
export interface TeacherGlobal {
  patchPreHead: Tensor; // patch_pre_head [n_crops, B, P, D]
  clsCentered: Tensor; // cls_centered [n_crops, B, K]
  maskedPatchCentered: Tensor; // masked_patch_centered [M, K]
}
interface StudentGlobal {
  clsPreHead: Tensor; // cls_pre_head [n_global, B, D]
  patchPreHead: Tensor; // patch_pre_head [n_global, B, P, D]
  clsAfterHead: Tensor; // cls_after_head [n_global, B, K]
  maskedPatchAfterHead: Tensor; // masked_patch_after_head [M, K]
}
interface StudentLocal {
  clsAfterHead: Tensor; // cls_after_head [n_local, B, K]
}
interface GramGlobal {
  studentPatches: Tensor;
  teacherPatches: Tensor;
  origStudentPatches: Tensor;
  origTeacherPatches: Tensor;
}

/** Loss terms and weights of one forward (tensors are 0-d, float32; weights are numbers). */
export interface LossDict {
  dino_local_crops_loss: Tensor;
  dino_local_loss_weight: number;
  dino_global_crops_loss: Tensor;
  koleo_loss: Tensor;
  ibot_loss: Tensor;
  gram_loss?: Tensor;
  gram_loss_weight?: number;
  'stats_only/masked_gram_loss'?: Tensor;
  'stats_only/unmasked_gram_loss'?: Tensor;
}

export interface ForwardBackwardResult {
  /** The weighted total (0-d, detached from the graph after backward). */
  loss: Tensor;
  lossDict: LossDict;
  localBatchSize: number;
  globalBatchSize: number;
}

const N_GLOBAL_CROPS = 2;

export class SSLMetaArch extends Module {
  readonly cfg: SSLMetaArchConfig;
  readonly student: SSLModel;
  readonly teacher: SSLModel;
  /** The model the EMA updates (the teacher; official `model_ema`). */
  readonly modelEma: SSLModel;
  readonly dinoLoss: DINOLoss;
  readonly ibotPatchLoss: IBOTPatchLoss;
  /** A separate gram teacher (gram loss without `gram.ema_teacher`), else null. */
  readonly gramTeacher: BackboneOnly | null;
  readonly group: ProcessGroup;
  readonly nLocalCrops: number;
  readonly embedDim: number;
  /** Whether the gram teacher holds weights (loaded from a checkpoint or the EMA teacher). */
  gramTeacherInitialized = false;
  /**
   * Data-parallel / sharded training hooks (set by `train/sharded.ts::ShardedSSL`): the backward with the gradient
   * averaging over the ranks, the EMA on the shards, the per-submodule clipping on the shards. Null: one process.
   */
  distributed: {
    /** The loss's backward; `finish` completes it (the recomputed blocks of activation checkpointing) before any reduction. */
    backward(loss: Tensor, finish: () => void): void;
    updateEma(momentum: number): void;
    clipGradNorms(max: number): [string, Tensor][] | null;
  } | null = null;
  readonly #dinoLocalLossSchedule: Schedule | null;
  readonly #gramLossSchedule: Schedule | null;
  readonly #device: Device | undefined;
  readonly #generator: Generator | undefined;
  /** Builds a student like `this.student` (another instance: its own parameters). */
  readonly #buildStudent: (o: { ropeTablesDtype: DType; init: boolean }) => SSLModel;
  /** The student in bf16 (see `#computeStudent`), built on first use, with its (master, copy) parameters and modules. */
  #compute: { model: SSLModel; pairs: [master: Tensor, copy: Tensor][]; modules: [master: Module, copy: Module][] } | null = null;

  constructor(cfg: SSLMetaArchConfig, o: SSLMetaArchOptions = {}) {
    super();
    expectConfig('SSLMetaArch', 'cfg', cfg, ['crops', 'dino', 'ibot', 'gram', 'student', 'train', 'optim']);
    o = expectOptions('SSLMetaArch', 'options', o) ?? {};
    this.cfg = cfg;
    this.group = o.group ?? LOCAL_PROCESS_GROUP;
    this.#device = o.device;
    this.#generator = o.generator;
    if (!(cfg.crops.local_crops_number > 0)) throw new ConfigError('crops.local_crops_number must be > 0 (the official SSLMetaArch needs local crops)');
    if (!cfg.ibot.separate_head) throw new ConfigError('ibot.separate_head must be true (the only head layout of the official SSLMetaArch)');
    if (cfg.train.centering !== 'sinkhorn_knopp') throw new ConfigError(`train.centering must be "sinkhorn_knopp", got "${cfg.train.centering}"`);
    const [rMin, rMax] = cfg.ibot.mask_ratio_min_max as [number, number];
    if (!(0 <= rMin && rMin < rMax && rMax <= 1)) throw new ConfigError(`ibot.mask_ratio_min_max must satisfy 0 <= min < max <= 1, got [${rMin}, ${rMax}]`);
    if (!(cfg.ibot.mask_sample_probability >= 0 && cfg.ibot.mask_sample_probability <= 1)) {
      throw new ConfigError(`ibot.mask_sample_probability must be in [0, 1], got ${cfg.ibot.mask_sample_probability}`);
    }
    if (!cfg.dino.koleo_loss_distributed && cfg.dino.koleo_topk !== 1) {
      throw new ConfigError('the non-distributed KoLeo loss only supports dino.koleo_topk=1');
    }
    this.nLocalCrops = cfg.crops.local_crops_number;
    // Parameters are float32 (fp32 master weights; bf16 compute is autocast on CUDA). As under the official FSDP2
    // wrapping, the bf16 RoPE tables enter the blocks cast to the parameter dtype (see `ropeTablesDtype`).
    const create = { device: o.device };
    const vitOpts = { ...create, generator: o.generator, ropeTablesDtype: 'float32' as const };
    // The patch-embed nominal size (RoPE makes the backbone resolution-free); the first size of a multi-resolution mix.
    const gs = cfg.crops.global_crops_size;
    const imgSize = typeof gs === 'number' ? gs : (gs[0] ?? 224);
    const build = (teacher: boolean, v: { ropeTablesDtype?: DType; init?: boolean } = {}) => {
      const backbone = new DinoVisionTransformer(trainingBackboneConfig(cfg.student, { imgSize, teacher }), { ...vitOpts, ...v });
      // Official ac_compile_parallelize.py wraps the student's blocks only (train.checkpointing; the teacher has no backward).
      backbone.activationCheckpointing = !teacher && cfg.train.checkpointing === true;
      const D = backbone.embedDim;
      const head = (h: SSLMetaArchConfig['dino'] | SSLMetaArchConfig['ibot']) =>
        new DINOHead(D, h.head_hidden_dim, h.head_bottleneck_dim, h.head_n_prototypes, { ...create, nlayers: h.head_nlayers, generator: o.generator });
      return new SSLModel(backbone, head(cfg.dino), head(cfg.ibot));
    };
    this.student = this.registerModule('student', build(false));
    this.#buildStudent = (v) => build(false, v);
    this.teacher = this.registerModule('teacher', build(true));
    this.embedDim = this.student.backbone.embedDim;
    this.modelEma = this.teacher;
    this.teacher.requiresGrad_(false);
    this.dinoLoss = this.registerModule('dino_loss', new DINOLoss(cfg.dino.head_n_prototypes, { group: this.group }));
    this.ibotPatchLoss = this.registerModule('ibot_patch_loss', new IBOTPatchLoss(cfg.ibot.head_n_prototypes, { group: this.group }));

    const epochLen = cfg.train.OFFICIAL_EPOCH_LENGTH;
    const weightSchedule = (s: WeightScheduleConfig) =>
      linearWarmupCosineDecay({
        start: s.start,
        peak: s.peak,
        end: s.end,
        warmupIterations: Math.round(epochLen * s.warmup_epochs),
        totalIterations: epochLen * cfg.optim.epochs,
        cosineIterations: s.cosine_epochs == null ? null : Math.round(epochLen * s.cosine_epochs),
      });
    const localSched = cfg.dino.local_loss_weight_schedule;
    if (cfg.dino.reweight_dino_local_loss && !localSched) throw new ConfigError('dino.reweight_dino_local_loss needs dino.local_loss_weight_schedule');
    this.#dinoLocalLossSchedule = cfg.dino.reweight_dino_local_loss && localSched ? weightSchedule(localSched) : null;

    const g = cfg.gram;
    this.gramTeacher = null;
    this.#gramLossSchedule = null;
    if (g.use_loss) {
      if (g.ema_teacher && g.ckpt != null) throw new ConfigError('gram.ema_teacher and gram.ckpt cannot both be set: choose one gram teacher');
      if (g.ckpt == null && g.it_load_ema_teacher < 0 && !g.ema_teacher) {
        throw new ConfigError('without gram.ckpt, gram.it_load_ema_teacher must be >= 0 (the iteration the EMA teacher becomes the gram teacher)');
      }
      if (g.ema_teacher && g.rep_update) throw new ConfigError('gram.ema_teacher and gram.rep_update cannot both be true');
      if (!['all', 'masked', 'unmasked'].includes(g.tokens_used))
        throw new ConfigError(`gram.tokens_used must be all, masked or unmasked, got "${g.tokens_used}"`);
      if (g.tokens_used !== 'all' && g.img_level) throw new ConfigError(`gram.tokens_used=${g.tokens_used} needs gram.img_level=false`);
      if (g.remove_neg && g.remove_only_teacher_neg) throw new ConfigError('gram.remove_neg and gram.remove_only_teacher_neg are exclusive');
      if (!g.ema_teacher) {
        if (cfg.crops.gram_teacher_crops_size == null)
          throw new ConfigError('crops.gram_teacher_crops_size must be set to use the gram loss with a separate gram teacher');
        const backbone = new DinoVisionTransformer(trainingBackboneConfig(cfg.student, { imgSize, teacher: true }), vitOpts);
        this.gramTeacher = this.registerModule('gram_teacher', new BackboneOnly(backbone));
        this.gramTeacher.requiresGrad_(false).eval();
      } else if (cfg.crops.gram_teacher_crops_size != null) {
        throw new ConfigError('crops.gram_teacher_crops_size must be null when gram.ema_teacher=true');
      }
      if (g.loss_weight_schedule) this.#gramLossSchedule = weightSchedule(g.loss_weight_schedule);
    }
    this.initWeights();
    this.train();
  }

  /** Official `init_weights`: the teacher starts as an exact copy of the student. */
  initWeights(): void {
    this.modelEma.loadStateDict(this.student.stateDict());
  }

  /** Train mode for the student; the teacher and gram teacher always stay in eval mode (official `train`). */
  override train(on = true): this {
    super.train(on);
    this.teacher.eval();
    this.gramTeacher?.eval();
    return this;
  }

  /** Loads a student state dict (official key names: `backbone.*`, `dino_head.*`, `ibot_head.*`) into student and teacher. */
  loadStudentStateDict(sd: StateDict | Record<string, Tensor>): void {
    this.student.loadStateDict(sd, { strict: true });
    this.initWeights();
  }

  /** The student's submodules in official order (clipping, parameter groups and the EMA iterate over them). */
  studentSubmodules(): [string, Module][] {
    return this.student.children();
  }

  /**
   * One forward and backward of the student on a collated batch (official `forward_backward`). Gradients are
   * accumulated into the student's parameters; the returned tensors are owned by the caller (enclosing scope).
   */
  forwardBackward(
    batch: CollatedBatch,
    o: { teacherTemp: number; iteration?: number; teacherOutput?: TeacherGlobal; timings?: Record<string, number> },
  ): ForwardBackwardResult {
    const it = o.iteration ?? 0;
    const nLocal = this.nLocalCrops;
    const local = batch.collated_local_crops;
    const global = batch.collated_global_crops;
    if (local.shape[0]! % nLocal !== 0) {
      throw new TorchRangeError(
        `forwardBackward: collated_local_crops has ${local.shape[0]} crops, not a multiple of crops.local_crops_number=${nLocal}`,
        'ERR_INVALID_ARG',
      );
    }
    const B = local.shape[0]! / nLocal;
    if (global.shape[0] !== N_GLOBAL_CROPS * B) {
      throw new TorchRangeError(
        `forwardBackward: collated_global_crops has ${global.shape[0]} crops but ${N_GLOBAL_CROPS} global crops × ${B} images were expected (from ${local.shape[0]} local crops)`,
        'ERR_INVALID_ARG',
      );
    }
    // compute_precision.param_dtype bf16 (one process): the student computes on a bf16 copy of its fp32 master weights,
    // as under the official FSDP2 MixedPrecisionPolicy (see `#computeStudent`); the teacher, the gram teacher, and
    // every model under the data-parallel/sharded hooks or fp16 run under autocast (matmul-like ops in that dtype
    // over the fp32 weights). Loss terms are computed in fp32 either way.
    const pd = this.cfg.compute_precision.param_dtype;
    const device = global.device.startsWith('cuda') ? 'cuda' : 'cpu';
    const run = <R>(fn: () => R): R => (pd === 'fp32' ? fn() : autocast(fn, { device, dtype: pd === 'bf16' ? 'bfloat16' : 'float16' }));
    const compute = pd === 'bf16' && !this.distributed ? this.#computeStudent() : null;
    return scope('forwardBackward', () => {
      const masks = batch.collated_masks;
      const maskIdx = batch.mask_indices_list;
      // a distillation teacher's targets, computed once for all students (official MultiDistillationMetaArch), or ours
      // Optional wall-clock of each phase (the CPU computes eagerly, so phase boundaries are real; on CUDA they are
      // launch times unless the caller synchronises).
      let t = performance.now();
      const lap = (k: string) => {
        if (!o.timings) return;
        const now = performance.now();
        o.timings[k] = (o.timings[k] ?? 0) + (now - t);
        t = now;
      };
      const teacherGlobal = o.teacherOutput ?? run(() => this.getTeacherOutput(global, B, maskIdx, batch.n_masked_patches, o.teacherTemp));
      lap('teacher');
      const [studentGlobal, studentLocal] = compute
        ? this.getStudentOutput(global, local, B, masks, maskIdx, compute.model)
        : run(() => this.getStudentOutput(global, local, B, masks, maskIdx));
      lap('student_forward');
      const gramGlobal = this.cfg.gram.use_loss
        ? run(() => this.getGramTeacherOutput(batch.collated_gram_teacher_crops ?? null, masks, teacherGlobal, studentGlobal, global.shape[3]!))
        : null;
      const { loss, lossDict } = this.computeLosses(teacherGlobal, studentGlobal, studentLocal, gramGlobal, masks, maskIdx, batch.masks_weight, it);
      lap('losses');
      // With activation checkpointing the loss's backward stops at the blocks' output; the student's backbone then
      // recomputes its blocks, under the forward's autocast, to finish it (VisionTransformer.backwardCheckpointed).
      const finish = () => {
        const backbone = (compute?.model ?? this.student).backbone;
        if (compute) backbone.backwardCheckpointed();
        else run(() => backbone.backwardCheckpointed());
      };
      if (this.distributed) this.distributed.backward(loss, finish);
      else {
        loss.backward();
        finish();
      }
      if (compute) this.#gradsToMasters(compute.pairs);
      lap('backward');
      return { loss: loss.detach(), lossDict, localBatchSize: B, globalBatchSize: batch.global_batch_size ?? B * this.group.worldSize };
    });
  }

  /**
   * The student's bf16 compute copy, refreshed from the fp32 master weights (values, train mode, which parameters
   * train). The official trainer wraps the student in FSDP2 with `MixedPrecisionPolicy(param_dtype)`
   * (`dinov3/fsdp/ac_compile_parallelize.py`): each forward gathers the parameters cast to param_dtype, every op of
   * the forward and backward runs in it, and the gradients reach the fp32 parameters that clipping, AdamW and the EMA
   * use. The copy is built once (the random draws of building it are undone, so the RNG streams stay the same).
   */
  #computeStudent(): { model: SSLModel; pairs: [Tensor, Tensor][] } {
    const dtype: DType = 'bfloat16';
    if (!this.#compute) {
      const g = this.#generator;
      const saved = [getRngState(), g?.getState()] as const;
      let model: SSLModel;
      try {
        model = this.#buildStudent({ ropeTablesDtype: dtype, init: false });
      } finally {
        setRngState(saved[0]);
        if (g && saved[1]) g.setState(saved[1]);
        saved[0].dispose();
        saved[1]?.dispose();
      }
      const masters = this.student.parameters();
      const copies = model.parameters();
      // parameters in the compute dtype (their values come with every refresh); buffers (RoPE periods, masks) as the
      // master's, as FSDP2 leaves them
      const masterBuffers = this.student.namedBuffers().map(([, b]) => b);
      const replace = (t: Tensor, c: Tensor) => {
        t.replaceData(c);
        c.dispose();
      };
      noGrad(() => {
        copies.forEach((p, i) => replace(p, p.to({ dtype, device: masters[i]!.device })));
        model.namedBuffers().forEach(([, b], i) => replace(b, masterBuffers[i]!.clone()));
      });
      const masterModules = this.student.namedModules();
      this.#compute = {
        model,
        pairs: masters.map((m, i) => [m, copies[i]!]),
        modules: model.namedModules().map(([, m], i) => [masterModules[i]![1], m]),
      };
    }
    const c = this.#compute;
    noGrad(() => {
      for (const [m, p] of c.pairs) {
        p.copy_(m);
        if (p.requiresGrad !== m.requiresGrad) p.requiresGrad_(m.requiresGrad);
      }
    });
    for (const [m, copy] of c.modules) copy.training = m.training;
    return c;
  }

  /** Moves the compute copy's gradients onto the master weights (float32, added to any gradient already there). */
  #gradsToMasters(pairs: [Tensor, Tensor][]): void {
    noGrad(() =>
      scope(() => {
        for (const [m, p] of pairs) {
          const g = p.grad;
          if (!g) continue;
          const prev = m.grad;
          m.grad = prev ? prev.add(g.float()) : g.float();
          p.grad = null;
        }
      }),
    );
  }

  override dispose(): void {
    this.#compute?.model.dispose();
    this.#compute = null;
    super.dispose();
  }

  /** Official `get_teacher_output`: teacher features, heads and Sinkhorn-Knopp targets, without autograd. */
  getTeacherOutput(globalCrops: Tensor, B: number, maskIndices: Tensor, nMaskedPatches: Tensor, teacherTemp: number): TeacherGlobal {
    return noGrad(() =>
      scope(() => {
        const out = this.teacher.backbone.forwardFeatures(globalCrops);
        const cls = out.clsToken; // [n·B, D]
        const patch = out.patchTokens; // [n·B, P, D]
        const buffer = indexSelect(flatten(patch, 0, 1), 0, maskIndices);
        const maskedAfterHead = this.teacher.ibotHead.forward(buffer);
        const clsAfterHead = this.teacher.dinoHead.forward(cls);
        const clsCentered = unflatten(this.dinoLoss.sinkhornKnoppTeacher(clsAfterHead, teacherTemp), 0, [N_GLOBAL_CROPS, B]);
        const maskedPatchCentered = this.ibotPatchLoss.sinkhornKnoppTeacher(maskedAfterHead, teacherTemp, nMaskedPatches);
        return { patchPreHead: unflatten(patch, 0, [N_GLOBAL_CROPS, B]), clsCentered, maskedPatchCentered };
      }),
    );
  }

  /**
   * Official `get_student_output`: global (masked) and local crops through the backbone together, then the heads.
   * `model`: the student or its compute copy (whose outputs are returned as float32, for the losses).
   */
  getStudentOutput(
    globalCrops: Tensor,
    localCrops: Tensor,
    B: number,
    masks: Tensor,
    maskIndices: Tensor,
    model: SSLModel = this.student,
  ): [StudentGlobal, StudentLocal] {
    const f = model === this.student ? (t: Tensor) => t : (t: Tensor) => t.float();
    return scope(() => {
      const distill = this.cfg.distillation?.enabled ?? false;
      const [g, l] = model.backbone.forwardFeaturesList([globalCrops, localCrops], [distill ? null : masks, null]) as [
        ReturnType<DinoVisionTransformer['forwardFeatures']>,
        ReturnType<DinoVisionTransformer['forwardFeatures']>,
      ];
      const maskedPreHead = indexSelect(flatten(g.patchTokens, 0, 1), 0, maskIndices);
      const maskedPatchAfterHead = model.ibotHead.forward(maskedPreHead);
      const sizes = [g.clsToken.shape[0]!, l.clsToken.shape[0]!];
      const [gAfter, lAfter] = split(model.dinoHead.forward(cat([g.clsToken, l.clsToken], 0)), sizes, 0) as [Tensor, Tensor];
      return [
        {
          clsPreHead: f(unflatten(g.clsToken, 0, [N_GLOBAL_CROPS, B])),
          patchPreHead: f(unflatten(g.patchTokens, 0, [N_GLOBAL_CROPS, B])),
          clsAfterHead: f(unflatten(gAfter, 0, [N_GLOBAL_CROPS, B])),
          maskedPatchAfterHead: f(maskedPatchAfterHead),
        },
        { clsAfterHead: f(unflatten(lAfter, 0, [this.nLocalCrops, B])) },
      ];
    });
  }

  /**
   * Official `get_gram_teacher_output`: the gram targets are the EMA teacher's patch features (`gram.ema_teacher`) or
   * the gram teacher's on its own crops, resized to the student's patch grid when the sizes differ; then the
   * patches selected by `gram.tokens_used`.
   */
  getGramTeacherOutput(
    gramCrops: Tensor | null,
    masks: Tensor,
    teacherGlobal: TeacherGlobal,
    studentGlobal: StudentGlobal,
    studentCropSize: number,
  ): GramGlobal {
    return scope(() => {
      const studentPatches = flatten(studentGlobal.patchPreHead, 0, 1); // [n·B, P, D]
      let teacherPatches: Tensor;
      if (this.cfg.gram.ema_teacher) {
        teacherPatches = flatten(teacherGlobal.patchPreHead, 0, 1);
      } else {
        if (!this.gramTeacherInitialized || !this.gramTeacher) {
          throw new ConfigError('the gram teacher has not been initialised: set gram.ckpt or reach gram.it_load_ema_teacher first');
        }
        if (!gramCrops) throw new ConfigError('the batch has no collated_gram_teacher_crops: set crops.gram_teacher_crops_size');
        const gramTeacher = this.gramTeacher;
        teacherPatches = noGrad(() => {
          const tp = gramTeacher.backbone.forwardFeatures(gramCrops).patchTokens; // [n·B, P_T, D]
          if (tp.shape[1] === studentPatches.shape[1]) return tp;
          const p = this.cfg.student.patch_size;
          const N = Math.floor(gramCrops.shape[2]! / p);
          const Ns = Math.floor(studentCropSize / p);
          if (tp.shape[1] !== N * N || studentPatches.shape[1] !== Ns * Ns) {
            throw new TorchRangeError(
              `gram teacher: ${tp.shape[1]} patches for a ${N}×${N} grid, student ${studentPatches.shape[1]} for ${Ns}×${Ns}`,
              'ERR_INVALID_ARG',
            );
          }
          return resizePatchTokens(tp, N, Ns, { mode: this.cfg.gram.global_teacher_resize_method, antialias: this.cfg.gram.global_teacher_resize_antialias });
        });
      }
      let s = studentPatches;
      let t = teacherPatches;
      if (this.cfg.gram.tokens_used === 'masked') {
        s = index(studentPatches, [masks]);
        t = index(teacherPatches, [masks]);
      } else if (this.cfg.gram.tokens_used === 'unmasked') {
        const keepMask = logicalNot(masks);
        s = index(studentPatches, [keepMask]);
        t = index(teacherPatches, [keepMask]);
      }
      return { studentPatches: s, teacherPatches: t, origStudentPatches: studentPatches, origTeacherPatches: teacherPatches };
    });
  }

  /** Official `compute_losses`: the loss terms and their weighted sum (scales of DINOv2 times the config weights). */
  computeLosses(
    teacherGlobal: TeacherGlobal,
    studentGlobal: StudentGlobal,
    studentLocal: StudentLocal,
    gramGlobal: GramGlobal | null,
    masks: Tensor,
    maskIndices: Tensor,
    masksWeight: Tensor,
    iteration: number,
  ): { loss: Tensor; lossDict: LossDict } {
    return scope(() => {
      const cfg = this.cfg;
      const nGlobal = studentGlobal.clsAfterHead.shape[0]!;
      const nLocal = studentLocal.clsAfterHead.shape[0]!;
      const globalTerms = cfg.dino.global_ignore_diagonal ? nGlobal * (nGlobal - 1) : nGlobal * nGlobal;
      const localTerms = nGlobal * nLocal;
      const globalScale = globalTerms / (globalTerms + localTerms);
      const localScale = localTerms / (globalTerms + localTerms);
      const koleoScale = nGlobal;

      const dinoLocal = this.dinoLoss.forward(studentLocal.clsAfterHead, teacherGlobal.clsCentered);
      const localWeight = this.#dinoLocalLossSchedule ? this.#dinoLocalLossSchedule.at(iteration) : 1.0;
      let total = dinoLocal.mul(cfg.dino.loss_weight * localScale * localWeight);

      const dinoGlobal = this.dinoLoss.forward(studentGlobal.clsAfterHead, teacherGlobal.clsCentered, cfg.dino.global_ignore_diagonal);
      total = total.add(dinoGlobal.mul(cfg.dino.loss_weight * globalScale));

      const koleoOne = (x: Tensor) =>
        cfg.dino.koleo_loss_distributed
          ? koleoLossDistributed(x, { group: this.group, topk: cfg.dino.koleo_topk, lossGroupSize: cfg.dino.koleo_distributed_loss_group_size ?? undefined })
          : koleoLoss(x);
      const perCrop = Array.from({ length: nGlobal }, (_, i) => koleoOne(studentGlobal.clsPreHead.select(0, i)));
      const koleo = perCrop.reduce((a, b) => a.add(b)).div(nGlobal);
      total = total.add(koleo.mul(cfg.dino.koleo_loss_weight * koleoScale));

      const ibot = this.ibotPatchLoss.forwardMasked(studentGlobal.maskedPatchAfterHead, teacherGlobal.maskedPatchCentered, masks, {
        nMaskedPatches: maskIndices.shape[0]!,
        masksWeight,
      });
      total = total.add(ibot.mul(cfg.ibot.loss_weight));

      const lossDict: LossDict = {
        dino_local_crops_loss: dinoLocal,
        dino_local_loss_weight: localWeight,
        dino_global_crops_loss: dinoGlobal,
        koleo_loss: koleo,
        ibot_loss: ibot,
      };
      if (gramGlobal) {
        const g = cfg.gram;
        const opts = { applyNorm: g.normalized, removeNeg: g.remove_neg, removeOnlyTeacherNeg: g.remove_only_teacher_neg };
        const gl = gramLoss(gramGlobal.studentPatches, gramGlobal.teacherPatches, { ...opts, imgLevel: g.img_level });
        const w = this.#gramLossSchedule ? this.#gramLossSchedule.at(iteration) : g.loss_weight;
        lossDict.gram_loss_weight = w;
        lossDict.gram_loss = gl;
        total = total.add(gl.mul(w));
        if (g.compute_stats) {
          noGrad(() => {
            const notMasks = logicalNot(masks);
            const stat = (m: Tensor) =>
              gramLoss(index(gramGlobal.origStudentPatches, [m]).detach(), index(gramGlobal.origTeacherPatches, [m]), { ...opts, imgLevel: false });
            lossDict['stats_only/masked_gram_loss'] = stat(masks);
            lossDict['stats_only/unmasked_gram_loss'] = stat(notMasks);
          });
        }
      }
      return { loss: total, lossDict };
    });
  }

  /** teacher ← m·teacher + (1 − m)·student over every student submodule (official `update_ema`). */
  updateEma(momentum: number): void {
    if (this.distributed) return this.distributed.updateEma(momentum);
    emaUpdate(this.modelEma.parameters(), this.student.parameters(), momentum);
  }

  /** The gram teacher ← the EMA teacher's backbone (official `gram_load_ema_teacher`). No-op without a gram teacher. */
  gramLoadEmaTeacher(): void {
    if (!this.gramTeacher) return;
    this.gramTeacher.backbone.loadStateDict(this.modelEma.backbone.stateDict(), { strict: true });
    this.gramTeacher.requiresGrad_(false).eval();
    this.gramTeacherInitialized = true;
  }

  /** gram ← m·gram + (1 − m)·teacher (official `update_gram`; m = 0 copies the teacher). */
  updateGram(m = 0): void {
    if (!this.gramTeacher) return;
    emaUpdate(this.gramTeacher.backbone.parameters(), this.teacher.backbone.parameters(), m);
  }
}
