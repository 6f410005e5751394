// Matrix decompositions (native/src/ops/decomp.cc): symmetric eigendecomposition, SVD and QR. They live here rather
// than in src/ops/linalg.ts because the PCA of patch features is their only user so far.
import { native } from '../native/binding.js';
import { handleOf as h, type Tensor, wrap } from '../tensor/tensor.js';

/**
 * Eigendecomposition of a symmetric matrix (or batch) `[..., n, n]` (float32/float64): eigenvalues `[..., n]` in
 * ascending order and orthonormal eigenvectors as the columns of `[..., n, n]` (torch.linalg.eigh).
 * @throws TorchRangeError for a non-square or non-float input.
 */
export function linalgEigh(a: Tensor, uplo: 'L' | 'U' = 'L'): { eigenvalues: Tensor; eigenvectors: Tensor } {
  const [l, q] = native.linalgEigh(h(a, 'linalgEigh', 'input'), uplo);
  return { eigenvalues: wrap(l), eigenvectors: wrap(q) };
}

/** Reduced (default) or full SVD `A = U diag(S) Vh`, singular values descending (torch.linalg.svd). */
export function linalgSvd(a: Tensor, fullMatrices = false): { U: Tensor; S: Tensor; Vh: Tensor } {
  const [u, s, vh] = native.linalgSvd(h(a, 'linalgSvd', 'input'), fullMatrices);
  return { U: wrap(u), S: wrap(s), Vh: wrap(vh) };
}

/** QR decomposition `A = Q R` (torch.linalg.qr), reduced (default) or complete. */
export function linalgQr(a: Tensor, mode: 'reduced' | 'complete' = 'reduced'): { Q: Tensor; R: Tensor } {
  const [q, r] = native.linalgQr(h(a, 'linalgQr', 'input'), mode);
  return { Q: wrap(q), R: wrap(r) };
}
