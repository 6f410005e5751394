// Module.to_: parameters and buffers change dtype/device in place (same Tensor objects, same leaves), and what the
// Tensors report afterwards is the new dtype even where they had cached the old one.
import { expect, test } from 'vitest';

import { Generator, getPreset, Linear, memory, noGrad, randn, scope } from '../../../src/index.js';
import { DinoVisionTransformer } from '../../../src/models/vision_transformer.js';

test('to_({ dtype }) converts every floating parameter and buffer; the same Tensor objects report the new dtype', () => {
  const before = memory().liveTensors;
  const lin = new Linear(4, 3);
  const w = lin.weight;
  expect(w.dtype).toBe('float32'); // cached now
  const values = Array.from(w.toFloat32Array());
  lin.to_({ dtype: 'bfloat16' });
  expect(lin.weight).toBe(w);
  expect(w.dtype).toBe('bfloat16');
  expect(lin.bias!.dtype).toBe('bfloat16');
  expect(w.requiresGrad).toBe(true);
  expect(w.isLeaf).toBe(true);
  const back = Array.from(w.toFloat32Array());
  back.forEach((v, i) => expect(Math.abs(v - values[i]!)).toBeLessThanOrEqual(Math.abs(values[i]!) * 2 ** -8));
  scope(() => expect(lin.forward(randn([2, 4], { dtype: 'bfloat16' })).dtype).toBe('bfloat16'));
  lin.dispose();
  expect(memory().liveTensors).toBe(before);
});

test('a backbone moved to bfloat16 runs forward_features on bfloat16 input', () => {
  const before = memory().liveTensors;
  const model = new DinoVisionTransformer(getPreset('vits16').config, { generator: new Generator(0) }).eval();
  noGrad(() => scope(() => void model.forwardFeatures(randn([1, 3, 32, 32])))); // caches dtypes in float32
  model.to_({ dtype: 'bfloat16' });
  const f = noGrad(() => scope(() => model.forwardFeatures(randn([2, 3, 32, 48], { dtype: 'bfloat16' })).patchTokens));
  expect(f.dtype).toBe('bfloat16');
  expect(f.shape).toEqual([2, 6, 384]);
  f.dispose();
  model.dispose();
  expect(memory().liveTensors).toBe(before);
});
