// Checkpoints larger than 4 GiB: generated as sparse files on the temporary disk (a 4.5 GiB optimizer tensor of
// zeros that takes no disk space, with the backbone's tensors stored after it, beyond the 4 GiB offset). Loading the
// backbone reads only its own tensors, with positional reads: the peak RSS stays far below the file size.
import { closeSync, ftruncateSync, openSync, readFileSync, rmSync, statSync, writeSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';

import { loadBackbone, scope } from '../../../src/index.js';
import { openPth } from '../../../src/io/pth.js';
import { openSafetensors, readSafetensors } from '../../../src/io/safetensors.js';
import type { DType, RawTensor } from '../../../src/io/raw_tensor.js';
import { FIXTURES, PickleWriter } from '../io/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'dinov3-large-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BIG = 4.5 * 2 ** 30; // bytes of the sparse optimizer tensor
const fixture = readSafetensors(readFileSync(join(FIXTURES, 'official_vits_like.safetensors'))).tensors;
const backbone = [...fixture].map(([k, t]) => [`backbone.${k}`, t] as [string, RawTensor]);

/** Peak resident set size of this process so far (Linux), in bytes. */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

/** Writes `chunks` at their offsets; the gaps stay holes (no disk space, read as zeros). */
function writeSparse(path: string, size: number, chunks: [number, Uint8Array][]): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    for (const [pos, data] of chunks) writeSync(fd, data, 0, data.byteLength, pos);
  } finally {
    closeSync(fd);
  }
}

const ST: Record<string, string> = { float32: 'F32' };

