// Multi-crop augmentation throughput: our DataAugmentationDINO (src/data/augmentations.ts, decode by sharp included)
// vs the official one timed by ../shared/peers/cpu_anchor_augment.py (PIL decode + torchvision v2, one thread), on
// the same real photos, in the same run, taking turns in rounds so machine noise hits both alike. Per core: both
// run on one thread (sharp.concurrency(1), decodes awaited one at a time; the peer with torch.set_num_threads(1)).
// Reports crops/s from the median wall time per pass over the image set and crops per CPU-second (process CPU time,
// decode threads included), the load average, and writes bench/results/augment-<label>.json.
//
// Photos: JPEGs ≥ 20 kB under --photos (Debian opencv-doc + python3-skimage unpacked there:
// `apt-get download opencv-doc python3-skimage && dpkg -x <deb> /work/photos`), sorted by path, de-duplicated by
// content, the first --max-images; the same list is passed to the peer.
//
//   npm run build:ts && node dist/bench/augment.js [--photos /work/photos] [--max-images 24] [--rounds 3]
//       [--passes 2] [--setting 224:96:8] [--python /work/peer/venv/bin/python] [--no-peer] [--label cpu-2core]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import { MultiCropAugmentation, nativeAugmentAvailable } from '../src/data/augmentations.js';
import { Rng } from '../src/data/rng.js';
import { atomicWriteFile } from '../src/io/safetensors.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({
  options: {
    photos: { type: 'string', default: '/work/photos' },
    'max-images': { type: 'string', default: '24' },
    'min-bytes': { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '3' },
    passes: { type: 'string', default: '2' },
    setting: { type: 'string', default: '224:96:8' },
    python: { type: 'string', default: '/work/peer/venv/bin/python' },
    peer: { type: 'string', default: join(root, '..', 'shared', 'peers', 'cpu_anchor_augment.py') },
    pythonpath: { type: 'string', default: '/work/peer/official:/work/peer/debs/usr/lib/python3/dist-packages' },
    'no-peer': { type: 'boolean', default: false },
    label: { type: 'string', default: `cpu-${cpus().length}core` },
    seed: { type: 'string', default: '0' },
  },
});
const [gs, ls, nl] = values.setting.split(':').map(Number) as [number, number, number];
const crops = 2 + nl;
const rounds = Number(values.rounds);
const passes = Number(values.passes);
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.isFile() && /\.(jpe?g)$/i.test(e.name) && statSync(p).size >= Number(values['min-bytes'])) out.push(p);
  }
  return out;
}

/** Decodes to 8-bit RGB like PIL's `Image.open(...).convert('RGB')`: plain raw decode, grey expanded; 4 bands
 * (RGBA or CMYK) through libvips' sRGB conversion without alpha. */
async function decode(buf: Uint8Array): Promise<{ data: Uint8Array; width: number; height: number }> {
  let { data, info } = await sharp(buf).raw().toBuffer({ resolveWithObject: true });
  if (info.channels === 4) {
    ({ data, info } = await sharp(buf).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true }));
  }
  const c = info.channels;
  if (c === 3) return { data, width: info.width, height: info.height };
  const rgb = new Uint8Array(info.width * info.height * 3);
  for (let i = 0, j = 0; j < rgb.length; i += c, j += 3) {
    if (c <= 2) rgb[j] = rgb[j + 1] = rgb[j + 2] = data[i]!;
    else {
      rgb[j] = data[i]!;
      rgb[j + 1] = data[i + 1]!;
      rgb[j + 2] = data[i + 2]!;
    }
  }
  return { data: rgb, width: info.width, height: info.height };
}

