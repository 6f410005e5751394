import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { CheckpointError, TorchTypeError } from '../../../src/native/errors.js';
import { itemSize, rawFromTypedArray, rawToFloat32, type RawTensor } from '../../../src/io/raw_tensor.js';
import { readSafetensors, readSafetensorsFile, writeSafetensors, writeSafetensorsFile } from '../../../src/io/safetensors.js';
import { FIXTURES } from './helpers.js';

/** A safetensors file from a JSON header object (no padding) and `dataLen` zero bytes of data. */
function craft(header: unknown, dataLen: number): Buffer {
  const text = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, Buffer.alloc(dataLen)]);
}

function expectCheckpointError(fn: () => unknown, message: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CheckpointError);
  expect((err as CheckpointError).code).toBe('ERR_CHECKPOINT');
  expect((err as Error).message).toBe(message);
}

describe('readSafetensors on the reference fixtures', () => {
  test('official_vits_like.safetensors: 38 float32 tensors, no metadata, zero-copy', () => {
    const buf = readFileSync(join(FIXTURES, 'official_vits_like.safetensors'));
    const { tensors, metadata } = readSafetensors(buf, 'official_vits_like.safetensors');
    expect(metadata).toEqual({});
    expect(tensors.size).toBe(38);
    for (const t of tensors.values()) {
      expect(t.dtype).toBe('float32');
      expect(t.data.buffer).toBe(buf.buffer);
    }
    expect(tensors.get('rope_embed.periods')!.shape).toEqual([4]);
    expect(tensors.get('blocks.0.attn.qkv.bias_mask')!.shape).toEqual([192]);
    expect(tensors.get('patch_embed.proj.weight')!.shape).toEqual([64, 3, 16, 16]);
    expect(tensors.get('storage_tokens')!.shape).toEqual([1, 4, 64]);
    expect(tensors.get('mask_token')!.shape).toEqual([1, 64]);
    // File order (by offset), which for all-float32 files is name order.
    expect([...tensors.keys()]).toEqual([...tensors.keys()].sort());
  });

  test('hf_vits_like/model.safetensors carries {"format": "pt"} metadata', () => {
    const buf = readFileSync(join(FIXTURES, 'hf_vits_like/model.safetensors'));
    const { tensors, metadata } = readSafetensors(buf);
    expect(metadata).toEqual({ format: 'pt' });
    expect(tensors.size).toBe(41);
    expect(tensors.get('embeddings.register_tokens')!.shape).toEqual([1, 4, 64]);
    expect(tensors.get('embeddings.mask_token')!.shape).toEqual([1, 1, 64]);
    expect(tensors.has('layer.0.attention.k_proj.bias')).toBe(false);
  });

  test('writeSafetensors reproduces the reference files byte for byte', () => {
    for (const [file, meta] of [
      ['official_vits_like.safetensors', undefined],
      ['hf_vits_like/model.safetensors', { format: 'pt' }],
    ] as const) {
      const buf = readFileSync(join(FIXTURES, file));
      const { tensors } = readSafetensors(buf);
      const shuffled = new Map([...tensors.entries()].reverse());
      expect(writeSafetensors(shuffled, meta).equals(buf)).toBe(true);
    }
  });
});

