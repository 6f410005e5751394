// Hostile checkpoints: every amplification is bounded and every failure is a CheckpointError (or, for key
// mismatches found before allocation, a StateDictError) naming the file, within 2 s and 300 MB.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';

import { loadBackbone, memory, stripTrainingPrefixes, readCheckpoint } from '../../../src/index.js';
import { CheckpointError, StateDictError } from '../../../src/native/errors.js';
import { MAX_FLAT_KEYS, openPth, readPth, readPthObject } from '../../../src/io/pth.js';
import { unpickle } from '../../../src/io/pickle.js';
import { openSafetensors, readSafetensorsFile, writeSafetensors } from '../../../src/io/safetensors.js';
import type { RawTensor } from '../../../src/io/raw_tensor.js';
import { readZip } from '../../../src/io/zip.js';
import type { TensorSource } from '../../../src/checkpoint/sources.js';
import { FIXTURES, makePth, makeZip, PickleWriter } from '../io/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'dinov3-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `fn`, which must throw; checks the class, code, exact message, and the time and memory it took. */
async function refused(fn: () => unknown, cls: abstract new (...a: never[]) => Error, message: string | RegExp): Promise<Error> {
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  const ms = performance.now() - t0;
  const grew = process.memoryUsage().rss - rss0;
  expect(err).toBeInstanceOf(cls);
  expect((err as { code?: string }).code).toBe(cls === StateDictError ? 'ERR_STATE_DICT' : 'ERR_CHECKPOINT');
  if (typeof message === 'string') expect((err as Error).message).toBe(message);
  else expect((err as Error).message).toMatch(message);
  expect(ms).toBeLessThan(2000);
  expect(grew).toBeLessThan(300 * 2 ** 20);
  return err as Error;
}

/** The pickle of a torch tensor record (as torch.save writes it) over storage `key` of `numel` float32s. */
function tensorPickle(w: PickleWriter, key: string, numel: number, shape: number[], stride: number[]): PickleWriter {
  w.global('torch._utils', '_rebuild_tensor_v2').mark();
  w.mark().str('storage').global('torch', 'FloatStorage').str(key).str('cpu').int(numel);
  w.tuple().raw(0x51).int(0).mark();
  for (const d of shape) w.int(d);
  w.tuple().mark();
  for (const s of stride) w.int(s);
  w.tuple().raw(0x89).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
  return w;
}

/** {"a": l40} where l0 is a tensor (or None) and l(i+1) = [l(i), l(i)]: 2^40 paths in a few hundred bytes. */
function dagPickle(levels: number, withTensor: boolean): Uint8Array {
  const w = new PickleWriter().proto(2).emptyDict().str('a');
  if (withTensor) tensorPickle(w, '0', 1, [1], [1]);
  else w.raw(0x4e);
  w.raw(0x71, 0); // BINPUT 0
  for (let i = 1; i <= levels; i++) w.raw(0x30, 0x5d, 0x28, 0x68, i - 1, 0x68, i - 1, 0x65, 0x71, i); // POP [ (get get APPENDS put
  return w.raw(0x73).stop().bytes(); // SETITEM
}

describe('pickle amplification', () => {
  test('a shared-sublist DAG of 40 levels is refused at once (it would flatten into 2^40 keys)', async () => {
    const pkl = dagPickle(40, true);
    expect(pkl.byteLength).toBeLessThan(1024);
    const buf = makePth(null, { '0': new Uint8Array(4) }, { pickle: pkl });
    const msg = `x.pth: the checkpoint would flatten into more than ${MAX_FLAT_KEYS} tensor keys (shared sub-structures repeat them)`;
    await refused(() => readPth(buf, 'x.pth'), CheckpointError, msg);
    const file = join(dir, 'dag.pth');
    writeFileSync(file, buf);
    await refused(() => openPth(file), CheckpointError, msg.replace('x.pth', file));
    await refused(() => loadBackbone(file), CheckpointError, msg.replace('x.pth', file));
  });

  test('the same DAG without tensors is walked once per node (no keys, no hang)', () => {
    const t0 = performance.now();
    const buf = makePth(null, {}, { pickle: dagPickle(40, false) });
    expect(readPth(buf, 'x.pth').size).toBe(0);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  test('nesting beyond 1000 levels is refused, not a stack overflow', async () => {
    const w = new PickleWriter().proto(2).emptyDict().str('a');
    for (let i = 0; i < 200_000; i++) w.raw(0x5d); // 200000 empty lists ...
    for (let i = 0; i < 200_000 - 1; i++) w.raw(0x61); // ... each appended to the one before
    const buf = makePth(null, {}, { pickle: w.raw(0x73).stop().bytes() });
    await refused(
      () => readPthObject(buf, 'x.pth'),
      CheckpointError,
      `x.pth: the checkpoint nests containers more than 1000 levels deep (at ${`checkpoint["a"]${'[0]'.repeat(40)}`.slice(0, 100)}…)`,
    );
  });

  test('a huge integer is refused instead of converted in quadratic time', async () => {
    const len = Buffer.alloc(4);
    len.writeInt32LE(1 << 20);
    const pkl = Uint8Array.from([0x80, 0x02, 0x8b, ...len, ...new Uint8Array(1 << 20), 0x2e]);
    await refused(() => unpickle(pkl, { source: 'p' }), CheckpointError, 'p: integer of 1048576 bytes at byte 7 is too large for a checkpoint');
  });
});

/** Sets a 32-bit field of the central directory record of `name` (20: compressed size, 24: uncompressed size). */
function patchCentral(zip: Buffer, name: string, field: number, value: number): Buffer {
  const out = Buffer.from(zip);
  const nameBytes = Buffer.from(name);
  for (let p = out.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06])); p >= 0; p--) {
    if (out.readUInt32LE(p) === 0x02014b50 && out.subarray(p + 46, p + 46 + nameBytes.length).equals(nameBytes)) {
      out.writeUInt32LE(value, p + field);
      return out;
    }
  }
  throw new Error(`no central directory record for ${name}`);
}

