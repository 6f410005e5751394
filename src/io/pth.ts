// Reader for PyTorch checkpoints written by torch.save (the zip format, default since PyTorch 1.6): the restricted
// unpickling of `<archive>/data.pkl`, storages from `<archive>/data/<key>`, `<archive>/byteorder` checked, tensor
// views (storage offset, arbitrary strides, shared storages) materialized as contiguous RawTensors (contiguous
// tensors are zero-copy views of the input). readPth flattens nested dicts into dotted keys.

import { constants as bufferConstants } from 'node:buffer';
import { CheckpointError } from '../native/errors.js';
import { unpickle, PickleGlobal, TorchStorageRef, TorchTensorRef, type PickleValue } from './pickle.js';
import { byteView, formatShape, itemSize, numel, readWholeFile, type RawTensor } from './raw_tensor.js';
import { isZip, ZipArchive } from './zip.js';

/** The unpickled checkpoint with tensors materialized. Dicts (and OrderedDicts) are Maps, lists and tuples arrays. */
export type PthValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | RawTensor
  | PthValue[]
  | Map<PthValue, PthValue>
  | Set<PthValue>
  | PickleGlobal;

/** True for the RawTensor leaves of a PthValue. */
export function isRawTensor(v: unknown): v is RawTensor {
  return (
    v !== null &&
    typeof v === 'object' &&
    !(v instanceof Map) &&
    !Array.isArray(v) &&
    (v as RawTensor).data instanceof Uint8Array &&
    typeof (v as RawTensor).dtype === 'string' &&
    Array.isArray((v as RawTensor).shape)
  );
}

/** Start of a checkpoint written by the legacy (pre-1.6) torch.save: protocol 2, then LONG1 of its magic number. */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

function archivePrefix(zip: ZipArchive, fail: (msg: string) => never): string {
  const candidates = zip.names().filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (candidates.length === 0) {
    return fail('not a torch.save checkpoint: the zip archive has no <archive>/data.pkl');
  }
  if (candidates.length === 1) return candidates[0]!.slice(0, -'/data.pkl'.length);
  // Like torch: the archive name is the top-level folder of the first entry.
  const first = zip.names()[0]!.split('/')[0]!;
  if (!zip.has(`${first}/data.pkl`)) return fail('the zip archive holds several data.pkl files');
  return first;
}

