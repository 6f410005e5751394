// binding.gyp compiles with the C++ standard CMakeLists.txt picks: C++20 for libtorch >= 2.10, C++17 before.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';

const ROOT = new URL('../../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'dinov3-gyp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Evaluates binding.gyp's cxx_std expression with LIBTORCH pointing at a libtorch of version major.minor. */
function gypStd(major: number, minor: number): string {
  const prefix = join(dir, `torch-${major}.${minor}`);
  const h = join(prefix, 'include', 'torch', 'csrc', 'api', 'include', 'torch');
  mkdirSync(h, { recursive: true });
  writeFileSync(join(h, 'version.h'), `#pragma once\n#define TORCH_VERSION_MAJOR ${major}\n\n#define TORCH_VERSION_MINOR ${minor}\n`);
  const gyp = readFileSync(join(ROOT, 'binding.gyp'), 'utf8');
  const expr = /'cxx_std%': '<!\(node -p "(.*)"\)'/.exec(gyp)![1]!.replace(/\\'/g, "'");
  const r = spawnSync(process.execPath, ['-p', expr], { env: { ...process.env, LIBTORCH: join(prefix, 'share', 'cmake') }, encoding: 'utf8' });
  expect(r.status).toBe(0);
  return r.stdout.trim();
}

test('the C++ standard follows the libtorch version, with the threshold CMakeLists.txt uses', () => {
  const cmake = readFileSync(join(ROOT, 'CMakeLists.txt'), 'utf8');
  expect(cmake).toMatch(/if\(Torch_VERSION VERSION_GREATER_EQUAL 2\.10\)\n\s+set\(CMAKE_CXX_STANDARD 20\)\nelse\(\)\n\s+set\(CMAKE_CXX_STANDARD 17\)/);
  expect(gypStd(1, 13)).toBe('c++17');
  expect(gypStd(2, 9)).toBe('c++17');
  expect(gypStd(2, 10)).toBe('c++20');
  expect(gypStd(3, 0)).toBe('c++20');
  expect(readFileSync(join(ROOT, 'binding.gyp'), 'utf8')).toContain("'-std=<(cxx_std)'");
});
