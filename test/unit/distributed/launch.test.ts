// The launcher: workers with torchrun-style variables that form a Gloo group, a failed worker named and the others
// stopped, signals forwarded, and no launch inside a process that is already a worker.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { ConfigError, DistributedError, launch } from '../../../src/index.js';
import { compileLibrary } from '../lifecycle/compiled_library.js';

let lib: { indexUrl: string; cleanup: () => void };
beforeAll(() => {
  lib = compileLibrary();
});
afterAll(() => lib.cleanup());

const worker = (body: string) => ['--input-type=module', '-e', `const lib = await import(${JSON.stringify(lib.indexUrl)});\n${body}`];

function collect(): { out: Map<number, string>; output: (rank: number, stream: 'stdout' | 'stderr', chunk: Buffer) => void } {
  const out = new Map<number, string>();
  return { out, output: (rank, stream, chunk) => out.set(rank, (out.get(rank) ?? '') + (stream === 'stderr' ? '[err] ' : '') + chunk.toString()) };
}

describe('launch', () => {
  test('two workers get torchrun-style variables and form a group', async () => {
    const { out, output } = collect();
    const r = await launch({
      nprocPerNode: 2,
      parentEnv: {},
      output,
      argv: worker(`
        const e = process.env;
        const pg = await lib.initProcessGroup({ timeoutMs: 20000 });
        const x = lib.tensor([pg.rank + 1]);
        await pg.allReduce(x).wait();
        pg.destroy();
        process.stdout.write(JSON.stringify({ env: [e.RANK, e.LOCAL_RANK, e.GROUP_RANK, e.WORLD_SIZE, e.LOCAL_WORLD_SIZE, e.MASTER_ADDR], run: !!e.TORCHELASTIC_RUN_ID, sum: x.item() }));`),
    });
    expect(r).toMatchObject({ role: 'launcher', worldSize: 2 });
    expect(JSON.parse(out.get(0)!)).toEqual({ env: ['0', '0', '0', '2', '2', '127.0.0.1'], run: true, sum: 3 });
    expect(JSON.parse(out.get(1)!)).toEqual({ env: ['1', '1', '0', '2', '2', '127.0.0.1'], run: true, sum: 3 });
  });

  test('two "nodes" on this machine (nnodes 2, node ranks 0 and 1) form one group of 4', async () => {
    const { findFreePort } = await import('../../../src/index.js');
    const masterPort = await findFreePort();
    const outs = [collect(), collect()];
    const body = worker(`
      const pg = await lib.initProcessGroup({ timeoutMs: 30000 });
      const x = lib.tensor([2 ** pg.rank]);
      await pg.allReduce(x).wait();
      pg.destroy();
      process.stdout.write(JSON.stringify({ rank: pg.rank, world: pg.worldSize, local: process.env.LOCAL_RANK, node: process.env.GROUP_RANK, sum: x.item() }));`);
    const rs = await Promise.all(
      [0, 1].map((nodeRank) =>
        launch({ nprocPerNode: 2, nnodes: 2, nodeRank, masterAddr: '127.0.0.1', masterPort, parentEnv: {}, output: outs[nodeRank]!.output, argv: body }),
      ),
    );
    expect(rs.map((r) => r.role)).toEqual(['launcher', 'launcher']);
    const got = outs.flatMap((o) => [...o.out.values()].map((v) => JSON.parse(v)));
    expect(got.sort((a, b) => a.rank - b.rank)).toEqual([
      { rank: 0, world: 4, local: '0', node: '0', sum: 15 },
      { rank: 1, world: 4, local: '1', node: '0', sum: 15 },
      { rank: 2, world: 4, local: '0', node: '1', sum: 15 },
      { rank: 3, world: 4, local: '1', node: '1', sum: 15 },
    ]);
  });

  test('a failing worker is named and the others are stopped', async () => {
    const { out, output } = collect();
    const t0 = Date.now();
    const e = await launch({
      nprocPerNode: 3,
      parentEnv: {},
      output,
      killGraceMs: 2000,
      argv: worker(`
        process.on('SIGTERM', () => { process.stdout.write('stopped by SIGTERM'); process.exit(143); });
        if (process.env.RANK === '1') setTimeout(() => process.exit(7), 300);
        else setTimeout(() => {}, 60000);`),
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DistributedError);
    expect(e).toMatchObject({ code: 'ERR_DIST_PEER', failedRanks: [1] });
    expect((e as Error).message).toMatch(/^launch: worker rank 1 \(local rank 1, pid \d+\) exited with code 7; the other workers were stopped$/);
    expect(Date.now() - t0).toBeLessThan(30_000); // the others were stopped (they would sleep 60 s)
    expect([out.get(0), out.get(2)]).toEqual(['stopped by SIGTERM', 'stopped by SIGTERM']);
  });

  test('a worker that ignores SIGTERM is killed after the grace period', async () => {
    const e = await launch({
      nprocPerNode: 2,
      parentEnv: {},
      output: () => {},
      killGraceMs: 500,
      argv: worker(`
        process.on('SIGTERM', () => {});
        if (process.env.RANK === '0') setTimeout(() => process.exit(1), 200);
        else setInterval(() => {}, 1000);`),
    }).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/^launch: worker rank 0 \(local rank 0, pid \d+\) exited with code 1;/);
  });

  test('signals to the launcher are forwarded; the launch then rejects with ERR_DIST_LAUNCH', async () => {
    // The launcher runs in a child process so that it can be sent SIGTERM.
    const script = `
      const lib = await import(${JSON.stringify(lib.indexUrl)});
      let ready = 0;
      try {
        await lib.launch({ nprocPerNode: 2, parentEnv: {}, argv: ${JSON.stringify(
          worker(`process.on('SIGTERM', () => { process.stdout.write('worker ' + process.env.RANK + ' got SIGTERM\\n'); process.exit(0); });
            process.stdout.write('ready\\n'); setInterval(() => {}, 1000);`),
        )},
          output: (rank, stream, chunk) => { const s = chunk.toString(); process.stdout.write(s); if (s.includes('ready')) ready++; if (ready === 2) { ready = -1; process.stdout.write('all ready\\n'); } } });
        process.stdout.write('resolved\\n');
      } catch (e) { process.stdout.write(JSON.stringify({ code: e.code, message: e.message }) + '\\n'); }`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RANK: '', WORLD_SIZE: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('all ready') && !stdout.includes('sent')) {
          stdout += 'sent\n';
          child.kill('SIGTERM');
        }
      });
      child.on('close', resolve);
    });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const lines = stdout.split('\n');
    expect(lines.filter((l) => l.endsWith('got SIGTERM')).sort()).toEqual(['worker 0 got SIGTERM', 'worker 1 got SIGTERM']);
    expect(JSON.parse(lines.find((l) => l.startsWith('{'))!)).toEqual({
      code: 'ERR_DIST_LAUNCH',
      message: 'launch: interrupted by SIGTERM, forwarded to the workers (exits: rank 0: 0, rank 1: 0)',
    });
  });

  test('inside a torchrun or SLURM worker nothing is started', async () => {
    const parentEnv = { RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: '10.1.1.1', MASTER_PORT: '29400' };
    expect(await launch({ nprocPerNode: 4, argv: ['never-run.js'], parentEnv })).toEqual({
      role: 'worker',
      env: { source: 'torchrun', rank: 1, worldSize: 2, localRank: 1, localWorldSize: 2, masterAddr: '10.1.1.1', masterPort: 29400 },
    });
    // SLURM started one task per worker (2 tasks on 1 node), or one task and one worker is asked for.
    const slurm = { SLURM_JOB_ID: '9', SLURM_PROCID: '1', SLURM_NTASKS: '2', SLURM_LOCALID: '1', SLURM_JOB_NUM_NODES: '1' };
    expect(await launch({ nprocPerNode: 4, argv: [], parentEnv: slurm })).toMatchObject({
      role: 'worker',
      env: { source: 'slurm', rank: 1, localWorldSize: 2 },
    });
    expect(await launch({ nprocPerNode: 1, argv: [], parentEnv: { ...slurm, SLURM_PROCID: '0', SLURM_NTASKS: '1', SLURM_LOCALID: '0' } })).toMatchObject({
      role: 'worker',
      env: { source: 'slurm', rank: 0 },
    });
  });

  test("a SLURM task per node with nprocPerNode 2 launches its node's workers", async () => {
    const { findFreePort } = await import('../../../src/index.js');
    const port = await findFreePort();
    const { out, output } = collect();
    const parentEnv = {
      SLURM_JOB_ID: '77',
      SLURM_PROCID: '0',
      SLURM_NTASKS: '1',
      SLURM_LOCALID: '0',
      SLURM_JOB_NUM_NODES: '1',
      SLURM_JOB_NODELIST: 'localhost',
      MASTER_PORT: String(port),
    };
    const r = await launch({
      nprocPerNode: 2,
      parentEnv,
      output,
      env: { SLURM_PROCID: '0', SLURM_JOB_ID: '77' }, // what srun would leave in the workers' environment
      argv: worker(`
        const pg = await lib.initProcessGroup({ timeoutMs: 20000 });
        const x = lib.tensor([pg.rank + 1]);
        await pg.allReduce(x).wait();
        pg.destroy();
        process.stdout.write(JSON.stringify({ rank: pg.rank, world: pg.worldSize, addr: process.env.MASTER_ADDR, port: process.env.MASTER_PORT, sum: x.item() }));`),
    });
    expect(r).toMatchObject({ role: 'launcher', worldSize: 2 });
    expect([0, 1].map((k) => JSON.parse(out.get(k)!))).toEqual([0, 1].map((rank) => ({ rank, world: 2, addr: 'localhost', port: String(port), sum: 3 })));
  });

  test('bad options are ConfigErrors', async () => {
    await expect(launch({ nprocPerNode: 0, argv: [], parentEnv: {} })).rejects.toThrow(
      new ConfigError('launch: nprocPerNode must be an integer >= 1, received 0'),
    );
    await expect(launch({ nprocPerNode: 1, nnodes: 2, nodeRank: 2, argv: [], parentEnv: {} })).rejects.toThrow('launch: nodeRank (2) must be below nnodes (2)');
    await expect(launch({ nprocPerNode: 1, nnodes: 2, argv: [], parentEnv: {} })).rejects.toThrow(
      'launch: masterAddr and masterPort must be given when nnodes > 1 (node 0 hosts the rendezvous store)',
    );
  });

  test('a worker command that cannot start: ERR_DIST_LAUNCH naming the rank', async () => {
    const e = await launch({ nprocPerNode: 1, argv: [], command: '/nonexistent/worker', parentEnv: {}, output: () => {} }).catch((x: unknown) => x);
    expect(e).toMatchObject({ name: 'DistributedError', code: 'ERR_DIST_LAUNCH', failedRanks: [0] });
    expect((e as Error).message).toMatch(
      /^launch: worker rank 0 \(local rank 0\) could not be started \(\/nonexistent\/worker: spawn \/nonexistent\/worker ENOENT\); the other workers were stopped$/,
    );
  });
});
