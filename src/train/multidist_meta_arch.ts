// Distillation (official `dinov3/train/multidist_meta_arch.py::MultiDistillationMetaArch` and the distillation parts
// of `ssl_meta_arch.py`): a frozen teacher (backbone + DINO and iBOT heads, from `distillation.full_cfg_path` and
// `distillation.checkpoint_path`) runs once per batch; its CLS and masked-patch logits, Sinkhorn-Knopp-centred, are
// the targets of one or several students, each trained with the DINO (global and local crops), KoLeo and iBOT losses
// of `SSLMetaArch.compute_losses` on unmasked global crops, each with its own EMA (`model_ema`), which is what is
// exported. On one process every student sees the whole batch (the official code gives each student a group of
// ranks and broadcasts the teacher's outputs to it, which amounts to the same global batch).
import { join } from 'node:path';

import { type CollatedBatch, withBatchOn } from '../data/batch.js';
import { DINOHead } from '../layers/dino_head.js';
import { DINOLoss } from '../loss/dino_clstoken_loss.js';
import { IBOTPatchLoss } from '../loss/ibot_patch_loss.js';
import { DinoVisionTransformer } from '../models/vision_transformer.js';
import { trainingBackboneConfig } from '../config/presets.js';
import { ConfigError } from '../native/errors.js';
import { Module } from '../nn/module.js';
import { indexSelect } from '../ops/index.js';
import { flatten, unflatten } from '../ops/shape.js';
import { Generator } from '../tensor/creation.js';
import { expectArray, expectConfig, expectOptions, expectString } from '../tensor/args.js';
import { autocast, noGrad } from '../tensor/grad_mode.js';
import { keep, scope } from '../tensor/scope.js';
import type { Device, Tensor } from '../tensor/tensor.js';
import { loadSSLConfig, mergeConfig, parseSSLConfig, readConfigFile, type SSLConfig } from './config.js';
import { SSLModel, type TeacherGlobal } from './ssl_meta_arch.js';
import { loadSSLModelCheckpoint } from './stages.js';
import type { IterationMetrics } from './train.js';
import { prefetchOn, runBatches, Trainer, type BatchSource, type ResumableData } from './trainer.js';

/** The teacher's raw outputs on a batch (before centring), shared by every student. */
export interface TeacherLogits {
  /** DINO head on the CLS tokens of the global crops: [2·B, K]. */
  clsAfterHead: Tensor;
  /** iBOT head on the patches masked for the students: [M, K_ibot]. */
  maskedPatchAfterHead: Tensor;
  /** Patch tokens: [2, B, P, D]. */
  patchPreHead: Tensor;
  nMaskedPatches: Tensor;
  B: number;
}

/**
 * The frozen distillation teacher (official `SSLMetaArch._setup_distillation`): backbone and heads built from the
 * teacher's config, loaded from a checkpoint, always in eval mode and without gradients.
 */
export class DistillationTeacher extends Module {
  readonly cfg: SSLConfig;
  readonly model: SSLModel;
  readonly dinoLoss: DINOLoss;
  readonly ibotPatchLoss: IBOTPatchLoss;

  constructor(cfg: SSLConfig, o: { generator?: Generator; device?: Device } = {}) {
    super();
    expectConfig('DistillationTeacher', 'cfg', cfg, ['crops', 'student', 'dino', 'ibot', 'train']);
    o = expectOptions('DistillationTeacher', 'options', o) ?? {};
    this.cfg = cfg;
    const gs = cfg.crops.global_crops_size;
    const imgSize = typeof gs === 'number' ? gs : (gs[0] ?? 224);
    const backbone = new DinoVisionTransformer(trainingBackboneConfig(cfg.student, { imgSize, teacher: true }), {
      device: o.device,
      generator: o.generator,
      ropeTablesDtype: 'float32',
    });
    const D = backbone.embedDim;
    const head = (h: SSLConfig['dino'] | SSLConfig['ibot']) =>
      new DINOHead(D, h.head_hidden_dim, h.head_bottleneck_dim, h.head_n_prototypes, { device: o.device, nlayers: h.head_nlayers, generator: o.generator });
    this.model = this.registerModule('teacher', new SSLModel(backbone, head(cfg.dino), head(cfg.ibot)));
    this.dinoLoss = this.registerModule('dino_loss', new DINOLoss(cfg.dino.head_n_prototypes));
    this.ibotPatchLoss = this.registerModule('ibot_patch_loss', new IBOTPatchLoss(cfg.ibot.head_n_prototypes));
    this.model.requiresGrad_(false);
    this.eval();
  }

  override train(on = true): this {
    super.train(on);
    this.model.eval(); // frozen: never in train mode
    return this;
  }

