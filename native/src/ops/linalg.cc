// Matrix products: matmul, mm, bmm, baddbmm, einsum, outer, cdist (linear: ops/fused.cc).
#include "common.h"
#include "ops/op_helpers.h"

namespace dinov3 {

void InitLinalg(Napi::Env env, Napi::Object e) {
  Def(env, e, "matmul", [](Args& a) { return a.ret(at::matmul(a.t(0, "input"), a.t(1, "other"))); });
  Def(env, e, "mm", [](Args& a) { return a.ret(at::mm(a.t(0, "input"), a.t(1, "mat2"))); });
  Def(env, e, "bmm", [](Args& a) { return a.ret(at::bmm(a.t(0, "input"), a.t(1, "mat2"))); });
  // linear(x, weight, bias?, activation?): ops/fused.cc, which picks the kernel.
  Def(env, e, "einsum", [](Args& a) { return a.ret(at::einsum(a.str(0, "equation"), a.tensors(1, "operands"))); });
  Def(env, e, "outer", [](Args& a) { return a.ret(at::outer(a.t(0, "input"), a.t(1, "vec2"))); });
  // baddbmm(input, batch1, batch2, beta, alpha) = beta·input + alpha·(batch1 @ batch2)
  Def(env, e, "baddbmm", [](Args& a) {
    const at::Tensor& b1 = a.t(1, "batch1");
    const at::Tensor& b2 = a.t(2, "batch2");
    if (b1.dim() != 3 || b2.dim() != 3 || b1.size(0) != b2.size(0) || b1.size(2) != b2.size(1))
      a.valueError("expected batch1 [B, n, m] and batch2 [B, m, p], received " + Describe(b1) + " and " + Describe(b2));
    const at::Tensor& input = a.t(0, "input");
    at::Scalar beta = a.has(3) ? a.scalar(3, "beta") : at::Scalar(1);
    at::Scalar alpha = a.has(4) ? a.scalar(4, "alpha") : at::Scalar(1);
    // beta = 0 ignores the input (NaN/Inf in it do not propagate). libtorch 1.13's CPU kernel then reads its
    // uninitialised result buffer times 0, which gives NaN now and then: compute alpha·(batch1 @ batch2) directly.
    if (beta.toDouble() == 0.0) {
      at::Tensor p = at::bmm(b1, b2);
      (void)input.expand(p.sizes());  // same shape rule (and error) as baddbmm
      return a.ret(alpha.toDouble() == 1.0 ? p : p.mul(alpha));
    }
    return a.ret(at::baddbmm(input, b1, b2, beta, alpha));
  });
  // cdist(x1 [.., P, M], x2 [.., R, M], p); 16-bit floats on CPU run in float32 (IsCpu16).
  Def(env, e, "cdist", [](Args& a) {
    const at::Tensor& x1 = a.t(0, "x1");
    const at::Tensor& x2 = a.t(1, "x2");
    double p = a.has(2) ? a.f64(2, "p") : 2.0;
    if (p < 0) a.valueError("p must be >= 0, received " + FormatNumber(p));
    if (x1.dim() < 2 || x2.dim() < 2 || x1.size(-1) != x2.size(-1))
      a.valueError("expected x1 [..., P, M] and x2 [..., R, M] with the same M, received " + Describe(x1) + " and " +
                   Describe(x2));
    if (IsCpu16(x1) && x2.scalar_type() == x1.scalar_type())
      return a.ret(at::cdist(x1.to(at::kFloat), x2.to(at::kFloat), p).to(x1.scalar_type()));
    return a.ret(at::cdist(x1, x2, p));
  });
}

}  // namespace dinov3
