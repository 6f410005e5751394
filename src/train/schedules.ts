// Per-iteration schedules of lr, weight decay, teacher momentum, teacher temperature and the last-layer lr
// (official `dinov3/train/cosine_lr_scheduler.py` and `train.py::build_schedulers` / `build_schedulers_v2`). Values
// are precomputed in float64 like the official numpy arrays.
import { ConfigError } from '../native/errors.js';
import { argTypeError, expectConfig, expectObject, show } from '../tensor/args.js';

/** A precomputed schedule: `at(it)` is the value at iteration `it` (the last value past the end). */
export class Schedule {
  constructor(
    readonly values: Float64Array,
    readonly finalValue: number = values?.length ? values[values.length - 1]! : 0,
  ) {
    if (!(values instanceof Float64Array)) throw argTypeError('Schedule', 'values', 'a Float64Array', values);
    if (typeof finalValue !== 'number') throw argTypeError('Schedule', 'finalValue', 'a number', finalValue);
  }
  get length(): number {
    return this.values.length;
  }
  at(it: number): number {
    if (!Number.isInteger(it) || it < 0) throw new ConfigError(`schedule index must be a non-negative integer, got ${show(it)}`);
    return it < this.values.length ? this.values[it]! : this.finalValue;
  }
  /** A constant schedule. */
  static constant(value: number, length = 1): Schedule {
    return new Schedule(new Float64Array(length).fill(value), value);
  }
}

/** numpy.linspace(start, stop, num, endpoint). */
function linspace(start: number, stop: number, num: number, endpoint = true): Float64Array {
  const out = new Float64Array(Math.max(num, 0));
  if (num <= 0) return out;
  const div = endpoint ? num - 1 : num;
  const step = div > 0 ? (stop - start) / div : 0;
  for (let i = 0; i < num; i++) out[i] = start + i * step;
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

function checkIters(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) throw new ConfigError(`${name} must be a non-negative integer, got ${show(v)}`);
}

export interface CosineSchedulerOptions {
  baseValue: number;
  finalValue: number;
  totalIters: number;
  warmupIters?: number;
  startWarmupValue?: number;
  freezeIters?: number;
  truncExtra?: number;
}

/**
 * Schedules v1 (official `cosine_lr_scheduler.py::CosineScheduler`): `freezeIters` zeros, a linear warmup from
 * `startWarmupValue` to `baseValue` (endpoint included), then a half cosine to `finalValue`; with `truncExtra` > 0
 * the cosine is computed over (1 + truncExtra)× the steps, truncated and rescaled to end at `finalValue`.
 */
export function cosineScheduler(o: CosineSchedulerOptions): Schedule {
  expectObject('cosineScheduler', 'options', o);
  const warmup = o.warmupIters ?? 0;
  const freeze = o.freezeIters ?? 0;
  const trunc = o.truncExtra ?? 0;
  checkIters('totalIters', o.totalIters);
  checkIters('warmupIters', warmup);
  checkIters('freezeIters', freeze);
  const cosineSteps = o.totalIters - warmup - freeze;
  if (cosineSteps < 0) throw new ConfigError(`warmup (${warmup}) + freeze (${freeze}) iterations exceed the total (${o.totalIters})`);
  const out = new Float64Array(o.totalIters);
  const warm = linspace(o.startWarmupValue ?? 0, o.baseValue, warmup);
  out.set(warm, freeze);
  const b = o.baseValue;
  const f = o.finalValue;
  if (trunc === 0) {
    for (let i = 0; i < cosineSteps; i++) out[freeze + warmup + i] = f + 0.5 * (b - f) * (1 + Math.cos((Math.PI * i) / cosineSteps));
  } else {
    const xs = linspace(0, Math.PI, Math.trunc((1 + trunc) * cosineSteps)).subarray(0, cosineSteps);
    const c = Array.from(xs, (x) => (Math.cos(x) + 1) / 2);
    const last = c[c.length - 1] ?? 0;
    c.forEach((v, i) => (out[freeze + warmup + i] = ((v - last) / (1 - last)) * (b - f) + f));
  }
  return new Schedule(out, f);
}

