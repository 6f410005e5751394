import { expect, test } from 'vitest';

import { Linear, memory } from '../../../src/index.js';

test('modules can be built on the meta device without allocating', () => {
  const before = memory().cpuBytes;
  const l = new Linear(4096, 16384, { device: 'meta' });
  expect(l.weight.shape).toEqual([16384, 4096]);
  expect(l.weight.device).toBe('meta');
  expect(l.numParameters()).toBe(4096 * 16384 + 16384);
  l.dispose();
  expect(memory().cpuBytes).toBe(before);
});
