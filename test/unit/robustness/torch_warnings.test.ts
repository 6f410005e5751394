// libtorch warnings (TORCH_WARN) raised during a call reach Node's warning system, not stderr (native/src/common.cc,
// FlushTorchWarnings): one 'warning' event each, type TorchWarning, code DINOV3_TORCH_WARNING, the op's name in front.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterEach, beforeEach, expect, test } from 'vitest';

import { addonInfo, tensor } from '../../../src/index.js';
import { native } from '../../../src/native/binding.js';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');
let seen: Error[] = [];
const listener = (w: Error) => void seen.push(w);
beforeEach(() => {
  seen = [];
  process.on('warning', listener);
});
afterEach(() => void process.off('warning', listener));
// process.emitWarning delivers on the next tick.
const tick = () => new Promise<void>((r) => setImmediate(r));

test('a libtorch warning becomes one TorchWarning event with the op name and code', async () => {
  native.torchWarn('first');
  native.torchWarn('second');
  await tick();
  expect(seen.map((w) => [w.name, (w as Error & { code?: string }).code, w.message])).toEqual([
    ['TorchWarning', 'DINOV3_TORCH_WARNING', 'torchWarn: first'],
    ['TorchWarning', 'DINOV3_TORCH_WARNING', 'torchWarn: second'],
  ]);
});

test('a real op: std() of one element is NaN, with the warning libtorch 2.x raises for it', async () => {
  expect(tensor([1.5]).std().item()).toBeNaN();
  await tick();
  const major = Number(addonInfo.torchVersion.split('.')[0]);
  // libtorch 1.13 returns NaN silently; 2.x warns (ReduceOps.cpp, warn_invalid_degrees_of_freedom).
  expect(seen.map((w) => w.message)).toEqual(
    major >= 2
      ? ['std: std(): degrees of freedom is <= 0. Correction should be strictly less than the reduction factor (input numel divided by output numel).']
      : [],
  );
});

test('nothing reaches stderr; --no-warnings silences them', () => {
  const script = `const { native } = await import(${JSON.stringify(join(ROOT, 'dist', 'src', 'native', 'binding.js'))}); native.torchWarn('quiet');`;
  const run = (flags: string[]) =>
    spawnSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '' } });
  const loud = run([]);
  expect(loud.status).toBe(0);
  expect(loud.stderr).toContain('[DINOV3_TORCH_WARNING] TorchWarning: torchWarn: quiet');
  expect(loud.stderr).not.toContain('[W'); // c10's own stderr format, e.g. "[W1205 22:20:21.505 file.cpp:1] Warning: …"
  const quiet = run(['--no-warnings']);
  expect([quiet.status, quiet.stderr]).toEqual([0, '']);
});