  /**
   * Builds the teacher from its config and loads `checkpoint` (official `init_weights` with
   * `distillation.checkpoint_path`; "ignore" keeps the seeded initial weights, as the official test configs do). A
   * backbone-only checkpoint keeps seeded heads (reported through `onWarning`).
   */
  static async load(
    cfg: SSLConfig,
    checkpoint: string,
    o: { seed?: number; device?: Device; onWarning?: (m: string) => void } = {},
  ): Promise<DistillationTeacher> {
    const t = new DistillationTeacher(cfg, { generator: new Generator(o.seed ?? cfg.train.seed), device: o.device });
    try {
      if (checkpoint === '')
        throw new ConfigError('distillation.checkpoint_path is empty: give the teacher checkpoint (or "ignore" for seeded initial weights)');
      if (checkpoint === 'ignore') o.onWarning?.('distillation.checkpoint_path is "ignore": the teacher keeps its seeded initial weights (tests only)');
      else {
        const { heads } = await loadSSLModelCheckpoint(t.model, checkpoint, 'distillation.checkpoint_path');
        if (!heads) o.onWarning?.(`${checkpoint} holds a backbone without DINO/iBOT heads: the teacher's heads keep their seeded initial weights`);
      }
    } catch (e) {
      t.dispose();
      throw e;
    }
    return t;
  }

  /** One teacher forward on a batch (official `MultiDistillationMetaArch.get_teacher_output` before centring). */
  logits(batch: CollatedBatch): TeacherLogits {
    const local = batch.collated_local_crops;
    const nLocal = this.cfg.crops.local_crops_number;
    const B = local.shape[0]! / nLocal;
    const global = batch.collated_global_crops;
    // bf16 autocast on CUDA; on CPU the frozen teacher computes in fp32 (the students compute in bf16 on every device,
    // SSLMetaArch.forwardBackward)
    const useAutocast = this.cfg.compute_precision.param_dtype === 'bf16' && global.device.startsWith('cuda');
    const run = <R>(fn: () => R): R => (useAutocast ? autocast(fn, { device: 'cuda', dtype: 'bfloat16' }) : fn());
    return noGrad(() =>
      scope(() => {
        const out = run(() => this.model.backbone.forwardFeatures(global));
        const masked = indexSelect(flatten(out.patchTokens, 0, 1), 0, batch.mask_indices_list);
        return {
          clsAfterHead: run(() => this.model.dinoHead.forward(out.clsToken)),
          maskedPatchAfterHead: run(() => this.model.ibotHead.forward(masked)),
          patchPreHead: unflatten(out.patchTokens, 0, [2, B]),
          nMaskedPatches: batch.n_masked_patches,
          B,
        };
      }),
    );
  }

  /** The students' targets at `teacherTemp`: Sinkhorn-Knopp-centred CLS and masked-patch probabilities. */
  targets(l: TeacherLogits, teacherTemp: number): TeacherGlobal {
    return noGrad(() =>
      scope(() => ({
        patchPreHead: l.patchPreHead.clone(),
        clsCentered: unflatten(this.dinoLoss.sinkhornKnoppTeacher(l.clsAfterHead, teacherTemp), 0, [2, l.B]),
        maskedPatchCentered: this.ibotPatchLoss.sinkhornKnoppTeacher(l.maskedPatchAfterHead, teacherTemp, l.nMaskedPatches),
      })),
    );
  }
}

/** The official `_setup_distillation` assertions: same prototype counts and patch size as the teacher, separate heads. */
export function checkDistillationPair(teacher: SSLConfig, student: SSLConfig, name = 'student'): void {
  expectConfig('checkDistillationPair', 'teacher', teacher, ['dino', 'ibot', 'student']);
  expectConfig('checkDistillationPair', 'student', student, ['dino', 'ibot', 'student', 'gram']);
  expectString('checkDistillationPair', 'name', name);
  const bad = (what: string, t: unknown, s: unknown) =>
    new ConfigError(`${name}: ${what} is ${String(s)} but the teacher's is ${String(t)} (they must match for distillation)`);
  if (teacher.dino.head_n_prototypes !== student.dino.head_n_prototypes)
    throw bad('dino.head_n_prototypes', teacher.dino.head_n_prototypes, student.dino.head_n_prototypes);
  if (teacher.ibot.head_n_prototypes !== student.ibot.head_n_prototypes)
    throw bad('ibot.head_n_prototypes', teacher.ibot.head_n_prototypes, student.ibot.head_n_prototypes);
  if (teacher.student.patch_size !== student.student.patch_size) throw bad('student.patch_size', teacher.student.patch_size, student.student.patch_size);
  if (!teacher.ibot.separate_head) throw new ConfigError('the teacher config needs ibot.separate_head=true');
  if (student.gram.use_loss) throw new ConfigError(`${name}: the Gram loss is not part of distillation (gram.use_loss must be false)`);
}

