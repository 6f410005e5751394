// Training logs: JSONL metrics (append, resume truncation, partial lines), progress lines, the loss-curve PNG.
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  CURVE_COLORS,
  formatDuration,
  lossCurveSvg,
  lossKeys,
  memoryMetrics,
  MetricsLog,
  ProgressReporter,
  readMetrics,
  renderLossCurve,
} from '../../../src/train/logging.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trainlog-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Synthetic official-named metrics of `n` iterations. */
const records = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    iteration: i,
    total_loss: 14 - 6 * (1 - Math.exp(-i / 30)),
    dino_global_crops_loss: 6.9 - 3 * (1 - Math.exp(-i / 40)),
    dino_local_crops_loss: 6.9 - 2.5 * (1 - Math.exp(-i / 50)),
    ibot_loss: 6.9 - 1.5 * (1 - Math.exp(-i / 60)),
    koleo_loss: -0.1 * (i / n),
    lr: 1e-3 * Math.min(1, i / 10),
    wd: 0.04,
    mom: 0.992,
    teacher_temp: 0.04,
  }));

describe('metrics log', () => {
  test('appends one JSON line per iteration; non-finite values survive; a line cut short is ignored', async () => {
    const p = join(dir, 'm1.jsonl');
    const log = await MetricsLog.open(p);
    log.append({ iteration: 0, total_loss: 7.5, lr: 1e-4, note: 'x' });
    log.append({ iteration: 1, total_loss: Number.NaN, grad_norm: Number.POSITIVE_INFINITY, koleo_loss: null });
    log.close();
    expect(await readFile(p, 'utf8')).toBe(
      '{"iteration":0,"total_loss":7.5,"lr":0.0001,"note":"x"}\n{"iteration":1,"total_loss":"NaN","grad_norm":"Infinity","koleo_loss":null}\n',
    );
    await appendFile(p, '{"iteration":2,"total_lo');
    const r = await readMetrics(p);
    expect(r).toHaveLength(2);
    expect(r[1]).toEqual({ iteration: 1, total_loss: Number.NaN, grad_norm: Number.POSITIVE_INFINITY, koleo_loss: null });
    expect(() => log.append({ iteration: 3 })).toThrow(`MetricsLog: ${p} is closed`);
    const l2 = await MetricsLog.open(join(dir, 'm0.jsonl'));
    expect(() => l2.append({ iteration: -1 })).toThrow('MetricsLog.append: "iteration" must be a non-negative integer, received -1');
    l2.close();
    await writeFile(join(dir, 'bad.jsonl'), '{"iteration":0}\n[1,2]\n');
    await expect(readMetrics(join(dir, 'bad.jsonl'))).rejects.toThrow(
      `${join(dir, 'bad.jsonl')}:2: not a metrics record (a JSON object with a numeric "iteration")`,
    );
  });

  test('resuming drops the lines written after the checkpoint and a partial last line', async () => {
    const p = join(dir, 'm2.jsonl');
    const log = await MetricsLog.open(p);
    for (let i = 0; i < 10; i++) log.append({ iteration: i, total_loss: i });
    log.close();
    await appendFile(p, '{"iteration":10,');
    const resumed = await MetricsLog.open(p, { resumeFrom: 5 });
    resumed.append({ iteration: 6, total_loss: 60 });
    resumed.sync();
    resumed.close();
    expect((await readMetrics(p)).map((r) => [r.iteration, r.total_loss])).toEqual([0, 1, 2, 3, 4, 5].map((i) => [i, i]).concat([[6, 60]]));
    // resumeFrom on a missing file starts an empty log.
    (await MetricsLog.open(join(dir, 'fresh.jsonl'), { resumeFrom: 3 })).close();
    expect(await readFile(join(dir, 'fresh.jsonl'), 'utf8')).toBe('');
  });

  test('memoryMetrics reports RSS and live tensors', () => {
    const m = memoryMetrics();
    expect(m.rss_mb).toBeGreaterThan(10);
    expect(Number.isInteger(m.live_tensors)).toBe(true);
  });
});

