// Optimisation (dinov3/train/train.py::build_optimizer, ::do_train; dinov3/train/ssl_meta_arch.py::SSLMetaArch.update_ema): AdamW, per-module gradient clipping, the EMA teacher update.
export { AdamW, type AdamWOptions, type AdamWStateDict, type ParamGroup, type ParamGroupInit, type ParamGroupState } from './adamw.js';
export { clipGradNorm } from './clip_grad.js';
export { emaUpdate } from './ema.js';
