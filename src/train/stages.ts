// Stage chaining (the official 7B recipe: `dinov3/configs/train/dinov3_vit7b16_{pretrain,gram_anchor,high_res_adapt}.yaml`).
// A stage either continues the previous stage's run (same folder, resumed with the new config: the iteration counter
// carries on and the new schedules apply from it, as gram_anchor continues pretrain) or restarts the iteration
// counter from the previous stage's teacher (`student.resume_from_teacher_chkpt`, and `gram.ckpt` for a separate gram
// teacher, as high_res_adapt does), in a sub-folder of the same run folder.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

import { readCheckpoint } from '../checkpoint/backbone.js';
import { tensorSource, type SourceDict } from '../checkpoint/sources.js';
import { ConfigError, StateDictError } from '../native/errors.js';
import { expectMethods, expectPath } from '../tensor/args.js';
import { noGrad } from '../tensor/grad_mode.js';
import type { Tensor } from '../tensor/tensor.js';
import { loadLatestCheckpoint } from './checkpointer.js';
import { mergeConfig, parseSSLConfig, type SSLConfig, type SSLConfigInput } from './config.js';
import type { SSLMetaArch, SSLModel } from './ssl_meta_arch.js';

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Official keys of a teacher checkpoint with wrappers (`teacher.`, `model.`, `module.`, `_orig_mod.`) removed and the
 * loss centres dropped (official skip_load_keys `dino_loss.center`, `ibot_patch_loss.center`). */
function unwrapTeacher(sd: SourceDict): SourceDict {
  let entries = [...sd];
  for (const w of ['teacher.', 'model.', 'state_dict.'])
    if (entries.length && entries.every(([k]) => k.startsWith(w))) entries = entries.map(([k, v]) => [k.slice(w.length), v]);
  entries = entries.map(([k, v]) => [k.replace(/(^|\.)((module|_orig_mod)\.)+/g, '$1'), v]);
  return new Map(entries.filter(([k]) => !k.includes('dino_loss.center') && !k.includes('ibot_patch_loss.center')));
}

/**
 * Reads a teacher checkpoint (a run folder of this trainer: its latest checkpoint's teacher; a `.pth` with
 * `{"teacher": …}`; a `.safetensors` file) as official keys (`backbone.*`, `dino_head.*`, `ibot_head.*`, or bare
 * backbone keys for a backbone export). The caller calls `release()` when done.
 */
export async function readTeacherCheckpoint(source: string): Promise<{ sd: SourceDict; release: () => void }> {
  expectPath('readTeacherCheckpoint', 'source', source);
  if ((await isDir(source)) && (await isDir(join(source, 'ckpt')))) {
    const ck = await loadLatestCheckpoint(source);
    if (!ck) throw new ConfigError(`${source}: the run folder has no complete checkpoint to take a teacher from`);
    const teacher = ck.tensors.teacher;
    if (!teacher) {
      ck.dispose();
      throw new ConfigError(`${ck.path}: no "teacher" tensors in the checkpoint`);
    }
    return { sd: unwrapTeacher(new Map([...teacher].map(([k, t]) => [k, tensorSource(t)]))), release: () => ck.dispose() };
  }
  const { sd } = await readCheckpoint(source);
  return { sd: unwrapTeacher(sd), release: () => {} };
}

/**
 * Loads a teacher checkpoint (see `readTeacherCheckpoint`) into an `SSLModel` (official `init_fsdp_model_from_checkpoint`:
 * backbone and both heads, strict, loss centres skipped). A backbone-only checkpoint (keys without `backbone.`, e.g.
 * an exported `teacher_checkpoint.safetensors` or released weights) sets the backbone alone and keeps the heads:
 * `heads` says which happened.
 * @throws StateDictError naming missing/unexpected/mis-shaped keys
 */
