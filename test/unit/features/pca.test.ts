import { join } from 'node:path';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

import sharp from 'sharp';
import { afterAll, describe, expect, test } from 'vitest';

import { memory, scope, tensor } from '../../../src/index.js';
import { decodeImage } from '../../../src/data/index.js';
import { linalgSvd, pcaFit, pcaImage, pcaProject, pcaRgb, renderPca } from '../../../src/features/index.js';
import { CHELSEA, loadTinyModel } from './helpers.js';

/** Deterministic PRNG (mulberry32) and Box-Muller normals. */
function rng(seed: number) {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
}

/**
 * Patch features on an h×w grid: three clusters (left / middle / right thirds of the columns) with distinct centres,
 * plus a vertical gradient along a fourth direction and small noise, so that the first three principal components
 * have clearly separated variances.
 */
function clusteredFeatures(h: number, w: number, D: number, seed = 0) {
  const g = rng(seed);
  const dir = () => Float64Array.from({ length: D }, g);
  const centres = [dir(), dir(), dir()].map((c) => c.map((v) => v * 3));
  const grad = dir();
  const cluster = (x: number) => Math.min(2, Math.floor((3 * x) / w));
  const data = new Float64Array(h * w * D);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let d = 0; d < D; d++) data[(y * w + x) * D + d] = centres[cluster(x)]![d]! + grad[d]! * (y / (h - 1) - 0.5) * 1.5 + 0.02 * g();
  return { data, cluster };
}

/** Reference PCA in plain JS: covariance + power iteration with deflation (float64). */
function powerIterationPca(data: Float64Array, P: number, D: number, k: number) {
  const mean = new Float64Array(D);
  for (let p = 0; p < P; p++) for (let d = 0; d < D; d++) mean[d]! += data[p * D + d]! / P;
  const cov = new Float64Array(D * D);
  for (let p = 0; p < P; p++)
    for (let i = 0; i < D; i++) {
      const xi = data[p * D + i]! - mean[i]!;
      for (let j = 0; j < D; j++) cov[i * D + j]! += (xi * (data[p * D + j]! - mean[j]!)) / (P - 1);
    }
  const comps: Float64Array[] = [];
  const vars: number[] = [];
  for (let c = 0; c < k; c++) {
    let v = Float64Array.from({ length: D }, (_, i) => Math.sin(i + 1 + c));
    let lambda = 0;
    for (let it = 0; it < 2000; it++) {
      const nv = new Float64Array(D);
      for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) nv[i]! += cov[i * D + j]! * v[j]!;
      lambda = Math.hypot(...nv);
      v = nv.map((x) => x / lambda);
    }
    for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) cov[i * D + j]! -= lambda * v[i]! * v[j]!; // deflate
    comps.push(v);
    vars.push(lambda);
  }
  const scores = (p: number, c: number) => comps[c]!.reduce((s, vd, d) => s + vd * (data[p * D + d]! - mean[d]!), 0);
  return { comps, vars, scores };
}

