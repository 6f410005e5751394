// The training loop around one iteration (official `dinov3/train/train.py::do_train`): schedules by iteration, the
// gram-teacher load and refreshes, JSONL metrics and progress, periodic atomic checkpoints with everything needed for
// an exact continuation (student, teacher, gram teacher, optimizer, generator states, data position, counters,
// config), teacher exports, and a clean stop on an AbortSignal. A script can drive `step()` itself or call `fit()`.
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { readCheckpoint, stripTrainingPrefixes, loadBackboneStateDict } from '../checkpoint/backbone.js';
import { batchTensors, type CollatedBatch, DevicePrefetcher, type StagedBatch, withBatchOn } from '../data/batch.js';
import { loadShardedCheckpoint, saveShardedCheckpoint } from '../distributed/fsdp_checkpoint.js';
import type { ProcessGroup } from '../distributed/process_group.js';
import { CheckpointError, ConfigError } from '../native/errors.js';
import type { StateDict } from '../nn/module.js';
import { full, Generator } from '../tensor/creation.js';
import { noGrad } from '../tensor/grad_mode.js';
import { scope } from '../tensor/scope.js';
import { expectDevice, expectFunction } from '../tensor/args.js';
import type { AdamWStateDict } from '../optim/adamw.js';
import type { Device, Tensor } from '../tensor/tensor.js';
import {
  checkpointDir,
  exportTeacherBackbone,
  listCheckpoints,
  generatorStates,
  loadLatestCheckpoint,
  optimizerFromCheckpoint,
  optimizerToCheckpoint,
  prepareRunDir,
  restoreGeneratorStates,
  type LoadedCheckpoint,
  saveCheckpoint,
  type OptimizerJson,
} from './checkpointer.js';
import { applyScalingRules, loadSSLConfig, writeResolvedConfig, type SSLConfig } from './config.js';
import { MetricsLog, METRICS_FILE, type MetricsRecord, memoryMetrics, ProgressReporter, renderLossCurve } from './logging.js';
import { gramLoadDue, gramRefreshDue, hasGramTeacher, loadGramTeacherCheckpoint, officialGramUpdatesBefore } from './gram.js';
import { buildSchedulers, type TrainSchedules } from './schedules.js';
import { initStudentFromTeacherCheckpoint } from './stages.js';
import { isCollectiveGroup, ShardedSSL, type ShardMemoryReport, type TrainerSharding } from './sharded.js';
import { SSLMetaArch, type TeacherGlobal } from './ssl_meta_arch.js';
import { buildOptimizer, scheduleValues, trainIteration, type IterationMetrics } from './train.js';

/** A data source whose position can be saved and restored (the loader of `src/data/loader.ts` is one). */
export interface ResumableData {
  state(): unknown;
  setState(state: unknown): void;
}

export type BatchSource = AsyncIterable<CollatedBatch> | Iterable<CollatedBatch>;

