// A restricted Python unpickler for the data.pkl of torch.save checkpoints (protocols 2-5). It never executes
// anything: GLOBAL/STACK_GLOBAL only resolve an allowlist (OrderedDict, torch's tensor/parameter rebuild functions,
// the typed storage classes, _codecs.encode for bytes), REDUCE only "calls" those by building plain values, and
// BINPERSID turns torch's ('storage', type, key, location, numel) ids into TorchStorageRef records.
// Values: None → null, bool, int → number (bigint beyond 2^53), float → number, str → string,
// bytes → Uint8Array, list → array, tuple → frozen array, dict and OrderedDict → Map, set → Set,
// tensors → TorchTensorRef.

import { CheckpointError } from '../native/errors.js';
import type { DType } from './raw_tensor.js';

/** A storage of the checkpoint, stored as `<archive>/data/<key>`. */
export class TorchStorageRef {
  constructor(
    readonly dtype: DType,
    readonly key: string,
    readonly location: string,
    readonly numel: number,
  ) {}
}

/** A tensor view of a storage, as recorded by torch._utils._rebuild_tensor_v2. */
export class TorchTensorRef {
  constructor(
    readonly storage: TorchStorageRef,
    readonly storageOffset: number,
    readonly shape: number[],
    readonly stride: number[],
    readonly requiresGrad: boolean,
  ) {}
}

/** A resolved allowlisted global (only ever a marker: nothing is looked up or run). */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | Set<PickleValue>
  | TorchStorageRef
  | TorchTensorRef
  | PickleGlobal;

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

const ALLOWED_CALLABLES = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  '_codecs.encode',
]);

/** Tuples are frozen arrays (lists are not), so that APPEND on a tuple is refused as in Python. */
function tuple(items: PickleValue[]): PickleValue[] {
  return Object.freeze(items) as PickleValue[];
}

export interface UnpickleOptions {
  /** Names the file in error messages. */
  source?: string;
}

/** Unpickles `data` under the restrictions above. Throws CheckpointError on anything else or on corrupt input
 * (including strings too long for JavaScript). Shared sub-structures stay shared (the result may be a DAG). */
export function unpickle(data: Uint8Array, options: UnpickleOptions = {}): PickleValue {
  const source = options.source ?? '<pickle>';
  try {
    return unpickleUnguarded(data, source);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    if (e instanceof RangeError || (e as NodeJS.ErrnoException | undefined)?.code === 'ERR_STRING_TOO_LONG') {
      throw new CheckpointError(`${source}: the pickle holds a value too large to load (${(e as Error).message})`);
    }
    throw e;
  }
}

