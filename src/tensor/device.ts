// Devices and threads.
import { native } from '../native/binding.js';
import { TorchRangeError } from '../native/errors.js';

export const cuda = {
  isAvailable: (): boolean => native.cudaIsAvailable(),
  deviceCount: (): number => native.cudaDeviceCount(),
  /** Waits for all work on the current CUDA device. */
  synchronize: (): void => native.synchronize(),
};

/** Sets the number of intra-op threads (default: the machine's cores). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new TorchRangeError(`setNumThreads: expected a positive integer, received ${n}`, 'ERR_INVALID_ARG');
  native.setNumThreads(n);
}
export const getNumThreads = (): number => native.getNumThreads();
