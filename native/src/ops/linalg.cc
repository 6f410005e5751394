// Matrix products: matmul, mm, bmm, linear, einsum, outer, cdist.
#include "common.h"

namespace dinov3 {

void InitLinalg(Napi::Env env, Napi::Object e) {
  Def(env, e, "matmul", [](Args& a) { return a.ret(at::matmul(a.t(0, "input"), a.t(1, "other"))); });
  Def(env, e, "mm", [](Args& a) { return a.ret(at::mm(a.t(0, "input"), a.t(1, "mat2"))); });
  Def(env, e, "bmm", [](Args& a) { return a.ret(at::bmm(a.t(0, "input"), a.t(1, "mat2"))); });
  // linear(x, weight [out, in], bias? [out])
  Def(env, e, "linear", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& w = a.t(1, "weight");
    if (w.dim() != 2) a.valueError("expected \"weight\" to be 2-D [out, in], received " + Describe(w));
    if (x.dim() == 0 || x.size(-1) != w.size(1))
      a.valueError("input " + Describe(x) + " does not match weight " + Describe(w) + ": last dim must be " +
                   std::to_string(w.size(1)));
    return a.ret(at::linear(x, w, a.optT(2, "bias")));
  });
  Def(env, e, "einsum", [](Args& a) { return a.ret(at::einsum(a.str(0, "equation"), a.tensors(1, "operands"))); });
  Def(env, e, "outer", [](Args& a) { return a.ret(at::outer(a.t(0, "input"), a.t(1, "vec2"))); });
  Def(env, e, "cdist", [](Args& a) { return a.ret(at::cdist(a.t(0, "x1"), a.t(1, "x2"), a.has(2) ? a.f64(2, "p") : 2.0)); });
}

}  // namespace dinov3