export interface TrainerOptions {
  /** Batches for `fit()` (the trainer disposes each batch after its step). */
  data?: BatchSource & Partial<ResumableData>;
  /** Run folder (config, metrics, checkpoints, exports). Without it nothing is written. */
  outDir?: string;
  /** Called after every iteration with its metrics. */
  onMetrics?: (m: IterationMetrics) => void;
  /** Receives progress lines (it/s, img/s, ETA, losses). */
  onProgress?: (line: string) => void;
  /** Stops `fit()` cleanly: a checkpoint is written, then it returns. */
  signal?: AbortSignal;
  /**
   * Ranks sharing the losses' statistics (default: this process). With more than one rank the student is trained
   * data-parallel over them (see `sharding`); the group must then be a CollectiveGroup (e.g. from initProcessGroup),
   * each rank gets its own part of the global batch (`batch_size_per_gpu` images), and rank 0 writes the run folder.
   */
  group?: ProcessGroup;
  /**
   * How the student and teacher are spread over the ranks (official `compute_precision.sharding_strategy`, its
   * default when the group has more than one rank): 'SHARD_GRAD_OP' or 'FULL_SHARD' (FullyShardedModule per
   * submodule, blocks as units; sharded checkpoints, loadable at another world size) or 'NO_SHARD' (replicas, gradients
   * all-reduced). Given explicitly with one rank it shards over that rank (so a sharded checkpoint can be resumed, or
   * written, by one process). Default with one rank: none (the plain single-process path).
   */
  sharding?: TrainerSharding;
  device?: Device;
  /** Continue from the latest complete checkpoint of `outDir` (a folder holding another run is refused otherwise). */
  resume?: boolean;
  /** Start from released backbone weights (`.pth`, `.safetensors` or a Hugging Face folder): student and teacher. */
  initBackbone?: string;
  /** Seed of the model's generator (init, drop path, RoPE augmentation). Default `train.seed`. */
  seed?: number;
  /** Stop after this iteration count instead of `optim.epochs × OFFICIAL_EPOCH_LENGTH`. */
  maxIterations?: number;
  /** Stop after this many consecutive non-finite losses (default 3, as the official loop). */
  maxNonFinite?: number;
  /** Progress line every N iterations (default 10). */
  progressEvery?: number;
  /**
   * The schedule position of an iteration (default: the iteration itself). A time-budgeted run maps elapsed time to
   * positions so that every schedule ends when the budget does, whatever the throughput.
   */
  scheduleIndex?: (iteration: number) => number;
}

export interface FitResult {
  iterations: number;
  stoppedBy: 'end' | 'abort' | 'data';
  lastMetrics: IterationMetrics | undefined;
  checkpoint: string | undefined;
}

interface TrainState {
  iteration: number;
  nonFiniteStreak: number;
  numGramUpdates: number;
  gramTeacherInitialized: boolean;
  data: unknown;
}

/**
 * The SSL trainer: `await Trainer.create(config, options)` builds the model, optimizer and schedules (and resumes or
 * loads initial weights); `step(batch)` runs the next iteration; `fit()` runs them all over `options.data`.
 * @example
 * const trainer = await Trainer.create(await loadSSLConfig('cpu_tiny_fmnist'), { data: loader, outDir: 'runs/a' });
 * await trainer.fit();
 * trainer.dispose();
 */
export class Trainer {
  readonly cfg: SSLConfig;
  readonly model: SSLMetaArch;
  optimizer: ReturnType<typeof buildOptimizer>;
  /** The data-parallel / sharded setup (null: plain single-process training). */
  sharded: ShardedSSL | null = null;
  readonly schedules: TrainSchedules;
  readonly generator: Generator;
  readonly maxIterations: number;
  /** The next iteration to run. */
  iteration = 0;
  #nonFiniteStreak = 0;
  #numGramUpdates = 0;
  readonly #o: TrainerOptions;
  #metricsLog: MetricsLog | undefined;
  #progress: ProgressReporter | undefined;
  #lastCheckpoint: string | undefined;

  private constructor(cfg: SSLConfig, o: TrainerOptions) {
    this.cfg = cfg;
    this.#o = o;
    this.generator = new Generator(o.seed ?? cfg.train.seed);
    this.model = new SSLMetaArch(cfg, { generator: this.generator, group: o.group, device: o.device });
    // Sharded: the optimizer is built over the shards once they exist (#distribute); no unsharded moments meanwhile.
    this.optimizer = shardingOf(cfg, o) ? (null as unknown as ReturnType<typeof buildOptimizer>) : buildOptimizer(this.model, cfg.optim);
    const world = o.group?.worldSize ?? 1;
    this.schedules = buildSchedulers(applyScalingRules(cfg, world), world);
    this.maxIterations = o.maxIterations ?? cfg.optim.epochs * cfg.train.OFFICIAL_EPOCH_LENGTH;
    if (!Number.isSafeInteger(this.maxIterations) || this.maxIterations < 1)
      throw new ConfigError(`the run needs at least one iteration, got ${this.maxIterations}`);
  }

