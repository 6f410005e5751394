// loadEmoji on a small package laid out as emoji-datasource-google: category labels (Component and images without a
// Google PNG excluded), sort order, every 5th image held out, RGB flattened on white, the alpha channel kept.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, expect, test } from 'vitest';

import { loadEmoji } from '../../../src/demo/ssl_quickstart.js';

const dir = mkdtempSync(join(tmpdir(), 'dinov3-emoji-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A 2×1 RGBA PNG: pixel 0 is (r, g, b, a0), pixel 1 fully transparent black. */
async function png(path: string, r: number, g: number, b: number, a0: number): Promise<void> {
  const raw = Buffer.from([r, g, b, a0, 0, 0, 0, 0]);
  writeFileSync(
    path,
    await sharp(raw, { raw: { width: 2, height: 1, channels: 4 } })
      .png()
      .toBuffer(),
  );
}

test('loadEmoji: labels, order, split, flattening on white and alpha', async () => {
  const img = join(dir, 'img', 'google', '64');
  mkdirSync(img, { recursive: true });
  // sort_order decides the order (not the file order); categories sorted by name: Animals = 0, Flags = 1
  const meta = [
    { image: 'f.png', category: 'Flags', has_img_google: true, sort_order: 6, v: 60 },
    { image: 'a.png', category: 'Animals', has_img_google: true, sort_order: 1, v: 10 },
    { image: 'c.png', category: 'Component', has_img_google: true, sort_order: 0, v: 0 },
    { image: 'b.png', category: 'Flags', has_img_google: true, sort_order: 2, v: 20 },
    { image: 'x.png', category: 'Animals', has_img_google: false, sort_order: 3, v: 30 },
    { image: 'd.png', category: 'Animals', has_img_google: true, sort_order: 4, v: 40 },
    { image: 'e.png', category: 'Flags', has_img_google: true, sort_order: 5, v: 50 },
  ];
  writeFileSync(join(dir, 'emoji.json'), JSON.stringify(meta));
  for (const m of meta) if (m.has_img_google) await png(join(img, m.image), m.v, 0, 255, m.image === 'a.png' ? 128 : 255);
  const e = await loadEmoji(dir);
  expect(e.classes).toEqual(['Animals', 'Flags']);
  expect(e.numClasses).toBe(2);
  // kept in sort order: a(1) b(2) d(4) e(5) f(6); index 4 (f) is held out
  expect(e.trainSet.length).toBe(4);
  expect(e.testSet.length).toBe(1);
  expect([...e.trainSet.labels]).toEqual([0, 1, 0, 1]);
  expect([...e.testSet.labels]).toEqual([1]);
  expect(e.trainData.length).toBe(4);
  const d = e.trainSet.image(2); // d.png: opaque (40, 0, 255), then transparent
  expect([d.width, d.height]).toEqual([2, 1]);
  expect([...d.data]).toEqual([40, 0, 255, 255, 255, 255]);
  expect([...e.trainSet.alpha(2)]).toEqual([255, 0]);
  expect([...e.testSet.image(0).data.subarray(0, 3)]).toEqual([60, 0, 255]);
  // a.png: half-transparent (10, 0, 255) over white ≈ (132, 127, 255)
  const a = e.trainSet.image(0).data;
  expect(Math.abs(a[0]! - 132)).toBeLessThanOrEqual(1);
  expect(Math.abs(a[1]! - 127)).toBeLessThanOrEqual(1);
  expect(a[2]).toBe(255);
  expect([...e.trainSet.alpha(0)]).toEqual([128, 0]);
});
