// The `dinov3` command line (commander): `features` writes DINOv3 features of many images to a file, `pca` renders
// the PCA of one image's patch features. Errors are one line on stderr: `error: <what went wrong>` (exit code 1).
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';

// Types only: the library (libtorch, sharp) is imported when a command runs, so that --help and option errors are
// instant.
import type { Device, DType } from '../tensor/tensor.js';
import { ConfigError, type ImageError } from '../native/errors.js';
import type { Interpolation, Normalization, ResizePolicy } from '../data/transforms.js';
import type { FeatureDType, FeatureFileFormat } from '../features/save.js';
import type { LayerSelection } from '../features/backbone.js';
import type { CliIO } from './progress.js';
import { deviceArg } from './device.js';
import { addDistillCommand } from './distill.js';
import { addTrainCommand } from './train.js';

const positiveInt = (v: string): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer.');
  return n;
};

const threadsArg = (v: string): number => {
  const n = positiveInt(v);
  const cpus = availableParallelism();
  if (n > cpus) throw new InvalidArgumentError(`this machine has ${cpus} CPU${cpus === 1 ? '' : 's'}: use at most ${cpus}.`);
  return n;
};

const layersArg = (v: string): LayerSelection => {
  if (/^\d+$/.test(v.trim())) return positiveInt(v);
  const list = v.split(',').map((s) => s.trim());
  if (list.length === 0 || list.some((s) => !/^\d+$/.test(s)))
    throw new InvalidArgumentError('expected a count of last blocks (4) or comma-separated 0-based block indices (2,5,8,11).');
  return list.map(Number);
};

interface CommonOptions {
  weights: string;
  model?: string;
  device: Device;
  dtype: DType;
  normalization?: Normalization;
  layers?: LayerSelection;
  threads?: number;
  json?: boolean;
}

interface FeaturesOptions extends CommonOptions {
  images: string[];
  out: string;
  resolution: number;
  resize: ResizePolicy;
  resizeShortSide?: number;
  interpolation: Interpolation;
  round?: boolean;
  format?: FeatureFileFormat;
  featureDtype: FeatureDType;
  batchSize: number;
  onError: 'skip' | 'fail';
  progress: boolean;
}

interface PcaOptions extends CommonOptions {
  image: string;
  out: string;
  resolution: number;
  interpolation: Interpolation;
  upsample: 'nearest' | 'bilinear';
  composite: boolean;
}

interface EvalOptions extends CommonOptions {
  train: string;
  val: string;
  resolution: number;
  batchSize: number;
  k: number[];
  temperature: number;
  epochs: number;
  lr?: number[];
  avgpool?: boolean;
  onError: 'skip' | 'fail';
  progress: boolean;
}

const listArg =
  (parse: (s: string) => number, what: string) =>
  (v: string): number[] => {
    const out = v.split(',').map((s) => parse(s.trim()));
    if (out.length === 0 || out.some((n) => !Number.isFinite(n))) throw new InvalidArgumentError(`expected comma-separated ${what}.`);
    return out;
  };

const positiveNumber = (v: string): number => {
  const n = Number(v);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError('expected a positive number.');
  return n;
};

/** The package version (package.json above this file, in src/ or dist/src/). */
function version(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'dinov3-ts' && pkg.version) return pkg.version;
    } catch {
      // not here; go up
    }
  }
  return '0.0.0';
}

/** The backbone options shared by both commands. */
function addModelOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--weights <path>', 'backbone checkpoint: .pth, .safetensors or a Hugging Face folder')
    .option('--model <preset>', 'released architecture (vits16, vitb16, vitl16, vitl16_sat493m, …); default: from the checkpoint')
    .addOption(new Option('--device <device>', 'cpu, cuda or cuda:<index>').default('cpu').argParser(deviceArg))
    .addOption(new Option('--dtype <dtype>', 'parameter and compute dtype').choices(['float32', 'bfloat16', 'float16']).default('float32'))
    .addOption(
      new Option('--normalization <stats>', 'input mean/std; default: sat493m for SAT-493M presets, else lvd1689m').choices([
        'lvd1689m',
        'imagenet',
        'sat493m',
        'none',
      ]),
    )
    .option('--layers <n|list>', 'features of the last n blocks, or of comma-separated 0-based block indices (default: final output)', layersArg)
    .option('--threads <n>', 'CPU threads for libtorch (at most the number of CPUs)', threadsArg)
    .option('--json', 'print the result as JSON on stdout');
}

