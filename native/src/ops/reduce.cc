// Reductions: sum/mean/prod over all or some dims, max/min (values + indices), amax/amin, argmax/argmin, topk, sort,
// argsort, logsumexp, norm, var/std, cumsum, all/any.
#include "common.h"
#include "ops/op_helpers.h"

namespace dinov3 {

namespace {

int64_t Dim(const Args& a, size_t i, const at::Tensor& t) { return DimArg(a, i, t); }

Napi::Value VarStd(Args& a, bool isStd) {
  const at::Tensor& x = a.t(0, "input");
  c10::optional<at::IntArrayRef> dims;
  std::vector<int64_t> d;
  if (a.has(1)) {
    d = DimsArg(a, 1, x);
    dims = d;
  }
  int64_t c = a.has(2) ? a.i64(2, "correction") : 1;
  if (c < 0) a.valueError("correction must be >= 0, received " + std::to_string(c));
  // The correction became an optional Scalar in libtorch 2.0.
#if DINOV3_TORCH_AT_LEAST(2, 0)
  c10::optional<at::Scalar> corr = at::Scalar(c);
#else
  c10::optional<int64_t> corr = c;
#endif
  bool keep = a.optB(3, "keepdim", false);
  return a.ret(isStd ? at::std(x, dims, corr, keep) : at::var(x, dims, corr, keep));
}

}  // namespace

void InitReduce(Napi::Env env, Napi::Object e) {
  // sum(x, dims?, keepdim, dtype?)
  Def(env, e, "sum", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    auto dt = a.optDtype(3, "dtype");
    if (!a.has(1)) return a.ret(at::sum(x, dt));
    return a.ret(at::sum(x, DimsArg(a, 1, x), a.optB(2, "keepdim", false), dt));
  });
  Def(env, e, "mean", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    auto dt = a.optDtype(3, "dtype");
    if (!a.has(1)) return a.ret(at::mean(x, dt));
    return a.ret(at::mean(x, DimsArg(a, 1, x), a.optB(2, "keepdim", false), dt));
  });
  Def(env, e, "prod", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    at::Tensor xin = IsCpu16(x) ? x.to(at::kFloat) : x;  // no 16-bit CPU kernel in libtorch 1.13
    at::Tensor y = a.has(1) ? at::prod(xin, Dim(a, 1, x), a.optB(2, "keepdim", false)) : at::prod(xin);
    return a.ret(IsCpu16(x) ? y.to(x.scalar_type()) : y);
  });
  // max(x) → scalar tensor; maxDim(x, dim, keepdim) → [values, indices]
  Def(env, e, "max", [](Args& a) { return a.ret(at::max(a.t(0, "input"))); });
  Def(env, e, "min", [](Args& a) { return a.ret(at::min(a.t(0, "input"))); });
  Def(env, e, "maxDim", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::max(x, Dim(a, 1, x), a.optB(2, "keepdim", false)));
  });
  Def(env, e, "minDim", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::min(x, Dim(a, 1, x), a.optB(2, "keepdim", false)));
  });
  Def(env, e, "amax", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::amax(x, DimsArg(a, 1, x), a.optB(2, "keepdim", false)));
  });
  Def(env, e, "amin", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::amin(x, DimsArg(a, 1, x), a.optB(2, "keepdim", false)));
  });
  Def(env, e, "argmax", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (!a.has(1)) return a.ret(at::argmax(x));
    return a.ret(at::argmax(x, Dim(a, 1, x), a.optB(2, "keepdim", false)));
  });
  Def(env, e, "argmin", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (!a.has(1)) return a.ret(at::argmin(x));
    return a.ret(at::argmin(x, Dim(a, 1, x), a.optB(2, "keepdim", false)));
  });
  // topk(x, k, dim, largest, sorted) → [values, indices]
  Def(env, e, "topk", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t d = Dim(a, 2, x);
    int64_t k = a.i64(1, "k");
    int64_t n = x.dim() == 0 ? 1 : x.size(d);
    if (k < 0 || k > n)
      a.valueError("k must be in [0, " + std::to_string(n) + "] for dim " + std::to_string(d) + " of " +
                   Describe(x) + ", received " + std::to_string(k));
    return a.ret(at::topk(x, k, d, a.optB(3, "largest", true), a.optB(4, "sorted", true)));
  });
  Def(env, e, "sort", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::sort(x, Dim(a, 1, x), a.optB(2, "descending", false)));
  });
  // argsort(x, dim, descending) → int64 indices
  Def(env, e, "argsort", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::argsort(x, Dim(a, 1, x), a.optB(2, "descending", false)));
  });
  Def(env, e, "logsumexp", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::logsumexp(x, DimsArg(a, 1, x), a.optB(2, "keepdim", false)));
  });
  // norm(x, p, dims?, keepdim)
  Def(env, e, "norm", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    at::Scalar p = a.scalar(1, "p");
    if (!a.has(2)) return a.ret(at::norm(x, p));
    return a.ret(at::norm(x, p, DimsArg(a, 2, x), a.optB(3, "keepdim", false)));
  });
  // var/std(x, dims?, correction, keepdim)
  Def(env, e, "var", [](Args& a) { return VarStd(a, false); });
  Def(env, e, "std", [](Args& a) { return VarStd(a, true); });
  Def(env, e, "cumsum", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::cumsum(x, Dim(a, 1, x), a.optDtype(2, "dtype")));
  });
  Def(env, e, "all", [](Args& a) { return a.ret(at::all(a.t(0, "input"))); });
  Def(env, e, "any", [](Args& a) { return a.ret(at::any(a.t(0, "input"))); });
}

}  // namespace dinov3
