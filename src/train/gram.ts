// The gram teacher's life cycle (official `dinov3/train/train.py::do_train` and `ssl_meta_arch.py::init_weights`):
// loaded from a checkpoint at init (`gram.ckpt`), taken from the EMA teacher before iteration `gram.it_load_ema_teacher`,
// refreshed from the EMA teacher after iterations whose successor is a multiple of `gram.update_frequency` from
// `gram.it_first_update` on, at most `gram.max_updates` times; and the number of refreshes a resumed run counts as done.
import { loadBackboneStateDict, stripTrainingPrefixes } from '../checkpoint/backbone.js';
import type { SourceDict } from '../checkpoint/sources.js';
import { ConfigError, TorchRangeError } from '../native/errors.js';
import { interpolate } from '../ops/nn.js';
import { flatten, unflatten } from '../ops/shape.js';
import { scope } from '../tensor/scope.js';
import { expectConfig, expectInt, expectObject, expectPath, expectPositiveInt, expectString, expectTensorArg } from '../tensor/args.js';
import type { Tensor } from '../tensor/tensor.js';
import type { SSLMetaArch } from './ssl_meta_arch.js';
import { readTeacherCheckpoint } from './stages.js';

/** The gram keys these functions read (official names). */
export interface GramScheduleConfig {
  gram: {
    use_loss: boolean;
    ema_teacher: boolean;
    ckpt: string | null;
    it_load_ema_teacher: number;
    rep_update: boolean;
    update_frequency: number;
    it_first_update: number;
    max_updates: number | null;
  };
}

/** The config sections the gram schedule reads. */
const GRAM_SECTIONS = ['gram'] as const;

/** Whether a separate gram teacher exists (official `has_gram_teacher`: the gram loss without `gram.ema_teacher`). */
export function hasGramTeacher(cfg: GramScheduleConfig): boolean {
  expectConfig('hasGramTeacher', 'cfg', cfg, GRAM_SECTIONS);
  return cfg.gram.use_loss && !cfg.gram.ema_teacher;
}

/** Whether the EMA teacher is copied into the gram teacher before iteration `it` (official: `gram_it_load_ema_teacher == it`). */
export function gramLoadDue(cfg: GramScheduleConfig, it: number): boolean {
  expectConfig('gramLoadDue', 'cfg', cfg, GRAM_SECTIONS);
  expectInt('gramLoadDue', 'it', it);
  return hasGramTeacher(cfg) && cfg.gram.it_load_ema_teacher === it;
}

/**
 * Whether the gram teacher is refreshed from the EMA teacher after iteration `it`, given the refreshes done so far
 * (official do_train: rep_update, `it + 1 >= it_first_update`, `(it + 1) % update_frequency == 0`, below max_updates).
 */
export function gramRefreshDue(cfg: GramScheduleConfig, it: number, updatesSoFar: number): boolean {
  expectConfig('gramRefreshDue', 'cfg', cfg, GRAM_SECTIONS);
  expectInt('gramRefreshDue', 'it', it);
  expectInt('gramRefreshDue', 'updatesSoFar', updatesSoFar);
  const g = cfg.gram;
  return (
    hasGramTeacher(cfg) &&
    g.rep_update &&
    it + 1 >= g.it_first_update &&
    (it + 1) % g.update_frequency === 0 &&
    (g.max_updates == null || updatesSoFar < g.max_updates)
  );
}

/**
 * The refresh count a run resumed at `startIter` starts from, recomputed from the (current) config as the official
 * `do_train` does: `ceil((startIter + 1 - it_first_update) / update_frequency)` when the gram loss, a gram teacher and
 * rep_update are on and `0 < startIter >= it_first_update`, else 0. It assumes a refresh happened at
 * `it_first_update` itself: exact when it_first_update is a positive multiple of update_frequency, one more than
 * the refreshes actually done otherwise (this only matters through `max_updates`). Recounting rather than restoring
 * a saved counter is what lets a stage with another gram config continue a run (stage chaining).
 */