describe('writeSafetensors / readSafetensors round trip', () => {
  const tensors: Record<string, RawTensor> = {
    'w.f32': rawFromTypedArray([2, 3], Float32Array.from([1, -2, 3.5, 0, 1e-8, -0])),
    'w.f64': rawFromTypedArray([2], Float64Array.from([Math.PI, -1e300])),
    'b.bf16': rawFromTypedArray([3], Uint16Array.from([0x3f80, 0xc040, 0x4049]), 'bfloat16'),
    'h.f16': rawFromTypedArray([4], Uint16Array.from([0x3c00, 0xc000, 0x7c00, 0x0001]), 'float16'),
    'n.i64': rawFromTypedArray([2], BigInt64Array.from([-3n, 1n << 40n])),
    'n.i32': rawFromTypedArray([1], Int32Array.from([-7])),
    'n.i16': rawFromTypedArray([2], Int16Array.from([-300, 300])),
    'n.i8': rawFromTypedArray([2], Int8Array.from([-128, 127])),
    'n.u8': rawFromTypedArray([2], Uint8Array.from([0, 255])),
    'm.bool': rawFromTypedArray([3], Uint8Array.from([1, 0, 1]), 'bool'),
    scalar: rawFromTypedArray([], Float32Array.from([42])),
    empty: rawFromTypedArray([0, 3], new Float32Array(0)),
    '10': rawFromTypedArray([1], Float32Array.from([10])),
    __proto__x: rawFromTypedArray([1], Float32Array.from([2])),
  };

  test('every dtype, scalar and empty shapes, metadata; data aligned, header padded with spaces', () => {
    const bytes = writeSafetensors(tensors, { b: 'x', a: 'y"é' });
    const headerLen = Number(bytes.readBigUInt64LE(0));
    expect(headerLen % 8).toBe(0);
    const header = bytes.subarray(8, 8 + headerLen).toString('utf8');
    expect(header).toMatch(/^\{"__metadata__":\{"a":"y\\"é","b":"x"\},"n\.i64":/);
    expect(header.trimEnd().endsWith('}')).toBe(true);
    expect(header.slice(header.trimEnd().length)).toMatch(/^ *$/);

    const { tensors: back, metadata } = readSafetensors(bytes);
    expect(metadata).toEqual({ a: 'y"é', b: 'x' });
    // File order: descending dtype alignment as in the reference library, then name.
    expect([...back.keys()]).toEqual([
      'n.i64',
      'w.f64',
      '10',
      '__proto__x',
      'empty',
      'scalar',
      'w.f32',
      'n.i32',
      'b.bf16',
      'h.f16',
      'n.i16',
      'n.i8',
      'n.u8',
      'm.bool',
    ]);
    for (const [name, t] of Object.entries(tensors)) {
      const b = back.get(name)!;
      expect(b.dtype).toBe(t.dtype);
      expect(b.shape).toEqual(t.shape);
      expect(Buffer.from(b.data).equals(Buffer.from(t.data))).toBe(true);
      // Every tensor starts at a multiple of its item size within the file.
      expect((b.data.byteOffset - bytes.byteOffset) % itemSize(b.dtype)).toBe(0);
    }
    expect(Array.from(rawToFloat32(back.get('b.bf16')!))).toEqual([1, -3, 3.140625]);
    expect(Array.from(rawToFloat32(back.get('h.f16')!))).toEqual([1, -2, Infinity, Math.fround(2 ** -24)]);
    expect(Array.from(rawToFloat32(back.get('n.i64')!))).toEqual([-3, 2 ** 40]);
    expect(Array.from(rawToFloat32(back.get('m.bool')!))).toEqual([1, 0, 1]);
    expect(Array.from(rawToFloat32(back.get('scalar')!))).toEqual([42]);
  });

  test('a Map works like a record; no tensors and no metadata give "{}" padded', () => {
    expect(writeSafetensors(new Map()).equals(Buffer.from([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]))).toBe(true);
    const m = new Map([['a', tensors['w.f32']!]]);
    expect(writeSafetensors(m).equals(writeSafetensors({ a: tensors['w.f32']! }))).toBe(true);
  });

  test('refuses a tensor whose data does not match its shape', () => {
    const bad = { dtype: 'float32' as const, shape: [2, 3], data: new Uint8Array(20) };
    expect(() => writeSafetensors({ bad })).toThrow(TorchTypeError);
    expect(() => writeSafetensors({ bad })).toThrow('tensor "bad" has 20 bytes of data but shape [2, 3] float32 needs 24 bytes');
  });
});

describe('readSafetensors refuses corrupt files with precise messages', () => {
  const entry = { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] };

  test('shorter than 8 bytes', () => {
    expectCheckpointError(
      () => readSafetensors(new Uint8Array(5), 'a.safetensors'),
      'a.safetensors: truncated safetensors file: 5 bytes, too short for the 8-byte header length',
    );
  });

  test('header length beyond the file', () => {
    const buf = craft({ w: entry }, 16);
    buf.writeBigUInt64LE(1000n, 0);
    expectCheckpointError(
      () => readSafetensors(buf, 'a.safetensors'),
      `a.safetensors: header length 1000 exceeds the file size (${buf.length} bytes): ` + 'the file is truncated or not a safetensors file',
    );
  });

  test('truncated file: data offsets run past the data section', () => {
    const full = writeSafetensors({ w: rawFromTypedArray([2, 2], Float32Array.from([1, 2, 3, 4])) });
    expectCheckpointError(
      () => readSafetensors(full.subarray(0, full.length - 4), 'official.safetensors'),
      'official.safetensors: tensor "w" has data_offsets [0, 16] beyond the end of the 12-byte data section: ' + 'the file is truncated',
    );
    const fixture = readFileSync(join(FIXTURES, 'official_vits_like.safetensors'));
    expect(() => readSafetensors(fixture.subarray(0, 100_000), 'x')).toThrow(/beyond the end of the .* data section/);
  });

  test('bad JSON, non-object header, bad metadata', () => {
    expectCheckpointError(
      () => readSafetensors(craft('{"w": {"dtype": "F32",', 0), 'b.safetensors'),
      'b.safetensors: the 22-byte header is not valid JSON: the file is corrupt or not a safetensors file',
    );
    expectCheckpointError(() => readSafetensors(craft([1, 2], 0), 'b'), 'b: the header is not a JSON object');
    expectCheckpointError(
      () => readSafetensors(craft({ __metadata__: { format: 1 } }, 0), 'b'),
      'b: "__metadata__" must map strings to strings, but "format" is a number',
    );
  });

  test('unknown dtype', () => {
    expectCheckpointError(
      () => readSafetensors(craft({ w: { ...entry, dtype: 'F8_E4M3' } }, 16), 'c.safetensors'),
      'c.safetensors: tensor "w" has unsupported dtype "F8_E4M3" (supported: F32, F64, BF16, F16, I64, I32, I16, I8, ' + 'U8, BOOL)',
    );
  });

  test('sizes that do not match the shape, bad shapes and offsets', () => {
    expectCheckpointError(
      () => readSafetensors(craft({ 'blocks.0.attn.qkv.weight': { dtype: 'F32', shape: [192, 64], data_offsets: [0, 100] } }, 100), 'official.safetensors'),
      'official.safetensors: tensor "blocks.0.attn.qkv.weight" has data_offsets [0, 100] but shape [192, 64] float32 ' + 'needs 49152 bytes',
    );
    expectCheckpointError(
      () => readSafetensors(craft({ w: { ...entry, shape: [2, -2] } }, 16), 'd'),
      'd: tensor "w" has an invalid shape [2,-2]: expected an array of non-negative integers',
    );
    expectCheckpointError(
      () => readSafetensors(craft({ w: { ...entry, data_offsets: [16, 0] } }, 16), 'd'),
      'd: tensor "w" has invalid data_offsets [16,0]: expected [begin, end], begin <= end',
    );
    expectCheckpointError(() => readSafetensors(craft({ w: 3 }, 16), 'd'), 'd: tensor "w": header entry is not an object');
  });

  test('overlapping tensors', () => {
    const header = { a: entry, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } };
    expectCheckpointError(() => readSafetensors(craft(header, 16), 'e'), 'e: tensors "a" [0, 16] and "b" [8, 16] overlap');
  });
});

describe('file reading and atomic writing', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dinov3-st-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const t = { w: rawFromTypedArray([2], Float32Array.from([1, 2])) };

  test('write then read a file, overwrite it, no temporary files left', async () => {
    const path = join(dir, 'm.safetensors');
    await writeSafetensorsFile(path, t, { format: 'pt' });
    await writeSafetensorsFile(path, { w: rawFromTypedArray([2], Float32Array.from([3, 4])) }, { format: 'pt' });
    const { tensors, metadata } = await readSafetensorsFile(path);
    expect(metadata).toEqual({ format: 'pt' });
    expect(Array.from(rawToFloat32(tensors.get('w')!))).toEqual([3, 4]);
    expect(await readdir(dir)).toEqual(['m.safetensors']);
  });

  test('errors name the file path', async () => {
    const path = join(dir, 'bad.safetensors');
    await writeFile(path, Buffer.alloc(3));
    await expect(readSafetensorsFile(path)).rejects.toThrow(`${path}: truncated safetensors file: 3 bytes, too short for the 8-byte header length`);
  });

  test('a failed rename leaves the target untouched and removes the temporary file', async () => {
    const target = join(dir, 'occupied');
    await mkdir(target);
    await writeFile(join(target, 'keep.txt'), 'x');
    await expect(writeSafetensorsFile(target, t)).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST|EPERM/);
    expect((await readdir(dir)).sort()).toEqual(['occupied']);
    expect(await readdir(target)).toEqual(['keep.txt']);
  });

  test('invalid tensors are refused before the existing file is touched', async () => {
    const path = join(dir, 'm.safetensors');
    await writeSafetensorsFile(path, t);
    const before = await readFile(path);
    const bad = { w: { dtype: 'float32' as const, shape: [3], data: new Uint8Array(8) } };
    await expect(writeSafetensorsFile(path, bad)).rejects.toThrow('tensor "w" has 8 bytes of data');
    expect((await readFile(path)).equals(before)).toBe(true);
    expect(await readdir(dir)).toEqual(['m.safetensors']);
  });

  test('a missing parent directory fails without leaving anything behind', async () => {
    await expect(writeSafetensorsFile(join(dir, 'nope', 'm.safetensors'), t)).rejects.toThrow(/ENOENT/);
    expect(await readdir(dir)).toEqual([]);
  });
});
