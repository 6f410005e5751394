// Runs an official whole-training-step fixture (test/fixtures/reference/train_step_*.{json,safetensors}: see the
// README there) through the public single-step API: the config is the default training config with the fixture's
// dotlist overrides, the student starts from `init.student.*`, and each step of the JSON is one `trainIteration` with
// the JSON's schedule values on the fixture's collated batch.
import { readFile } from 'node:fs/promises';

import type { CollatedBatch } from '../../../src/data/batch.js';
import { keep, type Tensor } from '../../../src/index.js';
import { SSLMetaArch } from '../../../src/train/ssl_meta_arch.js';
import { gramLoadDue, gramRefreshDue } from '../../../src/train/gram.js';
import { DistillationTeacher } from '../../../src/train/multidist_meta_arch.js';
import { buildOptimizer, trainIteration, type IterationMetrics } from '../../../src/train/train.js';
import { loadSSLConfig, type SSLConfig } from '../../../src/train/config.js';
import { FIXTURES, loadFixture } from '../models/helpers.js';

export interface StepFixtureJson {
  name: string;
  overrides: string[];
  upperbound: number;
  teacher_temp: number;
  lr: number;
  wd: number;
  last_layer_lr: number;
  momentum: number;
  clip_grad: number;
  steps: Record<string, unknown>[];
  gram_events?: [string, number][];
  /** Distillation fixtures: the teacher's config is the fixture's with these overrides (its weights: init.distill_teacher.*). */
  distill_teacher_overrides?: string[] | null;
  param_groups: { lr_multiplier: number; wd_multiplier: number; is_last_layer: boolean; n_params: number }[];
}

export interface StepFixtureRun {
  json: StepFixtureJson;
  cfg: SSLConfig;
  tensors: Map<string, Tensor>;
  model: SSLMetaArch;
  optimizer: ReturnType<typeof buildOptimizer>;
  batch: CollatedBatch;
  /** Gram-teacher refreshes done so far. */
  gramUpdates: number;
  /** Gram-teacher loads/refreshes as the official `gram_events` list: ["load", it] before it, ["update", it] after it. */
  gramEvents: [string, number][];
  /** The frozen distillation teacher of a distillation fixture. */
  distillTeacher?: DistillationTeacher;
}

/** Loads a fixture and builds the model, optimizer and batch it describes (the caller disposes with `disposeRun`). */
export async function loadStepFixture(name: string): Promise<StepFixtureRun> {
  const json = JSON.parse(await readFile(`${FIXTURES}${name}.json`, 'utf8')) as StepFixtureJson;
  const tensors = await loadFixture(`${name}.safetensors`);
  const cfg = await loadSSLConfig('ssl_default', json.overrides);
  const model = new SSLMetaArch(cfg);
  const init = new Map<string, Tensor>();
  for (const [k, t] of tensors) if (k.startsWith('init.student.')) init.set(k.slice('init.student.'.length), t);
  model.loadStudentStateDict(init);
  const optimizer = buildOptimizer(model, cfg.optim);
  // a separate gram teacher from gram.ckpt: the fixture holds the loaded backbone (official init_weights)
  const gramInit = new Map<string, Tensor>();
  for (const [k, t] of tensors) if (k.startsWith('init.gram_teacher.')) gramInit.set(k.slice('init.gram_teacher.'.length), t);
  if (gramInit.size > 0) {
    model.gramTeacher!.loadStateDict(gramInit, { strict: true });
    model.gramTeacherInitialized = true;
  }
  // crops may be stored as float16 (`--half-crops`): the step runs on their float32 values
  for (const [k, t] of tensors) {
    if (k.startsWith('batch.') && k.endsWith('_crops') && t.dtype === 'float16') {
      tensors.set(k, keep(t.float()));
      t.dispose();
    }
  }
  const b = (k: string) => tensors.get(`batch.${k}`)!;
  const batch: CollatedBatch = {
    collated_global_crops: b('collated_global_crops'),
    collated_local_crops: b('collated_local_crops'),
    collated_masks: b('collated_masks'),
    mask_indices_list: b('mask_indices_list'),
    masks_weight: b('masks_weight'),
    n_masked_patches: b('n_masked_patches'),
    upperbound: json.upperbound,
  };
  if (tensors.has('batch.collated_gram_teacher_crops')) batch.collated_gram_teacher_crops = b('collated_gram_teacher_crops');
  let distillTeacher: DistillationTeacher | undefined;
  if (json.distill_teacher_overrides) {
    const tcfg = await loadSSLConfig('ssl_default', [...json.overrides, ...json.distill_teacher_overrides, 'distillation.enabled=false']);
    distillTeacher = new DistillationTeacher(tcfg);
    const sd = new Map<string, Tensor>();
    for (const [k, t] of tensors) if (k.startsWith('init.distill_teacher.')) sd.set(k.slice('init.distill_teacher.'.length), t);
    distillTeacher.model.loadStateDict(sd, { strict: true });
  }
  return { json, cfg, tensors, model, optimizer, batch, gramUpdates: 0, gramEvents: [], distillTeacher };
}

/**
 * One step of the fixture (iteration `it`) with the JSON's schedule values; `grads` (if given) receives copies of the
 * student's gradients before clipping, keyed `student.<name>`.
 */
export function runFixtureStep(run: StepFixtureRun, it: number, grads?: Map<string, Tensor>): IterationMetrics {
  const j = run.json;
  // the gram teacher's load before and refresh after the iteration, as dinov3/train/train.py::do_train
  if (gramLoadDue(run.cfg, it)) {
    run.model.gramLoadEmaTeacher();
    run.gramEvents.push(['load', it]);
  }
  // distillation: the frozen teacher's Sinkhorn-Knopp targets (official MultiDistillationMetaArch / distillation path)
  const dt = run.distillTeacher;
  const teacherOutput = dt ? keepTargets(dt.targets(dt.logits(run.batch), j.teacher_temp)) : undefined;
  const m = trainIteration(run.model, run.optimizer, run.batch, {
    teacherOutput,
    iteration: it,
    values: { lr: j.lr, wd: j.wd, momentum: j.momentum, teacherTemp: j.teacher_temp, lastLayerLr: j.last_layer_lr },
    clipGrad: run.cfg.optim.clip_grad,
    afterBackward: grads
      ? () => {
          for (const [k, p] of run.model.student.namedParameters('student')) if (p.grad) grads.set(k, keep(p.grad.clone()));
        }
      : undefined,
  });
  if (teacherOutput) for (const t of Object.values(teacherOutput)) t.dispose();
  if (run.model.gramTeacher && gramRefreshDue(run.cfg, it, run.gramUpdates)) {
    run.model.updateGram();
    run.gramUpdates++;
    run.gramEvents.push(['update', it]);
  }
  return m;
}

function keepTargets<T extends object>(o: T): T {
  for (const t of Object.values(o) as Tensor[]) keep(t);
  return o;
}

export function disposeRun(run: StepFixtureRun): void {
  run.distillTeacher?.dispose();
  run.optimizer.dispose();
  run.model.dispose();
  for (const t of run.tensors.values()) t.dispose();
}
