// The ONLY importer of the native addon. Exposes the typed `NativeBinding` interface; everything else imports
// `native` from here. A failed load throws one LoadError that says what was found, what is required, and how to fix it.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { LoadError, NATIVE_ERROR_CLASSES } from './errors.js';

/** Opaque native tensor handle (a BigInt id into the addon's handle table; see docs/DEVELOPING.md). */
export type NativeTensor = { readonly __nativeTensor: unique symbol };
/** Opaque native generator handle. */
export type NativeGenerator = { readonly __nativeGenerator: unique symbol };
/** Opaque native CUDA stream and event handles (only created by CUDA builds). */
export type NativeCudaStream = { readonly __nativeCudaStream: unique symbol };
export type NativeCudaEvent = { readonly __nativeCudaEvent: unique symbol };
export type NativeCudaGraph = { readonly __nativeCudaGraph: unique symbol };
/** Opaque native c10d process group and work handles (distributed/c10d.cc). */
export type NativeDistGroup = { readonly __nativeDistGroup: unique symbol };
export type NativeDistWork = { readonly __nativeDistWork: unique symbol };
export type NativeFsdpUnit = { readonly __nativeFsdpUnit: unique symbol };

type T = NativeTensor;
type Num = number;
type MaybeT = T | null | undefined;
type Operand = T | number | boolean;
type Dtype = string;
type Dev = string;

/** Ranks whose heartbeat stopped (`closed`: those that closed their group on purpose); storeError when the store is gone. */
export interface DistProbe {
  silent: number[];
  closed: number[];
  storeError: string | null;
}

