// AdamW over parameter groups (dinov3/train/train.py::build_optimizer): torch.optim.AdamW's foreach algorithm, one
// native call per group per step (native/src/optim/optim.cc). lr and weight decay are plain fields of each group,
// rewritten every iteration by the schedules (dinov3/train/train.py::apply_optim_scheduler); the fp32 moments and the
// per-parameter step counts are owned by the optimizer. A group with lr = 0 still updates its moments and steps (the
// last-layer freeze of dinov3/train/train.py::build_schedulers).
import { readSafetensorsFile, writeSafetensorsFile } from '../io/safetensors.js';
import type { RawTensor } from '../io/raw_tensor.js';
import { native } from '../native/binding.js';
import { CheckpointError, DisposedError, StateDictError, type StateDictReport, TorchRangeError, TorchTypeError } from '../native/errors.js';
import { fromBuffer, zeros } from '../tensor/creation.js';
import { noGrad } from '../tensor/grad_mode.js';
import { assertLive, describe as describeValue, handleOf, Tensor } from '../tensor/tensor.js';
import { previewList } from '../util/suggest.js';

/** One parameter group: params, lr, weightDecay and any metadata (lrMult, wdMult, isLastLayer, name, …). `lr` and
 * `weightDecay` may be reassigned before any step. */
export interface ParamGroup {
  readonly params: readonly Tensor[];
  lr: number;
  weightDecay: number;
  [meta: string]: unknown;
}

/** A parameter group as given to the constructor (lr / weightDecay default to the optimizer's). */
export interface ParamGroupInit {
  params: readonly Tensor[];
  lr?: number;
  weightDecay?: number;
  [meta: string]: unknown;
}

export interface AdamWOptions {
  /** Default lr of groups that do not set one (PyTorch default 1e-3). */
  lr?: number;
  /** Default decoupled weight decay (PyTorch default 1e-2). */
  weightDecay?: number;
  /** (β1, β2), default (0.9, 0.999); the 7B configs use (0.9, 0.99). */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Use the fused CUDA kernel (libtorch ≥ 2.1, fp32 CUDA tensors); otherwise the foreach path. Default false, as
   * PyTorch (and the official code) default to foreach. */
  fused?: boolean;
}

/** Hyperparameters and metadata of one group in a state dict (the params themselves are not part of it). */
export interface ParamGroupState {
  lr: number;
  weightDecay: number;
  /** Per-parameter step counts (PyTorch's state[p]["step"]): parameters without a gradient are not stepped. */
  steps: number[];
  [meta: string]: unknown;
}

/** The optimizer's state. Tensors are the optimizer's own (not copies): do not dispose them. */
export interface AdamWStateDict {
  /** Number of `step()` calls. */
  step: number;
  betas: [number, number];
  eps: number;
  paramGroups: ParamGroupState[];
  /** Per group, per parameter: the first and second moment estimates (float32). */
  state: { expAvg: Tensor[]; expAvgSq: Tensor[] }[];
}

interface GroupState {
  expAvg: Tensor[];
  expAvgSq: Tensor[];
  steps: Float64Array;
}

const FILE_FORMAT = 'dinov3-ts/adamw';
const FLOATING = new Set(['float32', 'float64', 'bfloat16', 'float16']);

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;
const describe = (v: unknown): string => (v === undefined ? 'undefined' : describeValue(v));

function rangeError(msg: string): TorchRangeError {
  return new TorchRangeError(msg, 'ERR_INVALID_ARG');
}
function typeError(msg: string): TorchTypeError {
  return new TorchTypeError(msg, 'ERR_INVALID_ARG');
}

/** Checks a hyperparameter: a number in [min, max) (or [min, max] when `inclusive`). */
function checkNumber(op: string, name: string, v: unknown, min: number, max = Infinity, inclusive = false): number {
  if (typeof v !== 'number') throw typeError(`${op}: expected "${name}" to be a number, received ${describe(v)}`);
  const ok = Number.isFinite(v) && v >= min && (inclusive ? v <= max : v < max);
  if (!ok) {
    const range = max === Infinity ? `>= ${min}` : `in [${min}, ${max}${inclusive ? ']' : ')'}`;
    throw rangeError(`${op}: "${name}" must be a finite number ${range}, received ${v}`);
  }
  return v;
}