/** Loads the backbone named by the common options (after checking the device). */
async function loadModel(o: CommonOptions) {
  const [{ addonInfo }, { cuda, setNumThreads }, { getPreset, presetForFileName }, { loadBackbone }] = await Promise.all([
    import('../native/binding.js'),
    import('../tensor/device.js'),
    import('../config/presets.js'),
    import('../checkpoint/backbone.js'),
  ]);
  if (o.threads) setNumThreads(o.threads);
  if (o.device.startsWith('cuda') && !cuda.isAvailable())
    throw new ConfigError(
      `--device ${o.device}: CUDA is not available (libtorch ${addonInfo.torchVersion}, ${addonInfo.cudaCompiled ? 'no GPU found' : 'built without CUDA'})`,
    );
  const preset = o.model ? getPreset(o.model) : presetForFileName(o.weights);
  const normalization: Normalization = o.normalization ?? (preset?.weights === 'SAT493M' ? 'sat493m' : 'lvd1689m');
  const { model } = await loadBackbone(o.weights, { preset: o.model, device: o.device, dtype: o.dtype });
  return { model, normalization };
}

async function runFeatures(o: FeaturesOptions, io: CliIO): Promise<void> {
  const started = Date.now();
  const [{ saveFeatures, checkFeatureOutput }, { progressBar }] = await Promise.all([import('../features/save.js'), import('./progress.js')]);
  // Before any work: --out may not be an input or the weights (saveFeatures checks again against its listing).
  await checkFeatureOutput(o.out, { format: o.format, inputs: o.images, protectedPaths: [o.weights] });
  const { model, normalization } = await loadModel(o);
  const bar = progressBar(io, 'features', o.progress);
  const skipped: ImageError[] = [];
  try {
    const r = await saveFeatures(model, o.images.length === 1 ? o.images[0]! : o.images, o.out, {
      resolution: o.resolution,
      resize: o.resize,
      resizeShortSide: o.resizeShortSide,
      interpolation: o.interpolation,
      sizeMultiple: o.round ? 'round' : 'reject',
      normalization,
      layers: o.layers,
      batchSize: o.batchSize,
      device: o.device,
      dtype: o.dtype,
      format: o.format,
      featureDtype: o.featureDtype,
      onError: o.onError,
      protectedPaths: [o.weights],
      onSkip: (e) => skipped.push(e),
      onProgress: (p) => bar.update(p.done + p.skipped, p.total, p.skipped),
    });
    bar.stop();
    for (const e of skipped) io.stderr.write(`warning: skipped ${e.message}\n`);
    const shapes = Object.entries(r.tensors).map(([k, s]) => `${k} [${s.join(', ')}]`);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    io.stderr.write(
      `features: ${r.paths.length} image${r.paths.length === 1 ? '' : 's'}${skipped.length ? ` (${skipped.length} skipped)` : ''} → ${o.out}: ` +
        `${shapes.length > 4 ? `${shapes.slice(0, 3).join(', ')}, … (${shapes.length} tensors)` : shapes.join(', ')} in ${secs} s\n`,
    );
    if (o.json)
      io.stdout.write(
        `${JSON.stringify({ out: o.out, files: r.files, images: r.paths, tensors: r.tensors, skipped: skipped.map((e) => ({ path: e.path, message: e.message })) })}\n`,
      );
  } finally {
    bar.stop();
    model.dispose();
  }
}

async function runPca(o: PcaOptions, io: CliIO): Promise<void> {
  const { pcaImage, checkPcaOutput } = await import('../features/pca.js');
  await checkPcaOutput(o.out, { image: o.image, protectedPaths: [o.weights] });
  const { model, normalization } = await loadModel(o);
  try {
    const r = await pcaImage(model, o.image, o.out, {
      resolution: o.resolution,
      interpolation: o.interpolation,
      normalization,
      layers: o.layers,
      upsample: o.upsample,
      composite: o.composite,
      protectedPaths: [o.weights],
    });
    io.stderr.write(`pca: ${o.image} → ${o.out} (${r.width}×${r.height}, ${r.grid[0]}×${r.grid[1]} patches)\n`);
    if (o.json) io.stdout.write(`${JSON.stringify({ out: o.out, width: r.width, height: r.height, grid: r.grid })}\n`);
  } finally {
    model.dispose();
  }
}

