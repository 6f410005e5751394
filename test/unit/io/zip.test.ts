import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { CheckpointError } from '../../../src/native/errors.js';
import { isZip, readZip } from '../../../src/io/zip.js';
import { FIXTURES, makeZip } from './helpers.js';

const pth = readFileSync(join(FIXTURES, 'official_vits_like.pth'));

function zipError(buf: Uint8Array): string {
  try {
    readZip(buf, 'z.pth');
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointError);
    return (e as Error).message;
  }
  throw new Error('expected a CheckpointError');
}

describe('readZip', () => {
  test('reads the torch.save archive of the fixture (zip64 end records, 64-byte aligned entries)', () => {
    expect(isZip(pth)).toBe(true);
    const zip = readZip(pth, 'official_vits_like.pth');
    const names = zip.names();
    expect(names.slice(0, 4)).toEqual([
      'official_vits_like/data.pkl',
      'official_vits_like/.format_version',
      'official_vits_like/.storage_alignment',
      'official_vits_like/byteorder',
    ]);
    expect(names.filter((n) => n.startsWith('official_vits_like/data/'))).toHaveLength(38);
    expect(new TextDecoder().decode(zip.read('official_vits_like/byteorder'))).toBe('little');
    expect(new TextDecoder().decode(zip.read('official_vits_like/.storage_alignment'))).toBe('64');
    const pkl = zip.read('official_vits_like/data.pkl');
    expect([pkl[0], pkl[1], pkl[pkl.length - 1]]).toEqual([0x80, 0x02, 0x2e]);
    for (const name of names.filter((n) => n.includes('/data/'))) {
      const e = zip.entries.get(name)!;
      expect(e.method).toBe(0);
      expect(e.dataOffset % 64).toBe(0);
      // Stored entries are views of the archive, not copies.
      expect(zip.read(name).buffer).toBe(pth.buffer);
    }
  });

  test('stored, deflated and zip64 archives', () => {
    const big = new Uint8Array(5000).map((_, i) => i % 7);
    for (const zip64 of [false, true]) {
      const buf = makeZip(
        [
          { name: 'a/stored', data: Uint8Array.from([1, 2, 3]) },
          { name: 'a/deflated', data: big, deflate: true },
          { name: 'a/empty', data: new Uint8Array(0) },
          { name: 'a/ünï', data: Uint8Array.from([9]) },
        ],
        { zip64, align: 64 },
      );
      const zip = readZip(buf);
      expect(zip.names()).toEqual(['a/stored', 'a/deflated', 'a/empty', 'a/ünï']);
      expect(Array.from(zip.read('a/stored'))).toEqual([1, 2, 3]);
      expect(zip.entries.get('a/deflated')!.method).toBe(8);
      expect(zip.entries.get('a/deflated')!.compressedSize).toBeLessThan(5000);
      expect(Buffer.from(zip.read('a/deflated')).equals(Buffer.from(big))).toBe(true);
      expect(zip.read('a/empty').byteLength).toBe(0);
      expect(Array.from(zip.read('a/ünï'))).toEqual([9]);
      expect(zip.has('a/missing')).toBe(false);
      expect(() => zip.read('a/missing')).toThrow('<buffer>: entry "a/missing" is missing');
    }
  });

  test('truncated archives', () => {
    expect(zipError(pth.subarray(0, pth.length - 10))).toBe('z.pth: truncated or corrupt zip archive: end of central directory record not found');
    expect(zipError(pth.subarray(0, 300_000))).toBe('z.pth: truncated or corrupt zip archive: end of central directory record not found');
    expect(zipError(new Uint8Array(0))).toBe('z.pth: truncated or corrupt zip archive: end of central directory record not found');
  });

  test('corrupt offsets and sizes', () => {
    const good = makeZip([{ name: 'x', data: Uint8Array.from([1, 2, 3, 4]) }]);
    const cdOffset = good.readUInt32LE(good.length - 6);

    const badCd = Buffer.from(good);
    badCd.writeUInt32LE(cdOffset + 1000, badCd.length - 6);
    expect(zipError(badCd)).toBe(
      `z.pth: truncated or corrupt zip archive: central directory [${cdOffset + 1000}, ${cdOffset + 1000 + 47}) ` +
        `runs past its end record at ${good.length - 22}`,
    );

    const badLocal = Buffer.from(good);
    badLocal.writeUInt32LE(3, cdOffset + 42);
    expect(zipError(badLocal)).toBe('z.pth: truncated or corrupt zip archive: entry "x": no local file header at offset 3');

    const badSize = Buffer.from(good);
    badSize.writeUInt32LE(400, cdOffset + 20);
    badSize.writeUInt32LE(400, cdOffset + 24);
    expect(zipError(badSize)).toBe('z.pth: truncated or corrupt zip archive: entry "x" data [31, 431) overlaps the central directory at 35');

    const badCount = Buffer.from(good);
    badCount.writeUInt16LE(2, badCount.length - 12);
    expect(zipError(badCount)).toBe('z.pth: truncated or corrupt zip archive: central directory entry 1 is invalid');
  });

  test('unsupported features', () => {
    const good = makeZip([{ name: 'x', data: Uint8Array.from([1, 2, 3, 4]) }]);
    const cdOffset = good.readUInt32LE(good.length - 6);
    const bzip = Buffer.from(good);
    bzip.writeUInt16LE(12, cdOffset + 10);
    expect(zipError(bzip)).toBe('z.pth: entry "x" uses compression method 12 (only stored and deflate are supported)');
    const encrypted = Buffer.from(good);
    encrypted.writeUInt16LE(0x0801, cdOffset + 8);
    expect(zipError(encrypted)).toBe('z.pth: entry "x" is encrypted');
  });
});
