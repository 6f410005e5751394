// One training iteration (the body of the official `dinov3/train/train.py::do_train` loop): schedules applied to the
// optimizer groups, forward and backward, per-submodule gradient clipping, the non-finite guard, the AdamW step, the
// teacher EMA, and the gram-teacher load/refresh. Everything read back to the host is read once, at the end.
import type { CollatedBatch } from '../data/batch.js';
import { NanLossError } from '../native/errors.js';
import { AdamW } from '../optim/adamw.js';
import { clipGradNorm } from '../optim/clip_grad.js';
import { stack } from '../ops/shape.js';
import { full } from '../tensor/creation.js';
import { scope } from '../tensor/scope.js';
import { argTypeError, expectMethods, expectObject } from '../tensor/args.js';
import type { Tensor } from '../tensor/tensor.js';
import { applyOptimScheduler, studentParamGroups, type SSLParamGroup } from './param_groups.js';
import type { SSLMetaArch, TeacherGlobal } from './ssl_meta_arch.js';
import { Schedule, type TrainSchedules } from './schedules.js';

/** The schedule values of one iteration (official names in `train.py`: lr, wd, mom, teacher_temp, last_layer_lr). */
export interface IterationValues {
  lr: number;
  wd: number;
  momentum: number;
  teacherTemp: number;
  lastLayerLr: number;
}

/** Adds the time since `t` to `timings[key]` (when timing) and returns now. */
function lap(timings: Record<string, number> | undefined, key: string, t: number): number {
  const now = performance.now();
  if (timings) timings[key] = (timings[key] ?? 0) + (now - t);
  return now;
}

const SCHEDULE_KEYS = ['lr', 'wd', 'momentum', 'teacherTemp', 'lastLayerLr'] as const;

/** The values of `schedules` at iteration `it`. */
export function scheduleValues(s: TrainSchedules, it: number): IterationValues {
  expectObject('scheduleValues', 'schedules', s);
  for (const k of SCHEDULE_KEYS)
    if (!(s[k] instanceof Schedule)) throw argTypeError('scheduleValues', `schedules.${k}`, 'a Schedule (see buildSchedulers)', s[k]);
  return { lr: s.lr.at(it), wd: s.wd.at(it), momentum: s.momentum.at(it), teacherTemp: s.teacherTemp.at(it), lastLayerLr: s.lastLayerLr.at(it) };
}

/** The optimizer config keys (official names). */
export interface OptimConfig {
  layerwise_decay: number;
  patch_embed_lr_mult: number;
  dino_head_wd_multiplier: number;
  multi_tensor_optim: boolean;
  adamw_beta1: number;
  adamw_beta2: number;
  clip_grad: number;
}

/** AdamW over the student's parameter groups (official `train.py::build_optimizer` + `get_params_groups`). */
export function buildOptimizer(model: SSLMetaArch, optim: OptimConfig): AdamW & { paramGroups: (SSLParamGroup & { lr: number; weightDecay: number })[] } {
  expectMethods('buildOptimizer', 'model', model, 'an SSLMetaArch', ['studentSubmodules']);
  expectObject('buildOptimizer', 'optim', optim);
  const groups = studentParamGroups(model.studentSubmodules(), {
    lrDecayRate: optim.layerwise_decay,
    patchEmbedLrMult: optim.patch_embed_lr_mult,
    dinoHeadWdMultiplier: optim.dino_head_wd_multiplier,
    fuse: optim.multi_tensor_optim,
  });
  return new AdamW(groups, { betas: [optim.adamw_beta1, optim.adamw_beta2] }) as AdamW & {
    paramGroups: (SSLParamGroup & { lr: number; weightDecay: number })[];
  };
}

/** Metrics of one iteration, read from the device in one transfer. */
export interface IterationMetrics {
  iteration: number;
  total_loss: number;
  dino_local_crops_loss: number;
  dino_global_crops_loss: number;
  koleo_loss: number;
  ibot_loss: number;
  dino_local_loss_weight: number;
  gram_loss?: number;
  gram_loss_weight?: number;
  /** Gradient norm before clipping of each student submodule (`backbone_grad_norm`, …). */
  grad_norms: Record<string, number>;
  lr: number;
  wd: number;
  mom: number;
  teacher_temp: number;
  last_layer_lr: number;
  local_batch_size: number;
  global_batch_size: number;
  /** Whether the optimizer step and the EMA update were applied (false when the loss was not finite). */
  stepped: boolean;
  [extra: string]: unknown;
}

export interface IterationOptions {
  iteration: number;
  values: IterationValues;
  /** `optim.clip_grad` (0 or null: no clipping, and no norms reported). */
  clipGrad: number | null;
  /** Consecutive non-finite losses seen before this iteration (for the guard). */
  nonFiniteStreak?: number;
  /** Stop after this many consecutive non-finite losses (official: more than 2 aborts). Default 3. */
  maxNonFinite?: number;
  /** Targets of a frozen distillation teacher (shared by every student of the batch) instead of the EMA teacher's. */
  teacherOutput?: TeacherGlobal;
  /** Called after backward, before clipping (to inspect or log raw gradients). */
  afterBackward?: () => void;
  /** Filled with milliseconds per phase (teacher, student_forward, losses, backward, clip, metrics_read, optimizer, ema). */
  timings?: Record<string, number>;
}

