// A minimal, validating ZIP reader for PyTorch checkpoints (torch.save writes an uncompressed zip with 64-byte
// aligned entries, zip64 records and data descriptors). It reads the central directory (zip64 aware) through
// positional reads of a ByteSource (a file of any size, or a buffer), checks every offset against the archive, and
// returns stored entries as reads of their byte range (deflated ones are inflated, never beyond their declared size).
// Encrypted, multi-disk and other compression methods are refused with a CheckpointError.

import { inflateRawSync } from 'node:zlib';
import { CheckpointError } from '../native/errors.js';
import { BufferSource, type ByteSource } from './random_access.js';

/** Deflate cannot expand data by more than about 1032:1; an entry declaring more lies about its size. */
const MAX_DEFLATE_RATIO = 1032;

export interface ZipReadOptions {
  /** The size the caller needs: an entry declaring another size is refused before anything is inflated. */
  expectSize?: number;
  /** The largest entry the caller accepts. */
  maxSize?: number;
}

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  compressedSize: number;
  uncompressedSize: number;
  crc32: number;
  localHeaderOffset: number;
  /** Offset of the entry's (compressed) bytes in the archive buffer. */
  dataOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;

/** True when `buf` starts like a zip archive. */
export function isZip(buf: Uint8Array): boolean {
  return buf.byteLength >= 4 && buf[0] === 0x50 && buf[1] === 0x4b && buf[2] === 0x03 && buf[3] === 0x04;
}

export class ZipArchive {
  readonly entries = new Map<string, ZipEntry>();
  readonly #src: ByteSource;
  readonly #source: string;

  /** Parses the central directory of `buf` (a buffer, or a ByteSource such as a FileSource); `source` names the file
   * in error messages. */
  constructor(buf: Uint8Array | ByteSource, source?: string) {
    this.#src = buf instanceof Uint8Array ? new BufferSource(buf, source ?? '<buffer>') : buf;
    this.#source = source ?? this.#src.name;
    this.#parse();
  }

  /** The byte range of a stored (uncompressed) entry in the archive, for reading it piecewise. */
  storedRange(name: string): { offset: number; length: number } | undefined {
    const e = this.entries.get(name);
    return e !== undefined && e.method === 0 ? { offset: e.dataOffset, length: e.uncompressedSize } : undefined;
  }

