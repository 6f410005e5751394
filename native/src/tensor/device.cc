// Devices: CUDA availability, synchronisation and allocator statistics (compiled when the libtorch has CUDA).
#include <ATen/Context.h>

#include "common.h"

#ifdef DINOV3_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace dinov3 {

void InitDevice(Napi::Env env, Napi::Object e) {
  Def(env, e, "cudaIsAvailable", [](Args& a) -> Napi::Value {
    return Napi::Boolean::New(a.env(), at::hasCUDA());
  });
  Def(env, e, "cudaDeviceCount", [](Args& a) -> Napi::Value {
#ifdef DINOV3_WITH_CUDA
    return a.retNumber(at::hasCUDA() ? c10::cuda::device_count() : 0);
#else
    return a.retNumber(0);
#endif
  });
  Def(env, e, "synchronize", [](Args& a) -> Napi::Value {
#ifdef DINOV3_WITH_CUDA
    if (at::hasCUDA()) c10::cuda::device_synchronize();
#endif
    return a.undef();
  });
  // cudaMemory(device) → {allocated, reserved} bytes from the caching allocator (zeros without CUDA).
  Def(env, e, "cudaMemory", [](Args& a) -> Napi::Value {
    Napi::Object o = Napi::Object::New(a.env());
    double allocated = 0, reserved = 0;
#ifdef DINOV3_WITH_CUDA
    if (at::hasCUDA()) {
      int dev = a.has(0) ? static_cast<int>(a.i64(0, "device")) : 0;
      auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(dev);
      allocated = static_cast<double>(stats.allocated_bytes[0].current);
      reserved = static_cast<double>(stats.reserved_bytes[0].current);
    }
#endif
    o.Set("allocated", allocated);
    o.Set("reserved", reserved);
    return o;
  });
}

}  // namespace dinov3