/**
 * AdamW with decoupled weight decay over parameter groups, matching `torch.optim.AdamW(foreach=True)`.
 *
 * @example
 * const opt = new AdamW([{ params: decayed, lrMult: 1 }, { params: biases, weightDecay: 0 }], { betas: [0.9, 0.999] });
 * for (const g of opt.paramGroups) g.lr = lrSchedule[it] * (g.lrMult as number);
 * loss.backward();
 * opt.step();
 * opt.zeroGrad();
 * @throws TorchTypeError / TorchRangeError (code ERR_INVALID_ARG) on invalid parameters or hyperparameters.
 */
export class AdamW {
  readonly paramGroups: ParamGroup[];
  betas: [number, number];
  eps: number;
  readonly fused: boolean;
  #state: GroupState[];
  #stepCount = 0;
  #disposed = false;

  constructor(params: readonly Tensor[] | readonly ParamGroupInit[], opts: AdamWOptions = {}) {
    const op = 'AdamW';
    if (typeof opts !== 'object' || opts === null) throw typeError(`${op}: expected "options" to be an object, received ${describeValue(opts)}`);
    const lr = checkNumber(op, 'lr', opts.lr ?? 1e-3, 0);
    const weightDecay = checkNumber(op, 'weightDecay', opts.weightDecay ?? 1e-2, 0);
    this.eps = checkNumber(op, 'eps', opts.eps ?? 1e-8, 0);
    const betas = opts.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2) throw typeError(`${op}: expected "betas" to be [beta1, beta2], received ${describe(betas)}`);
    this.betas = [checkNumber(op, 'betas[0]', betas[0], 0, 1), checkNumber(op, 'betas[1]', betas[1], 0, 1)];
    this.fused = opts.fused ?? false;

    if (!Array.isArray(params)) throw typeError(`${op}: expected "params" to be an array of Tensors or of parameter groups, received ${describe(params)}`);
    if (params.length === 0) throw rangeError(`${op}: got an empty parameter list`);
    const inits: ParamGroupInit[] = params.every((p) => p instanceof Tensor) ? [{ params: params as Tensor[] }] : (params as ParamGroupInit[]);

    const seen = new Map<Tensor, string>();
    this.paramGroups = inits.map((init, g) => {
      if (init === null || typeof init !== 'object' || !Array.isArray(init.params))
        throw typeError(`${op}: expected "params[${g}]" to be a Tensor or a parameter group { params: Tensor[] }, received ${describe(init)}`);
      init.params.forEach((t, i) => {
        const where = `paramGroups[${g}].params[${i}]`;
        if (!(t instanceof Tensor)) throw typeError(`${op}: expected "${where}" to be a Tensor, received ${describe(t)}`);
        assertLive(t, op, where);
        if (!FLOATING.has(t.dtype)) throw typeError(`${op}: expected "${where}" to be a floating-point Tensor, received ${describe(t)}`);
        if (!t.isLeaf) throw rangeError(`${op}: "${where}" is not a leaf Tensor (optimize parameters, not results of ops)`);
        const prev = seen.get(t);
        if (prev) throw rangeError(`${op}: "${where}" is the same Tensor as "${prev}"; a parameter may appear only once`);
        seen.set(t, where);
      });
      const group: ParamGroup = { ...init, params: Object.freeze([...init.params]), lr: init.lr ?? lr, weightDecay: init.weightDecay ?? weightDecay };
      checkNumber(op, `paramGroups[${g}].lr`, group.lr, 0);
      checkNumber(op, `paramGroups[${g}].weightDecay`, group.weightDecay, 0);
      return group;
    });