  /** Entry names in central-directory order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The uncompressed bytes of an entry (a view of the archive for stored entries held in memory). Sizes are checked
   * before anything is read or inflated, and inflating stops at the declared size. */
  read(name: string, o: ZipReadOptions = {}): Uint8Array {
    const e = this.entries.get(name);
    if (e === undefined) this.#fail(`entry "${name}" is missing`);
    const entry = e!;
    if (o.expectSize !== undefined && entry.uncompressedSize !== o.expectSize) {
      this.#fail(`entry "${name}" declares ${entry.uncompressedSize} bytes where ${o.expectSize} are expected`);
    }
    if (o.maxSize !== undefined && entry.uncompressedSize > o.maxSize) {
      this.#fail(`entry "${name}" declares ${entry.uncompressedSize} bytes, more than the ${o.maxSize} accepted`);
    }
    const raw = this.#src.read(entry.dataOffset, entry.compressedSize);
    if (entry.method === 0) return raw;
    if (entry.uncompressedSize > MAX_DEFLATE_RATIO * entry.compressedSize + 64) {
      this.#fail(
        `entry "${name}" declares ${entry.uncompressedSize} bytes from ${entry.compressedSize} deflated bytes, ` +
          'more than deflate can produce (a zip bomb or a corrupt size)',
      );
    }
    let out: Buffer;
    try {
      out = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.uncompressedSize) });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ERR_BUFFER_TOO_LARGE') {
        this.#fail(`entry "${name}" inflates to more than its declared ${entry.uncompressedSize} bytes`);
      }
      this.#fail(`entry "${name}" cannot be inflated (${(err as Error).message})`);
    }
    if (out!.byteLength !== entry.uncompressedSize) {
      this.#fail(`entry "${name}" inflates to ${out!.byteLength} bytes instead of ${entry.uncompressedSize}`);
    }
    return new Uint8Array(out!.buffer, out!.byteOffset, out!.byteLength);
  }

  #fail(msg: string): never {
    throw new CheckpointError(`${this.#source}: ${msg}`);
  }

  #corrupt(msg: string): never {
    this.#fail(`truncated or corrupt zip archive: ${msg}`);
  }

  #parse(): void {
    const src = this.#src;
    const len = src.size;
    // A little-endian reader over a block of the archive that starts at `base`.
    const block = (base: number, bytes: Uint8Array) => {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const inside = (o: number, n: number) => {
        if (o < base || o + n > base + bytes.byteLength) this.#corrupt(`record at offset ${o} runs past its block`);
        return o - base;
      };
      return {
        u16: (o: number): number => dv.getUint16(inside(o, 2), true),
        u32: (o: number): number => dv.getUint32(inside(o, 4), true),
        u64: (o: number, what: string): number => {
          const v = dv.getBigUint64(inside(o, 8), true);
          if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.#corrupt(`${what} ${v} is too large`);
          return Number(v);
        },
        bytes,
        base,
      };
    };

    // End of central directory: 22 bytes plus a comment of up to 65535 bytes, at the very end (plus room for the
    // zip64 locator and record before it).
    const tailLen = Math.min(len, 22 + 0xffff + 20 + 56);
    const tail = block(len - tailLen, src.read(len - tailLen, tailLen));
    let eocd = -1;
    for (let p = len - 22; p >= tail.base && p >= len - 22 - 0xffff; p--) {
      if (tail.u32(p) === SIG_EOCD && p + 22 + tail.u16(p + 20) <= len) {
        eocd = p;
        break;
      }
    }
    if (eocd < 0) this.#corrupt('end of central directory record not found');
    if (tail.u16(eocd + 4) !== 0 || tail.u16(eocd + 6) !== 0) this.#fail('multi-disk zip archives are not supported');
    let count = tail.u16(eocd + 10);
    let cdSize = tail.u32(eocd + 12);
    let cdOffset = tail.u32(eocd + 16);
    let cdEnd = eocd;

    // Zip64: a locator right before the EOCD points at the zip64 end of central directory record.
    const loc = eocd - 20;
    if (loc >= tail.base && tail.u32(loc) === SIG_EOCD64_LOCATOR) {
      const rec = tail.u64(loc + 8, 'zip64 end of central directory offset');
      if (rec + 56 > loc) this.#corrupt('zip64 end of central directory record not found where its locator points');
      const r = block(rec, src.read(rec, 56));
      if (r.u32(rec) !== SIG_EOCD64) {
        this.#corrupt('zip64 end of central directory record not found where its locator points');
      }
      count = r.u64(rec + 32, 'entry count');
      cdSize = r.u64(rec + 40, 'central directory size');
      cdOffset = r.u64(rec + 48, 'central directory offset');
      cdEnd = rec;
    } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      this.#corrupt('zip64 end of central directory locator is missing');
    }
    if (cdOffset + cdSize > cdEnd) {
      this.#corrupt(`central directory [${cdOffset}, ${cdOffset + cdSize}) runs past its end record at ${cdEnd}`);
    }
    if (count > cdSize / 46) this.#corrupt(`central directory entry ${Math.floor(cdSize / 46)} is invalid`);
    const cd = block(cdOffset, src.read(cdOffset, cdSize));
    const { u16, u32, u64 } = cd;
    const buf = { subarray: (a: number, b: number) => cd.bytes.subarray(a - cdOffset, b - cdOffset) };

    const decoder = new TextDecoder('utf-8');
    let p = cdOffset;
    const end = cdOffset + cdSize;
    for (let i = 0; i < count; i++) {
      if (p + 46 > end || u32(p) !== SIG_CENTRAL) this.#corrupt(`central directory entry ${i} is invalid`);
      const flags = u16(p + 8);
      const method = u16(p + 10);
      const crc32 = u32(p + 16);
      let compressedSize = u32(p + 20);
      let uncompressedSize = u32(p + 24);
      const nameLen = u16(p + 28);
      const extraLen = u16(p + 30);
      const commentLen = u16(p + 32);
      let localHeaderOffset = u32(p + 42);
      const next = p + 46 + nameLen + extraLen + commentLen;
      if (next > end) this.#corrupt(`central directory entry ${i} runs past the directory`);
      const name = decoder.decode(buf.subarray(p + 46, p + 46 + nameLen));

      // Zip64 extended information: the 8-byte values of the fields that are saturated, in this order.
      let x = p + 46 + nameLen;
      const xEnd = x + extraLen;
      while (x + 4 <= xEnd) {
        const id = u16(x);
        const size = u16(x + 2);
        if (x + 4 + size > xEnd) this.#corrupt(`entry "${name}" has a malformed extra field`);
        if (id === 0x0001) {
          let q = x + 4;
          const take = (what: string): number => {
            if (q + 8 > x + 4 + size) this.#corrupt(`entry "${name}" has a short zip64 extra field`);
            const v = u64(q, what);
            q += 8;
            return v;
          };
          if (uncompressedSize === 0xffffffff) uncompressedSize = take('uncompressed size');
          if (compressedSize === 0xffffffff) compressedSize = take('compressed size');
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take('local header offset');
        }
        x += 4 + size;
      }

      if (flags & 0x1) this.#fail(`entry "${name}" is encrypted`);
      if (method !== 0 && method !== 8) {
        this.#fail(`entry "${name}" uses compression method ${method} (only stored and deflate are supported)`);
      }
      if (method === 0 && compressedSize !== uncompressedSize) {
        this.#corrupt(`stored entry "${name}" has compressed size ${compressedSize} != size ${uncompressedSize}`);
      }
      // The local header repeats the name and has its own extra field (torch pads it to align the data).
      const lh = localHeaderOffset;
      const local = lh + 30 > cdOffset ? undefined : block(lh, src.read(lh, 30));
      if (local === undefined || local.u32(lh) !== SIG_LOCAL) {
        this.#corrupt(`entry "${name}": no local file header at offset ${lh}`);
      }
      const dataOffset = lh + 30 + local!.u16(lh + 26) + local!.u16(lh + 28);
      if (dataOffset + compressedSize > cdOffset) {
        this.#corrupt(`entry "${name}" data [${dataOffset}, ${dataOffset + compressedSize}) overlaps the central directory ` + `at ${cdOffset}`);
      }
      if (this.entries.has(name)) this.#corrupt(`entry "${name}" appears twice`);
      this.entries.set(name, {
        name,
        method,
        compressedSize,
        uncompressedSize,
        crc32,
        localHeaderOffset,
        dataOffset,
      });
      p = next;
    }
  }
}

/** Parses a zip archive held in `buf` or read through a ByteSource (see ZipArchive). */
export function readZip(buf: Uint8Array | ByteSource, source?: string): ZipArchive {
  return new ZipArchive(buf, source);
}