export interface WarmupCosineOptions {
  start: number;
  peak: number;
  end: number;
  warmupIterations: number;
  totalIterations: number;
  /** Iterations of the cosine part (default: all after the warmup); the rest stays at `end`. */
  cosineIterations?: number | null;
}

/**
 * Schedules v2 (official `cosine_lr_scheduler.py::linear_warmup_cosine_decay`): a linear warmup from `start` towards
 * `peak` (endpoint excluded), a cosine from `peak` to `end` over `cosineIterations` (endpoints included), then
 * constant `end`.
 */
export function linearWarmupCosineDecay(o: WarmupCosineOptions): Schedule {
  expectObject('linearWarmupCosineDecay', 'options', o);
  checkIters('warmupIterations', o.warmupIterations);
  checkIters('totalIterations', o.totalIterations);
  const cosineIters = o.cosineIterations ?? o.totalIterations - o.warmupIterations;
  checkIters('cosineIterations', cosineIters);
  const remaining = o.totalIterations - cosineIters - o.warmupIterations;
  if (remaining < 0) {
    throw new ConfigError(`warmup (${o.warmupIterations}) + cosine (${cosineIters}) iterations exceed the total (${o.totalIterations})`);
  }
  const out = new Float64Array(o.totalIterations);
  out.set(linspace(o.start, o.peak, o.warmupIterations, false), 0);
  const cos = linspace(0, Math.PI, cosineIters);
  for (let i = 0; i < cosineIters; i++) out[o.warmupIterations + i] = (o.peak - o.end) * ((Math.cos(cos[i]!) + 1) / 2) + o.end;
  out.fill(o.end, o.warmupIterations + cosineIters);
  return new Schedule(out, o.end);
}

/** The schedules one iteration reads. */
export interface TrainSchedules {
  lr: Schedule;
  wd: Schedule;
  momentum: Schedule;
  teacherTemp: Schedule;
  lastLayerLr: Schedule;
}

/** The config keys the schedules read (official names; a subset of the training config). */
export interface ScheduleConfig {
  train: { OFFICIAL_EPOCH_LENGTH: number; batch_size_per_gpu: number };
  optim: {
    epochs: number;
    lr: number | null;
    min_lr: number | null;
    warmup_epochs: number | null;
    weight_decay: number | null;
    weight_decay_end: number | null;
    schedule_trunc_extra: number | null;
    freeze_last_layer_epochs: number | null;
    scaling_rule?: string | null;
  };
  teacher: {
    momentum_teacher: number | null;
    final_momentum_teacher: number | null;
    teacher_temp: number | null;
    warmup_teacher_temp: number | null;
    warmup_teacher_temp_epochs: number | null;
  };
  schedules?: SchedulesV2Config | null;
}

export interface V2Entry {
  start: number;
  peak: number;
  end: number;
  warmup_epochs: number;
  cosine_epochs?: number | null;
  freeze_last_layer_epochs?: number;
}
export interface SchedulesV2Config {
  lr: V2Entry;
  weight_decay: V2Entry;
  momentum: V2Entry;
  teacher_temp: V2Entry;
}

/**
 * The lr scaling of schedules v2 (official `train.py::build_schedulers_v2`): `linear_wrt_256` multiplies by
 * B_global / 256, `sqrt_wrt_1024` by 4·sqrt(B_global / 1024); anything else leaves the lr unchanged.
 */
export function lrScale(rule: string | null | undefined, globalBatchSize: number): number {
  if (rule === 'linear_wrt_256') return globalBatchSize / 256;
  if (rule === 'sqrt_wrt_1024') return 4 * Math.sqrt(globalBatchSize / 1024);
  return 1;
}

