// Both native builds load and work: the cmake-js addon (build/Release) always; the node-gyp addon
// (build-gyp/Release, from binding.gyp) when CI or DINOV3_BUILD_GYP asks for it (scripts/setup.mjs builds it then).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, test } from 'vitest';

import { ensureDist, ROOT } from '../cli/dist.js';

const truthy = (v: string | undefined) => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
const gypWanted = process.env.DINOV3_BUILD_GYP !== undefined ? truthy(process.env.DINOV3_BUILD_GYP) : truthy(process.env.CI);

/** Loads the library with DINOV3_ADDON=addon in a fresh process, sums a tensor and reports where the addon came from. */
function loadInChild(addon: string): { path: string; torchVersion: string; sum: number; eigh: number[] } {
  const script = `
    const { addonInfo, tensor } = await import(${JSON.stringify(join(ROOT, 'dist', 'src', 'index.js'))});
    const { linalgEigh } = await import(${JSON.stringify(join(ROOT, 'dist', 'src', 'features', 'decomp.js'))});
    const t = tensor([[1, 2], [3, 4.5]]);
    const { eigenvalues } = linalgEigh(tensor([[2, 0], [0, 3]]));
    process.stdout.write(JSON.stringify({ path: addonInfo.path, torchVersion: addonInfo.torchVersion, sum: t.sum().item(), eigh: Array.from(eigenvalues.data()) }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, DINOV3_ADDON: addon }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child exited with ${r.status}:\n${r.stderr}`);
  return JSON.parse(r.stdout) as { path: string; torchVersion: string; sum: number; eigh: number[] };
}

describe('native builds', () => {
  test('the cmake-js build (build/Release/dinov3.node) loads and computes', () => {
    ensureDist();
    const addon = join(ROOT, 'build', 'Release', 'dinov3.node');
    expect(existsSync(addon)).toBe(true);
    const r = loadInChild(addon);
    expect(r.path).toBe(addon);
    expect(r.sum).toBe(10.5);
    expect(r.eigh).toEqual([2, 3]);
    expect(r.torchVersion).toMatch(/^\d+\.\d+/);
  });

  test.runIf(gypWanted)('the node-gyp build (build-gyp/Release/dinov3.node) loads and computes', () => {
    ensureDist();
    const addon = join(ROOT, 'build-gyp', 'Release', 'dinov3.node');
    expect(existsSync(addon), `${addon} missing: run DINOV3_BUILD_GYP=1 node scripts/setup.mjs`).toBe(true);
    const r = loadInChild(addon);
    expect(r.path).toBe(addon);
    expect(r.sum).toBe(10.5);
    expect(r.eigh).toEqual([2, 3]);
  });

  test('binding.gyp lists every native source (the same set CMake globs)', () => {
    const gyp = readFileSync(join(ROOT, 'binding.gyp'), 'utf8');
    const expr = /'<!@\(node -p "(.*)"\)'/.exec(gyp)![1]!.replace(/\\'/g, "'");
    const listed = spawnSync(process.execPath, ['-p', expr], { cwd: ROOT, encoding: 'utf8' }).stdout.trim().split(' ');
    const all = spawnSync('find', ['native/src', '-name', '*.cc'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim().split('\n').sort();
    expect(listed).toEqual(all);
    expect(listed).toContain('native/src/ops/decomp.cc');
  });
});
