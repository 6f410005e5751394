#!/usr/bin/env node
// Runs the linter and the formatter check (biome, ~1 s), then the vitest suite, and ends with the plain summary line
// `N passed, N failed` that CI reads (a lint or format failure counts as one failed test). Set DINOV3_SKIP_LINT=1 to
// skip both.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';

let lintFailed = 0;
if (process.env.DINOV3_SKIP_LINT !== '1') {
  const lint = spawnSync('npx', ['biome', 'lint', '--error-on-warnings', '.'], { stdio: 'inherit' });
  if (lint.status !== 0) {
    console.log('biome lint failed (see above; `npx biome lint --write .` applies the safe fixes)');
    lintFailed = 1;
  }
  const format = spawnSync('npx', ['biome', 'format', '.'], { stdio: 'inherit' });
  if (format.status !== 0) {
    console.log('biome format check failed (see above; `npx biome format --write .` formats the files)');
    lintFailed = 1;
  }
}

const report = '.vitest-report.json';
rmSync(report, { force: true });
const args = ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)];
const r = spawnSync('npx', args, { stdio: 'inherit' });
let passed = 0;
let failed = 0;
let skipped = 0;
if (existsSync(report)) {
  const j = JSON.parse(readFileSync(report, 'utf8'));
  passed = j.numPassedTests ?? 0;
  failed = j.numFailedTests ?? 0;
  skipped = (j.numPendingTests ?? 0) + (j.numTodoTests ?? 0);
  const brokenSuites = (j.testResults ?? []).filter((s) => s.status === 'failed' && (s.assertionResults ?? []).length === 0).length;
  failed += brokenSuites;
} else {
  failed = 1;
}
failed += lintFailed;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(r.status === 0 && failed === 0 ? 0 : 1);