/**
 * Every schedule of a run (official `train.py::build_schedulers`: v2 when the config has `schedules`, else v1). The
 * v1 path applies no lr scaling (the official code scales v1 lrs in the config before, see `applyScalingRules`).
 */
export function buildSchedulers(cfg: ScheduleConfig, worldSize = 1): TrainSchedules {
  expectConfig('buildSchedulers', 'cfg', cfg, ['train', 'optim']);
  const epochLen = cfg.train.OFFICIAL_EPOCH_LENGTH;
  const total = cfg.optim.epochs * epochLen;
  if (cfg.schedules) {
    const s = cfg.schedules;
    const v2 = (e: V2Entry, scale = 1) =>
      linearWarmupCosineDecay({
        start: e.start,
        peak: e.peak * scale,
        end: e.end * scale,
        warmupIterations: Math.round(epochLen * e.warmup_epochs),
        totalIterations: total,
        cosineIterations: e.cosine_epochs == null ? null : Math.round(epochLen * e.cosine_epochs),
      });
    const scale = lrScale(cfg.optim.scaling_rule, cfg.train.batch_size_per_gpu * worldSize);
    const lr = v2(s.lr, scale);
    const last = new Float64Array(lr.values);
    last.fill(0, 0, Math.min(last.length, Math.round(epochLen * (s.lr.freeze_last_layer_epochs ?? 0))));
    return { lr, wd: v2(s.weight_decay), momentum: v2(s.momentum), teacherTemp: v2(s.teacher_temp), lastLayerLr: new Schedule(last, lr.finalValue) };
  }
  const v1 = (section: 'optim' | 'teacher', key: string): number => {
    const v = (cfg[section] as Record<string, number | null | undefined>)[key];
    if (typeof v !== 'number') throw new ConfigError(`${section}.${key} must be a number when the config has no "schedules" (schedules v1)`);
    return v;
  };
  const o = {
    lr: v1('optim', 'lr'),
    min_lr: v1('optim', 'min_lr'),
    warmup_epochs: v1('optim', 'warmup_epochs'),
    weight_decay: v1('optim', 'weight_decay'),
    weight_decay_end: v1('optim', 'weight_decay_end'),
    freeze_last_layer_epochs: v1('optim', 'freeze_last_layer_epochs'),
  };
  const t = {
    momentum_teacher: v1('teacher', 'momentum_teacher'),
    final_momentum_teacher: v1('teacher', 'final_momentum_teacher'),
    teacher_temp: v1('teacher', 'teacher_temp'),
    warmup_teacher_temp: v1('teacher', 'warmup_teacher_temp'),
    warmup_teacher_temp_epochs: v1('teacher', 'warmup_teacher_temp_epochs'),
  };
  const trunc = cfg.optim.schedule_trunc_extra ?? 0;
  const lrOpts = { baseValue: o.lr, finalValue: o.min_lr, totalIters: total, warmupIters: Math.round(o.warmup_epochs * epochLen), truncExtra: trunc };
  const lr = cosineScheduler(lrOpts);
  const last = new Float64Array(lr.values);
  last.fill(0, 0, Math.min(last.length, Math.round(o.freeze_last_layer_epochs * epochLen)));
  const tempIters = Math.round(t.warmup_teacher_temp_epochs * epochLen);
  return {
    lr,
    wd: cosineScheduler({ baseValue: o.weight_decay, finalValue: o.weight_decay_end, totalIters: total, truncExtra: trunc }),
    momentum: cosineScheduler({ baseValue: t.momentum_teacher, finalValue: t.final_momentum_teacher, totalIters: total, truncExtra: trunc }),
    teacherTemp: cosineScheduler({
      baseValue: t.teacher_temp,
      finalValue: t.teacher_temp,
      totalIters: tempIters,
      warmupIters: tempIters,
      startWarmupValue: t.warmup_teacher_temp,
    }),
    lastLayerLr: new Schedule(last, lr.finalValue),
  };
}
