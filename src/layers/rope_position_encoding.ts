// Axial 2-D rotary position embedding without learnable weights (dinov3/layers/rope_position_encoding.py).
// dinov3/layers/rope_position_encoding.py::RopePositionEmbedding: periods buffer `periods` [d/4] (base^(4j/d), or geometric from min to max period); patch-centre
// coordinates normalised "separate"/"max"/"min" into [−1, 1]; train-mode shift, jitter and rescale augmentations drawn
// on every call (so per block and per crop group); angles 2π·coord/period laid out [row, col, row, col] → sin, cos.
// In a reduced dtype (bf16, the training-code default) every step is an eager op rounded to that dtype, in the order
// of RopePositionEmbedding.forward; this is reproduced here by computing each op in fp32 and rounding its result, which is what PyTorch's CPU
// kernels do for bf16 operands and for Python-scalar operands (kept in fp32 "opmath").
import { Module } from '../nn/module.js';
import { uniform_ } from '../nn/init.js';
import { arange, empty, full, type Generator, linspace } from '../tensor/creation.js';
import { expectObject, expectPositiveInt } from '../tensor/args.js';
import { hostToDevice } from '../tensor/device.js';
import { scope } from '../tensor/scope.js';
import type { Device, DType, Tensor } from '../tensor/tensor.js';
import { stack } from '../ops/shape.js';
import { TorchRangeError } from '../native/errors.js';

export type RopeComputeDtype = 'float32' | 'bfloat16' | 'float16';

export interface RopeOptions {
  numHeads: number;
  /** Period base (100 in every config); null when min/max periods are given. */
  base?: number | null;
  minPeriod?: number | null;
  maxPeriod?: number | null;
  normalizeCoords?: 'min' | 'max' | 'separate';
  shiftCoords?: number | null;
  jitterCoords?: number | null;
  rescaleCoords?: number | null;
  /** Computation dtype (bf16 in the training builder, fp32 in the hub models). */
  dtype?: RopeComputeDtype;
  device?: Device;
  /** Source of the train-mode augmentation draws (default: the global generator). */
  generator?: Generator;
}

/** The RoPE tables for one patch grid: `[H·W, d]` each, in the RoPE dtype. */
export interface RopeTables {
  sin: Tensor;
  cos: Tensor;
}

export class RopePositionEmbedding extends Module {
  readonly periods: Tensor;
  readonly headDim: number;
  readonly dtype: RopeComputeDtype;
  readonly base: number | null;
  readonly minPeriod: number | null;
  readonly maxPeriod: number | null;
  readonly normalizeCoords: 'min' | 'max' | 'separate';
  readonly shiftCoords: number | null;
  readonly jitterCoords: number | null;
  readonly rescaleCoords: number | null;
  generator: Generator | undefined;

  constructor(
    readonly embedDim: number,
    o: RopeOptions,
  ) {
    super();
    expectPositiveInt('RopePositionEmbedding', 'embedDim', embedDim);
    expectObject('RopePositionEmbedding', 'options', o);
    expectPositiveInt('RopePositionEmbedding', 'options.numHeads', o.numHeads);
    if (embedDim % (4 * o.numHeads) !== 0)
      throw new TorchRangeError(`RopePositionEmbedding: embedDim (${embedDim}) must be a multiple of 4·numHeads (${4 * o.numHeads})`, 'ERR_INVALID_ARG');
    this.base = o.base === undefined ? 100 : o.base;
    this.minPeriod = o.minPeriod ?? null;
    this.maxPeriod = o.maxPeriod ?? null;
    const both = this.minPeriod !== null && this.maxPeriod !== null;
    if ((this.base === null && !both) || (this.base !== null && both))
      throw new TorchRangeError('RopePositionEmbedding: either `base` or `minPeriod`+`maxPeriod` must be provided', 'ERR_INVALID_ARG');
    this.headDim = embedDim / o.numHeads;
    this.dtype = o.dtype ?? 'bfloat16';
    this.normalizeCoords = o.normalizeCoords ?? 'separate';
    this.shiftCoords = o.shiftCoords ?? null;
    this.jitterCoords = o.jitterCoords ?? null;
    this.rescaleCoords = o.rescaleCoords ?? null;
    this.generator = o.generator;
    // Persistent: the teacher is initialised from the student's state dict, periods included.
    this.periods = this.registerBuffer('periods', empty([this.headDim / 4], { dtype: this.dtype, device: o.device }));
    this.resetParameters();
  }

