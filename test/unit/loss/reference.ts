// Float64 re-statements of the official algorithms (RECIPE §5.1–§5.3), written with plain loops, used where the
// reference fixtures cannot be: the official float32 Sinkhorn-Knopp overflows on the fixture's teacher logits
// (exp(Z/0.07) with Z up to 10.5), so `dino.sinkhorn_probs`, `ibot.sinkhorn_probs` and every DINO/iBOT loss and
// gradient derived from them are NaN in losses_io.safetensors. In float64 the same steps do not overflow.

/** Official `sinkhorn_knopp_teacher` on one rank: z [n, K] row-major → targets [n, K]. */
export function sinkhornRef(z: ArrayLike<number>, n: number, K: number, temp: number, iters = 3, B = n): Float64Array {
  // q[k][i] = exp(z[i,k]/τ)  (Q = exp(Z/τ)ᵀ, [K, n])
  const q = new Float64Array(K * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < K; k++) q[k * n + i] = Math.exp(z[i * K + k]! / temp);
  let total = 0;
  for (const v of q) total += v;
  for (let j = 0; j < q.length; j++) q[j]! /= total;
  for (let it = 0; it < iters; it++) {
    for (let k = 0; k < K; k++) {
      let r = 0;
      for (let i = 0; i < n; i++) r += q[k * n + i]!;
      for (let i = 0; i < n; i++) q[k * n + i] = q[k * n + i]! / r / K;
    }
    for (let i = 0; i < n; i++) {
      let c = 0;
      for (let k = 0; k < K; k++) c += q[k * n + i]!;
      for (let k = 0; k < K; k++) q[k * n + i] = q[k * n + i]! / c / B;
    }
  }
  const out = new Float64Array(n * K);
  for (let i = 0; i < n; i++) for (let k = 0; k < K; k++) out[i * K + k] = q[k * n + i]! * B;
  return out;
}

/** log_softmax(x/τ) and softmax(x/τ) of one row. */
function rowSoftmax(x: ArrayLike<number>, off: number, K: number, temp: number): { lsm: Float64Array; p: Float64Array } {
  let m = -Infinity;
  for (let k = 0; k < K; k++) m = Math.max(m, x[off + k]! / temp);
  let s = 0;
  for (let k = 0; k < K; k++) s += Math.exp(x[off + k]! / temp - m);
  const lse = m + Math.log(s);
  const lsm = new Float64Array(K);
  const p = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    lsm[k] = x[off + k]! / temp - lse;
    p[k] = Math.exp(lsm[k]!);
  }
  return { lsm, p };
}

/** Official DINOLoss.forward: student [S, B, K], teacher [T, B, K] → loss and d loss / d student. */
export function dinoLossRef(
  s: ArrayLike<number>,
  t: ArrayLike<number>,
  [S, B, K]: [number, number, number],
  T: number,
  ignoreDiagonal: boolean,
  temp = 0.1,
): { loss: number; grad: Float64Array } {
  const denom = ignoreDiagonal ? B * S * T - B * Math.min(S, T) : B * S * T;
  let loss = 0;
  const grad = new Float64Array(S * B * K);
  for (let si = 0; si < S; si++)
    for (let b = 0; b < B; b++) {
      const { lsm, p } = rowSoftmax(s, (si * B + b) * K, K, temp);
      for (let ti = 0; ti < T; ti++) {
        if (ignoreDiagonal && si === ti) continue;
        let mass = 0;
        for (let k = 0; k < K; k++) {
          const tv = t[(ti * B + b) * K + k]!;
          loss -= (tv * lsm[k]!) / denom;
          mass += tv;
        }
        for (let k = 0; k < K; k++) grad[(si * B + b) * K + k]! -= (t[(ti * B + b) * K + k]! - p[k]! * mass) / temp / denom;
      }
    }
  return { loss, grad };
}

/** Official iBOTPatchLoss.forward_masked with default weights: s, t [M, K]; masks [I, P] (row-major order). */
export function ibotLossRef(
  s: ArrayLike<number>,
  t: ArrayLike<number>,
  M: number,
  K: number,
  masks: ArrayLike<number>,
  I: number,
  P: number,
  temp = 0.1,
): { loss: number; grad: Float64Array } {
  const w: number[] = [];
  for (let i = 0; i < I; i++) {
    let c = 0;
    for (let j = 0; j < P; j++) c += masks[i * P + j] ? 1 : 0;
    for (let j = 0; j < c; j++) w.push(1 / Math.max(c, 1));
  }
  if (w.length !== M) throw new Error(`ibotLossRef: ${w.length} masked patches, ${M} rows`);
  let loss = 0;
  const grad = new Float64Array(M * K);
  for (let m = 0; m < M; m++) {
    const { lsm, p } = rowSoftmax(s, m * K, K, temp);
    let mass = 0;
    for (let k = 0; k < K; k++) {
      loss -= (w[m]! * t[m * K + k]! * lsm[k]!) / I;
      mass += t[m * K + k]!;
    }
    for (let k = 0; k < K; k++) grad[m * K + k] = (-w[m]! * (t[m * K + k]! - p[k]! * mass)) / temp / I;
  }
  return { loss, grad };
}
