#!/usr/bin/env node
// One-shot, idempotent project setup: Debian packages, npm deps, native addon, TypeScript build.
// Runs as `pretest` / `predemo`, so a fresh Debian 12 machine needs nothing but `npm test`.
// Plain Node ESM with node: builtins only (node_modules may not exist yet).
//
//   node scripts/setup.mjs                 everything that is out of date
//   node scripts/setup.mjs --only native   native addon (+ the apt/npm steps it depends on)
//   node scripts/setup.mjs --only ts       TypeScript build (+ the npm step it depends on)
//   node scripts/setup.mjs --dry-run       print what would run, change nothing
//   node scripts/setup.mjs --force         rebuild native + ts even when up to date
//   node scripts/setup.mjs --verbose       stream command output (also DINOV3_SETUP_VERBOSE=1)
//
// Environment:
//   DINOV3_SKIP_SETUP=1   do nothing (e.g. a machine whose build was copied in)
//   DINOV3_SKIP_APT=1     never check/install Debian packages
//   LIBTORCH=<dir>        libtorch prefix (or torch.utils.cmake_prefix_path); added to CMAKE_PREFIX_PATH
//   CMAKE_PREFIX_PATH     passed through to CMake
//                         Both are remembered in build/.setup-native.json: later runs without them keep
//                         that libtorch; `rm -rf build` goes back to Debian's libtorch-dev.
//   CI / DINOV3_BUILD_GYP=1   also build the node-gyp variant into build-gyp/Release/dinov3.node
//                             (DINOV3_BUILD_GYP=0 turns it off even under CI)
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  statSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  mkdirSync,
  rmSync,
  symlinkSync,
  readlinkSync,
  lstatSync,
  copyFileSync,
  renameSync,
  utimesSync,
  createWriteStream,
} from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const r = (...p) => path.join(ROOT, ...p);
const T0 = Date.now();

const APT_PACKAGES = ['cmake', 'ninja-build', 'g++', 'libtorch-dev', 'libgloo-dev', 'libopenblas0-openmp', 'ccache', 'dataset-fashion-mnist'];
const APT_PACKAGES_GYP = ['make', 'python3']; // node-gyp needs these on top
const STEPS = ['apt', 'npm', 'native', 'ts'];
// --only X runs X plus the steps it cannot work without (each is a no-op when already satisfied).
const PREREQS = { apt: [], npm: [], native: ['apt', 'npm'], ts: ['npm'] };

// ---------------------------------------------------------------- args / env
const argv = process.argv.slice(2);
const opts = { dryRun: false, force: false, verbose: process.env.DINOV3_SETUP_VERBOSE === '1', only: [] };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--dry-run' || a === '-n') opts.dryRun = true;
  else if (a === '--force' || a === '-f') opts.force = true;
  else if (a === '--verbose' || a === '-v') opts.verbose = true;
  else if (a === '--only') opts.only.push(...(argv[++i] ?? '').split(','));
  else if (a.startsWith('--only=')) opts.only.push(...a.slice(7).split(','));
  else if (a === '--help' || a === '-h') {
    const src = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
    console.log(
      src
        .slice(
          1,
          src.findIndex((l) => l.startsWith('import')),
        )
        .map((l) => l.replace(/^\/\/ ?/, ''))
        .join('\n'),
    );
    process.exit(0);
  } else fail(`unknown argument: ${a} (try --help)`);
}
for (const s of opts.only) if (!STEPS.includes(s)) fail(`--only: unknown step "${s}" (one of ${STEPS.join(', ')})`);

const truthy = (v) => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
const buildGyp = process.env.DINOV3_BUILD_GYP !== undefined ? truthy(process.env.DINOV3_BUILD_GYP) : truthy(process.env.CI);
const nproc = Math.max(1, availableParallelism());

const wanted = new Set();
const want = (s) => {
  for (const p of PREREQS[s]) want(p);
  wanted.add(s);
};
(opts.only.length ? opts.only : STEPS).forEach(want);

