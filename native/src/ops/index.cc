// Indexing ops: index_select, gather, scatter (tensor or value) and scatter_add, boolean/advanced indexing,
// index_put_, masked_select, nonzero, one_hot.
#include "common.h"

namespace dinov3 {

namespace {

int64_t Dim(const Args& a, size_t i, const at::Tensor& t) {
  int64_t d = a.i64(i, "dim");
  int64_t n = std::max<int64_t>(t.dim(), 1);
  if (d < -n || d >= n)
    a.valueError("dim " + std::to_string(d) + " is out of range for " + Describe(t));
  return d;
}

void CheckIndexDtype(const Args& a, const at::Tensor& idx, const char* name) {
  if (idx.scalar_type() != at::kLong && idx.scalar_type() != at::kInt)
    a.typeError(1, name, "an int64 or int32 Tensor");
}

// Optional tensor list for advanced indexing: entries may be null (= take the whole dim).
c10::List<c10::optional<at::Tensor>> IndexList(const Args& a, size_t i) {
  if (!a.has(i) || !a.raw(i).IsArray()) a.typeError(i, "indices", "an array of Tensors or nulls");
  Napi::Array arr = a.raw(i).As<Napi::Array>();
  c10::List<c10::optional<at::Tensor>> out;
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    Napi::Value v = arr.Get(k);
    if (v.IsNull() || v.IsUndefined()) {
      out.push_back(c10::nullopt);
      continue;
    }
    TensorRef* r = UnwrapRef(a.env(), v);
    if (!r || r->disposed) a.typeError(i, "indices", "an array of Tensors or nulls");
    out.push_back(r->t);
  }
  return out;
}

}  // namespace

void InitIndex(Napi::Env env, Napi::Object e) {
  Def(env, e, "indexSelect", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& idx = a.t(2, "index");
    CheckIndexDtype(a, idx, "index");
    return a.ret(at::index_select(x, Dim(a, 1, x), idx));
  });
  Def(env, e, "gather", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& idx = a.t(2, "index");
    if (idx.scalar_type() != at::kLong) a.typeError(2, "index", "an int64 Tensor");
    return a.ret(at::gather(x, Dim(a, 1, x), idx));
  });
  // scatter(x, dim, index, src: Tensor|number)
  Def(env, e, "scatter", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& idx = a.t(2, "index");
    if (idx.scalar_type() != at::kLong) a.typeError(2, "index", "an int64 Tensor");
    int64_t d = Dim(a, 1, x);
    if (a.has(3) && UnwrapRef(a.env(), a.raw(3))) return a.ret(at::scatter(x, d, idx, a.t(3, "src")));
    return a.ret(at::scatter(x, d, idx, a.scalar(3, "value")));
  });
  Def(env, e, "scatterAdd", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& idx = a.t(2, "index");
    if (idx.scalar_type() != at::kLong) a.typeError(2, "index", "an int64 Tensor");
    return a.ret(at::scatter_add(x, Dim(a, 1, x), idx, a.t(3, "src")));
  });
  // index(x, [t0|null, t1|null, ...]): advanced indexing, including boolean masks.
  Def(env, e, "index", [](Args& a) { return a.ret(at::index(a.t(0, "input"), IndexList(a, 1))); });
  // indexPut_(x, indices, values, accumulate)
  Def(env, e, "indexPut_", [](Args& a) -> Napi::Value {
    at::Tensor x = a.t(0, "input");
    x.index_put_(IndexList(a, 1), a.t(2, "values"), a.optB(3, "accumulate", false));
    return a.undef();
  });
  Def(env, e, "indexPut", [](Args& a) {
    return a.ret(at::index_put(a.t(0, "input"), IndexList(a, 1), a.t(2, "values"), a.optB(3, "accumulate", false)));
  });
  Def(env, e, "maskedSelect", [](Args& a) { return a.ret(at::masked_select(a.t(0, "input"), a.t(1, "mask"))); });
  Def(env, e, "nonzero", [](Args& a) { return a.ret(at::nonzero(a.t(0, "input"))); });
  Def(env, e, "oneHot", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (x.scalar_type() != at::kLong) a.typeError(0, "input", "an int64 Tensor");
    return a.ret(at::one_hot(x, a.has(1) ? a.i64(1, "numClasses") : -1));
  });
}

}  // namespace dinov3
