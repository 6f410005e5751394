import { describe, expect, test } from 'vitest';

import { DINOHead, Generator, randn, scope, TorchRangeError } from '../../../src/index.js';
import { expectClose, expectError, expectNoLeakedTensors, useFixture } from '../loss/fixtures.js';

const { g, all } = useFixture('official_dinohead_io');
expectNoLeakedTensors();

const officialStateDict = () => new Map([...all()].filter(([k]) => k.startsWith('sd.')).map(([k, t]) => [k.slice(3), t]));

describe('DINOHead (RECIPE §2)', () => {
  test('state-dict keys and shapes are the official ones', () => {
    const head = new DINOHead(64, 48, 16, 32);
    const sd = head.stateDict();
    expect([...sd.keys()]).toEqual(['mlp.0.weight', 'mlp.0.bias', 'mlp.2.weight', 'mlp.2.bias', 'mlp.4.weight', 'mlp.4.bias', 'last_layer.weight']);
    expect([...sd.values()].map((t) => t.shape)).toEqual([[48, 64], [48], [48, 48], [48], [16, 48], [16], [32, 16]]);
    head.dispose();
  });

  test('loads the official weights strictly; output and bottleneck match official_dinohead_io', () => {
    const head = new DINOHead(64, 48, 16, 32);
    head.loadStateDict(officialStateDict());
    scope(() => {
      expectClose(head.forward(g('input')), g('output'), 'output');
      const z = head.forward(g('input'), 'no_last_layer');
      expectClose(z, g('bottleneck'), 'bottleneck');
      expectClose(head.forward(z, 'only_last_layer'), g('output'), 'only_last_layer');
    });
    head.dispose();
  });

  test('gradients reach every parameter', () => {
    const head = new DINOHead(64, 48, 16, 32);
    head.loadStateDict(officialStateDict());
    scope(() => head.forward(g('input')).square().sum().backward());
    scope(() => {
      for (const [name, p] of head.namedParameters()) {
        const grad = p.grad;
        expect(grad, name).not.toBeNull();
        expect(grad!.abs().sum().item(), name).toBeGreaterThan(0);
      }
    });
    head.dispose();
  });

  test('init: truncated normal std 0.02 weights, zero biases, reproducible with a seeded generator', () => {
    const a = new DINOHead(256, 512, 64, 1024, { generator: new Generator(0) });
    const b = new DINOHead(256, 512, 64, 1024, { generator: new Generator(0) });
    for (const [name, t] of a.namedParameters()) {
      if (name.endsWith('bias'))
        expect(
          scope(() => t.abs().sum().item()),
          name,
        ).toBe(0);
      else {
        const std = scope(() => t.std().item());
        expect(std, name).toBeGreaterThan(0.019);
        expect(std, name).toBeLessThan(0.021);
        expect(
          scope(() => t.abs().max().item()),
          name,
        ).toBeLessThanOrEqual(2);
      }
    }
    for (const [[, x], [, y]] of a.namedParameters().map((p, i) => [p, b.namedParameters()[i]!] as const))
      expect(scope(() => x.sub(y).abs().max().item())).toBe(0);
    a.dispose();
    b.dispose();
  });

  test('nlayers = 1 is a single Linear (keys mlp.weight, mlp.bias); nlayers = 2 has mlp.0 and mlp.2', () => {
    const one = new DINOHead(8, 4, 6, 10, { nlayers: 1 });
    expect([...one.stateDict().keys()]).toEqual(['mlp.weight', 'mlp.bias', 'last_layer.weight']);
    const two = new DINOHead(8, 4, 6, 10, { nlayers: 2, mlpBias: false });
    expect([...two.stateDict().keys()]).toEqual(['mlp.0.weight', 'mlp.2.weight', 'last_layer.weight']);
    scope(() => {
      const z = one.forward(randn([3, 8]), 'no_last_layer');
      expectClose(z.norm(2, -1), randn([3]).mul(0).add(1), 'unit norm');
      expect(two.forward(randn([2, 5, 8])).shape).toEqual([2, 5, 10]);
    });
    one.dispose();
    two.dispose();
  });

  test('bfloat16 parameters give bfloat16 logits', () => {
    const head = new DINOHead(64, 48, 16, 32, { dtype: 'bfloat16' });
    head.loadStateDict(officialStateDict());
    scope(() => {
      const y = head.forward(g('input').to('bfloat16'));
      expect(y.dtype).toBe('bfloat16');
      expectClose(y.float(), g('output'), 'bf16 output', 3e-2);
    });
    head.dispose();
  });

  test('argument errors', () => {
    const head = new DINOHead(64, 48, 16, 32);
    scope(() => {
      expectError(() => head.forward(randn([5, 16])), TorchRangeError, 'DINOHead: expected "x" to be a Tensor [..., 64], received float32 Tensor [5, 16]');
      expectError(
        () => head.forward(randn([5, 64]), 'only_last_layer'),
        TorchRangeError,
        'DINOHead: expected "x" to be a Tensor [..., 16], received float32 Tensor [5, 64]',
      );
      expectError(
        () => head.forward(randn([5, 64]), 'last' as 'full'),
        TorchRangeError,
        'DINOHead: expected "mode" to be "full" | "no_last_layer" | "only_last_layer", received string "last"',
      );
    });
    expectError(() => new DINOHead(4, 4, 4, 4, { nlayers: 0 }), TorchRangeError, 'DINOHead: expected "nlayers" to be a positive integer, received 0');
    head.dispose();
  });
});