    // fp32 moments on each parameter's device, zero-initialised (equivalent to PyTorch's lazy init: a parameter
    // that never had a gradient keeps step 0 and zero moments).
    this.#state = this.paramGroups.map((g) => ({
      expAvg: g.params.map((p) => zeros(p.shape, { dtype: 'float32', device: p.device }).keep()),
      expAvgSq: g.params.map((p) => zeros(p.shape, { dtype: 'float32', device: p.device }).keep()),
      steps: new Float64Array(g.params.length),
    }));
  }

  /** Number of `step()` calls so far (restored by `loadStateDict`). */
  get stepCount(): number {
    return this.#stepCount;
  }
  get isDisposed(): boolean {
    return this.#disposed;
  }

  #live(op: string): void {
    if (this.#disposed) throw new DisposedError(`AdamW.${op}: the optimizer was disposed`);
  }

  /**
   * One AdamW step for every group with its current `lr` and `weightDecay`: param ← param·(1 − lr·wd), then the
   * bias-corrected Adam update. Parameters without a gradient are skipped (no moment update, no step).
   * @throws TorchRangeError if a group's lr or weightDecay is not a finite number >= 0.
   */
  step(): void {
    this.#live('step');
    const [b1, b2] = this.betas;
    this.paramGroups.forEach((g, gi) => {
      checkNumber('AdamW.step', `paramGroups[${gi}].lr`, g.lr, 0);
      checkNumber('AdamW.step', `paramGroups[${gi}].weightDecay`, g.weightDecay, 0);
    });
    this.paramGroups.forEach((g, gi) => {
      const s = this.#state[gi]!;
      try {
        native.adamwStep(
          g.params.map((p, i) => handleOf(p, 'AdamW.step', `paramGroups[${gi}].params[${i}]`)),
          s.expAvg.map((t) => handleOf(t, 'AdamW.step', 'expAvg')),
          s.expAvgSq.map((t) => handleOf(t, 'AdamW.step', 'expAvgSq')),
          g.lr,
          g.weightDecay,
          b1,
          b2,
          this.eps,
          s.steps,
          this.fused,
        );
      } catch (e) {
        // Name the public call and the group (the class and code of the native error are kept).
        if (e instanceof Error) e.message = e.message.replace(/^adamwStep: /, `AdamW.step: paramGroups[${gi}]: `);
        throw e;
      }
    });
    this.#stepCount += 1;
  }

  /** Drops the gradients of every parameter (set to none, as PyTorch's default). */
  zeroGrad(): void {
    this.#live('zeroGrad');
    native.zeroGrad(this.paramGroups.flatMap((g, gi) => g.params.map((p, i) => handleOf(p, 'AdamW.zeroGrad', `paramGroups[${gi}].params[${i}]`))));
  }

  /** The state: step count, hyperparameters and metadata of each group, and the moments (the optimizer's own tensors). */
  stateDict(): AdamWStateDict {
    this.#live('stateDict');
    return {
      step: this.#stepCount,
      betas: [...this.betas],
      eps: this.eps,
      paramGroups: this.paramGroups.map((g, gi) => {
        const { params: _params, ...hyper } = g;
        return { ...hyper, steps: Array.from(this.#state[gi]!.steps) };
      }),
      state: this.#state.map((s) => ({ expAvg: [...s.expAvg], expAvgSq: [...s.expAvgSq] })),
    };
  }

  /**
   * Restores a state dict (copying the moments into this optimizer's tensors): step counts, betas, eps, and each
   * group's lr, weightDecay and metadata. The groups must have the same number of parameters with the same shapes.
   * Nothing is changed if anything does not match.
   * @throws StateDictError when the number of groups, parameters or shapes differ (with a key report).
   * @throws TorchTypeError when `sd` is not an AdamW state dict.
   */
  loadStateDict(sd: AdamWStateDict): void {
    this.#live('loadStateDict');
    const op = 'AdamW.loadStateDict';
    checkStateDictShape(op, sd);
    if (sd.paramGroups.length !== this.paramGroups.length || sd.state.length !== this.paramGroups.length)
      throw new StateDictError(`${op}: the state dict has ${sd.paramGroups.length} parameter groups, the optimizer has ${this.paramGroups.length}`, {
        missing: [],
        unexpected: [],
        mismatched: [],
      });
    const report: StateDictReport = { missing: [], unexpected: [], mismatched: [] };
    this.paramGroups.forEach((g, gi) => {
      const s = sd.state[gi]!;
      const steps = sd.paramGroups[gi]!.steps;
      for (const [name, list] of [
        ['exp_avg', s.expAvg],
        ['exp_avg_sq', s.expAvgSq],
      ] as const) {
        const n = Math.max(list.length, g.params.length);
        for (let i = 0; i < n; i++) {
          const key = `state.${gi}.${i}.${name}`;
          const p = g.params[i];
          const t = list[i];
          if (!p) report.unexpected.push(key);
          else if (!t) report.missing.push(key);
          else if (t.shape.length !== p.shape.length || t.shape.some((v, k) => v !== p.shape[k]))
            report.mismatched.push({ key, expected: p.shape, received: t.shape });
        }
      }
      if (steps.length !== g.params.length) report.mismatched.push({ key: `param_groups.${gi}.steps`, expected: [g.params.length], received: [steps.length] });
    });
    if (report.missing.length + report.unexpected.length + report.mismatched.length > 0) throw new StateDictError(formatReport(op, report), report);

    noGrad(() => {
      this.#state.forEach((own, gi) => {
        const s = sd.state[gi]!;
        own.expAvg.forEach((t, i) => t.copy_(s.expAvg[i]!));
        own.expAvgSq.forEach((t, i) => t.copy_(s.expAvgSq[i]!));
        own.steps.set(sd.paramGroups[gi]!.steps);
      });
    });
    this.paramGroups.forEach((g, gi) => {
      const { steps: _steps, ...hyper } = sd.paramGroups[gi]!;
      Object.assign(g, hyper, { params: g.params });
    });
    this.betas = [...sd.betas];
    this.eps = sd.eps;
    this.#stepCount = sd.step;
  }

  /**
   * Saves the state to a .safetensors file, atomically (a temporary file, fsync, rename). The tensors are
   * snapshotted synchronously when called, so stepping while the write is in flight does not affect the file.
   */
  async save(path: string): Promise<void> {
    const sd = this.stateDict();
    const tensors = new Map<string, RawTensor>();
    const groups = sd.paramGroups.map((g, gi) => {
      const { steps, ...hyper } = g;
      for (const [k, v] of Object.entries(hyper))
        if (v !== null && !['string', 'number', 'boolean'].includes(typeof v))
          throw typeError(`AdamW.save: paramGroups[${gi}].${k} must be a string, number, boolean or null to be saved, received ${describe(v)}`);
      tensors.set(`param_groups.${gi}.steps`, { dtype: 'float64', shape: [steps.length], data: new Uint8Array(Float64Array.from(steps).buffer) });
      sd.state[gi]!.expAvg.forEach((t, i) => tensors.set(`state.${gi}.${i}.exp_avg`, snapshot(t)));
      sd.state[gi]!.expAvgSq.forEach((t, i) => tensors.set(`state.${gi}.${i}.exp_avg_sq`, snapshot(t)));
      return { ...hyper, numParams: steps.length };
    });
    const metadata = {
      format: FILE_FORMAT,
      version: '1',
      step: String(sd.step),
      betas: JSON.stringify(sd.betas),
      eps: String(sd.eps),
      param_groups: JSON.stringify(groups),
    };
    await writeSafetensorsFile(path, tensors, metadata);
  }

  /**
   * Loads a state saved by `save()` (see `loadStateDict` for what is restored and checked).
   * @throws CheckpointError if the file is not a readable AdamW state file; StateDictError if it does not match.
   */
  async load(path: string): Promise<void> {
    this.#live('load');
    const { tensors, metadata } = await readSafetensorsFile(path);
    const bad = (msg: string): never => {
      throw new CheckpointError(`${path}: ${msg}`);
    };
    if (metadata.format !== FILE_FORMAT)
      bad(`not an AdamW state file (metadata "format" is ${metadata.format === undefined ? 'missing' : `"${metadata.format}"`}, expected "${FILE_FORMAT}")`);
    if (metadata.version !== '1') bad(`unsupported AdamW state file version ${JSON.stringify(metadata.version)}`);
    let groups: unknown;
    let betas: unknown;
    try {
      groups = JSON.parse(metadata.param_groups ?? '');
      betas = JSON.parse(metadata.betas ?? '');
    } catch {
      bad('metadata "param_groups" or "betas" is not valid JSON');
    }
    if (!Array.isArray(groups) || !groups.every((g) => g !== null && typeof g === 'object' && Number.isSafeInteger(g.numParams) && g.numParams >= 0))
      bad('metadata "param_groups" must be an array of objects with "numParams"');
    const step = Number(metadata.step);
    const eps = Number(metadata.eps);
    if (!Number.isSafeInteger(step) || step < 0 || !Number.isFinite(eps) || !Array.isArray(betas) || betas.length !== 2)
      bad('metadata "step", "eps" or "betas" is invalid');

    const created: Tensor[] = [];
    const take = (key: string): Tensor => {
      const raw = tensors.get(key);
      if (!raw) return bad(`missing tensor "${key}"`);
      const t = fromBuffer(raw.data, raw.dtype, raw.shape).keep();
      created.push(t);
      return t;
    };
    try {
      const sd: AdamWStateDict = { step, eps, betas: betas as [number, number], paramGroups: [], state: [] };
      (groups as { numParams: number }[]).forEach(({ numParams, ...hyper }, gi) => {
        const stepsRaw = tensors.get(`param_groups.${gi}.steps`);
        if (!stepsRaw || stepsRaw.dtype !== 'float64' || stepsRaw.shape.length !== 1 || stepsRaw.shape[0] !== numParams)
          bad(`tensor "param_groups.${gi}.steps" is missing or not a float64 [${numParams}]`);
        const steps = Array.from(new Float64Array(stepsRaw!.data.slice().buffer));
        sd.paramGroups.push({ ...(hyper as { lr: number; weightDecay: number }), steps });
        const expAvg: Tensor[] = [];
        const expAvgSq: Tensor[] = [];
        for (let i = 0; i < numParams; i++) {
          expAvg.push(take(`state.${gi}.${i}.exp_avg`));
          expAvgSq.push(take(`state.${gi}.${i}.exp_avg_sq`));
        }
        sd.state.push({ expAvg, expAvgSq });
      });
      this.loadStateDict(sd);
    } finally {
      for (const t of created) t.dispose();
    }
  }

  /** Frees the optimizer state (not the parameters). Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const s of this.#state) for (const t of [...s.expAvg, ...s.expAvgSq]) t.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A copy of the tensor's bytes (on the host), as a RawTensor. */
