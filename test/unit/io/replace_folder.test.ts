// replaceFolder: a folder replaced as a set, by the atomic exchange where the platform has it (Linux renameat2,
// native/src/io/fs.cc) and by two renames elsewhere; both leave exactly the new set and nothing beside it.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';

import { replaceFolder } from '../../../src/io/replace_folder.js';
import { native } from '../../../src/native/binding.js';
import { Dinov3Error } from '../../../src/native/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'dinov3-replace-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function folder(name: string, files: Record<string, string>): string {
  const p = join(dir, name);
  mkdirSync(p, { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(p, f), text);
  return p;
}
const contents = (p: string) => Object.fromEntries(readdirSync(p).map((f) => [f, readFileSync(join(p, f), 'utf8')]));

test('renameExchange swaps two folders in one step; a missing path gives ENOENT and changes nothing', () => {
  const a = folder('xa', { 'a.txt': 'A' });
  const b = folder('xb', { 'b.txt': 'B', 'c.txt': 'C' });
  const r = native.renameExchange!(a, b);
  // A file system without the exchange (EINVAL) or another platform (ENOSYS) moves nothing; replaceFolder then
  // falls back to two renames (tested below).
  if (r.errno !== 0) expect([constants.errno.EINVAL, constants.errno.ENOSYS]).toContain(r.errno);
  const [inA, inB] = r.errno === 0 ? [{ 'b.txt': 'B', 'c.txt': 'C' }, { 'a.txt': 'A' }] : [{ 'a.txt': 'A' }, { 'b.txt': 'B', 'c.txt': 'C' }];
  expect([contents(a), contents(b)]).toEqual([inA, inB]);
  expect(native.renameExchange!(a, join(dir, 'absent'))).toEqual({ errno: constants.errno.ENOENT, message: 'No such file or directory' });
  expect(contents(a)).toEqual(inA);
});

for (const how of ['exchange', 'two renames'] as const) {
  test(`${how}: the new set replaces the old one; a new target is a plain rename; nothing is left beside them`, async () => {
    const saved = native.renameExchange;
    if (how === 'two renames') delete (native as { renameExchange?: unknown }).renameExchange;
    try {
      const root = join(dir, how.replace(' ', '_'));
      mkdirSync(root);
      const target = folder(join(how.replace(' ', '_'), 'out'), { 'cls.npy': 'old', 'stale.npy': 'old' });
      const fresh = folder(join(how.replace(' ', '_'), 'fresh'), { 'cls.npy': 'new', 'meta.json': '{}' });
      await replaceFolder(fresh, target, join(root, 'aside'));
      expect(contents(target)).toEqual({ 'cls.npy': 'new', 'meta.json': '{}' });
      expect(readdirSync(root)).toEqual(['out']);
      const second = folder(join(how.replace(' ', '_'), 'fresh2'), { 'x.npy': 'x' });
      await replaceFolder(second, join(root, 'new'), join(root, 'aside'));
      expect(readdirSync(root).sort()).toEqual(['new', 'out']);
      expect(contents(join(root, 'new'))).toEqual({ 'x.npy': 'x' });
    } finally {
      native.renameExchange = saved;
    }
  });
}

test('a failed exchange is an ERR_IO Dinov3Error and leaves the target as it was', async () => {
  const target = folder('kept', { 'cls.npy': 'old' });
  const missing = join(dir, 'never-written');
  const err = await replaceFolder(missing, target, join(dir, 'aside')).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(Dinov3Error);
  expect((err as Dinov3Error).code).toBe('ERR_IO');
  expect((err as Error).message).toBe(`${target}: cannot replace the folder with "${missing}" (No such file or directory)`);
  expect(contents(target)).toEqual({ 'cls.npy': 'old' });
  expect(existsSync(join(dir, 'aside'))).toBe(false);
});