// ---------------------------------------------------------------- helpers
function log(msg) {
  process.stderr.write(`[setup] ${msg}\n`);
}
function fail(msg, code = 1) {
  log(`error: ${msg}`);
  process.exit(code);
}
const secs = (ms) => (ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`);
const mtime = (p) => {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return -Infinity;
  }
};
const quote = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${String(s).replace(/'/g, `'\\''`)}'`);
const pretty = (s) => (s === process.execPath ? 'node' : String(s).startsWith(ROOT + path.sep) ? path.relative(ROOT, s) : String(s));
const fmt = (cmd, args, env = {}) =>
  [...Object.entries(env).map(([k, v]) => `${k}=${quote(v)}`), quote(pretty(cmd)), ...args.map((a) => quote(pretty(a)))].join(' ');

function which(cmd) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, cmd))) return path.join(dir, cmd);
  }
  return null;
}

/** Newest mtime among files (and, if withDirs, directories: catches deletions) under the given paths. */
function newest(paths, { ext = null, withDirs = true } = {}) {
  let best = -Infinity;
  let which_ = null;
  const visit = (p) => {
    let st;
    try {
      st = statSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) {
      if (withDirs && st.mtimeMs > best) {
        best = st.mtimeMs;
        which_ = p;
      }
      for (const e of readdirSync(p)) if (e !== 'node_modules' && e !== '.git') visit(path.join(p, e));
    } else if (!ext || ext.some((x) => p.endsWith(x))) {
      if (st.mtimeMs > best) {
        best = st.mtimeMs;
        which_ = p;
      }
    }
  };
  paths.forEach(visit);
  return { time: best, file: which_ && path.relative(ROOT, which_) };
}

/** Stamp files record a step's inputs; their mtime is set to when the step *started*. */
function readStamp(p) {
  try {
    return { time: statSync(p).mtimeMs, data: JSON.parse(readFileSync(p, 'utf8')) };
  } catch {
    return null;
  }
}
function writeStamp(p, data, startedAt) {
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, JSON.stringify(data, null, 2) + '\n');
  const t = new Date(startedAt);
  utimesSync(p, t, t);
}

/**
 * Runs a command with output captured to a log file (streamed to stderr with --verbose).
 * Prints a heartbeat every 30 s so CI does not think we hung. On failure prints the tail and exits.
 */
async function run(label, cmd, args, { env = {}, cwd = ROOT, allowFail = false } = {}) {
  const shown = fmt(cmd, args, env);
  if (opts.dryRun) {
    log(`would run: ${shown}${cwd !== ROOT ? `   (in ${path.relative(ROOT, cwd)})` : ''}`);
    return 0;
  }
  log(`${label}: ${shown}`);
  const logFile = path.join(tmpdir(), `dinov3-setup-${label.replace(/\W+/g, '-')}.log`);
  const out = createWriteStream(logFile);
  const tail = [];
  let partial = '';
  let lastLine = '';
  const started = Date.now();
  const code = await new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const onData = (buf) => {
      out.write(buf);
      if (opts.verbose) process.stderr.write(buf);
      const lines = (partial + buf.toString()).split(/\r?\n/);
      partial = lines.pop();
      for (const l of lines) {
        tail.push(l);
        // Prefer progress lines (ninja/make "[3/8] ...", apt "Unpacking ...") for the heartbeat.
        if (/^\[\s*\d+\/\d+\]|^(Unpacking|Setting up|Get:\d+) |^-- /.test(l)) lastLine = l.trim();
      }
      if (tail.length > 400) tail.splice(0, tail.length - 200);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const beat = opts.verbose
      ? null
      : setInterval(() => {
          log(`  ... ${label} still running (${secs(Date.now() - started)})${lastLine ? `: ${lastLine.slice(0, 110)}` : ''}`);
        }, 30_000);
    child.on('error', (e) => {
      tail.push(String(e));
    });
    child.on('close', (c, sig) => {
      if (beat) clearInterval(beat);
      resolve(c ?? (sig ? 128 : 1));
    });
  });
  if (partial) tail.push(partial);
  await new Promise((res) => out.end(res));
  if (code === 0) {
    log(`${label}: done in ${secs(Date.now() - started)}`);
    return 0;
  }
  if (allowFail) {
    log(`${label}: failed (exit ${code}), log: ${logFile}`);
    return code;
  }
  if (!opts.verbose) {
    process.stderr.write(`[setup] ---- last lines of output (full log: ${logFile}) ----\n`);
    process.stderr.write(tail.slice(-60).join('\n') + '\n');
    process.stderr.write('[setup] ----\n');
  }
  fail(`${label} failed (exit ${code}): ${shown}`, code || 1);
}

const did = []; // steps that did work (for the final line)

// ---------------------------------------------------------------- (a) apt
async function stepApt() {
  if (process.env.DINOV3_SKIP_APT === '1') return;
  if (!existsSync('/etc/debian_version') || !which('dpkg-query')) {
    log('not a Debian-based system: skipping apt; install cmake, ninja, ccache, a C++ compiler and libtorch yourself');
    return;
  }
  const pkgs = buildGyp ? [...APT_PACKAGES, ...APT_PACKAGES_GYP] : APT_PACKAGES;
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} format
  const q = spawnSync('dpkg-query', ['-W', '-f=${Package}\t${Status}\n', ...pkgs], { encoding: 'utf8' });
  const installed = new Set(
    (q.stdout ?? '')
      .split('\n')
      .map((l) => l.split('\t'))
      .filter(([, s]) => s === 'install ok installed')
      .map(([p]) => p.replace(/:.*$/, '')),
  );
  const missing = pkgs.filter((p) => !installed.has(p));
  if (!missing.length) return;
  log(`missing Debian packages: ${missing.join(' ')}`);
  const installArgs = ['install', '-y', '--no-install-recommends', ...missing];
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `[setup] not root; install them with:\n\n    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing.join(' ')}\n\n`,
    );
    process.stderr.write('[setup] (or set DINOV3_SKIP_APT=1 if they are provided some other way)\n');
    process.exit(1);
  }
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const listsEmpty = (() => {
    try {
      return !readdirSync('/var/lib/apt/lists').some((f) => f.includes('_Packages'));
    } catch {
      return true;
    }
  })();
  if (listsEmpty) await run('apt-get update', 'apt-get', ['update'], { env });
  const code = await run('apt-get install', 'apt-get', installArgs, { env, allowFail: !listsEmpty });
  if (code !== 0) {
    await run('apt-get update', 'apt-get', ['update'], { env });
    await run('apt-get install', 'apt-get', installArgs, { env });
  }
  did.push('apt');
}

// ---------------------------------------------------------------- (b) npm
async function stepNpm() {
  // Run as npm's "prepare" script (npm ci here, or a git-URL install), npm itself is installing the dependencies.
  if (process.env.npm_lifecycle_event === 'prepare') return;
  const lock = r('package-lock.json');
  const hidden = r('node_modules', '.package-lock.json');
  let why = null;
  if (!existsSync(r('node_modules'))) why = 'node_modules missing';
  else if (!existsSync(hidden)) why = 'node_modules/.package-lock.json missing';
  else if (mtime(lock) > mtime(hidden)) why = 'package-lock.json changed';
  else if (!existsSync(lock) && mtime(r('package.json')) > mtime(hidden)) why = 'package.json changed';
  if (!why) return;
  log(`npm dependencies: ${why}`);
  const args = [existsSync(lock) ? 'ci' : 'install', '--onnxruntime-node-install=skip', '--no-audit', '--no-fund'];
  // With a binding.gyp at the root and no install script, npm runs `node-gyp rebuild` for the project
  // itself, which would wipe cmake-js's build/. package.json's "gypfile": false turns that off.
  const pkg = JSON.parse(readFileSync(r('package.json'), 'utf8'));
  if (existsSync(r('binding.gyp')) && pkg.gypfile !== false && !pkg.scripts?.install && !pkg.scripts?.preinstall) {
    log('warning: package.json lacks "gypfile": false, so npm would run node-gyp rebuild into build/; using --ignore-scripts');
    args.push('--ignore-scripts');
  }
  await run('npm ' + args[0], 'npm', args, { env: { ONNXRUNTIME_NODE_INSTALL: 'skip' } });
  did.push('npm');
}

// ---------------------------------------------------------------- (c) native (cmake-js, + node-gyp under CI)
function nativeSources() {
  return newest(['native', 'CMakeLists.txt', 'binding.gyp', 'cmake'].map((p) => r(p)));
}

function torchPrefixPath() {
  const parts = [];
  if (process.env.LIBTORCH) parts.push(path.resolve(process.env.LIBTORCH));
  if (process.env.CMAKE_PREFIX_PATH) parts.push(...process.env.CMAKE_PREFIX_PATH.split(path.delimiter).filter(Boolean));
  return parts.length ? parts.join(';') : null;
}

function cacheValue(cacheFile, key) {
  try {
    const m = readFileSync(cacheFile, 'utf8').match(new RegExp(`^${key}:[A-Z]+=(.*)$`, 'm'));
    return m ? m[1] : null;
  } catch {
    return null;
  }
}

function requireTool(rel, what) {
  const p = r('node_modules', ...rel.split('/'));
  if (!existsSync(p) && !opts.dryRun) fail(`${what} not found at ${path.relative(ROOT, p)}: run \`npm ci\` (or plain \`node scripts/setup.mjs\`)`);
  return p;
}