  /** Builds a trainer; with `outDir`, prepares the run folder (refusing another run unless `resume`). */
  static async create(config: SSLConfig | string, o: TrainerOptions = {}): Promise<Trainer> {
    const cfg = typeof config === 'string' ? await loadSSLConfig(config) : config;
    const rank = o.group?.rank ?? 0;
    // Rank 0 owns the run folder (config, metrics, progress, the checkpoint manifests); the others write shards only.
    if (rank !== 0) o = { ...o, onProgress: undefined };
    if (o.outDir && rank === 0) await prepareRunDir(o.outDir, { resume: o.resume });
    const t = new Trainer(cfg, o);
    let ck: LoadedCheckpoint | null | undefined;
    try {
      if (o.initBackbone) await t.#initBackbone(o.initBackbone);
      // official SSLMetaArch.init_weights: student ← student.resume_from_teacher_chkpt, gram teacher ← gram.ckpt
      if (cfg.student.resume_from_teacher_chkpt) await initStudentFromTeacherCheckpoint(t.model, cfg.student.resume_from_teacher_chkpt);
      if (hasGramTeacher(cfg) && cfg.gram.ckpt != null) await loadGramTeacherCheckpoint(t.model, cfg.gram.ckpt);
      const sharding = shardingOf(cfg, o);
      // Resuming an unsharded checkpoint sharded (a one-process run continued on several ranks): its full weights go
      // into the model before the wrap, its optimizer moments are sliced into the shards by #resume.
      if (sharding && sharding !== 'NO_SHARD' && o.resume && o.outDir) {
        ck = await loadLatestCheckpoint(o.outDir);
        if (ck && !(ck.json as { sharded?: unknown }).sharded) {
          const need = (k: string) => {
            const m = ck!.tensors[k];
            if (!m) throw new ConfigError(`${ck!.path}: no "${k}" tensors in the checkpoint`);
            return m;
          };
          t.model.student.loadStateDict(need('student'), { strict: true });
          t.model.teacher.loadStateDict(need('teacher'), { strict: true });
        }
      }
      if (sharding) t.#distribute(sharding);
      const loaded = ck;
      ck = undefined; // #resume disposes it
      if (o.resume && o.outDir) await t.#resume(o.outDir, loaded);
      if (o.outDir && rank === 0) {
        await writeResolvedConfig(o.outDir, cfg);
        t.#metricsLog = await MetricsLog.open(join(o.outDir, METRICS_FILE), { resumeFrom: t.iteration - 1 });
      }
      if (o.onProgress) {
        const images = cfg.train.batch_size_per_gpu * (o.group?.worldSize ?? 1);
        t.#progress = new ProgressReporter({ total: t.maxIterations, imagesPerIteration: images, write: o.onProgress, every: o.progressEvery ?? 10 });
      }
    } catch (e) {
      ck?.dispose();
      t.dispose();
      throw e;
    }
    return t;
  }

