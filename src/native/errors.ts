// Error classes of dinov3-ts. They are handed to the native addon once at load time (see binding.ts), so errors
// raised in C++ are instances of these classes and carry a stable `code`.

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

/** Any error raised by libtorch that has no more specific class. */
export class TorchError extends Error {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'ERR_TORCH') {
    super(message);
    this.name = 'TorchError';
    this.code = code;
  }
}

/** An index or size out of range (libtorch IndexError). */
export class TorchRangeError extends RangeError {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'ERR_TORCH_INDEX') {
    super(message);
    this.name = 'TorchRangeError';
    this.code = code;
  }
}

/** A wrong argument kind or dtype: raised both by our argument checks and by libtorch TypeError. */
export class TorchTypeError extends TypeError {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'ERR_TORCH_TYPE') {
    super(message);
    this.name = 'TorchTypeError';
    this.code = code;
  }
}

/** Use of a tensor (or module, optimizer) after `dispose()`. */
export class DisposedError extends Error {
  readonly code: ErrorCode = 'ERR_DISPOSED';
  constructor(message: string) {
    super(message);
    this.name = 'DisposedError';
  }
}

/** A corrupt, truncated or unsupported checkpoint file (.pth, .safetensors, HF folder). */
export class CheckpointError extends Error {
  readonly code: ErrorCode = 'ERR_CHECKPOINT';
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

/** Report of a state dict that does not match a module. */
export interface StateDictReport {
  missing: string[];
  unexpected: string[];
  mismatched: { key: string; expected: number[]; received: number[] }[];
}

/** Raised by strict `loadStateDict` when keys are missing, unexpected or of the wrong shape. */
export class StateDictError extends Error {
  readonly code: ErrorCode = 'ERR_STATE_DICT';
  readonly report: StateDictReport;
  constructor(message: string, report: StateDictReport) {
    super(message);
    this.name = 'StateDictError';
    this.report = report;
  }
}

/** An unreadable or corrupt image. `path` names the file when known. */
export class ImageError extends Error {
  readonly code: ErrorCode = 'ERR_IMAGE';
  readonly path: string | undefined;
  constructor(message: string, path?: string) {
    super(message);
    this.name = 'ImageError';
    this.path = path;
  }
}

/** An invalid configuration (unknown key, wrong type, violated invariant). */
export class ConfigError extends Error {
  readonly code: ErrorCode = 'ERR_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** A dataset that cannot serve its purpose: empty, unlabeled where labels are needed, mismatched classes. */
export class DatasetError extends Error {
  readonly code: ErrorCode = 'ERR_DATASET';
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

/** A data-loader worker thread that died (terminated, crashed, or threw outside a sample). */
export class WorkerError extends Error {
  readonly code: ErrorCode = 'ERR_WORKER';
  /** The worker's index in the pool. */
  readonly worker: number;
  constructor(message: string, worker: number) {
    super(message);
    this.name = 'WorkerError';
    this.worker = worker;
  }
}

/** A non-finite loss. */
export class NanLossError extends Error {
  readonly code: ErrorCode = 'ERR_NAN_LOSS';
  constructor(message: string) {
    super(message);
    this.name = 'NanLossError';
  }
}

/**
 * A distributed run failed: rendezvous (ERR_DIST_STORE), a backend that is missing or was destroyed
 * (ERR_DIST_BACKEND), a collective that failed (ERR_DIST_NETWORK) or timed out (ERR_DIST_TIMEOUT), a peer rank
 * that exited or stopped responding (ERR_DIST_PEER), or a launch that was interrupted or could not start a worker
 * (ERR_DIST_LAUNCH). `failedRanks` names the ranks found dead, when known.
 */
export class DistributedError extends Error {
  readonly code: ErrorCode;
  readonly failedRanks: readonly number[];
  constructor(message: string, code: ErrorCode = 'ERR_DIST_NETWORK', failedRanks: readonly number[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DistributedError';
    this.code = code;
    this.failedRanks = failedRanks;
  }
}

/** The native addon could not be loaded. The message explains what was found and how to fix it. */
export class LoadError extends Error {
  readonly code: ErrorCode = 'ERR_LOAD';
  constructor(message: string) {
    super(message);
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
