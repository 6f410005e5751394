// Devices: CUDA availability, device synchronisation, streams and events, and allocator statistics. The CUDA code
// is compiled only when the libtorch has CUDA (DINOV3_WITH_CUDA); a CPU build answers every CUDA call with one clear
// error.
#include <ATen/Context.h>

#include "common.h"

#ifdef DINOV3_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
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
const napi_type_tag kGraphTag = {0x5a1f93c7e20b4d68ULL, 0xc3e70a9b5d12f846ULL};

// A CUDA graph handle (at::cuda::CUDAGraph, as torch.cuda.CUDAGraph) and where it is in its life: empty, capturing,
// captured (replayable). The graph owns its private memory pool until reset or freed.
struct GraphBox {
  at::cuda::CUDAGraph graph;
  bool capturing = false;
  bool captured = false;
};

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

GraphBox& GraphArg(const Args& a, size_t i) { return *Unwrap<GraphBox>(a, i, kGraphTag, "graph", "a cuda.Graph"); }

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

  // cudaRecordStream(tensor, stream): Tensor.record_stream. Tells the caching allocator that the tensor's memory is
  // used by work queued on `stream`, so that once freed it is not handed out again before that work is done (needed
  // when memory allocated on one stream, a copy stream, is read on another).
  Def(env, e, "cudaRecordStream", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.recordStream");
#ifdef DINOV3_WITH_CUDA
    const at::Tensor& t = a.t(0, "tensor");
    const c10::cuda::CUDAStream& s = StreamArg(a, 1);
    if (!t.is_cuda() || t.device().index() != s.device_index())
      a.valueError("the tensor (" + Describe(t) + ") is not on the stream's device, cuda:" +
                   std::to_string(s.device_index()));
    t.record_stream(s.unwrap());
#endif
    return a.undef();
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

  // ---- graphs ----
  // A graph records the kernels queued on the current (side) stream between capture begin and end, without running
  // them, and replays them all with one launch; the tensors allocated meanwhile live in the graph's private pool, at
  // the same addresses on every replay. src/tensor/device.ts CudaGraph drives these calls.
  Def(env, e, "cudaNewGraph", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Graph");
#ifdef DINOV3_WITH_CUDA
    auto ext = Napi::External<GraphBox>::New(a.env(), new GraphBox(), [](Napi::Env, GraphBox* g) { delete g; });
    napi_type_tag_object(a.env(), ext, &kGraphTag);
    return ext;
#else
    return a.undef();
#endif
  });
  Def(env, e, "cudaGraphCaptureBegin", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Graph.capture");
#ifdef DINOV3_WITH_CUDA
    GraphBox& g = GraphArg(a, 0);
    if (g.capturing || g.captured) a.valueError("the graph already holds a capture; reset() it first");
    c10::DeviceIndex dev = c10::cuda::current_device();
    if (c10::cuda::getCurrentCUDAStream(dev) == c10::cuda::getDefaultCUDAStream(dev))
      a.valueError("capture runs on a side stream, not on the default stream");
#if DINOV3_TORCH_AT_LEAST(2, 1)
    // Thread-local mode: work that other threads queue meanwhile (the loader's copies) is neither captured nor refused.
    g.graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
#else
    g.graph.capture_begin();
#endif
    g.capturing = true;
#endif
    return a.undef();
  });
  // cudaGraphCaptureEnd(graph, abandon): ends the capture; with abandon (the captured code threw), ends it whatever
  // state it is in and frees what it holds, so that the stream and the allocator go back to normal.
  Def(env, e, "cudaGraphCaptureEnd", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Graph.capture");
#ifdef DINOV3_WITH_CUDA
    GraphBox& g = GraphArg(a, 0);
    bool abandon = a.optB(1, "abandon", false);
    if (!g.capturing) a.valueError("the graph is not capturing");
    g.capturing = false;
    try {
      g.graph.capture_end();
    } catch (...) {
      try {
        g.graph.reset();
      } catch (...) {
      }
      if (abandon) return a.undef();
      throw;
    }
    if (abandon) {
      g.graph.reset();
      return a.undef();
    }
    g.captured = true;
#endif
    return a.undef();
  });
  Def(env, e, "cudaGraphReplay", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Graph.replay");
#ifdef DINOV3_WITH_CUDA
    GraphBox& g = GraphArg(a, 0);
    if (!g.captured) a.valueError("nothing captured: capture(fn) first");
    g.graph.replay();
#endif
    return a.undef();
  });
  Def(env, e, "cudaGraphReset", [](Args& a) -> Napi::Value {
    RequireCuda(a, "cuda.Graph.reset");
#ifdef DINOV3_WITH_CUDA
    GraphBox& g = GraphArg(a, 0);
    if (g.capturing) a.valueError("the graph is capturing");
    g.graph.reset();
    g.captured = false;
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
