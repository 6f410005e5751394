// Elementwise ops: arithmetic with tensors or scalars, unary math, activations, comparisons, logical ops,
// where/clamp/clampMin/clampMax/lerp/nanToNum, and their in-place variants (names ending in `_`, returning nothing:
// the TS side returns `this`).
#include "common.h"
#include "ops/op_helpers.h"

namespace dinov3 {

namespace {

bool IsTensorArg(const Args& a, size_t i) { return i < a.size() && UnwrapRef(a.env(), a.raw(i)) != nullptr; }

// (a, b: Tensor|number, alpha?) for add/sub.
template <bool Sub>
Napi::Value AddSub(Args& a) {
  const at::Tensor& x = a.t(0, "input");
  at::Scalar alpha = a.has(2) ? a.scalar(2, "alpha") : at::Scalar(1);
  if (IsTensorArg(a, 1)) return a.ret(Sub ? at::sub(x, a.t(1, "other"), alpha) : at::add(x, a.t(1, "other"), alpha));
  return a.ret(Sub ? at::sub(x, a.scalar(1, "other"), alpha) : at::add(x, a.scalar(1, "other"), alpha));
}

template <bool Sub>
Napi::Value AddSubInplace(Args& a) {
  at::Tensor x = a.t(0, "input");
  at::Scalar alpha = a.has(2) ? a.scalar(2, "alpha") : at::Scalar(1);
  if (IsTensorArg(a, 1))
    Sub ? x.sub_(a.t(1, "other"), alpha) : x.add_(a.t(1, "other"), alpha);
  else
    Sub ? x.sub_(a.scalar(1, "other"), alpha) : x.add_(a.scalar(1, "other"), alpha);
  return a.undef();
}

// Binary op whose second argument may be a tensor or a scalar.
#define DINOV3_BINARY(NAME, EXPR_T, EXPR_S)                                  \
  Def(env, e, NAME, [](Args& a) -> Napi::Value {                             \
    const at::Tensor& x = a.t(0, "input");                                   \
    if (IsTensorArg(a, 1)) {                                                 \
      const at::Tensor& y = a.t(1, "other");                                 \
      return a.ret(EXPR_T);                                                  \
    }                                                                        \
    at::Scalar y = a.scalar(1, "other");                                     \
    return a.ret(EXPR_S);                                                    \
  })
#define DINOV3_BINARY_INPLACE(NAME, METHOD)                                  \
  Def(env, e, NAME, [](Args& a) -> Napi::Value {                             \
    at::Tensor x = a.t(0, "input");                                          \
    if (IsTensorArg(a, 1))                                                   \
      x.METHOD(a.t(1, "other"));                                             \
    else                                                                     \
      x.METHOD(a.scalar(1, "other"));                                        \
    return a.undef();                                                        \
  })
#define DINOV3_UNARY(NAME, METHOD) \
  Def(env, e, NAME, [](Args& a) -> Napi::Value { return a.ret(a.t(0, "input").METHOD()); })
#define DINOV3_UNARY_INPLACE(NAME, METHOD)         \
  Def(env, e, NAME, [](Args& a) -> Napi::Value {   \
    at::Tensor x = a.t(0, "input");                \
    x.METHOD();                                    \
    return a.undef();                              \
  })

// A bool mask argument (TorchTypeError otherwise).
const at::Tensor& BoolMask(const Args& a, size_t i) {
  const at::Tensor& mask = a.t(i, "mask");
  if (mask.scalar_type() != at::kBool) a.typeError(i, "mask", "a bool Tensor");
  return mask;
}

// A clamp bound given as a number.
at::Scalar BoundScalar(const Args& a, size_t i, const char* name) {
  if (!a.raw(i).IsNumber()) a.typeError(i, name, "a Tensor or a number");
  return a.scalar(i, name);
}

// clamp/clamp_(x, min?, max?): numbers keep the scalar overload (no promotion of integer tensors by integer bounds);
// a tensor bound selects the tensor overload, with a number on the other side turned into a 0-d tensor of x's dtype.
at::Tensor Clamp(const Args& a, at::Tensor x, bool inplace) {
  bool hasLo = a.has(1), hasHi = a.has(2);
  if (!hasLo && !hasHi) a.valueError("at least one of min and max must be given");
  if (IsTensorArg(a, 1) || IsTensorArg(a, 2)) {
    auto bound = [&](size_t i, bool has, const char* name) -> c10::optional<at::Tensor> {
      if (!has) return c10::nullopt;
      if (IsTensorArg(a, i)) return a.t(i, name);
      return at::scalar_tensor(BoundScalar(a, i, name), x.options());
    };
    c10::optional<at::Tensor> lo = bound(1, hasLo, "min"), hi = bound(2, hasHi, "max");
    return inplace ? x.clamp_(lo, hi) : at::clamp(x, lo, hi);
  }
  c10::optional<at::Scalar> lo, hi;
  if (hasLo) lo = BoundScalar(a, 1, "min");
  if (hasHi) hi = BoundScalar(a, 2, "max");
  return inplace ? x.clamp_(lo, hi) : at::clamp(x, lo, hi);
}

}  // namespace

void InitPointwise(Napi::Env env, Napi::Object e) {
  Def(env, e, "add", AddSub<false>);
  Def(env, e, "sub", AddSub<true>);
  Def(env, e, "add_", AddSubInplace<false>);
  Def(env, e, "sub_", AddSubInplace<true>);
  DINOV3_BINARY("mul", at::mul(x, y), at::mul(x, y));
  DINOV3_BINARY("div", at::div(x, y), at::div(x, y));
  DINOV3_BINARY("pow", at::pow(x, y), at::pow(x, y));
  DINOV3_BINARY("remainder", at::remainder(x, y), at::remainder(x, y));
  DINOV3_BINARY("floorDivide", at::floor_divide(x, y), at::floor_divide(x, y));
  DINOV3_BINARY("maximum", at::maximum(x, y), at::clamp_min(x, y));
  DINOV3_BINARY("minimum", at::minimum(x, y), at::clamp_max(x, y));
  DINOV3_BINARY("eq", at::eq(x, y), at::eq(x, y));
  DINOV3_BINARY("ne", at::ne(x, y), at::ne(x, y));
  DINOV3_BINARY("lt", at::lt(x, y), at::lt(x, y));
  DINOV3_BINARY("le", at::le(x, y), at::le(x, y));
  DINOV3_BINARY("gt", at::gt(x, y), at::gt(x, y));
  DINOV3_BINARY("ge", at::ge(x, y), at::ge(x, y));
  DINOV3_BINARY_INPLACE("mul_", mul_);
  DINOV3_BINARY_INPLACE("div_", div_);
  DINOV3_BINARY_INPLACE("pow_", pow_);

  DINOV3_UNARY("neg", neg);
  DINOV3_UNARY("abs", abs);
  DINOV3_UNARY("exp", exp);
  DINOV3_UNARY("log", log);
  DINOV3_UNARY("log1p", log1p);
  DINOV3_UNARY("sqrt", sqrt);
  DINOV3_UNARY("rsqrt", rsqrt);
  DINOV3_UNARY("sin", sin);
  DINOV3_UNARY("cos", cos);
  DINOV3_UNARY("tanh", tanh);
  DINOV3_UNARY("sigmoid", sigmoid);
  DINOV3_UNARY("relu", relu);
  DINOV3_UNARY("erf", erf);
  DINOV3_UNARY("erfinv", erfinv);
  DINOV3_UNARY("reciprocal", reciprocal);
  DINOV3_UNARY("sign", sign);
  DINOV3_UNARY("floor", floor);
  DINOV3_UNARY("ceil", ceil);
  DINOV3_UNARY("round", round);
  DINOV3_UNARY("square", square);
  DINOV3_UNARY("logicalNot", logical_not);
  DINOV3_UNARY("isnan", isnan);
  DINOV3_UNARY("isfinite", isfinite);
  DINOV3_UNARY("isinf", isinf);
  DINOV3_UNARY_INPLACE("neg_", neg_);
  DINOV3_UNARY_INPLACE("exp_", exp_);
  DINOV3_UNARY_INPLACE("sqrt_", sqrt_);
  DINOV3_UNARY_INPLACE("relu_", relu_);

  Def(env, e, "logicalAnd", [](Args& a) { return a.ret(at::logical_and(a.t(0, "input"), a.t(1, "other"))); });
  Def(env, e, "logicalOr", [](Args& a) { return a.ret(at::logical_or(a.t(0, "input"), a.t(1, "other"))); });
  // gelu(x, approximate: "none" | "tanh")
  Def(env, e, "gelu", [](Args& a) {
    std::string approx = a.has(1) ? a.str(1, "approximate") : "none";
    if (approx != "none" && approx != "tanh")
      a.valueError("approximate must be \"none\" or \"tanh\", received \"" + approx + "\"");
    return a.ret(at::gelu(a.t(0, "input"), approx));
  });
  Def(env, e, "silu", [](Args& a) { return a.ret(at::silu(a.t(0, "input"))); });
  // clamp(x, min?, max?) with numbers or tensors (broadcast); integer tensors clamped by integers stay integers.
  Def(env, e, "clamp", [](Args& a) { return a.ret(Clamp(a, a.t(0, "input"), false)); });
  Def(env, e, "clamp_", [](Args& a) -> Napi::Value {
    Clamp(a, a.t(0, "input"), true);
    return a.undef();
  });
  // clampMin/clampMax(x, bound: number|Tensor)
  Def(env, e, "clampMin", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (IsTensorArg(a, 1)) return a.ret(at::clamp_min(x, a.t(1, "min")));
    return a.ret(at::clamp_min(x, BoundScalar(a, 1, "min")));
  });
  Def(env, e, "clampMax", [](Args& a) {
    const at::Tensor& x = a.t(0, "input");
    if (IsTensorArg(a, 1)) return a.ret(at::clamp_max(x, a.t(1, "max")));
    return a.ret(at::clamp_max(x, BoundScalar(a, 1, "max")));
  });
  Def(env, e, "logicalXor", [](Args& a) { return a.ret(at::logical_xor(a.t(0, "input"), a.t(1, "other"))); });
  // nanToNum(x, nan?, posinf?, neginf?): NaN → nan (0), ±inf → posinf/neginf (the dtype's extremes by default).
  Def(env, e, "nanToNum", [](Args& a) {
    return a.ret(at::nan_to_num(a.t(0, "input"), a.optF64(1, "nan"), a.optF64(2, "posinf"), a.optF64(3, "neginf")));
  });
  // where(cond, a: Tensor|number, b: Tensor|number)
  Def(env, e, "where", [](Args& a) {
    const at::Tensor& c = a.t(0, "condition");
    bool ta = IsTensorArg(a, 1), tb = IsTensorArg(a, 2);
    if (ta && tb) return a.ret(at::where(c, a.t(1, "input"), a.t(2, "other")));
    if (ta) return a.ret(at::where(c, a.t(1, "input"), a.scalar(2, "other")));
    if (tb) return a.ret(at::where(c, a.scalar(1, "input"), a.t(2, "other")));
    return a.ret(at::where(c, a.scalar(1, "input"), a.scalar(2, "other")));
  });
  // lerp(start, end, weight: number|Tensor)
  Def(env, e, "lerp", [](Args& a) {
    if (IsTensorArg(a, 2)) return a.ret(at::lerp(a.t(0, "input"), a.t(1, "end"), a.t(2, "weight")));
    return a.ret(at::lerp(a.t(0, "input"), a.t(1, "end"), a.scalar(2, "weight")));
  });
  Def(env, e, "lerp_", [](Args& a) -> Napi::Value {
    at::Tensor x = a.t(0, "input");
    x.lerp_(a.t(1, "end"), a.scalar(2, "weight"));
    return a.undef();
  });
  Def(env, e, "addcmul", [](Args& a) {
    return a.ret(at::addcmul(a.t(0, "input"), a.t(1, "tensor1"), a.t(2, "tensor2"), a.scalar(3, "value")));
  });
  // maskedFill(x, mask, value): mask must be bool (torch rejects others; 1.13 silently ignored float masks).
  Def(env, e, "maskedFill", [](Args& a) {
    return a.ret(at::masked_fill(a.t(0, "input"), BoolMask(a, 1), a.scalar(2, "value")));
  });
  Def(env, e, "maskedFill_", [](Args& a) -> Napi::Value {
    at::Tensor x = a.t(0, "input");
    x.masked_fill_(BoolMask(a, 1), a.scalar(2, "value"));
    return a.undef();
  });
  Def(env, e, "dropout", [](Args& a) {
    double p = a.f64(1, "p");
    if (p < 0 || p > 1) a.valueError("p must be in [0, 1], received " + FormatNumber(p));
    return a.ret(at::dropout(a.t(0, "input"), p, a.b(2, "train")));
  });
}

}  // namespace dinov3