async function runEval(mode: 'knn' | 'linear', o: EvalOptions, io: CliIO): Promise<void> {
  if (o.layers !== undefined) throw new ConfigError('eval: --layers is not supported (evaluation uses the final CLS token [+ mean patch token])');
  const started = Date.now();
  const [{ openDataset }, { checkEvalDatasets, evaluateBackbone }, { progressBar }] = await Promise.all([
    import('../data/datasets/index.js'),
    import('../eval/index.js'),
    import('./progress.js'),
  ]);
  const [train, val] = await Promise.all([openDataset(o.train), openDataset(o.val)]);
  checkEvalDatasets(train, val); // before the model is loaded: bad datasets fail fast
  const { model, normalization } = await loadModel(o);
  const bars = new Map<string, ReturnType<typeof progressBar>>();
  const bar = (phase: string) => {
    let b = bars.get(phase);
    if (!b) {
      for (const other of bars.values()) other.stop();
      b = progressBar(io, phase === 'train' || phase === 'val' ? `features (${phase})` : phase, o.progress);
      bars.set(phase, b);
    }
    return b;
  };
  try {
    const r = await evaluateBackbone(model, mode, train, val, {
      resolution: o.resolution,
      batchSize: o.batchSize,
      normalization,
      avgpool: o.avgpool,
      onError: o.onError,
      knn: { ks: o.k, temperature: o.temperature },
      linear: { epochs: o.epochs, learningRates: o.lr },
      onProgress: (phase, done, total, skipped) => bar(phase).update(done, total, skipped),
    });
    for (const b of bars.values()) b.stop();
    for (const s of [...r.train.skipped, ...r.val.skipped]) io.stderr.write(`warning: skipped ${s.message}\n`);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    const headline =
      mode === 'knn'
        ? r.knn!.map((k) => `k=${k.k}: top-1 ${(100 * k.top1).toFixed(2)}%, top-5 ${(100 * k.top5).toFixed(2)}%`).join('; ')
        : `top-1 ${(100 * r.linear!.top1).toFixed(2)}%, top-5 ${(100 * r.linear!.top5).toFixed(2)}% (lr ${r.linear!.learningRate})`;
    io.stderr.write(`eval ${mode}: ${r.train.images} train / ${r.val.images} val images, ${r.numClasses} classes: ${headline} in ${secs} s\n`);
    io.stdout.write(
      `${JSON.stringify({ ...r, train: { images: r.train.images, skipped: r.train.skipped }, val: { images: r.val.images, skipped: r.val.skipped } })}\n`,
    );
  } finally {
    for (const b of bars.values()) b.stop();
    model.dispose();
  }
}

interface BenchOptions {
  preset: string;
  batch: number;
  steps: number;
  warmup: number;
  device: Device;
  threads?: number;
  peakN?: number;
  out?: string;
}

/** Writes `json` to stdout and, with --out, atomically to a file. */
async function emitJson(json: Record<string, unknown>, out: string | undefined, io: CliIO): Promise<void> {
  const text = `${JSON.stringify(json, null, 2)}\n`;
  io.stdout.write(text);
  if (!out) return;
  const { mkdirSync, openSync, writeSync, fsyncSync, closeSync, renameSync } = await import('node:fs');
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, out);
}

const nonNegativeInt = (v: string): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a non-negative integer.');
  return n;
};

