// The published package works outside this checkout: `npm pack`, install the tarball into a fresh temporary project,
// import it there and extract features from a fixture image. Installing pulls the dependencies from the npm registry
// (a couple of minutes), so this runs under CI or with DINOV3_TEST_PACK=1. By default the install step is skipped and
// the addon already built here is dropped into the installed package as a prebuilt binary (prebuilds/<platform>-<arch>,
// the node-gyp-build layout the loader accepts); DINOV3_TEST_PACK=build lets the install step build it with cmake-js.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';

import { addonInfo } from '../../../src/index.js';
import { ROOT } from '../cli/dist.js';

const truthy = (v: string | undefined) => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
const mode = process.env.DINOV3_TEST_PACK ?? (truthy(process.env.CI) ? '1' : undefined);
const dir = mkdtempSync(join(tmpdir(), 'dinov3-pack-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sh(cmd: string, args: string[], cwd: string, env: Record<string, string | undefined> = {}): string {
  const r = spawnSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

describe.skipIf(!truthy(mode))('the npm package', () => {
  test('pack, install into a fresh project, import, extract features', () => {
    const packed = JSON.parse(sh('npm', ['pack', '--json', '--pack-destination', dir], ROOT)) as { filename: string; files: { path: string }[] }[];
    const files = packed[0]!.files.map((f) => f.path);
    expect(files).toContain('dist/src/index.js');
    expect(files).toContain('dist/src/index.d.ts');
    expect(files).toContain('scripts/install.mjs');
    expect(files).toContain('CMakeLists.txt');
    expect(files.filter((f) => /^(test|bench|docs)\/|\.ts$(?<!\.d\.ts$)|\.map$/.test(f))).toEqual([]);

    const proj = join(dir, 'consumer');
    mkdirSync(proj);
    writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }));
    const build = mode === 'build';
    sh('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts', join(dir, packed[0]!.filename)], proj, {
      DINOV3_ADDON: undefined,
      DINOV3_SKIP_INSTALL: build ? undefined : '1',
    });
    const pkg = join(proj, 'node_modules', 'dinov3-ts');
    if (!build) {
      const prebuilt = join(pkg, 'prebuilds', `${process.platform}-${process.arch}`);
      mkdirSync(prebuilt, { recursive: true });
      copyFileSync(addonInfo.path, join(prebuilt, 'dinov3.node'));
    }
    copyFileSync(join(ROOT, 'test', 'fixtures', 'reference', 'official_vits_like.safetensors'), join(proj, 'weights.safetensors'));
    copyFileSync(join(ROOT, 'test', 'fixtures', 'images', 'chelsea.jpg'), join(proj, 'cat.jpg'));
    writeFileSync(
      join(proj, 'smoke.mjs'),
      `import { addonInfo, extractFeatures, loadBackbone } from 'dinov3-ts';
       import { run } from 'dinov3-ts/cli';
       const { model } = await loadBackbone('weights.safetensors');
       const out = [];
       for await (const f of extractFeatures(model, ['cat.jpg'], { resolution: 64 })) out.push({ cls: f.cls.shape, patches: f.patches.shape, finite: f.cls.toFloat32Array().every(Number.isFinite) });
       process.stdout.write(JSON.stringify({ addon: addonInfo.path, out, cli: typeof run }));`,
    );
    const result = JSON.parse(sh(process.execPath, ['smoke.mjs'], proj, { DINOV3_ADDON: undefined })) as { addon: string; out: unknown[]; cli: string };
    expect(result.addon.startsWith(pkg)).toBe(true);
    expect(result.out).toEqual([{ cls: [64], patches: [4, 4, 64], finite: true }]);
    expect(result.cli).toBe('function');
    expect(existsSync(join(pkg, 'test'))).toBe(false);
    expect(JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).name).toBe('dinov3-ts');
  }, 600_000);
});
