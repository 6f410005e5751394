// The typed NativeBinding interface (src/native/binding.ts) and the addon's exports are the same set of names, so
// that nothing the addon offers is untyped and nothing typed is missing from the build.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { expect, test } from 'vitest';

import { addonInfo } from '../../../src/native/binding.js';

test('NativeBinding lists exactly the exports of the loaded addon', () => {
  const src = readFileSync(new URL('../../../src/native/binding.ts', import.meta.url), 'utf8');
  const start = src.indexOf('export interface NativeBinding {');
  const body = src.slice(start, src.indexOf('\n}\n', start));
  const typed = [...body.matchAll(/^ {2}(\w+)\??[(:<]/gm)].map((m) => m[1]!).sort();
  const exported = Object.keys(createRequire(import.meta.url)(addonInfo.path) as object).sort();
  expect(typed.length).toBeGreaterThan(100);
  expect(typed.filter((n) => !exported.includes(n))).toEqual([]);
  expect(exported.filter((n) => !typed.includes(n))).toEqual([]);
});