function sparseSafetensors(path: string): void {
  const header: Record<string, unknown> = { 'optimizer.exp_avg': { dtype: 'F32', shape: [BIG / 4], data_offsets: [0, BIG] } };
  let pos = BIG;
  for (const [k, t] of backbone) {
    header[k] = { dtype: ST[t.dtype], shape: t.shape, data_offsets: [pos, pos + t.data.byteLength] };
    pos += t.data.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const start = 8 + json.length;
  const chunks: [number, Uint8Array][] = [[0, Buffer.concat([len, json])]];
  let at = start + BIG;
  for (const [, t] of backbone) {
    chunks.push([at, t.data]);
    at += t.data.byteLength;
  }
  writeSparse(path, at, chunks);
}

const STORAGE: Partial<Record<DType, string>> = { float32: 'FloatStorage' };

/** A torch.save zip64 archive: data.pkl, the sparse optimizer storage, then the backbone's storages. */
function sparsePth(path: string): void {
  const w = new PickleWriter().proto(2).emptyDict().mark();
  const storages: { name: string; data?: Uint8Array; size: number }[] = [];
  const tensor = (key: string, dtype: DType, shape: number[], numel: number) => {
    const stride = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    w.global('torch._utils', '_rebuild_tensor_v2').mark();
    w.mark().str('storage').global('torch', STORAGE[dtype]!).str(key).str('cpu');
    const n = Buffer.alloc(8);
    n.writeBigInt64LE(BigInt(numel));
    w.raw(0x8a, 8, ...n); // LONG1: numel beyond 2^31
    w.tuple().raw(0x51).int(0).mark();
    for (const d of shape) w.int(d);
    w.tuple().mark();
    for (const s of stride) w.int(s);
    w.tuple().raw(0x89).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
  };
  w.str('optimizer.exp_avg');
  tensor('0', 'float32', [BIG / 4], BIG / 4);
  storages.push({ name: 'archive/data/0', size: BIG });
  backbone.forEach(([k, t], i) => {
    w.str(k);
    tensor(String(i + 1), t.dtype, t.shape, t.data.byteLength / 4);
    storages.push({ name: `archive/data/${i + 1}`, data: t.data, size: t.data.byteLength });
  });
  const pkl = w.setitems().stop().bytes();
  const entries = [
    { name: 'archive/data.pkl', data: pkl, size: pkl.byteLength },
    ...storages,
    { name: 'archive/byteorder', data: Buffer.from('little'), size: 6 },
  ];

  // Stored entries, 64-byte aligned data, zip64 sizes and offsets everywhere.
  const chunks: [number, Uint8Array][] = [];
  const central: Buffer[] = [];
  let pos = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const pad = (64 - ((pos + 30 + name.length + 4) % 64)) % 64;
    const local = Buffer.alloc(30 + name.length + 4 + pad);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(45, 4);
    local.writeUInt32LE(0xffffffff, 18);
    local.writeUInt32LE(0xffffffff, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(4 + pad, 28);
    name.copy(local, 30);
    local.write('FB', 30 + name.length, 'latin1');
    local.writeUInt16LE(pad, 30 + name.length + 2);
    chunks.push([pos, local]);
    const offset = pos;
    pos += local.length;
    if (e.data) chunks.push([pos, e.data]);
    pos += e.size;
    const cd = Buffer.alloc(46 + name.length + 28);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(45, 4);
    cd.writeUInt16LE(45, 6);
    cd.writeUInt32LE(0xffffffff, 20);
    cd.writeUInt32LE(0xffffffff, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt16LE(28, 30);
    cd.writeUInt32LE(0xffffffff, 42);
    name.copy(cd, 46);
    const x = 46 + name.length;
    cd.writeUInt16LE(1, x);
    cd.writeUInt16LE(24, x + 2);
    cd.writeBigUInt64LE(BigInt(e.size), x + 4);
    cd.writeBigUInt64LE(BigInt(e.size), x + 12);
    cd.writeBigUInt64LE(BigInt(offset), x + 20);
    central.push(cd);
  }
  const cdBytes = Buffer.concat(central);
  const cdOffset = pos;
  const rec = Buffer.alloc(56);
  rec.writeUInt32LE(0x06064b50, 0);
  rec.writeBigUInt64LE(44n, 4);
  rec.writeUInt16LE(45, 12);
  rec.writeUInt16LE(45, 14);
  rec.writeBigUInt64LE(BigInt(entries.length), 24);
  rec.writeBigUInt64LE(BigInt(entries.length), 32);
  rec.writeBigUInt64LE(BigInt(cdBytes.length), 40);
  rec.writeBigUInt64LE(BigInt(cdOffset), 48);
  const locator = Buffer.alloc(20);
  locator.writeUInt32LE(0x07064b50, 0);
  locator.writeBigUInt64LE(BigInt(cdOffset + cdBytes.length), 8);
  locator.writeUInt32LE(1, 16);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(0xffff, 8);
  eocd.writeUInt16LE(0xffff, 10);
  eocd.writeUInt32LE(0xffffffff, 12);
  eocd.writeUInt32LE(0xffffffff, 16);
  const tail = Buffer.concat([cdBytes, rec, locator, eocd]);
  chunks.push([cdOffset, tail]);
  writeSparse(path, cdOffset + tail.length, chunks);
}

describe('checkpoints larger than 4 GiB (sparse files)', () => {
  for (const kind of ['safetensors', 'pth'] as const) {
    test(`a ${kind} file of 4.5 GiB: the backbone loads from beyond the 4 GiB offset with bounded peak memory`, async () => {
      const path = join(dir, `big.${kind}`);
      if (kind === 'safetensors') sparseSafetensors(path);
      else sparsePth(path);
      expect(statSync(path).size).toBeGreaterThan(4.5 * 2 ** 30);
      const peak0 = Math.max(peakRss(), process.memoryUsage().rss);

      const lazy = kind === 'safetensors' ? openSafetensors(path).tensors : openPth(path);
      expect(lazy.get('optimizer.exp_avg')!.shape).toEqual([BIG / 4]);
      for (const [k, t] of backbone) expect(Buffer.from(lazy.get(k)!.read()).equals(Buffer.from(t.data))).toBe(true);

      const { model, report } = await loadBackbone(path);
      try {
        expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
        const w = scope(() => model.stateDict().get('blocks.1.mlp.fc2.weight')!.toFloat32Array());
        const want = fixture.get('blocks.1.mlp.fc2.weight')!;
        expect(Buffer.from(w.buffer).equals(Buffer.from(want.data))).toBe(true);
      } finally {
        model.dispose();
      }
      // The 4.5 GiB tensor was never read: the peak grew by far less than the file.
      expect(peakRss() - peak0).toBeLessThan(300 * 2 ** 20);
    });
  }
});
