// Public tensor files: saveTensors/loadTensors (.safetensors with metadata) and saveNpy/loadNpy, round trips,
// NumPy interoperability (with the peer Python when present), and refusals naming the file.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';

import { loadNpy, loadTensors, saveNpy, saveTensors } from '../../../src/checkpoint/tensors.js';
import { CheckpointError, memory, tensor, TorchTypeError } from '../../../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'dinov3-tensors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const PY = '/work/peer/venv/bin/python';

describe('saveTensors / loadTensors', () => {
  test('round trip of several dtypes with metadata', async () => {
    const before = memory().liveTensors;
    const a = tensor([
      [1.5, -2],
      [3, 4],
    ]);
    const b = tensor([1, 2, 3], { dtype: 'int64' });
    const c = tensor([0.25, 0.5], { dtype: 'bfloat16' });
    const path = join(dir, 't.safetensors');
    await saveTensors(path, { a, b, c }, { note: 'hello' });
    const { tensors, metadata } = await loadTensors(path);
    expect(metadata).toEqual({ note: 'hello' });
    expect([...tensors.keys()].sort()).toEqual(['a', 'b', 'c']);
    expect([tensors.get('a')!.shape, tensors.get('a')!.toArray()]).toEqual([
      [2, 2],
      [1.5, -2, 3, 4],
    ]);
    expect(tensors.get('b')!.dtype).toBe('int64');
    expect(Array.from(tensors.get('c')!.toFloat32Array())).toEqual([0.25, 0.5]);
    const f32 = await loadTensors(path, { dtype: 'float32' });
    expect(f32.tensors.get('b')!.dtype).toBe('float32');
    for (const t of [a, b, c, ...tensors.values(), ...f32.tensors.values()]) t.dispose();
    expect(memory().liveTensors).toBe(before);
    await expect(saveTensors(path, { x: [1, 2] as never })).rejects.toThrow(new TorchTypeError('saveTensors: "x" is not a Tensor', 'ERR_INVALID_ARG'));
    await expect(loadTensors(join(dir, 'none.safetensors'))).rejects.toThrow(
      new CheckpointError(`${join(dir, 'none.safetensors')}: no such file or directory`),
    );
  });
});

describe('saveNpy / loadNpy', () => {
  test('round trip; bfloat16 refused; corrupt files named', async () => {
    const x = tensor(
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      { dtype: 'float16' },
    );
    const p = join(dir, 'x.npy');
    await saveNpy(p, x);
    const y = await loadNpy(p);
    expect([y.dtype, y.shape, Array.from(y.toFloat32Array())]).toEqual(['float16', [2, 3], [1, 2, 3, 4, 5, 6]]);
    const m = tensor([true, false, true], { dtype: 'bool' });
    await saveNpy(p, m);
    const m2 = await loadNpy(p);
    expect([m2.dtype, m2.toArray()]).toEqual(['bool', [1, 0, 1]]);
    const bf = tensor([1], { dtype: 'bfloat16' });
    await expect(saveNpy(p, bf)).rejects.toThrow("saveNpy: NumPy has no bfloat16 dtype; convert the tensor first (e.g. t.to('float32'))");
    const bad = join(dir, 'bad.npy');
    writeFileSync(
      bad,
      Buffer.concat([
        Buffer.from('\x93NUMPY\x01\x00', 'latin1'),
        Buffer.from([0x20, 0]),
        Buffer.from("{'descr': '<f4', 'fortran_order': False, 'shape': (10,), }".padEnd(31, ' ')),
      ]),
    );
    await expect(loadNpy(bad)).rejects.toThrow(CheckpointError);
    writeFileSync(bad, 'nope nope nope');
    await expect(loadNpy(bad)).rejects.toThrow(new CheckpointError(`${bad}: not a NumPy .npy file (no \\x93NUMPY magic)`));
    for (const t of [x, y, m, m2, bf]) t.dispose();
  });

  test.skipIf(!existsSync(PY))('NumPy reads what saveNpy writes and loadNpy reads what NumPy writes', async () => {
    const x = tensor([
      [0.5, -1.25],
      [2, 1e-3],
    ]);
    const ours = join(dir, 'ours.npy');
    await saveNpy(ours, x);
    const theirs = join(dir, 'theirs.npy');
    const r = spawnSync(
      PY,
      [
        '-c',
        `import numpy as np, json, sys
a = np.load(sys.argv[1]); print(json.dumps([str(a.dtype), list(a.shape), a.tolist()]))
np.save(sys.argv[2], np.arange(6, dtype=np.int64).reshape(2, 3) * 7 - 5)`,
        ours,
        theirs,
      ],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      'float32',
      [2, 2],
      [
        [0.5, -1.25],
        [2, Math.fround(1e-3)],
      ],
    ]);
    const t = await loadNpy(theirs);
    expect([t.dtype, t.shape, t.toArray()]).toEqual(['int64', [2, 3], [-5, 2, 9, 16, 23, 30]]);
    x.dispose();
    t.dispose();
  });
});
