// Checkpoint loading: key reports, corrupt files, training-checkpoint wrappers (RECIPE §1.8).
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { readSafetensorsFile, writeSafetensorsFile } from '../../../src/io/safetensors.js';
import {
  CheckpointError,
  ConfigError,
  DinoVisionTransformer,
  loadBackbone,
  memory,
  saveBackbone,
  scope,
  StateDictError,
  stripTrainingPrefixes,
  rawSource,
} from '../../../src/index.js';
import { makePth, type Spec } from '../io/helpers.js';
import { expectClose, FIXTURES, loadFixture, disposeAll } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'dinov3-ckpt-err-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const OFFICIAL = `${FIXTURES}official_vits_like.safetensors`;

describe('key mismatches', () => {
  test('strict loading raises StateDictError with the full key report', async () => {
    const before = memory().liveTensors;
    const err = await loadBackbone(OFFICIAL, { config: { n_storage_tokens: 0, ffn_ratio: 2, qkv_bias: false } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateDictError);
    expect((err as StateDictError).code).toBe('ERR_STATE_DICT');
    expect((err as Error).message).toBe(
      `loadBackbone: ${OFFICIAL} does not match the backbone (strict loading)\n` +
        'unexpected keys (5): blocks.0.attn.qkv.bias, blocks.0.attn.qkv.bias_mask, blocks.1.attn.qkv.bias, blocks.1.attn.qkv.bias_mask, storage_tokens\n' +
        'shape mismatches (6): blocks.0.mlp.fc1.weight: expected [128, 64], received [256, 64]; blocks.0.mlp.fc1.bias: expected [128], received [256]; ' +
        'blocks.0.mlp.fc2.weight: expected [64, 128], received [64, 256]; blocks.1.mlp.fc1.weight: expected [128, 64], received [256, 64]; ' +
        'blocks.1.mlp.fc1.bias: expected [128], received [256]; blocks.1.mlp.fc2.weight: expected [64, 128], received [64, 256]',
    );
    expect((err as StateDictError).report.missing).toEqual([]);
    const err2 = (await loadBackbone(OFFICIAL, { config: { depth: 3, untie_cls_and_patch_norms: true } }).catch((e: unknown) => e)) as StateDictError;
    expect(err2.report.missing).toEqual([
      'blocks.2.norm1.weight',
      'blocks.2.norm1.bias',
      'blocks.2.attn.qkv.weight',
      'blocks.2.attn.qkv.bias',
      'blocks.2.attn.qkv.bias_mask',
      'blocks.2.attn.proj.weight',
      'blocks.2.attn.proj.bias',
      'blocks.2.ls1.gamma',
      'blocks.2.norm2.weight',
      'blocks.2.norm2.bias',
      'blocks.2.mlp.fc1.weight',
      'blocks.2.mlp.fc1.bias',
      'blocks.2.mlp.fc2.weight',
      'blocks.2.mlp.fc2.bias',
      'blocks.2.ls2.gamma',
      'cls_norm.weight',
      'cls_norm.bias',
    ]);
    expect(memory().liveTensors).toBe(before);
  });

  test('non-strict loading copies the matching keys and returns the report', async () => {
    const { model, report } = await loadBackbone(OFFICIAL, { config: { depth: 1 }, strict: false });
    expect(report.missing).toEqual([]);
    expect(report.unexpected).toHaveLength(15);
    expect(report.unexpected[0]).toMatch(/^blocks\.1\./);
    const { tensors } = await readSafetensorsFile(OFFICIAL);
    const want = tensors.get('blocks.0.attn.qkv.weight')!;
    expect(Array.from(model.blocks[0]!.attn.qkv.weight.toFloat32Array())).toEqual(Array.from(new Float32Array(want.data.slice().buffer)));
    model.dispose();
  });

  test('a wrongly prefixed key gets a hint', async () => {
    const { tensors } = await readSafetensorsFile(OFFICIAL);
    const sd = new Map([...tensors].map(([k, v]) => [k === 'norm.weight' ? 'encoder.norm.weight' : k, v]));
    const path = join(dir, 'prefixed.safetensors');
    await writeSafetensorsFile(path, sd);
    await expect(loadBackbone(path, { config: { pos_embed_rope_dtype: 'fp32' } })).rejects.toThrow(
      `loadBackbone: ${path} does not match the backbone (strict loading)\nmissing keys (1): norm.weight\nunexpected keys (1): encoder.norm.weight (did you mean norm.weight?)`,
    );
  });
});

describe('unreadable input', () => {
  test('corrupt, truncated and missing files raise CheckpointError naming the path', async () => {
    const garbage = join(dir, 'garbage.safetensors');
    writeFileSync(garbage, Buffer.from('definitely not a checkpoint'));
    await expect(loadBackbone(garbage)).rejects.toThrow(CheckpointError);
    await expect(loadBackbone(garbage)).rejects.toThrow(new RegExp(`^${garbage}: `));
    const truncated = join(dir, 'truncated.pth');
    writeFileSync(truncated, readFileSync(`${FIXTURES}official_vits_like.pth`).subarray(0, 300_000));
    const err = (await loadBackbone(truncated).catch((e: unknown) => e)) as CheckpointError;
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.code).toBe('ERR_CHECKPOINT');
    expect(err.message.startsWith(`${truncated}: `)).toBe(true);
    const missing = join(dir, 'nope.pth');
    await expect(loadBackbone(missing)).rejects.toThrow(`${missing}: no such file or directory`);
  });

  test('HF folders need config.json (valid JSON, a DINOv3 ViT) and model.safetensors', async () => {
    const folder = join(dir, 'hf');
    mkdirSync(folder);
    await expect(loadBackbone(folder)).rejects.toThrow(`${join(folder, 'config.json')}: no such file`);
    writeFileSync(join(folder, 'config.json'), '{"hidden_size": 64,');
    await expect(loadBackbone(folder)).rejects.toThrow(new RegExp(`^${join(folder, 'config.json')}: invalid JSON`));
    writeFileSync(join(folder, 'config.json'), JSON.stringify({ model_type: 'dinov2' }));
    await expect(loadBackbone(folder)).rejects.toThrow(`${folder}: no model.safetensors or model.safetensors.index.json in the folder`);
    copyFileSync(`${FIXTURES}hf_vits_like/model.safetensors`, join(folder, 'model.safetensors'));
    await expect(loadBackbone(folder)).rejects.toThrow(`${join(folder, 'config.json')}: model_type is "dinov2", expected "dinov3_vit"`);
    await expect(loadBackbone(join(folder, 'model.safetensors'))).rejects.toThrow('Hugging Face weights without a config.json: pass a preset or a config');
  });

  test('bad presets and configs are ConfigErrors; saving needs a .safetensors path', async () => {
    await expect(loadBackbone(OFFICIAL, { preset: 'vits14' })).rejects.toThrow(ConfigError);
    await expect(loadBackbone(OFFICIAL, { config: { embed_dimm: 64 } as never })).rejects.toThrow(
      '✖ Unrecognized key: "embed_dimm" (did you mean "embed_dim"?)',
    );
    const m = new DinoVisionTransformer({ embed_dim: 32, depth: 1, num_heads: 2 });
    await expect(saveBackbone(m, join(dir, 'x.pth'))).rejects.toThrow(
      `${join(dir, 'x.pth')}: saveBackbone writes safetensors: use a path ending in .safetensors`,
    );
    m.dispose();
  });
});

