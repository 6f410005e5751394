// Loading and saving DINOv3 ViT backbones. RECIPE §1.8: released `.pth` files are flat backbone state dicts that load
// strictly; training eval checkpoints wrap them as {"teacher": {"backbone.…", "dino_head.…", …}} (the official eval
// loader strips `module.` and `backbone.`). Also reads `.safetensors` files and Hugging Face folders (config.json +
// model.safetensors, see hf.ts). Parameters are created one at a time and copied into the model (sources.ts).
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { getPreset, presetForFileName } from '../config/presets.js';
import { parseVitConfig, type VitConfig, type VitConfigInput } from '../config/vit.js';
import { readPthFile } from '../io/pth.js';
import type { RawTensor } from '../io/raw_tensor.js';
import { atomicWriteFile, readSafetensorsFile, writeSafetensorsFile } from '../io/safetensors.js';
import { DinoVisionTransformer } from '../models/vision_transformer.js';
import { CheckpointError, StateDictError, type StateDictReport } from '../native/errors.js';
import { formatStateDictReport } from '../nn/module.js';
import { noGrad } from '../tensor/grad_mode.js';
import { scope } from '../tensor/scope.js';
import type { Device, DType } from '../tensor/tensor.js';
import { hfConfigToVitConfig, hfToOfficial, isHfStateDict, officialToHf, vitConfigToHfConfig } from './hf.js';
import { inferVitConfig } from './infer.js';
import { rawSource, type SourceDict, tensorSource } from './sources.js';

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
}

export interface LoadedBackbone {
  /** The backbone, in eval mode. */
  model: DinoVisionTransformer;
  config: VitConfig;
  /** Key report (empty lists after a strict load). */
  report: StateDictReport;
  format: CheckpointFormat;
}

/** Raw checkpoint contents: tensors by key and, for HF folders, the parsed config.json. */
export interface CheckpointContents {
  sd: SourceDict;
  hfConfig?: Record<string, unknown>;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError(`${path}: no such file or directory`);
    throw e;
  }
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError(`${path}: no such file`);
    throw e;
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new SyntaxError('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new CheckpointError(`${path}: invalid JSON (${(e as Error).message})`);
  }
}

async function readTensorFile(path: string): Promise<Map<string, RawTensor>> {
  return path.endsWith('.safetensors') ? (await readSafetensorsFile(path)).tensors : readPthFile(path);
}

/**
 * Reads a checkpoint without building a model: a `.pth`/`.pt` file (torch.save zip), a `.safetensors` file, or a
 * Hugging Face folder (config.json + model.safetensors, or a sharded model.safetensors.index.json).
 * @throws CheckpointError naming the file for unreadable, corrupt or unsupported input
 */
export async function readCheckpoint(source: string): Promise<CheckpointContents> {
  const toSources = (m: Map<string, RawTensor>) => new Map([...m].map(([k, v]) => [k, rawSource(v)]));
  if (!(await isDirectory(source))) return { sd: toSources(await readTensorFile(source)) };
  const hfConfig = await readJson(join(source, 'config.json'));
  const single = join(source, 'model.safetensors');
  const index = join(source, 'model.safetensors.index.json');
  const exists = (p: string) => stat(p).then(() => true, () => false);
  if (await exists(single)) return { sd: toSources(await readTensorFile(single)), hfConfig };
  if (!(await exists(index))) throw new CheckpointError(`${source}: no model.safetensors or model.safetensors.index.json in the folder`);
  const weightMap = (await readJson(index)).weight_map;
  if (!weightMap || typeof weightMap !== 'object') throw new CheckpointError(`${index}: no "weight_map" object`);
  const sd: SourceDict = new Map();
  for (const file of new Set(Object.values(weightMap as Record<string, string>)))
    for (const [k, v] of toSources(await readTensorFile(join(source, String(file))))) sd.set(k, v);
  return { sd, hfConfig };
}

/**
 * Unwraps training checkpoints: a top-level {"teacher"|"model"|"state_dict": …} wrapper, `module.` / `_orig_mod.`
 * prefixes, and `backbone.` (keeping only the backbone's keys: heads and loss buffers are dropped).
 */