async function stepNative() {
  if (!existsSync(r('CMakeLists.txt'))) fail('CMakeLists.txt not found at the repository root: cannot build the native addon');
  const addon = r('build', 'Release', 'dinov3.node');
  const stampFile = r('build', '.setup-native.json');
  const ninja = !!which('ninja');
  const ccache = !!which('ccache');
  const stamp = readStamp(stampFile);
  let prefix = torchPrefixPath();
  if (!prefix && stamp?.data?.config?.prefixPath) {
    // Sticky: `LIBTORCH=... npm run build:native` followed by a plain `npm test` keeps that libtorch.
    prefix = stamp.data.config.prefixPath;
  }
  const config = { generator: ninja ? 'Ninja' : null, launcher: ccache ? 'ccache' : null, prefixPath: prefix };

  const src = nativeSources();
  const cache = r('build', 'CMakeCache.txt');
  const cachedGen = cacheValue(cache, 'CMAKE_GENERATOR');
  const configChanged =
    (stamp && JSON.stringify(stamp.data.config) !== JSON.stringify(config)) || (cachedGen !== null && config.generator && cachedGen !== config.generator);

  let why = null;
  if (opts.force) why = '--force';
  else if (!existsSync(addon)) why = 'build/Release/dinov3.node missing';
  // The stamp is written only after a successful cmake-js run from here, so an addon that something
  // else put in build/ (e.g. npm's implicit `node-gyp rebuild`) is not mistaken for an up-to-date one.
  else if (!stamp) why = 'no record of a successful cmake-js build (build/.setup-native.json)';
  else if (configChanged) why = 'build configuration changed';
  else if (src.time > stamp.time) why = `${src.file} changed`;

  if (why) {
    log(`native addon (cmake-js): ${why}${prefix ? ` [CMAKE_PREFIX_PATH=${prefix}]` : ''}`);
    const cmakeJs = requireTool('cmake-js/bin/cmake-js', 'cmake-js');
    const args = [cmakeJs, configChanged && existsSync(cache) ? 'rebuild' : 'compile', '--out', 'build', '--parallel', String(nproc)];
    if (config.generator) args.push('-G', config.generator);
    if (config.launcher) args.push(`--CDCMAKE_CXX_COMPILER_LAUNCHER=${config.launcher}`);
    if (prefix) args.push(`--CDCMAKE_PREFIX_PATH=${prefix}`);
    const started = Date.now();
    await run('cmake-js', process.execPath, args, { env: ccacheEnv() });
    if (!opts.dryRun) {
      if (!existsSync(addon))
        fail('cmake-js succeeded but build/Release/dinov3.node was not produced (check the target name / output directory in CMakeLists.txt)');
      writeStamp(stampFile, { config, builtAt: new Date().toISOString() }, started);
    }
    did.push('native');
  }
  if (buildGyp) await stepGyp(src);
}

