// Matrix decompositions (LAPACK on CPU, cuSOLVER/MAGMA on CUDA): symmetric eigendecomposition, SVD, QR.
// Used by the PCA of patch features (src/features/pca.ts). Inputs are float32/float64 matrices or batches of them.
#include "common.h"

namespace dinov3 {

namespace {

// The matrix argument: a float32/float64 tensor with at least 2 dims (and square when `square`).
const at::Tensor& Matrix(const Args& a, bool square) {
  const at::Tensor& x = a.t(0, "input");
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kDouble)
    a.valueError("expected \"input\" to be a float32|float64 Tensor, received " + Describe(x) +
                 " (cast it with .to('float32') first)");
  if (x.dim() < 2) a.valueError("expected a matrix (or a batch of them) [..., m, n], received " + Describe(x));
  if (square && x.size(-1) != x.size(-2))
    a.valueError("expected a square matrix (or a batch of them) [..., n, n], received " + Describe(x));
  return x;
}

}  // namespace

void InitDecomp(Napi::Env env, Napi::Object e) {
  // linalgEigh(A, uplo = "L") → [eigenvalues [..., n] ascending, eigenvectors [..., n, n] as columns].
  Def(env, e, "linalgEigh", [](Args& a) {
    const at::Tensor& x = Matrix(a, true);
    std::string uplo = a.has(1) ? a.str(1, "uplo") : "L";
    if (uplo != "L" && uplo != "U") a.valueError("uplo must be \"L\" or \"U\", received \"" + uplo + "\"");
    return a.ret(at::linalg_eigh(x, uplo));
  });
  // linalgSvd(A, fullMatrices = false) → [U, S (descending), Vh] with A = U diag(S) Vh.
  Def(env, e, "linalgSvd", [](Args& a) {
    const at::Tensor& x = Matrix(a, false);
    auto r = at::linalg_svd(x, a.optB(1, "fullMatrices", false));
    return a.ret(std::vector<at::Tensor>{std::get<0>(r), std::get<1>(r), std::get<2>(r)});
  });
  // linalgQr(A, mode = "reduced") → [Q, R].
  Def(env, e, "linalgQr", [](Args& a) {
    const at::Tensor& x = Matrix(a, false);
    std::string mode = a.has(1) ? a.str(1, "mode") : "reduced";
    if (mode != "reduced" && mode != "complete")
      a.valueError("mode must be \"reduced\" or \"complete\", received \"" + mode + "\"");
    return a.ret(at::linalg_qr(x, mode));
  });
}

}  // namespace dinov3
