// Helpers of the distributed tests: a free TCP port on 127.0.0.1, and N child processes running one script as the
// ranks of a group (the library compiled to JavaScript, see ../lifecycle/compiled_library.ts).
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface RankResult {
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from the start to this rank's exit. */
  ms: number;
}

/**
 * Runs `body` (ES module code; `lib` is the library, `rank`/`world` its place, `emit(v)` prints a JSON result) in
 * `world` processes with torchrun-style environment variables, and resolves when all have exited.
 */
export async function runRanks(
  world: number,
  indexUrl: string,
  body: string,
  o: { timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<RankResult[]> {
  const port = await freePort();
  const script = `
    const lib = await import(${JSON.stringify(indexUrl)});
    const rank = Number(process.env.RANK), world = Number(process.env.WORLD_SIZE);
    const emit = (v) => process.stdout.write(JSON.stringify(v) + '\\n');
    ${body}`;
  const t0 = Date.now();
  return Promise.all(
    Array.from(
      { length: world },
      (_, rank) =>
        new Promise<RankResult>((resolve) => {
          const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
            env: {
              ...process.env,
              RANK: String(rank),
              LOCAL_RANK: String(rank),
              WORLD_SIZE: String(world),
              LOCAL_WORLD_SIZE: String(world),
              MASTER_ADDR: '127.0.0.1',
              MASTER_PORT: String(port),
              ...o.env,
            },
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
          child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 90_000);
          child.on('exit', (code, signal) => {
            clearTimeout(timer);
            resolve({ rank, code, signal, stdout, stderr, ms: Date.now() - t0 });
          });
        }),
    ),
  );
}

/** The JSON lines a rank emitted. */
export function emitted(r: RankResult): unknown[] {
  return r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as unknown);
}
