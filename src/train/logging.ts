// Training logs: JSON-lines metrics (one line per iteration, as `dinov3/logging/helpers.py::MetricLogger` appends to
// training_metrics.json), a progress line (it/s, img/s, ETA, losses) handed to a caller-supplied writer, and a
// loss-curve PNG (an SVG rasterised by sharp). Library code: nothing here writes to the console.
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { fileError } from '../io/random_access.js';
import { atomicWriteFile } from '../io/safetensors.js';
import { CheckpointError, ConfigError } from '../native/errors.js';
import { expectArray, expectObject, expectOptions, expectPath, show } from '../tensor/args.js';
import { memory } from '../tensor/scope.js';

/** One iteration's metrics: `iteration` plus numbers (loss terms, lr, wd, momentum, teacher temperature, grad
 * norms, memory …) and optionally strings. Non-finite numbers are kept ("NaN", "Infinity" in the file). */
export interface MetricsRecord {
  iteration: number;
  [key: string]: number | string | null;
}

/** File name of the metrics log inside a run folder. */
export const METRICS_FILE = 'training_metrics.jsonl';

const encode = (r: MetricsRecord): string => JSON.stringify(r, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));

const NON_FINITE: Record<string, number> = { NaN: Number.NaN, Infinity: Number.POSITIVE_INFINITY, '-Infinity': Number.NEGATIVE_INFINITY };

function decode(line: string): MetricsRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || typeof (v as MetricsRecord).iteration !== 'number') return undefined;
  const r = v as MetricsRecord;
  for (const [k, x] of Object.entries(r)) if (typeof x === 'string' && x in NON_FINITE) r[k] = NON_FINITE[x]!;
  return r;
}

/**
 * Reads a metrics log. A last line cut short (the process killed mid-write) is ignored; any other unreadable line
 * is an error.
 * @throws CheckpointError naming the file and line
 */
export async function readMetrics(path: string): Promise<MetricsRecord[]> {
  expectPath('readMetrics', 'path', path);
  const text = await readFile(path, 'utf8').catch((e: unknown) => {
    throw fileError(path, e);
  });
  return parseMetrics(path, text);
}

/** The records of a metrics log's text (see readMetrics). */
function parseMetrics(path: string, text: string): MetricsRecord[] {
  const complete = text.split('\n').slice(0, -1); // what follows the last newline is empty or a line cut short
  const out: MetricsRecord[] = [];
  complete.forEach((l, i) => {
    if (l.trim() === '') return;
    const r = decode(l);
    if (!r) throw new CheckpointError(`${path}:${i + 1}: not a metrics record (a JSON object with a numeric "iteration")`);
    out.push(r);
  });
  return out;
}

