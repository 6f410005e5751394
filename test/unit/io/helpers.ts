// Test helpers for the checkpoint readers: a small zip writer (stored or deflated entries, torch-style alignment
// padding, optional zip64 records) and a pickle writer that emits what torch.save emits for state dicts.

import { deflateRawSync } from 'node:zlib';

export const FIXTURES = new URL('../../fixtures/reference/', import.meta.url).pathname;

function crc32(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of data) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

export interface ZipFile {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
}

/** Builds a zip archive. `align` pads the local extra field (as torch does, with an "FB" field) so that entry data
 * start at multiples of it; `zip64` writes zip64 extra fields and end records with saturated 32-bit fields. */
export function makeZip(files: ZipFile[], opts: { align?: number; zip64?: boolean } = {}): Buffer {
  const chunks: Buffer[] = [];
  const central: Buffer[] = [];
  let pos = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const body = f.deflate ? deflateRawSync(f.data) : Buffer.from(f.data);
    let extra = Buffer.alloc(0);
    if (opts.align !== undefined) {
      const start = pos + 30 + name.length + 4;
      const pad = (opts.align - (start % opts.align)) % opts.align;
      extra = Buffer.alloc(4 + pad);
      extra.write('FB', 0, 'latin1');
      extra.writeUInt16LE(pad, 2);
    }
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(opts.zip64 ? 45 : 20, 4);
    local.writeUInt16LE(0x0800, 6);
    local.writeUInt16LE(f.deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc32(f.data), 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(f.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    const offset = pos;
    chunks.push(local, name, extra, body);
    pos += local.length + name.length + extra.length + body.length;

    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(opts.zip64 ? 45 : 20, 4);
    cd.writeUInt16LE(opts.zip64 ? 45 : 20, 6);
    cd.writeUInt16LE(0x0800, 8);
    cd.writeUInt16LE(f.deflate ? 8 : 0, 10);
    cd.writeUInt32LE(crc32(f.data), 16);
    let cdExtra = Buffer.alloc(0);
    if (opts.zip64) {
      cd.writeUInt32LE(0xffffffff, 20);
      cd.writeUInt32LE(0xffffffff, 24);
      cd.writeUInt32LE(0xffffffff, 42);
      cdExtra = Buffer.alloc(28);
      cdExtra.writeUInt16LE(1, 0);
      cdExtra.writeUInt16LE(24, 2);
      cdExtra.writeBigUInt64LE(BigInt(f.data.length), 4);
      cdExtra.writeBigUInt64LE(BigInt(body.length), 12);
      cdExtra.writeBigUInt64LE(BigInt(offset), 20);
    } else {
      cd.writeUInt32LE(body.length, 20);
      cd.writeUInt32LE(f.data.length, 24);
      cd.writeUInt32LE(offset, 42);
    }
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt16LE(cdExtra.length, 30);
    central.push(cd, name, cdExtra);
  }
  const cdOffset = pos;
  const cdBytes = Buffer.concat(central);
  chunks.push(cdBytes);
  pos += cdBytes.length;
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  if (opts.zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(files.length), 24);
    rec.writeBigUInt64LE(BigInt(files.length), 32);
    rec.writeBigUInt64LE(BigInt(cdBytes.length), 40);
    rec.writeBigUInt64LE(BigInt(cdOffset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(BigInt(pos), 8);
    locator.writeUInt32LE(1, 16);
    chunks.push(rec, locator);
    eocd.writeUInt16LE(0xffff, 8);
    eocd.writeUInt16LE(0xffff, 10);
    eocd.writeUInt32LE(0xffffffff, 12);
    eocd.writeUInt32LE(0xffffffff, 16);
  } else {
    eocd.writeUInt16LE(files.length, 8);
    eocd.writeUInt16LE(files.length, 10);
    eocd.writeUInt32LE(cdBytes.length, 12);
    eocd.writeUInt32LE(cdOffset, 16);
  }
  chunks.push(eocd);
  return Buffer.concat(chunks);
}

/** Low-level pickle writer (protocol 2 opcodes, as torch.save uses). */
export class PickleWriter {
  private readonly out: number[] = [];
  raw(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }
  proto(n = 2): this {
    return this.raw(0x80, n);
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return this.raw(0x58, ...len, ...b);
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.raw(0x4b, n);
    if (n >= 0 && n < 65536) return this.raw(0x4d, n & 0xff, n >> 8);
    const b = Buffer.alloc(4);
    b.writeInt32LE(n);
    return this.raw(0x4a, ...b);
  }
  global(module: string, name: string): this {
    return this.raw(0x63, ...Buffer.from(`${module}\n${name}\n`, 'utf8'));
  }
  mark(): this {
    return this.raw(0x28);
  }
  tuple(): this {
    return this.raw(0x74);
  }
  emptyTuple(): this {
    return this.raw(0x29);
  }
  emptyDict(): this {
    return this.raw(0x7d);
  }
  setitems(): this {
    return this.raw(0x75);
  }
  reduce(): this {
    return this.raw(0x52);
  }
  stop(): this {
    return this.raw(0x2e);
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

export interface TensorSpec {
  tensor: { type: string; key: string; numel: number };
  offset: number;
  shape: number[];
  stride: number[];
  parameter?: boolean;
}
export type Spec = number | string | boolean | null | TensorSpec | { dict: [string, Spec][]; ordered?: boolean };

/** Writes `spec` the way torch.save pickles a state dict. */
export function writeSpec(w: PickleWriter, spec: Spec): void {
  if (spec === null) w.raw(0x4e);
  else if (typeof spec === 'boolean') w.raw(spec ? 0x88 : 0x89);
  else if (typeof spec === 'number') w.int(spec);
  else if (typeof spec === 'string') w.str(spec);
  else if ('dict' in spec) {
    if (spec.ordered) w.global('collections', 'OrderedDict').emptyTuple().reduce();
    else w.emptyDict();
    w.mark();
    for (const [k, v] of spec.dict) {
      w.str(k);
      writeSpec(w, v);
    }
    w.setitems();
  } else {
    if (spec.parameter) w.global('torch._utils', '_rebuild_parameter').mark();
    w.global('torch._utils', '_rebuild_tensor_v2').mark();
    w.mark().str('storage').global('torch', spec.tensor.type).str(spec.tensor.key).str('cpu').int(spec.tensor.numel);
    w.tuple().raw(0x51); // BINPERSID
    w.int(spec.offset);
    w.mark();
    for (const d of spec.shape) w.int(d);
    w.tuple().mark();
    for (const s of spec.stride) w.int(s);
    w.tuple().raw(0x89); // requires_grad False
    w.global('collections', 'OrderedDict').emptyTuple().reduce(); // backward hooks
    w.tuple().reduce();
    if (spec.parameter) w.raw(0x88).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
  }
}

/** A torch.save-style zip: `<prefix>/data.pkl`, `<prefix>/byteorder`, `<prefix>/data/<key>`. */
export function makePth(
  spec: Spec,
  storages: Record<string, Uint8Array>,
  opts: { prefix?: string; byteorder?: string | null; pickle?: Uint8Array } = {},
): Buffer {
  const prefix = opts.prefix ?? 'archive';
  let pkl = opts.pickle;
  if (pkl === undefined) {
    const w = new PickleWriter().proto(2);
    writeSpec(w, spec);
    pkl = w.stop().bytes();
  }
  const files: ZipFile[] = [{ name: `${prefix}/data.pkl`, data: pkl }];
  if (opts.byteorder !== null) {
    files.push({ name: `${prefix}/byteorder`, data: Buffer.from(opts.byteorder ?? 'little') });
  }
  for (const [key, data] of Object.entries(storages)) files.push({ name: `${prefix}/data/${key}`, data });
  files.push({ name: `${prefix}/version`, data: Buffer.from('3\n') });
  return makeZip(files, { align: 64 });
}

export function f32bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

export function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}