/** `dinov3 bench features|train` (src/cli/bench.ts). */
function addBenchCommands(program: Command, io: CliIO, fail: (cmd: Command) => (e: unknown) => never | void): void {
  const bench = program.command('bench').description('throughput, counted FLOPs, MFU against a measured matmul peak, and peak memory, as JSON').exitOverride();
  const common = (cmd: Command) =>
    cmd
      .exitOverride()
      .requiredOption('--preset <name>', 'tiny (a dry run) or a released architecture: vits16, vitb16, vitl16, vith16plus, …')
      .option('--batch <n>', 'images per iteration', positiveInt, 64)
      .option('--steps <n>', 'timed iterations', positiveInt, 10)
      .option('--warmup <n>', 'untimed iterations first', nonNegativeInt, 2)
      .addOption(new Option('--device <device>', 'cpu, cuda or cuda:<index>').default('cpu').argParser(deviceArg))
      .option('--threads <n>', 'CPU threads for libtorch', positiveInt)
      .option('--peak-n <n>', 'side of the n×n matmul that measures the peak (0: skip; default 8192 on CUDA, 1024 on CPU)', nonNegativeInt)
      .option('--out <file.json>', 'also write the JSON to this file');

  const features = common(bench.command('features').description('forward_features without autograd on synthetic images'))
    .option('--resolution <pixels>', 'square input side', positiveInt, 224)
    .addOption(new Option('--dtype <dtype>', 'weights and input dtype').choices(['float32', 'bfloat16']).default('float32'))
    .option('--autocast', 'bfloat16 autocast over float32 weights')
    .option('--cuda-graph', 'capture the forward in a CUDA graph and time its replays (CUDA only)');
  features.action((o: BenchOptions & { resolution: number; dtype: 'float32' | 'bfloat16'; autocast?: boolean; cudaGraph?: boolean }, cmd: Command) =>
    (async () => {
      const { benchFeatures } = await import('./bench.js');
      await emitJson(benchFeatures(o), o.out, io);
    })().catch(fail(cmd)),
  );

  const train = common(bench.command('train').description('SSL training steps on synthetic multi-crop batches (official collate layout)'))
    .option('--crops <spec>', 'crops per image: global, then local (<count>x<size>,…)', '2x224,8x96')
    .option('--autocast', 'bfloat16 autocast over float32 master weights (default on CUDA)')
    .option('--no-autocast', 'no autocast (float32 compute)')
    .option('--drop-path <rate>', 'student stochastic depth', (v: string) => {
      const n = Number(v);
      if (!(n >= 0 && n < 1)) throw new InvalidArgumentError('expected a rate in [0, 1).');
      return n;
    })
    .option('--prototypes <n>', 'prototypes of the DINO and iBOT heads (default 65536; tiny: 128)', positiveInt)
    .option('--phases', 'also report seconds per step of each phase (teacher, student forward, losses, backward, …)')
    .option('--activation-checkpointing', "recompute the student's blocks in backward (train.checkpointing): less memory, more compute")
    .addOption(
      new Option(
        '--host-batches [mode]',
        "host batches moved to the device each step, as a loader's: prefetch (the next one's copy on a copy stream during the step) or inline (on the step's stream)",
      )
        .choices(['prefetch', 'inline'])
        .preset('prefetch'),
    );
  train.action(
    (
      o: BenchOptions & {
        crops: string;
        autocast?: boolean;
        dropPath?: number;
        prototypes?: number;
        phases?: boolean;
        hostBatches?: 'prefetch' | 'inline';
        activationCheckpointing?: boolean;
      },
      cmd: Command,
    ) =>
      (async () => {
        const { benchTrain } = await import('./bench.js');
        await emitJson(benchTrain({ ...o, head: o.prototypes ? { prototypes: o.prototypes } : undefined }), o.out, io);
      })().catch(fail(cmd)),
  );
}

/**
 * Builds the `dinov3` program. `io` receives all output; commander errors throw CommanderError (exitOverride).
 */