describe('zip bombs', () => {
  const pklFor = (numel: number) => tensorPickle(new PickleWriter().proto(2).emptyDict().str('w'), '0', numel, [numel], [1]).raw(0x73).stop().bytes();
  const zipOf = (storage: Uint8Array) =>
    makeZip([
      { name: 'archive/data.pkl', data: pklFor(100) },
      { name: 'archive/data/0', data: storage, deflate: true },
    ]);

  test('an entry that inflates beyond its declared size stops at the declared size', async () => {
    // 8 MB of zeros deflate to ~8 KB; the directory claims the 400 bytes the tensor needs.
    const bomb = patchCentral(zipOf(new Uint8Array(8 << 20)), 'archive/data/0', 24, 400);
    await refused(() => readPth(bomb, 'bomb.pth'), CheckpointError, 'bomb.pth: entry "archive/data/0" inflates to more than its declared 400 bytes');
  });

  test('a declared size deflate cannot produce is refused before inflating', () => {
    const z = patchCentral(zipOf(new Uint8Array(400)), 'archive/data/0', 24, 0xfffffff0);
    const compressed = readZip(zipOf(new Uint8Array(400))).entries.get('archive/data/0')!.compressedSize;
    expect(() => readZip(z, 'z.pth').read('archive/data/0')).toThrow(
      new CheckpointError(
        `z.pth: entry "archive/data/0" declares ${0xfffffff0} bytes from ${compressed} deflated bytes, more than deflate can produce (a zip bomb or a corrupt size)`,
      ),
    );
  });

  test('a declared size that differs from what the tensor needs is refused before reading', async () => {
    const z = patchCentral(zipOf(new Uint8Array(400)), 'archive/data/0', 24, 800);
    await refused(() => readPth(z, 'z.pth'), CheckpointError, 'z.pth: checkpoint["w"]: storage "0" has 800 bytes but 100 float32 elements need 400');
  });
});

describe('tensor views', () => {
  test('a stride-0 view is not expanded beyond its storage', async () => {
    const pkl = tensorPickle(new PickleWriter().proto(2).emptyDict().str('w'), '0', 1, [100000, 100000], [0, 0]).raw(0x73).stop().bytes();
    const buf = makePth(null, { '0': new Uint8Array(4) }, { pickle: pkl });
    await refused(
      () => readPth(buf, 'x.pth'),
      CheckpointError,
      'x.pth: checkpoint["w"]: tensor of shape [100000, 100000] and stride [0, 0] has 10000000000 elements but its storage only 1: ' +
        'broadcast (stride-0) or overlapping views are not expanded; save the tensor with .contiguous() or .clone()',
    );
  });
});

/** A tensor of `shape` (zeros), or a shape with a 0 dimension (no bytes) that still implies sizes. */
const raw = (shape: number[]): RawTensor => ({ dtype: 'float32', shape, data: new Uint8Array(4 * shape.reduce((a, b) => a * b, 1)) });

