// Where this process sits in a distributed job, read from the environment a launcher set up: torchrun (or our own
// launcher, which sets the same variables), SLURM, or nothing (one process). Official counterpart:
// dinov3/distributed/torch_distributed_wrapper.py::TorchDistributedEnvironment.
import { ConfigError } from '../native/errors.js';

/** A process's place in the job. */
export interface DistributedEnv {
  /** Who set it up: 'torchrun' (RANK/WORLD_SIZE/MASTER_* variables), 'slurm' (SLURM_* variables), or 'single'. */
  readonly source: 'torchrun' | 'slurm' | 'single';
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  readonly masterAddr: string;
  readonly masterPort: number;
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, min: number): number {
  const raw = env[name];
  const v = raw === undefined || raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isInteger(v) || v < min)
    throw new ConfigError(
      `distributed environment: ${name} must be an integer >= ${min}, received ${raw === undefined ? 'nothing (unset)' : JSON.stringify(raw)}`,
    );
  return v;
}

function port(env: Env, name: string): number {
  const p = int(env, name, 1);
  if (p > 65535) throw new ConfigError(`distributed environment: ${name} must be a TCP port (1..65535), received ${p}`);
  return p;
}

/**
 * The first host of a SLURM node list: "gpu[003-005,9],cpu1" → "gpu003" (what `scontrol show hostnames` would list
 * first).
 */
export function firstSlurmHost(nodeList: string): string {
  if (typeof nodeList !== 'string')
    throw new ConfigError(`distributed environment: SLURM_JOB_NODELIST must be a string, received ${nodeList === null ? 'null' : typeof nodeList}`);
  const s = nodeList.trim();
  const m = /^([^,[]+)(\[([^\]]+)\])?/.exec(s);
  if (!m || !m[1]) throw new ConfigError(`distributed environment: cannot read a host from SLURM_JOB_NODELIST ${JSON.stringify(nodeList)}`);
  if (!m[3]) return m[1];
  const first = m[3].split(',')[0]!.split('-')[0]!;
  return m[1] + first;
}

/**
 * Reads the job layout from `env` (default `process.env`). torchrun-style variables win (RANK, WORLD_SIZE,
 * LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), then SLURM (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
 * SLURM_JOB_NUM_NODES, SLURM_JOB_NODELIST; MASTER_ADDR/MASTER_PORT still override, else the first node and a port
 * derived from SLURM_JOB_ID), else a single process on 127.0.0.1.
 * @throws ConfigError for a partial or inconsistent setup (e.g. RANK without WORLD_SIZE, RANK ≥ WORLD_SIZE).
 */
export function readDistributedEnv(env: Env = process.env): DistributedEnv {
  if (typeof env !== 'object' || env === null)
    throw new ConfigError(`readDistributedEnv: "env" must be an object of environment variables, received ${env === null ? 'null' : typeof env}`);
  if (env.RANK !== undefined || env.WORLD_SIZE !== undefined || env.TORCHELASTIC_RUN_ID !== undefined) {
    const rank = int(env, 'RANK', 0);
    const worldSize = int(env, 'WORLD_SIZE', 1);
    if (rank >= worldSize) throw new ConfigError(`distributed environment: RANK (${rank}) must be below WORLD_SIZE (${worldSize})`);
    const localRank = env.LOCAL_RANK === undefined ? rank : int(env, 'LOCAL_RANK', 0);
    const localWorldSize = env.LOCAL_WORLD_SIZE === undefined ? worldSize : int(env, 'LOCAL_WORLD_SIZE', 1);
    if (localRank >= localWorldSize)
      throw new ConfigError(`distributed environment: LOCAL_RANK (${localRank}) must be below LOCAL_WORLD_SIZE (${localWorldSize})`);
    const masterAddr = env.MASTER_ADDR ?? (worldSize === 1 ? '127.0.0.1' : undefined);
    if (!masterAddr) throw new ConfigError('distributed environment: MASTER_ADDR must be set when WORLD_SIZE > 1');
    const masterPort = env.MASTER_PORT === undefined && worldSize === 1 ? 29500 : port(env, 'MASTER_PORT');
    return { source: 'torchrun', rank, worldSize, localRank, localWorldSize, masterAddr, masterPort };
  }
  if (env.SLURM_JOB_ID !== undefined && env.SLURM_PROCID !== undefined) {
    const rank = int(env, 'SLURM_PROCID', 0);
    const worldSize = int(env, 'SLURM_NTASKS', 1);
    const localRank = int(env, 'SLURM_LOCALID', 0);
    const nodes = env.SLURM_JOB_NUM_NODES === undefined ? 1 : int(env, 'SLURM_JOB_NUM_NODES', 1);
    if (rank >= worldSize) throw new ConfigError(`distributed environment: SLURM_PROCID (${rank}) must be below SLURM_NTASKS (${worldSize})`);
    const localWorldSize = Math.max(1, Math.floor(worldSize / nodes));
    const masterAddr = env.MASTER_ADDR ?? (env.SLURM_JOB_NODELIST ? firstSlurmHost(env.SLURM_JOB_NODELIST) : '127.0.0.1');
    // Every task of the job derives the same port from the job id (20000..59999) unless MASTER_PORT says otherwise.
    const jobId = int(env, 'SLURM_JOB_ID', 0);
    const masterPort = env.MASTER_PORT !== undefined ? port(env, 'MASTER_PORT') : 20000 + (jobId % 40000);
    return { source: 'slurm', rank, worldSize, localRank, localWorldSize, masterAddr, masterPort };
  }
  return { source: 'single', rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: '127.0.0.1', masterPort: 29500 };
}
