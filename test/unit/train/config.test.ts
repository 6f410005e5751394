// The SSL training config: official keys and defaults, strict validation, files, overrides, presets, scaling rule.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import YAML from 'yaml';
import { ConfigError, TorchTypeError } from '../../../src/native/errors.js';
import {
  applyScalingRules,
  defaultSSLConfig,
  loadSSLConfig,
  lrScaleFactor,
  mergeConfig,
  parseOverrides,
  parseSSLConfig,
  sslPresetNames,
  writeResolvedConfig,
} from '../../../src/train/config.js';

const FIX = join(import.meta.dirname, '../../fixtures/train');
const readJson = async (name: string) => JSON.parse(await readFile(join(FIX, name), 'utf8')) as Record<string, unknown>;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ssl-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('defaults', () => {
  test('equal the official ssl_default_config.yaml, key for key (fixture: its values as JSON)', async () => {
    expect(defaultSSLConfig()).toEqual(await readJson('ssl_default_config.json'));
    expect(Object.keys(defaultSSLConfig())).toEqual(Object.keys(await readJson('ssl_default_config.json')));
  });

  test('presets: ssl_default is the defaults; vitl_im1k_lin834 equals the official file merged onto them', async () => {
    expect(await loadSSLConfig('ssl_default')).toEqual(defaultSSLConfig());
    expect(await loadSSLConfig('vitl_im1k_lin834')).toEqual(await readJson('vitl_im1k_lin834.merged.json'));
    expect(sslPresetNames()).toEqual([
      'ssl_default',
      'vitl_im1k_lin834',
      'cpu_tiny_fmnist',
      'cpu_vits_tiny',
      ...['vits16', 'vitb16', 'vitl16'].flatMap((m) => ['pretrain', 'gram_anchor', 'high_res_adapt'].map((s) => `${m}_${s}`)),
      'dinov3_vit7b16_pretrain',
      'dinov3_vit7b16_gram_anchor',
      'dinov3_vit7b16_high_res_adapt',
    ]);
  });

  test('the 7B pretraining file (schedules v2, nulls for v1 keys, keys the default lacks) loads as OmegaConf merges it', async () => {
    const c = await loadSSLConfig(join(FIX, 'dinov3_vit7b16_pretrain.json'));
    expect(c).toEqual(await readJson('dinov3_vit7b16_pretrain.merged.json'));
    expect(c.schedules?.lr).toEqual({ start: 0, peak: 5e-5, end: 5e-5, warmup_epochs: 100, freeze_last_layer_epochs: 5 });
    expect(applyScalingRules(c, 1)).toEqual(c);
  });

  test('CPU presets', async () => {
    const t = await loadSSLConfig('cpu_tiny_fmnist');
    expect(t.student).toMatchObject({ arch: 'vit_custom', embed_dim: 192, depth: 6, num_heads: 3, patch_size: 4, n_storage_tokens: 4 });
    expect(t.crops).toMatchObject({ global_crops_size: 32, local_crops_size: 16, local_crops_number: 6 });
    expect(t.dino).toMatchObject({ head_n_prototypes: 1024, head_hidden_dim: 512, head_bottleneck_dim: 128 });
    expect(t.ibot).toMatchObject({ head_n_prototypes: 1024, head_hidden_dim: 512, head_bottleneck_dim: 128 });
    expect(t.train.batch_size_per_gpu).toBe(64);
    const s = await loadSSLConfig('cpu_vits_tiny');
    expect(s.student.arch).toBe('vit_small');
    expect([s.crops.global_crops_size, s.crops.local_crops_size, s.train.batch_size_per_gpu, s.dino.head_n_prototypes]).toEqual([112, 48, 8, 4096]);
  });
});

