// The --device option of the commands that run on a device (bench, train): its parser, and the one error for a CUDA
// device this addon cannot use. No library import here: program.ts loads this before any command runs.
import { InvalidArgumentError } from 'commander';

import { ConfigError } from '../native/errors.js';
import type { Device } from '../tensor/tensor.js';

/** Commander parser of `--device`: cpu, cuda or cuda:<index>. */
export const deviceArg = (v: string): Device => {
  if (!/^(cpu|cuda(:\d+)?)$/.test(v)) throw new InvalidArgumentError('expected cpu, cuda or cuda:<index>.');
  return v as Device;
};

/** The ConfigError of `<cmd>: --device cuda…` when CUDA cannot be used (a CPU build, or no GPU); null otherwise. */
export function deviceError(cmd: string, device: Device, a: { cudaAvailable: boolean; cudaCompiled: boolean; torchVersion: string }): ConfigError | null {
  if (!device.startsWith('cuda') || a.cudaAvailable) return null;
  return new ConfigError(
    `${cmd}: --device ${device}: CUDA is not available (libtorch ${a.torchVersion}, ${a.cudaCompiled ? 'no GPU found' : 'built without CUDA'})`,
  );
}
