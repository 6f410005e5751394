// Devices: CUDA availability, device synchronisation, streams and events, and allocator statistics. The CUDA code
// is compiled only when the libtorch has CUDA (DINOV3_WITH_CUDA); a CPU build answers every CUDA call with one clear
// error.
#include <ATen/Context.h>

#include "common.h"

#ifdef DINOV3_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace dinov3 {

namespace {

// Every CUDA entry point starts here: throws a TorchError naming `what` unless CUDA can be used.
void RequireCuda(const Args& a, const char* what) {
#ifdef DINOV3_WITH_CUDA
  if (!at::hasCUDA())
    throw MakeError(a.env(), ErrKind::Torch,
                    std::string(what) + ": CUDA is not available: no CUDA device was found (libtorch " TORCH_VERSION
                    " with CUDA)",
                    "ERR_TORCH");
#else
  throw MakeError(a.env(), ErrKind::Torch,
                  std::string(what) + ": CUDA is not available in this build (libtorch " TORCH_VERSION " CPU)",
                  "ERR_TORCH_NOT_IMPLEMENTED");
#endif
}

#ifdef DINOV3_WITH_CUDA
// Type tags of stream and event handles (type-tagged napi Externals, like generators).
const napi_type_tag kStreamTag = {0x3b7e19d2c4a85f60ULL, 0x9d1c6e2f40a7b835ULL};
const napi_type_tag kEventTag = {0x74c2a9e1f03d5b86ULL, 0x1e8b5d3c6a9f2074ULL};

// A stream handle owns a copy of the (pool-managed, never destroyed) CUDA stream value.
Napi::Value WrapStream(Napi::Env env, const c10::cuda::CUDAStream& s) {
  auto ext = Napi::External<c10::cuda::CUDAStream>::New(env, new c10::cuda::CUDAStream(s),
                                                        [](Napi::Env, c10::cuda::CUDAStream* p) { delete p; });
  napi_type_tag_object(env, ext, &kStreamTag);
  return ext;
}

template <typename T>
T* Unwrap(const Args& a, size_t i, const napi_type_tag& tag, const char* name, const char* expected) {
  bool ok = false;
  if (i >= a.size() || !a.raw(i).IsExternal() || napi_check_object_type_tag(a.env(), a.raw(i), &tag, &ok) != napi_ok ||
      !ok)
    a.typeError(i, name, expected);
  return a.raw(i).As<Napi::External<T>>().Data();
}

c10::cuda::CUDAStream& StreamArg(const Args& a, size_t i) {
  return *Unwrap<c10::cuda::CUDAStream>(a, i, kStreamTag, "stream", "a cuda.Stream");
}
at::cuda::CUDAEvent& EventArg(const Args& a, size_t i, const char* name = "event") {
  return *Unwrap<at::cuda::CUDAEvent>(a, i, kEventTag, name, "a cuda.Event");
}

// Optional device index argument: the current device when absent.
c10::DeviceIndex DeviceArg(const Args& a, size_t i) {
  if (!a.has(i)) return c10::cuda::current_device();
  int64_t d = a.i64(i, "device");
  int64_t n = c10::cuda::device_count();
  if (d < 0 || d >= n)
    a.valueError("device " + std::to_string(d) + " is out of range (" + std::to_string(n) + " CUDA devices)");
  return static_cast<c10::DeviceIndex>(d);
}
#endif

}  // namespace

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
  // synchronize(device?): waits for all work queued on the device (every stream).
  Def(env, e, "synchronize", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.synchronize");
#ifdef DINOV3_WITH_CUDA
    c10::cuda::CUDAGuard guard(DeviceArg(a, 0));
    CountHostSync();
    c10::cuda::device_synchronize();
#endif
    return a.undef();
  });

  // cudaSyncDebugMode(mode?): libtorch's CUDA sync debug mode (torch.cuda.set_sync_debug_mode): with "warn" every
  // synchronising CUDA call (a blocking copy, a value-dependent size, an explicit synchronize) raises a libtorch
  // warning (a TorchWarning in Node), with "error" it throws. Sets the mode when given; returns the mode before.
  Def(env, e, "cudaSyncDebugMode", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.syncDebugMode");
#ifdef DINOV3_WITH_CUDA
    static const char* const kNames[] = {"default", "warn", "error"};
    auto& state = c10::cuda::warning_state();
    const char* previous = kNames[static_cast<int>(state.get_sync_debug_mode())];
    if (a.has(0)) {
      std::string m = a.str(0, "mode");
      if (m == "default") state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
      else if (m == "warn") state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
      else if (m == "error") state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
      else a.valueError("expected \"mode\" to be \"default\", \"warn\" or \"error\", received \"" + m + "\"");
    }
    return Napi::String::New(a.env(), previous);
#else
    return a.undef();
#endif
  });

  // ---- streams ----
  // cudaNewStream(device?, highPriority): a stream from libtorch's pool (as torch.cuda.Stream()).
  Def(env, e, "cudaNewStream", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Stream");
#ifdef DINOV3_WITH_CUDA
    c10::DeviceIndex dev = DeviceArg(a, 0);
    return WrapStream(a.env(), c10::cuda::getStreamFromPool(a.optB(1, "highPriority", false), dev));
#else
    return a.undef();
#endif
  });
  Def(env, e, "cudaCurrentStream", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.currentStream");
#ifdef DINOV3_WITH_CUDA
    return WrapStream(a.env(), c10::cuda::getCurrentCUDAStream(DeviceArg(a, 0)));
#else
    return a.undef();
#endif
  });
  Def(env, e, "cudaDefaultStream", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.defaultStream");
#ifdef DINOV3_WITH_CUDA
    return WrapStream(a.env(), c10::cuda::getDefaultCUDAStream(DeviceArg(a, 0)));
#else
    return a.undef();
#endif
  });
  // cudaSetCurrentStream(stream): makes it current on its device (the ops that follow on that device use it).
  Def(env, e, "cudaSetCurrentStream", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.setCurrentStream");
#ifdef DINOV3_WITH_CUDA
    c10::cuda::setCurrentCUDAStream(StreamArg(a, 0));
#endif
    return a.undef();
  });
  Def(env, e, "cudaStreamSynchronize", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Stream.synchronize");
#ifdef DINOV3_WITH_CUDA
    CountHostSync();
    StreamArg(a, 0).synchronize();
#endif
    return a.undef();
  });
  // cudaStreamQuery(stream) → true when all its work has completed.
  Def(env, e, "cudaStreamQuery", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Stream.query");
#ifdef DINOV3_WITH_CUDA
    return Napi::Boolean::New(a.env(), StreamArg(a, 0).query());
#else
    return a.undef();
#endif
  });
  // cudaStreamInfo(stream) → {device, id, priority}
  Def(env, e, "cudaStreamInfo", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Stream");
#ifdef DINOV3_WITH_CUDA
    const c10::cuda::CUDAStream& s = StreamArg(a, 0);
    Napi::Object o = Napi::Object::New(a.env());
    o.Set("device", Napi::Number::New(a.env(), s.device_index()));
    o.Set("id", Napi::Number::New(a.env(), static_cast<double>(s.id())));
    o.Set("priority", Napi::Number::New(a.env(), s.priority()));
    return o;
#else
    return a.undef();
#endif
  });

  // ---- events ----
  // cudaNewEvent(enableTiming): the CUDA event is created lazily on its first record, on the stream's device.
  Def(env, e, "cudaNewEvent", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Event");
#ifdef DINOV3_WITH_CUDA
    unsigned int flags = a.optB(0, "enableTiming", false) ? cudaEventDefault : cudaEventDisableTiming;
    auto ext = Napi::External<at::cuda::CUDAEvent>::New(a.env(), new at::cuda::CUDAEvent(flags),
                                                         [](Napi::Env, at::cuda::CUDAEvent* p) { delete p; });
    napi_type_tag_object(a.env(), ext, &kEventTag);
    return ext;
#else
    return a.undef();
#endif
  });
  // cudaEventRecord(event, stream?): records on the stream (the current stream when absent).
  Def(env, e, "cudaEventRecord", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Event.record");
#ifdef DINOV3_WITH_CUDA
    at::cuda::CUDAEvent& ev = EventArg(a, 0);
    if (a.has(1))
      ev.record(StreamArg(a, 1));
    else
      ev.record();
#endif
    return a.undef();
  });
  Def(env, e, "cudaEventSynchronize", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Event.synchronize");
#ifdef DINOV3_WITH_CUDA
    CountHostSync();
    EventArg(a, 0).synchronize();
#endif
    return a.undef();
  });
  Def(env, e, "cudaEventQuery", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Event.query");
#ifdef DINOV3_WITH_CUDA
    return Napi::Boolean::New(a.env(), EventArg(a, 0).query());
#else
    return a.undef();
#endif
  });
  // cudaEventWait(event, stream?): work queued on the stream (current when absent) after this call waits for the event.
  Def(env, e, "cudaEventWait", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Event.wait");
#ifdef DINOV3_WITH_CUDA
    at::cuda::CUDAEvent& ev = EventArg(a, 0);
    ev.block(a.has(1) ? StreamArg(a, 1) : c10::cuda::getCurrentCUDAStream());
#endif
    return a.undef();
  });
  // cudaEventElapsedTime(start, end) → milliseconds between two recorded timing events.
  Def(env, e, "cudaEventElapsedTime", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Event.elapsedTime");
#ifdef DINOV3_WITH_CUDA
    at::cuda::CUDAEvent& start = EventArg(a, 0, "start");
    at::cuda::CUDAEvent& end = EventArg(a, 1, "end");
    return a.retNumber(start.elapsed_time(end));
#else
    return a.undef();
#endif
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