describe('strict validation', () => {
  test('an unknown key gets a did-you-mean hint and its section', () => {
    expect(() => parseSSLConfig({ optim: { lrr: 1 } })).toThrow(ConfigError);
    expect(() => parseSSLConfig({ optim: { lrr: 1 } })).toThrow(/^✖ Unrecognized key: "lrr" \(did you mean "lr"\?\)\n {2}→ at optim$/);
    expect(() => parseSSLConfig({ studnet: {} })).toThrow(/^✖ Unrecognized key: "studnet" \(did you mean "student"\?\)$/);
    expect(() => parseSSLConfig({ dino: { local_loss_weight_schedule: { warmup: 1 } } })).toThrow(
      /^✖ Unrecognized key: "warmup" \(did you mean "warmup_epochs"\?\)\n {2}→ at dino\.local_loss_weight_schedule$/,
    );
    // A partial nested mapping keeps the other defaults (OmegaConf merge).
    expect(parseSSLConfig({ dino: { local_loss_weight_schedule: { end: 1 } } }).dino.local_loss_weight_schedule).toEqual({
      start: 0.5,
      peak: 0.5,
      end: 1,
      warmup_epochs: 0,
    });
  });

  test('a wrong type names its dotted path', () => {
    expect(() => parseSSLConfig({ optim: { lr: 'fast' } })).toThrow(/^✖ Invalid input: expected number, received string\n {2}→ at optim\.lr$/);
    expect(() => parseSSLConfig({ crops: { global_crops_scale: [0.3] } })).toThrow(/→ at crops\.global_crops_scale/);
    expect(() => parseSSLConfig({ student: { norm_layer: 'batchnorm' } })).toThrow(
      /^✖ Invalid option: expected one of "layernorm"\|"layernormbf16"\|"rmsnorm"\n {2}→ at student\.norm_layer$/,
    );
    expect(() => parseSSLConfig({ optim: { scaling_rule: 'sqrt_wrt1024' } })).toThrow(/→ at optim\.scaling_rule/);
  });

  test('v1 schedules need numbers where the 7B (v2) configs put null', () => {
    expect(() => parseSSLConfig({ optim: { lr: null } })).toThrow(
      /^✖ optim\.lr is null: schedules v1 need a number \(or give a "schedules" mapping for v2\)\n {2}→ at optim\.lr$/,
    );
    const v2 = { start: 0, peak: 1, end: 1, warmup_epochs: 0 };
    const c = parseSSLConfig({
      optim: { lr: null },
      schedules: { lr: { ...v2, freeze_last_layer_epochs: 1 }, weight_decay: v2, momentum: v2, teacher_temp: v2 },
    });
    expect(c.schedules?.lr.freeze_last_layer_epochs).toBe(1);
    expect(c.optim.lr).toBeNull();
  });

  test('vit_custom needs embed_dim, depth and num_heads; other archs refuse them', () => {
    expect(() => parseSSLConfig({ student: { arch: 'vit_custom', embed_dim: 192, num_heads: 3 } })).toThrow(
      /^✖ student\.arch vit_custom needs student\.depth\n {2}→ at student\.depth$/,
    );
    expect(() => parseSSLConfig({ student: { depth: 6 } })).toThrow(/^✖ student\.depth is only read with student\.arch vit_custom \(vit_large fixes it\)/);
    expect(() => parseSSLConfig({ student: { arch: 'vit_larg' } })).toThrow(/→ at student\.arch/);
  });
});