describe('training checkpoints (RECIPE §1.8)', () => {
  test('{"teacher": {"backbone.…", "dino_head.…"}} .pth loads strictly, heads dropped', async () => {
    const before = memory().liveTensors;
    const { tensors } = await readSafetensorsFile(OFFICIAL);
    const storages: Record<string, Uint8Array> = {};
    const entries: [string, Spec][] = [];
    let n = 0;
    const add = (key: string, shape: number[], data: Uint8Array) => {
      const id = String(n++);
      storages[id] = data;
      const stride = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
      entries.push([key, { tensor: { type: 'FloatStorage', key: id, numel: data.byteLength / 4 }, offset: 0, shape, stride }]);
    };
    for (const [k, raw] of tensors) add(`backbone.${k}`, raw.shape, raw.data.slice());
    add('dino_head.last_layer.weight', [8, 4], new Uint8Array(128));
    add('ibot_head.mlp.0.weight', [4, 64], new Uint8Array(1024));
    const path = join(dir, 'teacher_checkpoint.pth');
    writeFileSync(path, makePth({ dict: [['teacher', { dict: entries, ordered: true }]] }, storages));
    const io = await loadFixture('official_vits_like_io.safetensors');
    const { model, report } = await loadBackbone(path);
    expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
    scope(() => expectClose(model.forward(io.get('input')!), io.get('cls')!, 'cls from a teacher checkpoint'));
    model.dispose();
    disposeAll(io);
    expect(memory().liveTensors).toBe(before);
  });

  test('module./_orig_mod./backbone. prefixes are stripped; a top-level wrapper is unwrapped', () => {
    const src = rawSource({ dtype: 'float32', shape: [1], data: new Uint8Array(4) });
    const keys = (ks: string[]) => [...stripTrainingPrefixes(new Map(ks.map((k) => [k, src]))).keys()];
    expect(keys(['module.backbone.cls_token', 'module.dino_head.mlp.0.weight'])).toEqual(['cls_token']);
    expect(keys(['model.module.norm.weight', 'model.module._orig_mod.mask_token'])).toEqual(['norm.weight', 'mask_token']);
    expect(keys(['state_dict.backbone.module.norm.bias'])).toEqual(['norm.bias']);
    expect(keys(['model.embeddings.patch_embeddings.weight', 'model.norm.weight'])).toEqual(['model.embeddings.patch_embeddings.weight', 'model.norm.weight']);
  });
});
