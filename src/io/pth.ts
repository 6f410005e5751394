// Reader for PyTorch checkpoints written by torch.save (the zip format, default since PyTorch 1.6): the restricted
// unpickling of `<archive>/data.pkl`, storages from `<archive>/data/<key>`, `<archive>/byteorder` checked, tensor
// views (storage offset, arbitrary strides, shared storages) materialized as contiguous RawTensors (contiguous
// tensors are zero-copy views of a buffer input). readPth flattens nested dicts into dotted keys. openPth reads a
// file tensor by tensor with positional reads, so any size loads. Every amplification is bounded: shared pickle
// sub-structures, nesting, inflation, broadcast (stride-0) views.

import { constants as bufferConstants } from 'node:buffer';
import { CheckpointError } from '../native/errors.js';
import { unpickle, PickleGlobal, TorchStorageRef, TorchTensorRef, type PickleValue } from './pickle.js';
import { BufferSource, byteSource, type ByteSource, FileSource } from './random_access.js';
import { formatShape, itemSize, LazyRawTensor, numel, type RawTensor } from './raw_tensor.js';
import { isZip, ZipArchive } from './zip.js';

/** The unpickled checkpoint with tensors as `L`. Dicts (and OrderedDicts) are Maps, lists and tuples arrays. */
export type PthValueOf<L> =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | L
  | PthValueOf<L>[]
  | Map<PthValueOf<L>, PthValueOf<L>>
  | Set<PthValueOf<L>>
  | PickleGlobal;

/** The unpickled checkpoint with tensors materialized. */
export type PthValue = PthValueOf<RawTensor>;

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

/** The largest data.pkl accepted (real checkpoints have a few MB of pickle even for billions of parameters). */
const MAX_PICKLE_BYTES = 1 << 30;
/** Nesting deeper than this is refused (a real checkpoint nests a few levels). */
const MAX_DEPTH = 1000;
/** A checkpoint whose containers would flatten into more keys than this (through shared sub-structures) is refused. */
export const MAX_FLAT_KEYS = 1_000_000;

type Fail = (msg: string) => never;

/** Turns stray errors of a parse (stack overflow, string too long, typed array too large) into CheckpointErrors. */
function guarded<R>(source: string, fn: () => R): R {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    if (e instanceof RangeError || (e as NodeJS.ErrnoException | undefined)?.code === 'ERR_STRING_TOO_LONG') {
      throw new CheckpointError(`${source}: the checkpoint structure is too large or too deep to load (${(e as Error).message})`);
    }
    throw e;
  }
}