  // Wraps the student and teacher for data-parallel training and rebuilds the optimizer over this rank's shards.
  #distribute(sharding: TrainerSharding): void {
    const group = this.#o.group ?? this.model.group;
    if (!isCollectiveGroup(group))
      throw new ConfigError('Trainer: data-parallel training needs a CollectiveGroup (initProcessGroup, or LocalProcessGroup for one rank)');
    const groups = ShardedSSL.optimizerGroups(this.model, this.cfg.optim);
    this.sharded = new ShardedSSL(this.model, group, sharding);
    this.optimizer = this.sharded.buildOptimizer(groups, this.cfg.optim);
  }

  /** Per-rank parameter, gradient and optimizer bytes against the unsharded totals (null without a group setup). */
  memoryReport(): ShardMemoryReport | null {
    return this.sharded?.memoryReport(this.optimizer) ?? null;
  }

  get #rank(): number {
    return this.#o.group?.rank ?? 0;
  }

  async #initBackbone(source: string): Promise<void> {
    const { sd } = await readCheckpoint(source);
    const backboneSd = stripTrainingPrefixes(sd);
    loadBackboneStateDict(this.model.student.backbone, backboneSd, { strict: true, source });
    this.model.teacher.backbone.loadStateDict(this.model.student.backbone.stateDict(), { strict: true });
  }

  /** Runs iteration `this.iteration` on `batch` (schedules at that iteration) and advances. */
  step(batch: CollatedBatch, extra: { teacherOutput?: TeacherGlobal } = {}): IterationMetrics {
    const it = this.iteration;
    const g = this.cfg.gram;
    if (gramLoadDue(this.cfg, it)) this.model.gramLoadEmaTeacher();
    if (
      g.use_loss &&
      g.ckpt == null &&
      g.ema_teacher === false &&
      !this.model.gramTeacherInitialized &&
      it > g.it_load_ema_teacher &&
      g.it_load_ema_teacher >= 0
    ) {
      // resumed past the load iteration without a saved gram teacher: reload it from the EMA teacher
      this.model.gramLoadEmaTeacher();
    }
    let m: IterationMetrics;
    try {
      // Batches from a host loader go to the model's device first (pinned, non-blocking: the host does not wait).
      m = withBatchOn(batch, this.#o.device ?? 'cpu', (onDevice) =>
        trainIteration(this.model, this.optimizer, onDevice, {
          iteration: it,
          values: scheduleValues(this.schedules, this.#o.scheduleIndex ? this.#o.scheduleIndex(it) : it),
          clipGrad: this.cfg.optim.clip_grad,
          nonFiniteStreak: this.#nonFiniteStreak,
          maxNonFinite: this.#o.maxNonFinite,
          teacherOutput: extra.teacherOutput,
        }),
      );
    } catch (e) {
      // A failed peer seen by communication the group did not issue itself (the sharded units'): name the rank.
      const g = this.#o.group as { explainFailure?: (e: unknown) => unknown } | undefined;
      throw g?.explainFailure ? g.explainFailure(e) : e;
    }
    this.#nonFiniteStreak = m.stepped ? 0 : this.#nonFiniteStreak + 1;
    // Gram refresh after the iteration (official do_train: (it + 1) >= it_first_update and (it + 1) % frequency == 0).
    if (this.model.gramTeacher && gramRefreshDue(this.cfg, it, this.#numGramUpdates)) {
      this.model.updateGram();
      this.#numGramUpdates++;
      m.gram_teacher_updates = this.#numGramUpdates;
    }
    this.iteration = it + 1;
    const record = metricsRecord(m);
    this.#metricsLog?.append(record);
    this.#progress?.update(it, record);
    this.#o.onMetrics?.(m);
    return m;
  }

  /** Runs until `maxIterations`, the end of the data or an abort; checkpoints every `checkpointing.period`. */
  async fit(): Promise<FitResult> {
    const data = this.#o.data;
    if (!data) throw new ConfigError('Trainer.fit: no data (pass options.data, or call step() with your own batches)');
    const period = this.cfg.checkpointing.period;
    let last: IterationMetrics | undefined;
    const stoppedBy = await runBatches(data, {
      stop: () => this.#stopRequested(),
      more: () => this.iteration < this.maxIterations,
      ...prefetchOn(this.#o.device, () => this.iteration + 1 < this.maxIterations),
      step: (batch) => {
        last = this.step(batch);
      },
      after: async () => {
        if (this.#o.outDir && this.iteration % period === 0 && this.iteration < this.maxIterations) await this.saveCheckpoint();
        const evalPeriod = this.cfg.evaluation.eval_period_iterations;
        if (this.#o.outDir && evalPeriod > 0 && this.iteration % evalPeriod === 0) await this.exportTeacher(this.iteration - 1);
      },
    });
    if (this.#o.outDir) {
      await this.saveCheckpoint();
      if (stoppedBy !== 'abort') {
        await this.exportTeacher();
        this.#metricsLog?.sync();
      }
      if (stoppedBy !== 'abort' && this.#rank === 0) {
        await renderLossCurve(join(this.#o.outDir, METRICS_FILE), join(this.#o.outDir, 'loss_curve.png')).catch((e: unknown) => {
          if (!(e instanceof ConfigError)) throw e; // no metrics yet: no curve
        });
      }
    }
    return { iterations: this.iteration, stoppedBy, lastMetrics: last, checkpoint: this.#lastCheckpoint };
  }

  // Whether to stop before the next iteration. With several ranks they decide together (one rank's signal stops all,
  // at the same iteration, so that their collectives and checkpoints stay in step).
  #stopRequested(): boolean {
    const local = this.#o.signal?.aborted ?? false;
    const g = this.#o.group;
    if (!g || g.worldSize === 1) return local;
    // NCCL reduces CUDA tensors only: the flag lives where this rank trains (Gloo: on the host).
    const nccl = (g as { backend?: string }).backend === 'nccl';
    const flag = full([1], local ? 1 : 0, { dtype: 'float32', device: nccl ? (this.#o.device ?? 'cuda') : 'cpu' });
    try {
      return g.allReduceSum_(flag).item() > 0;
    } finally {
      flag.dispose();
    }
  }

  #state(): TrainState {
    const data = this.#o.data;
    return {
      iteration: this.iteration,
      nonFiniteStreak: this.#nonFiniteStreak,
      numGramUpdates: this.#numGramUpdates,
      gramTeacherInitialized: this.model.gramTeacherInitialized,
      data: data && typeof data.state === 'function' ? data.state() : null,
    };
  }

  /** Writes a checkpoint of the completed iterations (atomic; keeps `checkpointing.max_to_keep`). Returns its path. */
  async saveCheckpoint(): Promise<string> {
    const outDir = this.#o.outDir;
    if (!outDir) throw new ConfigError('Trainer.saveCheckpoint: no outDir');
    if (this.iteration === 0) throw new ConfigError('Trainer.saveCheckpoint: no iteration has run yet');
    if (this.sharded) return this.#saveDistributedCheckpoint(outDir);
    const opt = optimizerToCheckpoint(this.optimizer.stateDict());
    const gens = generatorStates({ model: this.generator });
    try {
      const tensors: Record<string, StateDict> = {
        student: this.model.student.stateDict(),
        teacher: this.model.teacher.stateDict(),
        losses: new Map([...this.model.dinoLoss.stateDict('dino_loss'), ...this.model.ibotPatchLoss.stateDict('ibot_patch_loss')]),
        optimizer: opt.tensors,
        rng: gens,
      };
      if (this.model.gramTeacher) tensors.gram_teacher = this.model.gramTeacher.stateDict();
      const json = { trainer: this.#state(), optimizer: opt.json, config: this.cfg as unknown };
      this.#lastCheckpoint = await saveCheckpoint(
        outDir,
        this.iteration - 1,
        { tensors, json: JSON.parse(JSON.stringify(json)) as unknown },
        {
          keepLast: this.cfg.checkpointing.max_to_keep,
        },
      );
      return this.#lastCheckpoint;
    } finally {
      for (const t of gens.values()) t.dispose();
    }
  }

  // Sharded: every rank writes its shards of each student and teacher submodule (and the AdamW moments) under
  // <outDir>/ckpt_sharded/<iteration>/, then rank 0 writes the checkpoint folder that makes them complete (training
  // state, loss centres, generator, config). NO_SHARD: rank 0 writes the usual checkpoint. A barrier ends both.
  async #saveDistributedCheckpoint(outDir: string): Promise<string> {
    const sh = this.sharded!;
    const it = this.iteration - 1;
    const rel = join(SHARDED_DIR, String(it));
    if (sh.sharded) {
      for (const [k, f] of sh.student) await saveShardedCheckpoint(join(outDir, rel, `student.${k}`), f, { optimizer: this.optimizer });
      for (const [k, f] of sh.teacher) await saveShardedCheckpoint(join(outDir, rel, `teacher.${k}`), f);
    }
    const path = join(checkpointDir(outDir), String(it));
    if (this.#rank === 0) {
      const optimizerJson = sh.sharded ? null : optimizerToCheckpoint(this.optimizer.stateDict());
      const gens = generatorStates({ model: this.generator });
      try {
        const tensors: Record<string, StateDict> = {
          losses: new Map([...this.model.dinoLoss.stateDict('dino_loss'), ...this.model.ibotPatchLoss.stateDict('ibot_patch_loss')]),
          rng: gens,
        };
        if (optimizerJson) {
          tensors.student = this.model.student.stateDict();
          tensors.teacher = this.model.teacher.stateDict();
          tensors.optimizer = optimizerJson.tensors;
        }
        const sharded = sh.sharded ? { dir: rel, worldSize: sh.group.worldSize, strategy: sh.strategy } : null;
        const json = { trainer: this.#state(), optimizer: optimizerJson?.json ?? null, sharded, config: this.cfg as unknown };
        await saveCheckpoint(outDir, it, { tensors, json: JSON.parse(JSON.stringify(json)) as unknown }, { keepLast: this.cfg.checkpointing.max_to_keep });
      } finally {
        for (const t of gens.values()) t.dispose();
      }
      // Shards of checkpoints that were pruned (or never completed) go too.
      const live = new Set((await listCheckpoints(outDir)).map((c) => String(c.iteration)));
      const present = await readdir(join(outDir, SHARDED_DIR)).catch(() => [] as string[]);
      for (const d of present) if (!live.has(d) && d !== String(it)) await rm(join(outDir, SHARDED_DIR, d), { recursive: true, force: true });
    }
    await sh.group.barrier().wait();
    this.#lastCheckpoint = path;
    return path;
  }

  async #resume(outDir: string, loaded?: LoadedCheckpoint | null): Promise<void> {
    const ck = loaded === undefined ? await loadLatestCheckpoint(outDir) : loaded;
    if (!ck) return; // nothing saved yet: a fresh start in this folder
    try {
      const t = ck.tensors;
      const need = (k: string): Map<string, Tensor> => {
        const m = t[k];
        if (!m) throw new ConfigError(`${ck.path}: no "${k}" tensors in the checkpoint`);
        return m;
      };
      const shardedInfo = (ck.json as { sharded?: { dir: string; worldSize: number } | null }).sharded ?? null;
      const sh = this.sharded?.sharded ? this.sharded : null;
      if (shardedInfo && !sh)
        throw new CheckpointError(
          `${ck.path}: a sharded checkpoint (${shardedInfo.worldSize} ranks); resume it with sharding (any world size; Trainer option "sharding" for one process)`,
        );
      const json0 = ck.json as { optimizer: OptimizerJson };
      if (sh && !shardedInfo) {
        // an unsharded checkpoint: the weights were loaded before the wrap (create); the moments are sliced here
        this.#loadFullOptimizerIntoShards(optimizerFromCheckpoint(need('optimizer'), json0.optimizer));
      } else if (sh && shardedInfo) {
        const names = this.optimizer.paramGroups.map((g) => g.names);
        for (const [k, f] of sh.student) await loadShardedCheckpoint(join(outDir, shardedInfo.dir, `student.${k}`), f, { optimizer: this.optimizer });
        for (const [k, f] of sh.teacher) await loadShardedCheckpoint(join(outDir, shardedInfo.dir, `teacher.${k}`), f);
        this.optimizer.paramGroups.forEach((g, i) => (g.names = names[i]!));
      } else {
        this.model.student.loadStateDict(need('student'), { strict: true });
        this.model.teacher.loadStateDict(need('teacher'), { strict: true });
      }
      const json = ck.json as { trainer: TrainState; optimizer: OptimizerJson };
      const s = json.trainer;
      // A saved gram teacher that holds weights replaces the one from gram.ckpt (official load_checkpoint after
      // init_weights); one saved before its first load does not.
      if (this.model.gramTeacher && t.gram_teacher && s.gramTeacherInitialized) {
        this.model.gramTeacher.loadStateDict(t.gram_teacher, { strict: true });
        this.model.gramTeacherInitialized = true;
      }
      const losses = t.losses;
      if (losses) {
        const pick = (p: string) => new Map([...losses].filter(([k]) => k.startsWith(`${p}.`)).map(([k, v]) => [k.slice(p.length + 1), v]));
        this.model.dinoLoss.loadStateDict(pick('dino_loss'));
        this.model.ibotPatchLoss.loadStateDict(pick('ibot_patch_loss'));
      }
      if (!sh) this.optimizer.loadStateDict(optimizerFromCheckpoint(need('optimizer'), json.optimizer));
      restoreGeneratorStates(need('rng'), { model: this.generator });
      this.iteration = s.iteration;
      this.#nonFiniteStreak = s.nonFiniteStreak;
      // official do_train recounts the refreshes from the (possibly new) config rather than saving them
      this.#numGramUpdates = officialGramUpdatesBefore(this.cfg, s.iteration);
      const data = this.#o.data;
      if (s.data != null && data && typeof data.setState === 'function') data.setState(s.data);
      this.#lastCheckpoint = ck.path;
    } finally {
      ck.dispose();
    }
  }

  // The moments of an unsharded AdamW (same parameter groups, full tensors) → this rank's slices of them.
  #loadFullOptimizerIntoShards(full: AdamWStateDict): void {
    const sh = this.sharded!;
    const rank = sh.group.rank;
    // name → where its shard view starts inside the full parameter
    const starts = new Map<string, number>();
    for (const [k, f] of sh.student)
      for (const u of f.flatUnits)
        for (const v of u.shardViews) {
          const seg = u.segments.find((x) => x.name === v.name)!;
          starts.set(`${k}.${v.name}`, rank * u.shardSize + v.shardOffset - seg.offset);
        }
    const sd = this.optimizer.stateDict();
    if (full.paramGroups.length !== sd.paramGroups.length)
      throw new CheckpointError(`the checkpoint's optimizer has ${full.paramGroups.length} parameter groups, this run ${sd.paramGroups.length}`);
    this.optimizer.paramGroups.forEach((g, gi) => {
      const fullNames = (full.paramGroups[gi] as { names?: string[] }).names ?? [];
      (g as unknown as { names: string[] }).names.forEach((n, j) => {
        const i = fullNames.indexOf(n);
        if (i < 0) throw new CheckpointError(`the checkpoint's optimizer has no state for "${n}" in group ${gi}`);
        const view = g.params[j]!;
        const start = starts.get(n)!;
        noGrad(() =>
          scope(() => {
            sd.state[gi]!.expAvg[j]!.copy_(full.state[gi]!.expAvg[i]!.reshape([-1]).narrow(0, start, view.numel));
            sd.state[gi]!.expAvgSq[j]!.copy_(full.state[gi]!.expAvgSq[i]!.reshape([-1]).narrow(0, start, view.numel));
          }),
        );
        sd.paramGroups[gi]!.steps[j] = full.paramGroups[gi]!.steps[i]!;
      });
    });
    sd.step = full.step;
    sd.betas = full.betas;
    sd.eps = full.eps;
    this.optimizer.loadStateDict(sd);
  }

  /** Exports the teacher backbone as `.safetensors` (readable by `loadBackbone`). */
  async exportTeacher(iteration?: number): Promise<string> {
    const outDir = this.#o.outDir;
    if (!outDir) throw new ConfigError('Trainer.exportTeacher: no outDir');
    const opts = iteration === undefined ? {} : { iteration };
    if (!this.sharded) return exportTeacherBackbone(outDir, this.model.teacher.backbone.stateDict(), opts);
    // Data-parallel: rank 0 writes (sharded: after every rank has gathered the full teacher backbone).
    const f = this.sharded.teacher.get('backbone');
    const sd = f ? f.fullStateDict() : this.model.teacher.backbone.stateDict();
    try {
      const path =
        this.#rank === 0
          ? await exportTeacherBackbone(outDir, sd, opts)
          : join(outDir, ...(iteration === undefined ? [] : ['eval', String(iteration)]), 'teacher_checkpoint.safetensors');
      await this.sharded.group.barrier().wait();
      return path;
    } finally {
      if (f) for (const t of sd.values()) t.dispose();
    }
  }

  dispose(): void {
    this.#metricsLog?.close();
    (this.optimizer as typeof this.optimizer | null)?.dispose();
    this.sharded?.dispose();
    this.model.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * runBatches' lookahead for a model on `device`: on CUDA, a DevicePrefetcher (the next batch's copy on a copy stream
 * during the current step) while `moreAfterStep()`; elsewhere none (batches are used where they are, or moved by the
 * step).
 */
export function prefetchOn(device: Device | undefined, moreAfterStep: () => boolean): Pick<Parameters<typeof runBatches>[1], 'prefetch' | 'moreAfterStep'> {
  if (device !== undefined) expectDevice('prefetchOn', 'device', device);
  expectFunction('prefetchOn', 'moreAfterStep', moreAfterStep);
  return device?.startsWith('cuda') ? { prefetch: new DevicePrefetcher(device), moreAfterStep } : {};
}

/**
 * The loop of `fit()`: pulls batches while `more()` holds, the data lasts and `stop()` is false; each batch
 * goes to `step` and is disposed after it, then `after` runs (checkpoints, exports). Returns why it stopped.
 *
 * With `prefetch`, each batch is staged (`DevicePrefetcher.stage`: its copy to the device queued on a copy stream)
 * one step ahead: the next batch is pulled and staged before `step` runs the current one, whenever `moreAfterStep()`
 * says another step will follow, so that its copy overlaps the step's compute.
 */
export async function runBatches(
  data: BatchSource,
  o: {
    stop?: () => boolean;
    more: () => boolean;
    step: (b: CollatedBatch) => void;
    after?: () => Promise<void>;
    prefetch?: Pick<DevicePrefetcher, 'stage' | 'take'>;
    /** Whether a step will follow the one about to run (asked before it runs; default: false, no lookahead). */
    moreAfterStep?: () => boolean;
  },
): Promise<'end' | 'abort' | 'data'> {
  const iterator = Symbol.asyncIterator in data ? data[Symbol.asyncIterator]() : (data as Iterable<CollatedBatch>)[Symbol.iterator]();
  type Pulled = { host: CollatedBatch; staged: StagedBatch | null };
  const release = (p: Pulled) => {
    for (const t of batchTensors(p.host)) t.dispose();
    if (p.staged) for (const t of p.staged.moved) t.dispose();
  };
  // A batch from the data (null at its end), staged when prefetching. A batch that fails to stage is freed.
  const pull = async (): Promise<Pulled | null> => {
    const next = await iterator.next();
    if (next.done) return null;
    const p: Pulled = { host: next.value, staged: null };
    if (!o.prefetch) return p;
    try {
      p.staged = o.prefetch.stage(p.host);
    } catch (e) {
      release(p);
      throw e;
    }
    return p;
  };
  // Pulled one step ahead: a batch, null where the data ended, or the pull's error, thrown where the batch is due.
  let ahead: Promise<Pulled | null> | undefined;
  try {
    while (o.more()) {
      if (o.stop?.()) return 'abort';
      const cur = await (ahead ?? pull());
      ahead = undefined;
      if (!cur) return 'data';
      try {
        if (o.prefetch && o.moreAfterStep?.()) {
          ahead = pull();
          await ahead.catch(() => null); // settled before the step (the copy is queued first); a failure waits its turn
        }
        o.step(cur.staged ? o.prefetch!.take(cur.staged) : cur.host);
      } finally {
        release(cur);
      }
      await o.after?.();
    }
    return 'end';
  } finally {
    const left = await ahead?.catch(() => null);
    if (left) release(left);
    await iterator.return?.();
  }
}

/** One JSONL line: scalar metrics, `<submodule>_grad_norm`, `stepped` as 0/1, and memory. */
function metricsRecord(m: IterationMetrics): MetricsRecord {
  const out: MetricsRecord = { iteration: m.iteration };
  for (const [k, v] of Object.entries(m)) {
    if (typeof v === 'number') out[k] = v;
    else if (typeof v === 'boolean') out[k] = v ? 1 : 0;
  }
  for (const [k, v] of Object.entries(m.grad_norms)) out[`${k}_grad_norm`] = v;
  return { ...out, ...memoryMetrics() };
}

const SHARDED_DIR = 'ckpt_sharded';

/** The data-parallel mode of a run: the option, else the config's with several ranks, else none. */
function shardingOf(cfg: SSLConfig, o: TrainerOptions): TrainerSharding | undefined {
  return o.sharding ?? ((o.group?.worldSize ?? 1) > 1 ? (cfg.compute_precision.sharding_strategy as TrainerSharding) : undefined);
}

/** `Trainer.create` + `fit()` + `dispose()`. */
export async function train(config: SSLConfig | string, o: TrainerOptions = {}): Promise<FitResult> {
  const t = await Trainer.create(config, o);
  try {
    return await t.fit();
  } finally {
    t.dispose();
  }
}