export function buildProgram(io: CliIO): Command {
  const program = new Command('dinov3')
    .description('DINOv3 self-supervised training, feature extraction and visualisation on libtorch')
    .version(version())
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s), outputError: (s, write) => write(s) });

  const fail = (cmd: Command) => (e: unknown) => {
    if (e instanceof CommanderError) throw e;
    const msg = (e instanceof Error ? e.message : String(e)).replace("sizeMultiple: 'round' to round it", '--round to round it');
    cmd.error(`error: ${msg.split('\n').join('\n  ')}`, { exitCode: 1, code: 'dinov3.error' });
  };

  const features = addModelOptions(
    program
      .command('features')
      .description('extract CLS, storage and patch features of images into a .safetensors file (or a folder of .npy files)')
      .exitOverride()
      .requiredOption('--images <paths...>', 'image files, folders (searched recursively) or quoted globs ("photos/**/*.jpg")')
      .requiredOption('--out <path>', 'output .safetensors file (or folder for --format npy)')
      .option('--resolution <pixels>', 'model input side (square/shortSide crop) or short side (keepAspect)', positiveInt, 256)
      .addOption(new Option('--resize <policy>', 'resize policy').choices(['square', 'shortSide', 'keepAspect', 'none']).default('square'))
      .option('--resize-short-side <pixels>', 'shortSide: short side before the centre crop (default: --resolution)', positiveInt)
      .addOption(new Option('--interpolation <kernel>', 'resampling kernel').choices(['bicubic', 'bilinear', 'nearest', 'lanczos3']).default('bicubic'))
      .option('--round', 'round sizes that are not multiples of the patch size instead of rejecting them')
      .addOption(new Option('--format <format>', 'output format (default: from --out)').choices(['safetensors', 'npy']))
      .addOption(new Option('--feature-dtype <dtype>', 'stored dtype').choices(['float32', 'float16', 'bfloat16']).default('float32'))
      .option('--batch-size <n>', 'images per forward pass', positiveInt, 8)
      .addOption(new Option('--on-error <mode>', 'unreadable or corrupt images: skip them (with a warning) or stop').choices(['skip', 'fail']).default('fail'))
      .option('--no-progress', 'no progress bar'),
  );
  features.action((o: FeaturesOptions, cmd: Command) => runFeatures(o, io).catch(fail(cmd)));

  const pca = addModelOptions(
    program
      .command('pca')
      .description('render the first three principal components of the patch features of an image as RGB, beside the image (PNG)')
      .exitOverride()
      .requiredOption('--image <path>', 'input image')
      .requiredOption('--out <file>', 'output image: .png, .jpg/.jpeg or .webp')
      .option('--resolution <pixels>', 'short side of the model input (aspect ratio kept, sides rounded to the patch size)', positiveInt, 768)
      .addOption(new Option('--interpolation <kernel>', 'resampling kernel').choices(['bicubic', 'bilinear', 'nearest', 'lanczos3']).default('bicubic'))
      .addOption(new Option('--upsample <mode>', 'upsampling of the patch map').choices(['nearest', 'bilinear']).default('nearest'))
      .option('--no-composite', 'write the PCA map alone, without the input image'),
  );
  pca.action((o: PcaOptions, cmd: Command) => runPca(o, io).catch(fail(cmd)));
  addTrainCommand(program, io, fail);
  addDistillCommand(program, io, fail);

  const evalCmd = program
    .command('eval')
    .description('k-NN or linear-probe accuracy of a backbone on a labeled train/val pair (JSON result on stdout)')
    .exitOverride();
  for (const mode of ['knn', 'linear'] as const) {
    const sub = addModelOptions(
      evalCmd
        .command(mode)
        .description(
          mode === 'knn'
            ? 'weighted k-NN on L2-normalised CLS features (T = 0.07)'
            : 'linear classifiers on frozen CLS + mean patch features, best of a learning-rate grid',
        )
        .exitOverride()
        .requiredOption('--train <data>', 'train set: image folder (class subfolders), list file (path,label), or IDX images file')
        .requiredOption('--val <data>', 'validation set (same kinds)')
        .option('--resolution <pixels>', 'centre-crop side (short side resized to 256/224 of it)', positiveInt, 224)
        .option('--batch-size <n>', 'images per forward pass', positiveInt, 32)
        .addOption(
          new Option('--on-error <mode>', 'unreadable or corrupt images: skip them (with a warning) or stop').choices(['skip', 'fail']).default('skip'),
        )
        .option('--no-progress', 'no progress bar'),
    );
    if (mode === 'knn')
      sub
        .option('--k <list>', 'neighbour counts, comma-separated', listArg(Number, 'positive integers'), [20])
        .option('--temperature <t>', 'vote temperature', positiveNumber, 0.07);
    else
      sub
        .option('--epochs <n>', 'training epochs', positiveInt, 10)
        .option('--lr <list>', 'base learning rates, comma-separated (default: the official grid)', listArg(Number, 'numbers'))
        .option('--no-avgpool', 'CLS token only (default: CLS + mean patch token)');
    sub.action((o: EvalOptions, cmd: Command) => runEval(mode, o, io).catch(fail(cmd)));
  }

  addBenchCommands(program, io, fail);
  return program;
}

/** Runs the CLI on `argv` (without `node main.js`). Resolves to the exit code. */
export async function run(argv: string[], io: CliIO): Promise<number> {
  const program = buildProgram(io);
  try {
    if (argv.length === 0) {
      program.outputHelp({ error: true });
      return 1;
    }
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    throw e;
  }
}
