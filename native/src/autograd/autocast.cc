// Mixed precision by autocast (RECIPE §9: bf16 compute with fp32 master weights and fp32 reductions): inside an
// autocast region, matmul-like ops run in the autocast dtype while parameters, gradients and reductions stay fp32.
#include <ATen/autocast_mode.h>

#include "common.h"

namespace dinov3 {

namespace {

struct AutocastState {
  bool cpu;
  bool cuda;
  at::ScalarType cpuDtype;
  at::ScalarType cudaDtype;
};

#if DINOV3_TORCH_AT_LEAST(2, 4)
AutocastState Get() {
  return {at::autocast::is_autocast_enabled(at::kCPU), at::autocast::is_autocast_enabled(at::kCUDA),
          at::autocast::get_autocast_dtype(at::kCPU), at::autocast::get_autocast_dtype(at::kCUDA)};
}
void Set(const AutocastState& s) {
  at::autocast::set_autocast_enabled(at::kCPU, s.cpu);
  at::autocast::set_autocast_enabled(at::kCUDA, s.cuda);
  at::autocast::set_autocast_dtype(at::kCPU, s.cpuDtype);
  at::autocast::set_autocast_dtype(at::kCUDA, s.cudaDtype);
}
#else
AutocastState Get() {
  return {at::autocast::is_cpu_enabled(), at::autocast::is_enabled(), at::autocast::get_autocast_cpu_dtype(),
          at::autocast::get_autocast_gpu_dtype()};
}
void Set(const AutocastState& s) {
  at::autocast::set_cpu_enabled(s.cpu);
  at::autocast::set_enabled(s.cuda);
  at::autocast::set_autocast_cpu_dtype(s.cpuDtype);
  at::autocast::set_autocast_gpu_dtype(s.cudaDtype);
}
#endif

Napi::Value StateToJs(Napi::Env env, const AutocastState& s) {
  Napi::Array a = Napi::Array::New(env, 4);
  a.Set(0u, s.cpu);
  a.Set(1u, s.cuda);
  a.Set(2u, DtypeName(s.cpuDtype));
  a.Set(3u, DtypeName(s.cudaDtype));
  return a;
}

}  // namespace

void InitAutocast(Napi::Env env, Napi::Object e) {
  // autocastEnter(device: "cpu" | "cuda", dtype) → previous state; autocastExit(previous).
  Def(env, e, "autocastEnter", [](Args& a) -> Napi::Value {
    std::string dev = a.str(0, "device");
    at::ScalarType dt = a.dtype(1, "dtype");
    if (dev != "cpu" && dev != "cuda") a.valueError("device must be \"cpu\" or \"cuda\", received \"" + dev + "\"");
    if (dt != at::kBFloat16 && dt != at::kHalf)
      a.typeError(1, "dtype", "\"bfloat16\" or \"float16\"");
    AutocastState prev = Get();
    AutocastState next = prev;
    if (dev == "cpu") {
      next.cpu = true;
      next.cpuDtype = dt;
    } else {
      next.cuda = true;
      next.cudaDtype = dt;
    }
    Set(next);
    at::autocast::increment_nesting();
    return StateToJs(a.env(), prev);
  });
  Def(env, e, "autocastExit", [](Args& a) -> Napi::Value {
    Napi::Value v = a.raw(0);
    if (!v.IsArray() || v.As<Napi::Array>().Length() != 4) a.typeError(0, "previous", "the state returned by autocastEnter");
    Napi::Array s = v.As<Napi::Array>();
    auto cpuDt = ParseDtype(s.Get(2u).ToString().Utf8Value());
    auto cudaDt = ParseDtype(s.Get(3u).ToString().Utf8Value());
    if (!cpuDt || !cudaDt) a.typeError(0, "previous", "the state returned by autocastEnter");
    // Leaving the outermost region drops the cache of cast weights.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    Set({s.Get(0u).ToBoolean().Value(), s.Get(1u).ToBoolean().Value(), *cpuDt, *cudaDt});
    return a.undef();
  });
}

}  // namespace dinov3