async function main(): Promise<void> {
  sharp.concurrency(1);
  sharp.cache(false);
  const seen = new Set<string>();
  const files: string[] = [];
  const blobs: Uint8Array[] = [];
  const sizes: [number, number][] = [];
  for (const p of walk(values.photos)) {
    if (files.length >= Number(values['max-images'])) break;
    const b = readFileSync(p);
    const h = createHash('sha1').update(b).digest('hex');
    if (seen.has(h)) continue;
    try {
      const m = await sharp(b).metadata();
      if (!m.width || !m.height) continue;
      sizes.push([m.width, m.height]);
    } catch {
      continue;
    }
    seen.add(h);
    files.push(p);
    blobs.push(b);
  }
  if (!files.length) throw new Error(`no JPEG ≥ ${values['min-bytes']} bytes under ${values.photos}`);
  const n = files.length;

  const aug = new MultiCropAugmentation({ globalCropsSize: gs, localCropsSize: ls, localCropsNumber: nl });
  let passNo = 0;
  let checksum = 0;
  const onePass = async () => {
    const p = passNo++;
    for (let i = 0; i < n; i++) {
      const img = await decode(blobs[i]!);
      const s = aug.apply(img, Rng.derive(Number(values.seed), p, i));
      checksum += s.global[0]![0]! + s.local[0]![0]!;
    }
  };
  const decodePass = async () => {
    for (let i = 0; i < n; i++) checksum += (await decode(blobs[i]!)).data[0]!;
  };
  const timeIt = async (f: () => Promise<void>) => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await f();
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { wall, cpu: (c.user + c.system) / 1000 };
  };

  const ours = { wall: [] as number[], cpu: [] as number[], decodeWall: [] as number[], decodeCpu: [] as number[] };
  const peer = { crops: [] as number[], cpuMsPerImage: [] as number[], decodeMsPerImage: [] as number[], raw: [] as unknown[] };
  await onePass(); // warm-up (JIT)
  await decodePass();
  const loadStart = loadavg();
  for (let r = 0; r < rounds; r++) {
    const runOurs = async () => {
      for (let k = 0; k < passes; k++) {
        const t = await timeIt(onePass);
        ours.wall.push(t.wall);
        ours.cpu.push(t.cpu);
      }
      const d = await timeIt(decodePass);
      ours.decodeWall.push(d.wall);
      ours.decodeCpu.push(d.cpu);
    };
    const runPeer = () => {
      if (values['no-peer']) return;
      const res = spawnSync(
        values.python,
        [values.peer, '--images', ...files, '--settings', values.setting, '--passes', String(passes), '--warmup', '1', '--seed', String(r)],
        { env: { ...process.env, PYTHONPATH: values.pythonpath, OMP_NUM_THREADS: '1' }, encoding: 'utf8', maxBuffer: 64 << 20 },
      );
      const line = (res.stdout ?? '').split('\n').find((l) => l.startsWith('RESULT '));
      if (res.status !== 0 || !line) throw new Error(`peer failed (exit ${String(res.status)}): ${(res.stderr ?? '').slice(-2000)}`);
      const j = JSON.parse(line.slice(7)) as { crops_per_s: number; ms_per_image_cpu: number; decode_ms_per_image: number };
      peer.crops.push(j.crops_per_s);
      peer.cpuMsPerImage.push(j.ms_per_image_cpu);
      peer.decodeMsPerImage.push(j.decode_ms_per_image);
      const { images: _images, ...rest } = j as unknown as Record<string, unknown>;
      peer.raw.push(rest);
    };
    if (r % 2 === 0) {
      runPeer();
      await runOurs();
    } else {
      await runOurs();
      runPeer();
    }
    process.stderr.write(
      `round ${r + 1}/${rounds}: ours ${((n * crops) / (median(ours.wall) / 1000)).toFixed(1)} crops/s` +
        (peer.crops.length ? `, official ${median(peer.crops).toFixed(1)} crops/s` : '') +
        '\n',
    );
  }
  const loadEnd = loadavg();
  const oursCrops = (n * crops) / (median(ours.wall) / 1000);
  const oursCropsCpu = (n * crops) / (median(ours.cpu) / 1000);
  const result = {
    bench: 'augment',
    setting: `2x${gs}+${nl}x${ls}`,
    images: {
      count: n,
      meanWidth: +(sizes.reduce((s, x) => s + x[0], 0) / n).toFixed(1),
      meanHeight: +(sizes.reduce((s, x) => s + x[1], 0) / n).toFixed(1),
      files: files.map((f) => f.replace(values.photos, '')),
    },
    rounds,
    passesPerRound: passes,
    ours: {
      cropsPerSec: +oursCrops.toFixed(1),
      cropsPerCpuSec: +oursCropsCpu.toFixed(1),
      msPerImage: +(median(ours.wall) / n).toFixed(2),
      decodeMsPerImage: +(median(ours.decodeWall) / n).toFixed(2),
      passWallMs: ours.wall.map((x) => +x.toFixed(1)),
      impl: `${nativeAugmentAvailable() ? 'native augmentCrop kernels (native/src/ops/augment.cc)' : 'TypeScript kernels (src/data/kernels.ts)'} on the JS thread, sharp decode (concurrency 1)`,
      decodeCpuMsPerImage: +(median(ours.decodeCpu) / n).toFixed(2),
      node: process.version,
    },
    official: values['no-peer']
      ? null
      : {
          cropsPerSec: +median(peer.crops).toFixed(1),
          cropsPerCpuSec: +((crops * 1000) / median(peer.cpuMsPerImage)).toFixed(1),
          decodeMsPerImage: +median(peer.decodeMsPerImage).toFixed(2),
          perRound: peer.crops,
          harness: peer.raw[0],
        },
    ratio: values['no-peer']
      ? null
      : { wall: +(oursCrops / median(peer.crops)).toFixed(3), cpu: +(oursCropsCpu / ((crops * 1000) / median(peer.cpuMsPerImage))).toFixed(3) },
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadavgStart: loadStart.map((x) => +x.toFixed(2)),
    loadavgEnd: loadEnd.map((x) => +x.toFixed(2)),
    note: 'preliminary when the load average is high: the machine is shared; both sides take turns in rounds',
    checksum,
  };
  const out = join(root, 'bench', 'results');
  if (!existsSync(out)) mkdirSync(out, { recursive: true });
  await atomicWriteFile(join(out, `augment-${values.label}.json`), [Buffer.from(`${JSON.stringify(result, null, 1)}\n`)]);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench augment: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