function snapshot(t: Tensor): RawTensor {
  const d = t.data();
  return { dtype: t.dtype, shape: t.shape, data: new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice() };
}

function checkStateDictShape(op: string, sd: unknown): asserts sd is AdamWStateDict {
  const fail = (what: string, v: unknown): never => {
    throw typeError(`${op}: expected ${what}, received ${describe(v)}`);
  };
  if (sd === null || typeof sd !== 'object') fail('an AdamW state dict { step, betas, eps, paramGroups, state }', sd);
  const o = sd as Record<string, unknown>;
  if (typeof o.step !== 'number' || !Number.isSafeInteger(o.step) || o.step < 0) fail('"step" to be a non-negative integer', o.step);
  if (!Array.isArray(o.betas) || o.betas.length !== 2) fail('"betas" to be [beta1, beta2]', o.betas);
  checkNumber(op, 'betas[0]', (o.betas as unknown[])[0], 0, 1);
  checkNumber(op, 'betas[1]', (o.betas as unknown[])[1], 0, 1);
  checkNumber(op, 'eps', o.eps, 0);
  if (!Array.isArray(o.paramGroups)) fail('"paramGroups" to be an array', o.paramGroups);
  if (!Array.isArray(o.state)) fail('"state" to be an array', o.state);
  (o.paramGroups as unknown[]).forEach((g, gi) => {
    if (g === null || typeof g !== 'object') fail(`"paramGroups[${gi}]" to be an object`, g);
    const pg = g as Record<string, unknown>;
    checkNumber(op, `paramGroups[${gi}].lr`, pg.lr, 0);
    checkNumber(op, `paramGroups[${gi}].weightDecay`, pg.weightDecay, 0);
    if (!Array.isArray(pg.steps) || !pg.steps.every((s) => Number.isSafeInteger(s) && s >= 0))
      fail(`"paramGroups[${gi}].steps" to be an array of non-negative integers`, pg.steps);
  });
  (o.state as unknown[]).forEach((s, gi) => {
    if (s === null || typeof s !== 'object') fail(`"state[${gi}]" to be { expAvg, expAvgSq }`, s);
    for (const k of ['expAvg', 'expAvgSq'] as const) {
      const list = (s as Record<string, unknown>)[k];
      if (!Array.isArray(list)) fail(`"state[${gi}].${k}" to be an array of Tensors`, list);
      (list as unknown[]).forEach((t, i) => {
        if (!(t instanceof Tensor)) fail(`"state[${gi}].${k}[${i}]" to be a Tensor`, t);
        if ((t as Tensor).isDisposed) throw new DisposedError(`${op}: "state[${gi}].${k}[${i}]" is a disposed Tensor`);
      });
    }
  });
}

function formatReport(op: string, r: StateDictReport): string {
  const lines = [`${op}: the optimizer state does not match the parameters`];
  if (r.missing.length) lines.push(`missing (${r.missing.length}): ${previewList(r.missing)}`);
  if (r.unexpected.length) lines.push(`unexpected (${r.unexpected.length}): ${previewList(r.unexpected)}`);
  if (r.mismatched.length)
    lines.push(
      `shape mismatches (${r.mismatched.length}): ${previewList(r.mismatched, (m) => `${m.key}: expected ${fmt(m.expected)}, received ${fmt(m.received)}`, '; ')}`,
    );
  return lines.join('\n');
}
