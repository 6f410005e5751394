// DinoVisionTransformer behaviour beyond the fixtures: init (§1.7), input sizes (§1.2), untied norms (§1.5), the list
// forward with per-block RoPE draws (§1.3) and per-group drop path (§1.4), gradients, deterministic memory.
import { describe, expect, test, vi } from 'vitest';
import {
  DinoVisionTransformer,
  Generator,
  init,
  type LayerNorm,
  memory,
  narrow,
  randn,
  scope,
  tensor,
  TorchTypeError,
  type VitConfigInput,
} from '../../../src/index.js';
import { expectClose } from './helpers.js';

const SMALL: VitConfigInput = {
  embed_dim: 64,
  depth: 2,
  num_heads: 4,
  layerscale_init: 1e-5,
  norm_layer: 'layernormbf16',
  n_storage_tokens: 4,
  mask_k_bias: true,
  pos_embed_rope_dtype: 'fp32',
};

/** A model whose parameters all visibly matter (LayerScale 0.5, perturbed norms). */
function makeModel(cfg: VitConfigInput = {}, seed = 0): DinoVisionTransformer {
  const g = new Generator(seed);
  const m = new DinoVisionTransformer({ ...SMALL, layerscale_init: 0.5, ...cfg }, { generator: g });
  for (const [k, t] of m.namedParameters())
    if (/norm.*\.(weight|bias)$/.test(k)) init.normal_(t, { mean: k.endsWith('weight') ? 1 : 0, std: 0.2, generator: g });
  return m;
}

describe('init_weights (RECIPE §1.7)', () => {
  test('tokens, Linear, norms, LayerScale, patch embed, bias_mask; seeded and reproducible', () => {
    const a = new DinoVisionTransformer(SMALL, { generator: new Generator(42) });
    const b = new DinoVisionTransformer(SMALL, { generator: new Generator(42) });
    const sd = a.stateDict();
    const stats = (k: string) => {
      const v = Array.from(sd.get(k)!.toFloat32Array());
      const mean = v.reduce((s, x) => s + x, 0) / v.length;
      return { mean, std: Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length), maxAbs: Math.max(...v.map(Math.abs)) };
    };
    expect(stats('blocks.0.attn.qkv.weight').std).toBeCloseTo(0.02, 3);
    expect(stats('blocks.1.mlp.fc1.weight').std).toBeCloseTo(0.02, 3);
    expect(stats('storage_tokens').std).toBeGreaterThan(0.01);
    expect(stats('patch_embed.proj.weight').maxAbs).toBeLessThanOrEqual(Math.sqrt(1 / 768));
    expect(stats('patch_embed.proj.weight').maxAbs).toBeGreaterThan(0.035);
    expect(sd.get('mask_token')!.toArray()).toEqual(Array(64).fill(0));
    for (const k of ['blocks.0.attn.qkv.bias', 'blocks.0.attn.proj.bias', 'blocks.1.mlp.fc2.bias', 'norm.bias']) expect(stats(k).maxAbs).toBe(0);
    expect(sd.get('norm.weight')!.toArray()).toEqual(Array(64).fill(1));
    expect(sd.get('blocks.1.ls2.gamma')!.toArray()).toEqual(Array(64).fill(Math.fround(1e-5)));
    expect(sd.get('blocks.0.attn.qkv.bias_mask')!.toArray()).toEqual([...Array(64).fill(1), ...Array(64).fill(0), ...Array(64).fill(1)]);
    for (const [k, t] of b.stateDict()) expect(t.toArray(), k).toEqual(sd.get(k)!.toArray());
    a.dispose();
    b.dispose();
  });
});

describe('inputs', () => {
  test('any multiple of 16; other sizes drop the right/bottom remainder (floor), as the official patch embed', () => {
    const m = makeModel().eval();
    scope(() => {
      const x = randn([2, 3, 40, 35], { generator: new Generator(1) });
      const f = m.forwardFeatures(x);
      expect(f.prenorm.shape).toEqual([2, 1 + 4 + 4, 64]);
      const cropped = narrow(narrow(x, 2, 0, 32), 3, 0, 32);
      expectClose(f.patchTokens, m.forwardFeatures(cropped).patchTokens, 'floor crop', 0);
      const [p] = m.getIntermediateLayers(x, { reshape: true });
      expect(p!.shape).toEqual([2, 64, 2, 2]);
      expect(m.forwardFeatures(randn([1, 3, 48, 80])).patchTokens.shape).toEqual([1, 15, 64]);
    });
    m.dispose();
  });

  test('masks must be bool [N, P]; masked patches become mask_token (and keep their RoPE)', () => {
    const m = makeModel().eval();
    scope(() => {
      const x = randn([2, 3, 32, 32]);
      expect(() =>
        m.forwardFeatures(
          x,
          tensor([
            [1, 0, 0, 0],
            [0, 0, 0, 1],
          ]),
        ),
      ).toThrow(TorchTypeError);
      expect(() => m.forwardFeatures(x, tensor([[true, false, false]]))).toThrow(
        'forwardFeatures: expected "masks" to be a bool Tensor [2, 4], received bool Tensor [1, 3]',
      );
      const masks = tensor([
        [true, true, true, true],
        [true, true, true, true],
      ]);
      const f = m.forwardFeatures(x, masks);
      const g = m.forwardFeatures(randn([2, 3, 32, 32]), masks);
      expectClose(f.patchTokens, g.patchTokens, 'all-masked inputs give identical outputs', 1e-6);
      expect(f.masks).toBe(masks);
    });
    m.dispose();
  });
});