  /** Rounds an fp32 tensor to the RoPE dtype (kept as fp32); a no-op in fp32. */
  #round(t: Tensor): Tensor {
    return this.dtype === 'float32' ? t : t.to(this.dtype).to('float32');
  }

  /** n uniform draws in [low, high) on the periods' device (drawn on the CPU, where the Generator lives; moved without a host wait). */
  #draw(n: number, low: number, high: number): Tensor {
    const u = uniform_(empty([n], { dtype: 'float32' }), low, high, this.generator);
    return this.periods.device === 'cpu' ? u : hostToDevice(u, this.periods.device);
  }

  /** Recomputes the periods from the formula, op by op in the RoPE dtype (official `_init_weights`). */
  resetParameters(): void {
    if (this.periods.device === 'meta') return;
    const n = this.headDim / 4;
    const r = (t: Tensor) => this.#round(t);
    const values = scope(() => {
      if (this.base !== null) {
        // base ** (2 · arange(d/4) / (d/2))
        const exponents = r(r(arange(0, n, 1, { dtype: 'float32' }).mul(2)).div(this.headDim / 2));
        return r(full([n], this.base).pow(exponents));
      }
      const base = this.maxPeriod! / this.minPeriod!;
      const exponents = r(linspace(0, 1, n, { dtype: 'float32' }));
      return r(r(r(full([n], base).pow(exponents)).div(base)).mul(this.maxPeriod!));
    });
    this.periods.copy_(values);
    values.dispose();
  }

  /**
   * sin/cos tables for an `H × W` patch grid (row-major tokens). In train mode the configured augmentations are
   * drawn anew on every call.
   */
  forward({ H, W }: { H: number; W: number }): RopeTables {
    const device = this.periods.device;
    if (device === 'meta') {
      const o = { dtype: this.dtype as DType, device } as const;
      return { sin: empty([H * W, this.headDim], o), cos: empty([H * W, this.headDim], o) };
    }
    const r = (t: Tensor) => this.#round(t);
    return scope(() => {
      const f32 = { dtype: 'float32' as const, device };
      const [dh, dw] =
        this.normalizeCoords === 'max' ? [Math.max(H, W), Math.max(H, W)] : this.normalizeCoords === 'min' ? [Math.min(H, W), Math.min(H, W)] : [H, W];
      const ch = r(r(arange(0.5, H, 1, f32)).div(dh)); // [H]
      const cw = r(r(arange(0.5, W, 1, f32)).div(dw)); // [W]
      let coords = stack([ch.unsqueeze(1).expand([H, W]), cw.unsqueeze(0).expand([H, W])], -1).flatten(0, 1); // [HW, 2]
      coords = r(r(coords.mul(2)).sub(1)); // [0, 1] → [−1, 1]
      if (this.training && this.shiftCoords !== null) {
        const shift = r(this.#draw(2, -this.shiftCoords, this.shiftCoords));
        coords = r(coords.add(shift));
      }
      if (this.training && this.jitterCoords !== null) {
        const j = Math.log(this.jitterCoords);
        const jitter = r(r(this.#draw(2, -j, j)).exp());
        coords = r(coords.mul(jitter));
      }
      if (this.training && this.rescaleCoords !== null) {
        const s = Math.log(this.rescaleCoords);
        const rescale = r(r(this.#draw(1, -s, s)).exp());
        coords = r(coords.mul(rescale));
      }
      const periods = this.periods.to(f32); // [d/4]
      const angles = r(r(coords.unsqueeze(-1).mul(2 * Math.PI)).div(periods))
        .flatten(-2, -1)
        .repeat([1, 2]); // [HW, d]
      return { sin: r(angles.sin()).to(this.dtype), cos: r(angles.cos()).to(this.dtype) };
    });
  }
}

/** Periods of the base parametrisation as plain numbers (for inspection and tests). */
export function ropePeriods(headDim: number, base: number, dtype: RopeComputeDtype = 'float32'): number[] {
  return scope(() => {
    const rope = new RopePositionEmbedding(headDim, { numHeads: 1, base, dtype });
    const v = Array.from(rope.periods.toFloat32Array());
    rope.dispose();
    return v;
  });
}
