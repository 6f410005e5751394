// Parity with Hugging Face transformers' DINOv3ViTModel on configurations the shared fixtures do not cover
// (test/fixtures/hf_variants, made by scripts/fixtures/make_hf_variants.py with transformers 5.18): a gated SiLU
// (SwiGLU) MLP, no registers with LayerNorm eps 1e-6 and RoPE base 1000, patch 8 without biases, 3 wider blocks;
// all on non-square inputs. Float32, within 1e-4 relative (RECIPE §1.2–§1.6).
import { existsSync, readdirSync } from 'node:fs';

import { describe, expect, test } from 'vitest';

import { loadBackbone, memory, scope } from '../../../src/index.js';
import { disposeAll, expectClose, expectHfOutputs, loadFixture } from './helpers.js';

const DIR = new URL('../../fixtures/hf_variants/', import.meta.url).pathname;
const variants = readdirSync(DIR, { withFileTypes: true })
  .filter((e) => e.isDirectory() && existsSync(`${DIR}${e.name}/io.safetensors`))
  .map((e) => e.name)
  .sort();

test('the variants are all there', () => {
  expect(variants).toEqual(['deep_wide', 'gated_silu', 'no_registers_eps6', 'patch8_no_bias']);
});

// Every variant folder, plus patch8_no_bias saved in shards (model.safetensors.index.json + 3 shards, as transformers
// saves big models), checked against that variant's outputs.
const hfFolders: [string, string][] = [...variants.map((v): [string, string] => [v, v]), ['patch8_no_bias_sharded', 'patch8_no_bias']];

describe.each(hfFolders)('transformers folder %s (outputs of %s)', (folder, name) => {
  test('loads strictly; last_hidden_state, pooler_output and every hidden state match', async () => {
    const before = memory().liveTensors;
    const io = await loadFixture(`../hf_variants/${name}/io.safetensors`);
    const { model, report, format } = await loadBackbone(`${DIR}${folder}`);
    expect(format).toBe('huggingface');
    expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
    scope(() => void expectHfOutputs(model, io));
    model.dispose();
    disposeAll(io);
    expect(memory().liveTensors).toBe(before);
  });
});

// The same weights in the official layout (converted by the generator with transformers' key mapping run backwards):
// the official loader must read the architecture off the file (the RoPE base from the periods) and give transformers'
// outputs. LayerNorm eps is not in an official file: eps 1e-6 is passed as norm_layer 'layernorm'.
describe.each([
  ['gated_silu', 'official.pth', {}, { ffn_layer: 'swiglu', n_storage_tokens: 4, patch_size: 16, pos_embed_rope_base: 100 }],
  ['no_registers_eps6', 'official.safetensors', { norm_layer: 'layernorm' }, { n_storage_tokens: 0, pos_embed_rope_base: 1000 }],
  ['patch8_no_bias', 'official.safetensors', {}, { patch_size: 8, qkv_bias: false, proj_bias: false, ffn_bias: false }],
] as const)('official layout of %s (%s)', (name, file, config0, expected) => {
  test('the architecture is inferred from the file; CLS and patch tokens match transformers', async () => {
    const before = memory().liveTensors;
    const io = await loadFixture(`../hf_variants/${name}/io.safetensors`);
    const { model, config, report, format } = await loadBackbone(`${DIR}${name}/${file}`, { config: config0 });
    expect(format).toBe('official');
    expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
    expect(config).toMatchObject(expected);
    scope(() => {
      const f = model.forwardFeatures(io.get('input')!);
      const last = io.get('last_hidden_state')!;
      const prefix = 1 + f.storageTokens.shape[1]!;
      expectClose(f.clsToken, last.select(1, 0), 'cls');
      expectClose(f.patchTokens, last.narrow(1, prefix, last.shape[1]! - prefix), 'patch');
    });
    model.dispose();
    disposeAll(io);
    expect(memory().liveTensors).toBe(before);
  });
});