describe('output norms (RECIPE §1.5)', () => {
  test("untie_global_and_local_cls_norm: local_cls_norm on the second group's prefix tokens, in training only", () => {
    const m = makeModel({ untie_global_and_local_cls_norm: true });
    init.constant_(m.localClsNorm!.weight, 3);
    scope(() => {
      const xs = [randn([2, 3, 32, 32]), randn([3, 3, 16, 16])];
      const [g, l] = m.train().forwardFeaturesList(xs, [null, null]);
      const r1 = 5;
      const tokens = (x: typeof g) => x!.prenorm;
      expectClose(l!.clsToken, m.localClsNorm!.forward(narrow(tokens(l), 1, 0, r1)).select(1, 0), 'local cls', 1e-6);
      expectClose(l!.patchTokens, m.norm.forward(narrow(tokens(l), 1, r1, 1)), 'local patches use norm', 1e-6);
      expectClose(g!.clsToken, m.norm.forward(tokens(g)).select(1, 0), 'global cls uses norm', 1e-6);
      const [, le] = m.eval().forwardFeaturesList(xs, [null, null]);
      expectClose(le!.clsToken, m.norm.forward(tokens(le)).select(1, 0), 'eval local cls uses norm', 1e-6);
    });
    m.dispose();
  });

  test('untie_cls_and_patch_norms: cls_norm on CLS + storage tokens, also in get_intermediate_layers', () => {
    const m = makeModel({ untie_cls_and_patch_norms: true }).eval();
    init.constant_((m.clsNorm as LayerNorm).bias, 0.75);
    scope(() => {
      const x = randn([2, 3, 32, 32]);
      const f = m.forwardFeatures(x);
      expectClose(f.storageTokens, m.clsNorm!.forward(narrow(f.prenorm, 1, 0, 5)).narrow(1, 1, 4), 'storage', 1e-6);
      expectClose(f.patchTokens, m.norm.forward(narrow(f.prenorm, 1, 5, 4)), 'patches', 1e-6);
      const [p, c, s] = m.getIntermediateLayers(x, { returnClassToken: true, returnExtraTokens: true })[0]!;
      expectClose(c, f.clsToken, 'inter cls', 1e-6);
      expectClose(s, f.storageTokens, 'inter storage', 1e-6);
      expectClose(p, f.patchTokens, 'inter patches', 1e-6);
    });
    m.dispose();
  });
});

describe('training forward', () => {
  test('RoPE tables are drawn per block and per group in train mode (once per group in eval)', () => {
    const m = makeModel({ pos_embed_rope_rescale_coords: 2, depth: 3 });
    const spy = vi.spyOn(m.ropeEmbed, 'forward');
    scope(() => {
      const xs = [randn([2, 3, 32, 32]), randn([2, 3, 16, 16])];
      m.train().forwardFeaturesList(xs, [null, null]);
      expect(spy).toHaveBeenCalledTimes(3 * 2);
      spy.mockClear();
      m.eval().forwardFeaturesList(xs, [null, null]);
      expect(spy).toHaveBeenCalledTimes(2);
      const a = m.train().forward(xs[0]!);
      const b = m.forward(xs[0]!);
      expect(a.sub(b).abs().max().item()).toBeGreaterThan(0); // fresh rescale draws
      const e1 = m.eval().forward(xs[0]!);
      expectClose(m.forward(xs[0]!), e1, 'eval is deterministic', 0);
    });
    spy.mockRestore();
    m.dispose();
  });

  test('list forward [globals, locals] with [masks, null]; gradients reach every parameter; memory returns to baseline', () => {
    const before = memory().liveTensors;
    const m = makeModel({ drop_path_rate: 0.3, pos_embed_rope_rescale_coords: 2, untie_global_and_local_cls_norm: true, pos_embed_rope_dtype: 'bf16' });
    m.train();
    scope(() => {
      const masks = tensor([
        [true, false, false, true],
        [false, false, false, false],
        [true, true, false, false],
        [false, true, false, false],
      ]).to('bool');
      const [g, l] = m.forwardFeaturesList([randn([4, 3, 32, 32]), randn([8, 3, 16, 16])], [masks, null]);
      expect(g!.patchTokens.shape).toEqual([4, 4, 64]);
      expect(l!.prenorm.shape).toEqual([8, 6, 64]);
      g!.clsToken.sum().add(g!.patchTokens.square().mean()).add(l!.clsToken.square().sum()).backward();
      for (const [k, t] of m.namedParameters()) expect(t.grad, k).not.toBeNull();
      const qkvGrad = m.blocks[0]!.attn.qkv.bias!.grad!;
      expect(qkvGrad.narrow(0, 64, 64).abs().max().item()).toBe(0); // masked key bias gets no gradient
      m.zeroGrad();
    });
    m.dispose();
    expect(memory().liveTensors).toBe(before);
  });
});

test('a bfloat16 model initialises from a seeded generator like the float32 one', () => {
  const a = new DinoVisionTransformer(SMALL, { generator: new Generator(5) });
  const b = new DinoVisionTransformer(SMALL, { generator: new Generator(5), dtype: 'bfloat16' });
  for (const [k, t] of a.stateDict()) {
    const u = b.stateDict().get(k)!;
    expect(u.dtype, k).toBe(k === 'rope_embed.periods' ? 'float32' : 'bfloat16');
    scope(() => expectClose(u, k === 'rope_embed.periods' ? t : t.to('bfloat16'), k, 0));
  }
  a.dispose();
  b.dispose();
});
