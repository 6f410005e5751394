// Loading and saving DINOv3 ViT backbones. Released `.pth` files (dinov3/hub/backbones.py::_make_dinov3_vit) are flat
// backbone state dicts that load strictly; training eval checkpoints wrap them as {"teacher": {"backbone.…",
// "dino_head.…", …}} (dinov3/checkpointer/checkpointer.py::init_model_from_checkpoint_for_evals strips `module.` and
// `backbone.`). Also reads `.safetensors` files and Hugging Face folders (config.json +
// model.safetensors, see hf.ts). Parameters are created one at a time and copied into the model (sources.ts).
import { closeSync, readFileSync, realpathSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { getPreset, presetForFileName } from '../config/presets.js';
import { parseVitConfig, type VitConfig, type VitConfigInput } from '../config/vit.js';
import { openPth } from '../io/pth.js';
import { fileError, openRegularFile } from '../io/random_access.js';
import type { LazyRawTensor, RawTensor } from '../io/raw_tensor.js';
import { atomicWriteFile, openSafetensors, writeSafetensorsFile } from '../io/safetensors.js';
import { DinoVisionTransformer } from '../models/vision_transformer.js';
import { CheckpointError, StateDictError, type StateDictReport } from '../native/errors.js';
import { formatStateDictReport } from '../nn/module.js';
import { normalizationStats } from '../data/transforms.js';
import { noGrad } from '../tensor/grad_mode.js';
import { expectConfig, expectMap, expectMethods, expectObject, expectOptions, expectPath, expectString, showJson } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import type { Device, DType } from '../tensor/tensor.js';
import { hfConfigToVitConfig, hfToOfficial, isHfStateDict, officialToHf, vitConfigToHfConfig } from './hf.js';
import { inferVitConfig } from './infer.js';
import { lazySource, type SourceDict, tensorSource, type TensorSource } from './sources.js';

export type CheckpointFormat = 'official' | 'huggingface';

export interface LoadBackboneOptions {
  /** A released backbone (`vits16`, `vitl16_sat493m`, …; see BACKBONE_PRESETS). */
  preset?: string;
  /**
   * Architecture keys (official names). With `preset` they override the preset; otherwise they override what the
   * checkpoint implies (HF config.json, the official file name, or the tensor shapes).
   */
  config?: VitConfigInput;
  device?: Device;
  /** Parameter dtype (RoPE keeps its own computation dtype). Default float32. */
  dtype?: DType;
  /** Strict (default): any missing, unexpected or mis-shaped key throws StateDictError. */
  strict?: boolean;
  /** For a Hugging Face hub id: the branch, tag or commit in the local cache (default main). */
  revision?: string;
}

export interface LoadedBackbone {
  /** The backbone, in eval mode. Its `normalization` property (also here) is what feature extraction uses by default. */
  model: DinoVisionTransformer & { readonly normalization: 'lvd1689m' | 'sat493m' };
  /** The input normalisation of the weights: `sat493m` for the SAT-493M (satellite) models, else `lvd1689m`. */
  normalization: 'lvd1689m' | 'sat493m';
  config: VitConfig;
  /** Key report (empty lists after a strict load). */
  report: StateDictReport;
  format: CheckpointFormat;
}

/** Raw checkpoint contents: tensors by key and, for HF folders, the parsed config.json. */
export interface CheckpointContents {
  sd: SourceDict;
  hfConfig?: Record<string, unknown>;
  /** The architecture `saveBackbone` records in a `.safetensors` file's metadata (key `dinov3_vit_config`), if any. */
  vitConfig?: Record<string, unknown>;
}

/** The safetensors metadata key under which `saveBackbone` records the ViT config (JSON). */
export const VIT_CONFIG_METADATA_KEY = 'dinov3_vit_config';

/** Largest config.json / index.json read (real ones are a few KB; a weight_map of a huge model, a few MB). */
const MAX_JSON_BYTES = 64 << 20;

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (e) {
    throw fileError(path, e);
  }
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    const { fd, stats } = openRegularFile(path, 'JSON file');
    try {
      if (stats.size > MAX_JSON_BYTES) throw new CheckpointError(`${path}: ${stats.size} bytes is too large for a JSON file (the limit is ${MAX_JSON_BYTES})`);
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw fileError(path, e);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new SyntaxError('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new CheckpointError(`${path}: invalid JSON (${(e as Error).message})`);
  }
}

/** The tensors of one `.safetensors` / `.pth` file, read lazily (tensor by tensor, positional reads). */
function openTensorFile(path: string, name = path): Map<string, LazyRawTensor> {
  return name.endsWith('.safetensors') ? openSafetensors(path).tensors : openPth(path);
}

const lazySources = (m: Map<string, LazyRawTensor>): SourceDict => new Map([...m].map(([k, v]) => [k, lazySource(v)]));

/** The Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function huggingFaceCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  expectObject('huggingFaceCacheDir', 'env', env);
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, 'hub');
  return join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface', 'hub');
}

/** torch.hub's checkpoint folder: $TORCH_HOME/hub/checkpoints, else ~/.cache/torch/hub/checkpoints. */
export function torchHubCheckpointsDir(env: NodeJS.ProcessEnv = process.env): string {
  expectObject('torchHubCheckpointsDir', 'env', env);
  const home = env.TORCH_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'torch');
  return join(home, 'hub', 'checkpoints');
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

/**
 * Where a checkpoint named by `source` is: an existing path as is; a Hugging Face hub id (`facebook/dinov3-vits16-
 * pretrain-lvd1689m`) as its snapshot in the local hub cache (`refs/<revision>`, default main, or a commit hash);
 * a bare released file name (`dinov3_vits16_pretrain_lvd1689m-08c60483.pth`) in torch.hub's checkpoint folder.
 * Nothing is downloaded.
 * @throws CheckpointError saying what to download and where to put it when it is not there
 */
export async function resolveCheckpoint(source: string, o: { revision?: string } = {}): Promise<string> {
  if (typeof source !== 'string' || source === '')
    throw new CheckpointError(`loadBackbone: expected a checkpoint path or hub id, received ${showJson(source)}`);
  o = expectOptions('resolveCheckpoint', 'options', o) ?? {};
  const present = (p: string) =>
    stat(p).then(
      () => true,
      () => false,
    );
  if (await present(source)) return source;
  if (HUB_ID.test(source) && !/\.(pth|pt|safetensors)$/.test(source)) {
    const cache = huggingFaceCacheDir();
    const repo = join(cache, `models--${source.replace('/', '--')}`);
    const revision = o.revision ?? 'main';
    let commit = revision;
    try {
      commit = readFileSync(join(repo, 'refs', revision), 'utf8').trim();
    } catch {
      // not a branch or tag name: maybe a commit hash
    }
    const snapshot = join(repo, 'snapshots', commit);
    if (/^[\w.-]+$/.test(commit) && (await present(join(snapshot, 'config.json')))) return snapshot;
    throw new CheckpointError(
      `${source}: not in the Hugging Face cache (${cache}, revision ${revision}). Nothing is downloaded here: fetch it with ` +
        `\`hf download ${source}${o.revision ? ` --revision ${o.revision}` : ''}\` (or huggingface-cli download; gated models need an accepted licence ` +
        'and a token), set HF_HUB_CACHE or HF_HOME to another cache, or pass the folder path',
    );
  }
  if (!/[\\/]/.test(source) && /\.(pth|pt)$/.test(source)) {
    const dir = torchHubCheckpointsDir();
    const p = join(dir, source);
    if (await present(p)) return p;
    throw new CheckpointError(
      `${source}: no such file here or in torch.hub's checkpoint folder ${dir}. Nothing is downloaded here: get the released ` +
        'weights from the DINOv3 release (https://github.com/facebookresearch/dinov3, "Pretrained models"; the download ' +
        `links come by e-mail after accepting the licence), and put the file in ${dir} (or set TORCH_HOME), or pass its path`,
    );
  }
  return source;
}

/** `file` of a weight_map, resolved inside `folder` (no absolute paths, `..`, or symlinks leading out of it). */
function confinedShard(folder: string, file: unknown, index: string): string {
  if (typeof file !== 'string' || file === '') throw new CheckpointError(`${index}: weight_map values must be file names, found ${JSON.stringify(file)}`);
  const root = realpathSync(folder);
  const full = resolve(root, file);
  const under = (p: string, dir: string) => p.startsWith(dir.endsWith(sep) ? dir : dir + sep);
  if (isAbsolute(file) || !under(full, root)) throw new CheckpointError(`${index}: weight_map names "${file}", which is outside the folder ${folder}`);
  // In a hub cache snapshot (models--org--name/snapshots/<commit>/) the files are links to ../../blobs/.
  const repo = dirname(dirname(root));
  const hubSnapshot = basename(dirname(root)) === 'snapshots' && basename(repo).startsWith('models--');
  const inside = (p: string) => under(p, root) || (hubSnapshot && under(p, join(repo, 'blobs')));
  let real: string;
  try {
    real = realpathSync(full);
  } catch (e) {
    throw fileError(join(folder, file), e);
  }
  if (!inside(real)) throw new CheckpointError(`${index}: weight_map names "${file}", a link to ${real} outside the folder ${folder}`);
  return real;
}

/**
 * Reads a checkpoint without building a model: a `.pth`/`.pt` file (torch.save zip), a `.safetensors` file, or a
 * Hugging Face folder (config.json + model.safetensors, or a sharded model.safetensors.index.json). Tensors are
 * read only when their sources are loaded, one at a time, so checkpoints of any size open with little memory.
 * @throws CheckpointError naming the file for unreadable, corrupt, unsupported or hostile input (FIFOs and other
 *   non-regular files, shards outside the folder, keys in two shards)
 */
export async function readCheckpoint(source: string): Promise<CheckpointContents> {
  expectPath('readCheckpoint', 'source', source);
  if (!(await isDirectory(source))) {
    if (!source.endsWith('.safetensors')) return { sd: lazySources(openPth(source)) };
    const { tensors, metadata } = openSafetensors(source);
    const text = metadata[VIT_CONFIG_METADATA_KEY];
    let vitConfig: Record<string, unknown> | undefined;
    if (text !== undefined) {
      try {
        vitConfig = JSON.parse(text) as Record<string, unknown>;
      } catch {
        throw new CheckpointError(`${source}: metadata "${VIT_CONFIG_METADATA_KEY}" is not valid JSON`);
      }
      if (vitConfig === null || typeof vitConfig !== 'object' || Array.isArray(vitConfig))
        throw new CheckpointError(`${source}: metadata "${VIT_CONFIG_METADATA_KEY}" is not a JSON object`);
    }
    return { sd: lazySources(tensors), vitConfig };
  }
  const hfConfig = await readJson(join(source, 'config.json'));
  const single = join(source, 'model.safetensors');
  const index = join(source, 'model.safetensors.index.json');
  const exists = (p: string) =>
    stat(p).then(
      () => true,
      () => false,
    );
  if (await exists(single)) return { sd: lazySources(openTensorFile(single)), hfConfig };
  if (!(await exists(index))) throw new CheckpointError(`${source}: no model.safetensors or model.safetensors.index.json in the folder`);
  const weightMap = (await readJson(index)).weight_map;
  if (!weightMap || typeof weightMap !== 'object' || Array.isArray(weightMap)) throw new CheckpointError(`${index}: no "weight_map" object`);
  const sd: SourceDict = new Map();
  const from = new Map<string, string>();
  for (const file of new Set(Object.values(weightMap as Record<string, unknown>))) {
    const shard = confinedShard(source, file, index);
    for (const [k, v] of openTensorFile(shard, String(file))) {
      const prev = from.get(k);
      if (prev !== undefined) throw new CheckpointError(`${index}: tensor "${k}" is in two shards, ${prev} and ${String(file)}`);
      from.set(k, String(file));
      sd.set(k, lazySource(v));
    }
  }
  return { sd, hfConfig };
}

/**
 * Unwraps training checkpoints: a top-level {"teacher"|"model"|"state_dict": …} wrapper, `module.` / `_orig_mod.`
 * prefixes, and `backbone.` (keeping only the backbone's keys: heads and loss buffers are dropped).
 */
export function stripTrainingPrefixes(sd: SourceDict, source = '<state dict>'): SourceDict {
  expectMap('stripTrainingPrefixes', 'sd', sd, 'a Map of tensor sources (SourceDict)');
  expectString('stripTrainingPrefixes', 'source', source);
  // Each entry keeps its original key, for the collision report.
  let entries: [string, TensorSource, string][] = [...sd].map(([k, v]) => [k, v, k]);
  for (let changed = true; changed && entries.length > 0; ) {
    changed = false;
    for (const w of ['teacher.', 'model.', 'state_dict.']) {
      // `model.` is also the HF wrapper: only strip it when it is not followed by HF's own layout.
      if (entries.every(([k]) => k.startsWith(w)) && !(w === 'model.' && isHfStateDict(entries.map(([k]) => k)))) {
        entries = entries.map(([k, v, o]) => [k.slice(w.length), v, o]);
        changed = true;
      }
    }
  }
  const wrappers = /^((module|_orig_mod)\.)+/;
  entries = entries.map(([k, v, o]) => [k.replace(wrappers, ''), v, o]);
  if (entries.some(([k]) => k.startsWith('backbone.')))
    entries = entries.filter(([k]) => k.startsWith('backbone.')).map(([k, v, o]) => [k.slice('backbone.'.length).replace(wrappers, ''), v, o]);
  // Two keys that differ only by a stripped prefix (`module.x` and `x`) would silently overwrite each other.
  const out: SourceDict = new Map();
  const origin = new Map<string, string>();
  for (const [k, v, o] of entries) {
    const prev = origin.get(k);
    if (prev !== undefined) throw new CheckpointError(`${source}: keys "${prev}" and "${o}" both become "${k}" once training prefixes are stripped`);
    origin.set(k, o);
    out.set(k, v);
  }
  return out;
}

function formatReport(source: string, r: StateDictReport, known: string[]): string {
  // Hint only at prefix slips (`encoder.blocks.0…` for `blocks.0…`): between real keys, edit distance misleads.
  const prefixSlip = (k: string) => known.find((n) => k.endsWith(`.${n}`) || n.endsWith(`.${k}`));
  return formatStateDictReport(`loadBackbone: ${source} does not match the backbone (strict loading)`, r, prefixSlip);
}

/**
 * Copies official-key entries into `model` one tensor at a time (converting dtype/device).
 * @throws StateDictError when strict and keys are missing, unexpected or mis-shaped (nothing is copied then)
 */
export function loadBackboneStateDict(model: DinoVisionTransformer, sd: SourceDict, o: { strict?: boolean; source?: string } = {}): StateDictReport {
  expectMethods('loadBackboneStateDict', 'model', model, 'a DinoVisionTransformer', ['checkStateDict', 'stateDict']);
  expectMap('loadBackboneStateDict', 'sd', sd, 'a Map of tensor sources (SourceDict)');
  o = expectOptions('loadBackboneStateDict', 'options', o) ?? {};
  const report = model.checkStateDict(sd);
  const bad = report.missing.length + report.unexpected.length + report.mismatched.length;
  const own = model.stateDict();
  if ((o.strict ?? true) && bad > 0) throw new StateDictError(formatReport(o.source ?? '<state dict>', report, [...own.keys()]), report);
  const mismatched = new Set(report.mismatched.map((m) => m.key));
  noGrad(() => {
    for (const [k, t] of own) {
      const src = sd.get(k);
      if (!src || mismatched.has(k)) continue;
      const v = src.load();
      try {
        t.copy_(v);
      } finally {
        v.dispose();
      }
    }
  });
  return report;
}

/** Upper bounds on an architecture read from a file (config.json, tensor shapes, a file name): far above every
 * released model (ViT-7B: D 4096, 40 blocks, FFN 8192), low enough that a few bytes cannot ask for terabytes. */
export const ARCHITECTURE_BOUNDS = {
  embed_dim: 16384,
  depth: 256,
  num_heads: 1024,
  patch_size: 256,
  img_size: 16384,
  in_chans: 64,
  n_storage_tokens: 1024,
  ffn_ratio: 16,
} as const;

/** @throws CheckpointError naming the file when the architecture is beyond ARCHITECTURE_BOUNDS */
export function checkArchitectureBounds(cfg: VitConfig, source: string): void {
  expectConfig('checkArchitectureBounds', 'cfg', cfg, [], 'a VitConfig');
  expectString('checkArchitectureBounds', 'source', source);
  for (const [k, max] of Object.entries(ARCHITECTURE_BOUNDS)) {
    const v = cfg[k as keyof typeof ARCHITECTURE_BOUNDS];
    if (typeof v === 'number' && v > max) throw new CheckpointError(`${source}: the architecture has ${k} = ${v}, beyond the supported maximum of ${max}`);
  }
}

const numelOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Builds the architecture on the meta device (no memory) and checks the checkpoint against it before anything is
 * allocated: strict loading refuses missing, unexpected and mis-shaped keys here; any loading refuses an
 * architecture far larger than the weights the checkpoint holds (a 1 KB config must not allocate gigabytes).
 * @throws StateDictError (strict, with the key report); CheckpointError naming the file
 */
function checkAgainstCheckpoint(config: VitConfig, sd: SourceDict, strict: boolean, source: string): void {
  const probe = new DinoVisionTransformer(config, { device: 'meta', init: false });
  try {
    const report = probe.checkStateDict(sd);
    const own = probe.stateDict();
    if (strict && report.missing.length + report.unexpected.length + report.mismatched.length > 0) {
      throw new StateDictError(formatReport(source, report, [...own.keys()]), report);
    }
    let needed = 0;
    for (const t of own.values()) needed += numelOf(t.shape);
    let held = 0;
    for (const s of sd.values()) held += numelOf(s.shape);
    if (needed > 4 * held + 2 ** 24) {
      throw new CheckpointError(
        `${source}: the architecture (embed_dim ${config.embed_dim}, depth ${config.depth}) has ${needed} parameters but the ` +
          `checkpoint holds ${held} values: refusing to build a model that much larger than its weights`,
      );
    }
  } finally {
    probe.dispose();
  }
}

/** The normalisation the weights were trained with: SAT-493M for a SAT preset, a released SAT file name or hub id,
 * or an HF folder whose preprocessor_config.json has the SAT mean; LVD-1689M otherwise. */
async function weightsNormalization(source: string, preset: string | undefined, hfFolder: boolean): Promise<'lvd1689m' | 'sat493m'> {
  const p = preset ? getPreset(preset) : presetForFileName(source);
  if (p) return p.weights === 'SAT493M' ? 'sat493m' : 'lvd1689m';
  if (/sat493m/i.test(source)) return 'sat493m';
  if (hfFolder) {
    try {
      const pre = JSON.parse(readFileSync(join(source, 'preprocessor_config.json'), 'utf8')) as { image_mean?: number[] };
      const sat = normalizationStats('sat493m')!.mean;
      if (Array.isArray(pre.image_mean) && pre.image_mean.every((v, i) => Math.abs(v - sat[i]!) < 1e-3)) return 'sat493m';
    } catch {
      // no preprocessor config: the LVD-1689M default
    }
  }
  return 'lvd1689m';
}

/** The Hugging Face image processor config of a backbone (DINOv3ViTImageProcessorFast: resize to 224, rescale by
 * 1/255, normalise with the weights' mean/std). */
export function hfPreprocessorConfig(normalization: 'lvd1689m' | 'sat493m' = 'lvd1689m', size = 224): Record<string, unknown> {
  const { mean, std } = normalizationStats(normalization)!;
  return {
    image_processor_type: 'DINOv3ViTImageProcessorFast',
    do_resize: true,
    size: { height: size, width: size },
    resample: 2,
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: [...mean],
    image_std: [...std],
  };
}

/**
 * Loads a DINOv3 ViT backbone from a `.pth` (released or training checkpoint), a `.safetensors` file or a Hugging
 * Face folder. The architecture comes from `preset`/`config`, else from the HF config.json, the official file name
 * (`dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth`) or the tensor shapes. The model is returned in eval mode.
 * @example const { model } = await loadBackbone('dinov3_vits16_pretrain_lvd1689m-08c60483.pth');
 * @example const { model } = await loadBackbone('hf/dinov3-vits16', { device: 'cuda', dtype: 'bfloat16' });
 * @example const { model } = await loadBackbone('facebook/dinov3-vits16-pretrain-lvd1689m'); // from the local HF cache
 * @throws CheckpointError for unreadable/corrupt files (naming the path); StateDictError (strict) with the key report;
 *   ConfigError for an invalid preset or config
 */
export async function loadBackbone(source: string, o: LoadBackboneOptions = {}): Promise<LoadedBackbone> {
  o = expectOptions('loadBackbone', 'options', o) ?? {};
  source = await resolveCheckpoint(source, { revision: o.revision });
  const { sd: rawSd, hfConfig, vitConfig } = await readCheckpoint(source);
  let sd = stripTrainingPrefixes(rawSd, source);
  const isHf = isHfStateDict(sd.keys());
  let base: VitConfigInput;
  if (o.preset) base = getPreset(o.preset).config;
  else if (hfConfig) base = hfConfigToVitConfig(hfConfig, join(source, 'config.json'));
  else if (vitConfig)
    base = vitConfig as VitConfigInput; // validated with the rest by parseVitConfig below
  else if (isHf && !o.config) throw new CheckpointError(`${source}: Hugging Face weights without a config.json: pass a preset or a config`);
  else base = presetForFileName(source)?.config ?? (isHf ? {} : inferVitConfig(sd, source, o.config));
  const config = parseVitConfig({ ...base, ...o.config });
  checkArchitectureBounds(config, source);
  if (isHf) sd = hfToOfficial(sd, config);
  const strict = o.strict ?? true;
  checkAgainstCheckpoint(config, sd, strict, source);
  const model = new DinoVisionTransformer(config, { device: o.device, dtype: o.dtype, init: !strict });
  try {
    const report = loadBackboneStateDict(model, sd, { strict, source });
    model.eval();
    const normalization = await weightsNormalization(source, o.preset, hfConfig !== undefined);
    Object.defineProperty(model, 'normalization', { value: normalization, enumerable: false, configurable: true });
    return { model: model as LoadedBackbone['model'], normalization, config, report, format: isHf ? 'huggingface' : 'official' };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

function sourcesToRaw(sd: SourceDict): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  for (const [k, s] of sd) {
    const raw = scope(() => {
      const c = s.load().to('cpu').contiguous();
      const v = c.data(); // a view that keeps the memory alive on its own
      return { dtype: c.dtype, shape: c.shape, data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) };
    });
    out.set(k, raw);
  }
  return out;
}

/**
 * Saves a backbone's state dict (a snapshot). `official` (default): one `.safetensors` file with the official keys,
 * written atomically. `huggingface`: a folder with config.json, preprocessor_config.json (the input normalisation)
 * and model.safetensors in the HF layout.
 * @throws CheckpointError for a non-.safetensors path in the official format; ConfigError when HF cannot express the
 *   architecture
 */
export async function saveBackbone(
  model: DinoVisionTransformer,
  path: string,
  o: {
    format?: CheckpointFormat /** Input normalisation recorded in the HF preprocessor_config.json (default: the model's, else lvd1689m). */;
    normalization?: 'lvd1689m' | 'sat493m';
  } = {},
): Promise<void> {
  expectMethods('saveBackbone', 'model', model, 'a DinoVisionTransformer', ['stateDict']);
  expectPath('saveBackbone', 'path', path);
  o = expectOptions('saveBackbone', 'options', o) ?? {};
  const sd: SourceDict = new Map([...model.stateDict()].map(([k, t]) => [k, tensorSource(t)]));
  if ((o.format ?? 'official') === 'official') {
    if (!path.endsWith('.safetensors')) throw new CheckpointError(`${path}: saveBackbone writes safetensors: use a path ending in .safetensors`);
    // The architecture travels with the weights: some configs share every key and shape (SwiGLU and gated GELU).
    await writeSafetensorsFile(path, sourcesToRaw(sd), { [VIT_CONFIG_METADATA_KEY]: JSON.stringify(model.config) });
    return;
  }
  const hfConfig = vitConfigToHfConfig(model.config, model.clsToken.dtype);
  const hfSd = officialToHf(sd, model.config);
  await mkdir(path, { recursive: true });
  await writeSafetensorsFile(join(path, 'model.safetensors'), sourcesToRaw(hfSd), { format: 'pt' });
  await atomicWriteFile(join(path, 'config.json'), [Buffer.from(`${JSON.stringify(hfConfig, null, 2)}\n`)]);
  const normalization = o.normalization ?? (model as { normalization?: 'lvd1689m' | 'sat493m' }).normalization ?? 'lvd1689m';
  const pre = hfPreprocessorConfig(normalization, model.config.img_size);
  await atomicWriteFile(join(path, 'preprocessor_config.json'), [Buffer.from(`${JSON.stringify(pre, null, 2)}\n`)]);
}
