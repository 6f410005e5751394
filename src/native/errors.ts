// Error classes of dinov3-ts. They are handed to the native addon once at load time (see binding.ts), so errors
// raised in C++ are instances of these classes and carry a stable `code`. Every error the library throws is an
// instance of `Dinov3Error` (the two that also extend the built-in RangeError/TypeError are recognised by a brand).

/** Stable error codes. Tests and users may switch on them. */
export type ErrorCode =
  | 'ERR_TORCH'
  | 'ERR_TORCH_OOM'
  | 'ERR_TORCH_INDEX'
  | 'ERR_TORCH_TYPE'
  | 'ERR_TORCH_VALUE'
  | 'ERR_TORCH_NOT_IMPLEMENTED'
  | 'ERR_NATIVE'
  | 'ERR_INVALID_ARG'
  | 'ERR_IO'
  | 'ERR_DISPOSED'
  | 'ERR_CHECKPOINT'
  | 'ERR_STATE_DICT'
  | 'ERR_IMAGE'
  | 'ERR_CONFIG'
  | 'ERR_NAN_LOSS'
  | 'ERR_LOAD'
  | 'ERR_DATASET'
  | 'ERR_WORKER'
  | 'ERR_DIST_BACKEND'
  | 'ERR_DIST_STORE'
  | 'ERR_DIST_NETWORK'
  | 'ERR_DIST_TIMEOUT'
  | 'ERR_DIST_PEER'
  | 'ERR_DIST_LAUNCH';

const BRAND: unique symbol = Symbol.for('dinov3-ts.error');

/**
 * The base of every error dinov3-ts throws: `err instanceof Dinov3Error` holds for all of them, and `code` is stable.
 * `TorchRangeError` and `TorchTypeError` extend the built-in RangeError/TypeError (so `instanceof RangeError` keeps
 * working) and are still `instanceof Dinov3Error` through a brand checked by `Symbol.hasInstance`.
 */
export class Dinov3Error extends Error {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Dinov3Error';
    this.code = code;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // Subclasses inherit this static: for them, use the ordinary prototype-chain check.
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class `instanceof` was called on, not Dinov3Error
    if (this !== Dinov3Error) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true;
  }
}
Object.defineProperty(Dinov3Error.prototype, BRAND, { value: true });

/** Any error raised by libtorch that has no more specific class. */
export class TorchError extends Dinov3Error {
  constructor(message: string, code: ErrorCode = 'ERR_TORCH') {
    super(message, code);
    this.name = 'TorchError';
  }
}

/** An index or size out of range (libtorch IndexError), or an argument out of its range (code ERR_INVALID_ARG). */
export class TorchRangeError extends RangeError {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'ERR_TORCH_INDEX') {
    super(message);
    this.name = 'TorchRangeError';
    this.code = code;
  }
}
Object.defineProperty(TorchRangeError.prototype, BRAND, { value: true });

/** A wrong argument kind or dtype: raised both by our argument checks and by libtorch TypeError. */
export class TorchTypeError extends TypeError {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'ERR_TORCH_TYPE') {
    super(message);
    this.name = 'TorchTypeError';
    this.code = code;
  }
}
Object.defineProperty(TorchTypeError.prototype, BRAND, { value: true });

/** Use of a tensor (or module, optimizer) after `dispose()`. */
export class DisposedError extends Dinov3Error {
  constructor(message: string) {
    super(message, 'ERR_DISPOSED');
    this.name = 'DisposedError';
  }
}

/** A corrupt, truncated or unsupported checkpoint file (.pth, .safetensors, HF folder). */
export class CheckpointError extends Dinov3Error {
  constructor(message: string) {
    super(message, 'ERR_CHECKPOINT');
    this.name = 'CheckpointError';
  }
}

/** Report of a state dict that does not match a module. */
export interface StateDictReport {
  missing: string[];
  unexpected: string[];
  mismatched: { key: string; expected: number[]; received: number[] }[];
}

/**
 * Raised by strict `loadStateDict` when keys are missing, unexpected or of the wrong shape. The message lists the first
 * keys of each kind and their count; `missing`, `unexpected` and `mismatched` hold the full lists.
 */
export class StateDictError extends Dinov3Error {
  readonly report: StateDictReport;
  /** Every missing key (the message shows the first few and a count). */
  readonly missing: readonly string[];
  /** Every unexpected key. */
  readonly unexpected: readonly string[];
  /** Every key whose shape differs. */
  readonly mismatched: StateDictReport['mismatched'];
  constructor(message: string, report: StateDictReport) {
    super(message, 'ERR_STATE_DICT');
    this.name = 'StateDictError';
    this.report = report;
    this.missing = report.missing;
    this.unexpected = report.unexpected;
    this.mismatched = report.mismatched;
  }
}

/** An unreadable or corrupt image. `path` names the file when known. */
export class ImageError extends Dinov3Error {
  readonly path: string | undefined;
  constructor(message: string, path?: string) {
    super(message, 'ERR_IMAGE');
    this.name = 'ImageError';
    this.path = path;
  }
}

/** An invalid configuration (unknown key, wrong type, violated invariant). */
export class ConfigError extends Dinov3Error {
  constructor(message: string) {
    super(message, 'ERR_CONFIG');
    this.name = 'ConfigError';
  }
}

/** A dataset that cannot serve its purpose: empty, unlabeled where labels are needed, mismatched classes. */
export class DatasetError extends Dinov3Error {
  constructor(message: string) {
    super(message, 'ERR_DATASET');
    this.name = 'DatasetError';
  }
}

/** A data-loader worker thread that died (terminated, crashed, or threw outside a sample). */
export class WorkerError extends Dinov3Error {
  /** The worker's index in the pool. */
  readonly worker: number;
  constructor(message: string, worker: number) {
    super(message, 'ERR_WORKER');
    this.name = 'WorkerError';
    this.worker = worker;
  }
}

/** A non-finite loss. */
export class NanLossError extends Dinov3Error {
  constructor(message: string) {
    super(message, 'ERR_NAN_LOSS');
    this.name = 'NanLossError';
  }
}

/**
 * A distributed run failed: rendezvous (ERR_DIST_STORE), a backend that is missing or was destroyed
 * (ERR_DIST_BACKEND), a collective that failed (ERR_DIST_NETWORK) or timed out (ERR_DIST_TIMEOUT), a peer rank
 * that exited or stopped responding (ERR_DIST_PEER), or a launch that was interrupted or could not start a worker
 * (ERR_DIST_LAUNCH). `failedRanks` names the ranks found dead, when known.
 */
export class DistributedError extends Dinov3Error {
  readonly failedRanks: readonly number[];
  constructor(message: string, code: ErrorCode = 'ERR_DIST_NETWORK', failedRanks: readonly number[] = [], options?: { cause?: unknown }) {
    super(message, code, options);
    this.name = 'DistributedError';
    this.failedRanks = failedRanks;
  }
}

/** The native addon could not be loaded. The message explains what was found and how to fix it. */
export class LoadError extends Dinov3Error {
  constructor(message: string) {
    super(message, 'ERR_LOAD');
    this.name = 'LoadError';
  }
}

/** The set handed to the addon at init: native code constructs these. */
export const NATIVE_ERROR_CLASSES = {
  TorchError,
  TorchRangeError,
  TorchTypeError,
  DisposedError,
} as const;
