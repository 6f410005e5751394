// Hugging Face ↔ official key and config mapping on the reference checkpoints (RECIPE §1.8).
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { readSafetensorsFile } from '../../../src/io/safetensors.js';
import { hfConfigToVitConfig, hfToOfficial, memory, officialToHf, rawSource, type SourceDict, vitConfigToHfConfig } from '../../../src/index.js';
import { FIXTURES } from './helpers.js';

async function sources(path: string): Promise<SourceDict> {
  const { tensors } = await readSafetensorsFile(path);
  return new Map([...tensors].map(([k, v]) => [k, rawSource(v)]));
}
const shapes = (sd: SourceDict) => Object.fromEntries([...sd].map(([k, v]) => [k, v.shape]).sort());

test('official keys ↔ HF keys with the right shapes, both ways', async () => {
  const before = memory().liveTensors;
  const official = await sources(`${FIXTURES}official_vits_like.safetensors`);
  const hf = await sources(`${FIXTURES}hf_vits_like/model.safetensors`);
  const cfg = hfConfigToVitConfig(JSON.parse(readFileSync(`${FIXTURES}hf_vits_like/config.json`, 'utf8')));
  expect(shapes(officialToHf(official, cfg))).toEqual(shapes(hf));
  expect(shapes(hfToOfficial(hf, cfg))).toEqual(shapes(official));
  // The fused qkv bias of an HF model: [q bias, 0, v bias].
  const qkvBias = hfToOfficial(hf, cfg).get('blocks.0.attn.qkv.bias')!.load();
  const q = hf.get('layer.0.attention.q_proj.bias')!.load();
  const v = hf.get('layer.0.attention.v_proj.bias')!.load();
  expect(qkvBias.toArray()).toEqual([...q.toArray(), ...Array(64).fill(0), ...v.toArray()]);
  for (const t of [qkvBias, q, v]) t.dispose();
  expect(memory().liveTensors).toBe(before);
});

test('config.json ↔ architecture', () => {
  const json = JSON.parse(readFileSync(`${FIXTURES}hf_vits_like/config.json`, 'utf8')) as Record<string, unknown>;
  const cfg = hfConfigToVitConfig(json);
  const back = vitConfigToHfConfig(cfg);
  for (const k of Object.keys(back)) if (k in json && k !== 'dtype') expect(back[k], k).toEqual(json[k]);
  expect(
    hfConfigToVitConfig({ ...json, use_gated_mlp: true, hidden_act: 'silu', intermediate_size: 8192, hidden_size: 4096, num_attention_heads: 32 }),
  ).toMatchObject({
    ffn_layer: 'swiglu',
    ffn_ratio: 3,
  });
  expect(() => hfConfigToVitConfig({ ...json, hidden_act: 'relu' })).toThrow(
    'config.json: hidden_act "relu" with use_gated_mlp=false is not supported ("gelu" only)',
  );
  expect(() => hfConfigToVitConfig({ ...json, layer_norm_eps: 1e-3 })).toThrow('config.json: layer_norm_eps 0.001 is neither 1e-6 nor 1e-5');
});
