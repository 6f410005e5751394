#!/usr/bin/env node
// npm "install" step of the published package: makes sure `import 'dinov3-ts'` finds a native addon.
//   1. A prebuilt binary that loads (prebuilds/<platform>-<arch>/*.node, the node-gyp-build layout, or one named
//      by DINOV3_ADDON) is used as is.
//   2. Otherwise the addon is built with cmake-js into build/Release/dinov3.node, against the first libtorch found:
//      $LIBTORCH (a libtorch folder, or torch.utils.cmake_prefix_path), $CMAKE_PREFIX_PATH / $Torch_DIR, the
//      libtorch of an installed PyTorch (python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'), or
//      Debian's libtorch-dev (/usr/lib/<triplet>/cmake/Torch).
//   3. When no libtorch (or no cmake / C++ compiler) is found it fails with the one command to run.
// In a development checkout (not under node_modules) it does nothing: `node scripts/setup.mjs` builds there.
// Plain Node ESM with node: builtins only.
//
// Environment: DINOV3_SKIP_INSTALL=1 (do nothing), DINOV3_INSTALL_BUILD=1 (build even in a checkout),
// DINOV3_INSTALL_DRY_RUN=1 (print the plan as JSON, change nothing), LIBTORCH, CMAKE_PREFIX_PATH, Torch_DIR.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (msg) => process.stderr.write(`[dinov3-ts install] ${msg}\n`);
const truthy = (v) => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
const dryRun = truthy(process.env.DINOV3_INSTALL_DRY_RUN);

function which(cmd) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, cmd))) return path.join(dir, cmd);
  }
  return null;
}

/** The commands that fix a missing libtorch, for the failure message. */
const FIX = [
  'Install libtorch and re-run the install step, for example:',
  '  Debian/Ubuntu:   sudo apt-get install --no-install-recommends cmake ninja-build g++ libtorch-dev libopenblas0-openmp && npm rebuild dinov3-ts',
  "  With PyTorch:    LIBTORCH=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') npm rebuild dinov3-ts",
  '  With a libtorch download (https://pytorch.org, C++ / LibTorch):   LIBTORCH=/path/to/libtorch npm rebuild dinov3-ts',
  'Or use a build made elsewhere: DINOV3_ADDON=/path/to/dinov3.node.',
].join('\n');

function fail(msg) {
  log(`error: ${msg}\n${FIX}`);
  process.exit(1);
}

/** True when `file` loads as the addon in a fresh process (a broken prebuild must not stop a build). */
function loads(file) {
  const script = `const m = require(${JSON.stringify(file)}); if (typeof m.init !== 'function') process.exit(3);`;
  return spawnSync(process.execPath, ['-e', script], { stdio: 'ignore', timeout: 60_000 }).status === 0;
}

/** Prebuilt candidates, in the order the loader (src/native/binding.ts) tries them. */
function prebuiltCandidates(root = ROOT) {
  const out = [];
  if (process.env.DINOV3_ADDON) out.push(path.resolve(process.env.DINOV3_ADDON));
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let names = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.node'));
  } catch {
    // no prebuilds for this platform
  }
  const rank = (n) => (n === 'dinov3.node' ? 0 : n.includes('napi') ? 1 : 2);
  names.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  for (const n of names) out.push(path.join(dir, n));
  return out;
}