/** The parsed pickle of a torch.save checkpoint and a way to turn its tensor records into LazyRawTensors. */
function parsePth(src: ByteSource, name: string, fail: Fail): { root: PickleValue; lazy: (t: TorchTensorRef, where: string) => LazyRawTensor } {
  const head = src.read(0, Math.min(src.size, LEGACY_MAGIC.length));
  if (!isZip(head)) {
    if (head.length === LEGACY_MAGIC.length && LEGACY_MAGIC.every((b, i) => head[i] === b)) {
      fail(
        'this is the legacy (pre-1.6, non-zip) torch.save format, which is not supported: re-save it with ' +
          'PyTorch >= 1.6, e.g. torch.save(torch.load(path, weights_only=True), new_path), ' +
          'or convert it to safetensors',
      );
    }
    if (head[0] === 0x80) fail('this is a plain pickle file, not a torch.save checkpoint');
    fail('not a PyTorch checkpoint: expected a zip archive as written by torch.save');
  }
  const zip = new ZipArchive(src, name);
  const prefix = archivePrefix(zip, fail);
  if (zip.has(`${prefix}/constants.pkl`)) {
    fail('this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint of tensors');
  }
  if (zip.has(`${prefix}/byteorder`)) {
    const order = new TextDecoder().decode(zip.read(`${prefix}/byteorder`, { maxSize: 16 }));
    if (order === 'big') {
      fail('the checkpoint was saved on a big-endian machine; only little-endian checkpoints are supported');
    }
    if (order !== 'little') fail(`invalid byteorder record ${JSON.stringify(order)}`);
  }
  const pkl = zip.read(`${prefix}/data.pkl`, { maxSize: MAX_PICKLE_BYTES });
  const root = unpickle(pkl, { source: `${name} (data.pkl)` });

  const storages = new Map<string, TorchStorageRef>();
  /** Checks a storage against the archive (declared sizes only: nothing is read or inflated). */
  const checkStorage = (ref: TorchStorageRef, where: string): string => {
    const cached = storages.get(ref.key);
    const name = `${prefix}/data/${ref.key}`;
    if (cached !== undefined) {
      if (cached.dtype !== ref.dtype) {
        fail(`${where}: storage "${ref.key}" is used both as ${cached.dtype} and as ${ref.dtype}`);
      }
      if (cached.numel !== ref.numel) {
        fail(`${where}: storage "${ref.key}" is used with ${cached.numel} and ${ref.numel} elements`);
      }
      return name;
    }
    const entry = zip.entries.get(name);
    if (entry === undefined) fail(`${where}: storage "${ref.key}" (${name}) is missing from the archive`);
    const need = ref.numel * itemSize(ref.dtype);
    if (entry!.uncompressedSize !== need) {
      fail(`${where}: storage "${ref.key}" has ${entry!.uncompressedSize} bytes but ${ref.numel} ${ref.dtype} elements ` + `need ${need}`);
    }
    storages.set(ref.key, ref);
    return name;
  };
  /** Bytes [begin, end) of a storage: a positional read of a stored entry, or the inflated entry (bounded). */
  const storageBytes = (ref: TorchStorageRef, name: string, begin: number, end: number): Uint8Array => {
    const range = zip.storedRange(name);
    if (range !== undefined) return src.read(range.offset + begin, end - begin);
    const all = zip.read(name, { expectSize: ref.numel * itemSize(ref.dtype) });
    return all.subarray(begin, end);
  };

  const lazy = (t: TorchTensorRef, where: string): LazyRawTensor => {
    const { storage, storageOffset: offset, shape, stride } = t;
    const dtype = storage.dtype;
    const entry = checkStorage(storage, where);
    const desc = `${where}: tensor of shape ${formatShape(shape)} and stride ${formatShape(stride)}`;
    if (shape.length !== stride.length) fail(`${desc}: sizes and strides differ in length`);
    if (offset < 0 || shape.some((d) => d < 0) || stride.some((s) => s < 0)) {
      fail(`${desc} has a negative size, stride or storage offset`);
    }
    const n = numel(shape);
    const isz = itemSize(dtype);
    if (n === 0) return new LazyRawTensor(dtype, shape, 0, () => new Uint8Array(0));
    // A view with zero or overlapping strides (expand, broadcast) would be materialized as more elements than its
    // storage holds: a few bytes of file could ask for gigabytes. Refused.
    if (n > storage.numel) {
      fail(
        `${desc} has ${n} elements but its storage only ${storage.numel}: broadcast (stride-0) or overlapping views ` +
          'are not expanded; save the tensor with .contiguous() or .clone()',
      );
    }
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
    // Reading a tensor larger than one typed array can hold fails when (and only if) it is read.
    const tooLarge = (bytes: number) => {
      if (bytes > bufferConstants.MAX_LENGTH) fail(`${desc} is too large to load (${bytes} bytes, more than one buffer can hold)`);
    };
    if (contiguous) {
      return new LazyRawTensor(dtype, shape, n * isz, () => {
        tooLarge(n * isz);
        return storageBytes(storage, entry, offset * isz, (offset + n) * isz);
      });
    }

    return new LazyRawTensor(dtype, shape, n * isz, () => {
      tooLarge((last - offset + 1) * isz);
      // Strided copy out of the span [offset, last] of the storage: rows along the last dimension, an odometer over
      // the others.
      const span = storageBytes(storage, entry, offset * isz, (last + 1) * isz);
      const out = new Uint8Array(n * isz);
      const nd = shape.length;
      const rowLen = shape[nd - 1]!;
      const rowStride = stride[nd - 1]!;
      const idx = new Array<number>(nd).fill(0);
      let base = 0;
      let o = 0;
      for (let r = n / rowLen; r > 0; r--) {
        if (rowStride === 1) {
          out.set(span.subarray(base * isz, (base + rowLen) * isz), o);
          o += rowLen * isz;
        } else {
          for (let j = 0, p = base * isz; j < rowLen; j++, p += rowStride * isz) {
            for (let b = 0; b < isz; b++) out[o++] = span[p + b]!;
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
      return out;
    });
  };
  return { root, lazy };
}

/** A path into the structure for a message, cut to 100 characters. */
const shortPath = (where: string) => (where.length > 100 ? `${where.slice(0, 100)}…` : where);

/** Deep conversion of the unpickled structure, keeping sharing (and cycles) intact, with tensors mapped by `leaf`. */
function convertTree<L>(root: PickleValue, leaf: (t: TorchTensorRef, where: string) => L, fail: Fail): PthValueOf<L> {
  const seen = new Map<object, PthValueOf<L>>();
  const convert = (v: PickleValue, where: string, depth: number): PthValueOf<L> => {
    if (v === null || typeof v !== 'object' || v instanceof Uint8Array || v instanceof PickleGlobal) return v;
    const done = seen.get(v);
    if (done !== undefined) return done;
    if (depth > MAX_DEPTH) fail(`the checkpoint nests containers more than ${MAX_DEPTH} levels deep (at ${shortPath(where)})`);
    if (v instanceof TorchTensorRef) {
      const raw = leaf(v, where);
      seen.set(v, raw);
      return raw;
    }
    if (v instanceof TorchStorageRef) return fail(`${where}: bare storages are not supported, only tensors`);
    if (Array.isArray(v)) {
      const out: PthValueOf<L>[] = [];
      seen.set(v, out);
      v.forEach((x, i) => out.push(convert(x, `${where}[${i}]`, depth + 1)));
      return out;
    }
    if (v instanceof Map) {
      const out = new Map<PthValueOf<L>, PthValueOf<L>>();
      seen.set(v, out);
      for (const [k, x] of v) out.set(convert(k, where, depth + 1), convert(x, `${where}[${JSON.stringify(String(k))}]`, depth + 1));
      return out;
    }
    const out = new Set<PthValueOf<L>>();
    seen.set(v, out);
    for (const x of v) out.add(convert(x, where, depth + 1));
    return out;
  };
  return convert(root, 'checkpoint', 0);
}

/** Unpickles a torch.save checkpoint held in `buf` (or read through a ByteSource), with every tensor materialized as
 * a RawTensor (contiguous tensors of a buffer are views of it). */
export function readPthObject(buf: Uint8Array | ByteSource, source?: string): PthValue {
  const src = buf instanceof Uint8Array ? new BufferSource(buf, source ?? '<buffer>') : buf;
  const name = source ?? src.name;
  const fail: Fail = (msg) => {
    throw new CheckpointError(`${name}: ${msg}`);
  };
  return guarded(name, () => {
    const { root, lazy } = parsePth(src, name, fail);
    return convertTree(root, (t, where) => lazy(t, where).load(), fail);
  });
}

/**
 * Opens a torch.save checkpoint for reading tensor by tensor: the zip directory and data.pkl are parsed now, each
 * tensor's bytes are read (by positional reads of the file, never the whole file at once) when its `read()` is
 * called. Files of any size load; nested dicts are flattened into dotted keys (see flattenTensors).
 * @throws CheckpointError naming the file for anything unreadable, corrupt, unsupported or hostile
 */
export function openPth(input: string | Uint8Array | ByteSource, source?: string): Map<string, LazyRawTensor> {
  const name = source ?? (typeof input === 'string' ? input : input instanceof Uint8Array ? '<buffer>' : input.name);
  return guarded(name, () => {
    const src = byteSource(input, name);
    const fail: Fail = (msg) => {
      throw new CheckpointError(`${name}: ${msg}`);
    };
    const parse = () => {
      const { root, lazy } = parsePth(src, name, fail);
      return flattenLeaves(convertTree(root, lazy, fail), (v): v is LazyRawTensor => v instanceof LazyRawTensor, name);
    };
    return src instanceof FileSource ? src.withOpen(parse) : parse();
  });
}

/** Flattens nested dicts (and lists, by index) into one map of tensors with dotted keys:
 * {"teacher": {"backbone.x": t}} → "teacher.backbone.x". Non-tensor values are skipped. */
export function flattenTensors(obj: PthValue, source = '<buffer>'): Map<string, RawTensor> {
  return flattenLeaves(obj, isRawTensor, source);
}

/** flattenTensors for any kind of tensor leaf. Shared sub-structures (a DAG) are counted with memoisation first, so
 * a few bytes of pickle cannot ask for 2^40 keys; nesting and the number of keys are bounded. */
export function flattenLeaves<L extends object>(obj: PthValueOf<L>, isLeaf: (v: unknown) => v is L, source = '<buffer>'): Map<string, L> {
  const fail = (msg: string): never => {
    throw new CheckpointError(`${source}: ${msg}`);
  };
  if (!(obj instanceof Map)) {
    fail(`expected a dict of tensors, but the checkpoint holds ${isLeaf(obj) ? 'a single tensor' : 'no dict'}`);
  }
  const keyable = (k: unknown) => ['string', 'number', 'bigint', 'boolean'].includes(typeof k);
  const children = (v: Map<PthValueOf<L>, PthValueOf<L>> | PthValueOf<L>[]): [PthValueOf<L>, PthValueOf<L>][] =>
    v instanceof Map ? [...v.entries()] : v.map((x, i) => [i, x]);
  // Tensors reachable below each container (saturating above MAX_FLAT_KEYS), memoised: linear in the structure.
  const counts = new Map<object, number>();
  const active = new Set<object>();
  const count = (v: PthValueOf<L>, key: string, depth: number): number => {
    if (isLeaf(v)) return 1;
    if (!(v instanceof Map) && !Array.isArray(v)) return 0;
    const known = counts.get(v);
    if (known !== undefined) return known;
    if (active.has(v)) fail(`the checkpoint structure is cyclic at "${key}"`);
    if (depth > MAX_DEPTH) fail(`the checkpoint nests containers more than ${MAX_DEPTH} levels deep (at "${shortPath(key)}")`);
    active.add(v);
    let n = 0;
    for (const [k, x] of children(v)) if (keyable(k)) n = Math.min(MAX_FLAT_KEYS + 1, n + count(x, key === '' ? String(k) : `${key}.${String(k)}`, depth + 1));
    active.delete(v);
    counts.set(v, n);
    return n;
  };
  const total = count(obj, '', 0);
  if (total > MAX_FLAT_KEYS) {
    fail(`the checkpoint would flatten into more than ${MAX_FLAT_KEYS} tensor keys (shared sub-structures repeat them)`);
  }
  const out = new Map<string, L>();
  const walk = (v: PthValueOf<L>, key: string): void => {
    if (isLeaf(v)) {
      if (out.has(key)) fail(`key "${key}" appears twice after flattening nested dicts`);
      out.set(key, v);
      return;
    }
    if ((!(v instanceof Map) && !Array.isArray(v)) || counts.get(v) === 0) return;
    for (const [k, x] of children(v)) if (keyable(k)) walk(x, key === '' ? String(k) : `${key}.${String(k)}`);
  };
  walk(obj, '');
  return out;
}

/** Reads the tensors of a torch.save checkpoint held in `buf` as a flat map (see flattenTensors). */
export function readPth(buf: Uint8Array, source = '<buffer>'): Map<string, RawTensor> {
  return flattenTensors(readPthObject(buf, source), source);
}

/** Reads the tensors of a .pth/.pt file as a flat map, tensor by tensor (files of any size; see openPth). */
export async function readPthFile(path: string): Promise<Map<string, RawTensor>> {
  return new Map([...openPth(path)].map(([k, t]) => [k, t.load()]));
}
