// Creation ops: zeros/ones/full/empty/arange/linspace/eye, random draws (optionally with a seeded Generator), and
// the in-place initialisers used by module init (normal_, uniform_, trunc_normal_, fill_, zero_).
#include <cmath>
#include <cstdio>

#include "common.h"

namespace dinov3 {

namespace {

// Options from (dtype?, device?) at positions i, i+1. Default dtype float32, device cpu.
at::TensorOptions Opts(const Args& a, size_t i) {
  auto o = at::TensorOptions().dtype(a.optDtype(i, "dtype").value_or(at::kFloat));
  if (a.has(i + 1)) o = o.device(a.device(i + 1, "device"));
  return o;
}

std::vector<int64_t> Shape(const Args& a, size_t i) {
  std::vector<int64_t> s = a.ints(i, "shape");
  for (int64_t v : s)
    if (v < 0) a.valueError("shape must not have negative sizes, received [" + c10::Join(", ", s) + "]");
  return s;
}

}  // namespace

void InitCreation(Napi::Env env, Napi::Object e) {
  Def(env, e, "zeros", [](Args& a) { return a.ret(at::zeros(Shape(a, 0), Opts(a, 1))); });
  Def(env, e, "ones", [](Args& a) { return a.ret(at::ones(Shape(a, 0), Opts(a, 1))); });
  Def(env, e, "empty", [](Args& a) { return a.ret(at::empty(Shape(a, 0), Opts(a, 1))); });
  Def(env, e, "full", [](Args& a) { return a.ret(at::full(Shape(a, 0), a.scalar(1, "value"), Opts(a, 2))); });
  Def(env, e, "zerosLike", [](Args& a) { return a.ret(at::zeros_like(a.t(0, "input"))); });
  Def(env, e, "onesLike", [](Args& a) { return a.ret(at::ones_like(a.t(0, "input"))); });
  Def(env, e, "fullLike", [](Args& a) { return a.ret(at::full_like(a.t(0, "input"), a.scalar(1, "value"))); });
  Def(env, e, "emptyLike", [](Args& a) { return a.ret(at::empty_like(a.t(0, "input"))); });
  // arange(start, end, step, dtype?, device?)
  Def(env, e, "arange", [](Args& a) {
    double step = a.f64(2, "step");
    if (step == 0) a.valueError("step must be non-zero");
    // Too many elements to count: checked here so that every libtorch version reports it alike (1.13 threw a plain
    // std::runtime_error, 2.x a c10::Error).
    double start = a.f64(0, "start"), end = a.f64(1, "end");
    auto num = [](double v) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", v);
      return std::string(buf);
    };
    if (!std::isfinite(start) || !std::isfinite(end) || !std::isfinite(step))
      a.valueError("start, end and step must be finite, received " + num(start) + ", " + num(end) + ", " + num(step));
    double count = std::ceil((end - start) / step);
    if (count >= 9.2e18) a.valueError("[start, end) with this step holds about " + num(count) + " elements, more than an int64 can count");
    return a.ret(at::arange(a.scalar(0, "start"), a.scalar(1, "end"), a.scalar(2, "step"),
                            at::TensorOptions()
                                .dtype(a.optDtype(3, "dtype").value_or(at::kFloat))
                                .device(a.has(4) ? a.device(4, "device") : at::Device(at::kCPU))));
  });
  Def(env, e, "linspace", [](Args& a) {
    int64_t steps = a.i64(2, "steps");
    if (steps < 0) a.valueError("steps must be >= 0, received " + std::to_string(steps));
    return a.ret(at::linspace(a.scalar(0, "start"), a.scalar(1, "end"), steps, Opts(a, 3)));
  });
  Def(env, e, "eye", [](Args& a) { return a.ret(at::eye(a.i64(0, "n"), Opts(a, 1))); });

  // Random: (shape, dtype?, device?, generator?)
  Def(env, e, "randn", [](Args& a) { return a.ret(at::randn(Shape(a, 0), GeneratorArg(a, 3), Opts(a, 1))); });
  Def(env, e, "rand", [](Args& a) { return a.ret(at::rand(Shape(a, 0), GeneratorArg(a, 3), Opts(a, 1))); });
  // randint(low, high, shape, dtype?, device?, generator?)
  Def(env, e, "randint", [](Args& a) {
    int64_t lo = a.i64(0, "low"), hi = a.i64(1, "high");
    if (hi <= lo) a.valueError("expected low < high, received low=" + std::to_string(lo) + " high=" + std::to_string(hi));
    auto o = at::TensorOptions().dtype(a.optDtype(3, "dtype").value_or(at::kLong));
    if (a.has(4)) o = o.device(a.device(4, "device"));
    return a.ret(at::randint(lo, hi, Shape(a, 2), GeneratorArg(a, 5), o));
  });
  // randperm(n, generator?)
  Def(env, e, "randperm", [](Args& a) {
    return a.ret(at::randperm(a.i64(0, "n"), GeneratorArg(a, 1), at::TensorOptions().dtype(at::kLong)));
  });

  // In-place initialisers: (tensor, ..., generator?). They run without recording autograd history.
  Def(env, e, "normal_", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    a.t(0, "tensor").normal_(a.f64(1, "mean"), a.f64(2, "std"), GeneratorArg(a, 3));
    return a.undef();
  });
  Def(env, e, "uniform_", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    a.t(0, "tensor").uniform_(a.f64(1, "low"), a.f64(2, "high"), GeneratorArg(a, 3));
    return a.undef();
  });
  // trunc_normal_(t, mean, std, a, b): inverse-CDF method as torch.nn.init.trunc_normal_.
  Def(env, e, "truncNormal_", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    at::Tensor t = a.t(0, "tensor");
    double mean = a.f64(1, "mean"), std = a.f64(2, "std"), lo = a.f64(3, "a"), hi = a.f64(4, "b");
    auto cdf = [](double x) { return (1. + std::erf(x / std::sqrt(2.))) / 2.; };
    double l = cdf((lo - mean) / std), u = cdf((hi - mean) / std);
    t.uniform_(2 * l - 1, 2 * u - 1, GeneratorArg(a, 5));
    t.erfinv_();
    t.mul_(std * std::sqrt(2.));
    t.add_(mean);
    t.clamp_(lo, hi);
    return a.undef();
  });
  Def(env, e, "fill_", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    a.t(0, "tensor").fill_(a.scalar(1, "value"));
    return a.undef();
  });
  Def(env, e, "zero_", [](Args& a) -> Napi::Value {
    at::NoGradGuard ng;
    a.t(0, "tensor").zero_();
    return a.undef();
  });
}

}  // namespace dinov3