describe('progress', () => {
  test('it/s, img/s and ETA from the clock; losses and schedules on the line', () => {
    let now = 0;
    const lines: string[] = [];
    const p = new ProgressReporter({ total: 100, imagesPerIteration: 64, write: (l) => lines.push(l), every: 10, clock: () => now });
    const rec = records(100);
    for (let i = 0; i < 20; i++) {
      now = i * 500; // 2 it/s
      p.update(i, rec[i]);
    }
    expect(lines).toHaveLength(3); // the first update, then every 10th
    const r9 = rec[9]!;
    expect(lines[1]).toBe(
      `it 10/100 (10.0%) | 2.00 it/s | 128.0 img/s | ETA 45s | total_loss ${r9.total_loss.toFixed(3)} dino_global_crops_loss ${r9.dino_global_crops_loss.toFixed(3)} ` +
        `dino_local_crops_loss ${r9.dino_local_crops_loss.toFixed(3)} ibot_loss ${r9.ibot_loss.toFixed(3)} koleo_loss -0.0090 | lr 9.00e-4 wd 0.0400 mom 0.9920 teacher_temp 0.0400`,
    );
    expect(lines[0]).toMatch(/^it 1\/100 \(1\.0%\) \| \? it\/s \| \? img\/s \| ETA \? \| total_loss 14\.000 /);
    expect(p.last!.itPerSec).toBeCloseTo(2, 12);
    expect(p.last!.etaSeconds).toBeCloseTo(40, 9);
    now = 99 * 500;
    expect(p.update(99, {})).toBe('it 100/100 (100.0%) | 2.00 it/s | 128.0 img/s | ETA 0s');
    expect(() => new ProgressReporter({ total: 0, imagesPerIteration: 1, write: () => undefined })).toThrow(
      'ProgressReporter: total must be a positive integer, received 0',
    );
  });

  test('formatDuration and lossKeys', () => {
    expect([formatDuration(42.4), formatDuration(381), formatDuration(3720), formatDuration(Number.NaN)]).toEqual(['42s', '6m21s', '1h02m', '?']);
    expect(lossKeys({ koleo_loss: 1, lr: 2, total_loss: 3, dino_local_loss_weight: 1, ibot_loss: 'x' })).toEqual(['total_loss', 'koleo_loss']);
  });
});

describe('loss curve', () => {
  test('renders a PNG of the expected size with one coloured line per loss term', async () => {
    const jsonl = join(dir, 'curve.jsonl');
    const log = await MetricsLog.open(jsonl);
    for (const r of records(300)) log.append(r);
    log.close();
    const png = join(dir, 'loss.png');
    const out = await renderLossCurve(jsonl, png, { width: 800, height: 450, title: 'cpu_tiny_fmnist' });
    expect(out).toEqual({
      keys: ['total_loss', 'dino_global_crops_loss', 'dino_local_crops_loss', 'ibot_loss', 'koleo_loss'],
      width: 800,
      height: 450,
      points: 300,
    });
    const img = sharp(await readFile(png));
    const meta = await img.metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 800, 450]);
    const { data, info } = await img.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    // Pixels of each series' colour (within ±12 per channel): the legend swatch alone is ~22×4 = 88 pixels; a line
    // across the plot adds hundreds more.
    const counts = out.keys.map((_, i) => {
      const hex = CURVE_COLORS[i]!;
      const c = [1, 3, 5].map((o) => parseInt(hex.slice(o, o + 2), 16));
      let nPix = 0;
      for (let p = 0; p < info.width * info.height; p++)
        if (Math.abs(data[3 * p]! - c[0]!) <= 12 && Math.abs(data[3 * p + 1]! - c[1]!) <= 12 && Math.abs(data[3 * p + 2]! - c[2]!) <= 12) nPix++;
      return nPix;
    });
    for (const n of counts) expect(n).toBeGreaterThan(400);
    // An unused palette colour is absent.
    const unused = CURVE_COLORS[9]!;
    const u = [1, 3, 5].map((o) => parseInt(unused.slice(o, o + 2), 16));
    let stray = 0;
    for (let p = 0; p < info.width * info.height; p++) if (data[3 * p] === u[0] && data[3 * p + 1] === u[1] && data[3 * p + 2] === u[2]) stray++;
    expect(stray).toBe(0);
  });

  test('the total loss line falls from left to right (its SVG y grows as the loss falls)', () => {
    const { svg } = lossCurveSvg(records(100), { keys: ['total_loss'] });
    const pts = /<polyline[^>]*points="([^"]+)"/
      .exec(svg)![1]!
      .split(' ')
      .map((s) => s.split(',').map(Number) as [number, number]);
    expect(pts).toHaveLength(100);
    expect(pts[0]![0]).toBeLessThan(pts[99]![0]);
    expect(pts[0]![1]).toBeLessThan(pts[99]![1]);
    // Long logs are bucket-averaged to at most two points per horizontal pixel.
    const long = lossCurveSvg(records(20000), { keys: ['total_loss'], width: 400 });
    const n = /<polyline[^>]*points="([^"]+)"/.exec(long.svg)![1]!.split(' ').length;
    expect(n).toBeLessThanOrEqual(2 * 400);
    expect(() => lossCurveSvg([], { smoothing: 1 })).toThrow('renderLossCurve: smoothing must be in [0, 1), received 1');
  });
});
