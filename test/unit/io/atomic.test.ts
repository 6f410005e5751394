// atomicWriteFile removes what writes killed before their rename left behind (temporaries of processes that are
// gone), and leaves those of live processes alone.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';

import { atomicWriteFile } from '../../../src/io/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'dinov3-atomic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('stale temporaries of dead processes are removed by the next write; live ones are kept', async () => {
  const path = join(dir, 'w.safetensors');
  const stale = `${path}.tmp-999999999-0123456789ab`;
  const live = `${path}.tmp-${process.ppid}-0123456789ab`;
  const other = `${path}.tmp-notes`;
  for (const p of [stale, live, other]) writeFileSync(p, 'partial');
  await atomicWriteFile(path, [Buffer.from('new')]);
  expect(readFileSync(path, 'utf8')).toBe('new');
  expect([existsSync(stale), existsSync(live), existsSync(other)]).toEqual([false, true, true]);
});
