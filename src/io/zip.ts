// A minimal, validating ZIP reader for PyTorch checkpoints (torch.save writes an uncompressed zip with 64-byte
// aligned entries, zip64 records and data descriptors). It reads the central directory (zip64 aware), checks every
// offset against the buffer, and returns stored entries as views of the buffer (deflated ones are inflated).
// Encrypted, multi-disk and other compression methods are refused with a CheckpointError.

import { inflateRawSync } from 'node:zlib';
import { CheckpointError } from '../native/errors.js';
import { byteView } from './raw_tensor.js';

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
  readonly #buf: Uint8Array;
  readonly #source: string;

  /** Parses the central directory of `buf`; `source` names the file in error messages. */
  constructor(buf: Uint8Array, source = '<buffer>') {
    this.#buf = buf;
    this.#source = source;
    this.#parse();
  }

  /** Entry names in central-directory order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The uncompressed bytes of an entry: a view of the archive buffer for stored entries. */
  read(name: string): Uint8Array {
    const e = this.entries.get(name);
    if (e === undefined) this.#fail(`entry "${name}" is missing`);
    const entry = e!;
    const raw = byteView(this.#buf, entry.dataOffset, entry.dataOffset + entry.compressedSize);
    if (entry.method === 0) return raw;
    let out: Buffer;
    try {
      out = inflateRawSync(raw);
    } catch (err) {
      this.#fail(`entry "${name}" cannot be inflated (${(err as Error).message})`);
    }
    if (out!.byteLength !== entry.uncompressedSize) {
      this.#fail(`entry "${name}" inflates to ${out!.byteLength} bytes instead of ${entry.uncompressedSize}`);
    }
    return byteView(out!, 0, out!.byteLength);
  }

  #fail(msg: string): never {
    throw new CheckpointError(`${this.#source}: ${msg}`);
  }

  #corrupt(msg: string): never {
    this.#fail(`truncated or corrupt zip archive: ${msg}`);
  }

  #parse(): void {
    const buf = this.#buf;
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const u16 = (o: number): number => dv.getUint16(o, true);
    const u32 = (o: number): number => dv.getUint32(o, true);
    const u64 = (o: number, what: string): number => {
      const v = dv.getBigUint64(o, true);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.#corrupt(`${what} ${v} is too large`);
      return Number(v);
    };
    const len = buf.byteLength;

    // End of central directory: 22 bytes plus a comment of up to 65535 bytes, at the very end.
    let eocd = -1;
    for (let p = len - 22; p >= 0 && p >= len - 22 - 0xffff; p--) {
      if (u32(p) === SIG_EOCD && p + 22 + u16(p + 20) <= len) {
        eocd = p;
        break;
      }
    }
    if (eocd < 0) this.#corrupt('end of central directory record not found');
    if (u16(eocd + 4) !== 0 || u16(eocd + 6) !== 0) this.#fail('multi-disk zip archives are not supported');
    let count = u16(eocd + 10);
    let cdSize = u32(eocd + 12);
    let cdOffset = u32(eocd + 16);
    let cdEnd = eocd;

    // Zip64: a locator right before the EOCD points at the zip64 end of central directory record.
    const loc = eocd - 20;
    if (loc >= 0 && u32(loc) === SIG_EOCD64_LOCATOR) {
      const rec = u64(loc + 8, 'zip64 end of central directory offset');
      if (rec + 56 > loc || u32(rec) !== SIG_EOCD64) {
        this.#corrupt('zip64 end of central directory record not found where its locator points');
      }
      count = u64(rec + 32, 'entry count');
      cdSize = u64(rec + 40, 'central directory size');
      cdOffset = u64(rec + 48, 'central directory offset');
      cdEnd = rec;
    } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      this.#corrupt('zip64 end of central directory locator is missing');
    }
    if (cdOffset + cdSize > cdEnd) {
      this.#corrupt(`central directory [${cdOffset}, ${cdOffset + cdSize}) runs past its end record at ${cdEnd}`);
    }

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
      if (lh + 30 > cdOffset || u32(lh) !== SIG_LOCAL) {
        this.#corrupt(`entry "${name}": no local file header at offset ${lh}`);
      }
      const dataOffset = lh + 30 + u16(lh + 26) + u16(lh + 28);
      if (dataOffset + compressedSize > cdOffset) {
        this.#corrupt(
          `entry "${name}" data [${dataOffset}, ${dataOffset + compressedSize}) overlaps the central directory ` +
            `at ${cdOffset}`,
        );
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

/** Parses a zip archive held in `buf` (see ZipArchive). */
export function readZip(buf: Uint8Array, source = '<buffer>'): ZipArchive {
  return new ZipArchive(buf, source);
}