export async function loadSSLModelCheckpoint(model: SSLModel, source: string, what = 'checkpoint'): Promise<{ heads: boolean }> {
  const { sd, release } = await readTeacherCheckpoint(source);
  try {
    const withHeads = [...sd.keys()].some((k) => k.startsWith('backbone.'));
    const target = withHeads ? model : model.backbone;
    const own = target.stateDict();
    const missing = [...own.keys()].filter((k) => !sd.has(k));
    const unexpected = [...sd.keys()].filter((k) => !own.has(k));
    const mismatched = [...own].filter(([k, t]) => sd.has(k) && sd.get(k)!.shape.join(',') !== t.shape.join(',')).map(([k]) => k);
    if (missing.length || unexpected.length || mismatched.length) {
      const list = (n: string, a: string[]) => (a.length ? ` ${n}: ${a.slice(0, 5).join(', ')}${a.length > 5 ? ` (+${a.length - 5})` : ''};` : '');
      throw new StateDictError(
        `${what} ${source} does not match the model${list('missing', missing)}${list('unexpected', unexpected)}${list('mis-shaped', mismatched)}`,
        { missing, unexpected, mismatched: mismatched.map((key) => ({ key, expected: own.get(key)!.shape, received: sd.get(key)!.shape })) },
      );
    }
    noGrad(() => {
      for (const [k, t] of own) {
        const v: Tensor = sd.get(k)!.load();
        try {
          t.copy_(v);
        } finally {
          v.dispose();
        }
      }
    });
    return { heads: withHeads };
  } finally {
    release();
  }
}

/**
 * Official `SSLMetaArch.init_weights` with `student.resume_from_teacher_chkpt`: the student takes the checkpoint's
 * teacher (backbone and both heads; strict; a backbone-only file sets the backbone), then the EMA teacher copies the
 * student.
 * @throws StateDictError naming missing/unexpected/mis-shaped keys
 */
export async function initStudentFromTeacherCheckpoint(model: SSLMetaArch, source: string): Promise<void> {
  expectMethods('initStudentFromTeacherCheckpoint', 'model', model, 'an SSLMetaArch', ['initWeights']);
  expectPath('initStudentFromTeacherCheckpoint', 'source', source);
  await loadSSLModelCheckpoint(model.student, source, 'student.resume_from_teacher_chkpt');
  model.initWeights();
}

/** How a stage starts from the previous one. */
export type StageStart = 'continue' | 'restart';

/** One stage of a chained recipe: its changes to the previous stage's config (the first: to the base) and how it starts. */
export interface StageSpec {
  name: string;
  start: StageStart;
  config: SSLConfigInput;
}

/**
 * The config and run folder of stage `stage` of a chain rooted at `runDir`: a `continue` stage trains in the previous
 * stage's folder (resume), a `restart` stage in `<runDir>/<name>` with `student.resume_from_teacher_chkpt` and (for a
 * separate gram teacher without `gram.ckpt`) `gram.ckpt` set to the previous stage's folder. Every stage after the
 * first resumes its own folder when that already holds checkpoints (a re-run continues where it stopped).
 */
export function stageRun(
  stages: readonly StageSpec[],
  index: number,
  runDir: string,
  base: SSLConfigInput = {},
): { cfg: SSLConfig; outDir: string; resume: boolean } {
  const folders: string[] = [];
  for (let i = 0; i <= index; i++) {
    const s = stages[i];
    if (!s) throw new ConfigError(`stageRun: no stage ${i} (the chain has ${stages.length})`);
    if (i === 0 && s.start !== 'continue') throw new ConfigError(`stage "${s.name}": the first stage cannot restart from a previous one`);
    folders.push(i === 0 ? runDir : s.start === 'continue' ? folders[i - 1]! : join(runDir, s.name));
  }
  const stage = stages[index]!;
  // each stage changes the previous one's config (the official stage files restate the earlier stages' settings)
  let input = base as unknown as Record<string, Record<string, unknown>>;
  for (let i = 0; i <= index; i++) input = mergeConfig(input, stages[i]!.config) as typeof input;
  if (stage.start === 'restart') {
    const prev = folders[index - 1]!;
    const extra: Record<string, Record<string, unknown>> = { student: { resume_from_teacher_chkpt: prev } };
    const probe = parseSSLConfig(input);
    if (probe.gram.use_loss && !probe.gram.ema_teacher && (probe.gram.ckpt == null || probe.gram.ckpt === 'ignore')) extra.gram = { ckpt: prev };
    input = mergeConfig(input, extra) as typeof input;
  }
  return { cfg: parseSSLConfig(input), outDir: folders[index]!, resume: index > 0 };
}
