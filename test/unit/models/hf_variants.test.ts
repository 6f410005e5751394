// Parity with Hugging Face transformers' DINOv3ViTModel on configurations the shared fixtures do not cover
// (test/fixtures/hf_variants, made by scripts/fixtures/make_hf_variants.py with transformers 5.18): a gated SiLU
// (SwiGLU) MLP, no registers with LayerNorm eps 1e-6 and RoPE base 1000, patch 8 without biases, 3 wider blocks;
// all on non-square inputs. Float32, within 1e-4 relative (RECIPE §1.2–§1.6).
import { readdirSync } from 'node:fs';

import { describe, expect, test } from 'vitest';

import { loadBackbone, memory, scope } from '../../../src/index.js';
import { disposeAll, expectHfOutputs, loadFixture } from './helpers.js';

const DIR = new URL('../../fixtures/hf_variants/', import.meta.url).pathname;
const variants = readdirSync(DIR, { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();

test('the variants are all there', () => {
  expect(variants).toEqual(['deep_wide', 'gated_silu', 'no_registers_eps6', 'patch8_no_bias']);
});

describe.each(variants)('transformers variant %s', (name) => {
  test('loads strictly; last_hidden_state, pooler_output and every hidden state match', async () => {
    const before = memory().liveTensors;
    const io = await loadFixture(`../hf_variants/${name}/io.safetensors`);
    const { model, report, format } = await loadBackbone(`${DIR}${name}`);
    expect(format).toBe('huggingface');
    expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
    scope(() => void expectHfOutputs(model, io));
    model.dispose();
    disposeAll(io);
    expect(memory().liveTensors).toBe(before);
  });
});