describe('files and overrides', () => {
  test('YAML and JSON files merge onto the defaults like OmegaConf (nested merge, lists replace)', async () => {
    const y = join(dir, 'a.yaml');
    await writeFile(y, 'optim:\n  lr: 2.0e-4\ncrops:\n  global_crops_scale: [0.4, 1.0]\n  local_crops_number: 2\n');
    const c = await loadSSLConfig(y);
    expect(c.optim.lr).toBe(2e-4);
    expect(c.optim.min_lr).toBe(1e-6);
    expect(c.crops.global_crops_scale).toEqual([0.4, 1.0]);
    expect(c.crops.local_crops_scale).toEqual([0.05, 0.32]);
    const j = join(dir, 'a.json');
    await writeFile(j, JSON.stringify({ train: { seed: 7 } }));
    expect((await loadSSLConfig(j)).train.seed).toBe(7);
    await writeFile(join(dir, 'bad.yaml'), 'optim: [1, 2');
    await expect(loadSSLConfig(join(dir, 'bad.yaml'))).rejects.toThrow(new RegExp(`^${join(dir, 'bad.yaml')}: invalid YAML \\(`));
    await writeFile(join(dir, 'list.yaml'), '- 1\n- 2\n');
    await expect(loadSSLConfig(join(dir, 'list.yaml'))).rejects.toThrow(`${join(dir, 'list.yaml')}: the config must be a mapping of sections, not a list`);
    await expect(loadSSLConfig(join(dir, 'missing.yaml'))).rejects.toThrow(`${join(dir, 'missing.yaml')}: no such config file`);
  });

  test('overrides are typed as OmegaConf.from_cli types them', () => {
    expect(parseOverrides(['optim.lr=1e-4', 'train.seed=3', 'train.compile=false', 'gram.ckpt=null', 'a.b=[1,2]', 's="3"', 'e=', 'w=abc'])).toEqual({
      optim: { lr: 1e-4 },
      train: { seed: 3, compile: false },
      gram: { ckpt: null },
      a: { b: [1, 2] },
      s: '3',
      e: null,
      w: 'abc',
    });
    expect(parseOverrides(['optim.lr=1', 'optim.min_lr=0'])).toEqual({ optim: { lr: 1, min_lr: 0 } });
  });

  test('bad override syntax is a ConfigError with the item', () => {
    expect(() => parseOverrides('optim.lr=1' as never)).toThrow(
      new TorchTypeError('parseOverrides: expected "overrides" to be an array of strings, received string "optim.lr=1"', 'ERR_INVALID_ARG'),
    );
    expect(() => parseOverrides(['optim.lr=1', 3 as never])).toThrow(
      new TorchTypeError('parseOverrides: expected "overrides[1]" to be a string, received number 3', 'ERR_INVALID_ARG'),
    );
    expect(() => mergeConfig({ a: 1 }, { b: () => 1 })).toThrow(
      new ConfigError('mergeConfig: a config value must be data (objects, arrays, strings, numbers, booleans, null), received function () => 1'),
    );
    expect(() => parseOverrides(['optim.lr'])).toThrow(
      new ConfigError('invalid override "optim.lr": expected key.path=value with dotted identifiers (e.g. optim.lr=1e-4)'),
    );
    expect(() => parseOverrides(['optim..lr=1'])).toThrow('invalid override "optim..lr=1": expected key.path=value');
    expect(() => parseOverrides(['=1'])).toThrow('invalid override "=1"');
    expect(() => parseOverrides(['a=[1,'])).toThrow(/^invalid override "a=\[1,": the value is not valid YAML \(/);
  });

  test('overrides apply after the file, then strict validation', async () => {
    const c = await loadSSLConfig('cpu_tiny_fmnist', ['optim.lr=5e-4', 'crops.local_crops_number=2', 'crops.global_crops_scale=[0.5,1]']);
    expect([c.optim.lr, c.crops.local_crops_number, c.crops.global_crops_scale]).toEqual([5e-4, 2, [0.5, 1]]);
    await expect(loadSSLConfig('ssl_default', ['optim.lrr=1'])).rejects.toThrow(/^✖ Unrecognized key: "lrr" \(did you mean "lr"\?\)\n {2}→ at optim$/);
    await expect(loadSSLConfig('ssl_default', ['train.seed=abc'])).rejects.toThrow(/^✖ Invalid input: expected number, received string\n {2}→ at train\.seed$/);
    await expect(loadSSLConfig('cpu_tiny_fmnst')).rejects.toThrow(
      'unknown SSL config preset "cpu_tiny_fmnst" (did you mean "cpu_tiny_fmnist"?); known: ssl_default, vitl_im1k_lin834, cpu_tiny_fmnist, cpu_vits_tiny, vits16_pretrain, vits16_gram_anchor, vits16_high_res_adapt, vitb16_pretrain, vitb16_gram_anchor, vitb16_high_res_adapt, vitl16_pretrain, vitl16_gram_anchor, vitl16_high_res_adapt, dinov3_vit7b16_pretrain, dinov3_vit7b16_gram_anchor, dinov3_vit7b16_high_res_adapt (or a .yaml/.json file)',
    );
  });

  test('mergeConfig replaces lists and null, merges mappings, and does not alias its inputs', () => {
    const a = { x: { y: [1, 2], z: 1 }, n: { k: 1 } };
    const m = mergeConfig(a, { x: { y: [3] }, n: null }) as typeof a;
    expect(m).toEqual({ x: { y: [3], z: 1 }, n: null });
    m.x.y.push(9);
    expect(a.x.y).toEqual([1, 2]);
  });

  test('writeResolvedConfig writes YAML that loads back to the same config', async () => {
    const c = await loadSSLConfig('cpu_tiny_fmnist', ['optim.lr=3e-4']);
    const p = await writeResolvedConfig(join(dir, 'run'), c);
    expect(p).toBe(join(dir, 'run', 'config.yaml'));
    expect(YAML.parse(await readFile(p, 'utf8'))).toEqual(c);
    expect(await loadSSLConfig(p)).toEqual(c);
  });
});

describe('lr scaling rule (apply_scaling_rules_to_cfg)', () => {
  test('sqrt_wrt_1024: lr·4·√(B/1024); linear_wrt_256: lr·B/256; none: unchanged', () => {
    const c = defaultSSLConfig(); // batch 64 per GPU, lr 1e-3
    expect(lrScaleFactor(c, 1)).toBe(1);
    expect(applyScalingRules(c, 3).optim.lr).toBeCloseTo(0.0017320508075688772, 18);
    expect(c.optim.lr).toBe(0.001);
    const lin = parseSSLConfig({ optim: { scaling_rule: 'linear_wrt_256' } });
    expect(applyScalingRules(lin, 3).optim.lr).toBeCloseTo(0.00075, 18);
    expect(applyScalingRules(parseSSLConfig({ optim: { scaling_rule: 'none' } }), 8).optim.lr).toBe(0.001);
    // lin834: 64 per GPU × 32 GPUs = 2048 → 1e-3 · 4·√2
    expect(applyScalingRules(c, 32).optim.lr).toBeCloseTo(0.001 * 4 * Math.SQRT2, 15);
    expect(() => lrScaleFactor(c, 0)).toThrow('lrScaleFactor: worldSize must be a positive integer, received 0');
  });

  test('v2 configs are not modified (the schedule builder scales peak and end)', () => {
    const v2 = { start: 0, peak: 1e-3, end: 1e-6, warmup_epochs: 0 };
    const c = parseSSLConfig({ schedules: { lr: { ...v2, freeze_last_layer_epochs: 0 }, weight_decay: v2, momentum: v2, teacher_temp: v2 } });
    expect(applyScalingRules(c, 32)).toEqual(c);
    expect(lrScaleFactor(c, 32)).toBeCloseTo(4 * Math.SQRT2, 14);
  });
});