export interface NativeBinding {
  // ---- core (tensor/tensor_core.cc) ----
  init(errors: typeof NATIVE_ERROR_CLASSES): { torchVersion: string; cudaCompiled: boolean };
  isTensor(v: unknown): boolean;
  isDisposed(t: T): boolean;
  dispose(t: T): void;
  describeDisposed(t: T): string;
  memory(): { liveTensors: Num; cpuBytes: Num; cudaBytes: Num; created: Num };
  hostSyncs(): number;
  shape(t: T): number[];
  strides(t: T): number[];
  dtype(t: T): Dtype;
  device(t: T): Dev;
  isContiguous(t: T): boolean;
  to(t: T, dtype?: Dtype | null, device?: Dev | null, nonBlocking?: boolean, copy?: boolean): T;
  contiguous(t: T): T;
  clone(t: T): T;
  pinMemory(t: T): T;
  copy_(t: T, src: T, nonBlocking?: boolean): void;
  fromBuffer(data: ArrayBufferView, dtype: Dtype, shape: number[]): T;
  toArrayBuffer(t: T): ArrayBuffer;
  dataAsync(t: T): Promise<Buffer>;
  item(t: T): number | boolean;
  toString(t: T): string;
  setNumThreads(n: Num): void;
  getNumThreads(): number;
  manualSeed(seed: Num): void;
  newGenerator(seed: Num): NativeGenerator;
  getRngState(g?: NativeGenerator | null): T;
  setRngState(state: T, g?: NativeGenerator | null): void;
  // ---- devices (tensor/device.cc) ----
  cudaIsAvailable(): boolean;
  cudaDeviceCount(): number;
  synchronize(device?: Num | null): void;
  cudaMemory(device?: Num): { allocated: number; reserved: number };
  cudaSyncDebugMode(mode?: 'default' | 'warn' | 'error'): 'default' | 'warn' | 'error';
  cudaNewStream(device?: Num | null, highPriority?: boolean): NativeCudaStream;
  cudaCurrentStream(device?: Num | null): NativeCudaStream;
  cudaDefaultStream(device?: Num | null): NativeCudaStream;
  cudaSetCurrentStream(s: NativeCudaStream): void;
  cudaStreamSynchronize(s: NativeCudaStream): void;
  cudaStreamQuery(s: NativeCudaStream): boolean;
  cudaStreamInfo(s: NativeCudaStream): { device: number; id: number; priority: number };
  cudaNewEvent(enableTiming?: boolean): NativeCudaEvent;
  cudaEventRecord(e: NativeCudaEvent, s?: NativeCudaStream | null): void;
  cudaEventSynchronize(e: NativeCudaEvent): void;
  cudaEventQuery(e: NativeCudaEvent): boolean;
  cudaEventWait(e: NativeCudaEvent, s?: NativeCudaStream | null): void;
  cudaRecordStream(t: T, s: NativeCudaStream): void;
  cudaEventElapsedTime(start: NativeCudaEvent, end: NativeCudaEvent): number;
  cudaNewGraph(): NativeCudaGraph;
  cudaGraphCaptureBegin(g: NativeCudaGraph): void;
  cudaGraphCaptureEnd(g: NativeCudaGraph, abandon: boolean): void;
  cudaGraphReplay(g: NativeCudaGraph): void;
  cudaGraphReset(g: NativeCudaGraph): void;
  // ---- creation (ops/creation.cc) ----
  zeros(shape: number[], dtype?: Dtype | null, device?: Dev | null): T;
  ones(shape: number[], dtype?: Dtype | null, device?: Dev | null): T;
  empty(shape: number[], dtype?: Dtype | null, device?: Dev | null): T;
  full(shape: number[], value: number | boolean, dtype?: Dtype | null, device?: Dev | null): T;
  zerosLike(t: T): T;
  onesLike(t: T): T;
  fullLike(t: T, value: number): T;
  emptyLike(t: T): T;
  arange(start: Num, end: Num, step: Num, dtype?: Dtype | null, device?: Dev | null): T;
  linspace(start: Num, end: Num, steps: Num, dtype?: Dtype | null, device?: Dev | null): T;
  eye(n: Num, dtype?: Dtype | null, device?: Dev | null): T;
  randn(shape: number[], dtype?: Dtype | null, device?: Dev | null, g?: NativeGenerator | null): T;
  rand(shape: number[], dtype?: Dtype | null, device?: Dev | null, g?: NativeGenerator | null): T;
  randint(low: Num, high: Num, shape: number[], dtype?: Dtype | null, device?: Dev | null, g?: NativeGenerator | null): T;
  randperm(n: Num, g?: NativeGenerator | null): T;
  normal_(t: T, mean: Num, std: Num, g?: NativeGenerator | null): void;
  uniform_(t: T, low: Num, high: Num, g?: NativeGenerator | null): void;
  truncNormal_(t: T, mean: Num, std: Num, a: Num, b: Num, g?: NativeGenerator | null): void;
  fill_(t: T, value: number | boolean): void;
  zero_(t: T): void;
  // ---- pointwise (ops/pointwise.cc) ----
  add(a: T, b: Operand, alpha?: Num): T;
  sub(a: T, b: Operand, alpha?: Num): T;
  add_(a: T, b: Operand, alpha?: Num): void;
  sub_(a: T, b: Operand, alpha?: Num): void;
  mul(a: T, b: Operand): T;
  div(a: T, b: Operand): T;
  pow(a: T, b: Operand): T;
  remainder(a: T, b: Operand): T;
  floorDivide(a: T, b: Operand): T;
  maximum(a: T, b: Operand): T;
  minimum(a: T, b: Operand): T;
  eq(a: T, b: Operand): T;
  ne(a: T, b: Operand): T;
  lt(a: T, b: Operand): T;
  le(a: T, b: Operand): T;
  gt(a: T, b: Operand): T;
  ge(a: T, b: Operand): T;
  mul_(a: T, b: Operand): void;
  div_(a: T, b: Operand): void;
  pow_(a: T, b: Operand): void;
  neg(a: T): T;
  abs(a: T): T;
  exp(a: T): T;
  log(a: T): T;
  log1p(a: T): T;
  sqrt(a: T): T;
  rsqrt(a: T): T;
  sin(a: T): T;
  cos(a: T): T;
  tanh(a: T): T;
  sigmoid(a: T): T;
  relu(a: T): T;
  erf(a: T): T;
  erfinv(a: T): T;
  reciprocal(a: T): T;
  sign(a: T): T;
  floor(a: T): T;
  ceil(a: T): T;
  round(a: T): T;
  square(a: T): T;
  logicalNot(a: T): T;
  isnan(a: T): T;
  isfinite(a: T): T;
  isinf(a: T): T;
  neg_(a: T): void;
  exp_(a: T): void;
  sqrt_(a: T): void;
  relu_(a: T): void;
  logicalAnd(a: T, b: T): T;
  logicalOr(a: T, b: T): T;
  logicalXor(a: T, b: T): T;
  gelu(a: T, approximate?: 'none' | 'tanh'): T;
  silu(a: T): T;
  clamp(a: T, min?: T | Num | null, max?: T | Num | null): T;
  clamp_(a: T, min?: T | Num | null, max?: T | Num | null): void;
  clampMin(a: T, min: T | Num): T;
  clampMax(a: T, max: T | Num): T;
  nanToNum(a: T, nan?: Num | null, posinf?: Num | null, neginf?: Num | null): T;
  where(cond: T, a: Operand, b: Operand): T;
  lerp(a: T, end: T, weight: T | Num): T;
  lerp_(a: T, end: T, weight: Num): void;
  addcmul(a: T, t1: T, t2: T, value: Num): T;
  maskedFill(a: T, mask: T, value: Num | boolean): T;
  maskedFill_(a: T, mask: T, value: Num | boolean): void;
  dropout(a: T, p: Num, train: boolean): T;
  // ---- reductions (ops/reduce.cc) ----
  sum(a: T, dims?: Num | number[] | null, keepdim?: boolean, dtype?: Dtype | null): T;
  mean(a: T, dims?: Num | number[] | null, keepdim?: boolean, dtype?: Dtype | null): T;
  prod(a: T, dim?: Num | null, keepdim?: boolean): T;
  max(a: T): T;
  min(a: T): T;
  maxDim(a: T, dim: Num, keepdim?: boolean): [T, T];
  minDim(a: T, dim: Num, keepdim?: boolean): [T, T];
  amax(a: T, dims: Num | number[], keepdim?: boolean): T;
  amin(a: T, dims: Num | number[], keepdim?: boolean): T;
  argmax(a: T, dim?: Num | null, keepdim?: boolean): T;
  argmin(a: T, dim?: Num | null, keepdim?: boolean): T;
  topk(a: T, k: Num, dim: Num, largest?: boolean, sorted?: boolean): [T, T];
  sort(a: T, dim: Num, descending?: boolean): [T, T];
  argsort(a: T, dim: Num, descending?: boolean): T;
  logsumexp(a: T, dims: Num | number[], keepdim?: boolean): T;
  norm(a: T, p: Num, dims?: Num | number[] | null, keepdim?: boolean): T;
  var(a: T, dims?: Num | number[] | null, correction?: Num, keepdim?: boolean): T;
  std(a: T, dims?: Num | number[] | null, correction?: Num, keepdim?: boolean): T;
  cumsum(a: T, dim: Num, dtype?: Dtype | null): T;
  all(a: T): T;
  any(a: T): T;
  // ---- shape (ops/shape.cc) ----
  reshape(a: T, shape: number[]): T;
  view(a: T, shape: number[]): T;
  permute(a: T, dims: number[]): T;
  transpose(a: T, d0: Num, d1: Num): T;
  flatten(a: T, start?: Num, end?: Num): T;
  unflatten(a: T, dim: Num, sizes: number[]): T;
  squeeze(a: T, dim?: Num | null): T;
  unsqueeze(a: T, dim: Num): T;
  narrow(a: T, dim: Num, start: Num, length: Num): T;
  slice(a: T, dim: Num, start?: Num | null, end?: Num | null, step?: Num): T;
  select(a: T, dim: Num, index: Num): T;
  expand(a: T, shape: number[]): T;
  repeat(a: T, repeats: number[]): T;
  roll(a: T, shifts: number[], dims: number[]): T;
  flip(a: T, dims: number[]): T;
  t(a: T): T;
  tril(a: T, diagonal?: Num): T;
  triu(a: T, diagonal?: Num): T;
  diag(a: T, diagonal?: Num): T;
  diagonal(a: T, offset?: Num, dim1?: Num, dim2?: Num): T;
  movedim(a: T, source: number[], destination: number[]): T;
  cat(ts: T[], dim?: Num): T;
  stack(ts: T[], dim?: Num): T;
  split(a: T, sizeOrSizes: Num | number[], dim?: Num): T[];
  chunk(a: T, chunks: Num, dim?: Num): T[];
  unbind(a: T, dim?: Num): T[];
  // ---- indexing (ops/index.cc) ----
  indexSelect(a: T, dim: Num, index: T): T;
  gather(a: T, dim: Num, index: T): T;
  scatter(a: T, dim: Num, index: T, src: T | Num): T;
  scatterAdd(a: T, dim: Num, index: T, src: T): T;
  index(a: T, indices: (T | null)[]): T;
  indexPut_(a: T, indices: (T | null)[], values: T, accumulate?: boolean): void;
  indexPut(a: T, indices: (T | null)[], values: T, accumulate?: boolean): T;
  maskedSelect(a: T, mask: T): T;
  nonzero(a: T): T;
  oneHot(a: T, numClasses?: Num): T;
  // ---- linalg (ops/linalg.cc) ----
  matmul(a: T, b: T): T;
  mm(a: T, b: T): T;
  bmm(a: T, b: T): T;
  baddbmm(input: T, batch1: T, batch2: T, beta?: Num, alpha?: Num): T;
  einsum(eq: string, ts: T[]): T;
  outer(a: T, b: T): T;
  cdist(a: T, b: T, p?: Num): T;
  // ---- nn (ops/nn.cc) ----
  conv2d(x: T, w: T, b?: MaybeT, stride?: number[], padding?: number[], dilation?: number[], groups?: Num): T;
  layerNorm(x: T, normalizedShape: number[], w: MaybeT, b: MaybeT, eps: Num): T;
  rmsNorm(x: T, w: MaybeT, eps: Num): T;
  softmax(x: T, dim: Num, dtype?: Dtype | null): T;
  logSoftmax(x: T, dim: Num, dtype?: Dtype | null): T;
  sdpa(q: T, k: T, v: T, mask?: MaybeT, dropout?: Num, isCausal?: boolean, scale?: Num | null): T;
  sdpaMath(q: T, k: T, v: T, mask?: MaybeT, dropout?: Num, isCausal?: boolean, scale?: Num | null): T;
  interpolate(x: T, size: number[], mode: string, alignCorners?: boolean, antialias?: boolean): T;
  pad(x: T, pad: number[], mode?: string, value?: Num | null): T;
  avgPool2d(
    x: T,
    kernelSize: number[],
    stride?: number[] | null,
    padding?: number[],
    ceilMode?: boolean,
    countIncludePad?: boolean,
    divisorOverride?: Num | null,
  ): T;
  adaptiveAvgPool2d(x: T, outputSize: number[]): T;
  normalize(x: T, p: Num, dim: Num, eps: Num): T;
  crossEntropy(x: T, target: T, reduction?: string, labelSmoothing?: Num, ignoreIndex?: Num): T;
  mseLoss(x: T, target: T, reduction?: string): T;
  pairwiseDistance(a: T, b: T, p?: Num, eps?: Num, keepdim?: boolean): T;
  // ---- autograd (autograd/autograd.cc) ----
  requiresGrad(t: T): boolean;
  setRequiresGrad(t: T, on: boolean): void;
  isLeaf(t: T): boolean;
  retainGrad(t: T): void;
  grad(t: T): T | null;
  setGrad(t: T, g: T | null): void;
  zeroGrad(ts: T[]): void;
  backward(t: T, gradient?: MaybeT, retainGraph?: boolean): void;
  backwardAll(tensors: T[], gradients: T[]): void;
  setData(t: T, src: T): void;
  detach(t: T): T;
  setGradEnabled(on: boolean): boolean;
  isGradEnabled(): boolean;
  // ---- autocast (autograd/autocast.cc) ----
  autocastEnter(device: 'cpu' | 'cuda', dtype: Dtype): unknown;
  autocastExit(previous: unknown): void;
  // ---- optim (optim/optim.cc) ----
  /** One AdamW step over one group; `steps` (one count per param) is incremented in place for params with a grad. */
  adamwStep(params: T[], expAvg: T[], expAvgSq: T[], lr: Num, wd: Num, b1: Num, b2: Num, eps: Num, steps: Float64Array, fused?: boolean): void;
  clipGradNorm(params: T[], maxNorm: Num): T;
  emaUpdate(teacher: T[], student: T[], momentum: Num): void;
  // ---- decompositions (ops/decomp.cc) ----
  linalgEigh(a: T, uplo?: 'L' | 'U'): [T, T];
  linalgSvd(a: T, fullMatrices?: boolean): [T, T, T];
  linalgQr(a: T, mode?: 'reduced' | 'complete'): [T, T];
  // ---- kernel choice (ops/fused.cc) ----
  /** act(x·weightᵀ + bias), activation "none" (default) or "gelu" (exact); fused SGEMM without autograd on float32 CPU. */
  linear(x: T, weight: T, bias?: MaybeT, activation?: 'none' | 'gelu'): T;
  /** Multi-head self-attention from a fused qkv projection [B, N, 3D] with RoPE tables [P, d] on the last P tokens → [B, N, D]. */
  attention(qkv: T, numHeads: Num, sin: MaybeT, cos: MaybeT, scale?: Num | null): T;
  /** x + gamma ⊙ y (x + y without gamma). */
  residualAdd(x: T, y: T, gamma?: MaybeT): T;
  /** Allows (true) or forbids (false) the fused kernels; returns the previous setting. */
  setFusedKernels(on: boolean): boolean;
  /** The kernel linear/attention/residualAdd would run on `x` now. */
  kernelChoice(op: 'linear' | 'attention' | 'residualAdd', x: T, weight?: T): 'fused-cpu' | 'flash-cuda' | 'fused-cuda' | 'plain';
  // ---- warnings (common.cc) ----
  /** Raises a libtorch warning (TORCH_WARN) on this thread, as an op would (tests of the forwarding). */
  torchWarn(message: string): void;
  // ---- bench (ops/bench.cc) ----
  /** Peak allocated bytes of the CUDA caching allocator (0 without CUDA); `reset` starts a new peak. */
  cudaPeakMemory(device?: Num | null, reset?: boolean): number;
  // ---- distributed (distributed/c10d.cc) ----
  distBackends(): string[];
  distCreate(o: {
    host: string;
    port: Num;
    rank: Num;
    worldSize: Num;
    isServer: boolean;
    backend: string;
    prefix: string;
    deviceHostname?: string;
    deviceInterface?: string;
    timeoutMs: Num;
    heartbeatMs: Num;
    threads?: Num;
  }): Promise<NativeDistGroup>;
  distInfo(g: NativeDistGroup): { rank: number; worldSize: number; backend: string; host: string; port: number };
  distDestroy(g: NativeDistGroup): void;
  distAllReduce(g: NativeDistGroup, t: T, op: 'sum' | 'max' | 'min' | 'product'): NativeDistWork;
  distAllGatherInto(g: NativeDistGroup, output: T, input: T): NativeDistWork;
  distReduceScatter(g: NativeDistGroup, output: T, input: T): NativeDistWork;
  distAllToAll(g: NativeDistGroup, output: T, input: T): NativeDistWork;
  distBroadcast(g: NativeDistGroup, t: T, src: Num): NativeDistWork;
  distBarrier(g: NativeDistGroup): NativeDistWork;
  distAllGatherAutograd(g: NativeDistGroup, t: T): T;
  distWait(w: NativeDistWork, timeoutMs: Num): void;
  distWaitAsync(w: NativeDistWork, timeoutMs: Num): Promise<void>;
  distIsCompleted(w: NativeDistWork): boolean;
  distProbe(g: NativeDistGroup, windowMs: Num): Promise<DistProbe>;
  distProbeSync(g: NativeDistGroup, windowMs: Num): DistProbe;
  distFsdpUnit(g: NativeDistGroup, params: T[], shard: T, gradShard: T, offsets: number[], padded: Num): NativeFsdpUnit;
  distFsdpSetPrev(u: NativeFsdpUnit, prev: NativeFsdpUnit | null): void;
  distFsdpPrefetch(u: NativeFsdpUnit): void;
  distFsdpGather(u: NativeFsdpUnit): void;
  distFsdpRelease(u: NativeFsdpUnit): void;
  distFsdpIsGathered(u: NativeFsdpUnit): boolean;
  distFsdpStats(u: NativeFsdpUnit): { hookGathers: number; hookReduces: number };
  distFsdpIssueReduce(u: NativeFsdpUnit): void;
  distFsdpFinishReduce(u: NativeFsdpUnit): void;
  /** `t` through the unit's autograd hook (kind 0: an input, 1: an output); `t` itself when it needs no gradient. */
  distFsdpHook(u: NativeFsdpUnit, t: T, kind: 0 | 1): T;
  distFsdpDispose(u: NativeFsdpUnit): void;
  // ---- threads (tensor/threads.cc) ----
  threadingInfo(): {
    intraOp: number;
    interOp: number;
    blas: string;
    blasThreads: number | null;
    ompWaitPolicy: string | null;
    gompSpincount: string | null;
    parallelInfo: string;
  };
  // ---- file system (io/fs.cc) ----
  /** Swaps two existing paths atomically (Linux renameat2 RENAME_EXCHANGE); errno 0 on success, ENOSYS where the
   * platform lacks it. Optional: older builds lack it (src/io/replace_folder.ts then uses two renames). */
  renameExchange?(a: string, b: string): { errno: number; message: string };
  // ---- data augmentation (ops/augment.cc) ----
  /** One DataAugmentationDINO crop chain on interleaved RGB bytes (spec layout: AUGMENT_SPEC in src/data/augmentations.ts);
   * no tensors. Optional: older builds lack it (src/data/augmentations.ts then uses its TypeScript kernels). */
  augmentCrop?(image: Uint8Array, width: Num, height: Num, spec: Float64Array): Float32Array | Uint8Array;
}

