// View and layout ops: reshape/view/permute/transpose/flatten/unflatten/squeeze/unsqueeze/narrow/slice/select,
// expand/repeat/roll, and the list ops cat/stack/split/chunk/unbind.
#include "common.h"

namespace dinov3 {

namespace {

int64_t Dim(const Args& a, size_t i, const at::Tensor& t, const char* name = "dim", int64_t extra = 0) {
  int64_t d = a.i64(i, name);
  int64_t n = std::max<int64_t>(t.dim() + extra, 1);
  if (d < -n || d >= n)
    a.valueError(std::string(name) + " " + std::to_string(d) + " is out of range for " + Describe(t) +
                 " (expected " + std::to_string(-n) + ".." + std::to_string(n - 1) + ")");
  return d;
}

}  // namespace

void InitShape(Napi::Env env, Napi::Object e) {
  Def(env, e, "reshape", [](Args& a) { return a.ret(a.t(0, "input").reshape(a.ints(1, "shape"))); });
  Def(env, e, "view", [](Args& a) { return a.ret(a.t(0, "input").view(a.ints(1, "shape"))); });
  Def(env, e, "permute", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    std::vector<int64_t> p = a.ints(1, "dims");
    if (static_cast<int64_t>(p.size()) != x.dim())
      a.valueError("dims has " + std::to_string(p.size()) + " entries but the input is " + Describe(x));
    return a.ret(x.permute(p));
  });
  Def(env, e, "transpose", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(x.transpose(Dim(a, 1, x, "dim0"), Dim(a, 2, x, "dim1")));
  });
  Def(env, e, "flatten", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t s = a.has(1) ? Dim(a, 1, x, "startDim") : 0;
    int64_t t = a.has(2) ? Dim(a, 2, x, "endDim") : -1;
    return a.ret(x.flatten(s, t));
  });
  Def(env, e, "unflatten", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(x.unflatten(Dim(a, 1, x), a.ints(2, "sizes")));
  });
  Def(env, e, "squeeze", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (!a.has(1)) return a.ret(x.squeeze());
    return a.ret(x.squeeze(Dim(a, 1, x)));
  });
  Def(env, e, "unsqueeze", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(x.unsqueeze(Dim(a, 1, x, "dim", 1)));
  });
  Def(env, e, "narrow", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t d = Dim(a, 1, x);
    int64_t start = a.i64(2, "start"), len = a.i64(3, "length");
    int64_t n = x.size(d);
    if (start < 0) start += n;
    if (start < 0 || len < 0 || start + len > n)
      a.valueError("start " + std::to_string(start) + " + length " + std::to_string(len) + " exceeds size " +
                   std::to_string(n) + " of dim " + std::to_string(d) + " (" + Describe(x) + ")");
    return a.ret(x.narrow(d, start, len));
  });
  // slice(x, dim, start?, end?, step)
  Def(env, e, "slice", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t step = a.has(4) ? a.i64(4, "step") : 1;
    if (step <= 0) a.valueError("step must be positive, received " + std::to_string(step));
    return a.ret(x.slice(Dim(a, 1, x), a.optI64(2, "start"), a.optI64(3, "end"), step));
  });
  Def(env, e, "select", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t d = Dim(a, 1, x);
    int64_t i = a.i64(2, "index");
    int64_t n = x.size(d);
    if (i < -n || i >= n)
      a.valueError("index " + std::to_string(i) + " is out of range for dim " + std::to_string(d) + " of " +
                   Describe(x));
    return a.ret(x.select(d, i));
  });
  Def(env, e, "expand", [](Args& a) { return a.ret(a.t(0, "input").expand(a.ints(1, "shape"))); });
  Def(env, e, "repeat", [](Args& a) { return a.ret(a.t(0, "input").repeat(a.ints(1, "repeats"))); });
  Def(env, e, "roll", [](Args& a) { return a.ret(at::roll(a.t(0, "input"), a.ints(1, "shifts"), a.ints(2, "dims"))); });
  Def(env, e, "movedim", [](Args& a) { return a.ret(at::movedim(a.t(0, "input"), a.ints(1, "source"), a.ints(2, "destination"))); });
  Def(env, e, "cat", [](Args& a) {
    auto ts = a.tensors(0, "tensors");
    if (ts.empty()) a.valueError("expected a non-empty list of tensors");
    return a.ret(at::cat(ts, a.has(1) ? a.i64(1, "dim") : 0));
  });
  Def(env, e, "stack", [](Args& a) {
    auto ts = a.tensors(0, "tensors");
    if (ts.empty()) a.valueError("expected a non-empty list of tensors");
    return a.ret(at::stack(ts, a.has(1) ? a.i64(1, "dim") : 0));
  });
  // split(x, sizeOrSizes, dim)
  Def(env, e, "split", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t d = a.has(2) ? Dim(a, 2, x) : 0;
    if (a.raw(1).IsNumber()) {
      int64_t s = a.i64(1, "splitSize");
      if (s <= 0) a.valueError("splitSize must be positive, received " + std::to_string(s));
      return a.ret(x.split(s, d));
    }
    return a.ret(x.split_with_sizes(a.ints(1, "splitSizes"), d));
  });
  Def(env, e, "chunk", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    int64_t c = a.i64(1, "chunks");
    if (c <= 0) a.valueError("chunks must be positive, received " + std::to_string(c));
    return a.ret(x.chunk(c, a.has(2) ? Dim(a, 2, x) : 0));
  });
  Def(env, e, "unbind", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    return a.ret(x.unbind(a.has(1) ? Dim(a, 1, x) : 0));
  });
}

}  // namespace dinov3