describe('architectures implied by tiny files', () => {
  // A 9 KB safetensors whose shapes imply D = 2048, 12 blocks: an 8 KB cls token, everything else empty.
  const tiny = new Map<string, RawTensor>([
    ['cls_token', raw([1, 1, 2048])],
    ['rope_embed.periods', raw([16])],
    ['patch_embed.proj.weight', raw([0, 3, 16, 16])],
  ]);
  tiny.set('blocks.0.mlp.fc1.weight', raw([8192, 0]));
  for (let i = 0; i < 12; i++) tiny.set(`blocks.${i}.norm1.weight`, raw([0]));
  const tinyFile = join(dir, 'tiny.safetensors');
  writeFileSync(tinyFile, writeSafetensors(tiny));

  test('strict: the shapes are checked on the meta device before anything is allocated', async () => {
    expect(readFileSync(tinyFile).byteLength).toBeLessThan(10_000);
    const before = memory().cpuBytes;
    const err = (await refused(
      () => loadBackbone(tinyFile),
      StateDictError,
      /^loadBackbone: .*tiny\.safetensors does not match the backbone \(strict loading\)\n/,
    )) as StateDictError;
    expect(err.report.mismatched).toContainEqual({ key: 'patch_embed.proj.weight', expected: [2048, 3, 16, 16], received: [0, 3, 16, 16] });
    expect(memory().cpuBytes).toBe(before);
  });

  test('non-strict: a model far larger than the weights is refused', async () => {
    await refused(
      () => loadBackbone(tinyFile, { strict: false }),
      CheckpointError,
      `${tinyFile}: the architecture (embed_dim 2048, depth 12) has 605610000 parameters but the checkpoint holds 2064 values: refusing to build a model that much larger than its weights`,
    );
  });

  test('a 1 KB config.json implying 8192 x 24 is checked against the weights first', async () => {
    const hf = join(dir, 'hf-huge');
    mkdirSync(hf, { recursive: true });
    const config = { model_type: 'dinov3_vit', hidden_size: 8192, num_hidden_layers: 24, num_attention_heads: 64, intermediate_size: 32768 };
    writeFileSync(join(hf, 'config.json'), JSON.stringify(config));
    writeFileSync(join(hf, 'model.safetensors'), writeSafetensors(new Map([['embeddings.patch_embeddings.weight', raw([0, 3, 16, 16])]])));
    expect(readFileSync(join(hf, 'config.json')).byteLength).toBeLessThan(1024);
    const before = memory().cpuBytes;
    await refused(() => loadBackbone(hf), StateDictError, /^loadBackbone: .*hf-huge does not match the backbone \(strict loading\)\nmissing keys \(\d+\): /);
    await refused(
      () => loadBackbone(hf, { strict: false }),
      CheckpointError,
      `${hf}: the architecture (embed_dim 8192, depth 24) has 19337224224 parameters but the checkpoint holds 32 values: refusing to build a model that much larger than its weights`,
    );
    expect(memory().cpuBytes).toBe(before);
  });

  test('shapes that imply no valid architecture are a CheckpointError naming the file', async () => {
    const bad = new Map(tiny);
    bad.set('rope_embed.periods', raw([0]));
    const file = join(dir, 'noheads.safetensors');
    writeFileSync(file, writeSafetensors(bad));
    await refused(
      () => loadBackbone(file),
      CheckpointError,
      new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: the tensor shapes imply no valid architecture \\(pass a preset or a config\\):\n`),
    );
  });

  test('configs beyond sane bounds are refused', async () => {
    const hf = join(dir, 'hf-absurd');
    mkdirSync(hf, { recursive: true });
    writeFileSync(join(hf, 'config.json'), JSON.stringify({ hidden_size: 65536, num_attention_heads: 64, intermediate_size: 4 * 65536 }));
    writeFileSync(join(hf, 'model.safetensors'), writeSafetensors(new Map([['embeddings.patch_embeddings.weight', raw([0, 3, 16, 16])]])));
    await refused(() => loadBackbone(hf), CheckpointError, `${hf}: the architecture has embed_dim = 65536, beyond the supported maximum of 16384`);
  });
});

describe('Hugging Face folders', () => {
  const shard = writeSafetensors(new Map([['embeddings.cls_token', raw([1, 1, 4])]]));
  const folder = (name: string, weightMap: Record<string, string>): string => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'config.json'), '{}');
    writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    return d;
  };

  test('weight_map paths are confined to the folder', async () => {
    writeFileSync(join(dir, 'outside.safetensors'), shard);
    const up = folder('hf-up', { 'embeddings.cls_token': '../outside.safetensors' });
    const index = join(up, 'model.safetensors.index.json');
    await refused(() => readCheckpoint(up), CheckpointError, `${index}: weight_map names "../outside.safetensors", which is outside the folder ${up}`);
    const abs = folder('hf-abs', { 'embeddings.cls_token': join(dir, 'outside.safetensors') });
    await refused(
      () => readCheckpoint(abs),
      CheckpointError,
      /hf-abs\/model\.safetensors\.index\.json: weight_map names ".*outside\.safetensors", which is outside the folder/,
    );
    const link = folder('hf-link', { 'embeddings.cls_token': 'a.safetensors' });
    symlinkSync(join(dir, 'outside.safetensors'), join(link, 'a.safetensors'));
    await refused(
      () => readCheckpoint(link),
      CheckpointError,
      /hf-link\/model\.safetensors\.index\.json: weight_map names "a\.safetensors", a link to .*outside\.safetensors outside the folder/,
    );
  });

  test('a key in two shards is refused', async () => {
    const d = folder('hf-twice', { a: 'one.safetensors', b: 'two.safetensors' });
    writeFileSync(join(d, 'one.safetensors'), shard);
    writeFileSync(join(d, 'two.safetensors'), shard);
    await refused(
      () => readCheckpoint(d),
      CheckpointError,
      `${join(d, 'model.safetensors.index.json')}: tensor "embeddings.cls_token" is in two shards, one.safetensors and two.safetensors`,
    );
  });
});

describe('key collisions', () => {
  test('keys that collide once prefixes are stripped are refused', async () => {
    const src = (shape: number[]): TensorSource => ({
      shape,
      dtype: 'float32',
      load: () => {
        throw new Error('not loaded');
      },
    });
    const sd = new Map([
      ['module.cls_token', src([1, 1, 4])],
      ['cls_token', src([1, 1, 4])],
    ]);
    await refused(
      () => stripTrainingPrefixes(sd, 'c.pth'),
      CheckpointError,
      'c.pth: keys "module.cls_token" and "cls_token" both become "cls_token" once training prefixes are stripped',
    );
    const wrapped = new Map([
      ['teacher.backbone.norm.weight', src([4])],
      ['teacher.backbone._orig_mod.norm.weight', src([4])],
    ]);
    expect(() => stripTrainingPrefixes(wrapped, 'c.pth')).toThrow(
      new CheckpointError(
        'c.pth: keys "teacher.backbone.norm.weight" and "teacher.backbone._orig_mod.norm.weight" both become "norm.weight" once training prefixes are stripped',
      ),
    );
  });
});

describe('files that are not regular files', () => {
  test('a FIFO is refused without blocking', async () => {
    const fifo = join(dir, 'fifo.pth');
    execFileSync('mkfifo', [fifo]);
    await refused(() => loadBackbone(fifo), CheckpointError, `${fifo}: the checkpoint is a FIFO (named pipe), not a regular file`);
    await refused(() => readSafetensorsFile(fifo), CheckpointError, `${fifo}: the checkpoint is a FIFO (named pipe), not a regular file`);
    const hf = join(dir, 'hf-fifo');
    mkdirSync(hf);
    execFileSync('mkfifo', [join(hf, 'config.json')]);
    await refused(() => loadBackbone(hf), CheckpointError, `${join(hf, 'config.json')}: the JSON file is a FIFO (named pipe), not a regular file`);
  });

  test('/dev/zero behind a symlink is refused', async () => {
    const link = join(dir, 'zero.safetensors');
    symlinkSync('/dev/zero', link);
    await refused(() => openSafetensors(link), CheckpointError, `${link}: the checkpoint is a character device, not a regular file`);
    await refused(() => loadBackbone(link), CheckpointError, `${link}: the checkpoint is a character device, not a regular file`);
  });

  test('missing files and folders are CheckpointErrors, not raw ENOENT', async () => {
    const missing = join(dir, 'missing.pth');
    await refused(() => loadBackbone(missing), CheckpointError, `${missing}: no such file or directory`);
    await refused(() => openPth(missing), CheckpointError, `${missing}: no such file or directory`);
    await refused(() => loadBackbone(dir), CheckpointError, `${join(dir, 'config.json')}: no such file or directory`);
  });

  test('a file replaced between opening and reading is refused, not mixed', async () => {
    const path = join(dir, 'changing.safetensors');
    writeFileSync(path, writeSafetensors(new Map([['a', raw([4])]])));
    const opened = openSafetensors(path);
    writeFileSync(
      path,
      writeSafetensors(
        new Map([
          ['a', raw([4])],
          ['b', raw([8])],
        ]),
      ),
    );
    await refused(() => opened.tensors.get('a')!.read(), CheckpointError, `${path}: the file changed (or was replaced) while the checkpoint was being loaded`);
  });

  test('the reference checkpoints still load lazily, byte for byte', () => {
    const lazy = openPth(join(FIXTURES, 'official_vits_like.pth'));
    const st = openSafetensors(join(FIXTURES, 'official_vits_like.safetensors')).tensors;
    expect(lazy.size).toBe(38);
    for (const [k, t] of lazy) expect(Buffer.from(t.read()).equals(Buffer.from(st.get(k)!.read()))).toBe(true);
  });
});