const here = dirname(fileURLToPath(import.meta.url));

/** The package root: the nearest folder above `start` whose package.json names dinov3-ts. */
function findRoot(start: string): string {
  let d = start;
  for (let i = 0; i < 6; i++) {
    try {
      if ((JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')) as { name?: unknown }).name === 'dinov3-ts') return d;
    } catch {
      // no (readable) package.json here
    }
    d = dirname(d);
  }
  return resolve(start, '..', '..');
}

/** Prebuilt addons shipped in the node-gyp-build layout: `prebuilds/<platform>-<arch>/*.node` (dinov3.node first,
 * then N-API tagged names such as node.napi.node). */
export function prebuiltAddons(root: string): string[] {
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.node'));
  } catch {
    return [];
  }
  const rank = (n: string) => (n === 'dinov3.node' ? 0 : n.includes('napi') ? 1 : 2);
  names.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  return names.map((n) => join(dir, n));
}

/** Candidate addon paths, in order: $DINOV3_ADDON, the cmake-js build, the node-gyp build, then prebuilt binaries. */
export function addonCandidates(): string[] {
  const root = findRoot(here);
  const out: string[] = [];
  if (process.env.DINOV3_ADDON) out.push(resolve(process.env.DINOV3_ADDON));
  out.push(join(root, 'build', 'Release', 'dinov3.node'), join(root, 'build-gyp', 'Release', 'dinov3.node'));
  out.push(...prebuiltAddons(root));
  return out;
}

function loadFailure(tried: string[], cause: unknown): LoadError {
  const msg = cause instanceof Error ? cause.message : String(cause);
  const lines = [
    `Could not load the dinov3-ts native addon on ${process.platform}-${process.arch}, Node ${process.version}.`,
    `Tried: ${tried.join(', ')}`,
    `Found: ${msg.split('\n')[0]}`,
    'Required: the addon built against libtorch 1.13 or newer (Debian libtorch-dev, or the libtorch of an installed PyTorch).',
    'Possible solutions:',
    '- Installed from npm/a tarball/git: `npm rebuild dinov3-ts` reruns the install step, which builds the addon (and says what is missing);',
    '  if npm skipped it ("not yet covered by allowScripts"): `npm install-scripts approve dinov3-ts && npm rebuild dinov3-ts`.',
    '- In a clone of the repository: `npm run build:native` (installs missing Debian packages when run as root).',
    '- Missing libtorch libraries: `apt-get install --no-install-recommends libtorch-dev libopenblas0-openmp`,',
    "  or point LIBTORCH at a PyTorch's libtorch: LIBTORCH=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)') npm run build:native",
    '- Use a specific build: set DINOV3_ADDON=/path/to/dinov3.node',
  ];
  return new LoadError(lines.join('\n'));
}

// libgomp (the OpenMP runtime of ATen's intra-op threads, OpenBLAS and oneDNN in Debian's libtorch) reads its wait
// policy once, when the addon's libraries load. Its default keeps idle threads spinning for 300000 iterations
// (~8 ms on a VM) after every parallel region, so on a busy machine the spinning threads take the cores the working
// ones need (2 threads ran 5-10× slower than 1). Unless the user chose a policy, spin briefly, then sleep.
export const DEFAULT_GOMP_SPINCOUNT = '1000';
if (process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined) process.env.GOMP_SPINCOUNT = DEFAULT_GOMP_SPINCOUNT;

function load(): { binding: NativeBinding; path: string; torchVersion: string; cudaCompiled: boolean } {
  const require = createRequire(import.meta.url);
  const tried = addonCandidates();
  let lastError: unknown = new Error('no build found (the addon has not been built)');
  for (const p of tried) {
    if (!existsSync(p)) continue;
    try {
      const binding = require(p) as NativeBinding;
      const info = binding.init(NATIVE_ERROR_CLASSES);
      return { binding, path: p, ...info };
    } catch (e) {
      lastError = e;
    }
  }
  throw loadFailure(tried, lastError);
}

const loaded = load();

/** The native addon (typed). */
export const native: NativeBinding = loaded.binding;
/** Where the addon was loaded from, the libtorch version it was built against, and whether it has CUDA. */
export const addonInfo = { path: loaded.path, torchVersion: loaded.torchVersion, cudaCompiled: loaded.cudaCompiled };
