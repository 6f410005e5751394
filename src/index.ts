// Public exports of dinov3-ts.
export * from './native/errors.js';
export { addonInfo } from './native/binding.js';
export { Tensor, type DType, type Device, DTYPES, itemSize } from './tensor/tensor.js';
export * from './tensor/creation.js';
export { scope, keep, memory } from './tensor/scope.js';
export * from './tensor/grad_mode.js';
export * from './tensor/device.js';
export * from './ops/pointwise.js';
export * from './ops/reduce.js';
export * from './ops/shape.js';
export * from './ops/index.js';
export * from './ops/linalg.js';
export * from './ops/nn.js';
export { Module, type StateDict } from './nn/module.js';
export * from './nn/layers.js';
export * as init from './nn/init.js';
