// Indexing ops: index_select, gather, scatter (tensor or value) and scatter_add, boolean/advanced indexing,
// index_put_, masked_select, nonzero, one_hot.
#include "common.h"
#include "ops/op_helpers.h"

namespace dinov3 {

namespace {

int64_t Dim(const Args& a, size_t i, const at::Tensor& t) { return DimArg(a, i, t); }

// Optional tensor list for advanced indexing: entries may be null (= take the whole dim). A boolean mask among them
// makes the output size depend on values (a host synchronisation on CUDA).
c10::List<c10::optional<at::Tensor>> IndexList(const Args& a, size_t i) {
  if (!a.has(i) || !a.raw(i).IsArray()) a.typeError(i, "indices", "an array of Tensors or nulls");
  Napi::Array arr = a.raw(i).As<Napi::Array>();
  c10::List<c10::optional<at::Tensor>> out;
  bool counted = false;
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    Napi::Value v = arr.Get(k);
    if (v.IsNull() || v.IsUndefined()) {
      out.push_back(c10::nullopt);
      continue;
    }
    std::string item = "indices[" + std::to_string(k) + "]";
    TensorRef* r = UnwrapRef(a.env(), v);
    if (!r)
      throw MakeError(a.env(), ErrKind::Type,
                      std::string(a.op()) + ": expected \"" + item + "\" to be a Tensor or null, received " +
                          DescribeValue(v),
                      "ERR_INVALID_ARG");
    if (r->disposed) throw DisposedError(a.env(), a.op(), item, r);
    at::ScalarType s = r->t.scalar_type();
    if (s != at::kLong && s != at::kInt && s != at::kBool && s != at::kByte)
      throw MakeError(a.env(), ErrKind::Type,
                      std::string(a.op()) + ": expected \"" + item +
                          "\" to be an int64, int32 or bool Tensor, received Tensor " + Describe(r->t),
                      "ERR_INVALID_ARG");
    // int32 indices are accepted and widened (libtorch 1.13 only takes int64, bool and uint8).
    if ((s == at::kBool || s == at::kByte) && !counted) {
      CountHostSync();
      counted = true;
    }
    out.push_back(s == at::kInt ? r->t.to(at::kLong) : r->t);
  }
  return out;
}

}  // namespace

void InitIndex(Napi::Env env, Napi::Object e) {
  Def(env, e, "indexSelect", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& idx = a.t(2, "index");
    CheckIndexTensor(a, 2, "index", true);
    return a.ret(at::index_select(x, Dim(a, 1, x), idx));
  });
  Def(env, e, "gather", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& idx = a.t(2, "index");
    CheckIndexTensor(a, 2, "index", false);
    return a.ret(at::gather(x, Dim(a, 1, x), idx));
  });
  // scatter(x, dim, index, src: Tensor|number)
  Def(env, e, "scatter", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& idx = a.t(2, "index");
    CheckIndexTensor(a, 2, "index", false);
    int64_t d = Dim(a, 1, x);
    if (a.has(3) && UnwrapRef(a.env(), a.raw(3))) return a.ret(at::scatter(x, d, idx, a.t(3, "src")));
    return a.ret(at::scatter(x, d, idx, a.scalar(3, "value")));
  });
  Def(env, e, "scatterAdd", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& idx = a.t(2, "index");
    CheckIndexTensor(a, 2, "index", false);
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
  Def(env, e, "maskedSelect", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    const at::Tensor& mask = a.t(1, "mask");
    CountHostSync();
    return a.ret(at::masked_select(x, mask));
  });
  Def(env, e, "nonzero", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    CountHostSync();
    return a.ret(at::nonzero(x));
  });
  Def(env, e, "oneHot", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (x.scalar_type() != at::kLong) a.typeError(0, "input", "an int64 Tensor");
    return a.ret(at::one_hot(x, a.has(1) ? a.i64(1, "numClasses") : -1));
  });
}

}  // namespace dinov3
