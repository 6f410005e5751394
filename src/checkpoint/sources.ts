// Lazily materialised checkpoint tensors: a shape, a dtype and a loader. Key mapping (Hugging Face ↔ official,
// prefix stripping) composes loaders, so a whole checkpoint never exists twice as tensors: each parameter is created,
// copied into the model and freed in turn (keys: the module names of dinov3/models/vision_transformer.py).
import { fromBuffer } from '../tensor/creation.js';
import { checkRawTensor, isDType, type LazyRawTensor, type RawTensor } from '../io/raw_tensor.js';
import { argTypeError, expectArray, expectFunction, expectObject, expectTensorArg } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import type { DType, Tensor } from '../tensor/tensor.js';

export interface TensorSource {
  readonly shape: number[];
  readonly dtype: DType;
  /** Creates a fresh tensor (the caller owns it). */
  load(): Tensor;
}

/** Checkpoint entries by key. */
export type SourceDict = Map<string, TensorSource>;

export function rawSource(raw: RawTensor): TensorSource {
  checkRawTensor(raw, 'rawSource: "raw"');
  return { shape: raw.shape, dtype: raw.dtype, load: () => fromBuffer(raw.data, raw.dtype, raw.shape) };
}

/** A source over a tensor of a checkpoint file that is read when loaded (and its bytes freed right after). */
export function lazySource(lazy: LazyRawTensor): TensorSource {
  expectObject('lazySource', 'lazy', lazy);
  expectArray('lazySource', 'lazy.shape', lazy.shape);
  if (!isDType(lazy.dtype)) throw argTypeError('lazySource', 'lazy.dtype', 'a dtype name', lazy.dtype);
  expectFunction('lazySource', 'lazy.read', lazy.read);
  return { shape: lazy.shape, dtype: lazy.dtype, load: () => fromBuffer(lazy.read(), lazy.dtype, lazy.shape) };
}

/** A source over a live tensor (e.g. a module parameter): `load` returns a detached copy. */
export function tensorSource(t: Tensor): TensorSource {
  expectTensorArg('tensorSource', 't', t);
  return { shape: t.shape, dtype: t.dtype, load: () => scope(() => t.detach().clone()) };
}

export function derivedSource(shape: number[], dtype: DType, load: () => Tensor): TensorSource {
  return { shape, dtype, load };
}
