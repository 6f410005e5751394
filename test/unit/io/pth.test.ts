import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { CheckpointError } from '../../../src/native/errors.js';
import { flattenTensors, isRawTensor, readPth, readPthFile, readPthObject, type PthValue } from '../../../src/io/pth.js';
import { rawToFloat32, type RawTensor } from '../../../src/io/raw_tensor.js';
import { readSafetensors } from '../../../src/io/safetensors.js';
import { readZip } from '../../../src/io/zip.js';
import { f32bytes, FIXTURES, makePth, makeZip, PickleWriter, type Spec, type TensorSpec } from './helpers.js';

const PTH = join(FIXTURES, 'official_vits_like.pth');
const pthBytes = readFileSync(PTH);

function pthError(buf: Uint8Array): string {
  try {
    readPth(buf, 'x.pth');
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointError);
    return (e as Error).message;
  }
  throw new Error('expected a CheckpointError');
}

const values = (t: RawTensor | undefined): number[] => Array.from(rawToFloat32(t!));

describe('readPth on the reference checkpoint', () => {
  test('every tensor equals (bytewise) the same tensor of the .safetensors export', async () => {
    const pth = await readPthFile(PTH);
    const st = readSafetensors(readFileSync(join(FIXTURES, 'official_vits_like.safetensors'))).tensors;
    expect(pth.size).toBe(38);
    expect([...pth.keys()].sort()).toEqual([...st.keys()].sort());
    for (const [name, t] of pth) {
      const s = st.get(name)!;
      expect(t.dtype, name).toBe(s.dtype);
      expect(t.shape, name).toEqual(s.shape);
      expect(Buffer.from(t.data).equals(Buffer.from(s.data)), name).toBe(true);
    }
  });

  test('keys in state-dict order, shapes and dtypes', () => {
    const pth = readPth(pthBytes, 'official_vits_like.pth');
    expect([...pth.keys()].slice(0, 6)).toEqual([
      'cls_token',
      'storage_tokens',
      'mask_token',
      'patch_embed.proj.weight',
      'patch_embed.proj.bias',
      'rope_embed.periods',
    ]);
    expect([...pth.keys()].slice(-2)).toEqual(['norm.weight', 'norm.bias']);
    const periods = pth.get('rope_embed.periods')!;
    expect([periods.dtype, periods.shape]).toEqual(['float32', [4]]);
    // fp32 periods base**(2i/(D/2)), base 100, D/4 = 4 (not the bf16-rounded ones of the training fixtures).
    expect(values(periods)).toEqual([1, 100 ** 0.25, 10, 100 ** 0.75].map(Math.fround));
    const mask = pth.get('blocks.0.attn.qkv.bias_mask')!;
    expect([mask.dtype, mask.shape]).toEqual(['float32', [192]]);
    // Masked key bias: ones for q and v, zeros for k.
    expect(values(mask)).toEqual([...Array(64).fill(1), ...Array(64).fill(0), ...Array(64).fill(1)]);
    expect(pth.get('cls_token')!.shape).toEqual([1, 1, 64]);
    expect(pth.get('patch_embed.proj.weight')!.shape).toEqual([64, 3, 16, 16]);
    expect(pth.get('blocks.1.mlp.fc2.weight')!.shape).toEqual([64, 256]);
    expect(pth.has('blocks.0.ls1.gamma')).toBe(true);
    // Contiguous tensors are zero-copy views of the file.
    for (const t of pth.values()) expect(t.data.buffer).toBe(pthBytes.buffer);
  });

  test('readPthObject gives the OrderedDict itself', () => {
    const obj = readPthObject(pthBytes);
    expect(obj).toBeInstanceOf(Map);
    const m = obj as Map<PthValue, PthValue>;
    expect(m.size).toBe(38);
    expect(isRawTensor(m.get('cls_token'))).toBe(true);
  });

  test('truncated or damaged checkpoint', () => {
    expect(pthError(pthBytes.subarray(0, 400_000))).toBe('x.pth: truncated or corrupt zip archive: end of central directory record not found');
    const damaged = Buffer.from(pthBytes);
    // Remove a storage record by renaming it in the central directory: data/9 → data/X.
    const cd = damaged.lastIndexOf(Buffer.from('official_vits_like/data/9'));
    damaged.write('X', cd + 'official_vits_like/data/'.length, 'latin1');
    expect(pthError(damaged)).toBe('x.pth: checkpoint["blocks.0.attn.qkv.bias"]: storage "9" (official_vits_like/data/9) is missing from the ' + 'archive');
  });
});

