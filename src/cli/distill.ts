// `dinov3 distill`: a frozen teacher distils into one or several students (official MultiDistillationMetaArch), each
// trained in its own sub-folder of the run folder, where its EMA is exported (teacher_checkpoint.safetensors).
import { type Command, InvalidArgumentError, Option } from 'commander';

import type { Device } from '../tensor/tensor.js';
import { deviceArg, deviceError } from './device.js';
import type { CliIO } from './progress.js';

const positiveInt = (v: string): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer.');
  return n;
};

const studentArg = (v: string, prev: string[] = []): string[] => {
  if (!/^[A-Za-z0-9_.-]+=.+$/.test(v)) throw new InvalidArgumentError('expected name=<config file or preset> (e.g. vits=cpu_vits_tiny).');
  return [...prev, v];
};

export interface DistillCliOptions {
  config: string;
  teacherConfig?: string;
  teacher?: string;
  student?: string[];
  data: string;
  out: string;
  resume?: boolean;
  maxIterations?: number;
  threads?: number;
  device: Device;
  workers?: number;
  progressEvery: number;
}

async function runDistill(overrides: string[], o: DistillCliOptions, io: CliIO): Promise<void> {
  const { loadDistillationSetup, MultiDistiller } = await import('../train/multidist_meta_arch.js');
  const { openTrainingData } = await import('../train/data.js');
  const { cuda, setNumThreads } = await import('../tensor/device.js');
  const { addonInfo } = await import('../native/binding.js');
  const unusable = deviceError('distill', o.device, { cudaAvailable: cuda.isAvailable(), ...addonInfo });
  if (unusable) throw unusable;
  if (o.threads) setNumThreads(o.threads);
  // --teacher-config/--teacher/--student are the official keys written as flags
  const extra = [...overrides];
  if (o.teacherConfig) extra.push(`distillation.full_cfg_path=${o.teacherConfig}`);
  if (o.teacher) extra.push(`distillation.checkpoint_path=${o.teacher}`);
  if (o.teacherConfig || o.teacher) extra.push('distillation.enabled=true');
  if (o.student?.length) {
    const list = o.student.map((s, i) => {
      const eq = s.indexOf('=');
      return `{name: ${JSON.stringify(s.slice(0, eq))}, config_path: ${JSON.stringify(s.slice(eq + 1))}, ranks_range: [${i}, ${i + 1}]}`;
    });
    extra.push('multidistillation.enabled=true', `multidistillation.students=[${list.join(', ')}]`);
  }
  const setup = await loadDistillationSetup(o.config, extra);
  // one data stream for all students, with the crops and masking of the first student
  const data = await openTrainingData(o.data, setup.students[0]!.cfg, { workers: o.workers, onWarning: (m) => io.stderr.write(`warning: ${m}\n`) });
  const ac = new AbortController();
  const stop = () => {
    if (!ac.signal.aborted) io.stderr.write('stopping after this iteration (checkpoints first)…\n');
    ac.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const d = await MultiDistiller.create(setup.teacher, setup.students, {
      data,
      outDir: o.out,
      resume: o.resume,
      maxIterations: o.maxIterations,
      device: o.device,
      signal: ac.signal,
      onWarning: (m) => io.stderr.write(`warning: ${m}\n`),
      onMetrics: (name, m) => {
        if (m.iteration % o.progressEvery === 0)
          io.stderr.write(
            `[${name}] it ${m.iteration}: total ${m.total_loss.toFixed(4)} dino_global ${m.dino_global_crops_loss.toFixed(4)} ibot ${m.ibot_loss.toFixed(4)}\n`,
          );
      },
    });
    try {
      if (o.resume && d.iteration > 0) io.stderr.write(`resuming at iteration ${d.iteration}\n`);
      const r = await d.fit();
      io.stdout.write(`${JSON.stringify({ iterations: r.iterations, stoppedBy: r.stoppedBy, out: o.out, exports: r.exports })}\n`);
    } finally {
      d.dispose();
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await data.close?.();
  }
}

/** Registers `dinov3 distill` on `program`. */
export function addDistillCommand(program: Command, io: CliIO, fail: (cmd: Command) => (e: unknown) => void): Command {
  const cmd = program
    .command('distill')
    .description("distil a frozen teacher into one or several students (DINO + iBOT + KoLeo towards the teacher), exporting each student's EMA")
    .exitOverride()
    .argument('[overrides...]', 'config overrides as dotted key=value, applied to every student')
    .requiredOption('--config <yaml|json|preset>', 'base config: the student (or, with multidistillation.students, what every student shares)')
    .option('--teacher-config <yaml|json|preset>', "the teacher's config (distillation.full_cfg_path)")
    .option('--teacher <checkpoint>', 'the teacher\'s weights: a run folder, a .pth {"teacher": …} or a .safetensors (distillation.checkpoint_path)')
    .option('--student <name=config>', 'a student and its config file or preset (repeatable; multidistillation.students)', studentArg)
    .requiredOption('--data <source>', 'image folder, IDX images file, list file, or "synthetic"')
    .requiredOption('--out <runDir>', 'run folder (one sub-folder per student)')
    .option('--resume', 'continue every student from its latest checkpoint')
    .option('--max-iterations <n>', 'stop after n iterations', positiveInt)
    .option('--threads <n>', 'CPU threads for libtorch', positiveInt)
    .addOption(new Option('--device <device>', 'cpu, cuda or cuda:<index> (teacher and students)').default('cpu').argParser(deviceArg))
    .option('--workers <n>', 'data-loading worker threads', positiveInt)
    .option('--progress-every <n>', 'a loss line per student every n iterations', positiveInt, 10);
  cmd.action((overrides: string[], o: DistillCliOptions, c: Command) => runDistill(overrides, o, io).catch(fail(c)));
  return cmd;
}
