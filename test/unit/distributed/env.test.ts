// The job layout read from torchrun-style and SLURM environments.
import { describe, expect, test } from 'vitest';

import { ConfigError, firstSlurmHost, readDistributedEnv } from '../../../src/index.js';

describe('readDistributedEnv', () => {
  test('torchrun variables', () => {
    expect(
      readDistributedEnv({
        RANK: '3',
        WORLD_SIZE: '8',
        LOCAL_RANK: '1',
        LOCAL_WORLD_SIZE: '2',
        MASTER_ADDR: '10.0.0.2',
        MASTER_PORT: '29400',
        SLURM_JOB_ID: '5',
        SLURM_PROCID: '0',
      }),
    ).toEqual({ source: 'torchrun', rank: 3, worldSize: 8, localRank: 1, localWorldSize: 2, masterAddr: '10.0.0.2', masterPort: 29400 });
  });
  test('SLURM variables: first node of the list, a port derived from the job id unless MASTER_PORT is set', () => {
    const env = {
      SLURM_JOB_ID: '123456',
      SLURM_PROCID: '5',
      SLURM_NTASKS: '8',
      SLURM_LOCALID: '1',
      SLURM_JOB_NUM_NODES: '2',
      SLURM_JOB_NODELIST: 'gpu[007-008]',
    };
    expect(readDistributedEnv(env)).toEqual({
      source: 'slurm',
      rank: 5,
      worldSize: 8,
      localRank: 1,
      localWorldSize: 4,
      masterAddr: 'gpu007',
      masterPort: 20000 + (123456 % 40000),
    });
    expect(readDistributedEnv({ ...env, MASTER_PORT: '4000', MASTER_ADDR: 'head' })).toMatchObject({ masterAddr: 'head', masterPort: 4000 });
  });
  test('nothing set: one process', () => {
    expect(readDistributedEnv({})).toEqual({
      source: 'single',
      rank: 0,
      worldSize: 1,
      localRank: 0,
      localWorldSize: 1,
      masterAddr: '127.0.0.1',
      masterPort: 29500,
    });
  });
  test('partial or inconsistent setups are ConfigErrors', () => {
    expect(() => readDistributedEnv({ RANK: '0' })).toThrow(
      new ConfigError('distributed environment: WORLD_SIZE must be an integer >= 1, received nothing (unset)'),
    );
    expect(() => readDistributedEnv({ RANK: '2', WORLD_SIZE: '2' })).toThrow('distributed environment: RANK (2) must be below WORLD_SIZE (2)');
    expect(() => readDistributedEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '1' })).toThrow(
      'distributed environment: MASTER_ADDR must be set when WORLD_SIZE > 1',
    );
    expect(() => readDistributedEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '70000' })).toThrow(
      'distributed environment: MASTER_PORT must be a TCP port (1..65535), received 70000',
    );
    expect(() => readDistributedEnv({ RANK: 'x', WORLD_SIZE: '2' })).toThrow('distributed environment: RANK must be an integer >= 0, received "x"');
  });
  test('firstSlurmHost', () => {
    expect(firstSlurmHost('gpu[003-005,9],cpu1')).toBe('gpu003');
    expect(firstSlurmHost('node12,node13')).toBe('node12');
    expect(firstSlurmHost('a[1,2]')).toBe('a1');
    expect(() => firstSlurmHost('')).toThrow(ConfigError);
  });
});