function unpickleUnguarded(data: Uint8Array, source: string): PickleValue {
  const fail = (msg: string): never => {
    throw new CheckpointError(`${source}: ${msg}`);
  };
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8');
  let pos = 0;
  const need = (n: number): number => {
    if (n < 0 || pos + n > data.byteLength) fail(`truncated pickle data at byte ${pos}`);
    const at = pos;
    pos += n;
    return at;
  };
  const line = (): string => {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0) fail(`truncated pickle data at byte ${pos}`);
    const s = utf8.decode(data.subarray(pos, nl));
    pos = nl + 1;
    return s;
  };
  const int = (v: bigint): number | bigint => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  const long = (n: number): number | bigint => {
    // Python ints of any size are valid pickle, but converting one of n bytes costs O(n^2) here: checkpoints hold
    // small ints only, so anything beyond 64 bytes (512 bits) is refused.
    if (n > 64) fail(`integer of ${n} bytes at byte ${pos} is too large for a checkpoint`);
    const at = need(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[at + i]!);
    if (n > 0 && data[at + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return int(v);
  };
  const size8 = (): number => {
    const v = dv.getBigUint64(need(8), true);
    if (v > BigInt(data.byteLength)) fail(`truncated pickle data at byte ${pos}`);
    return Number(v);
  };

  const stack: PickleValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PickleValue>();
  const pop = (): PickleValue => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1]!)) {
      fail(`corrupt pickle: stack underflow at byte ${pos - 1}`);
    }
    return stack.pop()!;
  };
  const top = (): PickleValue => {
    const v = pop();
    stack.push(v);
    return v;
  };
  const popMark = (): PickleValue[] => {
    const m = marks.pop();
    if (m === undefined) fail(`corrupt pickle: no MARK before byte ${pos - 1}`);
    return stack.splice(m!);
  };
  const asMap = (v: PickleValue, op: string): Map<PickleValue, PickleValue> => {
    if (!(v instanceof Map)) fail(`corrupt pickle: ${op} on a non-dict at byte ${pos - 1}`);
    return v as Map<PickleValue, PickleValue>;
  };
  const asList = (v: PickleValue, op: string): PickleValue[] => {
    if (!Array.isArray(v) || Object.isFrozen(v)) fail(`corrupt pickle: ${op} on a non-list at byte ${pos - 1}`);
    return v as PickleValue[];
  };
  const getMemo = (i: number): PickleValue => {
    if (!memo.has(i)) fail(`corrupt pickle: memo entry ${i} is not defined`);
    return memo.get(i)!;
  };
  const resolveGlobal = (module: string, name: string): PickleGlobal => {
    const q = `${module}.${name}`;
    if (ALLOWED_CALLABLES.has(q) || (module === 'torch' && Object.hasOwn(STORAGE_DTYPES, name))) {
      return new PickleGlobal(module, name);
    }
    if (module === 'torch' && /^\w+Storage$/.test(name)) {
      fail(`unsupported storage type "${q}": only float32, float64, bfloat16, float16, int64, int32, int16, int8, ` + 'uint8 and bool tensors can be loaded');
    }
    return fail(`refusing to unpickle global "${q}": ` + 'only tensors, ordered dicts and primitive values are allowed in a checkpoint');
  };

  const str = (n: number): string => utf8.decode(data.subarray(need(n), pos));
  const bin = (n: number): Uint8Array => new Uint8Array(data.subarray(need(n), pos));
  const u8 = (): number => data[need(1)]!;
  const u32 = (): number => dv.getUint32(need(4), true);
  type Dict = Map<PickleValue, PickleValue>;
  const setItems = (m: Dict, items: PickleValue[], op: string): Dict => {
    if (items.length % 2 !== 0) fail(`corrupt pickle: odd number of items for ${op}`);
    for (let i = 0; i < items.length; i += 2) m.set(items[i]!, items[i + 1]!);
    return m;
  };

  // Opcodes that push one value.
  const PUSH: Record<number, () => PickleValue> = {
    0x7d: () => new Map(), // EMPTY_DICT
    0x5d: () => [], // EMPTY_LIST
    0x29: () => tuple([]), // EMPTY_TUPLE
    0x8f: () => new Set(), // EMPTY_SET
    0x4e: () => null, // NONE
    0x88: () => true, // NEWTRUE
    0x89: () => false, // NEWFALSE
    0x4a: () => dv.getInt32(need(4), true), // BININT
    0x4b: u8, // BININT1
    0x4d: () => dv.getUint16(need(2), true), // BININT2
    0x8a: () => long(u8()), // LONG1
    0x8b: () => long(dv.getInt32(need(4), true)), // LONG4
    0x47: () => dv.getFloat64(need(8), false), // BINFLOAT (big-endian)
    0x58: () => str(u32()), // BINUNICODE
    0x8c: () => str(u8()), // SHORT_BINUNICODE
    0x8d: () => str(size8()), // BINUNICODE8
    0x43: () => bin(u8()), // SHORT_BINBYTES
    0x42: () => bin(u32()), // BINBYTES
    0x8e: () => bin(size8()), // BINBYTES8
    0x74: () => tuple(popMark()), // TUPLE
    0x6c: popMark, // LIST
    0x64: () => setItems(new Map(), popMark(), 'DICT'), // DICT
    0x91: () => new Set(popMark()), // FROZENSET
    0x32: top, // DUP
    0x68: () => getMemo(u8()), // BINGET
    0x6a: () => getMemo(u32()), // LONG_BINGET
    0x51: () => persistentLoad(pop(), fail), // BINPERSID
    0x63: () => resolveGlobal(line(), line()), // GLOBAL (module, then name)
  };

  for (;;) {
    const op = u8();
    const push = PUSH[op];
    if (push !== undefined) {
      stack.push(push());
      continue;
    }
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail(`unsupported pickle protocol ${data[pos - 1]}`);
        break;
      case 0x95: // FRAME: the length only helps buffered readers
        need(8);
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length !== 0) fail('corrupt pickle: the stack is not a single value at STOP');
        return stack[0]!;
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const items: PickleValue[] = [];
        for (let i = op - 0x84; i > 0; i--) items.unshift(pop());
        stack.push(tuple(items));
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        asList(top(), 'APPEND').push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = asList(top(), 'APPENDS');
        for (const v of items) list.push(v);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        asMap(top(), 'SETITEM').set(k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(asMap(top(), 'SETITEMS'), items, 'SETITEMS');
        break;
      }
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const set = top();
        if (!(set instanceof Set)) fail('corrupt pickle: ADDITEMS on a non-set');
        for (const v of items) (set as Set<PickleValue>).add(v);
        break;
      }
      case 0x30: // POP
        if (marks.length > 0 && stack.length === marks[marks.length - 1]) marks.pop();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('corrupt pickle: STACK_GLOBAL needs strings');
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        stack.push(reduce(pop(), args, fail));
        break;
      }
      case 0x62: {
        // BUILD: the state of an OrderedDict (its _metadata) or of a tensor is not needed.
        pop();
        const obj = top();
        if (!(obj instanceof Map) && !(obj instanceof TorchTensorRef)) {
          fail('corrupt pickle: BUILD on an unsupported object');
        }
        break;
      }
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${pos - 1}`);
    }
  }
}

function isInt(v: PickleValue): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

function intTuple(v: PickleValue): number[] | undefined {
  return Array.isArray(v) && v.every(isInt) ? [...(v as number[])] : undefined;
}

/** torch's persistent id of a storage: ('storage', storage_type, key, location, numel). */
function persistentLoad(pid: PickleValue, fail: (msg: string) => never): TorchStorageRef {
  if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') {
    return fail("unsupported persistent id: expected a ('storage', type, key, location, numel) tuple");
  }
  const [, type, key, location, n] = pid;
  if (!(type instanceof PickleGlobal) || type.module !== 'torch' || !Object.hasOwn(STORAGE_DTYPES, type.name)) {
    return fail('corrupt pickle: the storage type of a persistent id is not a torch storage class');
  }
  if (typeof key !== 'string' || typeof location !== 'string' || !isInt(n!) || (n as number) < 0) {
    return fail(`corrupt pickle: invalid persistent id for storage ${JSON.stringify(String(key))}`);
  }
  return new TorchStorageRef(STORAGE_DTYPES[type.name]!, key, location, n as number);
}

/** The effect of calling an allowlisted global: builds a value, runs nothing. */
function reduce(fn: PickleValue, args: PickleValue, fail: (msg: string) => never): PickleValue {
  if (!(fn instanceof PickleGlobal)) return fail('corrupt pickle: REDUCE on a non-callable');
  if (!Array.isArray(args)) return fail('corrupt pickle: REDUCE arguments are not a tuple');
  const q = fn.qualifiedName;
  const bad = (): never => fail(`corrupt pickle: unexpected arguments for ${q}`);
  switch (q) {
    case 'collections.OrderedDict': {
      const m = new Map<PickleValue, PickleValue>();
      if (args.length === 0) return m;
      if (args.length !== 1 || !Array.isArray(args[0])) return bad();
      for (const pair of args[0] as PickleValue[]) {
        if (!Array.isArray(pair) || pair.length !== 2) return bad();
        m.set(pair[0]!, pair[1]!);
      }
      return m;
    }
    case 'torch._utils._rebuild_tensor':
    case 'torch._utils._rebuild_tensor_v2': {
      const [storage, offset, size, stride, requiresGrad] = args;
      const shape = intTuple(size ?? null);
      const strides = intTuple(stride ?? null);
      const v2 = q.endsWith('_v2');
      if (
        !(storage instanceof TorchStorageRef) ||
        !isInt(offset ?? null) ||
        shape === undefined ||
        strides === undefined ||
        args.length < (v2 ? 6 : 4) ||
        args.length > (v2 ? 7 : 4)
      ) {
        return bad();
      }
      return new TorchTensorRef(storage, offset as number, shape, strides, requiresGrad === true);
    }
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state': {
      if (!(args[0] instanceof TorchTensorRef) || args.length < 3) return bad();
      const t = args[0];
      return new TorchTensorRef(t.storage, t.storageOffset, t.shape, t.stride, args[1] === true);
    }
    case '_codecs.encode': {
      // How protocol 2 pickles Python 3 bytes: _codecs.encode(str, 'latin1').
      const [text, encoding] = args;
      if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) return bad();
      const bytes = new Uint8Array(text.length);
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c > 0xff) return bad();
        bytes[i] = c;
      }
      return bytes;
    }
    default:
      return fail(`corrupt pickle: "${q}" cannot be called`);
  }
}
