// Runs every benchmark in turn, each in its own process (so that one's threads and heap do not disturb the next),
// with its defaults, and writes their JSON under bench/results/. `--only a,b` picks some; for a benchmark's own
// options run it directly (node dist/bench/<name>.js; see the header of bench/<name>.ts).
//   npm run build:ts && npm run bench [-- --only features,op_overhead]
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCHES = ['op_overhead', 'losses', 'features', 'loader_memory', 'eval_fashion_mnist', 'distributed'] as const;
const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const at = argv.indexOf('--only');
const only = at >= 0 ? (argv.splice(at, 2)[1] ?? '').split(',').filter(Boolean) : [...BENCHES];
const unknown = only.filter((b) => !(BENCHES as readonly string[]).includes(b));
if (unknown.length || argv.length) {
  const what = unknown.length ? `unknown benchmark ${unknown.join(', ')}` : `unknown argument ${argv.join(' ')}`;
  process.stderr.write(`bench: ${what} (usage: npm run bench [-- --only ${BENCHES.join(',')}])\n`);
  process.exit(2);
}
let failed = 0;
for (const name of BENCHES.filter((b) => only.includes(b))) {
  process.stderr.write(`bench: ${name}\n`);
  const r = spawnSync(process.execPath, [join(here, `${name}.js`)], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) {
    failed++;
    process.stderr.write(`bench: ${name} failed (exit ${r.status ?? r.signal})\n`);
  }
}
process.exit(failed ? 1 : 0);
