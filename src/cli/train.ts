// `dinov3 train`: self-supervised pretraining from a config (YAML/JSON file or preset) and dotlist overrides, on a
// data source, into a run folder; resumable, stops cleanly on SIGINT/SIGTERM (checkpoint first). With
// --nproc-per-node N it starts N workers (distributed/launch.ts, torchrun-style environment) that train data-parallel
// over a c10d group; inside a process that torchrun, SLURM or the launcher started, it is that worker.
import { type Command, InvalidArgumentError, Option } from 'commander';

import type { Device } from '../tensor/tensor.js';
import { deviceArg, deviceError } from './device.js';
import type { CliIO } from './progress.js';

const positiveInt = (v: string): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer.');
  return n;
};

export interface TrainCliOptions {
  config: string;
  data: string;
  out: string;
  resume?: boolean;
  initBackbone?: string;
  maxIterations?: number;
  threads?: number;
  workers?: number;
  seed?: number;
  progressEvery: number;
  nprocPerNode?: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  device: Device;
}

const nonNegativeInt = (v: string): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a non-negative integer.');
  return n;
};

async function runTrainCommand(overrides: string[], o: TrainCliOptions, io: CliIO): Promise<void> {
  const { launch, launchedEnv } = await import('../distributed/launch.js');
  const distributedOpts = o.nnodes !== undefined || o.nodeRank !== undefined || o.masterAddr !== undefined || o.masterPort !== undefined;
  if (o.nprocPerNode === undefined && distributedOpts) {
    const { ConfigError } = await import('../native/errors.js');
    throw new ConfigError('--nnodes, --node-rank, --master-addr and --master-port need --nproc-per-node');
  }
  if (o.nprocPerNode !== undefined && !launchedEnv()) {
    // The launcher: the workers run this same command line (each sees the torchrun-style variables and trains).
    const r = await launch({
      nprocPerNode: o.nprocPerNode,
      nnodes: o.nnodes,
      nodeRank: o.nodeRank,
      masterAddr: o.masterAddr,
      masterPort: o.masterPort,
      argv: process.argv.slice(1),
      output: (_rank, stream, chunk) => (stream === 'stdout' ? io.stdout : io.stderr).write(chunk.toString()),
    });
    if (r.role === 'launcher') return;
  }
  return runTrain(overrides, o, io);
}