describe('readPth on handcrafted checkpoints', () => {
  // Storage "0": float32 0..11.
  const s0 = { type: 'FloatStorage', key: '0', numel: 12 };
  const t = (offset: number, shape: number[], stride: number[], extra: Partial<TensorSpec> = {}): TensorSpec => ({
    tensor: s0,
    offset,
    shape,
    stride,
    ...extra,
  });
  const storages = {
    '0': f32bytes([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
    '1': Uint8Array.from([0x80, 0x3f, 0x40, 0xc0, 0x49, 0x40]), // bf16 1, -3, 3.140625
    '2': new Uint8Array(BigInt64Array.from([-5n, 1n << 40n]).buffer),
    '3': Uint8Array.from([1, 0, 1]),
  };
  const spec: Spec = {
    dict: [
      [
        'teacher',
        {
          ordered: true,
          dict: [
            ['backbone.w', t(0, [3, 4], [4, 1])],
            ['backbone.wt', t(0, [4, 3], [1, 4])],
            ['backbone.slice', t(5, [2], [1])],
            ['backbone.col', t(1, [3], [4])],
            ['backbone.expand', t(2, [2, 3], [0, 1])],
            ['backbone.scalar', t(7, [], [])],
            ['backbone.empty', t(0, [0, 5], [5, 1])],
            ['backbone.3d', t(0, [2, 2, 2], [1, 4, 2])],
            ['backbone.rows', t(4, [2, 2], [4, 1])],
          ],
        },
      ],
      [
        'student',
        {
          dict: [
            ['x', { tensor: { type: 'BFloat16Storage', key: '1', numel: 3 }, offset: 0, shape: [3], stride: [1] }],
            ['ids', { tensor: { type: 'LongStorage', key: '2', numel: 2 }, offset: 0, shape: [2], stride: [1] }],
            ['mask', { tensor: { type: 'BoolStorage', key: '3', numel: 3 }, offset: 0, shape: [3], stride: [1] }],
            ['p', t(0, [12], [1], { parameter: true })],
          ],
        },
      ],
      ['iteration', 5],
      ['name', 'run'],
      ['flag', null],
    ],
  };

  test('nested dicts flatten to dotted keys; offsets, strides, shared storages, all dtypes', () => {
    const m = readPth(makePth(spec, storages), 'x.pth');
    expect([...m.keys()]).toEqual([
      'teacher.backbone.w',
      'teacher.backbone.wt',
      'teacher.backbone.slice',
      'teacher.backbone.col',
      'teacher.backbone.expand',
      'teacher.backbone.scalar',
      'teacher.backbone.empty',
      'teacher.backbone.3d',
      'teacher.backbone.rows',
      'student.x',
      'student.ids',
      'student.mask',
      'student.p',
    ]);
    expect(values(m.get('teacher.backbone.w'))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(m.get('teacher.backbone.wt')!.shape).toEqual([4, 3]);
    expect(values(m.get('teacher.backbone.wt'))).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    expect(values(m.get('teacher.backbone.slice'))).toEqual([5, 6]);
    expect(values(m.get('teacher.backbone.col'))).toEqual([1, 5, 9]);
    expect(values(m.get('teacher.backbone.expand'))).toEqual([2, 3, 4, 2, 3, 4]);
    expect(m.get('teacher.backbone.scalar')!.shape).toEqual([]);
    expect(values(m.get('teacher.backbone.scalar'))).toEqual([7]);
    expect(m.get('teacher.backbone.empty')!.data.byteLength).toBe(0);
    expect(values(m.get('teacher.backbone.3d'))).toEqual([0, 2, 4, 6, 1, 3, 5, 7]);
    expect(values(m.get('teacher.backbone.rows'))).toEqual([4, 5, 8, 9]);
    expect(m.get('student.x')!.dtype).toBe('bfloat16');
    expect(values(m.get('student.x'))).toEqual([1, -3, 3.140625]);
    expect(m.get('student.ids')!.dtype).toBe('int64');
    expect(values(m.get('student.ids'))).toEqual([-5, 2 ** 40]);
    expect(m.get('student.mask')!.dtype).toBe('bool');
    expect(values(m.get('student.mask'))).toEqual([1, 0, 1]);
    expect(values(m.get('student.p'))).toEqual(values(m.get('teacher.backbone.w')));
    // Contiguous views share the storage bytes; strided tensors are contiguous copies.
    expect(m.get('student.p')!.data.buffer).toBe(m.get('teacher.backbone.w')!.data.buffer);
    expect(m.get('teacher.backbone.wt')!.data.byteLength).toBe(48);

    const obj = readPthObject(makePth(spec, storages)) as Map<PthValue, PthValue>;
    expect(obj.get('iteration')).toBe(5);
    expect(obj.get('name')).toBe('run');
    expect((obj.get('teacher') as Map<PthValue, PthValue>).size).toBe(9);
  });

  test('zip64 archives and any archive folder name', () => {
    const pth = makePth({ dict: [['a', t(0, [2], [1])]], ordered: true }, storages, { prefix: 'whatever_name' });
    expect(values(readPth(pth).get('a'))).toEqual([0, 1]);
    const zip64 = makeZip(
      [
        { name: 'arch/data.pkl', data: readZip(pth).read('whatever_name/data.pkl') },
        { name: 'arch/data/0', data: storages['0'] },
      ],
      { zip64: true, align: 64 },
    );
    expect(values(readPth(zip64).get('a'))).toEqual([0, 1]);
  });

  test('flattening collisions and non-dict roots are refused', () => {
    const clash: Spec = {
      dict: [
        ['a.b', t(0, [1], [1])],
        ['a', { dict: [['b', t(1, [1], [1])]] }],
      ],
    };
    expect(pthError(makePth(clash, storages))).toBe('x.pth: key "a.b" appears twice after flattening nested dicts');
    expect(pthError(makePth(t(0, [1], [1]), storages))).toBe('x.pth: expected a dict of tensors, but the checkpoint holds a single tensor');
    expect(flattenTensors(new Map(), 'y').size).toBe(0);
  });

  test('storage and view errors', () => {
    expect(pthError(makePth({ dict: [['w', t(3, [4, 3], [3, 1])]] }, storages))).toBe(
      'x.pth: checkpoint["w"]: tensor of shape [4, 3] and stride [3, 1] at offset 3 reaches element 14 of a ' + 'storage of 12 elements',
    );
    expect(pthError(makePth({ dict: [['w', t(0, [2], [1])]] }, { '0': new Uint8Array(40) }))).toBe(
      'x.pth: checkpoint["w"]: storage "0" has 40 bytes but 12 float32 elements need 48',
    );
    const twoTypes: Spec = {
      dict: [
        ['a', t(0, [2], [1])],
        ['b', { tensor: { type: 'IntStorage', key: '0', numel: 12 }, offset: 0, shape: [2], stride: [1] }],
      ],
    };
    expect(pthError(makePth(twoTypes, storages))).toBe('x.pth: checkpoint["b"]: storage "0" is used both as float32 and as int32');
  });

  test('unsafe pickles inside a checkpoint are refused', () => {
    const evil = new PickleWriter().proto(2).global('os', 'system').str('echo pwned').raw(0x85).reduce().stop();
    expect(pthError(makePth(null, {}, { pickle: evil.bytes() }))).toBe(
      'x.pth (data.pkl): refusing to unpickle global "os.system": only tensors, ordered dicts and primitive values ' + 'are allowed in a checkpoint',
    );
  });

  test('big-endian, legacy, plain pickle, TorchScript and non-checkpoint files', () => {
    expect(pthError(makePth({ dict: [] }, {}, { byteorder: 'big' }))).toBe(
      'x.pth: the checkpoint was saved on a big-endian machine; only little-endian checkpoints are supported',
    );
    expect(readPth(makePth({ dict: [['a', t(0, [1], [1])]] }, storages, { byteorder: null })).size).toBe(1);
    const legacy = Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
    expect(pthError(legacy)).toBe(
      'x.pth: this is the legacy (pre-1.6, non-zip) torch.save format, which is not supported: re-save it with ' +
        'PyTorch >= 1.6, e.g. torch.save(torch.load(path, weights_only=True), new_path), or convert it to safetensors',
    );
    expect(pthError(Uint8Array.from([0x80, 0x04, 0x4e, 0x2e]))).toBe('x.pth: this is a plain pickle file, not a torch.save checkpoint');
    expect(pthError(Buffer.from('{"not": "a checkpoint"}'))).toBe('x.pth: not a PyTorch checkpoint: expected a zip archive as written by torch.save');
    const script = makeZip([
      { name: 'm/data.pkl', data: Uint8Array.from([0x80, 0x02, 0x4e, 0x2e]) },
      { name: 'm/constants.pkl', data: Uint8Array.from([0x80, 0x02, 0x4e, 0x2e]) },
    ]);
    expect(pthError(script)).toBe('x.pth: this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint of tensors');
    expect(pthError(makeZip([{ name: 'hello.txt', data: Uint8Array.from([1]) }]))).toBe(
      'x.pth: not a torch.save checkpoint: the zip archive has no <archive>/data.pkl',
    );
  });
});
