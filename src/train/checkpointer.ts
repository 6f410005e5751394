// Training-state checkpoints: the one home of the files a run writes to continue exactly where it stopped. Layout
// as `dinov3/checkpointer/checkpointer.py` (`<runDir>/ckpt/<iteration>/`, integer-named folders, the latest one picks
// the resume point, keep-last-N pruning, `<iteration>_keep` copies), written the way `save_checkpoint` does it: into
// a temporary folder that is renamed into place once complete. Here every file is also fsynced before the rename and
// the folder after it, and a manifest with each file's size and SHA-256 is written last, so a checkpoint cut short
// (killed mid-write, truncated, a file missing or altered) is never picked.
//
// A checkpoint holds named groups of tensors (student, teacher, optimizer moments, loss centres, libtorch generator
// states …; one `<group>.safetensors` file each) and one JSON document (iteration, schedules' position, JS RNG
// states, loader position, config …).
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { RawTensor } from '../io/raw_tensor.js';
import { putBackAside, replaceFolder } from '../io/replace_folder.js';
import { atomicWriteFile, readSafetensors, writeSafetensorsFile } from '../io/safetensors.js';
import { CheckpointError, ConfigError } from '../native/errors.js';
import type { AdamWStateDict, ParamGroupState } from '../optim/adamw.js';
import { fromBuffer, type Generator, getRngState, setRngState } from '../tensor/creation.js';
import { scope } from '../tensor/scope.js';
import { expectInt, expectIterable, expectMap, expectMethods, expectObject, expectOptions, expectPath, expectTensorArg, show } from '../tensor/args.js';
import type { Tensor } from '../tensor/tensor.js';

/** Named tensors (a module's `stateDict()`, optimizer moments …). */
export type TensorDict = ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>;

/** What a checkpoint holds: tensor groups and one JSON-serialisable document. */
export interface CheckpointPayload {
  /** Group name (letters, digits, `_`, `-`, `.`) → tensors. Each group is one safetensors file. */
  tensors: Readonly<Record<string, TensorDict>>;
  /** Plain JSON: objects, arrays, strings, finite numbers, booleans, null. */
  json: unknown;
}

export interface SaveCheckpointOptions {
  /** Keep only the newest N checkpoints (checkpointing.max_to_keep); null/undefined keeps all. */
  keepLast?: number | null;
  /** Also keep a hard-linked `<iteration>_keep` copy when (iteration + 1) % keepEvery === 0 (checkpointing.keep_every). */
  keepEvery?: number;
}

export interface ManifestFile {
  bytes: number;
  sha256: string;
}

/** `manifest.json`, written last inside a checkpoint folder. */
export interface CheckpointManifest {
  format: typeof FORMAT;
  version: 1;
  iteration: number;
  created: string;
  groups: string[];
  files: Record<string, ManifestFile>;
}

/** A loaded checkpoint. The tensors are CPU tensors owned by it: `dispose()` frees them. */
export interface LoadedCheckpoint {
  path: string;
  iteration: number;
  manifest: CheckpointManifest;
  tensors: Record<string, Map<string, Tensor>>;
  json: unknown;
  dispose(): void;
  [Symbol.dispose](): void;
}

const FORMAT = 'dinov3-ts/checkpoint';
const MANIFEST = 'manifest.json';
const STATE = 'state.json';
const CKPT_DIR = 'ckpt';
const GROUP = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const INT = /^\d+$/;
const TMP = /^\.tmp-(\d+)-/;
const ASIDE = /^\.tmp-\d+-old-(\d+(?:_keep)?)-[0-9a-f]{12}$/;

/** `<runDir>/ckpt`, where checkpoints live (as `dinov3/train/train.py::do_train`). */
export const checkpointDir = (runDir: string) => join(expectPath('checkpointDir', 'runDir', runDir), CKPT_DIR);

// ---- helpers -----------------------------------------------------------------------------------------------------

const entriesOf = (d: TensorDict): [string, Tensor][] => (d instanceof Map ? [...d] : Object.entries(d as Record<string, Tensor>));

/** `entriesOf` for a dict given by the caller: a Map or a record of Tensors (one check per entry, not per element). */
function checkedEntries(op: string, name: string, d: unknown): [string, Tensor][] {
  const entries = entriesOf(d instanceof Map ? d : expectObject<Record<string, Tensor>>(op, name, d));
  for (const [k, t] of entries) expectTensorArg(op, `${name}["${k}"]`, t);
  return entries;
}