function ccacheEnv() {
  return { CCACHE_SLOPPINESS: process.env.CCACHE_SLOPPINESS || 'pch_defines,time_macros' };
}

/**
 * node-gyp always builds into <cwd>/build, which cmake-js owns. So node-gyp runs in a staging
 * directory build-gyp/stage whose entries are symlinks to the repository's top-level entries
 * (relative paths in binding.gyp resolve unchanged), and the addon is copied to build-gyp/Release.
 * Objects stay in build-gyp/stage/build, so rebuilds are incremental.
 */
async function stepGyp(src) {
  if (!existsSync(r('binding.gyp'))) {
    if (process.env.DINOV3_BUILD_GYP !== undefined) fail('DINOV3_BUILD_GYP is set but binding.gyp is missing');
    log('CI is set but there is no binding.gyp: skipping the node-gyp build');
    return;
  }
  const addon = r('build-gyp', 'Release', 'dinov3.node');
  const stage = r('build-gyp', 'stage');
  const stampFile = r('build-gyp', '.setup-gyp.json');
  const stamp = readStamp(stampFile);
  const ref = stamp ? stamp.time : mtime(addon);
  let why = null;
  if (opts.force) why = '--force';
  else if (!existsSync(addon)) why = 'build-gyp/Release/dinov3.node missing';
  else if (src.time > ref) why = `${src.file} changed`;
  if (!why) return;
  log(`native addon (node-gyp): ${why}`);

  if (!opts.dryRun) syncStage(stage);
  const nodeGyp = requireTool('node-gyp/bin/node-gyp.js', 'node-gyp');
  const args = [nodeGyp, 'configure', 'build', `--jobs=${nproc}`, '--release'];
  // Use the running Node's installed headers when present (Debian/NodeSource ship them), so no download is needed.
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const verH = path.join(prefix, 'include', 'node', 'node_version.h');
  if (existsSync(verH)) {
    const h = readFileSync(verH, 'utf8');
    const v = ['MAJOR', 'MINOR', 'PATCH'].map((k) => h.match(new RegExp(`#define NODE_${k}_VERSION (\\d+)`))?.[1]).join('.');
    if (`v${v}` === process.version) args.push(`--nodedir=${prefix}`);
  }
  const env = { ...ccacheEnv() };
  if (which('ccache') && !process.env.CXX) {
    env.CXX = 'ccache g++';
    env.CC = process.env.CC || 'ccache gcc';
  }
  const started = Date.now();
  await run('node-gyp', process.execPath, args, { cwd: stage, env });
  if (!opts.dryRun) {
    const built = path.join(stage, 'build', 'Release', 'dinov3.node');
    if (!existsSync(built)) fail('node-gyp succeeded but build-gyp/stage/build/Release/dinov3.node was not produced (target_name must be "dinov3")');
    mkdirSync(path.dirname(addon), { recursive: true });
    copyFileSync(built, addon + '.tmp');
    renameSync(addon + '.tmp', addon);
    writeStamp(stampFile, { builtAt: new Date().toISOString() }, started);
  }
  did.push('gyp');
}

