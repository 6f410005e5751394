// CUDA streams, events and synchronisation. This machine's libtorch is a CPU build, so the calls must fail with one
// clear error naming the call and the build; the CUDA paths themselves run only where a CUDA libtorch is linked.
import { describe, expect, test } from 'vitest';

import { addonInfo, cuda, CudaEvent, CudaStream, TorchError, TorchTypeError } from '../../../src/index.js';
import { errorOf } from './util.js';

const cpuBuild = !addonInfo.cudaCompiled;

describe.runIf(cpuBuild)('CUDA calls on a CPU build', () => {
  const why = `CUDA is not available in this build (libtorch ${addonInfo.torchVersion} CPU)`;

  test('availability is reported, not thrown', () => {
    expect(cuda.isAvailable()).toBe(false);
    expect(cuda.deviceCount()).toBe(0);
  });

  test('synchronize', () => {
    const e = errorOf(() => cuda.synchronize());
    expect(e).toBeInstanceOf(TorchError);
    expect(e.code).toBe('ERR_TORCH_NOT_IMPLEMENTED');
    expect(e.message).toBe(`cuda.synchronize: ${why}`);
    expect(() => cuda.synchronize(0)).toThrow(`cuda.synchronize: ${why}`);
  });

  test('streams', () => {
    const e = errorOf(() => new cuda.Stream());
    expect(e).toBeInstanceOf(TorchError);
    expect(e.code).toBe('ERR_TORCH_NOT_IMPLEMENTED');
    expect(e.message).toBe(`cuda.Stream: ${why}`);
    expect(() => new CudaStream({ priority: 'high' })).toThrow(`cuda.Stream: ${why}`);
    expect(() => cuda.currentStream()).toThrow(`cuda.currentStream: ${why}`);
    expect(() => cuda.defaultStream(0)).toThrow(`cuda.defaultStream: ${why}`);
  });

  test('events', () => {
    const e = errorOf(() => new cuda.Event({ enableTiming: true }));
    expect(e).toBeInstanceOf(TorchError);
    expect(e.message).toBe(`cuda.Event: ${why}`);
    expect(() => new CudaEvent()).toThrow(`cuda.Event: ${why}`);
  });

  test('graphs', () => {
    const e = errorOf(() => new cuda.Graph());
    expect(e).toBeInstanceOf(TorchError);
    expect(e.code).toBe('ERR_TORCH_NOT_IMPLEMENTED');
    expect(e.message).toBe(`cuda.Graph: ${why}`);
  });

  test('sync debug mode', () => {
    const e = errorOf(() => cuda.syncDebugMode());
    expect(e).toBeInstanceOf(TorchError);
    expect(e.code).toBe('ERR_TORCH_NOT_IMPLEMENTED');
    expect(e.message).toBe(`cuda.syncDebugMode: ${why}`);
    let ran = false;
    expect(() => cuda.withSyncDebugMode('warn', () => (ran = true))).toThrow(`cuda.syncDebugMode: ${why}`);
    expect(ran).toBe(false);
  });

  test('recordStream: its arguments are checked first, then the build refuses', async () => {
    const { ones } = await import('../../../src/index.js');
    const t = ones([2]);
    expect(() => cuda.recordStream(t, {} as CudaStream)).toThrow('cuda.recordStream: expected "stream" to be a cuda.Stream, received object');
    expect(() => cuda.recordStream(3 as never, {} as CudaStream)).toThrow('cuda.recordStream: expected "tensor" to be a Tensor, received number 3');
    t.dispose();
  });

  test('arguments are checked before the native call', () => {
    const e = errorOf(() => cuda.setCurrentStream(42 as unknown as CudaStream));
    expect(e).toBeInstanceOf(TorchTypeError);
    expect(e.message).toBe('cuda.setCurrentStream: expected "stream" to be a cuda.Stream, received number 42');
    const m = errorOf(() => cuda.syncDebugMode('loud' as 'warn'));
    expect(m).toBeInstanceOf(TorchTypeError);
    expect(m.message).toBe('cuda.syncDebugMode: expected "mode" to be "default", "warn" or "error", received string "loud"');
  });
});

// Exercised only by CUDA builds on a machine with a GPU.
// A CUDA build on a machine without a GPU (checked with PyTorch 2.14's CUDA libtorch, see docs/DEVELOPING.md).
describe.runIf(!cpuBuild && !cuda.isAvailable())('CUDA calls on a CUDA build without a device', () => {
  test('each names the call and says that no device was found; the process goes on', async () => {
    const { ones, zeros, memory } = await import('../../../src/index.js');
    const why = `CUDA is not available: no CUDA device was found (libtorch ${addonInfo.torchVersion} with CUDA)`;
    expect(cuda.deviceCount()).toBe(0);
    expect(() => new cuda.Stream()).toThrow(`cuda.Stream: ${why}`);
    expect(() => new cuda.Event()).toThrow(`cuda.Event: ${why}`);
    expect(() => cuda.synchronize()).toThrow(`cuda.synchronize: ${why}`);
    expect(() => cuda.currentStream()).toThrow(`cuda.currentStream: ${why}`);
    expect(() => cuda.syncDebugMode('warn')).toThrow(`cuda.syncDebugMode: ${why}`);
    expect(() => new cuda.Graph()).toThrow(`cuda.Graph: ${why}`);
    const e = errorOf(() => zeros([2], { device: 'cuda' }));
    expect(e.message).toBe(
      `zeros: "device" is cuda but CUDA is not available (this addon uses libtorch ${addonInfo.torchVersion} with CUDA, and no CUDA device was found)`,
    );
    expect(memory().cudaAllocated).toBe(0);
    expect(ones([2]).sum().item()).toBe(2);
  });
});

describe.runIf(!cpuBuild && cuda.isAvailable())('CUDA streams and events', () => {
  test('a timed region on a side stream', async () => {
    const { randn, matmul, scope } = await import('../../../src/index.js');
    const s = new cuda.Stream();
    const start = new cuda.Event({ enableTiming: true });
    const end = new cuda.Event({ enableTiming: true });
    scope(() =>
      s.run(() => {
        start.record();
        const x = randn([256, 256], { device: 'cuda' });
        matmul(x, x);
        end.record();
      }),
    );
    end.synchronize();
    expect(end.query()).toBe(true);
    expect(start.elapsedTime(end)).toBeGreaterThanOrEqual(0);
    expect(cuda.currentStream().info.id).toBe(cuda.defaultStream().info.id);
    s.synchronize();
    expect(s.query()).toBe(true);
    cuda.synchronize();
  });

  test('recordStream: a tensor made on a side stream and used on the current one; a CPU tensor is refused', async () => {
    const { ones, scope } = await import('../../../src/index.js');
    const s = new cuda.Stream();
    const x = s.run(() => ones([1024], { device: 'cuda' }).mul(3));
    const done = new cuda.Event().record(s);
    done.wait();
    cuda.recordStream(x, cuda.currentStream());
    expect(scope(() => x.sum().item())).toBe(3072);
    x.dispose();
    const c = ones([2]);
    expect(() => cuda.recordStream(c, s)).toThrow(/^cuda\.recordStream: the tensor \(.*\) is not on the stream's device, cuda:0$/);
    c.dispose();
  });
});