/** A student of a distillation: its name (sub-folder of the run) and config. */
export interface DistillStudent {
  name: string;
  cfg: SSLConfig;
}

export interface DistillerOptions {
  data?: BatchSource & Partial<ResumableData>;
  /** Run folder: one sub-folder per student (checkpoints, metrics, the exported EMA as teacher_checkpoint.safetensors). */
  outDir?: string;
  resume?: boolean;
  maxIterations?: number;
  signal?: AbortSignal;
  device?: Device;
  onMetrics?: (name: string, m: IterationMetrics) => void;
  onProgress?: (line: string) => void;
  onWarning?: (message: string) => void;
}

/**
 * One frozen teacher distilling into several students: `step(batch)` runs the teacher once, then one training
 * iteration of every student on the shared targets (each with its own optimizer, schedules and EMA).
 */
export class MultiDistiller {
  readonly teacher: DistillationTeacher;
  readonly students: { name: string; trainer: Trainer }[];
  readonly maxIterations: number;
  readonly #o: DistillerOptions;

  private constructor(teacher: DistillationTeacher, students: { name: string; trainer: Trainer }[], o: DistillerOptions) {
    this.teacher = teacher;
    this.students = students;
    this.#o = o;
    this.maxIterations = Math.min(...students.map((s) => s.trainer.maxIterations));
    const its = new Set(students.map((s) => s.trainer.iteration));
    if (its.size > 1)
      throw new ConfigError(`the students resumed at different iterations (${students.map((s) => `${s.name}: ${s.trainer.iteration}`).join(', ')})`);
  }

  /** The next iteration to run. */
  get iteration(): number {
    return this.students[0]!.trainer.iteration;
  }

  static async create(teacher: { cfg: SSLConfig; checkpoint: string }, students: readonly DistillStudent[], o: DistillerOptions = {}): Promise<MultiDistiller> {
    if (students.length === 0) throw new ConfigError('distillation needs at least one student');
    const names = new Set(students.map((s) => s.name));
    if (names.size !== students.length) throw new ConfigError(`student names must be distinct, got ${students.map((s) => s.name).join(', ')}`);
    for (const s of students) {
      if (!/^[A-Za-z0-9_.-]+$/.test(s.name)) throw new ConfigError(`student name "${s.name}" must be a folder name ([A-Za-z0-9_.-])`);
      checkDistillationPair(teacher.cfg, s.cfg, s.name);
    }
    const t = await DistillationTeacher.load(teacher.cfg, teacher.checkpoint, { device: o.device, onWarning: o.onWarning });
    const made: { name: string; trainer: Trainer }[] = [];
    try {
      for (const s of students) {
        // the student's global crops are not masked in distillation (official get_student_output)
        const cfg = parseSSLConfig(mergeConfig(s.cfg, { distillation: { enabled: true } }));
        const trainer = await Trainer.create(cfg, {
          data: o.data,
          outDir: o.outDir ? join(o.outDir, s.name) : undefined,
          resume: o.resume,
          maxIterations: o.maxIterations,
          device: o.device,
          onProgress: o.onProgress ? (line) => o.onProgress!(`[${s.name}] ${line}`) : undefined,
        });
        made.push({ name: s.name, trainer });
      }
      return new MultiDistiller(t, made, o);
    } catch (e) {
      for (const m of made) m.trainer.dispose();
      t.dispose();
      throw e;
    }
  }

  /** One teacher forward, then one iteration of every student. Returns the students' metrics by name. */
  step(hostOrDevice: CollatedBatch): Record<string, IterationMetrics> {
    // A host batch goes to the device once, for the teacher and every student.
    return withBatchOn(hostOrDevice, this.#o.device ?? 'cpu', (b) => this.#step(b));
  }

  #step(batch: CollatedBatch): Record<string, IterationMetrics> {
    const out: Record<string, IterationMetrics> = {};
    const logits = this.teacher.logits(batch);
    for (const t of [logits.clsAfterHead, logits.maskedPatchAfterHead, logits.patchPreHead]) keep(t);
    const byTemp = new Map<number, TeacherGlobal>();
    try {
      for (const { name, trainer } of this.students) {
        const temp = trainer.schedules.teacherTemp.at(trainer.iteration);
        let targets = byTemp.get(temp);
        if (!targets) {
          targets = this.teacher.targets(logits, temp);
          for (const t of [targets.patchPreHead, targets.clsCentered, targets.maskedPatchCentered]) keep(t);
          byTemp.set(temp, targets);
        }
        out[name] = trainer.step(batch, { teacherOutput: targets });
        this.#o.onMetrics?.(name, out[name]);
      }
    } finally {
      for (const t of [logits.clsAfterHead, logits.maskedPatchAfterHead, logits.patchPreHead]) t.dispose();
      for (const g of byTemp.values()) for (const t of [g.patchPreHead, g.clsCentered, g.maskedPatchCentered]) t.dispose();
    }
    return out;
  }