describe('pcaFit / pcaProject', () => {
  for (const [name, h, w, D] of [
    ['covariance path (P ≥ D)', 6, 9, 16],
    ['Gram path (P < D)', 3, 6, 40],
  ] as const) {
    test(`matches power iteration on the covariance: ${name}`, () => {
      const before = memory().liveTensors;
      const P = h * w;
      const { data } = clusteredFeatures(h, w, D, 7);
      const ref = powerIterationPca(data, P, D, 3);
      scope(() => {
        const x = tensor(Float32Array.from(data), { shape: [h, w, D] });
        const fit = pcaFit(x, 3);
        expect(fit.components.shape).toEqual([3, D]);
        const comps = fit.components.data() as Float32Array;
        const vars = fit.explainedVariance.data() as Float32Array;
        const scores = pcaProject(x, fit); // [h, w, 3]
        expect(scores.shape).toEqual([h, w, 3]);
        const s = scores.data() as Float32Array;
        for (let c = 0; c < 3; c++) {
          expect(vars[c]! / ref.vars[c]!).toBeCloseTo(1, 4);
          const dot = ref.comps[c]!.reduce((acc, v, d) => acc + v * comps[c * D + d]!, 0);
          expect(Math.abs(dot)).toBeCloseTo(1, 4);
          const sign = Math.sign(dot);
          for (let p = 0; p < P; p++) expect(s[p * 3 + c]!).toBeCloseTo(sign * ref.scores(p, c), 3);
        }
        // Sign convention: the largest-magnitude score of each component is positive, also for the negated data
        // (same covariance and eigenvectors, opposite scores).
        const neg = x.neg();
        for (const sc of [s, pcaProject(neg, pcaFit(neg, 3)).data() as Float32Array]) {
          for (let c = 0; c < 3; c++) {
            let best = 0;
            for (let p = 0; p < P; p++) if (Math.abs(sc[p * 3 + c]!) > Math.abs(best)) best = sc[p * 3 + c]!;
            expect(best).toBeGreaterThan(0);
          }
        }
        // Cross-check against the SVD of the centred data: variance = S² / (P − 1).
        const xc = x.reshape([P, D]).sub(fit.mean);
        const S = linalgSvd(xc).S.data() as Float32Array;
        for (let c = 0; c < 3; c++) expect(vars[c]! / ((S[c]! * S[c]!) / (P - 1))).toBeCloseTo(1, 4);
      });
      expect(memory().liveTensors).toBe(before);
    });
  }

  test('rejects too few samples or components', () => {
    scope(() => {
      expect(() => pcaFit(tensor([[1, 2, 3]]))).toThrow('pcaFit: need at least 2 samples and 1 ≤ k ≤ min(samples, dims); received 1 samples of dim 3, k = 3');
      expect(() =>
        pcaFit(
          tensor([
            [1, 2],
            [3, 4],
          ]),
          3,
        ),
      ).toThrow('received 2 samples of dim 2, k = 3');
      expect(() =>
        pcaRgb(
          tensor([
            [1, 2],
            [3, 4],
          ]),
        ),
      ).toThrow('pcaRgb: expected patch features [h, w, D], received float32 Tensor [2, 2]');
    });
  });
});

describe('pcaRgb', () => {
  test('three feature clusters become three distinct colours; every channel spans [0, 1]', () => {
    const h = 6;
    const w = 9;
    const D = 32;
    const { data, cluster } = clusteredFeatures(h, w, D, 3);
    scope(() => {
      const rgb = pcaRgb(tensor(Float32Array.from(data), { shape: [h, w, D] }));
      expect(rgb.shape).toEqual([h, w, 3]);
      const v = rgb.data() as Float32Array;
      for (let c = 0; c < 3; c++) {
        const ch = Array.from({ length: h * w }, (_, p) => v[p * 3 + c]!);
        expect(Math.min(...ch)).toBeCloseTo(0, 6);
        expect(Math.max(...ch)).toBeCloseTo(1, 6);
      }
      // Mean colour per cluster, and the spread inside a cluster.
      const means = [0, 1, 2].map(() => [0, 0, 0]);
      const counts = [0, 0, 0];
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const k = cluster(x);
          counts[k]!++;
          for (let c = 0; c < 3; c++) means[k]![c]! += v[(y * w + x) * 3 + c]!;
        }
      means.forEach((m, k) => m.forEach((_, c) => (m[c]! /= counts[k]!)));
      // With the gradient direction left out (the first two components), the clusters are flat colours.
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) for (let c = 0; c < 2; c++) expect(Math.abs(v[(y * w + x) * 3 + c]! - means[cluster(x)]![c]!)).toBeLessThan(0.05);
      const dist = (a: number[], b: number[]) => Math.hypot(a[0]! - b[0]!, a[1]! - b[1]!, a[2]! - b[2]!);
      expect(dist(means[0]!, means[1]!)).toBeGreaterThan(0.4);
      expect(dist(means[0]!, means[2]!)).toBeGreaterThan(0.4);
      expect(dist(means[1]!, means[2]!)).toBeGreaterThan(0.4);
      // The third component is the vertical gradient: top row dark, bottom row bright (or the reverse).
      const row = (y: number) => Array.from({ length: w }, (_, x) => v[(y * w + x) * 3 + 2]!).reduce((a, b) => a + b) / w;
      expect(Math.abs(row(0) - row(h - 1))).toBeGreaterThan(0.9);
    });
  });

  test('a shared fit projects another image with the same colours', () => {
    const { data } = clusteredFeatures(6, 9, 16, 5);
    scope(() => {
      const x = tensor(Float32Array.from(data), { shape: [6, 9, 16] });
      const fit = pcaFit(x, 3);
      expect(Array.from(pcaRgb(x, fit).data() as Float32Array)).toEqual(Array.from(pcaRgb(x).data() as Float32Array));
      expect(() => pcaRgb(x, pcaFit(x, 2))).toThrow('pcaRgb: expected a 3-component fit, received 2 components');
    });
  });
});