export function stripTrainingPrefixes(sd: SourceDict): SourceDict {
  let entries = [...sd];
  for (let changed = true; changed && entries.length > 0; ) {
    changed = false;
    for (const w of ['teacher.', 'model.', 'state_dict.']) {
      // `model.` is also the HF wrapper: only strip it when it is not followed by HF's own layout.
      if (entries.every(([k]) => k.startsWith(w)) && !(w === 'model.' && isHfStateDict(entries.map(([k]) => k)))) {
        entries = entries.map(([k, v]) => [k.slice(w.length), v]);
        changed = true;
      }
    }
  }
  entries = entries.map(([k, v]) => [k.replace(/^((module|_orig_mod)\.)+/, ''), v]);
  if (entries.some(([k]) => k.startsWith('backbone.')))
    entries = entries.filter(([k]) => k.startsWith('backbone.')).map(([k, v]) => [k.slice('backbone.'.length).replace(/^((module|_orig_mod)\.)+/, ''), v]);
  return new Map(entries);
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

/**
 * Loads a DINOv3 ViT backbone from a `.pth` (released or training checkpoint), a `.safetensors` file or a Hugging
 * Face folder. The architecture comes from `preset`/`config`, else from the HF config.json, the official file name
 * (`dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth`) or the tensor shapes. The model is returned in eval mode.
 * @example const { model } = await loadBackbone('dinov3_vits16_pretrain_lvd1689m-08c60483.pth');
 * @example const { model } = await loadBackbone('hf/dinov3-vits16', { device: 'cuda', dtype: 'bfloat16' });
 * @throws CheckpointError for unreadable/corrupt files (naming the path); StateDictError (strict) with the key report;
 *   ConfigError for an invalid preset or config
 */
export async function loadBackbone(source: string, o: LoadBackboneOptions = {}): Promise<LoadedBackbone> {
  const { sd: rawSd, hfConfig } = await readCheckpoint(source);
  let sd = stripTrainingPrefixes(rawSd);
  const isHf = isHfStateDict(sd.keys());
  let base: VitConfigInput;
  if (o.preset) base = getPreset(o.preset).config;
  else if (hfConfig) base = hfConfigToVitConfig(hfConfig, join(source, 'config.json'));
  else if (isHf && !o.config) throw new CheckpointError(`${source}: Hugging Face weights without a config.json: pass a preset or a config`);
  else base = presetForFileName(source)?.config ?? (isHf ? {} : inferVitConfig(sd, source));
  const config = parseVitConfig({ ...base, ...o.config });
  if (isHf) sd = hfToOfficial(sd, config);
  const strict = o.strict ?? true;
  const model = new DinoVisionTransformer(config, { device: o.device, dtype: o.dtype, init: !strict });
  try {
    const report = loadBackboneStateDict(model, sd, { strict, source });
    model.eval();
    return { model, config, report, format: isHf ? 'huggingface' : 'official' };
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
 * written atomically. `huggingface`: a folder with config.json and model.safetensors in the HF layout.
 * @throws CheckpointError for a non-.safetensors path in the official format; ConfigError when HF cannot express the
 *   architecture
 */
export async function saveBackbone(model: DinoVisionTransformer, path: string, o: { format?: CheckpointFormat } = {}): Promise<void> {
  const sd: SourceDict = new Map([...model.stateDict()].map(([k, t]) => [k, tensorSource(t)]));
  if ((o.format ?? 'official') === 'official') {
    if (!path.endsWith('.safetensors')) throw new CheckpointError(`${path}: saveBackbone writes safetensors: use a path ending in .safetensors`);
    await writeSafetensorsFile(path, sourcesToRaw(sd));
    return;
  }
  const hfConfig = vitConfigToHfConfig(model.config, model.clsToken.dtype);
  const hfSd = officialToHf(sd, model.config);
  await mkdir(path, { recursive: true });
  await writeSafetensorsFile(join(path, 'model.safetensors'), sourcesToRaw(hfSd), { format: 'pt' });
  await atomicWriteFile(join(path, 'config.json'), [Buffer.from(`${JSON.stringify(hfConfig, null, 2)}\n`)]);
}
