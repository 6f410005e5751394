// Benchmark support (src/cli/bench.ts): the CUDA caching allocator's peak of allocated bytes since the last reset.
// Without CUDA (or a device) the answer is 0, so the bench reports the process's peak resident set instead.
#include "common.h"

#ifdef DINOV3_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace dinov3 {

void InitBench(Napi::Env env, Napi::Object e) {
  // cudaPeakMemory(device?, reset?) → peak allocated bytes on the device; reset: start a new peak afterwards.
  Def(env, e, "cudaPeakMemory", [](Args& a) -> Napi::Value {
    double peak = 0;
#ifdef DINOV3_WITH_CUDA
    if (at::hasCUDA()) {
      const int dev = a.has(0) ? static_cast<int>(a.i64(0, "device")) : 0;
      peak = static_cast<double>(c10::cuda::CUDACachingAllocator::getDeviceStats(dev).allocated_bytes[0].peak);
      if (a.optB(1, "reset", false)) c10::cuda::CUDACachingAllocator::resetPeakStats(dev);
    }
#endif
    return Napi::Number::New(a.env(), peak);
  });
}

}  // namespace dinov3
