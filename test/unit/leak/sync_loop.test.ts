// A synchronous loop that never yields to the event loop must not accumulate native memory: dispose() frees the
// tensor at once and its handle slot is reused (the GC backstop, which needs the event loop, is never involved for
// tensors owned by a scope).
import { expect, test } from 'vitest';

import { memory, ones, scope } from '../../../src/index.js';

test('600,000 short-lived tensors in a synchronous loop keep RSS and live tensors flat', () => {
  const a = ones([4]);
  const live = memory().liveTensors;
  for (let i = 0; i < 20_000; i++) scope(() => void a.add(1).mul(2).sum()); // warm up the heap
  const rss0 = process.memoryUsage().rss;
  for (let i = 0; i < 200_000; i++) scope(() => void a.add(1).mul(2).sum());
  const growthMb = (process.memoryUsage().rss - rss0) / 2 ** 20;
  expect(memory().liveTensors).toBe(live);
  expect(growthMb).toBeLessThan(48);
  a.dispose();
});