/** libtorch prefixes for CMAKE_PREFIX_PATH, with where each came from. */
function findLibtorch() {
  if (process.env.LIBTORCH) {
    const p = path.resolve(process.env.LIBTORCH);
    if (!existsSync(p)) fail(`LIBTORCH=${process.env.LIBTORCH} does not exist`);
    return { prefix: p, from: 'LIBTORCH' };
  }
  if (process.env.CMAKE_PREFIX_PATH) return { prefix: process.env.CMAKE_PREFIX_PATH.split(path.delimiter).join(';'), from: 'CMAKE_PREFIX_PATH' };
  if (process.env.Torch_DIR) return { prefix: path.resolve(process.env.Torch_DIR, '..', '..', '..'), from: 'Torch_DIR' };
  for (const py of ['python3', 'python']) {
    if (!which(py)) continue;
    const r = spawnSync(py, ['-c', 'import torch; print(torch.utils.cmake_prefix_path)'], { encoding: 'utf8', timeout: 120_000 });
    const p = r.status === 0 ? r.stdout.trim() : '';
    if (p && existsSync(p)) return { prefix: p, from: `the PyTorch of ${py}` };
  }
  const libDirs = ['/usr/lib', '/usr/local/lib', '/usr/lib64'];
  for (const base of libDirs) {
    let subdirs = [''];
    try {
      subdirs = ['', ...readdirSync(base).filter((d) => d.includes('-linux-'))];
    } catch {
      continue;
    }
    for (const sub of subdirs) {
      if (existsSync(path.join(base, sub, 'cmake', 'Torch', 'TorchConfig.cmake')))
        return { prefix: null, from: `Debian libtorch-dev (${path.join(base, sub)})` };
    }
  }
  if (existsSync('/usr/share/cmake/Torch/TorchConfig.cmake')) return { prefix: null, from: 'a system libtorch (/usr/share/cmake/Torch)' };
  return null;
}

function main() {
  if (truthy(process.env.DINOV3_SKIP_INSTALL)) return log('skipped (DINOV3_SKIP_INSTALL=1)');
  const inNodeModules = ROOT.split(path.sep).includes('node_modules');
  if (!inNodeModules && !truthy(process.env.DINOV3_INSTALL_BUILD)) {
    return log('development checkout: nothing to do here (`node scripts/setup.mjs` builds the addon)');
  }
  for (const p of prebuiltCandidates()) {
    if (existsSync(p) && loads(p)) return log(`using the prebuilt addon ${p.startsWith(ROOT + path.sep) ? path.relative(ROOT, p) : p}`);
  }
  const built = path.join(ROOT, 'build', 'Release', 'dinov3.node');
  const torch = findLibtorch();
  if (!torch) fail('no libtorch found (looked at $LIBTORCH, $CMAKE_PREFIX_PATH, $Torch_DIR, python3 -c "import torch", Debian libtorch-dev).');
  if (!which('cmake')) fail('cmake is not installed (the addon is built with cmake-js).');
  if (!which('c++') && !which('g++') && !which('clang++')) fail('no C++ compiler (c++, g++ or clang++) is installed.');
  const cmakeJs = path.join(path.dirname(fileURLToPath(import.meta.resolve('cmake-js/package.json'))), 'bin', 'cmake-js');
  const args = [cmakeJs, 'compile', '--out', 'build', '--parallel', String(Math.max(1, availableParallelism()))];
  if (which('ninja')) args.push('-G', 'Ninja');
  if (which('ccache')) args.push('--CDCMAKE_CXX_COMPILER_LAUNCHER=ccache');
  if (torch.prefix) args.push(`--CDCMAKE_PREFIX_PATH=${torch.prefix}`);
  const plan = { libtorch: torch.from, prefix: torch.prefix, command: [process.execPath, ...args] };
  if (dryRun) {
    process.stdout.write(`${JSON.stringify(plan)}\n`);
    return;
  }
  log(`building the native addon against libtorch from ${torch.from} (a few minutes)`);
  const env = { ...process.env };
  delete env.LIBTORCH; // already in CMAKE_PREFIX_PATH (CMakeLists.txt would prepend it again)
  const r = spawnSync(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], env });
  if (r.status !== 0 || !existsSync(built)) fail(`building the addon failed (cmake-js exited with ${r.status ?? r.signal}).`);
  if (!loads(built)) fail(`the addon was built (${built}) but does not load.`);
  log(`built ${path.relative(ROOT, built)}`);
}

main();
