// Fuzz over the public exports: every export of the compiled library (functions, class constructors, `init.*` and the
// Tensor methods) is called with random hostile arguments in a child process (fuzz_child.mjs), so that a crash of the
// process (a native abort or segfault) is detected and the call that caused it named. Requirements: zero crashes, and
// every error thrown is a `Dinov3Error` with a stable `ERR_*` code (public functions check their arguments at the
// boundary, see src/tensor/args.ts). KNOWN_GAPS lists the exports still exempt; it may only shrink.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, expect, test } from 'vitest';

import { Dinov3Error, TorchRangeError, TorchTypeError, ConfigError } from '../../../src/index.js';
import { ensureDist, ROOT } from '../cli/dist.js';

const KNOWN_GAPS = new Set<string>([]);

const tmp = mkdtempSync(join(tmpdir(), 'dinov3-fuzz-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('the base class: every error class is a Dinov3Error with a code, the Range/Type ones also built-in errors', () => {
  const r = new TorchRangeError('r', 'ERR_INVALID_ARG');
  const t = new TorchTypeError('t', 'ERR_INVALID_ARG');
  const c = new ConfigError('c');
  expect([r instanceof Dinov3Error, r instanceof RangeError, t instanceof Dinov3Error, t instanceof TypeError, c instanceof Dinov3Error]).toEqual([
    true,
    true,
    true,
    true,
    true,
  ]);
  // Subclasses keep the ordinary check: a ConfigError is not a TorchRangeError and a plain RangeError is not ours.
  expect([c instanceof TorchRangeError, new RangeError('x') instanceof Dinov3Error, r instanceof ConfigError]).toEqual([false, false, false]);
  expect([r.code, c.code, c.name]).toEqual(['ERR_INVALID_ARG', 'ERR_CONFIG', 'ConfigError']);
});

test('random calls of every public export: no crash, every error a Dinov3Error with a code (seed 1)', () => {
  const index = join(ROOT, 'dist', 'src', 'index.js');
  ensureDist();
  const r = spawnSync(process.execPath, [join(ROOT, 'test', 'unit', 'robustness', 'fuzz_child.mjs'), index, '1', '3'], {
    cwd: tmp,
    encoding: 'utf8',
    timeout: 240_000,
    maxBuffer: 64 << 20,
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
  });
  const lines = r.stdout.split('\n').filter(Boolean);
  const calls = new Map<string, string>();
  const bad: string[] = [];
  let lastCall = '';
  for (const l of lines) {
    const c = /^C (\d+) (.*)$/.exec(l);
    if (c) {
      calls.set(c[1]!, c[2]!);
      lastCall = c[2]!;
      continue;
    }
    const o = /^R (\d+) (.*)$/.exec(l);
    if (o && (o[2]!.startsWith('BAD') || o[2] === 'slow')) {
      const call = calls.get(o[1]!)!;
      const name = call.slice(0, call.indexOf('('));
      if (!KNOWN_GAPS.has(name)) bad.push(`${call} → ${o[2]}`);
    }
    if (l.startsWith('U ') && !l.startsWith('U ok-error')) bad.push(`unhandled rejection: ${l}`);
  }
  // A crash: a signal, a non-zero status, or no DONE line (the last call printed is the one that crashed).
  expect({
    status: r.status,
    signal: r.signal,
    done: lines.at(-1)?.startsWith('DONE') ? 'DONE' : `crashed in ${lastCall}`,
    stderr: r.stderr.slice(-2000),
  }).toEqual({
    status: 0,
    signal: null,
    done: 'DONE',
    stderr: '',
  });
  expect(bad).toEqual([]);
  // 568 exports and Tensor methods, 3 calls each.
  expect(Number(lines.at(-1)!.slice(5))).toBeGreaterThan(1600);
}, 300_000);
