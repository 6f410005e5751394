// Makes sure the compiled library (dist/, as `npm test`'s setup step builds it) is at least as new as src/, for tests
// that run it in a child process. The check and the compile run under one lock, so parallel test files compile once.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = new URL('../../../', import.meta.url).pathname.replace(/\/$/, '');
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

const CHECK_AND_BUILD = `
const fs = require('fs'), path = require('path'), cp = require('child_process');
const newest = (d) => fs.readdirSync(d, { withFileTypes: true }).reduce((t, e) => {
  const p = path.join(d, e.name);
  return Math.max(t, e.isDirectory() ? newest(p) : p.endsWith('.ts') ? fs.statSync(p).mtimeMs : 0);
}, 0);
let built = 0;
try { built = fs.statSync(process.argv[1]).mtimeMs; } catch {}
if (built < Math.max(newest('src'), newest('bench'))) {
  const r = cp.spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { encoding: 'utf8' });
  process.stdout.write(r.stdout || '');
}
`;

/** Compiles src/ and bench/ to dist/ when dist is missing or older than a source file; returns the CLI path. */
export function ensureDist(): string {
  const r = spawnSync('flock', ['/tmp/dinov3-tsc.lock', process.execPath, '-e', CHECK_AND_BUILD, CLI], { cwd: ROOT, encoding: 'utf8' });
  // tsc still emits when other files have type errors; only a missing output is fatal here.
  if (!existsSync(CLI) || !existsSync(join(ROOT, 'dist', 'src', 'index.js'))) throw new Error(`tsc did not produce ${CLI}:\n${r.stdout}${r.stderr}`);
  return CLI;
}