/** Unpickles a torch.save checkpoint held in `buf`, with every tensor materialized as a RawTensor. */
export function readPthObject(buf: Uint8Array, source = '<buffer>'): PthValue {
  const fail = (msg: string): never => {
    throw new CheckpointError(`${source}: ${msg}`);
  };
  if (!isZip(buf)) {
    if (LEGACY_MAGIC.every((b, i) => buf[i] === b)) {
      fail(
        'this is the legacy (pre-1.6, non-zip) torch.save format, which is not supported: re-save it with ' +
          'PyTorch >= 1.6, e.g. torch.save(torch.load(path, weights_only=True), new_path), ' +
          'or convert it to safetensors',
      );
    }
    if (buf[0] === 0x80) fail('this is a plain pickle file, not a torch.save checkpoint');
    fail('not a PyTorch checkpoint: expected a zip archive as written by torch.save');
  }
  const zip = new ZipArchive(buf, source);
  const prefix = archivePrefix(zip, fail);
  if (zip.has(`${prefix}/constants.pkl`)) {
    fail('this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint of tensors');
  }
  if (zip.has(`${prefix}/byteorder`)) {
    const order = new TextDecoder().decode(zip.read(`${prefix}/byteorder`));
    if (order === 'big') {
      fail('the checkpoint was saved on a big-endian machine; only little-endian checkpoints are supported');
    }
    if (order !== 'little') fail(`invalid byteorder record ${JSON.stringify(order)}`);
  }
  const root = unpickle(zip.read(`${prefix}/data.pkl`), { source: `${source} (data.pkl)` });

  const storages = new Map<string, { ref: TorchStorageRef; bytes: Uint8Array }>();
  const loadStorage = (ref: TorchStorageRef, where: string): Uint8Array => {
    const cached = storages.get(ref.key);
    if (cached !== undefined) {
      if (cached.ref.dtype !== ref.dtype) {
        fail(`${where}: storage "${ref.key}" is used both as ${cached.ref.dtype} and as ${ref.dtype}`);
      }
      if (cached.ref.numel !== ref.numel) {
        fail(`${where}: storage "${ref.key}" is used with ${cached.ref.numel} and ${ref.numel} elements`);
      }
      return cached.bytes;
    }
    const name = `${prefix}/data/${ref.key}`;
    if (!zip.has(name)) fail(`${where}: storage "${ref.key}" (${name}) is missing from the archive`);
    const bytes = zip.read(name);
    const need = ref.numel * itemSize(ref.dtype);
    if (bytes.byteLength !== need) {
      fail(
        `${where}: storage "${ref.key}" has ${bytes.byteLength} bytes but ${ref.numel} ${ref.dtype} elements ` +
          `need ${need}`,
      );
    }
    storages.set(ref.key, { ref, bytes });
    return bytes;
  };

  const materialize = (t: TorchTensorRef, where: string): RawTensor => {
    const { storage, storageOffset: offset, shape, stride } = t;
    const dtype = storage.dtype;
    const src = loadStorage(storage, where);
    const desc = `${where}: tensor of shape ${formatShape(shape)} and stride ${formatShape(stride)}`;
    if (shape.length !== stride.length) fail(`${desc}: sizes and strides differ in length`);
    if (offset < 0 || shape.some((d) => d < 0) || stride.some((s) => s < 0)) {
      fail(`${desc} has a negative size, stride or storage offset`);
    }
    const n = numel(shape);
    const isz = itemSize(dtype);
    if (n === 0) return { dtype, shape, data: new Uint8Array(0) };
    if (n * isz > bufferConstants.MAX_LENGTH) fail(`${desc} is too large to load`);
    let last = offset;
    for (let i = 0; i < shape.length; i++) last += (shape[i]! - 1) * stride[i]!;
    if (last >= storage.numel) {
      fail(`${desc} at offset ${offset} reaches element ${last} of a storage of ${storage.numel} elements`);
    }
    let contiguous = true;
    for (let i = shape.length - 1, expect = 1; i >= 0; i--) {
      if (shape[i] !== 1 && stride[i] !== expect) contiguous = false;
      expect *= shape[i]!;
    }
    if (contiguous) return { dtype, shape, data: byteView(src, offset * isz, (offset + n) * isz) };

    // Strided copy: rows along the last dimension, an odometer over the others.
    const out = new Uint8Array(n * isz);
    const nd = shape.length;
    const rowLen = shape[nd - 1]!;
    const rowStride = stride[nd - 1]!;
    const idx = new Array<number>(nd).fill(0);
    let base = offset;
    let o = 0;
    for (let r = n / rowLen; r > 0; r--) {
      if (rowStride === 1) {
        out.set(src.subarray(base * isz, (base + rowLen) * isz), o);
        o += rowLen * isz;
      } else {
        for (let j = 0, p = base * isz; j < rowLen; j++, p += rowStride * isz) {
          for (let b = 0; b < isz; b++) out[o++] = src[p + b]!;
        }
      }
      for (let d = nd - 2; d >= 0; d--) {
        idx[d]!++;
        base += stride[d]!;
        if (idx[d]! < shape[d]!) break;
        base -= stride[d]! * shape[d]!;
        idx[d] = 0;
      }
    }
    return { dtype, shape, data: out };
  };

  // Deep conversion that keeps sharing (and cycles) intact.
  const seen = new Map<object, PthValue>();
  const convert = (v: PickleValue, where: string): PthValue => {
    if (v === null || typeof v !== 'object' || v instanceof Uint8Array || v instanceof PickleGlobal) return v;
    const done = seen.get(v);
    if (done !== undefined) return done;
    if (v instanceof TorchTensorRef) {
      const raw = materialize(v, where);
      seen.set(v, raw);
      return raw;
    }
    if (v instanceof TorchStorageRef) return fail(`${where}: bare storages are not supported, only tensors`);
    if (Array.isArray(v)) {
      const out: PthValue[] = [];
      seen.set(v, out);
      v.forEach((x, i) => out.push(convert(x, `${where}[${i}]`)));
      return out;
    }
    if (v instanceof Map) {
      const out = new Map<PthValue, PthValue>();
      seen.set(v, out);
      for (const [k, x] of v) out.set(convert(k, where), convert(x, `${where}[${JSON.stringify(String(k))}]`));
      return out;
    }
    const out = new Set<PthValue>();
    seen.set(v, out);
    for (const x of v) out.add(convert(x, where));
    return out;
  };
  return convert(root, 'checkpoint');
}

/** Flattens nested dicts (and lists, by index) into one map of tensors with dotted keys:
 * {"teacher": {"backbone.x": t}} → "teacher.backbone.x". Non-tensor values are skipped. */
export function flattenTensors(obj: PthValue, source = '<buffer>'): Map<string, RawTensor> {
  const fail = (msg: string): never => {
    throw new CheckpointError(`${source}: ${msg}`);
  };
  if (!(obj instanceof Map)) {
    fail(`expected a dict of tensors, but the checkpoint holds ${isRawTensor(obj) ? 'a single tensor' : 'no dict'}`);
  }
  const out = new Map<string, RawTensor>();
  const active = new Set<object>();
  const walk = (v: PthValue, key: string): void => {
    if (isRawTensor(v)) {
      if (out.has(key)) fail(`key "${key}" appears twice after flattening nested dicts`);
      out.set(key, v);
      return;
    }
    if (!(v instanceof Map) && !Array.isArray(v)) return;
    if (active.has(v)) fail(`the checkpoint structure is cyclic at "${key}"`);
    active.add(v);
    const items: [PthValue, PthValue][] = v instanceof Map ? [...v.entries()] : v.map((x, i) => [i, x]);
    for (const [k, x] of items) {
      if (!['string', 'number', 'bigint', 'boolean'].includes(typeof k)) continue;
      walk(x, key === '' ? String(k) : `${key}.${String(k)}`);
    }
    active.delete(v);
  };
  walk(obj, '');
  return out;
}

/** Reads the tensors of a torch.save checkpoint held in `buf` as a flat map (see flattenTensors). */
export function readPth(buf: Uint8Array, source = '<buffer>'): Map<string, RawTensor> {
  return flattenTensors(readPthObject(buf, source), source);
}

/** Reads the tensors of a .pth/.pt file as a flat map (tensor data may be views of one Buffer holding the file). */
export async function readPthFile(path: string): Promise<Map<string, RawTensor>> {
  return readPth(await readWholeFile(path), path);
}
