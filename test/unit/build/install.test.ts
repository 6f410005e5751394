// The package's install step (scripts/install.mjs): a development checkout is left alone; a prebuilt addon that loads
// is used; otherwise the plan names the libtorch found (LIBTORCH, ..., Debian's libtorch-dev); a LIBTORCH that does
// not exist fails with the commands to run.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, test } from 'vitest';

import { addonInfo } from '../../../src/native/binding.js';

const ROOT = new URL('../../../', import.meta.url).pathname;

function install(env: Record<string, string | undefined>) {
  const base: Record<string, string | undefined> = {
    ...process.env,
    DINOV3_ADDON: undefined,
    LIBTORCH: undefined,
    CMAKE_PREFIX_PATH: undefined,
    Torch_DIR: undefined,
  };
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'install.mjs')], { env: { ...base, ...env }, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('a development checkout is left to scripts/setup.mjs', () => {
  const r = install({});
  expect(r).toEqual({
    code: 0,
    stdout: '',
    stderr: '[dinov3-ts install] development checkout: nothing to do here (`node scripts/setup.mjs` builds the addon)\n',
  });
});

test('a prebuilt addon that loads is used as is', () => {
  const r = install({ DINOV3_INSTALL_BUILD: '1', DINOV3_ADDON: addonInfo.path });
  expect(r.code).toBe(0);
  expect(r.stderr).toBe(
    `[dinov3-ts install] using the prebuilt addon ${addonInfo.path.startsWith(ROOT) ? addonInfo.path.slice(ROOT.length) : addonInfo.path}\n`,
  );
});

test('the build plan names the libtorch it found; a missing LIBTORCH fails with the commands to run', () => {
  const plan = install({ DINOV3_INSTALL_BUILD: '1', DINOV3_INSTALL_DRY_RUN: '1', LIBTORCH: ROOT });
  expect(plan.code).toBe(0);
  const p = JSON.parse(plan.stdout) as { libtorch: string; prefix: string; command: string[] };
  expect(p.libtorch).toBe('LIBTORCH');
  expect(p.command).toContain(`--CDCMAKE_PREFIX_PATH=${ROOT.replace(/\/$/, '')}`);
  expect(p.command.slice(1, 4)).toEqual([expect.stringMatching(/cmake-js\/bin\/cmake-js$/), 'compile', '--out']);
  const missing = install({ DINOV3_INSTALL_BUILD: '1', LIBTORCH: '/nonexistent/libtorch' });
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain(
    '[dinov3-ts install] error: LIBTORCH=/nonexistent/libtorch does not exist\nInstall libtorch and re-run the install step, for example:\n',
  );
  expect(missing.stderr).toContain("LIBTORCH=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') npm rebuild dinov3-ts");
  expect(missing.stderr).toContain(
    'sudo apt-get install --no-install-recommends cmake ninja-build g++ libtorch-dev libopenblas0-openmp && npm rebuild dinov3-ts',
  );
});
