// Reductions: sum/mean/prod over all or some dims, max/min (values + indices), amax/amin, argmax/argmin, topk, sort,
// logsumexp, norm, var/std, cumsum, all/any.
#include "common.h"

namespace dinov3 {

namespace {

int64_t Dim(const Args& a, size_t i, const at::Tensor& t) {
  int64_t d = a.i64(i, "dim");
  int64_t n = std::max<int64_t>(t.dim(), 1);
  if (d < -n || d >= n)
    a.valueError("dim " + std::to_string(d) + " is out of range for a tensor of " + std::to_string(t.dim()) +
                 " dimensions (" + Describe(t) + ")");
  return d;
}

}  // namespace

void InitReduce(Napi::Env env, Napi::Object e) {
  // sum(x, dims?, keepdim, dtype?)
  Def(env, e, "sum", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    auto dt = a.optDtype(3, "dtype");
    if (!a.has(1)) return a.ret(at::sum(x, dt));
    return a.ret(at::sum(x, a.ints(1, "dim"), a.optB(2, "keepdim", false), dt));
  });
  Def(env, e, "mean", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    auto dt = a.optDtype(3, "dtype");
    if (!a.has(1)) return a.ret(at::mean(x, dt));
    return a.ret(at::mean(x, a.ints(1, "dim"), a.optB(2, "keepdim", false), dt));
  });
  Def(env, e, "prod", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (!a.has(1)) return a.ret(at::prod(x));
    return a.ret(at::prod(x, Dim(a, 1, x), a.optB(2, "keepdim", false)));
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
    return a.ret(at::amax(a.t(0, "input"), a.ints(1, "dim"), a.optB(2, "keepdim", false)));
  });
  Def(env, e, "amin", [](Args& a) {
    return a.ret(at::amin(a.t(0, "input"), a.ints(1, "dim"), a.optB(2, "keepdim", false)));
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
  Def(env, e, "logsumexp", [](Args& a) {
    return a.ret(at::logsumexp(a.t(0, "input"), a.ints(1, "dim"), a.optB(2, "keepdim", false)));
  });
  // norm(x, p, dims?, keepdim)
  Def(env, e, "norm", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    at::Scalar p = a.scalar(1, "p");
    if (!a.has(2)) return a.ret(at::norm(x, p));
    return a.ret(at::norm(x, p, a.ints(2, "dim"), a.optB(3, "keepdim", false)));
  });
  // var/std(x, dims?, correction, keepdim)
  Def(env, e, "var", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    c10::optional<at::IntArrayRef> dims;
    std::vector<int64_t> d;
    if (a.has(1)) {
      d = a.ints(1, "dim");
      dims = d;
    }
    return a.ret(at::var(x, dims, c10::optional<int64_t>(a.has(2) ? a.i64(2, "correction") : 1),
                         a.optB(3, "keepdim", false)));
  });
  Def(env, e, "std", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    c10::optional<at::IntArrayRef> dims;
    std::vector<int64_t> d;
    if (a.has(1)) {
      d = a.ints(1, "dim");
      dims = d;
    }
    return a.ret(at::std(x, dims, c10::optional<int64_t>(a.has(2) ? a.i64(2, "correction") : 1),
                         a.optB(3, "keepdim", false)));
  });
  Def(env, e, "cumsum", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(at::cumsum(x, Dim(a, 1, x), a.optDtype(2, "dtype")));
  });
  Def(env, e, "all", [](Args& a) { return a.ret(at::all(a.t(0, "input"))); });
  Def(env, e, "any", [](Args& a) { return a.ret(at::any(a.t(0, "input"))); });
}

}  // namespace dinov3
