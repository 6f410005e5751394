// Lifecycle (STYLE §5, §7): double dispose, use-after-dispose with context, Module/Optimizer disposal, `using`,
// scopes (Promise rejection, nesting), the addon in worker threads and at process exit.
import { spawnSync } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { AdamW, DisposedError, keep, Linear, LayerNorm, memory, Module, ones, randn, scope, type Tensor, zeros } from '../../../src/index.js';
import { full } from '../../../src/index.js';
import { native } from '../../../src/native/binding.js';
import { compileLibrary } from './compiled_library.js';
import { errorOf } from '../ops/util.js';

const full1 = (v: number) => full([1], v);

describe('dispose', () => {
  test('double dispose is a no-op', () => {
    const before = memory();
    const t = zeros([256]);
    expect(memory().liveTensors).toBe(before.liveTensors + 1);
    expect(memory().cpuBytes).toBe(before.cpuBytes + 1024);
    t.dispose();
    t.dispose();
    t[Symbol.dispose]();
    expect(t.isDisposed).toBe(true);
    expect(memory().liveTensors).toBe(before.liveTensors);
    expect(memory().cpuBytes).toBe(before.cpuBytes);
  });

  test('use after dispose names the op, the argument, what the tensor was and which op created it', () => {
    const a = randn([2, 3]);
    const b = ones([3, 2]);
    const c = a.matmul(b);
    a.dispose();
    c.dispose();
    let e = errorOf(() => b.add(a));
    expect(e).toBeInstanceOf(DisposedError);
    expect(e.code).toBe('ERR_DISPOSED');
    expect(e.message).toBe('add: "other" is a disposed Tensor (float32 [2, 3], created by randn)');
    e = errorOf(() => c.sum());
    expect(e).toBeInstanceOf(DisposedError);
    expect(e.message).toBe('sum: "input" is a disposed Tensor (float32 [2, 2], created by matmul)');
    e = errorOf(() => c.shape);
    expect(e.message).toBe('shape: "tensor" is a disposed Tensor (float32 [2, 2], created by matmul)');
    e = errorOf(() => c.item());
    expect(e.message).toBe('item: "tensor" is a disposed Tensor (float32 [2, 2], created by matmul)');
    expect(String(c)).toBe('Tensor(disposed: float32 [2, 2], created by matmul)');
    b.dispose();
  });

  test('a handle kept long after dispose, its slot since reused by other tensors, still throws (and never aliases)', () => {
    const stale = randn([5]);
    stale.dispose();
    const live: Tensor[] = [];
    // Disposed slots wait for 1024 others before reuse: create and free enough tensors to recycle the stale one's slot.
    for (let i = 0; i < 3000; i++) zeros([1]).dispose();
    for (let i = 0; i < 3000; i++) live.push(full1(i));
    const e = errorOf(() => stale.add(1));
    expect(e).toBeInstanceOf(DisposedError);
    expect(e.message).toBe('add: "input" is a disposed Tensor (disposed earlier; its record has since been reused)');
    expect(stale.isDisposed).toBe(true);
    stale.dispose(); // still a no-op: it must not free the tensor now in that slot
    expect(live.every((t, i) => t.item() === i)).toBe(true);
    for (const t of live) t.dispose();
  });

  test('a view stays valid after its base handle is disposed (shared storage, torch refcounting)', () => {
    const base = ones([2, 4]);
    const view = base.reshape([8]);
    base.dispose();
    expect(view.toArray()).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    view.dispose();
  });

  test('module.dispose() frees parameters, gradients and buffers; the optimizer frees its state', () => {
    const before = memory();
    class Net extends Module {
      readonly norm = this.registerModule('norm', new LayerNorm(8));
      readonly fc = this.registerModule('fc', new Linear(8, 4));
      readonly scale = this.registerBuffer('scale', ones([4]));
      forward(x: Tensor): Tensor {
        return this.fc.forward(this.norm.forward(x)).mul(this.scale);
      }
    }
    const net = new Net();
    const opt = new AdamW(net.parameters());
    scope(() => {
      net
        .forward(randn([3, 8]))
        .square()
        .mean()
        .backward();
      opt.step();
    });
    expect(memory().liveTensors).toBe(before.liveTensors + 5 + 8);
    opt.dispose();
    net.dispose();
    net.dispose();
    expect(net.isDisposed).toBe(true);
    expect(net.fc.weight.isDisposed).toBe(true);
    expect(memory().liveTensors).toBe(before.liveTensors);
    expect(memory().cpuBytes).toBe(before.cpuBytes);
  });

  test('`using` declarations free at block end, also when the block throws', () => {
    const before = memory().liveTensors;
    {
      using a = zeros([4]);
      using net = new Linear(4, 2);
      expect(a.isDisposed).toBe(false);
      expect(net.isDisposed).toBe(false);
      expect(memory().liveTensors).toBe(before + 3);
    }
    expect(memory().liveTensors).toBe(before);
    let leaked: Tensor | undefined;
    expect(() => {
      using b = ones([2]);
      leaked = b;
      throw new Error('boom');
    }).toThrow('boom');
    expect(leaked!.isDisposed).toBe(true);
    expect(memory().liveTensors).toBe(before);
  });
});