/** Appends one JSON line per iteration to a metrics file (synchronous writes: lines stay in order and whole). */
export class MetricsLog {
  readonly path: string;
  #fd: number | undefined;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.#fd = fd;
  }

  /**
   * Opens (creating) a metrics log for appending. With `resumeFrom`, lines of iterations after it (written after the
   * checkpoint a run resumes from) and a partial last line are dropped first (atomic rewrite), so the log continues
   * without duplicates.
   */
  static async open(path: string, o: { resumeFrom?: number } = {}): Promise<MetricsLog> {
    if (o.resumeFrom !== undefined) {
      let kept: MetricsRecord[] = [];
      try {
        kept = parseMetrics(path, await readFile(path, 'utf8')).filter((r) => r.iteration <= o.resumeFrom!);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      await atomicWriteFile(path, [Buffer.from(kept.map((r) => `${encode(r)}\n`).join(''))]);
    }
    return new MetricsLog(path, openSync(path, 'a'));
  }

  /** Appends `record` as one line.
   * @throws ConfigError when `iteration` is not a non-negative integer or the log is closed */
  append(record: MetricsRecord): void {
    if (this.#fd === undefined) throw new ConfigError(`MetricsLog: ${this.path} is closed`);
    if (!Number.isSafeInteger(record.iteration) || record.iteration < 0)
      throw new ConfigError(`MetricsLog.append: "iteration" must be a non-negative integer, received ${String(record.iteration)}`);
    writeSync(this.#fd, `${encode(record)}\n`);
  }

  /** Flushes to disk (e.g. with each checkpoint). */
  sync(): void {
    if (this.#fd !== undefined) fsyncSync(this.#fd);
  }

  close(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Process and tensor memory for the metrics line (MiB). */
export function memoryMetrics(): { rss_mb: number; heap_mb: number; live_tensors: number; tensor_cpu_mb: number; cuda_allocated_mb: number } {
  const m = memory();
  const mib = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
  return {
    rss_mb: mib(process.memoryUsage.rss()),
    heap_mb: mib(process.memoryUsage().heapUsed),
    live_tensors: m.liveTensors,
    tensor_cpu_mb: mib(m.cpuBytes),
    cuda_allocated_mb: mib(m.cudaAllocated),
  };
}

// ---- progress ----------------------------------------------------------------------------------------------------

/** `1h02m`, `6m21s`, `42s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

const fmtNum = (v: number): string => {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(a < 1 ? 4 : 3);
};

/** The loss terms of a record: `total_loss` first, then every other `*_loss` key (official names). */
export function lossKeys(record: Readonly<Record<string, unknown>>): string[] {
  expectObject('lossKeys', 'record', record);
  const keys = Object.keys(record).filter((k) => (k === 'total_loss' || k.endsWith('_loss')) && typeof record[k] === 'number');
  return keys.sort((a, b) => (a === 'total_loss' ? -1 : b === 'total_loss' ? 1 : 0));
}

export interface ProgressOptions {
  /** Last iteration index + 1 (e.g. epochs × OFFICIAL_EPOCH_LENGTH). */
  total: number;
  /** Images per iteration (batch size × world size), for img/s. */
  imagesPerIteration: number;
  /** Receives each rendered line (a terminal writer may overwrite the previous one). */
  write: (line: string) => void;
  /** Emit a line every N updates (default 1); the first and the last update always emit. */
  every?: number;
  /** Which metrics to show after the losses (default lr, wd, mom, teacher_temp when present). */
  extraKeys?: string[];
  /** Rate over the last N updates (default 20). */
  window?: number;
  /** Milliseconds clock (default performance.now). */
  clock?: () => number;
}

/**
 * A progress line per (every N) iteration: `it 120/1000 (12.0%) | 2.31 it/s | 147.8 img/s | ETA 6m21s | total_loss
 * 7.012 dino_global_crops_loss 6.930 … | lr 1.0000e-3 …`. The rate is measured over the last `window` updates.
 */
export class ProgressReporter {
  readonly #o: Required<Omit<ProgressOptions, 'extraKeys'>> & { extraKeys: string[] | undefined };
  readonly #times: { it: number; t: number }[] = [];
  #updates = 0;
  last: { itPerSec: number; imgPerSec: number; etaSeconds: number } | undefined;

  constructor(o: ProgressOptions) {
    expectObject('ProgressReporter', 'options', o);
    if (!Number.isSafeInteger(o.total) || o.total < 1) throw new ConfigError(`ProgressReporter: total must be a positive integer, received ${show(o.total)}`);
    this.#o = { every: 1, window: 20, clock: () => performance.now(), ...o, extraKeys: o.extraKeys };
  }

  /** Records that `iteration` finished with `metrics`; returns the line it wrote, if any. */
  update(iteration: number, metrics: Readonly<Record<string, unknown>> = {}): string | undefined {
    const now = this.#o.clock();
    this.#times.push({ it: iteration, t: now });
    if (this.#times.length > this.#o.window + 1) this.#times.shift();
    this.#updates++;
    const first = this.#times[0]!;
    const dt = (now - first.t) / 1000;
    const itPerSec = dt > 0 ? (iteration - first.it) / dt : Number.NaN;
    const remaining = this.#o.total - (iteration + 1);
    this.last = { itPerSec, imgPerSec: itPerSec * this.#o.imagesPerIteration, etaSeconds: remaining / itPerSec };
    const isLast = iteration + 1 >= this.#o.total;
    if (!(this.#updates === 1 || isLast || this.#updates % this.#o.every === 0)) return undefined;
    const parts = [
      `it ${iteration + 1}/${this.#o.total} (${((100 * (iteration + 1)) / this.#o.total).toFixed(1)}%)`,
      `${Number.isFinite(itPerSec) ? itPerSec.toFixed(2) : '?'} it/s`,
      `${Number.isFinite(itPerSec) ? this.last.imgPerSec.toFixed(1) : '?'} img/s`,
      `ETA ${isLast ? '0s' : formatDuration(this.last.etaSeconds)}`,
    ];
    const losses = lossKeys(metrics).map((k) => `${k} ${fmtNum(metrics[k] as number)}`);
    if (losses.length) parts.push(losses.join(' '));
    const extra = (this.#o.extraKeys ?? ['lr', 'wd', 'mom', 'teacher_temp']).filter((k) => typeof metrics[k] === 'number');
    if (extra.length) parts.push(extra.map((k) => `${k} ${fmtNum(metrics[k] as number)}`).join(' '));
    const line = parts.join(' | ');
    this.#o.write(line);
    return line;
  }
}

// ---- loss curve --------------------------------------------------------------------------------------------------

/** Distinct line colours (Tableau 10). */
export const CURVE_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'] as const;

export interface LossCurveOptions {
  width?: number;
  height?: number;
  /** Series to draw (default: every loss term, see lossKeys). */
  keys?: string[];
  title?: string;
  /** Exponential moving average factor in [0, 1) applied to each series (default 0: raw). */
  smoothing?: number;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const fmtTick = (v: number) => String(Number(v.toPrecision(6)));

/** "Nice" tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, n = 6): number[] {
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** The SVG of the loss curves of `records` (exported for tests and for callers that want the vector form). */
export function lossCurveSvg(records: readonly MetricsRecord[], o: LossCurveOptions = {}): { svg: string; keys: string[] } {
  expectArray('lossCurveSvg', 'records', records, 'an array of metrics records');
  for (const [i, r] of records.entries()) expectObject('lossCurveSvg', `records[${i}]`, r);
  o = expectOptions('lossCurveSvg', 'options', o) ?? {};
  if (o.keys !== undefined) expectArray('lossCurveSvg', 'options.keys', o.keys, 'an array of strings');
  const W = o.width ?? 960;
  const H = o.height ?? 540;
  const keys =
    o.keys ?? [...new Set(records.flatMap((r) => lossKeys(r)))].sort((a, b) => (a === 'total_loss' ? -1 : b === 'total_loss' ? 1 : a.localeCompare(b)));
  const alpha = o.smoothing ?? 0;
  if (!(alpha >= 0 && alpha < 1)) throw new ConfigError(`renderLossCurve: smoothing must be in [0, 1), received ${alpha}`);
  const series = keys.map((k) => {
    const pts: [number, number][] = [];
    let ema: number | undefined;
    for (const r of records) {
      const v = r[k];
      if (typeof v !== 'number' || !Number.isFinite(v)) continue;
      ema = ema === undefined ? v : alpha * ema + (1 - alpha) * v;
      pts.push([r.iteration, ema]);
    }
    return { key: k, pts };
  });
  const all = series.flatMap((s) => s.pts);
  const m = { l: 70, r: 20, t: o.title ? 40 : 20, b: 50 };
  const legendW = Math.min(260, Math.max(...keys.map((k) => 7 * k.length + 40), 0));
  const pw = W - m.l - m.r - legendW;
  const ph = H - m.t - m.b;
  if (pw < 50 || ph < 50) throw new ConfigError(`renderLossCurve: ${W}×${H} is too small for the plot`);
  let [x0, x1] = all.length ? [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))] : [0, 1];
  let [y0, y1] = all.length ? [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))] : [0, 1];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.t + ph - ((y - y0) / (y1 - y0)) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<g font-family="sans-serif" font-size="12" fill="#333333">`,
  ];
  if (o.title) out.push(`<text x="${m.l}" y="${m.t - 14}" font-size="15">${esc(o.title)}</text>`);
  for (const v of ticks(y0, y1)) {
    const y = sy(v).toFixed(1);
    out.push(
      `<line x1="${m.l}" x2="${m.l + pw}" y1="${y}" y2="${y}" stroke="#e6e6e6"/>`,
      `<text x="${m.l - 6}" y="${y}" dy="4" text-anchor="end">${fmtTick(v)}</text>`,
    );
  }
  for (const v of ticks(x0, x1)) {
    const x = sx(v).toFixed(1);
    out.push(
      `<line x1="${x}" x2="${x}" y1="${m.t}" y2="${m.t + ph}" stroke="#f0f0f0"/>`,
      `<text x="${x}" y="${m.t + ph + 18}" text-anchor="middle">${fmtTick(v)}</text>`,
    );
  }
  out.push(
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999999"/>`,
    `<text x="${m.l + pw / 2}" y="${H - 12}" text-anchor="middle">iteration</text>`,
  );
  series.forEach(({ key, pts }, i) => {
    const color = CURVE_COLORS[i % CURVE_COLORS.length]!;
    // At most ~2 points per horizontal pixel: average within buckets.
    const maxPts = Math.max(2, Math.floor(2 * pw));
    let drawn = pts;
    if (pts.length > maxPts) {
      const per = pts.length / maxPts;
      drawn = Array.from({ length: maxPts }, (_, b) => {
        const chunk = pts.slice(Math.floor(b * per), Math.max(Math.floor((b + 1) * per), Math.floor(b * per) + 1));
        return [chunk.reduce((s, p) => s + p[0], 0) / chunk.length, chunk.reduce((s, p) => s + p[1], 0) / chunk.length] as [number, number];
      });
    }
    if (drawn.length > 0)
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2.5" stroke-linejoin="round" points="${drawn.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`,
      );
    const ly = m.t + 10 + i * 20;
    const lx = m.l + pw + 14;
    out.push(
      `<line x1="${lx}" x2="${lx + 22}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="4"/>`,
      `<text x="${lx + 28}" y="${ly}" dy="4">${esc(key)}</text>`,
    );
  });
  out.push('</g>', '</svg>');
  return { svg: out.join('\n'), keys };
}

/**
 * Renders the loss terms of a metrics log to a PNG (atomically written): one coloured line per term against the
 * iteration, with axes and a legend.
 * @example await renderLossCurve(join(runDir, METRICS_FILE), join(runDir, 'loss_curve.png'))
 * @returns the drawn series and the image size
 * @throws CheckpointError when the log is unreadable; ConfigError for bad options
 */
export async function renderLossCurve(
  jsonlPath: string,
  pngPath: string,
  o: LossCurveOptions = {},
): Promise<{ keys: string[]; width: number; height: number; points: number }> {
  expectPath('renderLossCurve', 'jsonlPath', jsonlPath);
  expectPath('renderLossCurve', 'pngPath', pngPath);
  o = expectOptions('renderLossCurve', 'options', o) ?? {};
  const records = await readMetrics(jsonlPath);
  const { svg, keys } = lossCurveSvg(records, o);
  const png = await sharp(Buffer.from(svg)).png().toBuffer();
  await atomicWriteFile(pngPath, [png]);
  return { keys, width: o.width ?? 960, height: o.height ?? 540, points: records.length };
}
