// Counted FLOPs of the benchmarks (src/cli/flops.ts) against hand counts for tiny configs, and the official
// collate's masked-patch counts (torch.linspace in float32, printed by the official code's formula in PyTorch).
import { describe, expect, test } from 'vitest';
import { parseVitConfig } from '../../../src/config/vit.js';
import { headFlops, maskedPatchCounts, parseCrops, trainStepFlops, vitForwardFlops } from '../../../src/cli/flops.js';

// D = 32, 2 blocks, MLP hidden 64, patch 16, 1 storage token.
const tiny = parseVitConfig({ embed_dim: 32, depth: 2, num_heads: 2, ffn_ratio: 2, patch_size: 16, n_storage_tokens: 1 });
const head = { hiddenDim: 64, bottleneckDim: 32, prototypes: 128, nlayers: 3 };

describe('vitForwardFlops', () => {
  test('a tiny MLP ViT at 32×32: 4 patches, 6 tokens, counted by hand', () => {
    // patch embedding: 4 patches · (3·16·16 inputs) · 32 outputs · 2
    // per block: 6 tokens · (qkv 32·96 + proj 32·32 + fc1 32·64 + fc2 64·32) · 2 = 98,304; q·kᵀ and attn·v 2 · 6·6·32 · 2 = 4,608
    expect(vitForwardFlops(tiny, 32)).toEqual({
      tokens: 6,
      patches: 4,
      patchEmbed: 196_608,
      linears: 2 * 98_304,
      attention: 2 * 4_608,
      total: 196_608 + 2 * 98_304 + 2 * 4_608,
    });
  });

  test('SwiGLU counts three linears of the aligned hidden width; rectangular inputs', () => {
    // ffn_ratio 6 → int(32·6) = 192 → int(192·2/3) = 128 (aligned to 8)
    const cfg = parseVitConfig({ embed_dim: 32, depth: 1, num_heads: 2, ffn_ratio: 6, ffn_layer: 'swiglu', patch_size: 16, n_storage_tokens: 0 });
    const f = vitForwardFlops(cfg, 32, 48); // 2·3 = 6 patches, 7 tokens
    expect(f.tokens).toBe(7);
    expect(f.linears).toBe(2 * 7 * (4 * 32 * 32 + 3 * 32 * 128));
    expect(f.attention).toBe(4 * 7 * 7 * 32);
    expect(() => vitForwardFlops(cfg, 40)).toThrow('vitForwardFlops: 40×40 is not a multiple of the patch size 16');
  });

  test('ViT-S/16 at 224 (201 tokens): about 9.4 GFLOP per image', () => {
    const vits = parseVitConfig({ embed_dim: 384, depth: 12, num_heads: 6, ffn_ratio: 4, patch_size: 16, n_storage_tokens: 4 });
    const f = vitForwardFlops(vits, 224);
    expect(f.tokens).toBe(201);
    expect(f.linears).toBe(12 * 2 * 201 * (4 * 384 * 384 + 2 * 384 * 1536));
    expect(f.total).toBe(9_396_209_664);
  });
});

describe('heads and masks', () => {
  test('headFlops: MLP in → hidden → hidden → bottleneck, then the prototypes', () => {
    expect(headFlops(32, head)).toBe(2 * (32 * 64 + 64 * 64 + 64 * 32 + 32 * 128));
    expect(headFlops(32, { ...head, nlayers: 1 })).toBe(2 * (32 * 32 + 32 * 128));
  });

  test.each([
    [4, 16, [4, 8, 0, 0]],
    [16, 36, [5, 7, 9, 10, 12, 14, 16, 18, 0, 0, 0, 0, 0, 0, 0, 0]],
    [6, 100, [23, 36, 50, 0, 0, 0]],
  ])('maskedPatchCounts(%i crops, %i patches) gives the official collate counts', (b, p, want) => {
    expect(maskedPatchCounts(b, p)).toEqual(want);
  });

  test('maskedPatchCounts for 128 global crops of 196 patches (ViT-*/16 at 224, batch 64) as PyTorch computes them', () => {
    const c = maskedPatchCounts(128, 196);
    // int(196 · torch.linspace(0.1, 0.5, 65)[i + 1]) from the official formula: first, a middle and the last values.
    expect(c.slice(0, 5)).toEqual([20, 22, 23, 24, 25]);
    expect(c.slice(28, 33)).toEqual([55, 56, 57, 58, 60]);
    expect(c.slice(59, 65)).toEqual([93, 94, 95, 96, 98, 0]);
    expect(c.reduce((a, v) => a + v, 0)).toBe(3771);
  });

  test('parseCrops', () => {
    expect(parseCrops('2x224,8x96')).toEqual([
      { count: 2, size: 224 },
      { count: 8, size: 96 },
    ]);
    expect(parseCrops(' 2 x 32 ')).toEqual([{ count: 2, size: 32 }]);
    expect(() => parseCrops('2x224;8x96')).toThrow('crops: expected <count>x<size>[,<count>x<size>] such as 2x224,8x96, received "2x224;8x96"');
    expect(() => parseCrops('2x224,8x96,1x64')).toThrow('crops: expected one global group and at most one local group');
    expect(() => parseCrops('0x224')).toThrow('crops: expected one global group and at most one local group');
  });
});

describe('trainStepFlops', () => {
  test('batch 2 of 2×32 + 4×16 crops on the tiny ViT, counted by hand', () => {
    const f = trainStepFlops(tiny, { batch: 2, crops: parseCrops('2x32,4x16'), dinoHead: head, ibotHead: head });
    const global = 402_432; // vitForwardFlops(tiny, 32).total
    const local = 2 * 768 * 32 + 2 * 2 * 3 * 8192 + 2 * 4 * 9 * 32; // 1 patch, 3 tokens: 149,760
    const h = 24_576; // headFlops(32, head)
    // 4 global crops (masked: int(4·0.3) + int(4·0.5) = 3 patches), 8 local crops, 12 CLS rows.
    expect(f.maskedPatches).toBe(3);
    expect(f.studentForward).toBe(4 * global + 8 * local + 12 * h + 3 * h);
    // Backward twice the forward, less the patch embedding's input gradient (4·196,608 + 8·49,152).
    expect(f.studentBackward).toBe(2 * f.studentForward - (4 * 196_608 + 8 * 49_152));
    expect(f.teacherForward).toBe(4 * global + 4 * h + 3 * h);
    expect(f.total).toBe(10_131_456);
    expect(f.perImage).toBe(f.total / 2);
    expect(trainStepFlops(tiny, { batch: 2, crops: parseCrops('2x32'), dinoHead: head, ibotHead: head, maskedPatches: 0, teacher: false }).total).toBe(
      4 * global + 4 * h + 2 * (4 * global + 4 * h) - 4 * 196_608,
    );
  });
});