/** A host copy of a tensor's bytes, taken now (training may continue while the file is written). */
function snapshot(t: Tensor): RawTensor {
  return scope(() => {
    const c = t.to('cpu').contiguous();
    const v = c.data();
    return { dtype: c.dtype, shape: c.shape, data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice() };
  });
}

/** Throws CheckpointError naming the first value of `v` that JSON cannot carry exactly. */
function checkJson(v: unknown, path: string): void {
  const bad = (what: string): never => {
    throw new CheckpointError(`saveCheckpoint: json${path} is ${what}, which JSON cannot hold exactly`);
  };
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) bad(String(v));
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => checkJson(x, `${path}[${i}]`));
    return;
  }
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) bad(`a ${(v as object).constructor?.name ?? 'non-plain'} object`);
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) checkJson(x, `${path}.${k}`);
    return;
  }
  bad(v === undefined ? 'undefined' : `a ${typeof v}`);
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync of a folder, so renames inside it are durable (best effort: not every platform can). */
async function fsyncDir(path: string): Promise<void> {
  await fsyncPath(path).catch(() => undefined);
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---- save --------------------------------------------------------------------------------------------------------

/**
 * Writes `<runDir>/ckpt/<iteration>/` as one atomic step: the group files, `state.json` and last `manifest.json`
 * (sizes and SHA-256 of the others) go into a temporary folder, each file fsynced, then the folder is renamed into
 * place and its parent fsynced. An existing checkpoint of the same iteration is replaced. Tensors are copied to host
 * memory synchronously, before the first await. Then older checkpoints beyond `keepLast` are removed.
 * @example await saveCheckpoint(runDir, it, { tensors: { student: student.stateDict(), teacher: teacher.stateDict() }, json: { iteration: it } }, { keepLast: 3 })
 * @returns the checkpoint folder
 * @throws CheckpointError for a bad group name, a non-integer iteration or a JSON value that cannot be stored
 */
export async function saveCheckpoint(runDir: string, iteration: number, payload: CheckpointPayload, o: SaveCheckpointOptions = {}): Promise<string> {
  expectPath('saveCheckpoint', 'runDir', runDir);
  o = expectOptions('saveCheckpoint', 'options', o) ?? {};
  if (!Number.isSafeInteger(iteration) || iteration < 0)
    throw new CheckpointError(`saveCheckpoint: iteration must be a non-negative integer, received ${show(iteration)}`);
  expectObject('saveCheckpoint', 'payload', payload);
  expectObject('saveCheckpoint', 'payload.tensors', payload.tensors);
  if (o.keepLast !== undefined && o.keepLast !== null && (!Number.isSafeInteger(o.keepLast) || o.keepLast < 1))
    throw new CheckpointError(`saveCheckpoint: keepLast must be a positive integer or null, received ${o.keepLast}`);
  const groups = Object.keys(payload.tensors);
  for (const g of groups)
    if (!GROUP.test(g) || g === 'state' || g === 'manifest')
      throw new CheckpointError(`saveCheckpoint: invalid tensor group name "${g}" (letters, digits, _ - . ; not "state" or "manifest")`);
  checkJson(payload.json, '');
  // Snapshot everything before the first await.
  const raws = new Map<string, Map<string, RawTensor>>();
  for (const g of groups) raws.set(g, new Map(entriesOf(payload.tensors[g]!).map(([k, t]) => [k, snapshot(t)])));
  const stateText = `${JSON.stringify({ iteration, json: payload.json })}\n`;

  const dir = checkpointDir(runDir);
  await mkdir(dir, { recursive: true });
  await removeStaleTemporaries(dir);
  const tmp = join(dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const final = join(dir, String(iteration));
  await mkdir(tmp);
  try {
    const files: Record<string, ManifestFile> = {};
    for (const g of groups) {
      const name = `${g}.safetensors`;
      await writeSafetensorsFile(join(tmp, name), raws.get(g)!, { format: 'pt', group: g });
      raws.delete(g); // release the host copy
      files[name] = { bytes: (await stat(join(tmp, name))).size, sha256: await sha256File(join(tmp, name)) };
    }
    const stateBytes = Buffer.from(stateText);
    await atomicWriteFile(join(tmp, STATE), [stateBytes]);
    files[STATE] = { bytes: stateBytes.length, sha256: createHash('sha256').update(stateBytes).digest('hex') };
    const manifest: CheckpointManifest = { format: FORMAT, version: 1, iteration, created: new Date().toISOString(), groups, files };
    await atomicWriteFile(join(tmp, MANIFEST), [Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`)]);
    await fsyncDir(tmp);
    await replaceFolder(tmp, final, asideName(dir, String(iteration)));
    await fsyncDir(dir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw e;
  }
  if (o.keepEvery !== undefined && o.keepEvery > 0 && (iteration + 1) % o.keepEvery === 0) await keepCopy(final);
  if (o.keepLast !== undefined && o.keepLast !== null) await pruneCheckpoints(runDir, o.keepLast);
  return final;
}

/** Where replaceFolder's two-rename fallback moves the folder `name` of `dir` while it is replaced. */
function asideName(dir: string, name: string): string {
  return join(dir, `.tmp-${process.pid}-old-${name}-${randomBytes(6).toString('hex')}`);
}

/** Temporary folders of writers that are gone (killed mid-write) are removed; a folder such a writer had moved aside
 * (killed between the two renames of replaceFolder's fallback) is first put back when nothing took its place. */
async function removeStaleTemporaries(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const m = TMP.exec(e.name);
    if (!m || processAlive(Number(m[1]))) continue;
    const aside = ASIDE.exec(e.name);
    if (aside) await putBackAside(join(dir, e.name), join(dir, aside[1]!));
    await rm(join(dir, e.name), { recursive: true, force: true });
  }
}

/** `<iteration>_keep`: hard links to the checkpoint's files (as `keep_checkpoint_copy`), made atomically too. */
async function keepCopy(src: string): Promise<void> {
  const dst = `${src}_keep`;
  const tmp = join(src, '..', `.tmp-${process.pid}-keep-${randomBytes(6).toString('hex')}`);
  await mkdir(tmp);
  for (const name of await readdir(src)) await link(join(src, name), join(tmp, name));
  await fsyncDir(tmp);
  await replaceFolder(tmp, dst, asideName(join(src, '..'), `${basename(src)}_keep`));
  await fsyncDir(join(src, '..'));
}

/** Every integer-named checkpoint folder of the run, oldest first (complete or not). */
export async function listCheckpoints(runDir: string): Promise<{ iteration: number; path: string }[]> {
  const dir = checkpointDir(runDir);
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory() && INT.test(e.name)).map((e) => e.name);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return names.map((n) => ({ iteration: Number(n), path: join(dir, n) })).sort((a, b) => a.iteration - b.iteration);
}

/** Removes all but the newest `keepLast` checkpoints (`_keep` copies stay). Returns the removed folders. */
export async function pruneCheckpoints(runDir: string, keepLast: number): Promise<string[]> {
  expectPath('pruneCheckpoints', 'runDir', runDir);
  expectInt('pruneCheckpoints', 'keepLast', keepLast);
  const all = await listCheckpoints(runDir);
  const doomed = all.slice(0, Math.max(0, all.length - keepLast)).map((c) => c.path);
  for (const p of doomed) await rm(p, { recursive: true, force: true });
  return doomed;
}

// ---- verify and load ---------------------------------------------------------------------------------------------

async function readManifest(path: string): Promise<CheckpointManifest> {
  const file = join(path, MANIFEST);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError(`${path}: incomplete checkpoint (no ${MANIFEST})`);
    throw e;
  }
  let m: CheckpointManifest;
  try {
    m = JSON.parse(text) as CheckpointManifest;
  } catch {
    throw new CheckpointError(`${file}: not valid JSON`);
  }
  if (
    m === null ||
    typeof m !== 'object' ||
    m.format !== FORMAT ||
    m.version !== 1 ||
    !Array.isArray(m.groups) ||
    m.files === null ||
    typeof m.files !== 'object'
  )
    throw new CheckpointError(`${file}: not a ${FORMAT} version 1 manifest`);
  for (const g of m.groups) if (!m.files[`${g}.safetensors`]) throw new CheckpointError(`${file}: group "${g}" has no file entry`);
  if (!m.files[STATE]) throw new CheckpointError(`${file}: no ${STATE} entry`);
  return m;
}

function checkBytes(path: string, name: string, want: ManifestFile, buf: Uint8Array): void {
  if (buf.byteLength !== want.bytes)
    throw new CheckpointError(`${join(path, name)}: ${buf.byteLength} bytes, the manifest says ${want.bytes} (truncated or altered)`);
  const got = createHash('sha256').update(buf).digest('hex');
  if (got !== want.sha256) throw new CheckpointError(`${join(path, name)}: SHA-256 ${got} differs from the manifest's ${want.sha256} (corrupt)`);
}

async function readChecked(path: string, name: string, want: ManifestFile): Promise<Buffer> {
  let buf: Buffer;
  try {
    buf = await readFile(join(path, name));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError(`${join(path, name)}: missing (incomplete checkpoint)`);
    if ((e as NodeJS.ErrnoException).code === 'ERR_FS_FILE_TOO_LARGE')
      throw new CheckpointError(`${join(path, name)}: larger than one Buffer can hold; save with smaller tensor groups`);
    throw e;
  }
  checkBytes(path, name, want, buf);
  return buf;
}

/**
 * Checks a checkpoint folder: its manifest, and every file's size and (with `checksums`, the default) SHA-256.
 * @throws CheckpointError saying what is wrong (no manifest, a file missing, truncated or altered)
 */
export async function verifyCheckpoint(path: string, o: { checksums?: boolean } = {}): Promise<CheckpointManifest> {
  expectPath('verifyCheckpoint', 'path', path);
  o = expectOptions('verifyCheckpoint', 'options', o) ?? {};
  const m = await readManifest(path);
  for (const [name, want] of Object.entries(m.files)) {
    const file = join(path, name);
    const size = await stat(file).then(
      (s) => s.size,
      () => -1,
    );
    if (size < 0) throw new CheckpointError(`${file}: missing (incomplete checkpoint)`);
    if (size !== want.bytes) throw new CheckpointError(`${file}: ${size} bytes, the manifest says ${want.bytes} (truncated or altered)`);
    if (o.checksums ?? true) {
      const got = await sha256File(file);
      if (got !== want.sha256) throw new CheckpointError(`${file}: SHA-256 ${got} differs from the manifest's ${want.sha256} (corrupt)`);
    }
  }
  return m;
}

/**
 * The newest complete checkpoint of a run (verified as `verifyCheckpoint`), or null when there is none. Incomplete or
 * corrupt ones are skipped (and reported through `onSkip`).
 */
export async function latestCheckpoint(
  runDir: string,
  o: { checksums?: boolean; onSkip?: (path: string, reason: CheckpointError) => void } = {},
): Promise<string | null> {
  expectPath('latestCheckpoint', 'runDir', runDir);
  o = expectOptions('latestCheckpoint', 'options', o) ?? {};
  for (const c of (await listCheckpoints(runDir)).reverse()) {
    try {
      await verifyCheckpoint(c.path, o);
      return c.path;
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      o.onSkip?.(c.path, e);
    }
  }
  return null;
}

/**
 * Loads a checkpoint folder, checking every file against the manifest. Tensors come back as CPU tensors (dtype and
 * bytes as saved) owned by the result: call `dispose()` (or `using`) once copied into the model.
 * @throws CheckpointError for an incomplete, truncated or corrupt checkpoint
 */
export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  expectPath('loadCheckpoint', 'path', path);
  const manifest = await readManifest(path);
  const state = JSON.parse((await readChecked(path, STATE, manifest.files[STATE]!)).toString('utf8')) as { iteration: number; json: unknown };
  const tensors: Record<string, Map<string, Tensor>> = {};
  const all: Tensor[] = [];
  const dispose = () => {
    for (const t of all) t.dispose();
  };
  try {
    for (const g of manifest.groups) {
      const name = `${g}.safetensors`;
      const { tensors: raws } = readSafetensors(await readChecked(path, name, manifest.files[name]!), join(path, name));
      const m = new Map<string, Tensor>();
      for (const [k, raw] of raws) {
        const t = fromBuffer(raw.data, raw.dtype, raw.shape).keep();
        all.push(t);
        m.set(k, t);
      }
      tensors[g] = m;
    }
  } catch (e) {
    dispose();
    throw e;
  }
  return { path, iteration: state.iteration, manifest, tensors, json: state.json, dispose, [Symbol.dispose]: dispose };
}

/** `loadCheckpoint(await latestCheckpoint(runDir))` reading each file once; null when the run has no complete checkpoint. */
export async function loadLatestCheckpoint(
  runDir: string,
  o: { onSkip?: (path: string, reason: CheckpointError) => void } = {},
): Promise<LoadedCheckpoint | null> {
  expectPath('loadLatestCheckpoint', 'runDir', runDir);
  o = expectOptions('loadLatestCheckpoint', 'options', o) ?? {};
  for (const c of (await listCheckpoints(runDir)).reverse()) {
    try {
      return await loadCheckpoint(c.path);
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      o.onSkip?.(c.path, e);
    }
  }
  return null;
}

// ---- state helpers -----------------------------------------------------------------------------------------------

/** JSON part of an optimizer state in a checkpoint (the moments go to a tensor group). */
export interface OptimizerJson {
  step: number;
  betas: [number, number];
  eps: number;
  paramGroups: ParamGroupState[];
}

/**
 * Splits `AdamW.stateDict()` into a tensor group (`state.<group>.<param>.exp_avg` / `.exp_avg_sq`) and JSON (step,
 * betas, eps, each group's lr, weightDecay, metadata and per-parameter step counts).
 */
export function optimizerToCheckpoint(sd: AdamWStateDict): { tensors: Map<string, Tensor>; json: OptimizerJson } {
  expectObject('optimizerToCheckpoint', 'sd', sd);
  expectIterable('optimizerToCheckpoint', 'sd.state', sd.state, 'an array (AdamW.stateDict())');
  expectIterable('optimizerToCheckpoint', 'sd.paramGroups', sd.paramGroups, 'an array (AdamW.stateDict())');
  expectIterable('optimizerToCheckpoint', 'sd.betas', sd.betas, 'an array (AdamW.stateDict())');
  const tensors = new Map<string, Tensor>();
  sd.state.forEach((s, gi) => {
    s.expAvg.forEach((t, i) => tensors.set(`state.${gi}.${i}.exp_avg`, t));
    s.expAvgSq.forEach((t, i) => tensors.set(`state.${gi}.${i}.exp_avg_sq`, t));
  });
  return { tensors, json: { step: sd.step, betas: [...sd.betas], eps: sd.eps, paramGroups: sd.paramGroups.map((g) => ({ ...g, steps: [...g.steps] })) } };
}

/** The inverse of `optimizerToCheckpoint`, for `AdamW.loadStateDict` (which copies the moments).
 * @throws CheckpointError when a moment tensor is missing */
export function optimizerFromCheckpoint(tensors: ReadonlyMap<string, Tensor>, json: OptimizerJson): AdamWStateDict {
  expectMap('optimizerFromCheckpoint', 'tensors', tensors);
  expectObject('optimizerFromCheckpoint', 'json', json);
  expectIterable('optimizerFromCheckpoint', 'json.betas', json.betas, 'an array (from optimizerToCheckpoint)');
  expectIterable('optimizerFromCheckpoint', 'json.paramGroups', json.paramGroups, 'an array (from optimizerToCheckpoint)');
  const take = (k: string): Tensor => {
    const t = tensors.get(k);
    if (!t) throw new CheckpointError(`optimizer state: missing tensor "${k}"`);
    return t;
  };
  return {
    step: json.step,
    betas: [...json.betas],
    eps: json.eps,
    paramGroups: json.paramGroups.map((g) => ({ ...g, steps: [...g.steps] })),
    state: json.paramGroups.map((g, gi) => ({
      expAvg: g.steps.map((_, i) => take(`state.${gi}.${i}.exp_avg`)),
      expAvgSq: g.steps.map((_, i) => take(`state.${gi}.${i}.exp_avg_sq`)),
    })),
  };
}

/**
 * libtorch generator states as a tensor group: `default` (the global CPU generator) and each named Generator. The
 * returned tensors are new (the caller or `saveCheckpoint`'s snapshot owns them: dispose after saving).
 */
export function generatorStates(generators: Readonly<Record<string, Generator>> = {}, o: { includeDefault?: boolean } = {}): Map<string, Tensor> {
  generators = expectOptions('generatorStates', 'generators', generators) ?? {};
  o = expectOptions('generatorStates', 'options', o) ?? {};
  for (const [k, g] of Object.entries(generators)) expectMethods('generatorStates', `generators.${k}`, g, 'a Generator', ['getState']);
  const m = new Map<string, Tensor>();
  if (o.includeDefault ?? true) m.set('default', getRngState().keep());
  for (const [k, g] of Object.entries(generators)) {
    if (k === 'default') throw new CheckpointError('generatorStates: "default" names the global generator; choose another name');
    m.set(k, g.getState().keep());
  }
  return m;
}

/** Restores states saved by `generatorStates` (the global generator when `default` is present).
 * @throws CheckpointError when a named generator has no saved state */
export function restoreGeneratorStates(states: ReadonlyMap<string, Tensor>, generators: Readonly<Record<string, Generator>> = {}): void {
  expectMap('restoreGeneratorStates', 'states', states);
  generators = expectOptions('restoreGeneratorStates', 'generators', generators) ?? {};
  for (const k of Object.keys(generators)) if (!states.has(k)) throw new CheckpointError(`restoreGeneratorStates: no saved state for generator "${k}"`);
  const d = states.get('default');
  if (d) setRngState(d);
  for (const [k, g] of Object.entries(generators)) g.setState(states.get(k)!);
}

// ---- teacher export and run folders -----------------------------------------------------------------------------

/**
 * Writes the teacher backbone as a `.safetensors` file that `loadBackbone` reads: `<runDir>/eval/<iteration>/
 * teacher_checkpoint.safetensors` (the folder of `dinov3/train/train.py::do_test`), or
 * `<runDir>/teacher_checkpoint.safetensors` without an iteration. `stateDict` may be the backbone's own or the whole
 * teacher's (then only its `backbone.` keys are kept, prefix removed). Atomic.
 * @returns the file path
 * @throws CheckpointError when no tensors remain
 */
export async function exportTeacherBackbone(runDir: string, stateDict: TensorDict, o: { iteration?: number } = {}): Promise<string> {
  expectPath('exportTeacherBackbone', 'runDir', runDir);
  o = expectOptions('exportTeacherBackbone', 'options', o) ?? {};
  if (o.iteration !== undefined) expectInt('exportTeacherBackbone', 'options.iteration', o.iteration);
  let entries = checkedEntries('exportTeacherBackbone', 'stateDict', stateDict);
  if (entries.some(([k]) => k.startsWith('backbone.')))
    entries = entries.filter(([k]) => k.startsWith('backbone.')).map(([k, t]) => [k.slice('backbone.'.length), t]);
  if (entries.length === 0) throw new CheckpointError('exportTeacherBackbone: the state dict holds no tensors');
  const raws = new Map(entries.map(([k, t]) => [k, snapshot(t)]));
  const dir = o.iteration === undefined ? runDir : join(runDir, 'eval', String(o.iteration));
  await mkdir(dir, { recursive: true });
  const path = join(dir, 'teacher_checkpoint.safetensors');
  await writeSafetensorsFile(path, raws, o.iteration === undefined ? undefined : { iteration: String(o.iteration) });
  return path;
}

/** Files whose presence means a folder holds a run. */
const RUN_MARKERS = ['run.json', 'config.yaml', CKPT_DIR, 'training_metrics.jsonl'];

export interface RunDirInfo {
  /** True when an existing run is continued. */
  resumed: boolean;
  /** Its newest complete checkpoint (null for a new run, or a run without one yet). */
  latest: string | null;
}

/**
 * Claims a run folder: creates it (and `run.json`) for a new run. A folder that already holds a run (run.json,
 * config.yaml, ckpt/ or training_metrics.jsonl) is refused unless `resume`, which continues it from its newest
 * complete checkpoint. `resume` on a folder without a run starts a new one (as the official `--resume`).
 * @throws ConfigError when the folder holds another run and `resume` is false, or is a file
 */
export async function prepareRunDir(runDir: string, o: { resume?: boolean } = {}): Promise<RunDirInfo> {
  expectPath('prepareRunDir', 'runDir', runDir);
  o = expectOptions('prepareRunDir', 'options', o) ?? {};
  const s = await stat(runDir).catch(() => null);
  if (s && !s.isDirectory()) throw new ConfigError(`${runDir}: the run folder is a file`);
  const found: string[] = [];
  if (s) for (const m of RUN_MARKERS) if (await exists(join(runDir, m))) found.push(m);
  if (found.length > 0) {
    if (!o.resume) throw new ConfigError(`${runDir} already holds a run (${found.join(', ')}): resume it (--resume) or choose another output folder`);
    return { resumed: true, latest: await latestCheckpoint(runDir) };
  }
  await mkdir(runDir, { recursive: true });
  const info = { format: 'dinov3-ts/run', created: new Date().toISOString(), pid: process.pid };
  await atomicWriteFile(join(runDir, 'run.json'), [Buffer.from(`${JSON.stringify(info, null, 1)}\n`)]);
  return { resumed: false, latest: null };
}
