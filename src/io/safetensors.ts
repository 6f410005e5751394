// The safetensors format (https://github.com/huggingface/safetensors) in pure TypeScript: an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {..}} padded with spaces to a
// multiple of 8, then the tensor bytes. Reading validates everything and is zero-copy for buffers; files are read
// tensor by tensor with positional reads (any size); writing follows the reference
// library byte for byte (tensors sorted by descending dtype alignment, then name); file writes are atomic.

import { randomBytes } from 'node:crypto';
import { open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CheckpointError, Dinov3Error, TorchTypeError } from '../native/errors.js';
import { byteView, checkRawTensor, formatShape, itemSize, LazyRawTensor, numel, type DType, type RawTensor } from './raw_tensor.js';
import { BufferSource, byteSource, type ByteSource } from './random_access.js';

/** safetensors dtype name → ours. */
const FROM_ST: Record<string, DType> = {
  F32: 'float32',
  F64: 'float64',
  BF16: 'bfloat16',
  F16: 'float16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};
const TO_ST = Object.fromEntries(Object.entries(FROM_ST).map(([k, v]) => [v, k])) as Record<DType, string>;

/** Rank of each dtype in the reference library's Dtype enum (which is in increasing alignment order). */
const ENUM_ORDER: Record<DType, number> = {
  bool: 0,
  uint8: 1,
  int8: 2,
  int16: 3,
  float16: 4,
  bfloat16: 5,
  int32: 6,
  float32: 7,
  float64: 8,
  int64: 9,
};

/** The reference implementation refuses larger headers. */
const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsContents {
  tensors: Map<string, RawTensor>;
  metadata: Record<string, string>;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

function isNonNegInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

interface HeaderEntry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/** Reads and validates the header through `src`: entries in file order, their byte ranges relative to `dataStart`. */
function parseHeader(src: ByteSource, fail: (msg: string) => never): { entries: HeaderEntry[]; metadata: Record<string, string>; dataStart: number } {
  const size = src.size;
  if (size < 8) {
    fail(`truncated safetensors file: ${size} bytes, too short for the 8-byte header length`);
  }
  const lenBytes = src.read(0, 8);
  const headerLen64 = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen64 > BigInt(size - 8)) {
    fail(`header length ${headerLen64} exceeds the file size (${size} bytes): ` + 'the file is truncated or not a safetensors file');
  }
  const headerLen = Number(headerLen64);
  if (headerLen > MAX_HEADER_BYTES) {
    fail(`header length ${headerLen} is larger than the ${MAX_HEADER_BYTES}-byte limit`);
  }
  let header: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(src.read(8, headerLen));
    header = JSON.parse(text);
  } catch {
    fail(`the ${headerLen}-byte header is not valid JSON: the file is corrupt or not a safetensors file`);
  }
  if (!isPlainObject(header)) fail('the header is not a JSON object');
  const hdr = header as Record<string, unknown>;

  const metadata: Record<string, string> = {};
  const meta = hdr['__metadata__'];
  if (meta !== undefined) {
    if (!isPlainObject(meta)) fail('"__metadata__" is not a JSON object');
    for (const [k, v] of Object.entries(meta as Record<string, unknown>)) {
      if (typeof v !== 'string') fail(`"__metadata__" must map strings to strings, but "${k}" is a ${typeof v}`);
      Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }

  const dataStart = 8 + headerLen;
  const dataLen = size - dataStart;
  const found: HeaderEntry[] = [];
  for (const [name, entry] of Object.entries(hdr)) {
    if (name === '__metadata__') continue;
    if (!isPlainObject(entry)) fail(`tensor "${name}": header entry is not an object`);
    const { dtype: stDtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof stDtype !== 'string') fail(`tensor "${name}" has no dtype`);
    const dtype = Object.hasOwn(FROM_ST, stDtype as string) ? FROM_ST[stDtype as string] : undefined;
    if (dtype === undefined) {
      fail(`tensor "${name}" has unsupported dtype ${JSON.stringify(stDtype)} ` + `(supported: ${Object.keys(FROM_ST).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      fail(`tensor "${name}" has an invalid shape ${JSON.stringify(shape)}: ` + 'expected an array of non-negative integers');
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt) || (offsets as number[])[0]! > (offsets as number[])[1]!) {
      fail(`tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}: expected [begin, end], begin <= end`);
    }
    const shp = shape as number[];
    const [begin, end] = offsets as [number, number];
    const need = numel(shp) * itemSize(dtype!);
    if (end - begin !== need) {
      fail(`tensor "${name}" has data_offsets [${begin}, ${end}] but shape ${formatShape(shp)} ${dtype} ` + `needs ${need} bytes`);
    }
    if (end > dataLen) {
      fail(`tensor "${name}" has data_offsets [${begin}, ${end}] beyond the end of the ${dataLen}-byte data section: ` + 'the file is truncated');
    }
    found.push({ name, dtype: dtype!, shape: [...shp], begin, end });
  }
  // File order, as the reference library lists them.
  found.sort((a, b) => a.begin - b.begin || a.end - b.end);
  const ranges = found.filter((t) => t.end > t.begin);
  for (let i = 1; i < ranges.length; i++) {
    const a = ranges[i - 1]!;
    const b = ranges[i]!;
    if (b.begin < a.end) {
      fail(`tensors "${a.name}" [${a.begin}, ${a.end}] and "${b.name}" [${b.begin}, ${b.end}] overlap`);
    }
  }
  return { entries: found, metadata, dataStart };
}

/** Parses a safetensors file held in `buf`. Tensor data are views of `buf` (no copy). `source` names the file in
 * error messages. Throws CheckpointError on any inconsistency. */
export function readSafetensors(buf: Uint8Array, source = '<buffer>'): SafetensorsContents {
  const fail = (msg: string): never => {
    throw new CheckpointError(`${source}: ${msg}`);
  };
  const { entries, metadata, dataStart } = parseHeader(new BufferSource(buf, source), fail);
  const tensors = new Map<string, RawTensor>(
    entries.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, data: byteView(buf, dataStart + t.begin, dataStart + t.end) }]),
  );
  return { tensors, metadata };
}

export interface LazySafetensors {
  tensors: Map<string, LazyRawTensor>;
  metadata: Record<string, string>;
}

/**
 * Opens a safetensors file (or buffer) for reading tensor by tensor: the header is read and validated now, each
 * tensor's bytes are read with a positional read when its `read()` is called. Files of any size load.
 * @throws CheckpointError naming the file for anything unreadable, corrupt, or not a regular file
 */
export function openSafetensors(input: string | Uint8Array | ByteSource, source?: string): LazySafetensors {
  const src = byteSource(input, source);
  const name = source ?? src.name;
  const fail = (msg: string): never => {
    throw new CheckpointError(`${name}: ${msg}`);
  };
  const { entries, metadata, dataStart } = parseHeader(src, fail);
  const tensors = new Map<string, LazyRawTensor>(
    entries.map((t) => [t.name, new LazyRawTensor(t.dtype, t.shape, t.end - t.begin, () => src.read(dataStart + t.begin, t.end - t.begin))]),
  );
  return { tensors, metadata };
}

/** The header bytes and the tensors in file order. */
function prepare(
  tensors: Map<string, RawTensor> | Record<string, RawTensor>,
  metadata?: Record<string, string>,
): { header: Buffer; ordered: RawTensor[]; dataBytes: number } {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [name, raw] of entries) {
    if (name === '__metadata__') throw new TorchTypeError('a tensor cannot be named "__metadata__"', 'ERR_INVALID_ARG');
    checkRawTensor(raw, `tensor "${name}"`);
  }
  entries.sort(([an, a], [bn, b]) => ENUM_ORDER[b.dtype] - ENUM_ORDER[a.dtype] || (an < bn ? -1 : an > bn ? 1 : 0));
  // The JSON is assembled by hand: a JS object would put integer-like names first and treat "__proto__" specially.
  const parts: string[] = [];
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    const meta: string[] = [];
    for (const k of Object.keys(metadata).sort()) {
      const v = metadata[k];
      if (typeof v !== 'string') {
        throw new TorchTypeError(`metadata "${k}" must be a string, got ${typeof v}`, 'ERR_INVALID_ARG');
      }
      meta.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${meta.join(',')}}`);
  }
  let offset = 0;
  for (const [name, raw] of entries) {
    const n = raw.data.byteLength;
    const info = { dtype: TO_ST[raw.dtype], shape: raw.shape, data_offsets: [offset, offset + n] };
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    offset += n;
  }
  const text = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(text.length / 8) * 8;
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  text.copy(header, 8);
  return { header, ordered: entries.map(([, raw]) => raw), dataBytes: offset };
}

/** Serializes tensors (and optional string metadata) to safetensors bytes, as the reference library does. */
export function writeSafetensors(tensors: Map<string, RawTensor> | Record<string, RawTensor>, metadata?: Record<string, string>): Buffer {
  const { header, ordered, dataBytes } = prepare(tensors, metadata);
  const out = Buffer.allocUnsafe(header.length + dataBytes);
  header.copy(out, 0);
  let pos = header.length;
  for (const raw of ordered) {
    out.set(raw.data, pos);
    pos += raw.data.byteLength;
  }
  return out;
}

/** Reads and parses a .safetensors file, tensor by tensor (files of any size; see openSafetensors). */
export async function readSafetensorsFile(path: string): Promise<SafetensorsContents> {
  const { tensors, metadata } = openSafetensors(path);
  return { tensors: new Map([...tensors].map(([k, t]) => [k, t.load()])), metadata };
}

/** Removes the temporary files (`<name>.tmp-<pid>-<hex>`) that writes to `path` by processes that are gone left
 * behind (a write killed before its rename). */
export async function removeStaleTemporaries(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `${basename(path)}.tmp-`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = n.startsWith(prefix) ? /^(\d+)-[0-9a-f]+$/.exec(n.slice(prefix.length)) : null;
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = pid === process.pid;
    if (!alive) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (e) {
        alive = (e as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    if (!alive) await rm(join(dir, n), { force: true });
  }
}

/** Writes `chunks` to `path` atomically: a temporary file next to it, fsync, rename. On failure the temporary file
 * is removed and an existing `path` is left untouched; temporaries of earlier writes killed midway are removed first. */
export async function atomicWriteFile(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  await removeStaleTemporaries(path);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(tmp, 'wx');
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await fh.write(chunk, done, chunk.byteLength - done);
        done += bytesWritten;
      }
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (err) {
    if (fh !== undefined) await fh.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    // A file-system failure (EISDIR, EACCES, ENOSPC, …) becomes an ERR_IO Dinov3Error that keeps the system message.
    if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && !(err instanceof Dinov3Error))
      throw new Dinov3Error(`${path}: cannot write the file (${err.message})`, 'ERR_IO', { cause: err });
    throw err;
  }
  // Make the rename durable; not every platform can fsync a directory, so this is best effort.
  try {
    const dir = await open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // ignored
  }
}

/** Writes a .safetensors file atomically (see atomicWriteFile). Tensors are validated before the file is touched. */
export async function writeSafetensorsFile(
  path: string,
  tensors: Map<string, RawTensor> | Record<string, RawTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const { header, ordered } = prepare(tensors, metadata);
  await atomicWriteFile(path, [header, ...ordered.map((raw) => raw.data)]);
}