  /** Runs to `maxIterations`, the end of the data or an abort; checkpoints each student every `checkpointing.period`
   * and exports every student's EMA at the end. */
  async fit(): Promise<{ iterations: number; stoppedBy: 'end' | 'abort' | 'data'; exports: Record<string, string> }> {
    const data = this.#o.data;
    if (!data) throw new ConfigError('MultiDistiller.fit: no data');
    const stoppedBy = await runBatches(data, {
      stop: () => this.#o.signal?.aborted ?? false,
      more: () => this.iteration < this.maxIterations,
      ...prefetchOn(this.#o.device, () => this.iteration + 1 < this.maxIterations),
      step: (batch) => this.step(batch),
      after: async () => {
        if (!this.#o.outDir) return;
        for (const { trainer } of this.students) {
          const period = trainer.cfg.checkpointing.period;
          if (trainer.iteration % period === 0 && trainer.iteration < this.maxIterations) await trainer.saveCheckpoint();
        }
      },
    });
    const exports: Record<string, string> = {};
    if (this.#o.outDir && this.iteration > 0) {
      for (const { name, trainer } of this.students) {
        await trainer.saveCheckpoint();
        if (stoppedBy !== 'abort') exports[name] = await trainer.exportTeacher();
      }
    }
    return { iterations: this.iteration, stoppedBy, exports };
  }

  dispose(): void {
    for (const s of this.students) s.trainer.dispose();
    this.teacher.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * The distillation setup of a base config (official `dinov3/configs/config.py::setup_multidistillation`): the teacher
 * from `distillation.full_cfg_path` (a file or preset, merged onto the defaults) and `distillation.checkpoint_path`;
 * each student of `multidistillation.students` from its `config_path` (file or preset), merged as the official code
 * merges (defaults ← student file ← base ← overrides) with `train.batch_size_per_gpu` set to
 * `multidistillation.global_batch_size` (one process holds every student). Without `multidistillation.students`, the
 * base config itself is the one student ("student").
 */
export async function loadDistillationSetup(
  base: string,
  overrides: readonly string[] = [],
): Promise<{ teacher: { cfg: SSLConfig; checkpoint: string }; students: DistillStudent[] }> {
  expectString('loadDistillationSetup', 'base', base, true);
  expectArray('loadDistillationSetup', 'overrides', overrides, 'an array of strings');
  const baseCfg = await loadSSLConfig(base, overrides);
  const d = baseCfg.distillation;
  if (!d.full_cfg_path) throw new ConfigError("distillation.full_cfg_path is empty: give the teacher's config (a file or a preset)");
  const teacherCfg = await loadSSLConfig(d.full_cfg_path);
  const md = baseCfg.multidistillation;
  if (!md.enabled || !md.students || md.students.length === 0)
    return { teacher: { cfg: teacherCfg, checkpoint: d.checkpoint_path }, students: [{ name: 'student', cfg: baseCfg }] };
  // the base as written (not with defaults filled in), so that it overrides only what it states
  const { parseOverrides } = await import('./config.js');
  const baseRaw = /\.(ya?ml|json)$/i.test(base) ? await readConfigFile(base) : ((await import('./presets/index.js')).SSL_PRESETS[base] ?? {});
  const students: DistillStudent[] = [];
  for (const s of md.students) {
    const studentRaw = /\.(ya?ml|json)$/i.test(s.config_path)
      ? await readConfigFile(s.config_path)
      : (await import('./presets/index.js')).SSL_PRESETS[s.config_path];
    if (!studentRaw) throw new ConfigError(`student "${s.name}": unknown config "${s.config_path}" (a .yaml/.json file or a preset)`);
    let merged = mergeConfig(mergeConfig(studentRaw, baseRaw), parseOverrides(overrides));
    if (md.global_batch_size) merged = mergeConfig(merged, { train: { batch_size_per_gpu: md.global_batch_size } });
    students.push({ name: s.name, cfg: parseSSLConfig(merged) });
  }
  return { teacher: { cfg: teacherCfg, checkpoint: d.checkpoint_path }, students };
}
