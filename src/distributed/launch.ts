// Starting the worker processes of a distributed run on one node (what torchrun does; the official code is launched
// by torchrun or SLURM, see dinov3/distributed/torch_distributed_wrapper.py::TorchDistributedEnvironment): each worker
// gets torchrun-style variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
// MASTER_PORT), signals to the launcher are forwarded to the workers, and when one worker fails the others are
// stopped and the launch rejects with an error naming it. Inside a process that torchrun, SLURM or this launcher
// already started, `launch` starts nothing and says so: the caller is the worker.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';

import { ConfigError, DistributedError } from '../native/errors.js';
import { readDistributedEnv, type DistributedEnv } from './env.js';

export interface LaunchOptions {
  /** Worker processes on this node. */
  nprocPerNode: number;
  /** Nodes in the job (default 1). */
  nnodes?: number;
  /** This node's index, 0 ≤ nodeRank < nnodes (default 0). Node 0 hosts the rendezvous store (rank 0). */
  nodeRank?: number;
  /** Address of node 0 as the other nodes reach it (default 127.0.0.1; required when nnodes > 1). */
  masterAddr?: string;
  /** Port of the rendezvous store (default: a free port when nnodes = 1; required when nnodes > 1). */
  masterPort?: number;
  /** Arguments of each worker (for the default command, Node: a script and its arguments). */
  argv: readonly string[];
  /** Executable of each worker (default: this Node, process.execPath). */
  command?: string;
  /** Extra environment of the workers (on top of process.env). */
  env?: Record<string, string>;
  /**
   * Receives the workers' output; without it the workers write to this process's stdout and stderr. With it, their
   * output is piped here chunk by chunk.
   */
  output?: (rank: number, stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  /** How long stopped workers get between SIGTERM and SIGKILL, in ms (default 5000). */
  killGraceMs?: number;
  /** The environment to check for an existing launch (default process.env). */
  parentEnv?: Record<string, string | undefined>;
}

/** What `launch` did: ran the workers to completion here, or nothing because this process is a worker already. */
export type LaunchOutcome = { role: 'launcher'; worldSize: number; pids: number[] } | { role: 'worker'; env: DistributedEnv };

const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'];

function positiveInt(v: number, name: string, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new ConfigError(`launch: ${name} must be an integer >= ${min}, received ${v}`);
  return v;
}

/** A TCP port free a moment ago on `host`. */
export function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * The layout an earlier launcher (torchrun, SLURM, or `launch`) gave this process, or null when it was started alone.
 */
export function launchedEnv(env: Record<string, string | undefined> = process.env): DistributedEnv | null {
  const d = readDistributedEnv(env);
  return d.source === 'single' ? null : d;
}

/**
 * Starts `nprocPerNode` workers on this node with torchrun-style variables and waits for them. Resolves once every
 * worker exited with code 0. When one exits otherwise, the others get SIGTERM (then SIGKILL after `killGraceMs`)
 * and the launch rejects with a DistributedError (ERR_DIST_PEER) naming that rank. SIGINT, SIGTERM, SIGHUP, SIGUSR1
 * and SIGUSR2 sent to the launcher are forwarded to every worker (each worker runs in its own process group, so a
 * terminal's Ctrl-C reaches it once, through the launcher); after SIGINT, SIGTERM or SIGHUP the launch rejects with
 * ERR_DIST_LAUNCH once the workers have exited, whatever their exit codes.
 *
 * In a process that torchrun, SLURM or `launch` already started (RANK/WORLD_SIZE or SLURM_PROCID set), nothing is
 * started: it resolves `{ role: 'worker', env }` and the caller goes on as that worker. The exception is a SLURM
 * job with one task per node and `nprocPerNode` > 1: each task then launches its node's workers (nnodes = tasks,
 * nodeRank = SLURM_PROCID, node 0 = the first host of SLURM_JOB_NODELIST, or MASTER_ADDR/MASTER_PORT). So a program can relaunch
 * itself: `if ((await launch({ nprocPerNode: 2, argv: process.argv.slice(1) })).role === 'worker') train();`
 * @throws ConfigError for bad options; DistributedError (ERR_DIST_LAUNCH) when a worker cannot be started.
 */
export async function launch(o: LaunchOptions): Promise<LaunchOutcome> {
  const parentEnv = o.parentEnv ?? process.env;
  const existing = launchedEnv(parentEnv);
  const nprocOpt = positiveInt(o.nprocPerNode, 'nprocPerNode', 1);
  // SLURM with one task per node (srun --ntasks-per-node=1) and several workers asked for: each task is its node's
  // launcher (nodes = tasks, node rank = task id, node 0's address and the job's port).
  const slurmNodes = existing?.source === 'slurm' && existing.localWorldSize === 1 && parentEnv.RANK === undefined && nprocOpt > 1 ? existing : null;
  if (existing && !slurmNodes) return { role: 'worker', env: existing };
  const nproc = nprocOpt;
  const nnodes = slurmNodes ? slurmNodes.worldSize : positiveInt(o.nnodes ?? 1, 'nnodes', 1);
  const nodeRank = slurmNodes ? slurmNodes.rank : positiveInt(o.nodeRank ?? 0, 'nodeRank', 0);
  if (slurmNodes) o = { ...o, masterAddr: slurmNodes.masterAddr, masterPort: slurmNodes.masterPort };
  if (nodeRank >= nnodes) throw new ConfigError(`launch: nodeRank (${nodeRank}) must be below nnodes (${nnodes})`);
  if (nnodes > 1 && (o.masterAddr === undefined || o.masterPort === undefined))
    throw new ConfigError('launch: masterAddr and masterPort must be given when nnodes > 1 (node 0 hosts the rendezvous store)');
  if (!Array.isArray(o.argv)) throw new ConfigError('launch: argv must be an array of strings');
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (await findFreePort(masterAddr));
  if (!Number.isInteger(masterPort) || masterPort < 1 || masterPort > 65535)
    throw new ConfigError(`launch: masterPort must be a TCP port (1..65535), received ${masterPort}`);
  const worldSize = nnodes * nproc;
  const grace = o.killGraceMs ?? 5000;
  // As torchrun: several workers on one node share its cores (unless the caller chose).
  const threads = String(Math.max(1, Math.floor(availableParallelism() / nproc)));
  const runId = `${process.pid}-${Date.now()}`;

  const children: ChildProcess[] = [];
  const exited: boolean[] = [];
  let failure: DistributedError | null = null;
  let stopTimer: NodeJS.Timeout | null = null;
  let interruptedBy: NodeJS.Signals | null = null;

  const stopOthers = (): void => {
    for (let i = 0; i < children.length; i++) if (!exited[i]) children[i]!.kill('SIGTERM');
    stopTimer = setTimeout(() => {
      for (let i = 0; i < children.length; i++) if (!exited[i]) children[i]!.kill('SIGKILL');
    }, grace);
    stopTimer.unref();
  };
  const forward = (sig: NodeJS.Signals): void => {
    if (sig !== 'SIGUSR1' && sig !== 'SIGUSR2') interruptedBy ??= sig;
    for (let i = 0; i < children.length; i++) if (!exited[i]) children[i]!.kill(sig);
  };
  const handlers = FORWARDED.map((sig) => {
    const h = (): void => forward(sig);
    process.on(sig, h);
    return [sig, h] as const;
  });

  try {
    const done = Array.from({ length: nproc }, (_, local) => {
      const rank = nodeRank * nproc + local;
      const child = spawn(o.command ?? process.execPath, o.argv as string[], {
        env: {
          ...process.env,
          OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? threads,
          ...o.env,
          RANK: String(rank),
          LOCAL_RANK: String(local),
          GROUP_RANK: String(nodeRank),
          WORLD_SIZE: String(worldSize),
          LOCAL_WORLD_SIZE: String(nproc),
          MASTER_ADDR: masterAddr,
          MASTER_PORT: String(masterPort),
          TORCHELASTIC_RUN_ID: runId,
        },
        // No stdin: a worker never waits on the terminal.
        stdio: o.output ? ['ignore', 'pipe', 'pipe'] : ['ignore', 'inherit', 'inherit'],
        // Its own process group: a terminal's Ctrl-C reaches the launcher only, which forwards it once.
        detached: true,
      });
      children.push(child);
      exited.push(false);
      if (o.output) {
        const out = o.output;
        child.stdout!.on('data', (d: Buffer) => out(rank, 'stdout', d));
        child.stderr!.on('data', (d: Buffer) => out(rank, 'stderr', d));
      }
      return new Promise<void>((resolve) => {
        let settled = false;
        const fail = (why: string, err?: Error): void => {
          if (!failure) {
            failure = new DistributedError(
              `launch: worker rank ${rank} (local rank ${local}${child.pid ? `, pid ${child.pid}` : ''}) ${why}; the other workers were stopped`,
              err ? 'ERR_DIST_LAUNCH' : 'ERR_DIST_PEER',
              [rank],
              err ? { cause: err } : undefined,
            );
            stopOthers();
          }
        };
        child.once('error', (e) => {
          fail(`could not be started (${o.command ?? process.execPath}: ${e.message})`, e);
          exited[local] = true;
          if (!settled) (settled = true), resolve();
        });
        // 'close' (not 'exit'): the worker's piped output has been delivered.
        child.once('close', (code, signal) => {
          exited[local] = true;
          if (code !== 0 && !interruptedBy) fail(signal ? `was killed by ${signal}` : `exited with code ${code}`);
          if (!settled) (settled = true), resolve();
        });
      });
    });
    await Promise.all(done);
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
    if (stopTimer) clearTimeout(stopTimer);
  }
  if (failure) throw failure;
  if (interruptedBy) {
    const codes = children.map((c, r) => `rank ${nodeRank * nproc + r}: ${c.exitCode ?? c.signalCode}`).join(', ');
    throw new DistributedError(`launch: interrupted by ${interruptedBy}, forwarded to the workers (exits: ${codes})`, 'ERR_DIST_LAUNCH');
  }
  return { role: 'launcher', worldSize, pids: children.map((c) => c.pid ?? -1) };
}