/**
 * One whole iteration. A non-finite total loss skips the optimizer step and the EMA (the weights stay as they were,
 * unlike the official loop, which steps anyway) and counts towards `maxNonFinite`, after which a `NanLossError`
 * names the terms that went bad.
 */
export function trainIteration(model: SSLMetaArch, optimizer: AdamW, batch: CollatedBatch, o: IterationOptions): IterationMetrics {
  expectMethods('trainIteration', 'model', model, 'an SSLMetaArch', ['forwardBackward']);
  expectMethods('trainIteration', 'optimizer', optimizer, 'an AdamW', ['zeroGrad', 'step']);
  expectObject('trainIteration', 'batch', batch);
  expectObject('trainIteration', 'options', o);
  const v = expectObject<IterationOptions['values']>('trainIteration', 'options.values', o.values);
  applyOptimScheduler(optimizer.paramGroups, { lr: v.lr, wd: v.wd, lastLayerLr: v.lastLayerLr });
  optimizer.zeroGrad();
  const read = scope('trainIteration', () => {
    const r = model.forwardBackward(batch, { teacherTemp: v.teacherTemp, iteration: o.iteration, teacherOutput: o.teacherOutput, timings: o.timings });
    o.afterBackward?.();
    let t = performance.now();
    const names: string[] = [];
    const values: Tensor[] = [];
    const dev = r.loss.device;
    // A device-side fill (no host-to-device copy, which on CUDA would wait for the stream).
    const scalar = (x: number) => full([], x, { dtype: 'float32', device: dev });
    for (const [k, t] of Object.entries(r.lossDict)) {
      names.push(k);
      values.push(typeof t === 'number' ? scalar(t) : (t as Tensor).detach().float());
    }
    // Data-parallel: the loss terms reported are their means over the ranks (the one-process values of the global
    // batch; official do_train logs all-reduced losses), so every rank takes the same non-finite decision.
    let totalLoss = r.loss.float();
    if (model.group.worldSize > 1) {
      const W = model.group.worldSize;
      const reduced = model.group.allReduceSum_(stack([...values, totalLoss])).div(W);
      values.splice(0, values.length, ...values.map((_, i) => reduced.select(0, i)));
      totalLoss = reduced.select(0, values.length);
    }
    if (o.clipGrad) {
      const sharded = model.distributed?.clipGradNorms(o.clipGrad);
      if (sharded) {
        for (const [k, n] of sharded) {
          names.push(`${k}_grad_norm`);
          values.push(n);
        }
      } else {
        for (const [k, m] of model.studentSubmodules()) {
          names.push(`${k}_grad_norm`);
          values.push(clipGradNorm(m.parameters(), o.clipGrad));
        }
      }
    }
    t = lap(o.timings, 'clip', t);
    names.push('total_loss');
    values.push(totalLoss);
    // The one host synchronisation of the step (counted by hostSyncs in the train_step tests): every loss term and
    // gradient norm in one float32 read, whose non-finite entries are the non-finite terms.
    const out = { names, numbers: Array.from(stack(values).toFloat32Array()), B: r.localBatchSize, G: r.globalBatchSize };
    lap(o.timings, 'metrics_read', t);
    return out;
  });
  const byName = new Map(read.names.map((n, i) => [n, read.numbers[i]!]));
  const total = byName.get('total_loss')!;
  const stepped = Number.isFinite(total);
  const streak = stepped ? 0 : (o.nonFiniteStreak ?? 0) + 1;
  if (!stepped) {
    optimizer.zeroGrad();
    const bad = read.names.filter((n, i) => !Number.isFinite(read.numbers[i]) && n !== 'total_loss');
    if (streak >= (o.maxNonFinite ?? 3)) {
      throw new NanLossError(
        `the loss was not finite for ${streak} consecutive iterations (last: iteration ${o.iteration}); non-finite terms: ${bad.join(', ') || 'total_loss'}`,
      );
    }
  } else {
    let t = performance.now();
    optimizer.step();
    t = lap(o.timings, 'optimizer', t);
    model.updateEma(v.momentum);
    lap(o.timings, 'ema', t);
  }
  const gradNorms: Record<string, number> = {};
  for (const [n, x] of byName) if (n.endsWith('_grad_norm')) gradNorms[n.slice(0, -'_grad_norm'.length)] = x;
  const get = (k: string) => byName.get(k)!;
  const metrics: IterationMetrics = {
    iteration: o.iteration,
    total_loss: total,
    dino_local_crops_loss: get('dino_local_crops_loss'),
    dino_global_crops_loss: get('dino_global_crops_loss'),
    koleo_loss: get('koleo_loss'),
    ibot_loss: get('ibot_loss'),
    dino_local_loss_weight: get('dino_local_loss_weight'),
    grad_norms: gradNorms,
    lr: v.lr,
    wd: v.wd,
    mom: v.momentum,
    teacher_temp: v.teacherTemp,
    last_layer_lr: v.lastLayerLr,
    local_batch_size: read.B,
    global_batch_size: read.G,
    stepped,
    nonFiniteStreak: streak,
  };
  if (byName.has('gram_loss')) {
    metrics.gram_loss = get('gram_loss');
    metrics.gram_loss_weight = get('gram_loss_weight');
  }
  for (const [n, x] of byName) if (n.startsWith('stats_only/')) metrics[n] = x;
  return metrics;
}
