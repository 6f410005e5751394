import { describe, expect, test } from 'vitest';
import { CheckpointError } from '../../../src/native/errors.js';
import { TorchStorageRef, TorchTensorRef, unpickle, type PickleValue } from '../../../src/io/pickle.js';
import { fromHex, PickleWriter, writeSpec } from './helpers.js';

// pickle.dumps({'a': [1, 2.5, None, True, False, 'x', 'é€', b'by', (1, 2, 3), (), (7,), 2**70, -5, 300, 70000,
//                     -2**40, 255, 65535, 65536, -1]}, protocol=P) with CPython 3.11.
const PROTO5 =
  '80059567000000000000007d948c0161945d94284b014740040000000000004e88898c0178948c05c3a9e282ac9443026279944b014b024b' +
  '038794294b0785948a090000000000000000404afbffffff4d2c014a701101008a060000000000ff4bff4dffff4a000001004affffffff65' +
  '732e';
const PROTO2 =
  '80027d710058010000006171015d7102284b014740040000000000004e888958010000007871035805000000c3a9e282ac7104635f636f64' +
  '6563730a656e636f64650a710558020000006279710658060000006c6174696e3171078671085271094b014b024b0387710a294b0785710b' +
  '8a090000000000000000404afbffffff4d2c014a701101008a060000000000ff4bff4dffff4a000001004affffffff65732e';
// pickle.dumps(OrderedDict([('k', 1), ('j', {'n': 2})]), protocol=2)
const ORDERED = '800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000006b71024b0158010000006a71037d710458' + '010000006e71054b0273752e';
// pickle.dumps(eval, protocol=4): STACK_GLOBAL builtins.eval
const EVAL = '80049515000000000000008c086275696c74696e73948c046576616c9493942e';

function unpickleError(bytes: Uint8Array): string {
  try {
    unpickle(bytes, { source: 'evil.pkl' });
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointError);
    return (e as Error).message;
  }
  throw new Error('expected a CheckpointError');
}

describe('unpickle: values', () => {
  const expected: PickleValue = new Map<PickleValue, PickleValue>([
    [
      'a',
      [1, 2.5, null, true, false, 'x', 'é€', Uint8Array.from([0x62, 0x79]), [1, 2, 3], [], [7], 2n ** 70n, -5, 300, 70000, -(2 ** 40), 255, 65535, 65536, -1],
    ],
  ]);

  test('protocol 5 (FRAME, MEMOIZE, SHORT_BINUNICODE, SHORT_BINBYTES)', () => {
    expect(unpickle(fromHex(PROTO5))).toEqual(expected);
  });

  test('protocol 2 (BINPUT, BINUNICODE, bytes via _codecs.encode)', () => {
    expect(unpickle(fromHex(PROTO2))).toEqual(expected);
  });

  test('OrderedDict keeps its order', () => {
    const v = unpickle(fromHex(ORDERED)) as Map<PickleValue, PickleValue>;
    expect([...v.keys()]).toEqual(['k', 'j']);
    expect(v.get('j')).toEqual(new Map([['n', 2]]));
  });

  test('a torch tensor becomes a TorchTensorRef with a TorchStorageRef; shared storages stay shared', () => {
    const w = new PickleWriter().proto(2);
    const storage = { type: 'BFloat16Storage', key: '7', numel: 12 };
    writeSpec(w, {
      dict: [
        ['t', { tensor: storage, offset: 2, shape: [2, 3], stride: [1, 2] }],
        ['p', { tensor: storage, offset: 0, shape: [12], stride: [1], parameter: true }],
      ],
      ordered: true,
    });
    const v = unpickle(w.stop().bytes()) as Map<PickleValue, PickleValue>;
    const t = v.get('t') as TorchTensorRef;
    expect(t).toBeInstanceOf(TorchTensorRef);
    expect(t.storage).toEqual(new TorchStorageRef('bfloat16', '7', 'cpu', 12));
    expect([t.storageOffset, t.shape, t.stride, t.requiresGrad]).toEqual([2, [2, 3], [1, 2], false]);
    const p = v.get('p') as TorchTensorRef;
    expect(p.requiresGrad).toBe(true);
    expect(p.shape).toEqual([12]);
  });
});