async function runTrain(overrides: string[], o: TrainCliOptions, io: CliIO): Promise<void> {
  const { loadSSLConfig } = await import('../train/config.js');
  const { Trainer } = await import('../train/trainer.js');
  const { openTrainingData } = await import('../train/data.js');
  const { cuda, setNumThreads } = await import('../tensor/device.js');
  const { addonInfo } = await import('../native/binding.js');
  const unusable = deviceError('train', o.device, { cudaAvailable: cuda.isAvailable(), ...addonInfo });
  if (unusable) throw unusable;
  if (o.threads) setNumThreads(o.threads);
  const { launchedEnv } = await import('../distributed/launch.js');
  const cfg = await loadSSLConfig(o.config, [...overrides, `train.output_dir=${o.out}`]);
  // A worker of a distributed run (our launcher, torchrun or SLURM): join the group, train on this rank's data.
  const env = launchedEnv();
  let group: import('../distributed/c10d.js').C10dProcessGroup | undefined;
  // On CUDA each worker trains on the GPU of its local rank, its group over NCCL (Gloo on the CPU).
  const onCuda = o.device.startsWith('cuda');
  let device = o.device;
  if (env && env.worldSize > 1) {
    const { initProcessGroup } = await import('../distributed/c10d.js');
    group = await initProcessGroup({ backend: onCuda ? 'nccl' : 'gloo' });
    if (onCuda) device = `cuda:${group.localRank}`;
  }
  const rank = group?.rank ?? 0;
  const data = await openTrainingData(o.data, cfg, {
    workers: o.workers,
    seed: o.seed,
    onWarning: (m) => io.stderr.write(`warning: ${rank > 0 ? `[rank ${rank}] ` : ''}${m}\n`),
    ...(group ? { rank: group.rank, worldSize: group.worldSize } : {}),
  });
  const ac = new AbortController();
  const stop = () => {
    if (!ac.signal.aborted) io.stderr.write('stopping after this iteration (checkpoint first)…\n');
    ac.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const trainer = await Trainer.create(cfg, {
      data,
      outDir: o.out,
      resume: o.resume,
      initBackbone: o.initBackbone,
      maxIterations: o.maxIterations,
      seed: o.seed,
      signal: ac.signal,
      group,
      device,
      progressEvery: o.progressEvery,
      onProgress: (line) => io.stderr.write(`${line}\n`),
    });
    try {
      if (o.resume && trainer.iteration > 0 && rank === 0) io.stderr.write(`resuming at iteration ${trainer.iteration}\n`);
      const r = await trainer.fit();
      if (rank === 0)
        io.stdout.write(`${JSON.stringify({ iterations: r.iterations, stoppedBy: r.stoppedBy, checkpoint: r.checkpoint, out: o.out, last: r.lastMetrics })}\n`);
    } finally {
      trainer.dispose();
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await data.close?.();
    group?.destroy();
  }
}

/** Registers `dinov3 train` on `program`. */
export function addTrainCommand(program: Command, io: CliIO, fail: (cmd: Command) => (e: unknown) => void): Command {
  const cmd = program
    .command('train')
    .description('self-supervised DINOv3 pretraining (DINO + iBOT + KoLeo, optional Gram) into a run folder')
    .exitOverride()
    .argument('[overrides...]', 'config overrides as dotted key=value (optim.lr=1e-4 crops.local_crops_number=4)')
    .requiredOption(
      '--config <yaml|json|preset>',
      'config file, or a preset: ssl_default, vitl_im1k_lin834, cpu_tiny_fmnist, cpu_vits_tiny, vit{s,b,l}16_{pretrain,gram_anchor,high_res_adapt}, dinov3_vit7b16_{pretrain,gram_anchor,high_res_adapt}',
    )
    .requiredOption('--data <source>', 'image folder, IDX images file (MNIST/Fashion-MNIST), list file (path[,label] per line), or "synthetic"')
    .requiredOption('--out <runDir>', 'run folder (config, metrics, checkpoints, teacher exports, loss curve)')
    .option('--resume', 'continue from the latest complete checkpoint in --out')
    .option('--init-backbone <weights>', 'start student and teacher backbones from released weights (.pth, .safetensors, HF folder)')
    .option('--max-iterations <n>', 'stop after n iterations (schedules still span optim.epochs × OFFICIAL_EPOCH_LENGTH)', positiveInt)
    .option('--threads <n>', 'CPU threads for libtorch', positiveInt)
    .addOption(
      new Option('--device <device>', "cpu, cuda or cuda:<index> (with --nproc-per-node: each worker its local rank's GPU, NCCL)")
        .default('cpu')
        .argParser(deviceArg),
    )
    .option('--workers <n>', 'data-loading worker threads', positiveInt)
    .option('--seed <n>', 'seed of the model and data randomness (default train.seed)', (v) => Number(v))
    .option('--progress-every <n>', 'progress line every n iterations', positiveInt, 10)
    .option(
      '--nproc-per-node <n>',
      'data-parallel workers on this node (each trains on its share of every global batch; compute_precision.sharding_strategy)',
      positiveInt,
    )
    .option('--nnodes <n>', 'nodes in the job (with --nproc-per-node)', positiveInt)
    .option('--node-rank <r>', "this node's index, 0 hosts the rendezvous (with --nproc-per-node)", nonNegativeInt)
    .option('--master-addr <host>', 'address of node 0 (required with --nnodes > 1)')
    .option('--master-port <port>', 'rendezvous port on node 0 (default: a free port on one node)', positiveInt);
  cmd.action((overrides: string[], o: TrainCliOptions, c: Command) => runTrainCommand(overrides, o, io).catch(fail(c)));
  return cmd;
}