function syncStage(stage) {
  mkdirSync(stage, { recursive: true });
  // Link what binding.gyp can refer to: top-level entries it names, plus node_modules and package.json.
  const gyp = readFileSync(r('binding.gyp'), 'utf8');
  const skip = new Set(['.git', 'build', 'build-gyp', 'dist']);
  const always = new Set(['binding.gyp', 'package.json', 'node_modules']);
  const entries = readdirSync(ROOT).filter((e) => !skip.has(e) && (always.has(e) || gyp.includes(e)));
  for (const e of entries) {
    const link = path.join(stage, e);
    const target = path.join('..', '..', e);
    let cur = null;
    try {
      cur = lstatSync(link).isSymbolicLink() ? readlinkSync(link) : '<not a link>';
    } catch {
      /* absent */
    }
    if (cur === target) continue;
    if (cur !== null) rmSync(link, { recursive: true, force: true });
    symlinkSync(target, link);
  }
  for (const e of readdirSync(stage)) {
    if (e === 'build' || entries.includes(e)) continue;
    const p = path.join(stage, e);
    if (lstatSync(p).isSymbolicLink()) rmSync(p); // entry removed from the repository
  }
}

// ---------------------------------------------------------------- (d) TypeScript
async function stepTs() {
  if (!existsSync(r('tsconfig.json'))) fail('tsconfig.json not found');
  const stampFile = r('dist', '.setup-ts.json');
  // Directory mtimes only under src/ (catches deleted files); bench/ and scripts/ hold non-TS outputs too.
  const a = newest([r('src')], { ext: ['.ts', '.mts', '.cts'] });
  const b = newest([r('bench'), r('scripts'), r('tsconfig.json'), r('package.json')], { ext: ['.ts', '.mts', '.cts', '.json'], withDirs: false });
  const src = a.time >= b.time ? a : b;
  const stamp = readStamp(stampFile);
  let why = null;
  if (opts.force) why = '--force';
  else if (!existsSync(r('dist'))) why = 'dist/ missing';
  else if (!stamp) why = 'no record of a successful build in dist/';
  else if (src.time > stamp.time) why = `${src.file} changed`;
  if (!why) return;
  log(`TypeScript: ${why}`);
  const tsc = requireTool('typescript/bin/tsc', 'typescript');
  const started = Date.now();
  await run('tsc', process.execPath, [tsc, '-p', 'tsconfig.json']);
  if (!opts.dryRun) writeStamp(stampFile, { builtAt: new Date().toISOString() }, started);
  did.push('ts');
}

// ---------------------------------------------------------------- main
if (process.env.DINOV3_SKIP_SETUP === '1') {
  log('skipped (DINOV3_SKIP_SETUP=1)');
  process.exit(0);
}
const impl = { apt: stepApt, npm: stepNpm, native: stepNative, ts: stepTs };
for (const s of STEPS) if (wanted.has(s)) await impl[s]();
const steps = [...wanted].join(', ') + (buildGyp && wanted.has('native') ? ' (+gyp)' : '');
if (opts.dryRun) log(`dry run: ${did.length ? `would do ${did.join(', ')}` : 'nothing to do'} [${steps}] (${secs(Date.now() - T0)})`);
else if (did.length) log(`done: ${did.join(', ')} in ${secs(Date.now() - T0)}`);
else log(`up to date [${steps}] (${secs(Date.now() - T0)})`);
