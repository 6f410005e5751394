// Optimisation (RECIPE §6.1, §4 steps 7-10): AdamW, per-module gradient clipping, the EMA teacher update.
export { AdamW, type AdamWOptions, type AdamWStateDict, type ParamGroup, type ParamGroupInit, type ParamGroupState } from './adamw.js';
export { clipGradNorm } from './clip_grad.js';
export { emaUpdate } from './ema.js';
