#!/usr/bin/env node
// Builds the addon against another libtorch and runs the whole suite on it: the check that the sources compile and
// behave the same on libtorch 2.x as on Debian's 1.13. LIBTORCH is the libtorch root (a libtorch zip, or the `torch`
// folder of a PyTorch wheel: python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))').
//   LIBTORCH=/path/to/torch npm run test:libtorch [-- vitest args]
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = process.env.LIBTORCH;
const cmakeDir = root && join(root, 'share', 'cmake', 'Torch');
if (!root || !existsSync(join(cmakeDir, 'TorchConfig.cmake'))) {
  console.error(`test:libtorch: set LIBTORCH to a libtorch root holding share/cmake/Torch/TorchConfig.cmake (got ${root ? `"${root}"` : 'nothing'})`);
  process.exit(2);
}
const versionFile = [join(root, 'version.py'), join(root, 'build-version')].find(existsSync);
const version = versionFile ? (/(\d+\.\d+\.\d+)/.exec(readFileSync(versionFile, 'utf8'))?.[1] ?? 'other') : 'other';
const out = resolve(`build-libtorch-${version}`);
const run = (cmd, args, env = {}) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
const ccache = spawnSync('ccache', ['--version']).status === 0 ? ['--CDCMAKE_CXX_COMPILER_LAUNCHER=ccache'] : [];
console.log(`test:libtorch: building against libtorch ${version} (${root}) into ${out}`);
run('npx', ['cmake-js', 'compile', '--out', out, '-G', 'Ninja', `--CDTorch_DIR=${cmakeDir}`, ...ccache]);
run('npx', ['tsc', '-p', 'tsconfig.json']);
run('node', ['scripts/run-tests.mjs', ...process.argv.slice(2)], { DINOV3_ADDON: join(out, 'Release', 'dinov3.node') });
