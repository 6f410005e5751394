// Hugging Face's gated GELU MLP (DINOv3ViTConfig use_gated_mlp: true, hidden_act: "gelu"; transformers
// models/dinov3_vit/modeling_dinov3_vit.py::DINOv3ViTGatedMLP), which has no official equivalent: it loads as
// ffn_layer "geglu" with the HF intermediate size as is, matches test/fixtures/hf_gated_gelu (made by
// scripts/fixtures/make_hf_gated_gelu.py: the official model with transformers' gated MLP formula, float32) within
// 1e-5, and survives HF → ours → HF and the official layout.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { readSafetensorsFile, writeSafetensorsFile } from '../../../src/io/safetensors.js';
import { VIT_CONFIG_METADATA_KEY } from '../../../src/checkpoint/backbone.js';
import {
  CheckpointError,
  cat,
  ConfigError,
  GeGLUFFN,
  hfConfigToVitConfig,
  linear,
  loadBackbone,
  memory,
  saveBackbone,
  scope,
  silu,
  solveFfn,
  vitConfigToHfConfig,
} from '../../../src/index.js';
import { diff, disposeAll, expectHfOutputs, loadFixture } from './helpers.js';

const DIR = new URL('../../fixtures/hf_gated_gelu/', import.meta.url).pathname;
const JSON_CFG = JSON.parse(readFileSync(`${DIR}config.json`, 'utf8')) as Record<string, unknown>;
const tmp = mkdtempSync(join(tmpdir(), 'dinov3-geglu-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function headerOf(path: string): Promise<Record<string, number[]>> {
  const { tensors } = await readSafetensorsFile(path);
  return Object.fromEntries([...tensors].map(([k, v]) => [k, v.shape]).sort());
}

test('config.json with use_gated_mlp + gelu → ffn_layer "geglu" of width 20 (not a SwiGLU width), and back', () => {
  const cfg = hfConfigToVitConfig(JSON_CFG);
  expect(cfg).toMatchObject({ ffn_layer: 'geglu', ffn_ratio: 1.25, embed_dim: 16, depth: 2, num_heads: 2, n_storage_tokens: 2, patch_size: 4 });
  const back = vitConfigToHfConfig(cfg);
  expect(back).toMatchObject({ use_gated_mlp: true, hidden_act: 'gelu', intermediate_size: 20 });
  for (const k of Object.keys(back)) if (k in JSON_CFG) expect(back[k], k).toEqual(JSON_CFG[k]);
  // SiLU stays SwiGLU; the plain MLP stays GELU.
  expect(vitConfigToHfConfig(hfConfigToVitConfig({ ...JSON_CFG, hidden_act: 'silu', intermediate_size: 24 }))).toMatchObject({
    hidden_act: 'silu',
    intermediate_size: 24,
  });
  expect(hfConfigToVitConfig({ ...JSON_CFG, hidden_act: 'silu', intermediate_size: 24 }).ffn_layer).toBe('swiglu');
  expect(vitConfigToHfConfig(hfConfigToVitConfig({ ...JSON_CFG, use_gated_mlp: false }))).toMatchObject({ hidden_act: 'gelu', use_gated_mlp: false });
  expect(solveFfn(16, 20, true, 'gelu')).toEqual({ ffn_layer: 'geglu', ffn_ratio: 1.25 });
  expect(solveFfn(1024, 2730, true, 'gelu')).toMatchObject({ ffn_layer: 'geglu' }); // any width, exactly
  expect(() => solveFfn(16, 20, true)).toThrow(new ConfigError('no SwiGLU configuration of width 16 has an FFN hidden width of 20'));
});

test('other activations are refused with an exact message', () => {
  for (const act of ['relu', 'gelu_new', 'gelu_pytorch_tanh', 'quick_gelu'])
    expect(() => hfConfigToVitConfig({ ...JSON_CFG, hidden_act: act })).toThrow(
      new CheckpointError(`config.json: hidden_act "${act}" with use_gated_mlp=true is not supported ("silu" or "gelu" only)`),
    );
  expect(() => hfConfigToVitConfig({ ...JSON_CFG, use_gated_mlp: false, hidden_act: 'silu' }, 'm/config.json')).toThrow(
    new CheckpointError('m/config.json: hidden_act "silu" with use_gated_mlp=false is not supported ("gelu" only)'),
  );
});

test('the HF folder loads strictly and matches the gated GELU outputs within 1e-5', async () => {
  const before = memory().liveTensors;
  const io = await loadFixture('../hf_gated_gelu/io.safetensors');
  const { model, config, report, format } = await loadBackbone(DIR);
  expect(format).toBe('huggingface');
  expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
  expect(config.ffn_layer).toBe('geglu');
  const mlp = model.blocks[0]!.mlp;
  expect(mlp).toBeInstanceOf(GeGLUFFN);
  expect((mlp as GeGLUFFN).hiddenFeatures).toBe(20);
  scope(() => {
    // Block 0's FFN alone: down_proj(gelu(gate_proj x) · up_proj x).
    const ffnIn = io.get('ffn_input')!;
    const ffnOut = io.get('ffn_output')!;
    expect(diff(mlp.forward(ffnIn), ffnOut).maxAbs).toBeLessThan(1e-5);
    // The fixture tells GELU from SiLU: the same weights with SiLU are far off.
    const m = mlp as GeGLUFFN;
    const withSilu = m.w3.forward(silu(linear(ffnIn, m.w1.weight, m.w1.bias)).mul(m.w2.forward(ffnIn)));
    expect(diff(withSilu, ffnOut).maxAbs).toBeGreaterThan(1e-2);
    // The whole model: last_hidden_state, pooler_output and the hidden states (1e-4 relative), and 1e-5 absolute.
    const f = expectHfOutputs(model, io);
    const last = cat([f.clsToken.unsqueeze(1), f.storageTokens, f.patchTokens], 1);
    expect(diff(last, io.get('last_hidden_state')!).maxAbs).toBeLessThan(1e-5);
  });
  model.dispose();
  disposeAll(io);
  expect(memory().liveTensors).toBe(before);
});

test('HF → ours → HF keeps the keys, shapes, values and config; the saved folder loads to the same outputs', async () => {
  const before = memory().liveTensors;
  const io = await loadFixture('../hf_gated_gelu/io.safetensors');
  const { model } = await loadBackbone(DIR);
  const out = join(tmp, 'hf');
  await saveBackbone(model, out, { format: 'huggingface' });
  const written = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  expect(written).toMatchObject({ use_gated_mlp: true, hidden_act: 'gelu', intermediate_size: 20 });
  for (const k of Object.keys(JSON_CFG)) expect(written[k], k).toEqual(JSON_CFG[k]);
  expect(await headerOf(join(out, 'model.safetensors'))).toEqual(await headerOf(`${DIR}model.safetensors`));
  const a = await readSafetensorsFile(`${DIR}model.safetensors`);
  const b = await readSafetensorsFile(join(out, 'model.safetensors'));
  for (const [k, v] of a.tensors) expect(Buffer.from(b.tensors.get(k)!.data).equals(Buffer.from(v.data)), k).toBe(true);
  const again = await loadBackbone(out);
  expect(again.config.ffn_layer).toBe('geglu');
  scope(() => void expectHfOutputs(again.model, io));
  model.dispose();
  again.model.dispose();
  disposeAll(io);
  expect(memory().liveTensors).toBe(before);
});

test('official layout: the keys are SwiGLU-shaped, so "geglu" comes from the saved metadata or the config given', async () => {
  const before = memory().liveTensors;
  const io = await loadFixture('../hf_gated_gelu/io.safetensors');
  const { model } = await loadBackbone(DIR);
  const path = join(tmp, 'official.safetensors');
  await saveBackbone(model, path);
  expect(Object.keys(await headerOf(path)).filter((k) => k.startsWith('blocks.0.mlp.'))).toEqual([
    'blocks.0.mlp.w1.bias',
    'blocks.0.mlp.w1.weight',
    'blocks.0.mlp.w2.bias',
    'blocks.0.mlp.w2.weight',
    'blocks.0.mlp.w3.bias',
    'blocks.0.mlp.w3.weight',
  ]);
  // saveBackbone records the architecture in the metadata: it reloads as is.
  const meta = (await readSafetensorsFile(path)).metadata;
  expect(JSON.parse(meta[VIT_CONFIG_METADATA_KEY]!)).toEqual(JSON.parse(JSON.stringify(model.config)));
  const self = await loadBackbone(path);
  expect(self.config).toEqual(model.config);
  self.model.dispose();
  // The same tensors without that metadata (as other tools write them): the shapes say SwiGLU, which cannot fit.
  const bare = join(tmp, 'bare.safetensors');
  await writeSafetensorsFile(bare, (await readSafetensorsFile(path)).tensors);
  await expect(loadBackbone(bare)).rejects.toThrow('no SwiGLU configuration of width 16 has an FFN hidden width of 20');
  const { model: loaded, config, report } = await loadBackbone(bare, { config: { ffn_layer: 'geglu' } });
  expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
  expect(config).toMatchObject({ ffn_layer: 'geglu', ffn_ratio: 1.25 });
  scope(() => {
    const f = loaded.forwardFeatures(io.get('input')!);
    const last = cat([f.clsToken.unsqueeze(1), f.storageTokens, f.patchTokens], 1);
    expect(diff(last, io.get('last_hidden_state')!).maxAbs).toBeLessThan(1e-5);
  });
  model.dispose();
  loaded.dispose();
  disposeAll(io);
  expect(memory().liveTensors).toBe(before);
});
