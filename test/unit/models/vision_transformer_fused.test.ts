// The backbone's inference path without autograd (fused native kernels: attention from qkv, linear+GELU,
// LayerScale+residual) against the official fixtures, within the same 1e-4 as the op-by-op path.
import { expect, test } from 'vitest';
import { loadBackbone, memory, noGrad, scope } from '../../../src/index.js';
import { disposeAll, expectClose, expectOfficialFeatures, FIXTURES, loadFixture } from './helpers.js';

test('forward_features and get_intermediate_layers under noGrad match the official outputs', async () => {
  const before = memory().liveTensors;
  const io = await loadFixture('official_vits_like_io.safetensors');
  const { model } = await loadBackbone(`${FIXTURES}official_vits_like.safetensors`);
  const x = io.get('input')!;
  noGrad(() =>
    scope(() => {
      const f = model.forwardFeatures(x);
      expectOfficialFeatures(f, io);
      const m = model.forwardFeatures(x, io.get('masks')!);
      expectClose(m.clsToken, io.get('masked_cls')!, 'masked_cls');
      expectClose(m.patchTokens, io.get('masked_patch')!, 'masked_patch');
      const inter = model.getIntermediateLayers(x, { n: 2, reshape: true, returnClassToken: true, norm: true });
      inter.forEach(([patches, cls], i) => {
        expectClose(patches, io.get(`inter${i}_patch_nchw`)!, `inter${i}_patch_nchw`);
        expectClose(cls, io.get(`inter${i}_cls`)!, `inter${i}_cls`);
      });
    }),
  );
  model.dispose();
  disposeAll(io);
  expect(memory().liveTensors).toBe(before);
});