describe('scope', () => {
  test('a scope whose function returns a Promise throws and frees what it created', async () => {
    const before = memory().liveTensors;
    let inner: Tensor | undefined;
    const e = errorOf(() =>
      scope('load', async () => {
        inner = zeros([2]);
        return inner;
      }),
    );
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toBe(
      'scope "load": the function returned a Promise; scopes are synchronous (await interleaves them). Use `using` declarations or dispose() in async code.',
    );
    expect(inner!.isDisposed).toBe(true);
    expect(memory().liveTensors).toBe(before);
  });

  test('nested scopes move returned tensors to the parent, which frees them unless returned again', () => {
    const before = memory().liveTensors;
    let fromInner: Tensor | undefined;
    let kept: Tensor | undefined;
    const result = scope('outer', () => {
      fromInner = scope('inner', () => {
        const tmp = ones([3]);
        kept = keep(ones([1]));
        return { value: tmp.mul(2), list: [tmp.add(1)] };
      }).value;
      expect(fromInner.isDisposed).toBe(false);
      expect(memory().liveTensors).toBe(before + 3); // value, list[0], kept
      return fromInner.sum();
    });
    expect(result.item()).toBe(6);
    expect(fromInner!.isDisposed).toBe(true); // the parent did not return it
    expect(kept!.isDisposed).toBe(false);
    expect(memory().liveTensors).toBe(before + 2);
    result.dispose();
    kept!.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('a scope that throws frees everything it created', () => {
    const before = memory().liveTensors;
    expect(() =>
      scope(() => {
        zeros([2]);
        ones([2]).add(1);
        throw new Error('fail inside');
      }),
    ).toThrow('fail inside');
    expect(memory().liveTensors).toBe(before);
  });
});

describe('GC backstop', () => {
  // Tensors that nobody disposes are freed after the GC collects their Tensor objects (FinalizationRegistry); tensors
  // owned by a running scope are held by it and are never collected from under it.
  const gc = (): (() => void) => {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  };
  const settle = async (collect: () => void) => {
    for (let i = 0; i < 20; i++) {
      collect();
      await new Promise((r) => setTimeout(r, 5));
    }
  };

  test('unowned tensors dropped without dispose are freed after garbage collection', async () => {
    const collect = gc();
    await settle(collect);
    const before = memory().liveTensors;
    (() => {
      for (let i = 0; i < 20; i++) zeros([1024]); // outside any scope
      keep(scope(() => ones([8]).add(1))); // kept out of a scope, then dropped
      scope(() => ones([8]).mul(2)); // returned from the outermost scope, then dropped
    })();
    expect(memory().liveTensors).toBe(before + 22);
    await settle(collect);
    expect(memory().liveTensors).toBe(before);
  });

  test('a scope holds its tensors: a collection inside it frees nothing it owns', async () => {
    const collect = gc();
    await settle(collect);
    const before = memory().liveTensors;
    const sum = scope(() => {
      const xs = Array.from({ length: 10 }, (_, i) => full([4], i));
      const weak = new WeakRef(xs[3]!);
      xs.length = 0;
      collect();
      const t = weak.deref();
      expect(t?.isDisposed).toBe(false);
      return t!.sum().item();
    });
    expect(sum).toBe(12);
    await settle(collect);
    expect(memory().liveTensors).toBe(before);
  });
});

describe('environments', () => {
  let lib: ReturnType<typeof compileLibrary>;
  beforeAll(() => {
    lib = compileLibrary();
  });
  afterAll(() => lib.cleanup());

  // Runs `body` (an async function body with `lib` in scope) in a worker thread; resolves with what it posts and the
  // exit code.
  function inWorker(body: string): Promise<{ messages: unknown[]; exitCode: number }> {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.indexUrl).then(async (lib) => { ${body} })
        .catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));`;
    return new Promise((resolve, reject) => {
      const messages: unknown[] = [];
      const w = new Worker(code, { eval: true, workerData: { indexUrl: lib.indexUrl } });
      w.on('message', (m) => messages.push(m));
      w.on('error', reject);
      w.on('exit', (exitCode) => resolve({ messages, exitCode }));
    });
  }

  test('the addon loads in worker threads (own instance data), which exit with live tensors', async () => {
    const before = memory().liveTensors;
    const mainTensor = ones([2, 2]);
    const body = `
      const a = lib.ones([2, 3]);
      const s = a.mul(2).sum();
      const leftAlive = [lib.zeros([1000]), lib.randn([4, 4])];
      let errorOk = false;
      try { a.matmul(a); } catch (e) { errorOk = e instanceof lib.TorchError && e.code === 'ERR_TORCH'; }
      const handle = a[Object.getOwnPropertySymbols(a)[0]];
      parentPort.postMessage({ sum: s.item(), live: lib.memory().liveTensors, errorOk, kept: leftAlive.length, handle });`;
    const results = await Promise.all([inWorker(body), inWorker(body)]);
    for (const { messages, exitCode } of results) {
      expect(exitCode).toBe(0);
      const { handle, ...rest } = messages[0] as { handle: unknown };
      expect(messages).toHaveLength(1);
      expect(rest).toEqual({ sum: 12, live: 5, errorOk: true, kept: 2 });
      // A raw handle of another environment's table is not a tensor here (the handle ids carry their environment).
      expect(typeof handle).toBe('bigint');
      expect(native.isTensor(handle as never)).toBe(false);
      expect(errorOf(() => native.sum(handle as never)).message).toMatch(/^sum: expected "input" to be a Tensor, received bigint$/);
    }
    // The main thread's counters and tensors are unaffected.
    expect(memory().liveTensors).toBe(before + 1);
    expect(mainTensor.add(1).sum().item()).toBe(8);
    scope(() => undefined);
    mainTensor.dispose();
  });

  test('workers terminated in the middle of tensor work leave the process and the main thread working', () => {
    // In a child process: a crash here must fail this test, not take the test runner down.
    const script = `
      import { Worker } from 'node:worker_threads';
      const indexUrl = ${JSON.stringify(lib.indexUrl)};
      const lib = await import(indexUrl);
      const t = lib.ones([3]);
      // (eval code is ESM here: the worker inherits --input-type=module)
      const code = \`import { parentPort, workerData } from 'node:worker_threads';
        const lib = await import(workerData.indexUrl);
        parentPort.postMessage('started');
        const x = lib.randn([64, 64]);
        for (;;) x.matmul(x).dispose();\`;
      const codes = [];
      for (let i = 0; i < 12; i++)
        codes.push(await new Promise((resolve, reject) => {
          const w = new Worker(code, { eval: true, workerData: { indexUrl } });
          w.on('message', () => void w.terminate());
          w.on('error', reject);
          w.on('exit', resolve);
        }));
      process.stdout.write(JSON.stringify({ codes: [...new Set(codes)], sum: t.sum().item(), live: lib.memory().liveTensors }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 100_000 });
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ codes: [1], sum: 3, live: 2 }); // t and its sum
  });

  test('a process exits cleanly (code 0) with live tensors, modules and optimizers', () => {
    const script = `
      const lib = await import(${JSON.stringify(lib.indexUrl)});
      const net = new lib.Linear(8, 8);
      const opt = new lib.AdamW(net.parameters());
      const x = lib.randn([16, 8]);
      net.forward(x).sum().backward();
      opt.step();
      globalThis.keepAlive = [net, opt, x, lib.zeros([1 << 16])];
      process.stdout.write('ok ' + lib.memory().liveTensors);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ok 10'); // net (2) + opt state (4) + x + output + its sum + zeros
    expect(r.status).toBe(0);
  });
});