describe('unpickle: refusals', () => {
  test('GLOBAL os.system + REDUCE is refused before anything is called', () => {
    // \x80\x02 c"os\nsystem\n" X"echo pwned" \x85 R .
    const w = new PickleWriter().proto(2).global('os', 'system').str('echo pwned').raw(0x85).reduce().stop();
    expect(unpickleError(w.bytes())).toBe(
      'evil.pkl: refusing to unpickle global "os.system": only tensors, ordered dicts and primitive values are ' + 'allowed in a checkpoint',
    );
  });

  test('STACK_GLOBAL builtins.eval is refused', () => {
    expect(unpickleError(fromHex(EVAL))).toBe(
      'evil.pkl: refusing to unpickle global "builtins.eval": only tensors, ordered dicts and primitive values are ' + 'allowed in a checkpoint',
    );
  });

  test('lookalikes of allowed names are refused', () => {
    for (const [m, n] of [
      ['torch._utils', '_rebuild_tensor_v3'],
      ['collections', 'defaultdict'],
      ['torch', 'load'],
      ['torch.nn.modules.linear', 'Linear'],
    ]) {
      const w = new PickleWriter().proto(2).global(m!, n!).stop();
      expect(unpickleError(w.bytes())).toBe(
        `evil.pkl: refusing to unpickle global "${m}.${n}": only tensors, ordered dicts and primitive values are ` + 'allowed in a checkpoint',
      );
    }
  });

  test('unsupported storage types', () => {
    const w = new PickleWriter().proto(2).global('torch', 'ComplexFloatStorage').stop();
    expect(unpickleError(w.bytes())).toBe(
      'evil.pkl: unsupported storage type "torch.ComplexFloatStorage": only float32, float64, bfloat16, float16, ' +
        'int64, int32, int16, int8, uint8 and bool tensors can be loaded',
    );
  });

  test('an allowed global used the wrong way', () => {
    const w = new PickleWriter().proto(2).global('torch', 'FloatStorage').emptyTuple().reduce().stop();
    expect(unpickleError(w.bytes())).toBe('evil.pkl: corrupt pickle: "torch.FloatStorage" cannot be called');
    const w2 = new PickleWriter().proto(2).global('torch._utils', '_rebuild_tensor_v2').emptyTuple().reduce().stop();
    expect(unpickleError(w2.bytes())).toBe('evil.pkl: corrupt pickle: unexpected arguments for torch._utils._rebuild_tensor_v2');
  });

  test('unsupported opcodes (INST, NEWOBJ, PERSID text)', () => {
    expect(unpickleError(Uint8Array.from([0x80, 0x02, 0x69, 0x6f, 0x73, 0x0a]))).toBe('evil.pkl: unsupported pickle opcode 0x69 at byte 2');
    expect(unpickleError(Uint8Array.from([0x80, 0x02, 0x29, 0x29, 0x81, 0x2e]))).toBe('evil.pkl: unsupported pickle opcode 0x81 at byte 4');
  });

  test('corrupt and truncated streams', () => {
    const full = fromHex(PROTO2);
    expect(unpickleError(full.subarray(0, 40))).toBe('evil.pkl: truncated pickle data at byte 40');
    expect(unpickleError(full.subarray(0, full.length - 1))).toMatch(/^evil\.pkl: truncated pickle data at byte \d+$/);
    expect(unpickleError(Uint8Array.from([0x80, 0x02, 0x4b, 0x01, 0x4b, 0x02, 0x2e]))).toBe(
      'evil.pkl: corrupt pickle: the stack is not a single value at STOP',
    );
    expect(unpickleError(Uint8Array.from([0x80, 0x02, 0x68, 0x05, 0x2e]))).toBe('evil.pkl: corrupt pickle: memo entry 5 is not defined');
    expect(unpickleError(Uint8Array.from([0x80, 0x02, 0x73, 0x2e]))).toBe('evil.pkl: corrupt pickle: stack underflow at byte 2');
    expect(unpickleError(Uint8Array.from([0x80, 0x02, 0x4b, 0x01, 0x4b, 0x02, 0x73, 0x2e]))).toBe('evil.pkl: corrupt pickle: stack underflow at byte 6');
    expect(unpickleError(Uint8Array.from([0x80, 0x02, 0x29, 0x4b, 0x01, 0x61, 0x2e]))).toBe('evil.pkl: corrupt pickle: APPEND on a non-list at byte 5');
    expect(unpickleError(Uint8Array.from([0x80, 0x09]))).toBe('evil.pkl: unsupported pickle protocol 9');
  });
});