export function officialGramUpdatesBefore(cfg: GramScheduleConfig, startIter: number): number {
  expectConfig('officialGramUpdatesBefore', 'cfg', cfg, GRAM_SECTIONS);
  expectInt('officialGramUpdatesBefore', 'startIter', startIter);
  const g = cfg.gram;
  if (!(hasGramTeacher(cfg) && g.rep_update && startIter > 0 && startIter >= g.it_first_update)) return 0;
  return Math.ceil((startIter + 1 - g.it_first_update) / g.update_frequency);
}

/** The refreshes a straight run does before iteration `startIter` (what a saved counter holds). */
export function gramUpdatesDoneBefore(cfg: GramScheduleConfig, startIter: number): number {
  expectConfig('gramUpdatesDoneBefore', 'cfg', cfg, GRAM_SECTIONS);
  expectInt('gramUpdatesDoneBefore', 'startIter', startIter);
  // Without refreshes at all, skip the count (startIter may be large).
  if (!(hasGramTeacher(cfg) && cfg.gram.rep_update)) return 0;
  let n = 0;
  for (let it = 0; it < startIter; it++) if (gramRefreshDue(cfg, it, n)) n++;
  return n;
}

/**
 * The backbone of a teacher checkpoint (see `readTeacherCheckpoint`) as official backbone keys: heads and loss centres
 * dropped, as `init_fsdp_model_from_checkpoint` with skip_load_keys dino_head/ibot_head/centres does.
 * @throws ConfigError for `ignore` (the placeholder of the official gram_anchor config) or an empty path
 */
export async function readTeacherBackbone(source: string): Promise<{ sd: SourceDict; release: () => void }> {
  expectString('readTeacherBackbone', 'source', source);
  if (source === 'ignore' || source === '') {
    throw new ConfigError(`gram.ckpt is "${source}": give the path of the gram teacher's checkpoint (a run folder, .pth or .safetensors)`);
  }
  const { sd, release } = await readTeacherCheckpoint(source);
  return { sd: stripTrainingPrefixes(sd), release };
}

/**
 * Loads `source` into the gram teacher (official `SSLMetaArch.init_weights` with `gram.ckpt`), marks it initialised.
 * @throws ConfigError without a separate gram teacher; StateDictError when the backbone does not match (strict)
 */
export async function loadGramTeacherCheckpoint(model: SSLMetaArch, source: string): Promise<void> {
  expectObject('loadGramTeacherCheckpoint', 'model', model);
  expectPath('loadGramTeacherCheckpoint', 'source', source);
  const gt = model.gramTeacher;
  if (!gt) throw new ConfigError('loadGramTeacherCheckpoint: this model has no separate gram teacher (gram.use_loss with gram.ema_teacher=false)');
  const { sd, release } = await readTeacherBackbone(source);
  try {
    loadBackboneStateDict(gt.backbone, sd, { strict: true, source });
  } finally {
    release();
  }
  gt.requiresGrad_(false).eval();
  model.gramTeacherInitialized = true;
}

/**
 * Resizes patch tokens [B, N·N, D] on an N×N grid to an Ns×Ns grid (official `get_gram_teacher_output`: the gram
 * teacher's features brought to the student's grid): [B, D, N, N] → interpolate(mode, align_corners=False,
 * antialias) → [B, Ns·Ns, D].
 * @throws TorchRangeError when the token count is not N·N
 */
export function resizePatchTokens(tokens: Tensor, n: number, ns: number, o: { mode: string; antialias: boolean }): Tensor {
  expectTensorArg('resizePatchTokens', 'tokens', tokens);
  expectPositiveInt('resizePatchTokens', 'n', n);
  expectPositiveInt('resizePatchTokens', 'ns', ns);
  expectObject('resizePatchTokens', 'options', o);
  if (tokens.ndim !== 3 || tokens.shape[1] !== n * n) {
    throw new TorchRangeError(
      `resizePatchTokens: expected [B, ${n * n}, D] tokens for a ${n}×${n} grid, received [${tokens.shape.join(', ')}]`,
      'ERR_INVALID_ARG',
    );
  }
  return scope(() => {
    const hw = unflatten(tokens.transpose(-2, -1), -1, [n, n]); // [B, D, N, N]
    const resized = interpolate(hw, { size: [ns, ns], mode: o.mode as 'bicubic', alignCorners: false, antialias: o.antialias });
    return flatten(resized, -2, -1).transpose(-2, -1); // [B, Ns², D]
  });
}