describe('rendering', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'dinov3-pca-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  test('renderPca upsamples (nearest: one flat block per patch) and composites beside the input', async () => {
    const rgb = tensor([
      [
        [1, 0, 0],
        [0, 1, 0],
      ],
      [
        [0, 0, 1],
        [1, 1, 1],
      ],
    ]); // [2, 2, 3]
    const { png, width, height } = await renderPca(rgb, { width: 4, height: 4 });
    expect([width, height]).toEqual([4, 4]);
    const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const px = (x: number, y: number) => Array.from(data.subarray((y * 4 + x) * 3, (y * 4 + x) * 3 + 3));
    expect([px(0, 0), px(1, 1), px(2, 0), px(3, 1), px(0, 2), px(3, 3)]).toEqual([
      [255, 0, 0],
      [255, 0, 0],
      [0, 255, 0],
      [0, 255, 0],
      [0, 0, 255],
      [255, 255, 255],
    ]);
    const beside = { data: new Uint8Array(4 * 4 * 3).fill(7), width: 4, height: 4 };
    const both = await renderPca(rgb, { beside, upsample: 'bilinear' });
    expect([both.width, both.height]).toEqual([8, 4]);
    const b = await sharp(both.png).raw().toBuffer({ resolveWithObject: true });
    expect(b.info.width).toBe(8);
    expect(Array.from(b.data.subarray(0, 3))).toEqual([7, 7, 7]);
    expect(Array.from(b.data.subarray(4 * 3, 4 * 3 + 3))).toEqual([255, 0, 0]);
    rgb.dispose();
  });

  test('pcaImage runs the model on a real photo and writes the input and its PCA side by side', async () => {
    const model = await loadTinyModel();
    const before = memory().liveTensors;
    const out = join(tmp, 'chelsea_pca.png');
    const r = await pcaImage(model, CHELSEA, out, { resolution: 64 });
    // 451×300 → keepAspect 96×64 (a 6×4 patch grid); the PNG holds the input and the PCA panel.
    expect(r.grid).toEqual([4, 6]);
    expect([r.width, r.height]).toEqual([192, 64]);
    const meta = await sharp(readFileSync(out)).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels]).toEqual(['png', 192, 64, 3]);
    const { data } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    const input = await decodeImage(CHELSEA, { resolution: 64, resize: 'keepAspect' });
    const left = new Uint8Array(96 * 64 * 3);
    for (let y = 0; y < 64; y++) left.set(data.subarray(y * 192 * 3, y * 192 * 3 + 96 * 3), y * 96 * 3);
    expect(Buffer.from(left).equals(Buffer.from(input.data))).toBe(true);
    // The PCA panel uses the full range of each channel.
    for (let c = 0; c < 3; c++) {
      let lo = 255;
      let hi = 0;
      for (let y = 0; y < 64; y++)
        for (let x = 96; x < 192; x++) {
          const v = data[(y * 192 + x) * 3 + c]!;
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      expect([lo, hi]).toEqual([0, 255]);
    }
    const alone = await pcaImage(model, CHELSEA, undefined, { resolution: 64, composite: false, layers: 1, upsample: 'bilinear' });
    expect([alone.width, alone.height]).toEqual([96, 64]);
    expect(memory().liveTensors).toBe(before);
    model.dispose();
  });
});
