// Public tensor files: named tensors in .safetensors (with string metadata) and single tensors in NumPy .npy, read
// and written without Python. Reads go tensor by tensor through positional reads (any file size); writes are
// atomic (temporary file, fsync, rename). Every failure to read is a CheckpointError naming the file.
import { FileSource } from '../io/random_access.js';
import { type DType as RawDType, itemSize, numel, type RawTensor } from '../io/raw_tensor.js';
import { atomicWriteFile, openSafetensors, writeSafetensorsFile } from '../io/safetensors.js';
import { CheckpointError, TorchTypeError } from '../native/errors.js';
import { fromBuffer } from '../tensor/creation.js';
import { scope } from '../tensor/scope.js';
import { type Device, type DType, Tensor } from '../tensor/tensor.js';

/** A tensor's contiguous CPU bytes (a view that keeps the memory alive on its own). */
function rawOf(t: unknown, what: string): RawTensor {
  if (!(t instanceof Tensor)) throw new TorchTypeError(`${what} is not a Tensor`, 'ERR_INVALID_ARG');
  return scope(() => {
    const c = t.to('cpu').contiguous();
    const v = c.data();
    return { dtype: c.dtype as RawDType, shape: c.shape, data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) };
  });
}

/**
 * Writes named tensors (and optional string metadata) to a `.safetensors` file, atomically. Readable by the
 * Hugging Face safetensors library (and `safetensors.torch.load_file`).
 * @example await saveTensors('feats.safetensors', { cls, patches }, { note: 'run 3' });
 * @throws TorchTypeError for a value that is not a Tensor or metadata that is not a string
 */
export async function saveTensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  expectPath(path, 'saveTensors');
  if (tensors === null || typeof tensors !== 'object') throw new TorchTypeError('saveTensors: expected a Map or a record of Tensors', 'ERR_INVALID_ARG');
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const raw = new Map(entries.map(([k, t]) => [k, rawOf(t, `saveTensors: "${k}"`)]));
  await writeSafetensorsFile(path, raw, metadata);
}

/**
 * Reads every tensor of a `.safetensors` file, with its metadata. The caller owns the tensors.
 * @throws CheckpointError naming the file
 */
export async function loadTensors(
  path: string,
  o: { device?: Device; dtype?: DType } = {},
): Promise<{ tensors: Map<string, Tensor>; metadata: Record<string, string> }> {
  expectPath(path, 'loadTensors');
  const { tensors, metadata } = openSafetensors(path);
  const out = new Map<string, Tensor>();
  try {
    for (const [k, lazy] of tensors) {
      const t = fromBuffer(lazy.read(), lazy.dtype, lazy.shape);
      if (o.device === undefined && o.dtype === undefined) out.set(k, t);
      else {
        out.set(k, t.to({ device: o.device, dtype: o.dtype }));
        t.dispose();
      }
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return { tensors: out, metadata };
}

/** NumPy descr ↔ dtype (little-endian; NumPy has no bfloat16). */
const NPY: Partial<Record<RawDType, string>> = {
  float32: '<f4',
  float64: '<f8',
  float16: '<f2',
  int64: '<i8',
  int32: '<i4',
  int16: '<i2',
  int8: '|i1',
  uint8: '|u1',
  bool: '|b1',
};
const FROM_NPY = new Map(Object.entries(NPY).map(([k, v]) => [v, k as RawDType]));

/** The NumPy header of an array (format 1.0, or 2.0 for headers over 64 KiB). */
function npyHeader(descr: string, shape: readonly number[]): Buffer {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${dims}, }`;
  const v2 = dict.length + 12 > 0xffff;
  const pre = v2 ? 12 : 10;
  const total = Math.ceil((pre + dict.length + 1) / 64) * 64;
  const text = dict.padEnd(total - pre - 1, ' ') + '\n';
  const head = Buffer.alloc(pre);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = v2 ? 2 : 1;
  head[7] = 0;
  if (v2) head.writeUInt32LE(text.length, 8);
  else head.writeUInt16LE(text.length, 8);
  return Buffer.concat([head, Buffer.from(text, 'latin1')]);
}

/**
 * Writes one tensor as a NumPy `.npy` file (C order), atomically; `numpy.load` reads it.
 * @throws TorchTypeError for bfloat16 (NumPy has no such dtype: convert first) or a non-Tensor
 */
export async function saveNpy(path: string, t: Tensor): Promise<void> {
  expectPath(path, 'saveNpy');
  const raw = rawOf(t, 'saveNpy: the value');
  const descr = NPY[raw.dtype];
  if (descr === undefined)
    throw new TorchTypeError(`saveNpy: NumPy has no ${raw.dtype} dtype; convert the tensor first (e.g. t.to('float32'))`, 'ERR_INVALID_ARG');
  await atomicWriteFile(path, [npyHeader(descr, raw.shape), raw.data]);
}

/**
 * Reads a NumPy `.npy` file (format 1.x-3.x, C order, little-endian numeric or bool dtypes) as a Tensor the caller
 * owns.
 * @throws CheckpointError naming the file for anything else
 */
export async function loadNpy(path: string): Promise<Tensor> {
  expectPath(path, 'loadNpy');
  const src = FileSource.open(path, 'npy file');
  const fail = (msg: string): never => {
    throw new CheckpointError(`${path}: ${msg}`);
  };
  if (src.size < 10) fail('not a NumPy .npy file (too short)');
  const pre = Buffer.from(src.read(0, Math.min(12, src.size)));
  if (pre.subarray(0, 6).toString('latin1') !== '\x93NUMPY') fail('not a NumPy .npy file (no \\x93NUMPY magic)');
  const major = pre[6]!;
  if (major < 1 || major > 3) fail(`unsupported .npy format version ${major}.${pre[7]}`);
  const headerLen = major === 1 ? pre.readUInt16LE(8) : pre.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  if (headerLen > 1 << 20 || start > src.size) fail(`truncated or corrupt header (${headerLen} bytes)`);
  const text = Buffer.from(src.read(major === 1 ? 10 : 12, headerLen)).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(text)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) fail(`cannot parse the header ${JSON.stringify(text.trim())}`);
  const dtype = FROM_NPY.get(descr!.replace(/^=/, '<'));
  if (dtype === undefined) fail(`unsupported dtype '${descr}' (supported: ${Object.values(NPY).join(', ')})`);
  if (fortran === 'True') fail('Fortran-order arrays are not supported: save with np.ascontiguousarray(a)');
  const dims = shapeText!
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '');
  if (!dims.every((d) => /^\d+$/.test(d))) fail(`invalid shape (${shapeText})`);
  const shape = dims.map(Number);
  const bytes = numel(shape) * itemSize(dtype!);
  if (start + bytes !== src.size) fail(`shape (${shape.join(', ')}) ${dtype} needs ${bytes} bytes of data, the file has ${src.size - start}`);
  return fromBuffer(src.read(start, bytes), dtype!, shape);
}

function expectPath(path: unknown, op: string): asserts path is string {
  if (typeof path !== 'string' || path === '')
    throw new TorchTypeError(`${op}: expected "path" to be a non-empty string, received ${typeof path}`, 'ERR_INVALID_ARG');
}
